"""docs/rollout.md stays true: its complete example is accepted by the model and the CRD, and
every spec field of the CRD is documented."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from canaryd.api.models import Rollout

from .test_crds import schema_accepts, schema_of

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "rollout.md").read_text(encoding="utf-8")


def yaml_blocks() -> list[Any]:
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S)]


def test_the_complete_example_is_valid_for_model_and_crd() -> None:
    [example] = [b for b in yaml_blocks() if b.get("kind") == "Rollout"]
    rollout = Rollout.model_validate(example)
    assert rollout.spec.schedule.weights() == [5, 10, 25, 50]
    assert schema_accepts("rollouts.yaml", example)
    # the example exercises every top-level spec field
    fields = set(schema_of("rollouts.yaml")["properties"]["spec"]["properties"])
    # one traffic mode only (service); the router is named explicitly; abTest, mirror and
    # sessionAffinity change how traffic moves (documented in their own section)
    assert set(example["spec"]) == fields - {
        "virtualServiceRef",
        "httpRouteRef",
        "abTest",
        "mirror",
        "sessionAffinity",
    }


def spec_paths(node: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        yield path
        yield from spec_paths(child, f"{path}.")
        if "items" in child:
            yield from spec_paths(child["items"], f"{path}[].")


def test_every_spec_field_is_documented() -> None:
    spec = schema_of("rollouts.yaml")["properties"]["spec"]
    paths = list(spec_paths(spec))
    assert len(paths) > 60
    missing = []
    for path in paths:
        if path.startswith(("analysis.metrics[].", "webhooks[].", "alerts[].")):
            # documented in the list's own table by leaf name (refs as `{name, namespace}`)
            documented = f"`{path.rsplit('.', 1)[-1]}" in DOC or "{name, namespace}" in DOC
        else:
            parent, _, leaf = path.rpartition(".")
            documented = (
                f"`{path}`" in DOC
                or f"`{path}." in DOC
                or (leaf in ("name", "key", "namespace") and f"`{parent}`" in DOC)
            )
        if not documented:
            missing.append(path)
    assert missing == []
