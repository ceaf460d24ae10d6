"""Custom resources: CRDs register resources dynamically; schema validation (422 naming the
field), pruning, defaulting; status and scale subresources; Istio's VirtualService schema."""

from __future__ import annotations

import json

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubeemu import Emulator
from tests.emulator.conftest import WIDGET_CRD, widget


def invalid_causes(exc: ApiException) -> list[dict]:
    assert exc.status == 422
    body = json.loads(exc.body)
    assert body["reason"] == "Invalid"
    return body["details"]["causes"]


def test_crd_registers_resource_and_status(
    kube_api: client.ApiClient, custom: client.CustomObjectsApi
) -> None:
    ext = client.ApiextensionsV1Api(kube_api)
    with pytest.raises(ApiException) as exc:
        custom.list_namespaced_custom_object("example.io", "v1", "default", "widgets")
    assert exc.value.status == 404
    crd = ext.create_custom_resource_definition(WIDGET_CRD)
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    created = custom.create_namespaced_custom_object(
        "example.io", "v1", "default", "widgets", widget("w1")
    )
    assert created["metadata"]["generation"] == 1
    ext.delete_custom_resource_definition("widgets.example.io")
    with pytest.raises(ApiException) as exc:
        custom.list_namespaced_custom_object("example.io", "v1", "default", "widgets")
    assert exc.value.status == 404


def test_schema_violation_is_422_with_field_path(widgets: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as exc:
        widgets.create_namespaced_custom_object(
            "example.io", "v1", "default", "widgets", widget("w1", weight=150)
        )
    causes = invalid_causes(exc.value)
    assert causes[0]["field"] == "spec.weight"
    assert "should be less than or equal to 100" in causes[0]["message"]
    with pytest.raises(ApiException) as exc:
        widgets.create_namespaced_custom_object(
            "example.io", "v1", "default", "widgets", widget("w2", weight="heavy", mode="turbo")
        )
    fields = {c["field"]: c for c in invalid_causes(exc.value)}
    assert set(fields) == {"spec.weight", "spec.mode"}
    assert fields["spec.mode"]["reason"] == "FieldValueNotSupported"
    assert 'Widget.example.io "w2" is invalid: [' in json.loads(exc.value.body)["message"]
    with pytest.raises(ApiException) as exc:
        widgets.create_namespaced_custom_object(
            "example.io",
            "v1",
            "default",
            "widgets",
            {
                "apiVersion": "example.io/v1",
                "kind": "Widget",
                "metadata": {"name": "w3"},
                "spec": {},
            },
        )
    assert invalid_causes(exc.value)[0]["field"] == "spec.weight"


def test_updates_are_validated_too(widgets: client.CustomObjectsApi) -> None:
    widgets.create_namespaced_custom_object("example.io", "v1", "default", "widgets", widget("w"))
    with pytest.raises(ApiException) as exc:
        widgets.patch_namespaced_custom_object(
            "example.io", "v1", "default", "widgets", "w", {"spec": {"weight": 0}}
        )
    assert invalid_causes(exc.value)[0]["field"] == "spec.weight"


def test_unknown_fields_pruned_defaults_applied(widgets: client.CustomObjectsApi) -> None:
    obj = widget("w1", junk=True, extra={"free": {"form": 1}})
    obj["topLevelJunk"] = 1
    created = widgets.create_namespaced_custom_object("example.io", "v1", "default", "widgets", obj)
    assert "junk" not in created["spec"] and "topLevelJunk" not in created
    assert created["spec"]["extra"] == {"free": {"form": 1}}  # preserve-unknown-fields
    assert created["spec"]["mode"] == "slow"  # schema default


def test_status_subresource_of_custom_resource(widgets: client.CustomObjectsApi) -> None:
    created = widgets.create_namespaced_custom_object(
        "example.io", "v1", "default", "widgets", {**widget("w1"), "status": {"phase": "x"}}
    )
    assert "status" not in created  # status is not settable on create
    out = widgets.patch_namespaced_custom_object_status(
        "example.io",
        "v1",
        "default",
        "widgets",
        "w1",
        {"spec": {"weight": 50}, "status": {"phase": "Progressing"}},
    )
    assert out["spec"]["weight"] == 5 and out["status"]["phase"] == "Progressing"
    assert out["metadata"]["generation"] == 1
    out = widgets.patch_namespaced_custom_object(
        "example.io",
        "v1",
        "default",
        "widgets",
        "w1",
        {"spec": {"weight": 50}, "status": {"phase": "Failed"}},
    )
    assert out["spec"]["weight"] == 50 and out["status"]["phase"] == "Progressing"
    assert out["metadata"]["generation"] == 2
    stale = dict(out)
    widgets.replace_namespaced_custom_object_status(
        "example.io", "v1", "default", "widgets", "w1", {**out, "status": {"phase": "Done"}}
    )
    with pytest.raises(ApiException) as exc:
        widgets.replace_namespaced_custom_object_status(
            "example.io", "v1", "default", "widgets", "w1", {**stale, "status": {"phase": "Old"}}
        )
    assert exc.value.status == 409


def test_scale_subresource_of_custom_resource(widgets: client.CustomObjectsApi) -> None:
    widgets.create_namespaced_custom_object(
        "example.io", "v1", "default", "widgets", widget("w1", replicas=2)
    )
    scale = widgets.get_namespaced_custom_object_scale(
        "example.io", "v1", "default", "widgets", "w1"
    )
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2
    widgets.patch_namespaced_custom_object_scale(
        "example.io", "v1", "default", "widgets", "w1", {"spec": {"replicas": 4}}
    )
    got = widgets.get_namespaced_custom_object("example.io", "v1", "default", "widgets", "w1")
    assert got["spec"]["replicas"] == 4


def test_strategic_merge_patch_refused_for_custom_resources(
    widgets: client.CustomObjectsApi, raw
) -> None:
    widgets.create_namespaced_custom_object("example.io", "v1", "default", "widgets", widget("w"))
    code, body = raw(
        "PATCH",
        "/apis/example.io/v1/namespaces/default/widgets/w",
        body={"spec": {"weight": 2}},
        content_type="application/strategic-merge-patch+json",
    )
    assert code == 415 and body["reason"] == "UnsupportedMediaType"


def virtual_service(name: str, weights: tuple) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {
            "hosts": ["podinfo"],
            "http": [
                {
                    "name": "primary",
                    "route": [
                        {"destination": {"host": "podinfo-primary"}, "weight": weights[0]},
                        {"destination": {"host": "podinfo-canary"}, "weight": weights[1]},
                    ],
                }
            ],
        },
    }


def test_istio_virtual_service_schema_enforced(custom: client.CustomObjectsApi) -> None:
    ok = custom.create_namespaced_custom_object(
        "networking.istio.io", "v1", "default", "virtualservices", virtual_service("vs", (95, 5))
    )
    assert ok["spec"]["http"][0]["route"][1]["weight"] == 5
    with pytest.raises(ApiException) as exc:
        custom.create_namespaced_custom_object(
            "networking.istio.io",
            "v1",
            "default",
            "virtualservices",
            virtual_service("bad", ("95", 5)),
        )
    assert invalid_causes(exc.value)[0]["field"] == "spec.http[0].route[0].weight"
    bad = virtual_service("bad2", (95, 5))
    bad["spec"]["http"][0]["route"][0]["destination"] = {"port": {"number": 80}}  # no host
    with pytest.raises(ApiException) as exc:
        custom.create_namespaced_custom_object(
            "networking.istio.io", "v1", "default", "virtualservices", bad
        )
    assert invalid_causes(exc.value)[0]["field"] == "spec.http[0].route[0].destination.host"
    # the same objects through an older served version share storage
    got = custom.get_namespaced_custom_object(
        "networking.istio.io", "v1beta1", "default", "virtualservices", "vs"
    )
    assert got["apiVersion"] == "networking.istio.io/v1beta1"


def test_json_patch_on_virtual_service_weights(custom: client.CustomObjectsApi) -> None:
    custom.create_namespaced_custom_object(
        "networking.istio.io", "v1", "default", "virtualservices", virtual_service("vs", (100, 0))
    )
    out = custom.patch_namespaced_custom_object(
        "networking.istio.io",
        "v1",
        "default",
        "virtualservices",
        "vs",
        [
            {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 90},
            {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 10},
        ],
        _content_type="application/json-patch+json",
    )
    assert [r["weight"] for r in out["spec"]["http"][0]["route"]] == [90, 10]


def test_extra_crd_paths_installed_at_start(tmp_path) -> None:
    (tmp_path / "widgets.yaml").write_text(yaml.safe_dump(WIDGET_CRD))
    emu = Emulator(crd_paths=[tmp_path], install_istio=False).start()
    try:
        api = emu.api_client()
        names = [
            c.metadata.name
            for c in client.ApiextensionsV1Api(api).list_custom_resource_definition().items
        ]
        assert names == ["widgets.example.io"]
        api.close()
    finally:
        emu.stop()


def test_kubernetes_schema_extensions(
    kube_api: client.ApiClient, custom: client.CustomObjectsApi
) -> None:
    crd = json.loads(json.dumps(WIDGET_CRD))
    crd["metadata"]["name"] = "gadgets.example.io"
    crd["spec"]["names"] = {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"}
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] = {
        "type": "object",
        "properties": {
            "maxSurge": {"x-kubernetes-int-or-string": True},
            "note": {"type": "string", "nullable": True},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    client.ApiextensionsV1Api(kube_api).create_custom_resource_definition(crd)

    def make(name: str, spec: dict) -> dict:
        return custom.create_namespaced_custom_object(
            "example.io",
            "v1",
            "default",
            "gadgets",
            {
                "apiVersion": "example.io/v1",
                "kind": "Gadget",
                "metadata": {"name": name},
                "spec": spec,
            },
        )

    assert make("a", {"maxSurge": 1, "note": None})["spec"]["maxSurge"] == 1
    assert make("b", {"maxSurge": "25%", "labels": {"x": "y"}})["spec"]["labels"] == {"x": "y"}
    with pytest.raises(ApiException) as exc:
        make("c", {"maxSurge": 1.5})
    assert invalid_causes(exc.value)[0]["field"] == "spec.maxSurge"
    with pytest.raises(ApiException) as exc:
        make("d", {"labels": {"x": 1}})
    assert invalid_causes(exc.value)[0]["field"] == "spec.labels.x"
