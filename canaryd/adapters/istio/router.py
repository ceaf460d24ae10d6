"""The Istio traffic router: :class:`~canaryd.core.ports.TrafficRouter` over the one transport.

All shapes come from the pure functions of :mod:`canaryd.adapters.istio.routes`; this module
only reads and writes, through :class:`canaryd.adapters.transport.KubeApi` (retries with a
bounded budget, the one error mapping). One class per mode, as Flagger has one router per mesh:

* :class:`HostRouter` (``spec.service``): canaryd owns two Services and one VirtualService;
  finalisation deletes them (traffic to the host then follows the user's own Service).
* :class:`RefRouter` (``spec.virtualServiceRef``): only the named routes of the user's
  VirtualService change; finalisation routes them 100% to the primary host.

:class:`IstioRouter` picks the mode per Rollout. Every VirtualService write is a PUT of the
object as read (its ``resourceVersion`` guards it). A 409 means someone wrote in between: the
router re-reads and re-applies the *same* desired weight (bounded attempts), so a conflict never
turns into a failed tick, and a re-applied write can never move weights anywhere but to the
value asked for (no flapping).

Reads come from the informer stores (:mod:`canaryd.adapters.cache`) when the router is built
with a cache: a tick whose routing is already as desired makes no request at all (each write
is computed, compared with the stored object, and skipped when equal). Every write's answer
goes into the store (read-your-own-writes); a 409 marks the stored copy stale, so the retry
reads live.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from canaryd.adapters.cache import SERVICES, Cache, Kind, Reader, reader_of
from canaryd.adapters.istio import routes
from canaryd.adapters.transport import JSON, ConflictError, KubeApi, NotFoundError
from canaryd.api.models import Rollout, VirtualServiceRef
from canaryd.core.ports import ByMode, PermanentError, TemporaryError, TrafficRouter
from canaryd.core.types import TrafficState

CONFLICT_ATTEMPTS = 5
"""Read-modify-write rounds before a VirtualService conflict is given up (as TemporaryError)."""
VIRTUAL_SERVICES = Kind(
    "VirtualService", routes.ISTIO_GROUP, routes.ISTIO_VERSION, routes.VS_PLURAL
)


def _vs_path(ns: str, name: str = "") -> str:
    base = f"/apis/{routes.ISTIO_GROUP}/{routes.ISTIO_VERSION}/namespaces/{ns}/{routes.VS_PLURAL}"
    return f"{base}/{name}" if name else base


def _service_path(ns: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{ns}/services"
    return f"{base}/{name}" if name else base


MAX_VERIFIED = 65536
"""Remembered verified reconciles (one per Rollout); past it the memory starts over."""


def _all_same(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    """The spec and the cached objects by identity, the uid by value."""
    return len(a) == len(b) and all(
        x is y or (isinstance(x, str) and x == y) for x, y in zip(a, b, strict=True)
    )


class _VirtualServices:
    """Reads and conflict-safe writes of VirtualServices (shared by both modes)."""

    def __init__(self, api: KubeApi, field_manager: str, reader: Reader) -> None:
        self.api = api
        self.query = [("fieldManager", field_manager)]
        self.reader = reader

    def get(self, ns: str, name: str) -> JSON | None:
        return self.reader.get(ns, name)

    def require(self, ns: str, ref: VirtualServiceRef) -> JSON:
        vs = self.get(ns, ref.name)
        if vs is None:
            raise PermanentError(
                f"VirtualService {ns}/{ref.name} (spec.virtualServiceRef) not found"
            )
        return vs

    def create(self, ns: str, body: JSON) -> None:
        name = body["metadata"]["name"]
        try:
            created = self.api.request(
                "POST",
                _vs_path(ns),
                query=self.query,
                body=body,
                what=f"create VirtualService {ns}/{name}",
            )
        except ConflictError:
            self.reader.invalidate(ns, name)  # it exists: the next read looks
            raise
        self.reader.wrote(created)

    def replace(self, existing: JSON, spec: JSON) -> None:
        """PUT the object as read with a new spec: its resourceVersion guards the write."""
        meta = existing["metadata"]
        try:
            written = self.api.request(
                "PUT",
                _vs_path(meta["namespace"], meta["name"]),
                query=self.query,
                body={**existing, "spec": spec},
                what=f"update VirtualService {meta['namespace']}/{meta['name']}",
            )
        except ConflictError:
            # The cached copy is stale: the next round reads the VirtualService live.
            self.reader.invalidate(meta["namespace"], meta["name"])
            raise
        self.reader.wrote(written)

    def update(self, ns: str, name: str, change: Callable[[JSON | None], JSON | None]) -> None:
        """Read (the cache), compute the new spec with ``change`` (None: nothing to write, no
        request), PUT; on 409 read again (live) and recompute, up to :data:`CONFLICT_ATTEMPTS`
        times."""
        for attempt in range(CONFLICT_ATTEMPTS):
            current = self.get(ns, name)
            spec = change(current)
            if spec is None:
                return
            try:
                if current is None:
                    raise TemporaryError(f"VirtualService {ns}/{name} vanished while updating")
                self.replace(current, spec)
                return
            except ConflictError:
                if attempt == CONFLICT_ATTEMPTS - 1:
                    raise

    def delete(self, ns: str, name: str) -> None:
        with contextlib.suppress(NotFoundError):  # already gone
            self.api.delete(_vs_path(ns, name), what=f"delete VirtualService {ns}/{name}")
        self.reader.deleted(ns, name)


class HostRouter:
    """Host-level split: ``<name>-primary`` / ``<name>-canary`` Services and the VirtualService
    ``<name>``, all owned by the Rollout."""

    def __init__(
        self, api: KubeApi, field_manager: str, vs: _VirtualServices, services: Reader
    ) -> None:
        self.api = api
        self.vs = vs
        self.services = services
        self.query = [("fieldManager", field_manager)]
        self._verified: dict[tuple[str, str], tuple[object, ...]] = {}
        """Per Rollout, the inputs of the last reconcile that found everything as desired."""

    def reconcile(self, rollout: Rollout, *, canary_weight: int, baseline_weight: int = 0) -> None:
        """Create or verify the Services and the VirtualService. Weights already routed are
        kept; ``canary_weight`` (and ``baseline_weight``) are used only where the route is
        created or was unreadable.

        A reconcile that found everything as desired is remembered with its inputs: the
        Rollout's spec and uid and the cached objects themselves (by identity: the cache hands
        out the stored dicts, replaced on every change). While they are the same objects the
        answer is the same, so the next tick skips building and comparing the desired objects
        (a twentieth of a steady-state tick)."""
        routes.check_weight(canary_weight, baseline_weight)
        ns = rollout.metadata.namespace
        key = (ns, rollout.metadata.name)
        before = self._inputs(rollout)
        verified = self._verified.get(key)
        if verified is not None and _all_same(verified, before):
            return
        self._verified.pop(key, None)
        self._reconcile(rollout, canary_weight, baseline_weight)
        # Remembered only when this reconcile changed nothing (no write, no live read): a write
        # is verified against the server's answer by the next reconcile first.
        if all(obj is not None for obj in before[2:]) and _all_same(before, self._inputs(rollout)):
            if len(self._verified) >= MAX_VERIFIED:
                self._verified.clear()  # Rollouts gone without a finalize: start over
            self._verified[key] = before

    def _inputs(self, rollout: Rollout) -> tuple[object, ...]:
        ns = rollout.metadata.namespace
        names = routes.host_names(rollout)
        services = [names.primary_service, names.canary_service]
        if names.baseline_service is not None:
            services.append(names.baseline_service)
        return (
            rollout.spec,
            rollout.metadata.uid,
            self.vs.reader.held(ns, names.virtual_service),
            *(self.services.held(ns, name) for name in services),
        )

    def _reconcile(self, rollout: Rollout, canary_weight: int, baseline_weight: int) -> None:
        ns = rollout.metadata.namespace
        for body in routes.desired_services(rollout):
            self._ensure_service(ns, body)
        name = routes.host_names(rollout).virtual_service
        if self.vs.get(ns, name) is None:
            try:
                self.vs.create(
                    ns, routes.desired_virtual_service(rollout, canary_weight, baseline_weight)
                )
                return
            except ConflictError:
                pass  # created meanwhile: verify it below

        def keep(existing: JSON | None) -> JSON | None:
            current = routes.host_weights(rollout, existing) if existing is not None else None
            weight = current.canary_weight if current is not None else canary_weight
            baseline = current.baseline_weight if current is not None else baseline_weight
            mirror = current.mirror_percent if current is not None else 0
            desired = routes.desired_virtual_service(
                rollout, weight, baseline_weight=baseline, mirror_percent=mirror
            )["spec"]
            return None if existing is not None and existing.get("spec") == desired else desired

        self.vs.update(ns, name, keep)

    def get_weights(self, rollout: Rollout) -> TrafficState | None:
        vs = self.vs.get(rollout.metadata.namespace, routes.host_names(rollout).virtual_service)
        return routes.host_weights(rollout, vs) if vs is not None else None

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
        name = routes.host_names(rollout).virtual_service
        desired = routes.desired_virtual_service(
            rollout, canary_weight, baseline_weight=baseline_weight, mirror_percent=mirror_percent
        )["spec"]
        if self.vs.get(ns, name) is None:
            self.reconcile(rollout, canary_weight=canary_weight, baseline_weight=baseline_weight)
            if not mirror_percent:
                return  # created as desired
        self.vs.update(
            ns, name, lambda existing: None if (existing or {}).get("spec") == desired else desired
        )

    def finalize(self, rollout: Rollout) -> None:
        """Delete the VirtualService, then the Services canaryd created. Idempotent."""
        ns = rollout.metadata.namespace
        self._verified.pop((ns, rollout.metadata.name), None)
        names = routes.host_names(rollout)
        self.vs.delete(ns, names.virtual_service)
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
    """The named HTTP routes of the user's VirtualService (``spec.virtualServiceRef``)."""

    def __init__(self, vs: _VirtualServices) -> None:
        self.vs = vs

    def reconcile(self, rollout: Rollout, *, canary_weight: int, baseline_weight: int = 0) -> None:
        """Verify the named routes; add a missing canary destination; keep routed weights."""
        _no_baseline(baseline_weight)
        routes.check_weight(canary_weight)
        ref = self._ref(rollout)
        ns = rollout.metadata.namespace
        self.vs.require(ns, ref)

        def keep(vs: JSON | None) -> JSON | None:
            if vs is None:
                raise PermanentError(f"VirtualService {ns}/{ref.name} not found")
            try:
                weight = routes.read_weights(vs, ref).canary_weight
            except PermanentError:
                # Unreadable weights (e.g. routes disagree): set them; with_weights raises the
                # precise PermanentError when the routes themselves are unusable.
                weight = canary_weight
            return _changed(vs, routes.with_weights(vs, ref, weight))

        self.vs.update(ns, ref.name, keep)

    def get_weights(self, rollout: Rollout) -> TrafficState | None:
        ref = self._ref(rollout)
        return routes.read_weights(self.vs.require(rollout.metadata.namespace, ref), ref)

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
            raise PermanentError("mirroring needs spec.service: a VirtualService canaryd owns")
        ref = self._ref(rollout)
        ns = rollout.metadata.namespace
        self.vs.require(ns, ref)

        def apply(vs: JSON | None) -> JSON | None:
            if vs is None:
                raise PermanentError(f"VirtualService {ns}/{ref.name} not found")
            return _changed(vs, routes.with_weights(vs, ref, canary_weight))

        self.vs.update(ns, ref.name, apply)

    def finalize(self, rollout: Rollout) -> None:
        """100% of the named routes to the primary host. A VirtualService the user already
        deleted needs nothing; a malformed one raises PermanentError (routes unknown)."""
        ref = self._ref(rollout)
        ns = rollout.metadata.namespace

        def restore(vs: JSON | None) -> JSON | None:
            return None if vs is None else _changed(vs, routes.with_weights(vs, ref, 0))

        self.vs.update(ns, ref.name, restore)

    @staticmethod
    def _ref(rollout: Rollout) -> VirtualServiceRef:
        ref = rollout.spec.virtual_service_ref
        if ref is None:
            raise PermanentError(
                f"Rollout {rollout.metadata.namespace}/{rollout.metadata.name}: "
                "spec.virtualServiceRef is not set"
            )
        return ref


def _no_baseline(baseline_weight: int) -> None:
    if baseline_weight:
        # spec.baseline needs spec.service (the model says so): never reached from a valid spec.
        raise PermanentError("a baseline arm needs spec.service (no baseline host to route to)")


def _changed(vs: JSON, updated: JSON) -> JSON | None:
    spec: Any = updated["spec"]
    return None if spec == vs.get("spec") else dict(spec)


class IstioRouter(ByMode):
    """Routes traffic between primary and canary with Istio ``networking.istio.io/v1``; picks
    :class:`RefRouter` or :class:`HostRouter` by the Rollout's spec."""

    def __init__(
        self, api: KubeApi, *, field_manager: str = "canaryd", cache: Cache | None = None
    ) -> None:
        vs = _VirtualServices(api, field_manager, reader_of(api, VIRTUAL_SERVICES, cache))
        self.host = HostRouter(api, field_manager, vs, reader_of(api, SERVICES, cache))
        self.ref = RefRouter(vs)

    def mode(self, rollout: Rollout) -> TrafficRouter:
        return self.ref if rollout.spec.virtual_service_ref is not None else self.host
