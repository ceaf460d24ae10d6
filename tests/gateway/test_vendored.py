"""The Gateway API CRDs vendored into kubeemu/gateway_api_crds/ are the project's copy, byte for
byte, and the emulator serves every kind with its schema (an invalid object is refused)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from .conftest import SHARED_GATEWAY_API, VENDORED_GATEWAY_API

GROUP = "gateway.networking.k8s.io"
FILES = [
    "gatewayclasses.crd.yaml",
    "gateways.crd.yaml",
    "grpcroutes.crd.yaml",
    "httproutes.crd.yaml",
    "referencegrants.crd.yaml",
]


@pytest.mark.skipif(not SHARED_GATEWAY_API.is_dir(), reason="no ../shared/gateway-api here")
@pytest.mark.parametrize("name", FILES)
def test_vendored_crds_equal_the_shared_ones(name: str) -> None:
    assert (VENDORED_GATEWAY_API / name).read_bytes() == (SHARED_GATEWAY_API / name).read_bytes()


def test_the_emulator_serves_the_gateway_api_kinds(api: ApiClient) -> None:
    found = CustomObjectsApi(api).get_api_resources(GROUP, "v1")
    kinds = {r.kind for r in found.resources if "/" not in r.name}
    assert {"HTTPRoute", "GRPCRoute", "Gateway", "GatewayClass", "ReferenceGrant"} <= kinds


def _route(name: str, **rule: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [{"backendRefs": [{"name": "svc", "port": 80, **rule}]}],
        },
    }


def test_an_httproute_gets_the_schema_defaults(api: ApiClient) -> None:
    custom = CustomObjectsApi(api)
    stored = custom.create_namespaced_custom_object(
        GROUP, "v1", "default", "httproutes", _route("defaults")
    )
    [rule] = stored["spec"]["rules"]
    assert rule["backendRefs"][0] == {
        "group": "",
        "kind": "Service",
        "name": "svc",
        "port": 80,
        "weight": 1,
    }
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert stored["spec"]["parentRefs"][0]["kind"] == "Gateway"


@pytest.mark.parametrize(
    "bad",
    [{"weight": -1}, {"weight": 1_000_001}, {"weight": "10"}, {"port": 70000}],
)
def test_an_invalid_httproute_is_refused(api: ApiClient, bad: dict[str, Any]) -> None:
    custom = CustomObjectsApi(api)
    with pytest.raises(ApiException) as info:
        custom.create_namespaced_custom_object(
            GROUP, "v1", "default", "httproutes", _route("bad", **bad)
        )
    assert info.value.status == 422


def test_a_grpcroute_and_a_gateway_are_validated_too(api: ApiClient) -> None:
    custom = CustomObjectsApi(api)
    gateway = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 80}]},
    }
    with pytest.raises(ApiException) as info:  # a listener needs its protocol
        custom.create_namespaced_custom_object(GROUP, "v1", "default", "gateways", gateway)
    assert info.value.status == 422
    gateway["spec"]["listeners"][0]["protocol"] = "HTTP"
    custom.create_namespaced_custom_object(GROUP, "v1", "default", "gateways", gateway)
    grpc = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": "g"},
        "spec": {"rules": [{"backendRefs": [{"name": "svc", "port": 9090, "weight": 100}]}]},
    }
    stored = custom.create_namespaced_custom_object(GROUP, "v1", "default", "grpcroutes", grpc)
    assert stored["spec"]["rules"][0]["backendRefs"][0]["kind"] == "Service"


@pytest.mark.parametrize(
    ("istio", "gateway_api", "expected"),
    [
        (True, None, {"istio", "gateway"}),
        (False, None, set()),  # install_istio=False alone: no built-in CRDs, as before
        (False, True, {"gateway"}),
        (True, False, {"istio"}),
    ],
)
def test_which_builtin_crds_are_installed(
    istio: bool, gateway_api: bool | None, expected: set[str]
) -> None:
    from kubernetes.client import ApiextensionsV1Api  # noqa: PLC0415

    from kubeemu import Emulator  # noqa: PLC0415

    with Emulator(install_istio=istio, install_gateway_api=gateway_api) as emu:
        api = emu.api_client()
        try:
            groups = {
                c.spec.group
                for c in ApiextensionsV1Api(api).list_custom_resource_definition().items
            }
        finally:
            api.close()
    names = {"networking.istio.io": "istio", GROUP: "gateway"}
    assert {names[g] for g in groups} == expected
