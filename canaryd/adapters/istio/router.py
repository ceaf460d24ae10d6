"""The Istio traffic router: :class:`~canaryd.core.ports.TrafficRouter` over the official client.

All shapes come from the pure functions of :mod:`canaryd.adapters.istio.routes`; this module
only reads and writes. Writes are guarded by ``resourceVersion`` (a PUT of the object as read),
so a concurrent edit of the VirtualService is never overwritten: the API answers 409 and the
tick is retried (:class:`TemporaryError`).

Error mapping: 409, 429, 5xx and connection errors -> TemporaryError; 404 of a user's
VirtualService, 400/403/422 -> PermanentError naming the object.
"""

from __future__ import annotations

from typing import Any, cast

from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from canaryd.adapters.istio import routes
from canaryd.api.models import Rollout, VirtualServiceRef
from canaryd.core.ports import PermanentError, TemporaryError
from canaryd.core.types import TrafficState

JSON = dict[str, Any]

TEMPORARY_STATUS = frozenset({0, 409, 429, 500, 502, 503, 504})


def _error(exc: ApiException | HTTPError, what: str) -> Exception:
    if isinstance(exc, HTTPError):
        return TemporaryError(f"{what}: {exc}")
    status = int(exc.status or 0)
    detail = exc.reason or ""
    if exc.body:
        detail = str(exc.body)[:500]
    if status in TEMPORARY_STATUS:
        return TemporaryError(f"{what}: HTTP {status} {detail}".strip())
    return PermanentError(f"{what}: HTTP {status} {detail}".strip())


class IstioRouter:
    """Routes traffic between primary and canary with an Istio ``networking.istio.io/v1``
    VirtualService (host-level split or the named routes of an existing one)."""

    def __init__(self, api_client: ApiClient, *, field_manager: str = "canaryd") -> None:
        self._client = api_client
        self._core = CoreV1Api(api_client)
        self._custom = CustomObjectsApi(api_client)
        self._field_manager = field_manager

    # ---- TrafficRouter ---------------------------------------------------------------------

    def reconcile(self, rollout: Rollout, *, canary_weight: int) -> None:
        """Create or verify the Services and the VirtualService. Weights already routed are
        kept; ``canary_weight`` is used only where a route is created or was unreadable."""
        routes.check_weight(canary_weight)
        if rollout.spec.virtual_service_ref is not None:
            self._reconcile_ref(rollout, rollout.spec.virtual_service_ref, canary_weight)
            return
        for body in routes.desired_services(rollout):
            self._ensure_service(rollout.metadata.namespace, body)
        ns = rollout.metadata.namespace
        name = routes.host_names(rollout).virtual_service
        existing = self._get_vs(ns, name)
        if existing is None:
            self._create_vs(ns, routes.desired_virtual_service(rollout, canary_weight))
            return
        current = routes.host_weights(rollout, existing)
        weight = current.canary_weight if current is not None else canary_weight
        desired = routes.desired_virtual_service(rollout, weight)
        if existing.get("spec") != desired["spec"]:
            self._replace_vs(existing, desired["spec"])

    def get_weights(self, rollout: Rollout) -> TrafficState | None:
        """Current split; None when the (owned) VirtualService is missing or not in canaryd's
        shape. A user's VirtualService that is missing or malformed is a PermanentError."""
        ns = rollout.metadata.namespace
        ref = rollout.spec.virtual_service_ref
        if ref is not None:
            return routes.read_weights(self._require_vs(ns, ref), ref)
        vs = self._get_vs(ns, routes.host_names(rollout).virtual_service)
        return routes.host_weights(rollout, vs) if vs is not None else None

    def set_weights(self, rollout: Rollout, *, canary_weight: int) -> None:
        """Route ``canary_weight`` % to the canary (sum 100). No write when already so."""
        routes.check_weight(canary_weight)
        ns = rollout.metadata.namespace
        ref = rollout.spec.virtual_service_ref
        if ref is not None:
            vs = self._require_vs(ns, ref)
            updated = routes.with_weights(vs, ref, canary_weight)
            if updated["spec"] != vs.get("spec"):
                self._replace_vs(vs, updated["spec"])
            return
        name = routes.host_names(rollout).virtual_service
        existing = self._get_vs(ns, name)
        desired = routes.desired_virtual_service(rollout, canary_weight)
        if existing is None:
            self.reconcile(rollout, canary_weight=canary_weight)
        elif existing.get("spec") != desired["spec"]:
            self._replace_vs(existing, desired["spec"])

    # ---- VirtualServices -------------------------------------------------------------------

    def _vs_call(self, what: str, call: Any, *args: Any, **kwargs: Any) -> JSON:
        try:
            return cast(JSON, call(routes.ISTIO_GROUP, routes.ISTIO_VERSION, *args, **kwargs))
        except (ApiException, HTTPError) as exc:
            raise _error(exc, what) from exc

    def _get_vs(self, ns: str, name: str) -> JSON | None:
        try:
            return self._vs_call(
                f"read VirtualService {ns}/{name}",
                self._custom.get_namespaced_custom_object,
                ns,
                routes.VS_PLURAL,
                name,
            )
        except PermanentError as exc:
            if isinstance(exc.__cause__, ApiException) and exc.__cause__.status == 404:
                return None
            raise

    def _require_vs(self, ns: str, ref: VirtualServiceRef) -> JSON:
        vs = self._get_vs(ns, ref.name)
        if vs is None:
            raise PermanentError(
                f"VirtualService {ns}/{ref.name} (spec.virtualServiceRef) not found"
            )
        return vs

    def _create_vs(self, ns: str, body: JSON) -> None:
        self._vs_call(
            f"create VirtualService {ns}/{body['metadata']['name']}",
            self._custom.create_namespaced_custom_object,
            ns,
            routes.VS_PLURAL,
            body,
            field_manager=self._field_manager,
        )

    def _replace_vs(self, existing: JSON, spec: JSON) -> None:
        """PUT the object as read with a new spec: its resourceVersion guards the write."""
        meta = existing["metadata"]
        body = {**existing, "spec": spec}
        self._vs_call(
            f"update VirtualService {meta['namespace']}/{meta['name']}",
            self._custom.replace_namespaced_custom_object,
            meta["namespace"],
            routes.VS_PLURAL,
            meta["name"],
            body,
            field_manager=self._field_manager,
        )

    def _reconcile_ref(self, rollout: Rollout, ref: VirtualServiceRef, canary_weight: int) -> None:
        vs = self._require_vs(rollout.metadata.namespace, ref)
        try:
            weight = routes.read_weights(vs, ref).canary_weight
        except PermanentError:
            # Unreadable weights (e.g. routes disagree): set them; with_weights raises the
            # precise PermanentError when the routes themselves are unusable.
            weight = canary_weight
        updated = routes.with_weights(vs, ref, weight)
        if updated["spec"] != vs.get("spec"):  # e.g. the canary destination was missing
            self._replace_vs(vs, updated["spec"])

    # ---- Services --------------------------------------------------------------------------

    def _ensure_service(self, ns: str, body: JSON) -> None:
        name = body["metadata"]["name"]
        try:
            read = self._core.read_namespaced_service(name, ns)
            existing = cast(JSON, self._client.sanitize_for_serialization(read))  # type: ignore[no-untyped-call]
        except ApiException as exc:
            if exc.status != 404:
                raise _error(exc, f"read Service {ns}/{name}") from exc
            existing = None
        except HTTPError as exc:
            raise _error(exc, f"read Service {ns}/{name}") from exc
        try:
            if existing is None:
                self._core.create_namespaced_service(
                    ns, cast(Any, body), field_manager=self._field_manager
                )
            elif routes.service_differs(existing, body):
                # Keep what the API server allocated (clusterIP) and guard with the version.
                spec = {**existing.get("spec", {}), **body["spec"]}
                self._core.replace_namespaced_service(
                    name,
                    ns,
                    cast(Any, {**existing, "spec": spec}),
                    field_manager=self._field_manager,
                )
        except (ApiException, HTTPError) as exc:
            raise _error(exc, f"write Service {ns}/{name}") from exc
