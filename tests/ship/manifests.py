"""Helpers shared by the manifest tests: building kustomizations, picking objects and
validating Istio objects against Istio's real CRDs."""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
KUBECTL = "/usr/bin/kubectl"
ISTIO_CRDS = ROOT / "kubeemu" / "istio_crds"

# Every kustomization a user applies, relative to manifests/.
KUSTOMIZATIONS = ("base", "overlays/production", "overlays/sharded", "examples/podinfo")


@functools.cache
def build(name: str) -> tuple[dict[str, Any], ...]:
    """``kubectl kustomize manifests/<name>`` parsed into objects (cached per test session)."""
    result = subprocess.run(
        [KUBECTL, "kustomize", str(MANIFESTS / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize manifests/{name} failed:\n{result.stderr}")
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def of_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def group(obj: dict[str, Any]) -> str:
    api_version = str(obj["apiVersion"])
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def ident(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind')} {ns + '/' if ns else ''}{meta.get('name')}"


@functools.cache
def istio_validator(kind: str) -> jsonschema.Draft4Validator:
    """Validator for Istio ``kind`` (version v1) from Istio's real CRD (loaded once)."""
    for path in sorted(ISTIO_CRDS.glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        if crd["spec"]["names"]["kind"] != kind:
            continue
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        return jsonschema.Draft4Validator(version["schema"]["openAPIV3Schema"])
    raise AssertionError(f"no Istio CRD for {kind} in {ISTIO_CRDS}")
