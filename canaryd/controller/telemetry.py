"""The controller's own metrics (prometheus_client) and its /metrics, /healthz, /readyz server.

One label set everywhere: ``namespace`` and ``rollout`` (plus ``metric`` on per-metric series;
state gauges add the state's name, ``phase`` or ``outcome``, as one-hot series with value 0/1).
The single exception is ``canaryd_rollout_info`` which carries ``target`` so dashboards can join
a Rollout to its Istio ``destination_workload`` (the kube-state-metrics "info" pattern).

Assumptions:

- Gauges are a projection of the Rollout's *status* (:meth:`Telemetry.observe`), so a restarted
  controller exports the same values as soon as it has listed the Rollouts.
- Counters (errors, notification failures, promotions, rollbacks) count events seen by this
  process; they are created at 0 on the first observation so ``increase()`` sees the first one.
- Each :class:`Telemetry` has its own ``CollectorRegistry`` (tests and shards create many).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import MetricWrapperBase

from canaryd.api.models import MetricEvidence, Outcome, Phase, Rollout
from canaryd.core.ports import AlertTarget
from canaryd.core.types import Notice

RolloutKey = tuple[str, str]
"""(namespace, rollout name)."""

LABELS = ("namespace", "rollout")
METRIC_LABELS = (*LABELS, "metric")
# Few buckets: histograms are per Rollout, and 1000 Rollouts x 2 histograms x buckets adds up.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

# Per-metric evidence gauges: metric name suffix -> MetricEvidence attribute.
_EVIDENCE_GAUGES = {
    "e_value": ("e_value", "Judge's e-value (evidence against 'canary no worse'); 1/alpha fails."),
    "p_value": ("p_value", "p-value, for judges that compute one (Kayenta-compatible mode)."),
    "effect": ("effect", "Estimated relative change of canary over stable (0.5 = +50%)."),
    "effect_low": ("effect_low", "Lower end of the effect's confidence interval."),
    "effect_high": ("effect_high", "Upper end of the effect's confidence interval."),
    "canary_value": ("canary_value", "Canary's value of the metric (e.g. error rate)."),
    "stable_value": ("stable_value", "Stable's value of the metric."),
    "canary_requests": ("canary_requests", "Canary requests counted in the analysis."),
    "stable_requests": ("stable_requests", "Stable requests counted in the analysis."),
}


class Telemetry:
    """canaryd's metrics, updated from Rollouts and from controller events."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, process_metrics: bool = True
    ) -> None:
        # ``*_created`` series double every counter and histogram for no dashboard use.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if process_metrics:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        self.info = Gauge(
            "canaryd_rollout_info", "1 per Rollout; target = the canary Deployment.",
            [*LABELS, "target"], registry=r,
        )  # fmt: skip
        self.phase = Gauge(
            "canaryd_rollout_phase", "1 for the Rollout's current phase, 0 for the others.",
            [*LABELS, "phase"], registry=r,
        )  # fmt: skip
        self.weight = Gauge(
            "canaryd_rollout_canary_weight", "Percent of traffic routed to the canary.",
            LABELS, registry=r,
        )  # fmt: skip
        self.step = Gauge(
            "canaryd_rollout_step", "Current step of the weight schedule (status.currentStep).",
            LABELS, registry=r,
        )  # fmt: skip
        self.steps = Gauge(
            "canaryd_rollout_steps", "Number of steps in the weight schedule.", LABELS, registry=r
        )
        self.step_started = Gauge(
            "canaryd_rollout_step_started_timestamp_seconds", "When the current step started.",
            LABELS, registry=r,
        )  # fmt: skip
        self.step_expected = Gauge(
            "canaryd_rollout_step_expected_seconds",
            "Planned duration of one step (interval x intervalsPerStep).", LABELS, registry=r,
        )  # fmt: skip
        self.verdict = Gauge(
            "canaryd_rollout_verdict", "1 for the analysis' overall outcome, 0 for the others.",
            [*LABELS, "outcome"], registry=r,
        )  # fmt: skip
        self.intervals = Gauge(
            "canaryd_analysis_intervals", "Analysis intervals judged in the current rollout.",
            LABELS, registry=r,
        )  # fmt: skip
        self.no_data_intervals = Gauge(
            "canaryd_analysis_no_data_intervals", "Consecutive intervals without data.",
            LABELS, registry=r,
        )  # fmt: skip
        self.outcome = Gauge(
            "canaryd_analysis_outcome", "Per metric: 1 for its latest outcome, 0 for the others.",
            [*METRIC_LABELS, "outcome"], registry=r,
        )  # fmt: skip
        self.evidence = {
            attr: Gauge(f"canaryd_analysis_{suffix}", doc, METRIC_LABELS, registry=r)
            for suffix, (attr, doc) in _EVIDENCE_GAUGES.items()
        }
        self.tick_duration = Histogram(
            "canaryd_reconcile_duration_seconds", "Wall time of one reconcile tick.",
            LABELS, buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.analysis_duration = Histogram(
            "canaryd_analysis_duration_seconds", "Wall time of metric queries + judging.",
            LABELS, buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.reconcile_errors = Counter(
            "canaryd_reconcile_errors", "Ticks that ended with an error.", LABELS, registry=r
        )
        self.notifications = Counter(
            "canaryd_notifications", "Notices delivered to a target.", LABELS, registry=r
        )
        self.notification_failures = Counter(
            "canaryd_notification_failures", "Notices that could not be delivered.",
            LABELS, registry=r,
        )  # fmt: skip
        self.promotions = Counter(
            "canaryd_rollout_promotions", "Rollouts that reached Succeeded.", LABELS, registry=r
        )
        self.rollbacks = Counter(
            "canaryd_rollout_rollbacks", "Rollouts that reached Failed.", LABELS, registry=r
        )
        self.leader = Gauge(
            "canaryd_leader", "1 while this process holds the leader Lease.", registry=r
        )
        self.rollouts = Gauge(
            "canaryd_rollouts", "Rollouts this process currently tracks.", registry=r
        )
        self._lock = threading.Lock()
        self._known: dict[RolloutKey, _Seen] = {}

    # ---- Rollout status -> gauges -------------------------------------------------------

    def observe(self, rollout: Rollout) -> None:
        """Project ``rollout``'s status onto the gauges; a Rollout being deleted is forgotten.

        Called after every tick, mostly with the values already exported: a series is set only
        when its value changed (the same exposition; 50 label look-ups per tick were a sixth
        of a tick's CPU)."""
        key = (rollout.metadata.namespace, rollout.metadata.name)
        if rollout.metadata.deletion_timestamp is not None:
            self.forget(*key)
            return
        status, spec = rollout.status, rollout.spec
        with self._lock:
            seen = self._known.get(key)
            if seen is None:
                seen = _Seen()
                self._known[key] = seen
                for counter in self._counters():
                    counter.labels(*key)  # start at 0 so increase() sees the first event
            if seen.target != spec.target_ref.name:
                if seen.target is not None:
                    self.info.remove(*key, seen.target)
                    seen.values.pop((self.info, (*key, seen.target)), None)
                seen.target = spec.target_ref.name
            put = seen.put
            put(self.info, (*key, spec.target_ref.name), 1)
            if seen.phase is not None and seen.phase != status.phase:
                if status.phase == Phase.SUCCEEDED:
                    self.promotions.labels(*key).inc()
                elif status.phase == Phase.FAILED:
                    self.rollbacks.labels(*key).inc()
            seen.phase = status.phase
            for phase in Phase:
                put(self.phase, (*key, phase.value), 1 if phase == status.phase else 0)
            put(self.weight, key, status.canary_weight)
            put(self.step, key, status.current_step)
            put(self.steps, key, len(spec.steps()))
            expected = spec.schedule.interval_seconds() * spec.schedule.intervals_per_step
            put(self.step_expected, key, expected)
            started = status.step_started_at or status.rollout_started_at
            if started is not None:
                put(self.step_started, key, started.timestamp())
            verdict = status.verdict or status.analysis.outcome
            for outcome in Outcome:
                put(self.verdict, (*key, outcome.value), 1 if outcome == verdict else 0)
            put(self.intervals, key, status.analysis.intervals)
            put(self.no_data_intervals, key, status.analysis.no_data_intervals)
            names = {ev.name for ev in status.analysis.metrics}
            for gone in seen.metrics - names:
                self._remove_metric(key, gone, seen)
            seen.metrics = names
            for ev in status.analysis.metrics:
                self._observe_evidence(key, ev, seen)
            self.rollouts.set(len(self._known))

    def forget(self, namespace: str, rollout: str) -> None:
        """Remove every series of a deleted Rollout."""
        key = (namespace, rollout)
        with self._lock:
            seen = self._known.pop(key, None)
            if seen is None:
                return
            for metric in seen.metrics:
                self._remove_metric(key, metric, seen)
            if seen.target is not None:
                _remove(self.info, *key, seen.target)
            for phase in Phase:
                _remove(self.phase, *key, phase.value)
            for outcome in Outcome:
                _remove(self.verdict, *key, outcome.value)
            for metric_family in (
                self.weight, self.step, self.steps, self.step_started, self.step_expected,
                self.intervals, self.no_data_intervals, self.tick_duration,
                self.analysis_duration, *self._counters(),
            ):  # fmt: skip
                _remove(metric_family, *key)
            self.rollouts.set(len(self._known))

    def retain(self, keys: Iterable[RolloutKey]) -> None:
        """Forget every Rollout not in ``keys`` (after a re-list: catches missed deletions)."""
        keep = set(keys)
        with self._lock:
            stale = [k for k in self._known if k not in keep]
        for key in stale:
            self.forget(*key)

    # ---- controller events --------------------------------------------------------------

    def observe_tick(self, namespace: str, rollout: str, seconds: float) -> None:
        self.tick_duration.labels(namespace, rollout).observe(seconds)

    def observe_analysis(self, namespace: str, rollout: str, seconds: float) -> None:
        self.analysis_duration.labels(namespace, rollout).observe(seconds)

    def reconcile_error(self, namespace: str, rollout: str) -> None:
        self.reconcile_errors.labels(namespace, rollout).inc()

    def notification_sent(self, target: AlertTarget, notice: Notice) -> None:
        """Matches the Slack notifier's ``on_sent`` callback."""
        self.notifications.labels(notice.namespace, notice.rollout).inc()

    def notification_failed(self, target: AlertTarget, notice: Notice, error: Exception) -> None:
        """Matches the Slack notifier's ``on_failure`` callback."""
        self.notification_failures.labels(notice.namespace, notice.rollout).inc()

    def set_leader(self, is_leader: bool) -> None:
        self.leader.set(1 if is_leader else 0)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The registry in the format ``accept`` asks for: (body, content type)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    # ---- internals ----------------------------------------------------------------------

    def _counters(self) -> tuple[Counter, ...]:
        return (
            self.reconcile_errors,
            self.notifications,
            self.notification_failures,
            self.promotions,
            self.rollbacks,
        )

    def _observe_evidence(self, key: RolloutKey, ev: MetricEvidence, seen: _Seen) -> None:
        for outcome in Outcome:
            seen.put(
                self.outcome, (*key, ev.name, outcome.value), 1 if outcome == ev.outcome else 0
            )
        for attr, gauge in self.evidence.items():
            value: float | None = getattr(ev, attr)
            if value is None:
                seen.drop(gauge, (*key, ev.name))
            else:
                seen.put(gauge, (*key, ev.name), value)

    def _remove_metric(self, key: RolloutKey, metric: str, seen: _Seen) -> None:
        for outcome in Outcome:
            seen.drop(self.outcome, (*key, metric, outcome.value))
        for gauge in self.evidence.values():
            seen.drop(gauge, (*key, metric))


class _Seen:
    """What this process last exported for one Rollout (to remove stale series, and to set a
    series only when its value changes)."""

    __slots__ = ("metrics", "phase", "target", "values")

    def __init__(self) -> None:
        self.target: str | None = None
        self.phase: Phase | None = None
        self.metrics: set[str] = set()
        self.values: dict[tuple[Gauge, tuple[str, ...]], float] = {}
        """The value last set per (gauge, labels) of this Rollout's series."""

    def put(self, gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
        """``gauge{labels} = value``, unless it already is."""
        held = self.values.get((gauge, labels))
        if held is None or held != value:
            gauge.labels(*labels).set(value)
            self.values[(gauge, labels)] = value

    def drop(self, gauge: Gauge, labels: tuple[str, ...]) -> None:
        """Remove the series (when it exists)."""
        self.values.pop((gauge, labels), None)
        _remove(gauge, *labels)


def _remove(family: MetricWrapperBase, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never created: nothing to remove
        family.remove(*labels)


class TelemetryServer:
    """HTTP server for ``/metrics``, ``/healthz`` (liveness) and ``/readyz`` (readiness).

    ``ready`` decides readiness (e.g. informers synced); ``healthy`` decides liveness (e.g. the
    scheduler thread is alive). Both default to always true. Bind ``0.0.0.0`` in a Pod so the
    kubelet and Prometheus can reach it; tests bind ``127.0.0.1`` and port 0 (any free port).
    """

    def __init__(
        self,
        telemetry: Telemetry,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ready: Callable[[], bool] | None = None,
        healthy: Callable[[], bool] | None = None,
    ) -> None:
        self.telemetry = telemetry
        checks = {"/healthz": healthy or _always, "/readyz": ready or _always}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, ctype = outer.telemetry.exposition(self.headers.get("Accept", ""))
                    self._reply(200, body, ctype)
                elif path in checks:
                    ok = _safe(checks[path])
                    self._reply(200 if ok else 503, b"ok\n" if ok else b"not ok\n", "text/plain")
                else:
                    self._reply(404, b"not found\n", "text/plain")

            def _reply(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # probes every few seconds would flood the log

        self._http = ThreadingHTTPServer((host, port), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="canaryd-telemetry", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._http.server_address[0])
        return f"http://{host}:{self.port}"

    def start(self) -> TelemetryServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)


def _always() -> bool:
    return True


def _safe(check: Callable[[], bool]) -> bool:
    try:
        return bool(check())
    except Exception:  # a failing check means "not ok", never a 500 with a traceback
        return False
