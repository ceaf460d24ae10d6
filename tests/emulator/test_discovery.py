"""Discovery documents, the server-side Table format, /version, and the DynamicClient."""

from __future__ import annotations

import json

from kubernetes import client, dynamic

from tests.emulator.conftest import widget

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def test_core_and_group_discovery(raw) -> None:
    code, doc = raw("GET", "/api")
    assert code == 200 and doc["kind"] == "APIVersions" and doc["versions"] == ["v1"]
    _, groups = raw("GET", "/apis")
    names = {g["name"]: g for g in groups["groups"]}
    for group in (
        "apps",
        "coordination.k8s.io",
        "events.k8s.io",
        "apiextensions.k8s.io",
        "networking.istio.io",
    ):
        assert group in names
    assert names["networking.istio.io"]["preferredVersion"]["version"] == "v1"
    _, apps = raw("GET", "/apis/apps/v1")
    by_name = {r["name"]: r for r in apps["resources"]}
    assert by_name["deployments"]["shortNames"] == ["deploy"]
    assert by_name["deployments/scale"]["kind"] == "Scale"
    assert "watch" in by_name["deployments"]["verbs"]
    _, core = raw("GET", "/api/v1")
    assert {"pods", "services", "secrets", "configmaps", "events", "namespaces"} <= {
        r["name"] for r in core["resources"]
    }
    code, version = raw("GET", "/version")
    assert code == 200 and version["major"] == "1"


def test_crd_appears_in_discovery(widgets, raw) -> None:
    _, doc = raw("GET", "/apis/example.io/v1")
    res = {r["name"]: r for r in doc["resources"]}
    assert res["widgets"]["kind"] == "Widget" and res["widgets"]["shortNames"] == ["wd"]
    assert res["widgets"]["namespaced"] is True
    assert {"widgets/status", "widgets/scale"} <= set(res)


def test_table_format_with_printer_columns(widgets, raw) -> None:
    widgets.create_namespaced_custom_object(
        "example.io",
        "v1",
        "default",
        "widgets",
        widget("w1", weight=9),
    )
    widgets.patch_namespaced_custom_object_status(
        "example.io", "v1", "default", "widgets", "w1", {"status": {"phase": "Progressing"}}
    )
    code, table = raw("GET", "/apis/example.io/v1/namespaces/default/widgets", accept=TABLE)
    assert code == 200 and table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Phase", "Weight", "Age"]
    assert table["columnDefinitions"][0]["format"] == "name"
    row = table["rows"][0]
    assert row["cells"][:3] == ["w1", "Progressing", 9]
    assert row["cells"][3].endswith("s")
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert int(table["metadata"]["resourceVersion"]) > 0
    _, single = raw("GET", "/apis/example.io/v1/namespaces/default/widgets/w1", accept=TABLE)
    assert single["rows"][0]["cells"][0] == "w1"


def test_dynamic_client_discovers_and_uses_resources(kube_api: client.ApiClient) -> None:
    dc = dynamic.DynamicClient(kube_api)
    vs_api = dc.resources.get(api_version="networking.istio.io/v1", kind="VirtualService")
    vs_api.create(
        namespace="default",
        body={
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "vs"},
            "spec": {"hosts": ["a"]},
        },
    )
    assert [i.metadata.name for i in vs_api.get(namespace="default").items] == ["vs"]


def test_watch_with_table_accept_streams_tables(
    widgets, kube_api: client.ApiClient, emulator
) -> None:
    widgets.create_namespaced_custom_object(
        "example.io",
        "v1",
        "default",
        "widgets",
        widget("w1", weight=3),
    )
    resp = kube_api.call_api(
        "GET",
        emulator.url + "/apis/example.io/v1/namespaces/default/widgets?watch=1&timeoutSeconds=1",
        header_params={"Accept": TABLE},
    )
    lines = [json.loads(x) for x in resp.read().decode().splitlines() if x]
    assert [ev["type"] for ev in lines] == ["ADDED"]
    table = lines[0]["object"]
    assert table["kind"] == "Table" and table["rows"][0]["cells"][:3] == ["w1", None, 3]
