"""Fault injection (fail_next, latency, drop_watches is in test_watch) and the audit log."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeemu import Emulator


def test_fail_next_then_recover(emulator: Emulator, core: client.CoreV1Api) -> None:
    emulator.faults.fail_next(2, status=503)
    for _ in range(2):
        with pytest.raises(ApiException) as exc:
            core.list_namespace()
        assert exc.value.status == 503
        assert json.loads(exc.value.body)["reason"] == "ServiceUnavailable"
    assert core.list_namespace().items


def test_fail_next_filters_by_verb_and_resource(emulator: Emulator, core: client.CoreV1Api) -> None:
    emulator.faults.fail_next(1, status=409, verb="update", resource="configmaps")
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    core.read_namespaced_config_map("a", "default")  # other verbs pass
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map("a", "default", {"metadata": {"name": "a"}})
    assert exc.value.status == 409
    core.replace_namespaced_config_map("a", "default", {"metadata": {"name": "a"}})


def test_fail_next_429_sets_retry_after(emulator: Emulator, core: client.CoreV1Api) -> None:
    # urllib3 under the official client honours Retry-After on 429: one retry, then success.
    emulator.faults.fail_next(1, status=429, verb="list")
    emulator.clear_audit()
    began = time.monotonic()
    assert core.list_namespace().items
    assert time.monotonic() - began >= 1.0
    assert [r.code for r in emulator.audit] == [429, 200]


def test_latency(emulator: Emulator, core: client.CoreV1Api) -> None:
    # A full second of injected latency, so that "without it" can be told apart on a loaded
    # 2-core CI machine (a plain GET there takes a few ms, occasionally a few hundred).
    emulator.faults.set_latency(1.0, verb="get")
    began = time.monotonic()
    core.read_namespace("default")
    assert time.monotonic() - began >= 1.0
    emulator.faults.set_latency(0)
    began = time.monotonic()
    core.read_namespace("default")
    assert time.monotonic() - began < 1.0


def test_audit_records_every_request(emulator: Emulator, core: client.CoreV1Api) -> None:
    emulator.clear_audit()
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "v"}})
    core.list_config_map_for_all_namespaces()
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("nope", "default")
    core.delete_namespaced_config_map("a", "default")
    got = [(r.verb, r.api_group, r.resource, r.namespace, r.name, r.code) for r in emulator.audit]
    assert got == [
        ("create", "", "configmaps", "default", "", 201),
        ("patch", "", "configmaps", "default", "a", 200),
        ("list", "", "configmaps", "", "", 200),
        ("get", "", "configmaps", "default", "nope", 404),
        ("delete", "", "configmaps", "default", "a", 200),
    ]


def test_audit_subresources_and_rbac_rules(emulator: Emulator, apps: client.AppsV1Api) -> None:
    emulator.clear_audit()
    apps.create_namespaced_deployment(
        "default",
        {
            "metadata": {"name": "w"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"a": "w"}},
                "template": {
                    "metadata": {"labels": {"a": "w"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            },
        },
    )
    apps.patch_namespaced_deployment_scale("w", "default", {"spec": {"replicas": 1}})
    rec = emulator.audit[-1]
    assert (rec.verb, rec.api_group, rec.resource, rec.subresource) == (
        "patch",
        "apps",
        "deployments",
        "scale",
    )
    assert emulator.rbac_rules() == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create"]},
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},
    ]
