"""Where each app's traffic goes right now: route weights and the image behind each workload.

Two sources with one method, :meth:`RouteSource.destinations`:

- :class:`KubeRoutes` reads the VirtualService and Deployments through the official kubernetes
  client (kubeconfig, in-cluster, or any ``ApiClient``, e.g. the API emulator's).
- :class:`StaticRoutes` is set by hand (tests and benchmarks without an API server).

With ``MeshApp.router == "gateway-api"`` the weights come from the HTTPRoute ``<service>`` (or
``http_route``): the backendRefs of its rule ``route`` (None: the first rule), weights as the
Gateway API defines them (proportions, default 1), backendRef names read as hosts below.

Assumptions (canaryd's host-level split, as Flagger): the VirtualService ``<service>`` routes to
hosts ``<service>-primary`` and ``<service>-canary`` (short or fully qualified names), Services
that select Deployments ``<target>-primary`` and ``<target>``; with a baseline arm
(``spec.baseline``) a third host ``<service>-baseline`` selects ``<target>-baseline``, and the
three-way split is served as routed. Any other host maps to the workload of the same short
name. Before canaryd has bootstrapped (no VirtualService yet) all traffic goes to ``<target>``.
A workload without ready pods serves nothing: its share of the traffic is dropped (counted, not
reported by the destination sidecar, as with Envoy's 503 UH).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from meshsim.rules import Segment, Split, gateway_split, istio_split


@dataclass(frozen=True, slots=True)
class MeshApp:
    """One application whose sidecars the simulator plays."""

    namespace: str
    target: str
    """The Deployment canaryd's Rollout targets (the canary)."""
    service: str | None = None
    """Base name of the Services and the VirtualService; defaults to ``target``."""
    route: str | None = None
    """Name of the VirtualService HTTP route carrying the split; None: the first one."""
    virtual_service: str | None = None
    """VirtualService name; defaults to ``service``."""
    primary_host: str | None = None
    canary_host: str | None = None
    protocol: str = "http"
    router: str = "istio"
    """``istio`` (VirtualService) or ``gateway-api`` (HTTPRoute; with ``protocol`` grpc, the
    GRPCRoute of that name)."""
    http_route: str | None = None
    """HTTPRoute name (router gateway-api); defaults to ``service``."""
    rps: float | None = None
    """Requests per second for this app; None: the simulator's default."""
    segments: tuple[Segment, ...] = ()
    """Shares of the requests carrying headers, cookies or query parameters (the rest carry
    none): what A/B matches select (:mod:`meshsim.rules`)."""
    users: int = 0
    """Simulated users who keep the cookies answers set (session affinity); 0: requests are
    anonymous. Needs :class:`KubeRoutes` (the rules are evaluated per cookie held)."""

    def __post_init__(self) -> None:
        if self.users < 0:
            raise ValueError(f"users must be >= 0, got {self.users}")
        if self.users and self.segments:
            raise ValueError("set segments or users, not both (users carry only cookies)")

    @property
    def service_name(self) -> str:
        return self.service or self.target

    @property
    def vs_name(self) -> str:
        return self.virtual_service or self.service_name

    def workload_for_host(self, host: str) -> tuple[str, str]:
        """(workload, service) behind a destination host."""
        short = host.split(".", 1)[0]
        if short == (self.primary_host or f"{self.service_name}-primary").split(".", 1)[0]:
            return f"{self.target}-primary", short
        if short == (self.canary_host or f"{self.service_name}-canary").split(".", 1)[0]:
            return self.target, short
        if short == f"{self.service_name}-baseline":
            return f"{self.target}-baseline", short
        return short, short


@dataclass(frozen=True, slots=True)
class Route:
    """One destination of an app with its weight and what runs there."""

    workload: str
    service: str
    weight: float
    """Percent of the app's requests this workload serves (live traffic)."""
    image: str | None
    """Image of the workload's first container; None when it has no ready pod."""
    ready: int = 1
    """Ready pods (``status.readyReplicas``), the pods that get traffic."""
    updated: int | None = None
    """Pods of the current template, ready or not (``status.updatedReplicas``); None: all of
    them. During a rolling update the other ready pods still run the previous template."""
    total: int | None = None
    """All pods of every template (``status.replicas``); None: ``ready``."""
    revision: str | None = None
    """A hash of the pod template (the pods' ``pod-template-hash``); None: from the image."""
    mirrored: float = 0.0
    """Percent of the app's requests copied to this workload by a mirror (its answers are
    discarded: users see the live route's)."""


class RouteSource(Protocol):
    def destinations(self, app: MeshApp) -> list[Route]:
        """Current destinations of ``app`` (weights as routed, images as deployed)."""
        ...


class KubeRoutes:
    """Reads routes from the API server (VirtualService + Deployments)."""

    def __init__(
        self,
        api_client: k8s.ApiClient | None = None,
        *,
        istio_version: str = "v1",
    ) -> None:
        if api_client is None:
            try:
                k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
            except k8s_config.ConfigException:
                k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
            api_client = k8s.ApiClient()
        self._client = api_client
        self._custom = k8s.CustomObjectsApi(api_client)
        self._apps = k8s.AppsV1Api(api_client)
        self._istio_version = istio_version
        self._objects: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}

    def route_object(self, app: MeshApp) -> tuple[str, dict[str, Any]] | None:
        """(router, object) last read for ``app`` by :meth:`destinations` (None: none yet, or
        a named route: ``MeshApp.route`` set)."""
        return self._objects.get((app.namespace, app.target))

    def destinations(self, app: MeshApp) -> list[Route]:
        if app.router == "gateway-api":
            return self._http_route_destinations(app)
        vs = self._get_vs(app)
        if vs is None:
            self._objects.pop((app.namespace, app.target), None)
            return [self._route(app, app.target, app.service_name, 100)]
        if app.route is None:
            # The routes the simulated requests take (matches, mirrors: meshsim.rules).
            self._objects[(app.namespace, app.target)] = ("istio", vs)
            return self._from_split(app, istio_split(vs, app.segments))
        out: list[Route] = []
        for dest in _split(vs, app.route):
            host = str(dest.get("destination", {}).get("host", ""))
            workload, service = app.workload_for_host(host)
            out.append(self._route(app, workload, service, int(dest.get("weight", 100))))
        return out

    def _from_split(self, app: MeshApp, split: Split) -> list[Route]:
        """One Route per workload: its live share, and the share mirrored to it."""
        live: dict[tuple[str, str], float] = {}
        mirrored: dict[tuple[str, str], float] = {}
        for host, pct in split.weights.items():
            key = app.workload_for_host(host)
            live[key] = live.get(key, 0.0) + pct
        for host, pct in split.mirrored.items():
            key = app.workload_for_host(host)
            mirrored[key] = mirrored.get(key, 0.0) + pct
            live.setdefault(key, 0.0)
        out = []
        for (workload, service), pct in live.items():
            route = self._route(app, workload, service, pct)
            out.append(replace(route, mirrored=mirrored.get((workload, service), 0.0)))
        return out

    def _http_route_destinations(self, app: MeshApp) -> list[Route]:
        try:
            route = self._custom.get_namespaced_custom_object(
                "gateway.networking.k8s.io", "v1", app.namespace,
                "grpcroutes" if app.protocol == "grpc" else "httproutes",
                app.http_route or app.service_name,
            )  # fmt: skip
        except k8s.ApiException as exc:
            if exc.status == 404:
                self._objects.pop((app.namespace, app.target), None)
                return [self._route(app, app.target, app.service_name, 100)]
            raise
        if app.route is None:
            obj = cast(dict[str, Any], route)
            self._objects[(app.namespace, app.target)] = ("gateway-api", obj)
            return self._from_split(app, gateway_split(obj, app.segments))
        rules: list[dict[str, Any]] = cast(dict[str, Any], route).get("spec", {}).get("rules") or []
        if app.route is not None:
            rules = [r for r in rules if r.get("name") == app.route]
        out: list[Route] = []
        for backend in (rules[0].get("backendRefs", []) or []) if rules else []:
            workload, service = app.workload_for_host(str(backend.get("name", "")))
            out.append(self._route(app, workload, service, int(backend.get("weight", 1))))
        return out

    def _get_vs(self, app: MeshApp) -> dict[str, Any] | None:
        try:
            vs = self._custom.get_namespaced_custom_object(
                "networking.istio.io", self._istio_version, app.namespace,
                "virtualservices", app.vs_name,
            )  # fmt: skip
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return cast(dict[str, Any], vs)

    def _route(self, app: MeshApp, workload: str, service: str, weight: float) -> Route:
        try:
            dep = self._apps.read_namespaced_deployment(workload, app.namespace)
        except k8s.ApiException as exc:
            if exc.status == 404:
                return Route(workload, service, weight, None)
            raise
        pod_spec = dep.spec.template.spec if dep.spec is not None else None
        containers = (pod_spec.containers if pod_spec is not None else None) or []
        image = containers[0].image if containers else None
        status = dep.status
        # Kubernetes omits zero counts from a Deployment's status: absent means 0.
        ready = (status.ready_replicas or 0) if status is not None else 0
        updated = (status.updated_replicas or 0) if status is not None else 0
        total = (status.replicas or 0) if status is not None else 0
        template = (
            self._client.sanitize_for_serialization(dep.spec.template)  # type: ignore[no-untyped-call]
            if dep.spec
            else {}
        )
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
        return Route(
            workload,
            service,
            weight,
            image if ready > 0 else None,
            ready=ready,
            updated=updated,
            total=total,
            revision=_pod_template_hash(digest),
        )


_HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' SafeEncodeString alphabet


def _pod_template_hash(hex_digest: str) -> str:
    """Ten characters of Kubernetes' alphabet from a digest (a ReplicaSet's hash looks so)."""
    n = int(hex_digest[:16], 16)
    out = []
    for _ in range(10):
        n, r = divmod(n, len(_HASH_ALPHABET))
        out.append(_HASH_ALPHABET[r])
    return "".join(out)


def pod_template_hash(text: str) -> str:
    """A ``pod-template-hash``-like string for ``text`` (e.g. an image)."""
    return _pod_template_hash(hashlib.sha256(text.encode()).hexdigest())


def _split(vs: dict[str, Any], route_name: str | None) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = vs.get("spec", {}).get("http", []) or []
    if route_name is not None:
        routes = [r for r in routes if r.get("name") == route_name]
    if not routes:
        return []
    dests: list[dict[str, Any]] = routes[0].get("route", []) or []
    return dests


@dataclass(slots=True)
class StaticRoutes:
    """Routes set by hand: ``set_weight(app, canary_weight)`` and ``set_image(...)``.

    Until set, an app routes 100% to ``<target>-primary``; a workload's image defaults to
    ``"<workload>:latest"`` and it has one ready pod; ``set_image(ns, workload, None)`` or
    ``set_replicas(ns, workload, 0)`` takes its pods away."""

    _weights: dict[tuple[str, str], int] = field(default_factory=dict)
    _baseline: dict[tuple[str, str], int] = field(default_factory=dict)
    _images: dict[tuple[str, str], str | None] = field(default_factory=dict)
    _replicas: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set_weight(self, app: MeshApp, canary_weight: int) -> None:
        if not 0 <= canary_weight <= 100:
            raise ValueError(f"canary_weight must be in [0, 100], got {canary_weight}")
        with self._lock:
            baseline = self._baseline.get((app.namespace, app.target), 0)
            if canary_weight + baseline > 100:
                raise ValueError(
                    f"canary_weight {canary_weight} + baseline weight {baseline} exceed 100"
                )
            self._weights[(app.namespace, app.target)] = canary_weight

    def set_baseline_weight(self, app: MeshApp, baseline_weight: int | None) -> None:
        """Route ``baseline_weight`` % to ``<target>-baseline`` (a three-way split: primary
        gets what canary and baseline leave); None removes the baseline arm. Its image
        defaults to the primary's (the stable version, fresh pods)."""
        with self._lock:
            key = (app.namespace, app.target)
            if baseline_weight is None:
                self._baseline.pop(key, None)
                return
            canary = self._weights.get(key, 0)
            if not 0 <= baseline_weight <= 100 - canary:
                raise ValueError(
                    f"baseline_weight must be in [0, {100 - canary}] beside canary {canary}, "
                    f"got {baseline_weight}"
                )
            self._baseline[key] = baseline_weight

    def set_image(self, namespace: str, workload: str, image: str | None) -> None:
        with self._lock:
            self._images[(namespace, workload)] = image

    def set_replicas(self, namespace: str, workload: str, replicas: int) -> None:
        """Ready pods of ``workload`` (1 until set); a new image replaces them all at once."""
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        with self._lock:
            self._replicas[(namespace, workload)] = replicas

    def destinations(self, app: MeshApp) -> list[Route]:
        with self._lock:
            w = self._weights.get((app.namespace, app.target), 0)
            b = self._baseline.get((app.namespace, app.target))
            arms = [
                (f"{app.target}-primary", f"{app.service_name}-primary", 100 - w - (b or 0)),
                (app.target, f"{app.service_name}-canary", w),
            ]
            if b is not None:
                arms.append((f"{app.target}-baseline", f"{app.service_name}-baseline", b))
            routes = []
            primary_image = self._images.get(
                (app.namespace, f"{app.target}-primary"), f"{app.target}-primary:latest"
            )
            for workload, service, weight in arms:
                default = primary_image if workload.endswith("-baseline") else f"{workload}:latest"
                image = self._images.get((app.namespace, workload), default)
                ready = self._replicas.get((app.namespace, workload), 1)
                routes.append(
                    Route(workload, service, weight, image if ready > 0 else None, ready=ready)
                )
            return routes
