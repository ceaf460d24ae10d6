"""Pure computations of the Istio router: no I/O, so every case is tested without a cluster.

Two modes, chosen by the Rollout's spec:

* **Host-level split** (``spec.service``, as Flagger does): canaryd owns two Services and one
  VirtualService. ``<name>-primary`` selects pods labelled ``app: <target>-primary`` (the primary
  Deployment canaryd creates), ``<name>-canary`` selects ``app: <target>`` (the target's own
  pods: **the target's pod template must carry the label** ``app: <target>``). The VirtualService
  ``<name>`` has one HTTP route named ``primary`` with two weighted destinations summing to 100.
  With ``spec.baseline`` a third Service ``<name>-baseline`` selects ``app: <target>-baseline``
  and the route has three destinations (primary, canary, baseline) summing to 100.
* **Existing VirtualService** (``spec.virtualServiceRef``, as Argo Rollouts does): only the named
  HTTP routes are changed, and in them only the weights of the destinations whose host is
  ``primaryHost`` / ``canaryHost`` (the canary destination is added when missing, copying the
  primary's port). Every other route and field is left exactly as it was.

A VirtualService that cannot be managed raises :class:`~canaryd.core.ports.PermanentError`
with a message naming the VirtualService and the route.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from canaryd.api.models import API_VERSION, RequestMatch, Rollout, VirtualServiceRef
from canaryd.core.ports import PermanentError
from canaryd.core.types import TrafficState

JSON = dict[str, Any]

ISTIO_GROUP = "networking.istio.io"
ISTIO_VERSION = "v1"
VS_PLURAL = "virtualservices"
PRIMARY_ROUTE = "primary"
CANARY_ROUTE = "canary"
"""The route of the requests matching ``spec.abTest.match`` (before ``primary``)."""
STICKY_ROUTE = "sticky"
"""The route of the requests carrying the session-affinity cookie (before ``primary``)."""
MANAGED_BY = {"app.kubernetes.io/managed-by": "canaryd"}


@dataclass(frozen=True, slots=True)
class HostNames:
    """Names of the objects canaryd owns in host-level mode."""

    virtual_service: str
    primary_service: str
    canary_service: str
    primary_app: str
    canary_app: str
    baseline_service: str | None = None
    """``<name>-baseline`` with ``spec.baseline``; None without."""
    baseline_app: str | None = None


def host_names(rollout: Rollout) -> HostNames:
    """Object names and pod labels of the host-level split (see the module docstring)."""
    service = rollout.spec.service
    if service is None:
        raise PermanentError(f"Rollout {_where(rollout)}: spec.service is not set")
    target = rollout.spec.target_ref.name
    base = service.name or target
    with_baseline = rollout.spec.baseline is not None
    return HostNames(
        virtual_service=base,
        primary_service=f"{base}-primary",
        canary_service=f"{base}-canary",
        primary_app=f"{target}-primary",
        canary_app=target,
        baseline_service=f"{base}-baseline" if with_baseline else None,
        baseline_app=f"{target}-baseline" if with_baseline else None,
    )


def _where(rollout: Rollout) -> str:
    return f"{rollout.metadata.namespace}/{rollout.metadata.name}"


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


def check_weight(canary_weight: int, baseline_weight: int = 0) -> int:
    if not 0 <= canary_weight <= 100:
        raise ValueError(f"canary weight must be within 0..100, got {canary_weight}")
    if not 0 <= baseline_weight <= 100 - canary_weight:
        raise ValueError(
            f"baseline weight must be within 0..{100 - canary_weight} beside canary weight "
            f"{canary_weight}, got {baseline_weight}"
        )
    return canary_weight


# ---- host-level mode -------------------------------------------------------------------------


def desired_services(rollout: Rollout) -> list[JSON]:
    """The ``<name>-primary`` and ``<name>-canary`` Services (bodies for create/replace)."""
    service = rollout.spec.service
    assert service is not None
    names = host_names(rollout)
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


def split(
    primary_host: str,
    canary_host: str,
    canary_weight: int,
    port: int | None,
    *,
    baseline_host: str | None = None,
    baseline_weight: int = 0,
) -> list[JSON]:
    """Weighted destinations, primary first, weights summing to 100: two, or three with a
    ``baseline_host`` (primary, canary, baseline; the baseline's kept at weight 0 while it
    gets no traffic, so the route's shape does not change with its readiness)."""
    if baseline_host is None and baseline_weight:
        raise ValueError("a baseline weight needs a baseline host")
    check_weight(canary_weight, baseline_weight)
    arms = [
        (primary_host, 100 - canary_weight - baseline_weight),
        (canary_host, canary_weight),
    ]
    if baseline_host is not None:
        arms.append((baseline_host, baseline_weight))
    destinations = []
    for host, weight in arms:
        destination: JSON = {"host": host}
        if port is not None:
            destination["port"] = {"number": port}
        destinations.append({"destination": destination, "weight": weight})
    return destinations


def istio_match(match: RequestMatch) -> JSON:
    """One HTTPMatchRequest of Istio for one ``abTest.match`` condition (all ANDed)."""
    out: JSON = {}
    headers = {name: m.wire() for name, m in match.headers.items()}
    if match.cookie is not None:
        headers["cookie"] = {"regex": match.cookie.header_regex()}
    if headers:
        out["headers"] = headers
    if match.query_params:
        out["queryParams"] = {name: m.wire() for name, m in match.query_params.items()}
    return out


def desired_virtual_service(
    rollout: Rollout, canary_weight: int, baseline_weight: int = 0, *, mirror_percent: int = 0
) -> JSON:
    """The VirtualService of host-level mode with ``canary_weight`` % to the canary (and
    ``baseline_weight`` % to the baseline, with ``spec.baseline``: a three-way split of the
    ``primary`` route; the model refuses a baseline beside abTest, mirror or sessionAffinity).

    With ``spec.abTest`` the weight applies to the requests matching it (route ``canary``,
    first: Istio takes the first route that matches); every other request goes to the primary
    (route ``primary``, 100/0). With ``mirror_percent`` the ``primary`` route also copies that
    share of its requests to the canary (``mirror`` + ``mirrorPercentage``)."""
    service = rollout.spec.service
    assert service is not None
    names = host_names(rollout)
    check_weight(mirror_percent)
    ab = rollout.spec.ab_test
    primary: JSON = {
        "name": PRIMARY_ROUTE,
        "route": split(
            names.primary_service,
            names.canary_service,
            0 if ab is not None else canary_weight,
            service.port,
            baseline_host=names.baseline_service,
            baseline_weight=baseline_weight,
        ),
    }
    if mirror_percent:
        primary["mirror"] = {"host": names.canary_service, "port": {"number": service.port}}
        primary["mirrorPercentage"] = {"value": float(mirror_percent)}
    http = [primary]
    affinity = rollout.spec.session_affinity
    if affinity is not None:
        http = [_sticky(rollout, canary_weight, primary), primary]
    if ab is not None:
        canary: JSON = {
            "name": CANARY_ROUTE,
            "match": [istio_match(m) for m in ab.match],
            "route": split(
                names.primary_service, names.canary_service, canary_weight, service.port
            ),
        }
        http = [canary, primary]
    spec: JSON = {"hosts": list(service.hosts) or [names.virtual_service], "http": http}
    if service.gateways:
        spec["gateways"] = list(service.gateways)
    return {
        "apiVersion": f"{ISTIO_GROUP}/{ISTIO_VERSION}",
        "kind": "VirtualService",
        "metadata": _owned_metadata(rollout, names.virtual_service),
        "spec": spec,
    }


def host_weights(rollout: Rollout, vs: Mapping[str, Any]) -> TrafficState | None:
    """Weights of an owned VirtualService; None when it is not in the shape canaryd writes
    (then :meth:`IstioRouter.reconcile` rewrites it)."""
    names = host_names(rollout)
    if names.baseline_service is not None:
        return _three_way_weights(rollout, vs, names)
    ref = VirtualServiceRef(
        name=names.virtual_service,
        routes=[CANARY_ROUTE if rollout.spec.ab_test is not None else PRIMARY_ROUTE],
        primary_host=names.primary_service,
        canary_host=names.canary_service,
    )
    try:
        weight = read_weights(vs, ref).canary_weight
    except PermanentError:
        return None
    return TrafficState(canary_weight=weight, mirror_percent=_mirrored(vs, names.canary_service))


def _sticky(rollout: Rollout, canary_weight: int, weighted: JSON) -> JSON:
    """Session affinity (as Flagger's Istio router): while the canary has traffic, its answers
    on the weighted route set the cookie and the ``sticky`` route sends requests carrying it to
    the canary; without canary traffic the ``sticky`` route sends them to the primary and
    expires the cookie. The cookie names the canary's revision (``status.canaryRevision``)."""
    affinity = rollout.spec.session_affinity
    service = rollout.spec.service
    assert affinity is not None and service is not None
    names = host_names(rollout)
    revision = rollout.status.canary_revision
    match = [{"headers": {"cookie": {"regex": affinity.match_regex(revision)}}}]
    if canary_weight > 0:
        canary = weighted["route"][1]
        canary["headers"] = {"response": {"add": {"Set-Cookie": affinity.set_cookie(revision)}}}
        route = split(names.primary_service, names.canary_service, 100, service.port)
        return {"name": STICKY_ROUTE, "match": match, "route": route}
    return {
        "name": STICKY_ROUTE,
        "match": match,
        "route": split(names.primary_service, names.canary_service, 0, service.port),
        "headers": {
            "response": {"add": {"Set-Cookie": affinity.set_cookie(revision, expire=True)}}
        },
    }


def _mirrored(vs: Mapping[str, Any], canary_host: str) -> int:
    """Percent of the ``primary`` route's requests mirrored to the canary (0: none). Istio
    mirrors 100% when ``mirrorPercentage`` is absent."""
    for route in (vs.get("spec") or {}).get("http") or []:
        if not isinstance(route, Mapping) or route.get("name") != PRIMARY_ROUTE:
            continue
        mirror = route.get("mirror")
        if not isinstance(mirror, Mapping) or mirror.get("host") != canary_host:
            return 0
        value = (route.get("mirrorPercentage") or {}).get("value", 100.0)
        return round(value) if isinstance(value, int | float) else 0
    return 0


def _three_way_weights(
    rollout: Rollout, vs: Mapping[str, Any], names: HostNames
) -> TrafficState | None:
    """Weights of an owned three-way VirtualService; None unless it is exactly the shape
    canaryd writes (then reconcile rewrites it)."""
    try:
        dests = vs["spec"]["http"][0]["route"]
        weights = {d["destination"]["host"]: d.get("weight", 0) for d in dests}
        canary = int(weights[names.canary_service])
        baseline = int(weights[names.baseline_service])
        desired = desired_virtual_service(rollout, canary, baseline_weight=baseline)["spec"]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    if vs.get("spec") != desired:
        return None
    return TrafficState(canary_weight=canary, baseline_weight=baseline)


def service_differs(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """True when an existing Service's selector or ports differ from what canaryd wants."""
    spec = existing.get("spec") or {}
    want = desired["spec"]
    ports = [
        {k: p.get(k) for k in ("name", "port", "targetPort", "protocol")}
        for p in spec.get("ports") or []
    ]
    return bool(spec.get("selector") != want["selector"] or ports != want["ports"])


# ---- existing VirtualService (virtualServiceRef) ---------------------------------------------


def _vs_name(vs: Mapping[str, Any], ref: VirtualServiceRef) -> str:
    meta = vs.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{ref.name}" if ns else ref.name


def managed_indexes(vs: Mapping[str, Any], ref: VirtualServiceRef) -> list[int]:
    """Indexes in ``spec.http`` of the routes canaryd manages. PermanentError when the
    VirtualService is malformed or a named route is missing."""
    where = f"VirtualService {_vs_name(vs, ref)}"
    spec = vs.get("spec")
    if not isinstance(spec, Mapping):
        raise PermanentError(f"{where}: no spec")
    http = spec.get("http")
    if not isinstance(http, list) or not all(isinstance(r, Mapping) for r in http):
        raise PermanentError(f"{where}: spec.http is missing or not a list of HTTP routes")
    if not ref.routes:
        if len(http) != 1:
            raise PermanentError(
                f"{where}: has {len(http)} HTTP routes; name the ones to manage in "
                "spec.virtualServiceRef.routes"
            )
        return [0]
    by_name: dict[str, int] = {}
    for i, route in enumerate(http):
        name = route.get("name")
        if isinstance(name, str):
            by_name.setdefault(name, i)
    missing = [r for r in ref.routes if r not in by_name]
    if missing:
        known = sorted(by_name) or ["(no named routes)"]
        raise PermanentError(
            f"{where}: no HTTP route named {', '.join(repr(m) for m in missing)} "
            f"(routes: {', '.join(known)})"
        )
    return [by_name[r] for r in ref.routes]


def _route_label(route: Mapping[str, Any], index: int) -> str:
    name = route.get("name")
    return f"route {name!r}" if isinstance(name, str) else f"route #{index}"


def _destinations(
    vs: Mapping[str, Any], ref: VirtualServiceRef, index: int
) -> tuple[list[JSON], int, int | None]:
    """The route's destinations and the positions of primary and canary (None when the route
    has no canary destination)."""
    route = vs["spec"]["http"][index]
    where = f"VirtualService {_vs_name(vs, ref)} {_route_label(route, index)}"
    raw = route.get("route")
    if not isinstance(raw, list) or not raw:
        raise PermanentError(f"{where}: has no destinations (spec.http[{index}].route)")
    hosts = []
    for dest in raw:
        host = (dest.get("destination") or {}).get("host") if isinstance(dest, Mapping) else None
        if not isinstance(host, str):
            raise PermanentError(f"{where}: a destination has no host")
        hosts.append(host)
    others = sorted({h for h in hosts if h not in (ref.primary_host, ref.canary_host)})
    if others:
        raise PermanentError(
            f"{where}: destinations {others} are neither primaryHost {ref.primary_host!r} "
            f"nor canaryHost {ref.canary_host!r}; canaryd cannot keep weights summing to 100"
        )
    if hosts.count(ref.primary_host) != 1 or hosts.count(ref.canary_host) > 1:
        raise PermanentError(
            f"{where}: needs exactly one destination with host {ref.primary_host!r} "
            f"(primaryHost) and at most one with {ref.canary_host!r} (canaryHost)"
        )
    canary = hosts.index(ref.canary_host) if ref.canary_host in hosts else None
    return [dict(d) for d in raw], hosts.index(ref.primary_host), canary


def read_weights(vs: Mapping[str, Any], ref: VirtualServiceRef) -> TrafficState:
    """Canary weight of the managed routes. PermanentError when they disagree or are malformed
    (a missing canary destination reads as weight 0)."""
    weights = set()
    for index in managed_indexes(vs, ref):
        dests, _, canary = _destinations(vs, ref, index)
        if canary is None:
            weights.add(0)
            continue
        weight = dests[canary].get("weight", 100 if len(dests) == 1 else 0)
        weights.add(int(weight))
    if len(weights) != 1:
        raise PermanentError(
            f"VirtualService {_vs_name(vs, ref)}: managed routes disagree on the canary weight "
            f"({sorted(weights)})"
        )
    return TrafficState(canary_weight=weights.pop())


def with_weights(vs: Mapping[str, Any], ref: VirtualServiceRef, canary_weight: int) -> JSON:
    """A copy of ``vs`` whose managed routes send ``canary_weight`` % to the canary and the rest
    to the primary. Nothing else changes (other routes, matches, retries, headers...)."""
    check_weight(canary_weight)
    out = copy.deepcopy(dict(vs))
    for index in managed_indexes(vs, ref):
        dests, primary, canary = _destinations(vs, ref, index)
        if canary is None:
            template = copy.deepcopy(dests[primary])
            template["destination"] = {**template["destination"], "host": ref.canary_host}
            template.pop("headers", None)  # header rewrites belong to the primary's route
            dests.append(template)
            canary = len(dests) - 1
        dests[primary] = {**dests[primary], "weight": 100 - canary_weight}
        dests[canary] = {**dests[canary], "weight": canary_weight}
        out["spec"]["http"][index]["route"] = dests
    return out
