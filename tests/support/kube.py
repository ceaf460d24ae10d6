"""Pytest fixtures for the Kubernetes API emulator.

``emulator``: a started :class:`kubeemu.Emulator` (function-scoped; ``running_emulator`` for other
scopes) with Istio's CRDs and the repository's ``crds/*.yaml`` installed when that directory holds
YAML files; stopped after the test. ``kube_api``: a ``kubernetes.client.ApiClient`` pointed at it.

Use from a ``conftest.py``: ``from tests.support.kube import emulator, kube_api  # noqa: F401``
or ``pytest_plugins = ["tests.support.kube"]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.client import ApiClient

from kubeemu import Emulator

REPO_CRDS = Path(__file__).resolve().parents[2] / "crds"


def repo_crd_paths() -> list[Path]:
    """``crds/`` when it holds CRD YAML files, else nothing."""
    if REPO_CRDS.is_dir() and any(REPO_CRDS.glob("*.yaml")):
        return [REPO_CRDS]
    return []


def running_emulator() -> Iterator[Emulator]:
    """The body of the ``emulator`` fixture, for a conftest that wants another scope:
    ``emulator = pytest.fixture(scope="module")(running_emulator)``."""
    with Emulator(crd_paths=repo_crd_paths(), install_istio=True) as emu:
        yield emu


emulator = pytest.fixture(running_emulator)


@pytest.fixture
def kube_api(emulator: Emulator) -> Iterator[ApiClient]:
    client = emulator.api_client()
    try:
        yield client
    finally:
        client.close()  # type: ignore[no-untyped-call]
