"""Fixtures of the Istio router tests: Istio's real VirtualService schema (loaded once per
session) and a Kubernetes API emulator on 127.0.0.1 per module (stopped at teardown)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support import kube

REPO = Path(__file__).resolve().parents[2]
SHARED_ISTIO = REPO.parent / "shared" / "istio"
"""Istio's CRDs as the project received them (beside the repository, where present)."""
VENDORED_ISTIO = REPO / "kubeemu" / "istio_crds"
"""The same files shipped with the emulator (tests/istio/test_vendored.py checks they match)."""
ISTIO_VS_CRD = (SHARED_ISTIO if SHARED_ISTIO.is_dir() else VENDORED_ISTIO) / (
    "virtualservices.crd.yaml"
)


class VSValidator:
    """Validates VirtualService objects against Istio's v1 openAPIV3Schema, plus the rule the
    schema cannot state: the weights of every HTTP route sum to 100."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._validator = jsonschema.Draft4Validator(schema)

    def errors(self, obj: dict[str, Any]) -> list[str]:
        found = [f"{list(e.absolute_path)}: {e.message}" for e in self._validator.iter_errors(obj)]
        for i, route in enumerate(obj.get("spec", {}).get("http", [])):
            dests = route.get("route") or []
            if len(dests) > 1:
                total = sum(d.get("weight", 0) for d in dests)
                if total != 100:
                    found.append(f"http[{i}]: weights sum to {total}")
        return found

    def check(self, obj: dict[str, Any]) -> None:
        assert self.errors(obj) == []


@pytest.fixture(scope="session")
def vs_schema() -> VSValidator:
    crd = yaml.load(ISTIO_VS_CRD.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    [v1] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return VSValidator(v1["schema"]["openAPIV3Schema"])


# The shared emulator fixtures (tests/support/kube.py), one emulator per module here.
emulator = pytest.fixture(scope="module")(kube.running_emulator)
api = kube.kube_api
