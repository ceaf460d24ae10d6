"""``SimulatorCountsProvider``: the demo's metrics when no Prometheus binary is installed.

It implements :class:`canaryd.core.ports.MetricsProvider` by reading the mesh simulator's own
counters (the numbers its ``/metrics`` endpoint would expose) instead of asking Prometheus.
A sampler thread snapshots the counters every ``sample_seconds`` (as a 1 s scrape would), and a
query's counts are the increase between the newest sample and the newest sample at least
``window_seconds`` older: the same answer as ``sum(increase(...[window]))`` without
Prometheus's extrapolation. Latency buckets come from ``istio_request_duration_milliseconds``
(cumulative, keyed by ``le`` as Istio writes it); errors are ``response_code`` matching the
metric's regex (5xx by default).

It exists only so the demo runs on a machine without Prometheus; the product reads Prometheus
(:class:`canaryd.adapters.prometheus.PrometheusProvider`), and the terminal says which one the
demo uses. ``kind: template`` metrics (PromQL) cannot be answered here: they get an ``error``
reading naming the reason.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from canaryd.api.models import ArmCounts, IntervalRecord, MetricKind
from canaryd.core.types import MetricQuery, MetricReading
from meshsim import IstioMetrics, le_label


@dataclass(slots=True)
class _Arm:
    """Counters of one workload at one instant (reporter ``destination``), summed over series."""

    requests: float = 0.0
    errors_by_code: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, float] = field(default_factory=dict)


_Sample = tuple[float, dict[tuple[str, str], _Arm]]


class SimulatorCountsProvider:
    """Counts straight from a :class:`meshsim.IstioMetrics` (no Prometheus in between).

    Parameters
    ----------
    metrics:
        The simulator's counters (``MeshSimulator.metrics``).
    sample_seconds:
        How often the counters are sampled (the "scrape interval").
    keep_seconds:
        How much sample history is kept (bounds memory; longer than any window asked).
    """

    def __init__(
        self, metrics: IstioMetrics, *, sample_seconds: float = 0.5, keep_seconds: float = 600.0
    ) -> None:
        self._metrics = metrics
        self._sample_seconds = sample_seconds
        self._keep_seconds = keep_seconds
        self._samples: list[_Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> SimulatorCountsProvider:
        self.sample()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="demo-sim-counts", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._sample_seconds):
            self.sample()

    def sample(self, at: float | None = None) -> None:
        """Take one snapshot of every workload's counters (``at``: wall-clock seconds)."""
        now = time.time() if at is None else at
        arms: dict[tuple[str, str], _Arm] = {}
        bounds = [le_label(b) for b in self._metrics.bounds] + ["+Inf"]
        for series in self._metrics.snapshot():
            labels = dict(series.labels)
            if labels.get("reporter") != "destination":
                continue
            key = (labels["destination_workload_namespace"], labels["destination_workload"])
            arm = arms.setdefault(key, _Arm())
            arm.requests += series.requests
            code = labels.get("response_code", "")
            arm.errors_by_code[code] = arm.errors_by_code.get(code, 0.0) + series.requests
            for le, count in zip(bounds, series.cumulative_buckets, strict=True):
                arm.buckets[le] = arm.buckets.get(le, 0.0) + count
        with self._lock:
            self._samples.append((now, arms))
            horizon = now - self._keep_seconds
            while len(self._samples) > 2 and self._samples[0][0] < horizon:
                self._samples.pop(0)

    # ---- MetricsProvider ---------------------------------------------------------------------

    def is_online(self) -> bool:
        return True

    def read(self, queries: Sequence[MetricQuery]) -> list[MetricReading]:
        return [self._read_one(q) for q in queries]

    def _window(self, window_seconds: float) -> tuple[_Sample, _Sample] | None:
        with self._lock:
            if len(self._samples) < 2:
                return None
            end = self._samples[-1]
            start_at = end[0] - window_seconds
            # Newest sample at or before the window's start; else the oldest one we have.
            start = self._samples[0]
            for sample in self._samples:
                if sample[0] <= start_at + 1e-6:
                    start = sample
                else:
                    break
        if start is end:
            return None
        return start, end

    def _read_one(self, query: MetricQuery) -> MetricReading:
        name = query.metric.name
        if query.metric.kind == MetricKind.TEMPLATE:
            return MetricReading(
                metric=name,
                error="the demo's simulator-counts provider cannot run PromQL templates "
                "(install prometheus)",
            )
        try:
            errors_re = re.compile(query.metric.error_codes)
        except re.error as exc:
            return MetricReading(
                metric=name, error=f"errorCodes {query.metric.error_codes!r}: {exc}"
            )
        window = self._window(query.window_seconds)
        if window is None:
            return MetricReading(metric=name, no_data=True)
        (_, before), (_, after) = window
        arms = []
        for workload in (query.canary_workload, query.primary_workload):
            key = (query.namespace, workload)
            arms.append(_increase(before.get(key), after.get(key), errors_re))
        canary, stable = arms
        if canary is None or stable is None or (canary.requests == 0 and stable.requests == 0):
            return MetricReading(metric=name, no_data=True)
        return MetricReading(
            metric=name,
            record=IntervalRecord(weight=query.weight, canary=canary, stable=stable),
        )


def _increase(
    before: _Arm | None, after: _Arm | None, errors_re: re.Pattern[str]
) -> ArmCounts | None:
    """Counts over the window; a counter that went down (pod restart) counts from zero, as
    Prometheus's ``increase`` does."""
    if after is None:
        return None
    base = before or _Arm()
    reset = after.requests < base.requests
    if reset:
        base = _Arm()

    def delta(new: float, old: float) -> float:
        return max(0.0, new - old)

    errors = sum(
        delta(count, base.errors_by_code.get(code, 0.0))
        for code, count in after.errors_by_code.items()
        if errors_re.fullmatch(code)
    )
    buckets = {le: delta(c, base.buckets.get(le, 0.0)) for le, c in after.buckets.items()}
    return ArmCounts(
        requests=delta(after.requests, base.requests),
        errors=errors,
        latency_buckets=buckets,
    )
