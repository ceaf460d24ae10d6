"""Fixtures of the Gateway API router tests: the real HTTPRoute schema (v1.6.1, loaded once per
session) and a Kubernetes API emulator on 127.0.0.1 per module (stopped at teardown)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support import kube

REPO = Path(__file__).resolve().parents[2]
SHARED_GATEWAY_API = REPO.parent / "shared" / "gateway-api"
"""The Gateway API CRDs as the project received them (beside the repository, where present)."""
VENDORED_GATEWAY_API = REPO / "kubeemu" / "gateway_api_crds"
"""The same files shipped with the emulator (test_vendored.py checks they match)."""
CRD_DIR = SHARED_GATEWAY_API if SHARED_GATEWAY_API.is_dir() else VENDORED_GATEWAY_API


def crd_schema(file: str, version: str = "v1") -> dict[str, Any]:
    crd = yaml.load((CRD_DIR / file).read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    [v] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: dict[str, Any] = v["schema"]["openAPIV3Schema"]
    return schema


class RouteValidator:
    """Validates HTTPRoute objects against the Gateway API's v1 openAPIV3Schema, plus what its
    CEL rules (not evaluated by jsonschema) and canaryd's promise say: a Service backendRef has
    a port, and the weights of every rule canaryd manages sum to 100."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self._validator = jsonschema.Draft4Validator(schema)

    def errors(self, obj: dict[str, Any], managed: tuple[int, ...] = (0,)) -> list[str]:
        found = [f"{list(e.absolute_path)}: {e.message}" for e in self._validator.iter_errors(obj)]
        for i, rule in enumerate(obj.get("spec", {}).get("rules", [])):
            backends = rule.get("backendRefs") or []
            for b in backends:
                service = b.get("group", "") == "" and b.get("kind", "Service") == "Service"
                if service and "port" not in b:
                    found.append(f"rules[{i}]: Service backendRef {b['name']} has no port")
            if i in managed:
                total = sum(b.get("weight", 1) for b in backends)
                if total != 100:
                    found.append(f"rules[{i}]: weights sum to {total}")
            found += _filter_rules(i, rule.get("filters") or [])
            for b in backends:
                found += _filter_rules(i, b.get("filters") or [])
        matches = sum(len(r.get("matches") or []) for r in obj.get("spec", {}).get("rules", []))
        if matches > 128:
            found.append(f"{matches} matches across the rules (CEL: at most 128)")
        return found

    def check(self, obj: dict[str, Any], managed: tuple[int, ...] = (0,)) -> None:
        assert self.errors(obj, managed) == []


_FILTER_FIELDS = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
    "RequestMirror": "requestMirror",
    "RequestRedirect": "requestRedirect",
    "URLRewrite": "urlRewrite",
    "ExtensionRef": "extensionRef",
    "CORS": "cors",
}


def _filter_rules(i: int, filters: list[dict[str, Any]]) -> list[str]:
    """The CEL rules of the v1.6.1 schema on a rule's filters that jsonschema does not run."""
    found = []
    for f in filters:
        for type_, field in _FILTER_FIELDS.items():
            if (field in f) != (f.get("type") == type_):
                found.append(f"rules[{i}]: filter.{field} must be set exactly for type {type_}")
        mirror = f.get("requestMirror") or {}
        if "percent" in mirror and "fraction" in mirror:
            found.append(f"rules[{i}]: only one of percent or fraction in RequestMirror")
        fraction = mirror.get("fraction")
        if fraction and fraction["numerator"] > fraction.get("denominator", 100):
            found.append(f"rules[{i}]: fraction numerator above its denominator")
        ref = mirror.get("backendRef") or {}
        service = ref.get("group", "") == "" and ref.get("kind", "Service") == "Service"
        if mirror and service and "port" not in ref:
            found.append(f"rules[{i}]: RequestMirror Service backendRef has no port")
    for single in ("RequestHeaderModifier", "ResponseHeaderModifier", "URLRewrite", "CORS"):
        if sum(f.get("type") == single for f in filters) > 1:
            found.append(f"rules[{i}]: {single} filter repeated")
    return found


@pytest.fixture(scope="session")
def route_schema() -> RouteValidator:
    return RouteValidator(crd_schema("httproutes.crd.yaml"))


# The shared emulator fixtures (tests/support/kube.py), one emulator per module here.
emulator = pytest.fixture(scope="module")(kube.running_emulator)
api = kube.kube_api
