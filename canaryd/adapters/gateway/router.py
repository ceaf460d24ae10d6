"""The Gateway API traffic router: :class:`~canaryd.core.ports.TrafficRouter` over the one
transport (:class:`canaryd.adapters.transport.KubeApi`: bounded retries, the one error mapping).

All shapes come from the pure functions of :mod:`canaryd.adapters.gateway.routes`; this module
only reads and writes. One class per mode, as the Istio router has:

* :class:`GeneratedRouter` (``spec.service``): canaryd owns two Services and one HTTPRoute
  (``spec.service.routeKind: GRPCRoute``: one GRPCRoute);
  finalisation deletes them.
* :class:`RefRouter` (``spec.httpRouteRef``): only the named rules of the user's HTTPRoute
  (or GRPCRoute, ``httpRouteRef.kind``)
  change; finalisation routes them 100% to the primary Service.

Every HTTPRoute write is a PUT of the object as read (its ``resourceVersion`` guards it); on a
409 the router re-reads and re-applies the *same* desired weight, a bounded number of times.

Reads come from the informer stores (:mod:`canaryd.adapters.cache`) when the router is built
with a cache: a tick whose routing is already as desired makes no request (each write is
computed, compared with the stored object, and skipped when equal). Every write's answer goes
into the store (read-your-own-writes); a 409 marks the stored copy stale, so the retry reads
live.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from canaryd.adapters.cache import SERVICES, Cache, Kind, Reader, reader_of
from canaryd.adapters.gateway import routes
from canaryd.adapters.transport import JSON, ConflictError, KubeApi, NotFoundError
from canaryd.api.models import HTTPRouteRef, Rollout
from canaryd.core.ports import ByMode, PermanentError, TemporaryError, TrafficRouter
from canaryd.core.types import TrafficState

CONFLICT_ATTEMPTS = 5
"""Read-modify-write rounds before an HTTPRoute conflict is given up (as TemporaryError)."""
HTTP_ROUTES = Kind(
    "HTTPRoute", routes.GATEWAY_GROUP, routes.GATEWAY_VERSION, routes.HTTPROUTE_PLURAL
)
GRPC_ROUTES = Kind(
    "GRPCRoute", routes.GATEWAY_GROUP, routes.GATEWAY_VERSION, routes.GRPCROUTE_PLURAL
)


def _route_path(ns: str, name: str = "", plural: str = routes.HTTPROUTE_PLURAL) -> str:
    group, version = routes.GATEWAY_GROUP, routes.GATEWAY_VERSION
    base = f"/apis/{group}/{version}/namespaces/{ns}/{plural}"
    return f"{base}/{name}" if name else base


def _service_path(ns: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{ns}/services"
    return f"{base}/{name}" if name else base


class _HTTPRoutes:
    """Reads and conflict-safe writes of HTTPRoutes, or of GRPCRoutes (``kind``), shared by
    both modes."""

    def __init__(
        self, api: KubeApi, field_manager: str, reader: Reader, kind: str = "HTTPRoute"
    ) -> None:
        self.api = api
        self.query = [("fieldManager", field_manager)]
        self.reader = reader
        self.kind = kind
        self.plural = routes.PLURALS[kind]

    def get(self, ns: str, name: str) -> JSON | None:
        return self.reader.get(ns, name)

    def require(self, ns: str, ref: HTTPRouteRef) -> JSON:
        route = self.get(ns, ref.name)
        if route is None:
            raise PermanentError(f"{self.kind} {ns}/{ref.name} (spec.httpRouteRef) not found")
        return route

    def create(self, ns: str, body: JSON) -> None:
        name = body["metadata"]["name"]
        try:
            created = self.api.request(
                "POST",
                _route_path(ns, plural=self.plural),
                query=self.query,
                body=body,
                what=f"create {self.kind} {ns}/{name}",
            )
        except ConflictError:
            self.reader.invalidate(ns, name)  # it exists: the next read looks
            raise
        self.reader.wrote(created)

    def update(self, ns: str, name: str, change: Callable[[JSON | None], JSON | None]) -> None:
        """Read (the cache), compute the new spec with ``change`` (None: nothing to write, no
        request), PUT the object as read with it; on 409 read again (live) and recompute, up
        to :data:`CONFLICT_ATTEMPTS`."""
        for attempt in range(CONFLICT_ATTEMPTS):
            current = self.get(ns, name)
            spec = change(current)
            if spec is None:
                return
            if current is None:
                raise TemporaryError(f"{self.kind} {ns}/{name} vanished while updating")
            try:
                written = self.api.request(
                    "PUT",
                    _route_path(ns, name, self.plural),
                    query=self.query,
                    body={**current, "spec": spec},
                    what=f"update {self.kind} {ns}/{name}",
                )
            except ConflictError:
                # The cached copy is stale: the next round reads the HTTPRoute live.
                self.reader.invalidate(ns, name)
                if attempt == CONFLICT_ATTEMPTS - 1:
                    raise
                continue
            self.reader.wrote(written)
            return

    def delete(self, ns: str, name: str) -> None:
        with contextlib.suppress(NotFoundError):  # already gone
            self.api.delete(
                _route_path(ns, name, self.plural), what=f"delete {self.kind} {ns}/{name}"
            )
        self.reader.deleted(ns, name)


class GeneratedRouter:
    """``<name>-primary`` / ``<name>-canary`` Services and the HTTPRoute ``<name>``, all owned
    by the Rollout."""

    def __init__(
        self,
        api: KubeApi,
        field_manager: str,
        http_routes: _HTTPRoutes,
        grpc_routes: _HTTPRoutes,
        services: Reader,
    ) -> None:
        self.api = api
        self.routes = http_routes
        self.grpc_routes = grpc_routes
        self.services = services
        self.query = [("fieldManager", field_manager)]

    def _for(self, rollout: Rollout) -> _HTTPRoutes:
        return self.grpc_routes if routes.route_kind(rollout) == "GRPCRoute" else self.routes

    def reconcile(self, rollout: Rollout, *, canary_weight: int, baseline_weight: int = 0) -> None:
        """Create or verify the Services and the HTTPRoute. Weights already routed are kept;
        ``canary_weight`` (and ``baseline_weight``) are used only where the route is created or
        was not canaryd's shape."""
        routes.check_weight(canary_weight, baseline_weight)
        ns = rollout.metadata.namespace
        for body in routes.desired_services(rollout):
            self._ensure_service(ns, body)
        name = routes.generated_names(rollout).http_route
        if self._for(rollout).get(ns, name) is None:
            try:
                self._for(rollout).create(
                    ns,
                    routes.desired_http_route(
                        rollout, canary_weight, baseline_weight=baseline_weight
                    ),
                )
                return
            except ConflictError:
                pass  # created meanwhile: verify it below

        def keep(existing: JSON | None) -> JSON | None:
            current = routes.generated_weights(rollout, existing) if existing else None
            weight = current.canary_weight if current is not None else canary_weight
            baseline = current.baseline_weight if current is not None else baseline_weight
            mirror = current.mirror_percent if current is not None else 0
            desired = routes.desired_http_route(
                rollout, weight, baseline_weight=baseline, mirror_percent=mirror
            )["spec"]
            return None if existing is not None and existing.get("spec") == desired else desired

        self._for(rollout).update(ns, name, keep)

    def get_weights(self, rollout: Rollout) -> TrafficState | None:
        route = self._for(rollout).get(
            rollout.metadata.namespace, routes.generated_names(rollout).http_route
        )
        return routes.generated_weights(rollout, route) if route is not None else None

    def set_weights(
        self,
        rollout: Rollout,
        *,
        canary_weight: int,
        baseline_weight: int = 0,
        mirror_percent: int = 0,
    ) -> None:
        routes.check_weight(canary_weight, baseline_weight)
        ns = rollout.metadata.namespace
        name = routes.generated_names(rollout).http_route
        desired = routes.desired_http_route(
            rollout, canary_weight, baseline_weight=baseline_weight, mirror_percent=mirror_percent
        )["spec"]
        if self._for(rollout).get(ns, name) is None:
            self.reconcile(rollout, canary_weight=canary_weight, baseline_weight=baseline_weight)
            if not mirror_percent:
                return  # created as desired
        self._for(rollout).update(
            ns, name, lambda existing: None if (existing or {}).get("spec") == desired else desired
        )

    def finalize(self, rollout: Rollout) -> None:
        """Delete the HTTPRoute, then the Services canaryd created. Idempotent."""
        ns = rollout.metadata.namespace
        names = routes.generated_names(rollout)
        self._for(rollout).delete(ns, names.http_route)
        owned = [names.canary_service, names.primary_service]
        if names.baseline_service is not None:
            owned.insert(0, names.baseline_service)
        for service in owned:
            with contextlib.suppress(NotFoundError):  # already gone
                self.api.delete(_service_path(ns, service), what=f"delete Service {ns}/{service}")
            self.services.deleted(ns, service)

    def _ensure_service(self, ns: str, body: JSON) -> None:
        name = body["metadata"]["name"]
        path = _service_path(ns, name)
        existing = self.services.get(ns, name)
        if existing is None:
            try:
                created = self.api.request(
                    "POST",
                    _service_path(ns),
                    query=self.query,
                    body=body,
                    what=f"create Service {ns}/{name}",
                )
                self.services.wrote(created)
            except ConflictError:
                # Created meanwhile (a retried create whose answer was lost): the next read
                # looks at it live.
                self.services.invalidate(ns, name)
            return
        if routes.service_differs(existing, body):
            # Keep what the API server allocated (clusterIP) and guard with the version.
            spec = {**existing.get("spec", {}), **body["spec"]}
            try:
                written = self.api.request(
                    "PUT",
                    path,
                    query=self.query,
                    body={**existing, "spec": spec},
                    what=f"update Service {ns}/{name}",
                )
            except ConflictError:
                self.services.invalidate(ns, name)
                raise
            self.services.wrote(written)


class RefRouter:
    """The named rules of the user's HTTPRoute (``spec.httpRouteRef``)."""

    def __init__(self, http_routes: _HTTPRoutes, grpc_routes: _HTTPRoutes) -> None:
        self.routes = http_routes
        self.grpc_routes = grpc_routes

    def _for(self, rollout: Rollout) -> _HTTPRoutes:
        return self.grpc_routes if routes.route_kind(rollout) == "GRPCRoute" else self.routes

    def reconcile(self, rollout: Rollout, *, canary_weight: int, baseline_weight: int = 0) -> None:
        """Verify the named rules; add a missing canary backendRef; keep routed weights."""
        _no_baseline(baseline_weight)
        routes.check_weight(canary_weight)
        ref = self._ref(rollout)
        ns = rollout.metadata.namespace
        self._for(rollout).require(ns, ref)

        def keep(route: JSON | None) -> JSON | None:
            if route is None:
                raise PermanentError(f"{ref.kind} {ns}/{ref.name} not found")
            try:
                weight = routes.read_weights(route, ref).canary_weight
            except PermanentError:
                # Unreadable weights (rules disagree): set them; with_weights raises the precise
                # PermanentError when the rules themselves are unusable.
                weight = canary_weight
            return _changed(route, routes.with_weights(route, ref, weight))

        self._for(rollout).update(ns, ref.name, keep)

    def get_weights(self, rollout: Rollout) -> TrafficState | None:
        ref = self._ref(rollout)
        return routes.read_weights(self._for(rollout).require(rollout.metadata.namespace, ref), ref)

    def set_weights(
        self,
        rollout: Rollout,
        *,
        canary_weight: int,
        baseline_weight: int = 0,
        mirror_percent: int = 0,
    ) -> None:
        _no_baseline(baseline_weight)
        routes.check_weight(canary_weight)
        if mirror_percent:
            raise PermanentError("mirroring needs spec.service: an HTTPRoute canaryd owns")
        ref = self._ref(rollout)
        ns = rollout.metadata.namespace
        self._for(rollout).require(ns, ref)

        def apply(route: JSON | None) -> JSON | None:
            if route is None:
                raise PermanentError(f"{ref.kind} {ns}/{ref.name} not found")
            return _changed(route, routes.with_weights(route, ref, canary_weight))

        self._for(rollout).update(ns, ref.name, apply)

    def finalize(self, rollout: Rollout) -> None:
        """100% of the named rules to the primary Service. An HTTPRoute the user already
        deleted needs nothing; a malformed one raises PermanentError (rules unknown)."""
        ref = self._ref(rollout)

        def restore(route: JSON | None) -> JSON | None:
            return None if route is None else _changed(route, routes.with_weights(route, ref, 0))

        self._for(rollout).update(rollout.metadata.namespace, ref.name, restore)

    @staticmethod
    def _ref(rollout: Rollout) -> HTTPRouteRef:
        ref = rollout.spec.http_route_ref
        if ref is None:
            raise PermanentError(
                f"Rollout {rollout.metadata.namespace}/{rollout.metadata.name}: "
                "spec.httpRouteRef is not set"
            )
        return ref


def _no_baseline(baseline_weight: int) -> None:
    if baseline_weight:
        # spec.baseline needs spec.service (the model says so): never reached from a valid spec.
        raise PermanentError("a baseline arm needs spec.service (no baseline Service to route to)")


def _changed(route: JSON, updated: JSON) -> JSON | None:
    spec: Any = updated["spec"]
    return None if spec == route.get("spec") else dict(spec)


class GatewayRouter(ByMode):
    """Routes traffic between primary and canary with Gateway API ``HTTPRoute``
    (``gateway.networking.k8s.io/v1``); picks :class:`RefRouter` or :class:`GeneratedRouter`
    by the Rollout's spec."""

    def __init__(
        self, api: KubeApi, *, field_manager: str = "canaryd", cache: Cache | None = None
    ) -> None:
        http_routes = _HTTPRoutes(api, field_manager, reader_of(api, HTTP_ROUTES, cache))
        grpc_routes = _HTTPRoutes(
            api, field_manager, reader_of(api, GRPC_ROUTES, cache), "GRPCRoute"
        )
        self.generated = GeneratedRouter(
            api, field_manager, http_routes, grpc_routes, reader_of(api, SERVICES, cache)
        )
        self.ref = RefRouter(http_routes, grpc_routes)

    def mode(self, rollout: Rollout) -> TrafficRouter:
        return self.ref if rollout.spec.http_route_ref is not None else self.generated
