"""Pure computations of the Gateway API router: no I/O, so every case is tested without a cluster.

Two modes, chosen by the Rollout's spec (with ``spec.router: gateway-api``):

* **Generated** (``spec.service``, as Flagger's Gateway API router): canaryd owns two Services
  (``<name>-primary`` selects ``app: <target>-primary``, ``<name>-canary`` selects
  ``app: <target>``) and the HTTPRoute ``<name>`` with one rule named ``primary`` whose two
  backendRefs carry weights summing to 100. Its parentRefs are ``spec.service.parentRefs``, by
  default the Service ``<name>`` itself: mesh (GAMMA) routing, which is how an Istio ambient
  waypoint takes an HTTPRoute. With ``spec.baseline`` a third Service ``<name>-baseline``
  selects ``app: <target>-baseline`` and the rule has three backendRefs (primary, canary,
  baseline) summing to 100.
* **Existing HTTPRoute** (``spec.httpRouteRef``, as Argo Rollouts' Gateway API plugin): only the
  named rules change, and in them only the weights of the backendRefs to ``primaryService`` and
  ``canaryService`` (the canary backendRef is added when missing, copying the primary's port).
  Every other rule and field is left exactly as it was.

Gateway API weights are proportions, not percentages (``weight / sum``, each 0..1,000,000,
default 1). canaryd always writes weights summing to 100 in the rules it owns, so a weight reads
as a percentage; a user's rule in another shape (e.g. one backend with the default weight 1)
reads as the proportion it routes, rounded to a whole percent.

Objects are written in the shape the API server stores them (every schema default spelled
out: backendRef ``group``/``kind``, parentRef ``group``/``kind``, the rule's default match), so
a read-back equals what was written and an unchanged route is never rewritten.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from canaryd.api.models import (
    API_VERSION,
    HTTPRouteRef,
    RequestMatch,
    Rollout,
    StringMatch,
    re2_escape,
)
from canaryd.core.ports import PermanentError
from canaryd.core.types import TrafficState

JSON = dict[str, Any]

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"
HTTPROUTE_PLURAL = "httproutes"
GRPCROUTE_PLURAL = "grpcroutes"
PLURALS = {"HTTPRoute": HTTPROUTE_PLURAL, "GRPCRoute": GRPCROUTE_PLURAL}
PRIMARY_RULE = "primary"
CANARY_RULE = "canary"
"""The rule of the requests matching ``spec.abTest.match``."""
STICKY_RULE = "sticky"
"""The rule of the requests carrying the session-affinity cookie."""
MANAGED_BY = {"app.kubernetes.io/managed-by": "canaryd"}
MAX_WEIGHT = 1_000_000
"""The schema's bound on one backendRef weight."""
DEFAULT_MATCH = {"path": {"type": "PathPrefix", "value": "/"}}
"""The match the schema defaults a rule to (every request)."""


@dataclass(frozen=True, slots=True)
class GeneratedNames:
    """Names of the objects canaryd owns in generated mode."""

    http_route: str
    primary_service: str
    canary_service: str
    primary_app: str
    canary_app: str
    baseline_service: str | None = None
    """``<name>-baseline`` with ``spec.baseline``; None without."""
    baseline_app: str | None = None


def _where(rollout: Rollout) -> str:
    return f"{rollout.metadata.namespace}/{rollout.metadata.name}"


def generated_names(rollout: Rollout) -> GeneratedNames:
    """Object names and pod labels of generated mode (see the module docstring)."""
    service = rollout.spec.service
    if service is None:
        raise PermanentError(f"Rollout {_where(rollout)}: spec.service is not set")
    target = rollout.spec.target_ref.name
    base = service.name or target
    with_baseline = rollout.spec.baseline is not None
    return GeneratedNames(
        http_route=base,
        primary_service=f"{base}-primary",
        canary_service=f"{base}-canary",
        primary_app=f"{target}-primary",
        canary_app=target,
        baseline_service=f"{base}-baseline" if with_baseline else None,
        baseline_app=f"{target}-baseline" if with_baseline else None,
    )


def route_kind(rollout: Rollout) -> str:
    """The kind of route canaryd splits for ``rollout``: ``HTTPRoute`` or ``GRPCRoute``."""
    if rollout.spec.http_route_ref is not None:
        return rollout.spec.http_route_ref.kind
    service = rollout.spec.service
    return (service.route_kind if service is not None else None) or "HTTPRoute"


def check_weight(canary_weight: int, baseline_weight: int = 0) -> int:
    if not 0 <= canary_weight <= 100:
        raise ValueError(f"canary weight must be within 0..100, got {canary_weight}")
    if not 0 <= baseline_weight <= 100 - canary_weight:
        raise ValueError(
            f"baseline weight must be within 0..{100 - canary_weight} beside canary weight "
            f"{canary_weight}, got {baseline_weight}"
        )
    return canary_weight


def _owned_metadata(rollout: Rollout, name: str) -> JSON:
    meta: JSON = {
        "name": name,
        "namespace": rollout.metadata.namespace,
        "labels": dict(MANAGED_BY),
    }
    if rollout.metadata.uid:
        # Deleting the Rollout garbage-collects what canaryd created for it.
        meta["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": "Rollout",
                "name": rollout.metadata.name,
                "uid": rollout.metadata.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return meta


# ---- generated mode --------------------------------------------------------------------------


def desired_services(rollout: Rollout) -> list[JSON]:
    """The ``<name>-primary`` and ``<name>-canary`` Services (bodies for create/replace)."""
    service = rollout.spec.service
    assert service is not None
    names = generated_names(rollout)
    port = {
        "name": "http",
        "port": service.port,
        "targetPort": service.target_port or service.port,
        "protocol": "TCP",
    }
    arms = [
        (names.primary_service, names.primary_app),
        (names.canary_service, names.canary_app),
    ]
    if names.baseline_service is not None and names.baseline_app is not None:
        arms.append((names.baseline_service, names.baseline_app))
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _owned_metadata(rollout, name),
            "spec": {"type": "ClusterIP", "selector": {"app": app}, "ports": [dict(port)]},
        }
        for name, app in arms
    ]


def service_differs(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """True when an existing Service's selector or ports differ from what canaryd wants."""
    spec = existing.get("spec") or {}
    want = desired["spec"]
    ports = [
        {k: p.get(k) for k in ("name", "port", "targetPort", "protocol")}
        for p in spec.get("ports") or []
    ]
    return bool(spec.get("selector") != want["selector"] or ports != want["ports"])


def backend_ref(name: str, port: int | None, weight: int) -> JSON:
    """A Service backendRef as the API server stores it (defaults spelled out). The schema's
    CEL rule needs a port for a Service reference."""
    ref: JSON = {"group": "", "kind": "Service", "name": name, "weight": weight}
    if port is not None:
        ref["port"] = port
    return ref


def split(
    primary: str,
    canary: str,
    canary_weight: int,
    port: int | None,
    *,
    baseline: str | None = None,
    baseline_weight: int = 0,
) -> list[JSON]:
    """Weighted backendRefs, primary first, weights summing to 100: two, or three with a
    ``baseline`` (primary, canary, baseline; kept at weight 0 while it gets no traffic)."""
    if baseline is None and baseline_weight:
        raise ValueError("a baseline weight needs a baseline Service")
    check_weight(canary_weight, baseline_weight)
    refs = [
        backend_ref(primary, port, 100 - canary_weight - baseline_weight),
        backend_ref(canary, port, canary_weight),
    ]
    if baseline is not None:
        refs.append(backend_ref(baseline, port, baseline_weight))
    return refs


def parent_refs(rollout: Rollout) -> list[JSON]:
    """``spec.service.parentRefs`` in wire form (defaults spelled out); by default the Service
    ``<name>`` on its port (mesh routing: an ambient waypoint, any GAMMA mesh)."""
    service = rollout.spec.service
    assert service is not None
    if not service.parent_refs:
        base = service.name or rollout.spec.target_ref.name
        return [{"group": "", "kind": "Service", "name": base, "port": service.port}]
    return [ref.wire() for ref in service.parent_refs]


def _value_match(name: str, match: StringMatch) -> JSON:
    """A header or query parameter match in the stored shape. The Gateway API has no prefix
    match: a prefix becomes the regex ``^<prefix escaped>.*`` (RegularExpression support, and
    its dialect, are implementation-specific: RE2 for Envoy-based ones such as Istio)."""
    if match.exact is not None:
        return {"name": name, "type": "Exact", "value": match.exact}
    regex = match.regex if match.regex is not None else f"^{re2_escape(match.prefix or '')}.*"
    return {"name": name, "type": "RegularExpression", "value": regex}


def gateway_match(match: RequestMatch) -> JSON:
    """One HTTPRouteMatch for one ``abTest.match`` condition (all ANDed), with the default path
    spelled out as the API server stores it."""
    headers = [_value_match(name, m) for name, m in match.headers.items()]
    if match.cookie is not None:
        headers.append(
            {"name": "cookie", "type": "RegularExpression", "value": match.cookie.header_regex()}
        )
    out: JSON = copy.deepcopy(DEFAULT_MATCH)
    if headers:
        out["headers"] = headers
    if match.query_params:
        out["queryParams"] = [_value_match(n, m) for n, m in match.query_params.items()]
    return out


def mirror_filter(service: str, port: int | None, percent: int) -> JSON:
    """A RequestMirror filter copying ``percent`` % of the rule's requests to ``service``."""
    ref: JSON = {"group": "", "kind": "Service", "name": service}
    if port is not None:
        ref["port"] = port
    return {"type": "RequestMirror", "requestMirror": {"backendRef": ref, "percent": percent}}


def desired_http_route(
    rollout: Rollout, canary_weight: int, baseline_weight: int = 0, *, mirror_percent: int = 0
) -> JSON:
    """The HTTPRoute (``spec.service.routeKind: GRPCRoute``: the GRPCRoute, weights only) of
    generated mode with ``canary_weight`` % to the canary (and ``baseline_weight`` % to the
    baseline, with ``spec.baseline``: a three-way split of the ``primary`` rule; the model
    refuses a baseline beside abTest, mirror or sessionAffinity).

    With ``spec.abTest`` the weight applies to the requests matching it (rule ``canary``: its
    header and query parameter matches give it precedence over ``primary``, whose only match
    is the path ``/``); every other request goes to the primary (100/0). With
    ``mirror_percent`` the ``primary`` rule also copies that share of its requests to the
    canary (a RequestMirror filter with ``percent``)."""
    service = rollout.spec.service
    assert service is not None
    names = generated_names(rollout)
    check_weight(mirror_percent)
    ab = rollout.spec.ab_test
    primary: JSON = {
        "name": PRIMARY_RULE,
        "matches": [copy.deepcopy(DEFAULT_MATCH)],
        "backendRefs": split(
            names.primary_service,
            names.canary_service,
            0 if ab is not None else canary_weight,
            service.port,
            baseline=names.baseline_service,
            baseline_weight=baseline_weight,
        ),
    }
    if mirror_percent:
        primary["filters"] = [mirror_filter(names.canary_service, service.port, mirror_percent)]
    kind = route_kind(rollout)
    if kind == "GRPCRoute":
        # A GRPCRoute rule without matches takes every call (its schema has no default match);
        # weights are the only thing canaryd changes in it.
        del primary["matches"]
    rules = [primary]
    if rollout.spec.session_affinity is not None:
        rules = [_sticky(rollout, canary_weight, primary), primary]
    if ab is not None:
        canary: JSON = {
            "name": CANARY_RULE,
            "matches": [gateway_match(m) for m in ab.match],
            "backendRefs": split(
                names.primary_service, names.canary_service, canary_weight, service.port
            ),
        }
        rules = [canary, primary]
    spec: JSON = {"parentRefs": parent_refs(rollout), "rules": rules}
    if service.hosts:
        spec["hostnames"] = list(service.hosts)
    return {
        "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
        "kind": kind,
        "metadata": _owned_metadata(rollout, names.http_route),
        "spec": spec,
    }


def set_cookie_filter(value: str) -> JSON:
    """A ResponseHeaderModifier adding ``Set-Cookie: value``."""
    return {
        "type": "ResponseHeaderModifier",
        "responseHeaderModifier": {"add": [{"name": "Set-Cookie", "value": value}]},
    }


def _sticky(rollout: Rollout, canary_weight: int, weighted: JSON) -> JSON:
    """Session affinity (as Flagger's Gateway API router): while the canary has traffic, the
    canary backendRef of the weighted rule sets the cookie (a backendRef filter: only its own
    answers) and the ``sticky`` rule (a cookie header match: it outranks the weighted rule's
    bare path) sends requests carrying it to the canary; without canary traffic the ``sticky``
    rule sends them to the primary and expires the cookie. The cookie names the canary's
    revision (``status.canaryRevision``)."""
    affinity = rollout.spec.session_affinity
    service = rollout.spec.service
    assert affinity is not None and service is not None
    names = generated_names(rollout)
    revision = rollout.status.canary_revision
    match: JSON = copy.deepcopy(DEFAULT_MATCH)
    match["headers"] = [
        {"name": "cookie", "type": "RegularExpression", "value": affinity.match_regex(revision)}
    ]
    if canary_weight > 0:
        weighted["backendRefs"][1]["filters"] = [set_cookie_filter(affinity.set_cookie(revision))]
        backends = split(names.primary_service, names.canary_service, 100, service.port)
        return {"name": STICKY_RULE, "matches": [match], "backendRefs": backends}
    return {
        "name": STICKY_RULE,
        "matches": [match],
        "filters": [set_cookie_filter(affinity.set_cookie(revision, expire=True))],
        "backendRefs": split(names.primary_service, names.canary_service, 0, service.port),
    }


def generated_ref(rollout: Rollout) -> HTTPRouteRef:
    """The owned HTTPRoute seen as a reference to its one rule (to read its weights)."""
    names = generated_names(rollout)
    return HTTPRouteRef(
        name=names.http_route,
        rules=[CANARY_RULE if rollout.spec.ab_test is not None else PRIMARY_RULE],
        primary_service=names.primary_service,
        canary_service=names.canary_service,
    )


def generated_weights(rollout: Rollout, route: Mapping[str, Any]) -> TrafficState | None:
    """Weights of an owned HTTPRoute; None when it is not in the shape canaryd writes (then
    :meth:`GatewayRouter.reconcile` rewrites it)."""
    names = generated_names(rollout)
    if names.baseline_service is not None:
        return _three_way_weights(rollout, route, names)
    ref = generated_ref(rollout)
    try:
        weight = read_weights(route, ref).canary_weight
    except PermanentError:
        return None
    state = TrafficState(weight, mirror_percent=mirrored(route, ref.canary_service))
    owned = desired_http_route(rollout, state.canary_weight, mirror_percent=state.mirror_percent)[
        "spec"
    ]
    return state if route.get("spec") == owned else None


def _three_way_weights(
    rollout: Rollout, route: Mapping[str, Any], names: GeneratedNames
) -> TrafficState | None:
    """Weights of an owned three-way HTTPRoute; None unless it is exactly the shape canaryd
    writes (then reconcile rewrites it)."""
    try:
        backends = route["spec"]["rules"][0]["backendRefs"]
        weights = {b["name"]: b.get("weight", 1) for b in backends}
        canary = int(weights[names.canary_service])
        baseline = int(weights[names.baseline_service])
        owned = desired_http_route(rollout, canary, baseline_weight=baseline)["spec"]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    if route.get("spec") != owned:
        return None
    return TrafficState(canary_weight=canary, baseline_weight=baseline)


def mirrored(route: Mapping[str, Any], canary_service: str) -> int:
    """Percent of the ``primary`` rule's requests mirrored to ``canary_service`` (0: none):
    ``percent``, or ``fraction`` as a whole percent; neither means 100%."""
    for rule in (route.get("spec") or {}).get("rules") or []:
        if not isinstance(rule, Mapping) or rule.get("name") != PRIMARY_RULE:
            continue
        for f in rule.get("filters") or []:
            mirror = f.get("requestMirror") if isinstance(f, Mapping) else None
            if not isinstance(mirror, Mapping):
                continue
            if (mirror.get("backendRef") or {}).get("name") != canary_service:
                continue
            if "percent" in mirror:
                return int(mirror["percent"])
            fraction = mirror.get("fraction")
            if isinstance(fraction, Mapping):
                numerator = int(fraction.get("numerator", 0))
                return round(100 * numerator / max(1, int(fraction.get("denominator", 100))))
            return 100
    return 0


# ---- existing HTTPRoute (httpRouteRef) -------------------------------------------------------


def _kind(route: Mapping[str, Any]) -> str:
    kind = route.get("kind")
    return kind if isinstance(kind, str) and kind else "HTTPRoute"


def _route_name(route: Mapping[str, Any], ref: HTTPRouteRef) -> str:
    meta = route.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{ref.name}" if ns else ref.name


def managed_indexes(route: Mapping[str, Any], ref: HTTPRouteRef) -> list[int]:
    """Indexes in ``spec.rules`` of the rules canaryd manages. PermanentError when the HTTPRoute
    is malformed or a named rule is missing."""
    where = f"{_kind(route)} {_route_name(route, ref)}"
    spec = route.get("spec")
    if not isinstance(spec, Mapping):
        raise PermanentError(f"{where}: no spec")
    rules = spec.get("rules")
    if not isinstance(rules, list) or not all(isinstance(r, Mapping) for r in rules):
        raise PermanentError(f"{where}: spec.rules is missing or not a list of rules")
    if not ref.rules:
        if len(rules) != 1:
            raise PermanentError(
                f"{where}: has {len(rules)} rules; name the ones to manage in "
                "spec.httpRouteRef.rules"
            )
        return [0]
    by_name: dict[str, int] = {}
    for i, rule in enumerate(rules):
        name = rule.get("name")
        if isinstance(name, str):
            by_name.setdefault(name, i)
    missing = [r for r in ref.rules if r not in by_name]
    if missing:
        known = sorted(by_name) or ["(no named rules)"]
        raise PermanentError(
            f"{where}: no rule named {', '.join(repr(m) for m in missing)} "
            f"(rules: {', '.join(known)})"
        )
    return [by_name[r] for r in ref.rules]


def _rule_label(rule: Mapping[str, Any], index: int) -> str:
    name = rule.get("name")
    return f"rule {name!r}" if isinstance(name, str) else f"rule #{index}"


def _is_service(ref: Mapping[str, Any]) -> bool:
    return bool(ref.get("group", "") == "" and ref.get("kind", "Service") == "Service")


def _backends(
    route: Mapping[str, Any], ref: HTTPRouteRef, index: int
) -> tuple[list[JSON], int, int | None]:
    """The rule's backendRefs and the positions of primary and canary (None when the rule has
    no canary backendRef)."""
    rule = route["spec"]["rules"][index]
    where = f"{_kind(route)} {_route_name(route, ref)} {_rule_label(rule, index)}"
    raw = rule.get("backendRefs")
    if not isinstance(raw, list) or not raw:
        raise PermanentError(f"{where}: has no backendRefs (spec.rules[{index}].backendRefs)")
    names = []
    for backend in raw:
        if not isinstance(backend, Mapping) or not isinstance(backend.get("name"), str):
            raise PermanentError(f"{where}: a backendRef has no name")
        kind = f"{backend.get('group', '')}/{backend.get('kind', 'Service')}"
        names.append(backend["name"] if _is_service(backend) else f"{kind}:{backend['name']}")
    wanted = (ref.primary_service, ref.canary_service)
    others = sorted({n for n in names if n not in wanted})
    if others:
        raise PermanentError(
            f"{where}: backendRefs {others} are neither primaryService {ref.primary_service!r} "
            f"nor canaryService {ref.canary_service!r}; canaryd cannot keep weights summing "
            "to 100"
        )
    if names.count(ref.primary_service) != 1 or names.count(ref.canary_service) > 1:
        raise PermanentError(
            f"{where}: needs exactly one backendRef to Service {ref.primary_service!r} "
            f"(primaryService) and at most one to {ref.canary_service!r} (canaryService)"
        )
    canary = names.index(ref.canary_service) if ref.canary_service in names else None
    return [dict(b) for b in raw], names.index(ref.primary_service), canary


def _weight(backend: Mapping[str, Any]) -> int:
    value = backend.get("weight", 1)  # the schema's default
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def read_weights(route: Mapping[str, Any], ref: HTTPRouteRef) -> TrafficState:
    """Canary percentage of the managed rules. PermanentError when they disagree or are
    malformed (a missing canary backendRef reads as 0)."""
    where = f"{_kind(route)} {_route_name(route, ref)}"
    found = set()
    for index in managed_indexes(route, ref):
        backends, primary, canary = _backends(route, ref, index)
        p = _weight(backends[primary])
        c = 0 if canary is None else _weight(backends[canary])
        if p < 0 or c < 0 or p + c == 0:
            raise PermanentError(
                f"{where} rule #{index}: backendRef weights primary={p}, canary={c} route "
                "nothing canaryd can read"
            )
        # Proportions, not percentages: 100/0 and 1/0 both mean everything to the primary.
        found.add(c if p + c == 100 else round(100 * c / (p + c)))
    if len(found) != 1:
        raise PermanentError(
            f"{where}: managed rules disagree on the canary weight ({sorted(found)})"
        )
    return TrafficState(canary_weight=found.pop())


def with_weights(route: Mapping[str, Any], ref: HTTPRouteRef, canary_weight: int) -> JSON:
    """A copy of ``route`` whose managed rules send ``canary_weight`` % to the canary and the
    rest to the primary. Nothing else changes (other rules, matches, filters, timeouts...)."""
    check_weight(canary_weight)
    out = copy.deepcopy(dict(route))
    for index in managed_indexes(route, ref):
        backends, primary, canary = _backends(route, ref, index)
        if canary is None:
            template = copy.deepcopy(backends[primary])
            template["name"] = ref.canary_service
            template.pop("filters", None)  # the primary's own header rewrites stay its own
            backends.append(template)
            canary = len(backends) - 1
        backends[primary] = {**backends[primary], "weight": 100 - canary_weight}
        backends[canary] = {**backends[canary], "weight": canary_weight}
        out["spec"]["rules"][index]["backendRefs"] = backends
    return out
