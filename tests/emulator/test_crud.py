"""CRUD semantics: 201 on create, 404/409 errors as Status bodies, resourceVersion, uid,
creationTimestamp, generation, PUT/PATCH conflicts, the three patch types, deletes."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.emulator.conftest import deployment, wait_for


def status_body(exc: ApiException) -> dict:
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["code"] == exc.status
    return body


def test_create_returns_201_with_server_metadata(core: client.CoreV1Api) -> None:
    cm, code, _ = core.create_namespaced_config_map_with_http_info(
        "default", {"metadata": {"name": "a"}, "data": {"k": "v"}}
    )
    assert code == 201
    assert cm.metadata.uid and cm.metadata.creation_timestamp is not None
    assert int(cm.metadata.resource_version) > 0
    assert cm.metadata.namespace == "default"


def test_resource_version_grows_on_every_write_and_on_lists(core: client.CoreV1Api) -> None:
    a = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    b = core.create_namespaced_config_map("default", {"metadata": {"name": "b"}})
    assert int(b.metadata.resource_version) > int(a.metadata.resource_version)
    c = core.patch_namespaced_config_map("a", "default", {"data": {"x": "1"}})
    assert int(c.metadata.resource_version) > int(b.metadata.resource_version)
    listed = core.list_namespaced_config_map("default")
    assert int(listed.metadata.resource_version) >= int(c.metadata.resource_version)


def test_already_exists_and_not_found_are_status_bodies(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    body = status_body(exc.value)
    assert (exc.value.status, body["reason"]) == (409, "AlreadyExists")
    assert body["message"] == 'configmaps "a" already exists'
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("nope", "default")
    body = status_body(exc.value)
    assert (exc.value.status, body["reason"]) == (404, "NotFound")
    assert body["details"] == {"name": "nope", "kind": "configmaps"}


def test_create_in_missing_namespace_is_404(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("ghost", {"metadata": {"name": "a"}})
    assert exc.value.status == 404
    assert status_body(exc.value)["message"] == 'namespaces "ghost" not found'


def test_generate_name(core: client.CoreV1Api) -> None:
    cm = core.create_namespaced_config_map("default", {"metadata": {"generateName": "cfg-"}})
    assert cm.metadata.name.startswith("cfg-") and len(cm.metadata.name) == 9


def test_put_with_stale_resource_version_conflicts(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    first = core.read_namespaced_config_map("a", "default")
    first.data = {"k": "1"}
    core.replace_namespaced_config_map("a", "default", first)
    first.data = {"k": "2"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map("a", "default", first)
    body = status_body(exc.value)
    assert (exc.value.status, body["reason"]) == (409, "Conflict")
    assert "the object has been modified" in body["message"]
    assert core.read_namespaced_config_map("a", "default").data == {"k": "1"}


def test_put_without_resource_version_is_unconditional(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "1"}})
    core.replace_namespaced_config_map(
        "a", "default", {"metadata": {"name": "a"}, "data": {"k": "2"}}
    )
    assert core.read_namespaced_config_map("a", "default").data == {"k": "2"}


def test_put_to_missing_object_is_404(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map("a", "default", {"metadata": {"name": "a"}})
    assert exc.value.status == 404


def test_merge_patch_with_stale_resource_version_conflicts(core: client.CoreV1Api) -> None:
    old = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "1"}})
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_config_map(
            "a",
            "default",
            {"metadata": {"resourceVersion": old.metadata.resource_version}, "data": {"k": "2"}},
        )
    assert exc.value.status == 409


def test_noop_write_keeps_resource_version(core: client.CoreV1Api) -> None:
    cm = core.create_namespaced_config_map(
        "default", {"metadata": {"name": "a"}, "data": {"k": "v"}}
    )
    same = core.patch_namespaced_config_map("a", "default", {"data": {"k": "v"}})
    assert same.metadata.resource_version == cm.metadata.resource_version


def test_generation_bumps_on_spec_only(apps: client.AppsV1Api) -> None:
    d = apps.create_namespaced_deployment("default", deployment("web"))
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment("web", "default", {"metadata": {"labels": {"x": "y"}}})
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment_status("web", "default", {"status": {"replicas": 7}})
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 3}})
    assert d.metadata.generation == 2


def test_status_subresource_separates_spec_and_status(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment("default", deployment("web", replicas=0))
    # A main-resource write cannot change status ...
    d = apps.patch_namespaced_deployment(
        "web", "default", {"spec": {"replicas": 0}, "status": {"observedGeneration": 99}}
    )
    assert d.status is None or d.status.observed_generation != 99
    # ... and a status write cannot change spec.
    d = apps.patch_namespaced_deployment_status(
        "web", "default", {"spec": {"replicas": 5}, "status": {"observedGeneration": 99}}
    )
    assert d.spec.replicas == 0 and d.status.observed_generation == 99


def test_json_patch_and_failed_test_op(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"k": "1"}})
    cm = core.patch_namespaced_config_map(
        "a",
        "default",
        [
            {"op": "test", "path": "/data/k", "value": "1"},
            {"op": "replace", "path": "/data/k", "value": "2"},
            {"op": "add", "path": "/data/n", "value": "3"},
        ],
        _content_type="application/json-patch+json",
    )
    assert cm.data == {"k": "2", "n": "3"}
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_config_map(
            "a",
            "default",
            [{"op": "test", "path": "/data/k", "value": "1"}],
            _content_type="application/json-patch+json",
        )
    assert exc.value.status == 422


def create_web_with_sidecar(apps: client.AppsV1Api) -> None:
    d = deployment("web")
    d["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "envoy:1"})
    apps.create_namespaced_deployment("default", d)


def patch_web_containers(
    apps: client.AppsV1Api, containers: list[dict[str, Any]], content_type: str
) -> Any:
    """PATCH the containers of web's pod template with a patch of ``content_type``."""
    return apps.patch_namespaced_deployment(
        "web",
        "default",
        {"spec": {"template": {"spec": {"containers": containers}}}},
        _content_type=content_type,
    )


def test_strategic_merge_patch_merges_containers_by_name(apps: client.AppsV1Api) -> None:
    create_web_with_sidecar(apps)
    out = patch_web_containers(
        apps,
        [{"name": "app", "image": "podinfo:2"}],
        "application/strategic-merge-patch+json",
    )
    containers = {c.name: c for c in out.spec.template.spec.containers}
    assert containers["app"].image == "podinfo:2"
    assert containers["app"].ports[0].container_port == 9898  # kept by the merge
    assert containers["sidecar"].image == "envoy:1"
    # A merge patch replaces the list instead.
    out = patch_web_containers(
        apps, [{"name": "app", "image": "podinfo:3"}], "application/merge-patch+json"
    )
    assert [c.name for c in out.spec.template.spec.containers] == ["app"]


def test_strategic_merge_patch_delete_directive(apps: client.AppsV1Api) -> None:
    create_web_with_sidecar(apps)
    out = patch_web_containers(
        apps,
        [{"name": "sidecar", "$patch": "delete"}],
        "application/strategic-merge-patch+json",
    )
    assert [c.name for c in out.spec.template.spec.containers] == ["app"]


def test_service_ports_merge_by_port(core: client.CoreV1Api) -> None:
    core.create_namespaced_service(
        "default",
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]},
        },
    )
    svc = core.patch_namespaced_service(
        "web", "default", {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}
    )
    assert len(svc.spec.ports) == 1
    assert svc.spec.ports[0].name == "http" and svc.spec.ports[0].target_port == 8080


def test_delete_then_404_and_cascade_to_owned(core: client.CoreV1Api) -> None:
    owner = core.create_namespaced_config_map("default", {"metadata": {"name": "owner"}})
    core.create_namespaced_config_map(
        "default",
        {
            "metadata": {
                "name": "dep",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": "owner",
                        "uid": owner.metadata.uid,
                    }
                ],
            }
        },
    )
    core.delete_namespaced_config_map("owner", "default")
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("owner", "default")
    assert exc.value.status == 404

    # The garbage collector removes the dependent shortly after (asynchronously, as in a
    # cluster: see test_gc.py).
    def dep_gone() -> bool:
        try:
            core.read_namespaced_config_map("dep", "default")
        except ApiException as err:
            return err.status == 404
        return False

    wait_for(dep_gone)


def test_finalizers_delay_deletion(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "a", "finalizers": ["example.io/keep"]}}
    )
    core.delete_namespaced_config_map("a", "default")
    held = core.read_namespaced_config_map("a", "default")
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("a", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("a", "default")
    assert exc.value.status == 404


def test_cluster_scoped_namespace_crud_and_cascade(core: client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "team"}})
    core.create_namespaced_secret("team", {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    assert core.read_namespaced_secret("s", "team").data == {"k": "dg=="}
    core.delete_namespace("team")
    # Asynchronous, as in kube: Terminating, its content deleted, then gone (kubectl waits).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            core.read_namespace("team")
        except ApiException as exc:
            assert exc.status == 404
            break
        time.sleep(0.05)
    else:
        pytest.fail("namespace team still there after 10 s")
    assert core.list_secret_for_all_namespaces().items == []


def test_invalid_builtin_is_422_naming_the_field(apps: client.AppsV1Api) -> None:
    bad = deployment("web")
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(ApiException) as exc:
        apps.create_namespaced_deployment("default", bad)
    body = status_body(exc.value)
    assert (exc.value.status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "spec.template.metadata.labels"
    assert body["message"].startswith('Deployment.apps "web" is invalid: spec.template')


def test_leases_and_events(kube_api: client.ApiClient) -> None:
    coord = client.CoordinationV1Api(kube_api)
    lease = coord.create_namespaced_lease(
        "default",
        {
            "metadata": {"name": "canaryd"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
        },
    )
    lease.spec.holder_identity = "b"
    coord.replace_namespaced_lease("canaryd", "default", lease)
    lease.spec.holder_identity = "c"
    with pytest.raises(ApiException) as exc:  # a second elector with a stale copy loses
        coord.replace_namespaced_lease("canaryd", "default", lease)
    assert exc.value.status == 409
    ev = client.EventsV1Api(kube_api).create_namespaced_event(
        "default",
        {
            "metadata": {"name": "r.1"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reason": "Promoted",
            "note": "done",
            "type": "Normal",
            "action": "Promote",
            "reportingController": "canaryd",
            "reportingInstance": "canaryd-0",
            "regarding": {"kind": "Rollout", "name": "r", "namespace": "default"},
        },
    )
    assert ev.reason == "Promoted"
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "r.2"},
            "reason": "Started",
            "message": "m",
            "type": "Normal",
            "involvedObject": {"kind": "Rollout", "name": "r", "namespace": "default"},
        },
    )
    found = core.list_namespaced_event("default", field_selector="involvedObject.name=r")
    assert [e.reason for e in found.items] == ["Started"]


def test_list_pagination(core: client.CoreV1Api) -> None:
    for i in range(5):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
    page = core.list_namespaced_config_map("default", limit=2)
    names = [c.metadata.name for c in page.items]
    while page.metadata._continue:
        page = core.list_namespaced_config_map(
            "default", limit=2, _continue=page.metadata._continue
        )
        names += [c.metadata.name for c in page.items]
    assert names == ["c0", "c1", "c2", "c3", "c4"]


def test_dry_run_changes_nothing(core: client.CoreV1Api) -> None:
    out = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}}, dry_run="All")
    assert out.metadata.name == "a"
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("a", "default")
    assert exc.value.status == 404
