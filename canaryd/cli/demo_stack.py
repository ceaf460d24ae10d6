"""Starts and stops everything ``canaryd demo`` runs, and gives the demo a small handle on it.

:func:`start` brings the pieces up in dependency order and registers each one's shutdown on
the caller's ``ExitStack`` the moment it is running, so an error or Ctrl-C at any point stops
exactly what was started (in reverse order) and nothing else:

API emulator -> Slack capture -> demo objects (namespace, Deployment, Secret, AlertProvider)
-> mesh simulator -> Prometheus (or the simulator-counts fallback) -> controller -> Rollout.

The controller is the one ``canaryd run`` assembles (:func:`canaryd.controller.assemble.assemble`),
talking HTTP to the emulator through the official kubernetes client; only the metrics provider
is swapped when Prometheus is not installed.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from canaryd.adapters.kube import ConflictError, KubeApi, paths
from canaryd.adapters.prometheus import PrometheusSettings
from canaryd.api import crdgen
from canaryd.api.models import Rollout
from canaryd.cli import demo_resources as res
from canaryd.cli.demo_metrics import SimulatorCountsProvider
from canaryd.cli.demo_render import LiveView
from canaryd.cli.demo_resources import Timings
from canaryd.cli.demo_slack import SlackCapture
from canaryd.cli.demo_summary import ServedCounts
from canaryd.controller.assemble import Options, assemble
from canaryd.controller.runtime import ControllerConfig
from canaryd.core.ports import PermanentError, TemporaryError
from canaryd.core.revision import template_hash
from kubeemu import Emulator
from meshsim import KubeRoutes, MeshApp, MeshSimulator, Segment, TrafficShape, VersionProfile
from meshsim.prometheus import PrometheusError, PrometheusServer, prometheus_available

STABLE_ERROR_RATE = 0.02
"""2% of requests fail on every version: a realistic baseline the judge must see through."""
BAD_ERROR_FACTOR = 4.0
SLOW_LATENCY_FACTOR = 2.0
NOISE_CV = 0.3
"""The baseline scenario's per-arm noise: each workload's error rate is multiplied by a
gamma-distributed factor of this coefficient of variation (the judge issue's sigma 0.3)..."""
NOISE_BLOCK_SECONDS = 10.0
"""... drawn afresh every this many seconds, independently per workload (canary, primary and
baseline each have their own): the mesh's own noise, which only an A/A split can measure."""
LATENCY_MEDIAN_MS = 40.0


def version_profiles() -> dict[str, VersionProfile]:
    """How each image behaves in the simulated mesh (keyed by image, so a promoted bad image
    would stay bad)."""
    normal = VersionProfile(error_rate=STABLE_ERROR_RATE, latency_median_ms=LATENCY_MEDIAN_MS)
    return {
        res.STABLE_IMAGE: normal,
        res.GOOD_IMAGE: normal,
        res.BAD_IMAGE: VersionProfile(
            error_rate=STABLE_ERROR_RATE * BAD_ERROR_FACTOR, latency_median_ms=LATENCY_MEDIAN_MS
        ),
        res.SLOW_IMAGE: VersionProfile(
            error_rate=STABLE_ERROR_RATE, latency_median_ms=LATENCY_MEDIAN_MS * SLOW_LATENCY_FACTOR
        ),
    }


def crd_directory(stack: ExitStack) -> Path:
    """The repository's ``crds/``; when absent (installed without the repository), the same
    CRDs generated from the models into a temporary directory."""
    repo_crds = Path(__file__).resolve().parents[2] / "crds"
    if repo_crds.is_dir() and any(repo_crds.glob("*.yaml")):
        return repo_crds
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="canaryd-demo-crds-")))
    crdgen.write_all(tmp)
    return tmp


@dataclass
class DemoEnv:
    """What the demo script needs once everything runs."""

    api: KubeApi
    sim: MeshSimulator
    slack: SlackCapture
    metrics_backend: str
    notifier_pending: Callable[[], int]
    prometheus: PrometheusServer | None = None
    namespace: str = res.NAMESPACE
    name: str = res.APP

    def read_raw(self) -> dict[str, Any] | None:
        try:
            return self.api.get_or_none(paths.custom(self.namespace, "rollouts", self.name))
        except (PermanentError, TemporaryError):
            return None

    def read_rollout(self) -> Rollout | None:
        """The Rollout as ``kubectl get`` sees it; None while unreadable."""
        raw = self.read_raw()
        if raw is None:
            return None
        try:
            return Rollout.model_validate(raw)
        except ValidationError:
            return None

    def read_rollout_or_fail(self) -> Rollout:
        rollout = self.read_rollout()
        if rollout is None:
            raise RuntimeError(f"Rollout {self.namespace}/{self.name} cannot be read")
        return rollout

    def wait_until(
        self,
        predicate: Callable[[Rollout], bool],
        timeout: float,
        on_tick: Callable[[], None],
        *,
        what: str = "",
    ) -> Rollout:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            on_tick()
            rollout = self.read_rollout()
            if rollout is not None and predicate(rollout):
                return rollout
            time.sleep(0.2)
        current = self.read_rollout()
        state = f"phase {current.status.phase.value}: {current.status.message}" if current else ""
        raise TimeoutError(f"{what or 'the Rollout'} not reached after {timeout:.0f}s {state}")

    def set_image(self, image: str) -> str:
        """Change the app's image (what a CI pipeline does) and return the new revision: the
        hash canaryd will record as ``status.canaryRevision``."""
        path = paths.deployment(self.namespace, self.name)
        for _attempt in range(10):
            dep = self.api.get(path)
            template = dep["spec"]["template"]
            template["spec"]["containers"][0]["image"] = image
            try:
                # PUT with the resourceVersion we read: a concurrent write (the controller
                # scaling the target) gives 409, and we read again.
                updated = self.api.replace(path, dep)
            except ConflictError:
                continue
            return template_hash(updated["spec"]["template"])
        raise RuntimeError(f"could not update Deployment {self.namespace}/{self.name}")

    def served(self, workload: str | None = None) -> ServedCounts:
        """Requests and 5xx errors the canary workload (or ``workload``) served so far
        (simulator's truth)."""
        requests, errors = self.sim.metrics.totals(self.namespace, workload or self.name)
        return ServedCounts(requests=float(requests), errors=float(errors))

    def settle_slack(self, show: Callable[[], None], *, timeout: float = 15.0) -> None:
        """Let the last notices arrive: they leave after the status write that ends a rollout
        (the controller's outbox), so they may trail the phase we saw by seconds on a loaded
        machine. Waits until the Rollout's outbox is empty (every notice decided so far was
        delivered), the notifier's queue too, and nothing arrived for a short quiet period."""
        deadline = time.monotonic() + timeout
        seen = len(self.slack.messages)
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            show()
            if len(self.slack.messages) != seen:
                seen = len(self.slack.messages)
                quiet_since = time.monotonic()
            rollout = self.read_rollout()
            delivered = rollout is not None and not rollout.status.outbox
            if delivered and self.notifier_pending() == 0 and time.monotonic() - quiet_since > 0.8:
                break
            time.sleep(0.1)
        show()


def stop_within(
    stop: Callable[[], None],
    *,
    seconds: float,
    what: str,
    view: LiveView,
    stuck: list[str],
) -> None:
    """Run ``stop`` but never wait more than ``seconds`` for it: an exit must not hang on one
    piece (the servers started before it still get stopped after it). A piece that did not stop
    is appended to ``stuck``: its threads would block the interpreter's exit, so the demo ends
    the process itself once everything else is stopped."""
    errors: list[BaseException] = []

    def call() -> None:
        try:
            stop()
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=call, name=f"demo-stop-{what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        stuck.append(what)
        view.log(f"!! {what} did not stop within {seconds:.0f}s; leaving it to process exit")
    elif errors:
        view.log(f"!! stopping {what} failed: {errors[0]}")


def _collection(kind: str, namespace: str) -> str:
    """REST path of the collection an object of ``kind`` is created in."""
    if kind == "Namespace":
        return "/api/v1/namespaces"
    if kind == "Secret":
        return f"/api/v1/namespaces/{namespace}/secrets"
    if kind == "Deployment":
        return paths.deployment(namespace)
    return paths.custom(namespace, {"AlertProvider": "alertproviders", "Rollout": "rollouts"}[kind])


def _create(api: KubeApi, obj: dict[str, Any]) -> None:
    """POST one object to its collection (what ``kubectl create -f`` does)."""
    collection = _collection(obj["kind"], obj["metadata"].get("namespace", ""))
    api.create(collection, obj, what=f"create {obj['kind']} {obj['metadata']['name']}")


def metrics_backend(
    *,
    stack: ExitStack,
    view: LiveView,
    sim: MeshSimulator,
    timings: Timings,
    use_prometheus: bool,
) -> tuple[PrometheusServer | None, SimulatorCountsProvider | None]:
    """A real Prometheus scraping the simulator, or (saying so) the simulator-counts fallback."""
    reason = "--no-prometheus"
    if use_prometheus and not prometheus_available():
        reason = "the prometheus binary is not installed"
    elif use_prometheus:
        # Scrape at least twice per analysis interval so increase() over one interval has
        # two samples to work with.
        scrape = "500ms" if timings.interval_seconds < 2 else "1s"
        view.log(f"==> Prometheus (real, Debian's binary) scraping the simulator every {scrape}")
        prom = PrometheusServer(targets=[sim.target], scrape_interval=scrape)
        stack.callback(prom.stop)  # also removes its data directory if start fails half-way
        try:
            prom.start()
        except PrometheusError as exc:
            reason = f"Prometheus failed to start: {str(exc).splitlines()[0]}"
        else:
            view.log(f"    {prom.url}")
            return prom, None
    view.log(
        f"==> NOT using Prometheus ({reason}): the controller reads the simulator's counters "
        "directly (SimulatorCountsProvider, same counts, no PromQL)"
    )
    fallback = SimulatorCountsProvider(sim.metrics).start()
    stack.callback(fallback.stop)
    return None, fallback


def start(
    *,
    stack: ExitStack,
    view: LiveView,
    timings: Timings,
    rps: float,
    seed: int,
    use_prometheus: bool,
    user_webhook: str | None,
    stuck: list[str],
    router: str = "istio",
    baseline: bool = False,
    ab: bool = False,
) -> DemoEnv:
    """Start every piece (each stopped by ``stack``) and create the demo's objects. With
    ``baseline`` the Rollout has a baseline arm and the mesh is noisy (per-arm error-rate noise
    of :data:`NOISE_CV` in blocks of :data:`NOISE_BLOCK_SECONDS`): the baseline's scenario;
    with ``ab``, an A/B test (header or cookie) instead of the weight steps."""
    # The controller logs warnings (e.g. a retried tick) to stderr; the demo's own output is
    # the story, so keep the library quiet unless something is really wrong.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")

    view.log(
        "==> Kubernetes API emulator (kubeemu) with Istio's, the Gateway API's and canaryd's CRDs"
    )
    emu = Emulator(crd_paths=[crd_directory(stack)], install_istio=True)
    emu.start()
    stack.callback(emu.stop)
    api_client = emu.api_client()
    stack.callback(api_client.close)
    api = KubeApi(api_client)
    view.log(f"    {emu.url}")

    slack = SlackCapture().start()
    stack.callback(slack.stop)
    providers = [res.LOCAL_PROVIDER]
    objects: list[dict[str, Any]] = [
        res.namespace(),
        res.deployment(res.STABLE_IMAGE),
        res.webhook_secret(slack.url),
        res.alert_provider(res.LOCAL_PROVIDER),
    ]
    if user_webhook:
        providers.append(res.USER_PROVIDER)
        objects += [
            res.webhook_secret(user_webhook, name=f"{res.WEBHOOK_SECRET}-user"),
            res.alert_provider(res.USER_PROVIDER, secret=f"{res.WEBHOOK_SECRET}-user"),
        ]
    view.log(
        f"==> namespace {res.NAMESPACE}: Deployment {res.APP} ({res.STABLE_IMAGE}), "
        f"AlertProvider(s) {', '.join(providers)}"
    )
    for obj in objects:
        _create(api, obj)
    view.log(f"    Slack messages go to a local webhook ({slack.url}) and are shown below")
    if user_webhook:
        view.log("    ... and to the --slack-webhook URL you gave")

    route_kind = "HTTPRoute" if router == "gateway-api" else "VirtualService"
    view.log(
        f"==> mesh simulator: {rps:g} rps through the {route_kind}; stable error rate "
        f"{STABLE_ERROR_RATE:.0%}, the bad image {BAD_ERROR_FACTOR:g}x, the slow one "
        f"{SLOW_LATENCY_FACTOR:g}x latency"
    )
    sim_client = emu.api_client()
    stack.callback(sim_client.close)
    if baseline:
        view.log(
            f"    noisy mesh: each arm's error rate varies by {NOISE_CV:.0%} (coefficient of "
            f"variation) in {NOISE_BLOCK_SECONDS:g}s blocks, independently per workload"
        )
    segments = (
        Segment(res.AB_SHARES[0], headers=(res.AB_HEADER,)),
        Segment(res.AB_SHARES[1], headers=(("cookie", f"theme=dark; {'='.join(res.AB_COOKIE)}"),)),
    )
    if ab:
        view.log(
            f"    {res.AB_SHARES[0]:.0%} of the users send the header {': '.join(res.AB_HEADER)}, "
            f"{res.AB_SHARES[1]:.0%} the cookie {'='.join(res.AB_COOKIE)}"
        )
    sim = MeshSimulator(
        apps=[MeshApp(res.NAMESPACE, res.APP, router=router, segments=segments if ab else ())],
        routes=KubeRoutes(sim_client),
        profiles=version_profiles(),
        default_profile=VersionProfile(error_rate=STABLE_ERROR_RATE),
        rps=rps,
        seed=seed,
        refresh_s=min(0.5, timings.interval_seconds / 4),
        shape=TrafficShape(overdispersion=NOISE_CV, overdispersion_period_s=NOISE_BLOCK_SECONDS)
        if baseline
        else None,
    )
    sim.start()
    stack.callback(sim.stop)
    view.log(f"    {sim.url}/metrics")

    prom, fallback = metrics_backend(
        stack=stack, view=view, sim=sim, timings=timings, use_prometheus=use_prometheus
    )
    metrics_for = None
    if fallback is not None:
        provider = fallback

        def metrics_for(_rollout: Rollout) -> SimulatorCountsProvider:
            return provider

    view.log(
        "==> canaryd controller (watches, scheduler, leader election, "
        f"{'Gateway API' if router == 'gateway-api' else 'Istio'}, Slack, Events)"
    )
    options = Options(
        controller=ControllerConfig(
            namespaces=(res.NAMESPACE,),
            lease_namespace=res.NAMESPACE,
            identity="canaryd-demo",
        ),
        prometheus=PrometheusSettings(address=prom.url)
        if prom is not None
        else PrometheusSettings(),
    )
    parts = assemble(emu.api_client(), options, metrics_for=metrics_for)
    parts.start()
    stack.callback(
        stop_within, parts.stop, seconds=15.0, what="the controller", view=view, stuck=stuck
    )
    # Runs first at exit (LIFO): apscheduler logs jobs it can no longer submit while shutting
    # down; that is expected then and would only clutter the ending.
    stack.callback(logging.getLogger("apscheduler").setLevel, logging.CRITICAL)

    iterations = len(timings.step_weights) * timings.intervals_per_step
    plan = (
        f"A/B test: the header or the cookie to the canary for {iterations} intervals"
        if ab
        else f"steps {list(timings.step_weights)} %, {timings.intervals_per_step} intervals "
        "per step"
    )
    view.log(
        f"==> Rollout {res.NAMESPACE}/{res.APP}: interval {timings.interval}, {plan}, "
        "judge: sequential (alpha 0.01, tolerated degradation 25%)"
        + (
            "; baseline arm: podinfo-baseline (the stable version, fresh pods) at the "
            "canary's weight"
            if baseline
            else ""
        )
    )
    _create(
        api,
        res.rollout(
            interval=timings.interval,
            step_weights=timings.step_weights,
            intervals_per_step=timings.intervals_per_step,
            providers=providers,
            router=router,
            baseline=baseline,
            ab_test=res.ab_test(iterations) if ab else None,
        ),
    )
    env = DemoEnv(
        api=api,
        sim=sim,
        slack=slack,
        metrics_backend="prometheus" if prom is not None else "simulator",
        notifier_pending=lambda: parts.notifier.pending,
        prometheus=prom,
    )
    return env
