"""Revision of a Deployment: a stable hash of its pod template.

A rollout starts when the target's revision differs from both the canary and the stable revision
in the Rollout's status, so the hash must change exactly when the user changed the template:

* it does not depend on key order (canonical JSON with sorted keys);
* it ignores what others add to a template: the ``pod-template-hash`` label (Deployment
  controller), every label and annotation under the ``canaryd.io/`` prefix (canaryd's own
  bookkeeping, e.g. the revision it copied to the primary), null values and empty maps/lists
  (the API server and the Python client disagree on whether an unset field is ``null``, absent
  or empty, e.g. ``metadata.creationTimestamp: null``).

Assumption: ``pod_template`` is the wire form (camelCase keys), as returned by the API server or
by ``ApiClient().sanitize_for_serialization(deployment.spec.template)``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

CANARYD_PREFIX = "canaryd.io/"
IGNORED_LABELS = frozenset({"pod-template-hash"})
HASH_LENGTH = 16


def _ignored(key: str) -> bool:
    return key in IGNORED_LABELS or key.startswith(CANARYD_PREFIX)


def _canonical(value: Any) -> Any:
    """Drop nulls and empty containers, recursively (they mean 'unset')."""
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            cleaned = _canonical(item)
            if cleaned is not None and cleaned not in ({}, []):
                out[str(key)] = cleaned
        return out
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return value


def _strip_metadata(template: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(template)
    metadata = dict(out.get("metadata") or {})
    for field in ("labels", "annotations"):
        entries = metadata.get(field) or {}
        metadata[field] = {k: v for k, v in entries.items() if not _ignored(k)}
    out["metadata"] = metadata
    return out


def template_hash(pod_template: Mapping[str, Any]) -> str:
    """Hex digest (16 chars) of ``pod_template`` that ignores key order and foreign fields."""
    canonical = _canonical(_strip_metadata(pod_template))
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]
