"""Which route a simulated request takes: Istio VirtualService ``http`` routes and Gateway API
HTTPRoute ``rules``, evaluated on the headers, cookies and query parameters of simulated users.

Pure functions (no I/O), used by :class:`meshsim.routes.KubeRoutes`:

- A :class:`Segment` is a share of an app's requests that carry some headers (the ``cookie``
  header carries cookies) and query parameters; the rest of the requests carry none.
- Istio takes the **first** HTTP route any of whose ``match`` entries matches (a route without
  ``match`` matches everything), as Envoy does.
- The Gateway API takes, across the rules, the matching ``matches`` entry of highest precedence
  (the HTTPRoute spec's order: exact path, longest prefix path, method, most header matches,
  most query parameter matches; ties go to the first rule in list order).
- Values: ``exact``, ``prefix`` and ``regex`` (Istio; regex is RE2, matched against the whole
  value as Envoy's ``safe_regex`` is), ``Exact`` and ``RegularExpression`` (Gateway API, the
  same engine as Envoy). Header names are case-insensitive, query parameter names are not.
  Python's ``re`` stands in for RE2: the patterns canaryd writes read the same in both (see
  ``canaryd.api.models.Re2Regex``).
- Paths and methods are not simulated: every simulated request is ``GET /``, so a path match
  ``/`` (prefix) matches and any other path match does not.
- Mirroring: Istio's ``mirror`` (+ ``mirrorPercentage``, default 100%) and the Gateway API's
  ``RequestMirror`` filter (``percent`` or ``fraction``, default 100%) on the route taken copy
  that share of its requests to the mirror's host.

The result per app is a :class:`Split`: the share (percent) of all requests each destination
host receives, and the share of all requests mirrored to each host.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

JSON = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Segment:
    """``share`` (0..1) of an app's requests, carrying ``headers`` (lower-case names; cookies
    as one ``cookie`` header, e.g. ``"canary=always"``) and ``query`` parameters."""

    share: float
    headers: tuple[tuple[str, str], ...] = ()
    query: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.share <= 1:
            raise ValueError(f"a segment's share must be within 0..1, got {self.share}")

    @property
    def header_map(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers}

    @property
    def query_map(self) -> dict[str, str]:
        return dict(self.query)


def with_remainder(segments: Sequence[Segment]) -> list[Segment]:
    """``segments`` plus the requests that carry nothing (the share left); ValueError when the
    shares add up to more than 1."""
    total = sum(s.share for s in segments)
    if total > 1 + 1e-9:
        raise ValueError(f"segment shares add up to {total:g} > 1")
    rest = 1.0 - total
    return [*segments, Segment(rest)] if rest > 1e-12 else list(segments)


@dataclass(slots=True)
class Split:
    """Percent of an app's requests per destination host (summing to 100 when any route
    applies) and percent of them mirrored to each host."""

    weights: dict[str, float] = field(default_factory=dict)
    mirrored: dict[str, float] = field(default_factory=dict)

    def add(self, host: str, percent: float) -> None:
        self.weights[host] = self.weights.get(host, 0.0) + percent

    def mirror(self, host: str, percent: float) -> None:
        self.mirrored[host] = self.mirrored.get(host, 0.0) + percent


def _value_matches(kind: str, expected: Any, actual: str | None) -> bool:
    if actual is None or not isinstance(expected, str):
        return False
    if kind in ("exact", "Exact"):
        return actual == expected
    if kind == "prefix":
        return actual.startswith(expected)
    if kind in ("regex", "RegularExpression"):
        try:
            return re.fullmatch(expected, actual) is not None
        except re.error:
            return False  # the proxy would refuse such a route; here it never matches
    return False


def _istio_string(match: Any, actual: str | None) -> bool:
    if not isinstance(match, Mapping) or not match:
        return actual is not None  # `{}`: the header must be present
    return any(_value_matches(k, v, actual) for k, v in match.items())


def _istio_match(match: JSON, seg: Segment) -> bool:
    headers, query = seg.header_map, seg.query_map
    for name, m in (match.get("headers") or {}).items():
        if not _istio_string(m, headers.get(str(name).lower())):
            return False
    for name, m in (match.get("queryParams") or {}).items():
        if not _istio_string(m, query.get(str(name))):
            return False
    uri = match.get("uri")  # every simulated request is GET /
    return not isinstance(uri, Mapping) or _istio_string(uri, "/")


def istio_route(http: Sequence[JSON], seg: Segment) -> JSON | None:
    """The first HTTP route of a VirtualService that ``seg``'s requests take (None: none)."""
    for route in http:
        matches = route.get("match")
        if not matches or any(_istio_match(m, seg) for m in matches if isinstance(m, Mapping)):
            return route
    return None


def istio_split(vs: JSON, segments: Sequence[Segment]) -> Split:
    """Where an app's requests go through a VirtualService (see the module docstring)."""
    http = [r for r in (vs.get("spec") or {}).get("http") or [] if isinstance(r, Mapping)]
    out = Split()
    for seg in with_remainder(segments):
        route = istio_route(http, seg)
        if route is None:
            continue
        dests = [d for d in route.get("route") or [] if isinstance(d, Mapping)]
        weights = [float(d.get("weight", 100 if len(dests) == 1 else 0)) for d in dests]
        total = sum(weights)
        for dest, w in zip(dests, weights, strict=True):
            host = str((dest.get("destination") or {}).get("host", ""))
            out.add(host, 100 * seg.share * (w / total if total > 0 else 0.0))
        mirror = route.get("mirror")
        if isinstance(mirror, Mapping) and mirror.get("host"):
            pct = (route.get("mirrorPercentage") or {}).get("value", 100.0)
            out.mirror(str(mirror["host"]), seg.share * float(pct))
    return out


def _gateway_value(m: JSON, actual: str | None) -> bool:
    return _value_matches(str(m.get("type", "Exact")), m.get("value"), actual)


def _gateway_match(match: JSON, seg: Segment) -> bool:
    headers, query = seg.header_map, seg.query_map
    path = match.get("path") or {"type": "PathPrefix", "value": "/"}
    if not (path.get("type", "PathPrefix") in ("PathPrefix", "Exact") and path.get("value") == "/"):
        return False
    if match.get("method") not in (None, "GET"):
        return False
    for h in match.get("headers") or []:
        if not _gateway_value(h, headers.get(str(h.get("name", "")).lower())):
            return False
    return all(
        _gateway_value(q, query.get(str(q.get("name", "")))) for q in match.get("queryParams") or []
    )


def _precedence(match: JSON) -> tuple[int, int, int, int, int]:
    """Sort key (smaller wins) of the HTTPRoute spec's precedence of matches."""
    path = match.get("path") or {"type": "PathPrefix", "value": "/"}
    return (
        0 if path.get("type") == "Exact" else 1,
        -len(str(path.get("value", "/"))),
        0 if match.get("method") else 1,
        -len(match.get("headers") or []),
        -len(match.get("queryParams") or []),
    )


def gateway_rule(rules: Sequence[JSON], seg: Segment) -> JSON | None:
    """The HTTPRoute rule ``seg``'s requests take (None: none matches)."""
    best: tuple[tuple[int, int, int, int, int], int] | None = None
    for index, rule in enumerate(rules):
        matches = rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]
        for m in matches:
            if isinstance(m, Mapping) and _gateway_match(m, seg):
                key = (_precedence(m), index)
                best = key if best is None or key < best else best
    return rules[best[1]] if best is not None else None


def _mirror_percent(mirror: JSON) -> float:
    if "percent" in mirror:
        return float(mirror["percent"])
    fraction = mirror.get("fraction")
    if isinstance(fraction, Mapping):
        return 100.0 * float(fraction.get("numerator", 0)) / float(fraction.get("denominator", 100))
    return 100.0


def gateway_split(route: JSON, segments: Sequence[Segment]) -> Split:
    """Where an app's requests go through an HTTPRoute (weights are proportions, default 1)."""
    rules = [r for r in (route.get("spec") or {}).get("rules") or [] if isinstance(r, Mapping)]
    out = Split()
    for seg in with_remainder(segments):
        rule = gateway_rule(rules, seg)
        if rule is None:
            continue
        backends = [b for b in rule.get("backendRefs") or [] if isinstance(b, Mapping)]
        weights = [float(b.get("weight", 1)) for b in backends]
        total = sum(weights)
        for backend, w in zip(backends, weights, strict=True):
            out.add(str(backend.get("name", "")), 100 * seg.share * (w / total if total else 0.0))
        for f in rule.get("filters") or []:
            mirror = f.get("requestMirror") if isinstance(f, Mapping) else None
            if isinstance(mirror, Mapping) and isinstance(mirror.get("backendRef"), Mapping):
                host = str(mirror["backendRef"].get("name", ""))
                out.mirror(host, seg.share * _mirror_percent(mirror))
    return out
