"""The Istio CRDs vendored into kubeemu/istio_crds/ (served by the emulator, used by the demo)
are byte for byte the ones the project received in ../shared/istio/."""

from __future__ import annotations

import pytest

from tests.istio.conftest import SHARED_ISTIO, VENDORED_ISTIO


@pytest.mark.parametrize(
    "name", ["virtualservices.crd.yaml", "destinationrules.crd.yaml", "gateways.crd.yaml"]
)
def test_vendored_istio_crd_matches_the_shared_one(name: str) -> None:
    vendored = (VENDORED_ISTIO / name).read_bytes()
    assert b"kind: CustomResourceDefinition" in vendored
    if SHARED_ISTIO.is_dir():
        assert vendored == (SHARED_ISTIO / name).read_bytes()
