"""Deletion as kube-apiserver and kube-controller-manager do it (issue 10, item 6):
finalizers hold objects, the garbage collector removes dependents asynchronously according to
``propagationPolicy`` (docs: "Garbage Collection", "Use Cascading Deletion"; code:
pkg/controller/garbagecollector), namespaces go Terminating before they vanish
(pkg/controller/namespace), and DELETE on a collection deletes what matches."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.emulator.conftest import deployment, wait_for


def owned_by(owner: Any, name: str, *, block: bool = False, **meta: Any) -> dict[str, Any]:
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name}
    ref["uid"] = owner.metadata.uid
    if block:
        ref["blockOwnerDeletion"] = True
    return {"metadata": {"name": name, "ownerReferences": [ref], **meta}}


def exists(core: client.CoreV1Api, name: str, namespace: str = "default") -> Any:
    try:
        return core.read_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def unfinalize(core: client.CoreV1Api, name: str, namespace: str = "default") -> None:
    core.patch_namespaced_config_map(name, namespace, {"metadata": {"finalizers": None}})


def test_background_deletes_owner_now_and_dependents_after(core: client.CoreV1Api) -> None:
    """Background (the default): the owner goes at once; dependents are collected; a
    dependent with a finalizer is only marked (deletionTimestamp) until it is removed."""
    owner = core.create_namespaced_config_map("default", {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map("default", owned_by(owner, "plain"))
    core.create_namespaced_config_map(
        "default", owned_by(owner, "held", finalizers=["example.io/keep"])
    )
    core.delete_namespaced_config_map("owner", "default")
    assert exists(core, "owner") is None
    wait_for(lambda: exists(core, "plain") is None)
    held = wait_for(
        lambda: (x := exists(core, "held")) is not None and x.metadata.deletion_timestamp and x
    )
    assert held.metadata.finalizers == ["example.io/keep"]
    unfinalize(core, "held")
    wait_for(lambda: exists(core, "held") is None)


def test_foreground_waits_for_blocking_dependents(core: client.CoreV1Api) -> None:
    """Foreground: the owner gets ``foregroundDeletion`` and a deletionTimestamp, its
    dependents are deleted, and it goes only when no blockOwnerDeletion dependent is left."""
    owner = core.create_namespaced_config_map("default", {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map(
        "default", owned_by(owner, "blocker", block=True, finalizers=["example.io/keep"])
    )
    core.create_namespaced_config_map("default", owned_by(owner, "plain", block=True))
    core.delete_namespaced_config_map(
        "owner", "default", body=client.V1DeleteOptions(propagation_policy="Foreground")
    )
    out = exists(core, "owner")
    assert out is not None and out.metadata.deletion_timestamp is not None
    assert "foregroundDeletion" in out.metadata.finalizers
    wait_for(lambda: exists(core, "plain") is None)
    blocker = exists(core, "blocker")
    assert blocker is not None and blocker.metadata.deletion_timestamp is not None
    held = exists(core, "owner")
    assert held is not None and held.metadata.finalizers == ["foregroundDeletion"]
    unfinalize(core, "blocker")
    wait_for(lambda: exists(core, "blocker") is None and exists(core, "owner") is None)


def test_orphan_keeps_dependents_without_the_reference(core: client.CoreV1Api) -> None:
    owner = core.create_namespaced_config_map("default", {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map("default", owned_by(owner, "dep"))
    core.delete_namespaced_config_map(
        "owner", "default", body=client.V1DeleteOptions(propagation_policy="Orphan")
    )
    wait_for(lambda: exists(core, "owner") is None)
    dep = wait_for(lambda: (x := exists(core, "dep")) and not x.metadata.owner_references and x)
    assert dep.metadata.deletion_timestamp is None


def test_deployment_deletion_collects_replica_sets_and_pods(
    apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    apps.create_namespaced_deployment("default", deployment("web", replicas=2))
    wait_for(lambda: len(core.list_namespaced_pod("default", label_selector="app=web").items) == 2)
    apps.delete_namespaced_deployment("web", "default")
    wait_for(
        lambda: (
            not core.list_namespaced_pod("default", label_selector="app=web").items
            and not apps.list_namespaced_replica_set("default", label_selector="app=web").items
        )
    )


def test_namespace_goes_terminating_then_vanishes(core: client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "team"}})
    core.create_namespaced_config_map("team", {"metadata": {"name": "plain"}})
    core.create_namespaced_config_map(
        "team", {"metadata": {"name": "held", "finalizers": ["example.io/keep"]}}
    )
    core.delete_namespace("team")
    out = core.read_namespace("team")
    assert out.status.phase == "Terminating" and out.metadata.deletion_timestamp is not None
    # New content is refused while it terminates (403, NamespaceTerminating).
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("team", {"metadata": {"name": "late"}})
    body = json.loads(exc.value.body)
    assert (exc.value.status, body["reason"]) == (403, "Forbidden")
    assert body["message"] == (
        'configmaps "late" is forbidden: unable to create new content in namespace team '
        "because it is being terminated"
    )
    assert body["details"]["causes"][0]["reason"] == "NamespaceTerminating"
    wait_for(lambda: exists(core, "plain", "team") is None)

    def reported() -> Any:
        ns = core.read_namespace("team")
        conds = {c.type: c for c in ns.status.conditions or []}
        return conds.get("NamespaceFinalizersRemaining")

    cond = wait_for(reported)
    assert cond.message == (
        "Some content in the namespace has finalizers remaining: example.io/keep in 1 "
        "resource instances"
    )
    assert core.read_namespace("team").status.phase == "Terminating"
    unfinalize(core, "held", "team")

    def gone() -> bool:
        try:
            core.read_namespace("team")
        except ApiException as err:
            return err.status == 404
        return False

    wait_for(gone)


def test_delete_collection_deletes_what_matches(core: client.CoreV1Api) -> None:
    for name, tier in (("a", "web"), ("b", "web"), ("c", "db")):
        core.create_namespaced_config_map(
            "default", {"metadata": {"name": name, "labels": {"tier": tier}}}
        )
    out = core.delete_collection_namespaced_config_map("default", label_selector="tier=web")
    assert out.status == "Success" or out.kind in (None, "ConfigMapList", "Status")
    left = {c.metadata.name for c in core.list_namespaced_config_map("default").items}
    assert {"a", "b"}.isdisjoint(left) and "c" in left


def test_delete_collection_answers_the_deleted_list(raw: Any) -> None:
    """The answer is the list of what was deleted (genericregistry.Store.DeleteCollection)."""
    for name in ("a", "b"):
        code, _ = raw(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            body={"metadata": {"name": name, "labels": {"t": "1"}}},
        )
        assert code == 201
    code, body = raw("DELETE", "/api/v1/namespaces/default/configmaps?labelSelector=t%3D1")
    assert code == 200
    assert body["kind"] == "ConfigMapList"
    assert sorted(i["metadata"]["name"] for i in body["items"]) == ["a", "b"]
