"""kube-apiserver semantics pinned to its source (issue 10, items 2, 3, 4 and 7).

Each test names the code whose behaviour it reproduces; the messages are those the real
server writes, so a client branching on ``reason``/``code``/``message`` sees the same thing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.emulator.conftest import deployment, widget


def _status(exc: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    assert body["kind"] == "Status" and body["code"] == exc.status
    return body


def _lease(name: str = "l", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"holderIdentity": "a", **spec}}


# ---- item 2: PUT without resourceVersion -------------------------------------------------


def test_lease_put_without_resource_version_is_invalid(kube_api: client.ApiClient) -> None:
    """leaseStrategy.AllowUnconditionalUpdate() is false, so genericregistry.Store.Update
    answers ``field.Invalid(metadata.resourceVersion, 0, "must be specified for an update")``
    with the *resource* as the kind (``leases.coordination.k8s.io``)."""
    coord = client.CoordinationV1Api(kube_api)
    coord.create_namespaced_lease("default", _lease())
    with pytest.raises(ApiException) as exc:
        coord.replace_namespaced_lease("l", "default", _lease(holderIdentity="b"))
    body = _status(exc.value)
    assert (exc.value.status, body["reason"]) == (422, "Invalid")
    assert body["message"] == (
        'leases.coordination.k8s.io "l" is invalid: metadata.resourceVersion: Invalid value: '
        "0x0: must be specified for an update"
    )
    assert body["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 0x0: must be specified for an update",
            "field": "metadata.resourceVersion",
        }
    ]
    assert coord.read_namespaced_lease("l", "default").spec.holder_identity == "a"
    # With the resourceVersion it read, the same PUT succeeds; patches need none.
    current = coord.read_namespaced_lease("l", "default")
    current.spec.holder_identity = "b"
    assert coord.replace_namespaced_lease("l", "default", current).spec.holder_identity == "b"
    patched = coord.patch_namespaced_lease("l", "default", {"spec": {"holderIdentity": "c"}})
    assert patched.spec.holder_identity == "c"


def test_custom_resource_put_without_resource_version_is_invalid(
    widgets: client.CustomObjectsApi,
) -> None:
    """customResourceStrategy.AllowUnconditionalUpdate() is false (apiextensions-apiserver),
    for the main resource and the status subresource alike."""
    widgets.create_namespaced_custom_object("example.io", "v1", "default", "widgets", widget("w"))
    for replace in (
        widgets.replace_namespaced_custom_object,
        widgets.replace_namespaced_custom_object_status,
    ):
        with pytest.raises(ApiException) as exc:
            replace("example.io", "v1", "default", "widgets", "w", widget("w", weight=7))
        body = _status(exc.value)
        assert exc.value.status == 422
        assert body["message"] == (
            'widgets.example.io "w" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
            "must be specified for an update"
        )
    got = widgets.get_namespaced_custom_object("example.io", "v1", "default", "widgets", "w")
    assert got["spec"]["weight"] == 5


def test_deployment_put_without_resource_version_is_unconditional(
    apps: client.AppsV1Api,
) -> None:
    """deploymentStrategy.AllowUnconditionalUpdate() is true: the PUT simply wins."""
    apps.create_namespaced_deployment("default", deployment("web"))
    out = apps.replace_namespaced_deployment("web", "default", deployment("web", replicas=3))
    assert out.spec.replicas == 3


# ---- item 3: Lease validation and MicroTime --------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"leaseDurationSeconds": 0},
            'Lease.coordination.k8s.io "l" is invalid: spec.leaseDurationSeconds: Invalid '
            "value: 0: must be greater than 0",
        ),
        (
            {"leaseDurationSeconds": -3},
            'Lease.coordination.k8s.io "l" is invalid: spec.leaseDurationSeconds: Invalid '
            "value: -3: must be greater than 0",
        ),
        (
            {"leaseTransitions": -1},
            'Lease.coordination.k8s.io "l" is invalid: spec.leaseTransitions: Invalid value: '
            "-1: must be greater than or equal to 0",
        ),
    ],
)
def test_lease_spec_validation(raw: Any, spec: dict[str, Any], message: str) -> None:
    """ValidateLeaseSpec (pkg/apis/coordination/validation/validation.go): 422."""
    code, body = raw(
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
        body=_lease(**spec),
    )
    assert (code, body["reason"], body["message"]) == (422, "Invalid", message)


@pytest.mark.parametrize(
    ("spec", "tail"),
    [
        (
            {"holderIdentity": 7},
            "json: cannot unmarshal number into Go struct field LeaseSpec.spec.holderIdentity "
            "of type string",
        ),
        (
            {"leaseDurationSeconds": "15"},
            "json: cannot unmarshal string into Go struct field "
            "LeaseSpec.spec.leaseDurationSeconds of type int32",
        ),
        (
            {"leaseDurationSeconds": 1.5},
            "json: cannot unmarshal number 1.5 into Go struct field "
            "LeaseSpec.spec.leaseDurationSeconds of type int32",
        ),
        (
            {"renewTime": "yesterday"},
            'parsing time "yesterday" as "2006-01-02T15:04:05.000000Z07:00"',
        ),
        (
            # metav1.MicroTime.UnmarshalJSON parses with RFC3339Micro: 6 digits required.
            {"acquireTime": "2026-01-01T00:00:00Z"},
            'parsing time "2026-01-01T00:00:00Z" as "2006-01-02T15:04:05.000000Z07:00"',
        ),
        (
            {"renewTime": "2026-13-01T00:00:00.000000Z"},
            'parsing time "2026-13-01T00:00:00.000000Z"',
        ),
    ],
)
def test_lease_fields_that_do_not_decode_are_bad_requests(
    raw: Any, spec: dict[str, Any], tail: str
) -> None:
    """Typed JSON decoding fails before validation: 400, ``Lease in version "v1" cannot be
    handled as a Lease: <decoder error>`` (apiserver's handlers/create.go)."""
    code, body = raw(
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
        body=_lease(**spec),
    )
    assert (code, body["reason"]) == (400, "BadRequest")
    prefix = 'Lease in version "v1" cannot be handled as a Lease: '
    assert body["message"].startswith(prefix + tail), body["message"]


def test_lease_micro_time_is_normalised_to_utc_micro(raw: Any) -> None:
    """MicroTime.MarshalJSON writes ``t.UTC().Format(RFC3339Micro)``."""
    code, body = raw(
        "POST",
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
        body=_lease(
            leaseDurationSeconds=15,
            acquireTime="2026-01-01T02:30:00.123456+02:00",
            renewTime="2026-01-01T00:30:00.000001Z",
        ),
    )
    assert code == 201
    assert body["spec"]["acquireTime"] == "2026-01-01T00:30:00.123456Z"
    assert body["spec"]["renewTime"] == "2026-01-01T00:30:00.000001Z"


# ---- item 4: a Deployment's generation ---------------------------------------------------


def test_deployment_annotation_change_bumps_generation(apps: client.AppsV1Api) -> None:
    """deploymentStrategy.PrepareForUpdate (pkg/registry/apps/deployment/strategy.go) bumps
    the generation when the spec *or the annotations* change ("annotations are copied from
    deployments to their replica sets"); labels and status writes do not bump it."""
    apps.create_namespaced_deployment("default", deployment("web"))
    d = apps.patch_namespaced_deployment("web", "default", {"metadata": {"labels": {"x": "y"}}})
    assert d.metadata.generation == 1
    d = apps.patch_namespaced_deployment(
        "web", "default", {"metadata": {"annotations": {"team": "a"}}}
    )
    assert d.metadata.generation == 2
    d = apps.patch_namespaced_deployment(
        "web", "default", {"metadata": {"annotations": {"team": "a"}}}
    )
    assert d.metadata.generation == 2  # no change, no bump
    d = apps.patch_namespaced_deployment(
        "web", "default", {"metadata": {"annotations": {"team": None}}}
    )
    assert d.metadata.generation == 3


def test_configmap_annotation_change_keeps_generation(core: client.CoreV1Api) -> None:
    """Other kinds have no such rule: a ConfigMap has no generation at all, a Service's
    annotations do not touch it."""
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    cm = core.patch_namespaced_config_map("c", "default", {"metadata": {"annotations": {"a": "b"}}})
    assert not cm.metadata.generation


# ---- item 7: CRD patterns with RE2 semantics ---------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [(("targetRef", "name"), "podinfo\n"), (("schedule", "interval"), "1m\n")],
)
def test_crd_pattern_dollar_does_not_match_before_trailing_newline(
    custom: client.CustomObjectsApi, path: tuple[str, str], value: str
) -> None:
    """kube-apiserver validates ``pattern`` with Go's regexp (RE2), where ``$`` matches only
    at the end of the text; ``^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`` refuses ``"podinfo\\n"`` and
    ``^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$`` refuses ``"1m\\n"``."""
    spec: dict[str, Any] = {
        "targetRef": {"name": "podinfo"},
        "service": {"port": 9898},
        "schedule": {"interval": "1m", "stepWeights": [10]},
    }
    spec[path[0]][path[1]] = value
    body = {
        "apiVersion": "canaryd.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "r"},
        "spec": spec,
    }
    with pytest.raises(ApiException) as exc:
        custom.create_namespaced_custom_object(
            "canaryd.io", "v1alpha1", "default", "rollouts", body
        )
    status = _status(exc.value)
    field = f"spec.{path[0]}.{path[1]}"
    assert exc.value.status == 422
    assert [c["field"] for c in status["details"]["causes"]] == [field]
    assert f"{field} in body should match" in status["message"]
    # Without the newline the same value is admitted.
    spec[path[0]][path[1]] = value.rstrip("\n")
    created = custom.create_namespaced_custom_object(
        "canaryd.io", "v1alpha1", "default", "rollouts", body
    )
    assert created["spec"][path[0]][path[1]] == value.rstrip("\n")
