"""template_hash: stable across key order, blind to fields others add, sensitive to real edits."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from canaryd.core.revision import template_hash

TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "podinfo"}, "annotations": {"prometheus.io/scrape": "true"}},
    "spec": {
        "containers": [
            {
                "name": "podinfo",
                "image": "ghcr.io/stefanprodan/podinfo:6.5.0",
                "ports": [{"containerPort": 9898, "protocol": "TCP"}],
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            }
        ]
    },
}


def reorder(value: Any, rng: st.DataObject) -> Any:
    if isinstance(value, dict):
        keys = rng.draw(st.permutations(list(value)))
        return {k: reorder(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [reorder(v, rng) for v in value]
    return value


@given(st.data())
def test_key_order_does_not_matter(data: st.DataObject) -> None:
    assert template_hash(reorder(TEMPLATE, data)) == template_hash(TEMPLATE)


def test_fields_added_by_others_are_ignored() -> None:
    touched = copy.deepcopy(TEMPLATE)
    touched["metadata"]["labels"]["pod-template-hash"] = "5d8f7c9b4"
    touched["metadata"]["annotations"]["canaryd.io/revision"] = "abc"
    touched["metadata"]["labels"]["canaryd.io/role"] = "primary"
    touched["metadata"]["creationTimestamp"] = None
    touched["spec"]["volumes"] = []
    assert template_hash(touched) == template_hash(TEMPLATE)
    bare = copy.deepcopy(TEMPLATE)
    del bare["metadata"]["annotations"]
    annotated = copy.deepcopy(bare)
    annotated["metadata"]["annotations"] = {"canaryd.io/x": "1"}
    assert template_hash(annotated) == template_hash(bare)


def test_real_changes_change_the_hash() -> None:
    base = template_hash(TEMPLATE)
    image = copy.deepcopy(TEMPLATE)
    image["spec"]["containers"][0]["image"] = "ghcr.io/stefanprodan/podinfo:6.5.1"
    env_order = copy.deepcopy(TEMPLATE)  # list order is meaningful (env overrides)
    env_order["spec"]["containers"][0]["env"].reverse()
    restarted = copy.deepcopy(TEMPLATE)  # kubectl rollout restart is a user's change
    restarted["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] = "2026-01-01"
    label = copy.deepcopy(TEMPLATE)
    label["metadata"]["labels"]["version"] = "2"
    hashes = {template_hash(t) for t in (image, env_order, restarted, label)}
    assert base not in hashes and len(hashes) == 4
    assert len(base) == 16 and int(base, 16) >= 0
