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


@dataclass(frozen=True, slots=True)
class Leg:
    """Where a share of one segment's requests goes, and the cookie its answers set."""

    host: str
    share: float
    """Fraction (0..1) of the segment's requests."""
    set_cookie: str | None = None
    """The ``Set-Cookie`` value the answers carry (response header actions), if any."""


@dataclass(frozen=True, slots=True)
class Choice:
    """What one segment's requests get: the legs of the route taken and its mirrors."""

    legs: tuple[Leg, ...]
    mirrors: tuple[tuple[str, float], ...] = ()
    """(host, fraction 0..1 of the segment's requests copied there)."""


def _header_value(ops: Any, name: str) -> str | None:
    """``name`` in Istio header operations ``{add: {...}, set: {...}}`` (case-insensitive)."""
    if not isinstance(ops, Mapping):
        return None
    for kind in ("set", "add"):
        for key, value in (ops.get(kind) or {}).items():
            if str(key).lower() == name and isinstance(value, str):
                return value
    return None


def istio_choice(vs: JSON, seg: Segment) -> Choice | None:
    """The route ``seg``'s requests take through a VirtualService (None: no route)."""
    http = [r for r in (vs.get("spec") or {}).get("http") or [] if isinstance(r, Mapping)]
    route = istio_route(http, seg)
    if route is None:
        return None
    dests = [d for d in route.get("route") or [] if isinstance(d, Mapping)]
    weights = [float(d.get("weight", 100 if len(dests) == 1 else 0)) for d in dests]
    total = sum(weights)
    route_cookie = _header_value((route.get("headers") or {}).get("response"), "set-cookie")
    legs = []
    for dest, w in zip(dests, weights, strict=True):
        own = _header_value((dest.get("headers") or {}).get("response"), "set-cookie")
        host = str((dest.get("destination") or {}).get("host", ""))
        legs.append(Leg(host, w / total if total > 0 else 0.0, own or route_cookie))
    mirrors: tuple[tuple[str, float], ...] = ()
    mirror = route.get("mirror")
    if isinstance(mirror, Mapping) and mirror.get("host"):
        pct = (route.get("mirrorPercentage") or {}).get("value", 100.0)
        mirrors = ((str(mirror["host"]), float(pct) / 100),)
    return Choice(tuple(legs), mirrors)


def _split(choices: Sequence[tuple[Segment, Choice | None]]) -> Split:
    out = Split()
    for seg, choice in choices:
        if choice is None:
            continue
        for leg in choice.legs:
            out.add(leg.host, 100 * seg.share * leg.share)
        for host, fraction in choice.mirrors:
            out.mirror(host, 100 * seg.share * fraction)
    return out


def istio_split(vs: JSON, segments: Sequence[Segment]) -> Split:
    """Where an app's requests go through a VirtualService (see the module docstring)."""
    return _split([(seg, istio_choice(vs, seg)) for seg in with_remainder(segments)])


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


def _filter_cookie(filters: Any) -> str | None:
    for f in filters or []:
        mod = f.get("responseHeaderModifier") if isinstance(f, Mapping) else None
        if not isinstance(mod, Mapping):
            continue
        for kind in ("set", "add"):
            for header in mod.get(kind) or []:
                if str(header.get("name", "")).lower() == "set-cookie":
                    return str(header.get("value", ""))
    return None


def gateway_choice(route: JSON, seg: Segment) -> Choice | None:
    """The rule ``seg``'s requests take through an HTTPRoute (None: no rule matches: 404)."""
    rules = [r for r in (route.get("spec") or {}).get("rules") or [] if isinstance(r, Mapping)]
    rule = gateway_rule(rules, seg)
    if rule is None:
        return None
    backends = [b for b in rule.get("backendRefs") or [] if isinstance(b, Mapping)]
    weights = [float(b.get("weight", 1)) for b in backends]
    total = sum(weights)
    rule_cookie = _filter_cookie(rule.get("filters"))
    legs = tuple(
        Leg(
            str(b.get("name", "")),
            w / total if total else 0.0,
            _filter_cookie(b.get("filters")) or rule_cookie,
        )
        for b, w in zip(backends, weights, strict=True)
    )
    mirrors = []
    for f in rule.get("filters") or []:
        mirror = f.get("requestMirror") if isinstance(f, Mapping) else None
        if isinstance(mirror, Mapping) and isinstance(mirror.get("backendRef"), Mapping):
            mirrors.append(
                (str(mirror["backendRef"].get("name", "")), _mirror_percent(mirror) / 100)
            )
    return Choice(legs, tuple(mirrors))


def gateway_split(route: JSON, segments: Sequence[Segment]) -> Split:
    """Where an app's requests go through an HTTPRoute (weights are proportions, default 1)."""
    return _split([(seg, gateway_choice(route, seg)) for seg in with_remainder(segments)])


# ---- users and their cookies (session affinity) ----------------------------------------------


def parse_set_cookie(value: str) -> tuple[str, str, float | None]:
    """(name, value, Max-Age seconds or None) of a ``Set-Cookie`` header value."""
    first, *attrs = [p.strip() for p in value.split(";")]
    name, _, cookie = first.partition("=")
    max_age = None
    for attr in attrs:
        key, _, val = attr.partition("=")
        if key.strip().lower() == "max-age":
            try:
                max_age = float(val)
            except ValueError:
                max_age = None
    return name.strip(), cookie.strip(), max_age


class CookieJar:
    """The users of one app and the cookie each holds (at most one: the session cookie).

    Counted, not listed: holders of each ``name=value`` in batches by expiry. Requests come from
    users chosen uniformly at random, so the users behind ``k`` requests of a group of ``g`` are
    ``g (1 - (1 - 1/g)^k)`` distinct ones on average (rounded): those are the ones a
    ``Set-Cookie`` in the answers reaches. ``Max-Age <= 0`` deletes the cookie (RFC 6265)."""

    def __init__(self, users: int) -> None:
        if users < 1:
            raise ValueError(f"users must be >= 1, got {users}")
        self.users = users
        self._batches: dict[str, list[list[float]]] = {}  # "n=v" -> [[expiry, count], ...]

    def holders(self, cookie: str, now: float) -> int:
        self._expire(now)
        return round(sum(c for _, c in self._batches.get(cookie, [])))

    def _expire(self, now: float) -> None:
        for cookie in list(self._batches):
            kept = [b for b in self._batches[cookie] if b[0] > now and b[1] > 0]
            if kept:
                self._batches[cookie] = kept
            else:
                del self._batches[cookie]

    def groups(self, now: float) -> list[tuple[Segment, str | None]]:
        """The users as segments: one per cookie held (its ``cookie`` header), then those who
        hold none."""
        self._expire(now)
        out: list[tuple[Segment, str | None]] = []
        held = 0.0
        for cookie, batches in self._batches.items():
            count = sum(c for _, c in batches)
            held += count
            out.append((Segment(count / self.users, headers=(("cookie", cookie),)), cookie))
        if held < self.users:
            out.append((Segment((self.users - held) / self.users), None))
        return out

    def _take(self, cookie: str | None, count: float) -> float:
        """Remove ``count`` holders of ``cookie`` (oldest expiry first); None: the bare."""
        if cookie is None:
            return count
        taken = 0.0
        for batch in sorted(self._batches.get(cookie, []), key=lambda b: b[0]):
            step = min(batch[1], count - taken)
            batch[1] -= step
            taken += step
        return taken

    def answered(
        self, group: str | None, size: float, requests: int, set_cookie: str, now: float
    ) -> None:
        """``requests`` of the group ``group`` (``size`` users) got ``Set-Cookie``."""
        if requests <= 0 or size <= 0:
            return
        users = min(size, size * (1 - (1 - 1 / size) ** requests)) if size > 1 else 1.0
        users = float(round(users))
        name, value, max_age = parse_set_cookie(set_cookie)
        cookie = f"{name}={value}"
        if max_age is not None and max_age <= 0:
            if group == cookie:
                self._take(cookie, users)
            return
        if group == cookie:
            return  # already held (a refresh of its expiry is not modelled)
        moved = self._take(group, users)
        expiry = now + (max_age if max_age is not None else 1e12)
        self._batches.setdefault(cookie, []).append([expiry, moved])
