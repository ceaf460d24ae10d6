"""The mesh simulator: plays the Istio sidecars of some apps and serves their metrics.

Two ways to drive it:

- **Stepping** (tests, benchmarks, backfill; no threads, fully deterministic for a seed)::

      sim = MeshSimulator(apps=[MeshApp("default", "podinfo")], routes=StaticRoutes(), seed=1,
                          start_time=1_700_000_000.0)
      sim.routes.set_weight(sim.apps[0], 10)
      text = sim.record(duration_s=600, step_s=1.0)  # OpenMetrics, a sample every 15 s
      prometheus.backfill(text)

- **Live** (the demo and the full loop): ``sim.start()`` serves ``/metrics`` on 127.0.0.1 and a
  background thread advances in real time, re-reading routes from the API server every
  ``refresh_s``; ``sim.url`` is the address to scrape; ``sim.stop()`` ends both.

Each version is keyed by its container image, so a bad image stays bad after promotion.

Pods: each workload runs its ready pods (``Route.ready``), named like a Deployment's
(``<workload>-<pod-template-hash>-<suffix>``); requests are spread evenly over them and every
pod has its own series. A new pod template (image) means new pods, hence new series born at
their first request; during a rolling update (``updated < ready``) the remaining ready pods of
the previous template keep serving it; a pod that goes away takes its series with it.

Ground truth: :meth:`MeshSimulator.served_at` answers what a workload had served as of the
last scrape of ``/metrics`` at or before an instant (live mode records every scrape), to
compare a judge's counts with what was really served.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from meshsim.istio import Destination, IstioMetrics, OpenMetricsRecorder, Pod
from meshsim.routes import MeshApp, Route, RouteSource, pod_template_hash
from meshsim.rules import CookieJar, gateway_choice, istio_choice
from meshsim.traffic import Profiles, TrafficShape, VersionProfile, serve, split_requests


@dataclass(frozen=True, slots=True)
class StepStats:
    """What one step did, per ``(namespace, workload)``: (requests, errors); plus dropped."""

    served: Mapping[tuple[str, str], tuple[int, int]]
    dropped: int
    mirrored: Mapping[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    """Mirrored copies served per workload (requests, errors); included in ``served``, never
    seen by users (they get the live route's answer)."""


class MeshSimulator:
    """Simulated Istio sidecars for ``apps``.

    Parameters
    ----------
    apps:
        The applications (namespace, target Deployment, Service/VirtualService names).
    routes:
        Where weights and images come from (:class:`~meshsim.routes.KubeRoutes` or
        :class:`~meshsim.routes.StaticRoutes`).
    profiles:
        Image (or glob) -> behaviour; ``default_profile`` for any other image.
    rps:
        Requests per second per app (unless the app sets its own).
    shape:
        Drift, incidents, over-dispersion, zero-traffic periods shared by all versions.
    reporters:
        Which reporters to emit (``destination`` and ``source``, like a meshed ingress).
    start_time:
        Simulated epoch seconds at start (stepping mode); default: now.
    scrape_interval_s:
        How often Prometheus scrapes the sidecars: the default sample spacing of
        :meth:`record` (15 s, as Istio's Prometheus configuration). A live simulator is
        scraped by whoever scrapes it (``PrometheusServer(scrape_interval=...)``).
    """

    def __init__(
        self,
        *,
        apps: Sequence[MeshApp],
        routes: RouteSource,
        profiles: Mapping[str, VersionProfile] | None = None,
        default_profile: VersionProfile | None = None,
        rps: float = 50.0,
        shape: TrafficShape | None = None,
        reporters: Sequence[str] = ("destination", "source"),
        seed: int | None = 0,
        start_time: float | None = None,
        scrape_interval_s: float = 15.0,
        refresh_s: float = 0.5,
        tick_s: float = 0.25,
    ) -> None:
        if rps < 0:
            raise ValueError(f"rps must be >= 0, got {rps}")
        self.apps = list(apps)
        self.routes = routes
        self.profiles = Profiles(dict(profiles or {}), default_profile or VersionProfile())
        self.rps = rps
        self.shape = shape or TrafficShape()
        self.metrics = IstioMetrics(reporters=reporters)
        self.now = time.time() if start_time is None else float(start_time)
        self.t0 = self.now
        self.dropped = 0
        if scrape_interval_s <= 0:
            raise ValueError(f"scrape_interval_s must be > 0, got {scrape_interval_s}")
        self.scrape_interval_s = scrape_interval_s
        self._revisions: dict[tuple[str, str], dict[str, str]] = {}
        self._pods: dict[tuple[str, str], set[str]] = {}
        self._state = threading.RLock()  # one step at a time (live thread, restarts, tests)
        self._rng = np.random.default_rng(seed)
        self._od: dict[tuple[str, str, int], float] = {}
        self._current: dict[tuple[str, str], list[Route]] = {}
        self._objects: dict[tuple[str, str], tuple[str, dict[str, object]] | None] = {}
        self.jars = {(a.namespace, a.target): CookieJar(a.users) for a in self.apps if a.users}
        """The cookies each app's users hold (apps with ``users``)."""
        self.by_cookie: dict[tuple[str, str, str], int] = {}
        """Requests served per (namespace, cookie the user sent or "", workload) so far, for
        apps with ``users``: who reached which version."""
        self._refresh_s = refresh_s
        self._tick_s = tick_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: ThreadingHTTPServer | None = None
        self._server_thread: threading.Thread | None = None
        self.last_error: str | None = None
        """Last failure to read routes in live mode (the previous routes stay in force)."""

    # ---- stepping -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read every app's routes and images from the route source."""
        fresh = {(a.namespace, a.target): self.routes.destinations(a) for a in self.apps}
        objects = {}
        route_object = getattr(self.routes, "route_object", None)  # KubeRoutes has it
        if callable(route_object):
            for a in self.apps:
                if a.users:
                    objects[(a.namespace, a.target)] = route_object(a)
        with self._lock:
            self._current = fresh
            self._objects = objects

    def step(self, dt: float = 1.0, *, refresh: bool = True) -> StepStats:
        """Advance simulated time by ``dt`` seconds, serving that much traffic."""
        if dt <= 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        if refresh:
            self.refresh()
        with self._state:
            return self._step(dt)

    def _step(self, dt: float) -> StepStats:
        t_rel = self.now - self.t0
        served: dict[tuple[str, str], tuple[int, int]] = {}
        mirrored: dict[tuple[str, str], tuple[int, int]] = {}
        dropped = 0
        with self._lock:
            current = dict(self._current)
            objects = dict(self._objects)
        for app in self.apps:
            routes = current.get((app.namespace, app.target), [])
            pods = [self._sync_pods(app, route) for route in routes]
            if not routes:
                continue
            rate = (app.rps if app.rps is not None else self.rps) * dt
            obj = objects.get((app.namespace, app.target))
            if app.users and obj is not None:
                n = int(self._rng.poisson(rate * self.shape.traffic_factor(t_rel)))
                dropped += self._serve_users(
                    app, obj, routes, pods, n, t_rel=t_rel, served=served, mirrored=mirrored
                )
                continue
            counts = split_requests(
                self._rng, rate * self.shape.traffic_factor(t_rel), [r.weight for r in routes]
            )
            for route, n, route_pods in zip(routes, counts, pods, strict=True):
                if not route_pods:
                    dropped += n
                    continue
                self._serve(app, route, route_pods, n, t_rel=t_rel, served=served)
            total = sum(counts)
            for route, route_pods in zip(routes, pods, strict=True):
                if route.mirrored <= 0 or not route_pods or total == 0:
                    continue  # (a mirror without pods fails unseen: users got their answer)
                copies = int(self._rng.binomial(total, min(1.0, route.mirrored / 100)))
                # Only the receiving sidecar reports a mirrored request: Envoy sends the copy
                # outside the caller's HTTP filter chain (no source-side metrics), and a
                # waypoint that mirrors reports only the live request.
                self._serve(
                    app, route, route_pods, copies,
                    t_rel=t_rel, served=mirrored, reporters=("destination",),
                )  # fmt: skip
        for key, (req, err) in mirrored.items():  # the copies were served too
            prev = served.get(key, (0, 0))
            served[key] = (prev[0] + req, prev[1] + err)
        self.now += dt
        self.dropped += dropped
        return StepStats(served, dropped, mirrored)

    def _serve_users(
        self,
        app: MeshApp,
        obj: tuple[str, Mapping[str, object]],
        routes: Sequence[Route],
        pods: Sequence[list[tuple[Pod, str]]],
        n: int,
        *,
        t_rel: float,
        served: dict[tuple[str, str], tuple[int, int]],
        mirrored: dict[tuple[str, str], tuple[int, int]],
    ) -> int:
        """``n`` requests of ``app``'s users, each group (the cookie they hold, or none) routed
        by the rules of ``obj``; answers that set a cookie give it to their users. Returns the
        requests dropped (no route, or no ready pod)."""
        jar = self.jars[(app.namespace, app.target)]
        kind, body = obj
        by_workload = {r.workload: (r, p) for r, p in zip(routes, pods, strict=True)}
        groups = jar.groups(self.now)
        counts = (
            self._rng.multinomial(n, [seg.share for seg, _ in groups]) if n else [0] * len(groups)
        )
        dropped = 0
        for (seg, cookie), drawn in zip(groups, counts, strict=True):
            n_g = int(drawn)
            choice = (istio_choice if kind == "istio" else gateway_choice)(body, seg)
            if n_g == 0:
                continue
            if choice is None or not choice.legs:
                dropped += n_g
                continue
            shares = [leg.share for leg in choice.legs]
            total = sum(shares)
            legs = (
                [int(k) for k in self._rng.multinomial(n_g, [x / total for x in shares])]
                if total
                else [0] * len(shares)
            )
            for leg, k in zip(choice.legs, legs, strict=True):
                workload = app.workload_for_host(leg.host)[0]
                route, route_pods = by_workload.get(workload, (None, []))
                if route is None or not route_pods:
                    dropped += k
                    continue
                self._serve(app, route, route_pods, k, t_rel=t_rel, served=served)
                key = (app.namespace, cookie or "", workload)
                self.by_cookie[key] = self.by_cookie.get(key, 0) + k
                if leg.set_cookie and k:
                    jar.answered(cookie, seg.share * jar.users, k, leg.set_cookie, self.now)
            for host, fraction in choice.mirrors:
                route, route_pods = by_workload.get(app.workload_for_host(host)[0], (None, []))
                if route is None or not route_pods:
                    continue
                copies = int(self._rng.binomial(n_g, min(1.0, fraction)))
                self._serve(
                    app, route, route_pods, copies,
                    t_rel=t_rel, served=mirrored, reporters=("destination",),
                )  # fmt: skip
        return dropped

    def _serve(
        self,
        app: MeshApp,
        route: Route,
        route_pods: list[tuple[Pod, str]],
        n: int,
        *,
        t_rel: float,
        served: dict[tuple[str, str], tuple[int, int]],
        reporters: Sequence[str] | None = None,
    ) -> None:
        """``n`` requests spread over ``route``'s pods, recorded (as ``reporters`` see them)
        and added to ``served``."""
        if n == 0:
            return
        dest = Destination(app.namespace, route.workload, route.service, route.workload,
                           app.protocol)  # fmt: skip
        per_pod = [
            int(x) for x in self._rng.multinomial(n, [1 / len(route_pods)] * len(route_pods))
        ]
        for (pod, image), k in zip(route_pods, per_pod, strict=True):
            if k == 0:
                continue
            profile = self.profiles.for_image(image)
            outcome = serve(
                self._rng, profile, k,
                error_factor=self.shape.error_factor(t_rel)
                * self._overdispersion(app.namespace, route.workload, t_rel),
                latency_factor=self.shape.latency_factor(t_rel),
            )  # fmt: skip
            self.metrics.record(
                dest, outcome, error_code=profile.error_code, pod=pod, reporters=reporters
            )
            prev = served.get((app.namespace, route.workload), (0, 0))
            served[(app.namespace, route.workload)] = (
                prev[0] + outcome.requests,
                prev[1] + outcome.errors,
            )

    def _sync_pods(self, app: MeshApp, route: Route) -> list[tuple[Pod, str]]:
        """The ready pods of ``route``'s workload with the image each runs; pods that are gone
        (scaled down, replaced by a new template) lose their series."""
        key = (app.namespace, route.workload)
        revisions = self._revisions.setdefault(key, {})  # revision -> image, oldest first
        ready = route.ready if route.image is not None else 0
        current = None
        if route.image is not None:
            current = route.revision or pod_template_hash(f"{route.workload}/{route.image}")
            revisions.pop(current, None)
            revisions[current] = route.image
        if route.updated is None:
            new = ready
        else:
            # Pods of older templates were running before the update began, so they are the
            # ready ones; the new template's pods are ready only beyond them.
            older = max(0, (route.total if route.total is not None else ready) - route.updated)
            new = max(0, min(route.updated, ready - older))
        old = ready - new
        if old and len(revisions) <= 1:
            new, old = ready, 0  # no older template known (started mid-rollout): all current
        wanted: list[tuple[Pod, str]] = []
        for revision, image in reversed(list(revisions.items())):  # newest first
            take = new if revision == current else old
            if revision != current:
                old -= take
            wanted += [(self._pod(app, route.workload, revision, i), image) for i in range(take)]
        names = {pod.name for pod, _ in wanted}
        for gone in self._pods.get(key, set()) - names:
            self.metrics.remove_pod(app.namespace, gone)
        self._pods[key] = names
        used = {pod.revision for pod, _ in wanted}
        for revision in [r for r in revisions if r not in used and r != current]:
            del revisions[revision]
        return wanted

    @staticmethod
    def _pod(app: MeshApp, workload: str, revision: str, index: int) -> Pod:
        digest = hashlib.sha256(f"{app.namespace}/{workload}/{revision}/{index}".encode()).digest()
        alphabet = "bcdfghjklmnpqrstvwxz2456789"
        suffix = "".join(alphabet[b % len(alphabet)] for b in digest[:5])
        return Pod(
            namespace=app.namespace,
            name=f"{workload}-{revision}-{suffix}",
            app=workload,
            revision=revision,
            ip=f"10.244.{digest[5]}.{digest[6] or 1}",
            node=f"node-{digest[7] % 3 + 1}",
        )

    def pods(self, namespace: str, workload: str) -> list[str]:
        """Names of ``workload``'s pods that currently serve traffic."""
        with self._state:
            return sorted(self._pods.get((namespace, workload), set()))

    def served_at(self, namespace: str, workload: str, at: float) -> tuple[int, int]:
        """(requests, errors) ``workload`` had served as of the last scrape of ``/metrics`` at or
        before epoch second ``at`` ((0, 0) before the first one)."""
        return self.metrics.served_at(namespace, workload, at)

    def scrapes(
        self, namespace: str, workload: str, reporter: str | None = None
    ) -> list[tuple[float, int, int]]:
        """Every scrape so far: (epoch second, requests, errors ``workload`` had served), as
        ``reporter`` counted them (default: the first reporter emitted)."""
        return self.metrics.scrapes(namespace, workload, reporter or self.metrics.reporters[0])

    def restart_pods(self, namespace: str, workload: str) -> int:
        """Every sidecar of ``workload`` restarts (same pods): their series vanish and come
        back from zero with the next requests. Returns the number of series dropped."""
        with self._state:
            return self.metrics.reset_workload(namespace, workload)

    def record(
        self,
        duration_s: float,
        *,
        step_s: float = 1.0,
        sample_every_s: float | None = None,
        recorder: OpenMetricsRecorder | None = None,
    ) -> str:
        """Step for ``duration_s`` and return OpenMetrics text sampled every ``sample_every_s``
        (default: the scrape interval; what Prometheus would have scraped), for
        ``PrometheusServer.backfill``.

        Pass the same ``recorder`` across calls (changing weights or images in between) to
        build one continuous history; the returned text then covers all calls so far."""
        rec = recorder or OpenMetricsRecorder(self.metrics)
        if sample_every_s is None:
            sample_every_s = self.scrape_interval_s
        if not rec.timestamps:
            rec.capture(self.now)
        end = self.now + duration_s
        next_sample = rec.timestamps[-1] + sample_every_s
        while self.now < end - 1e-9:
            self.step(min(step_s, end - self.now))
            if self.now >= next_sample - 1e-9:
                rec.capture(self.now)
                next_sample = self.now + sample_every_s
        return rec.openmetrics()

    def _overdispersion(self, namespace: str, workload: str, t_rel: float) -> float:
        cv = self.shape.overdispersion
        if cv <= 0:
            return 1.0
        key = (namespace, workload, int(t_rel // self.shape.overdispersion_period_s))
        factor = self._od.get(key)
        if factor is None:
            shape = 1.0 / (cv * cv)
            factor = float(self._rng.gamma(shape, 1.0 / shape))
            self._od[key] = factor
        return factor

    # ---- live mode ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of ``/metrics`` (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def target(self) -> str:
        """``127.0.0.1:<port>``: what Prometheus scrapes."""
        return self.url.removeprefix("http://")

    def start(self, *, port: int = 0, advance: bool = True) -> MeshSimulator:
        """Serve ``/metrics`` on 127.0.0.1 (``port`` 0: a free one) and, when ``advance``,
        step in real time in a background thread."""
        sim = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] == "/metrics":
                    body = sim.metrics.exposition(scrape=True).encode()
                    ctype = "text/plain; version=0.0.4; charset=utf-8"
                    code = 200
                elif self.path == "/healthz":
                    body, ctype, code = b"ok\n", "text/plain", 200
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # scrapes every second would flood the test output

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, name="meshsim-http", daemon=True
        )
        self._server_thread.start()
        if advance:
            self.now = time.time()
            self.t0 = self.now
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="meshsim-traffic", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the traffic thread and the HTTP server (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._server_thread is not None:
            self._server_thread.join(timeout=10)
            self._server_thread = None

    def __enter__(self) -> MeshSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        last_refresh = -1e18
        while not self._stop.is_set():
            wall = time.time()
            if wall - last_refresh >= self._refresh_s:
                try:
                    self.refresh()
                    self.last_error = None
                except Exception as exc:  # keep serving with the last known routes
                    self.last_error = f"{type(exc).__name__}: {exc}"
                last_refresh = wall
            dt = wall - self.now
            if dt > 0:
                self.step(dt, refresh=False)
            self._stop.wait(self._tick_s)
