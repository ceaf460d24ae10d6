"""Loading CRD manifests from YAML files and directories (parsed once per process)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

ISTIO_CRDS = Path(__file__).parent / "istio_crds"
GATEWAY_API_CRDS = Path(__file__).parent / "gateway_api_crds"
"""The Gateway API's standard-channel CRDs, v1.6.1, unchanged (see its README.md)."""

_cache: dict[tuple[str, float], list[dict[str, Any]]] = {}
_lock = threading.Lock()


def _load_file(path: Path) -> list[dict[str, Any]]:
    key = (str(path.resolve()), path.stat().st_mtime)
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    with path.open("rb") as fh:
        docs = [
            d
            for d in yaml.load_all(fh, Loader=yaml.CSafeLoader)
            if isinstance(d, dict) and d.get("kind") == "CustomResourceDefinition"
        ]
    with _lock:
        _cache[key] = docs
    return docs


def load_crds(paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in the given YAML files or directories (``*.yaml``,
    ``*.yml``, sorted by name). Callers must not mutate the returned documents."""
    out: list[dict[str, Any]] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
        elif p.exists():
            files = [p]
        else:
            raise FileNotFoundError(f"CRD path does not exist: {p}")
        for f in files:
            out.extend(_load_file(f))
    return out
