"""The generated CRDs at admission: served by the API emulator (real HTTP, official client),
valid Rollouts are created (201) and every invalid example is refused with 422 and a message
naming the field, as kube-apiserver would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from kubeemu import Emulator

from .test_crds import INVALID_ROLLOUTS, VALID_ROLLOUTS

CRDS = Path(__file__).resolve().parents[2] / "crds"


@pytest.fixture(scope="module")
def api() -> Iterator[ApiClient]:
    with Emulator(crd_paths=[CRDS], install_istio=False) as emu:
        client = emu.api_client()
        try:
            yield client
        finally:
            client.close()


def create(api: ApiClient, name: str, obj: dict[str, Any]) -> dict[str, Any]:
    body = {**obj, "metadata": {"name": name, "namespace": "default"}}
    body.pop("status", None)  # the status subresource is written separately
    created: dict[str, Any] = CustomObjectsApi(api).create_namespaced_custom_object(
        "canaryd.io", "v1alpha1", "default", "rollouts", body
    )
    return created


def test_valid_rollouts_are_admitted_with_defaults(api: ApiClient) -> None:
    defaulted = 0
    for i, obj in enumerate(VALID_ROLLOUTS.values()):
        created = create(api, f"valid-{i}", obj)
        assert created["metadata"]["resourceVersion"]
        schedule = created["spec"].get("schedule")
        if schedule is not None:
            assert "startWeight" not in obj["spec"]["schedule"]
            assert schedule["startWeight"] == 5
            assert schedule["interval"] == obj["spec"]["schedule"].get("interval", "1m")
            assert schedule["maxWeight"] == obj["spec"]["schedule"].get("maxWeight", 50)
            defaulted += 1
    assert defaulted >= 3  # the schema's defaults were applied at admission


def test_invalid_rollouts_are_refused_with_422(api: ApiClient) -> None:
    admitted = []
    for i, (name, obj) in enumerate(sorted(INVALID_ROLLOUTS.items())):
        if name == "bad-phase":
            continue  # status is not validated on create (subresource)
        try:
            create(api, f"invalid-{i}", obj)
        except ApiException as exc:
            assert exc.status == 422, (name, exc.status)
            assert "spec" in str(exc.body), name
        else:
            admitted.append(name)
    # The emulator reads `pattern` with RE2 semantics (`$` does not match before a final
    # newline), as kube-apiserver does, so every invalid Rollout is refused at admission.
    assert admitted == [], admitted
