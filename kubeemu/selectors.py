"""Label and field selectors with kube-apiserver's grammar.

Labels: ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``,
``k>n``, ``k<n``. Fields: ``path=v``, ``path==v``, ``path!=v`` on the paths a kind supports.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kubeemu.errors import bad_request

Matcher = Callable[[dict[str, Any]], bool]

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_OP_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=|>|<)\s*([A-Za-z0-9_.-]*)\s*$")


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside ``( )``."""
    parts, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def _requirement(text: str) -> Callable[[dict[str, str]], bool]:
    m = _OP_RE.match(text)
    if m:
        key, op, val = m.groups()
        if op in ("=", "=="):
            return lambda labels: labels.get(key) == val
        if op == "!=":
            return lambda labels: labels.get(key) != val
        try:
            num = int(val)
        except ValueError:
            raise bad_request(
                f"unable to parse requirement: for 'gt', 'lt' operators, the value must be an "
                f"integer: {text.strip()}"
            ) from None

        def cmp(labels: dict[str, str]) -> bool:
            got = labels.get(key)
            if got is None or not re.fullmatch(r"-?\d+", got):
                return False
            return int(got) > num if op == ">" else int(got) < num

        return cmp
    m = _SET_RE.match(text)
    if m:
        neg, key, op, values = m.groups()
        if op:
            if neg:
                raise bad_request(f"unable to parse requirement: {text.strip()}")
            vals = {v.strip() for v in values.split(",") if v.strip()}
            if op == "in":
                return lambda labels: labels.get(key) in vals
            return lambda labels: labels.get(key) not in vals
        if neg:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise bad_request(f"unable to parse requirement: found '{text.strip()}', expected: selector")


def label_matcher(selector: str | None) -> Matcher:
    """A predicate on objects for a ``labelSelector`` query value (400 when malformed)."""
    if not selector or not selector.strip():
        return lambda obj: True
    reqs = [_requirement(part) for part in _split(selector)]

    def match(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r(labels) for r in reqs)

    return match


def selector_from_match(spec: dict[str, Any] | None) -> Callable[[dict[str, str]], bool]:
    """A predicate on a label dict for a ``LabelSelector`` object (matchLabels/matchExpressions)."""
    spec = spec or {}
    ml = dict(spec.get("matchLabels") or {})
    exprs = list(spec.get("matchExpressions") or [])

    def match(labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in ml.items()):
            return False
        for e in exprs:
            key, op, vals = e.get("key"), e.get("operator"), set(e.get("values") or [])
            if op == "In" and labels.get(key) not in vals:
                return False
            if op == "NotIn" and key in labels and labels[key] in vals:
                return False
            if op == "Exists" and key not in labels:
                return False
            if op == "DoesNotExist" and key in labels:
                return False
        return True

    return match


def selector_string(spec: dict[str, Any] | None) -> str:
    """A LabelSelector object rendered as a selector string (for Scale.status.selector)."""
    spec = spec or {}
    parts = [f"{k}={v}" for k, v in sorted((spec.get("matchLabels") or {}).items())]
    for e in spec.get("matchExpressions") or []:
        op, key = e.get("operator"), e.get("key")
        vals = ",".join(sorted(e.get("values") or []))
        parts.append(
            {
                "In": f"{key} in ({vals})",
                "NotIn": f"{key} notin ({vals})",
                "Exists": f"{key}",
                "DoesNotExist": f"!{key}",
            }.get(op, "")
        )
    return ",".join(p for p in parts if p)


def _get_path(obj: dict[str, Any], path: str) -> str | None:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    if cur is None:
        return None
    return str(cur)


def field_matcher(selector: str | None, supported: tuple[str, ...]) -> Matcher:
    """A predicate for a ``fieldSelector`` (metadata.name/namespace plus the kind's fields)."""
    if not selector or not selector.strip():
        return lambda obj: True
    allowed = {"metadata.name", "metadata.namespace", *supported}
    reqs: list[tuple[str, bool, str]] = []
    for part in _split(selector):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", part)
        if not m:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{part}'")
        path, op, val = m.groups()
        if path not in allowed:
            raise bad_request(f"field label not supported: {path}")
        reqs.append((path, op != "!=", val))

    def match(obj: dict[str, Any]) -> bool:
        for path, eq, val in reqs:
            got = _get_path(obj, path)
            if path == "metadata.namespace" and got is None:
                got = ""
            if (got == val) != eq:
                return False
        return True

    return match
