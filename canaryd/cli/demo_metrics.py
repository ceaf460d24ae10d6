"""``SimulatorCountsProvider``: the demo's metrics when no Prometheus binary is installed.

It implements :class:`canaryd.core.ports.MetricsProvider` by reading the mesh simulator's own
counters (the numbers its ``/metrics`` endpoint would expose) instead of asking Prometheus.
A sampler thread snapshots the counters every ``sample_seconds`` (a scrape: the simulator
records its ground truth with it), and a query's counts over ``(at - window, at]`` are exact as
the Prometheus provider's are: per series, the value at the last sample at or before ``at``
minus the value at the last sample at or before the start, a series born in between counted
from zero, resets added back, a series that went away counted up to its last sample
(:func:`canaryd.adapters.prometheus.counters.interval_increase`). Latency buckets come from
``istio_request_duration_milliseconds`` (cumulative, keyed by ``le`` as Istio writes it);
errors are ``response_code`` matching the metric's regex (5xx by default) or a non-zero
``grpc_response_status``.

It exists only so the demo runs on a machine without Prometheus; the product reads Prometheus
(:class:`canaryd.adapters.prometheus.PrometheusProvider`), and the terminal says which one the
demo uses. ``kind: template`` metrics (PromQL) cannot be answered here: they get an ``error``
reading naming the reason.
"""

from __future__ import annotations

import bisect
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from canaryd.adapters.prometheus.counters import interval_increase
from canaryd.adapters.prometheus.provider import SETTLE_SECONDS
from canaryd.api.models import ArmCounts, IntervalRecord, MetricKind
from canaryd.core.types import MetricQuery, MetricReading
from meshsim import IstioMetrics, le_label


@dataclass(frozen=True, slots=True)
class _Series:
    """One destination-reported series at one instant: its workload, code and counters."""

    namespace: str
    workload: str
    response_code: str
    grpc_status: str
    requests: float
    buckets: tuple[float, ...]
    """Cumulative bucket counts, one per ``le`` (the last is ``+Inf``)."""


_Sample = tuple[float, dict[tuple[tuple[str, str], ...], _Series]]


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
    settle_seconds:
        Intervals end this long before the tick, as the Prometheus provider's (0 by default),
        so the demo's numbers mean the same with either backend.
    """

    def __init__(
        self,
        metrics: IstioMetrics,
        *,
        sample_seconds: float = 0.5,
        keep_seconds: float = 600.0,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        self._metrics = metrics
        self._sample_seconds = sample_seconds
        self._keep_seconds = keep_seconds
        self._settle_seconds = settle_seconds
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

    @property
    def running(self) -> bool:
        """The sampler thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._sample_seconds):
            self.sample()

    def sample(self, at: float | None = None) -> None:
        """Take one snapshot of every series (``at``: wall-clock seconds)."""
        now = time.time() if at is None else at
        series: dict[tuple[tuple[str, str], ...], _Series] = {}
        for value in self._metrics.scrape(now):
            labels = dict(value.labels)
            if labels.get("reporter") != "destination":
                continue
            series[value.labels] = _Series(
                namespace=labels["destination_workload_namespace"],
                workload=labels["destination_workload"],
                response_code=labels.get("response_code", ""),
                grpc_status=labels.get("grpc_response_status", ""),
                requests=float(value.requests),
                buckets=tuple(float(c) for c in value.cumulative_buckets),
            )
        with self._lock:
            self._samples.append((now, series))
            horizon = now - self._keep_seconds
            while len(self._samples) > 2 and self._samples[0][0] < horizon:
                self._samples.pop(0)

    # ---- MetricsProvider ---------------------------------------------------------------------

    def is_online(self) -> bool:
        return True

    def read(self, queries: Sequence[MetricQuery]) -> list[MetricReading]:
        return [self._read_one(q) for q in queries]

    def _window(self, at: float, window_seconds: float) -> tuple[float, list[_Sample]] | None:
        """The interval's start and the samples it needs: from the last one at or before the
        start (or the oldest kept) to the last one at or before ``at``."""
        start = at - window_seconds
        with self._lock:
            samples = list(self._samples)
        times = [t for t, _ in samples]
        last = bisect.bisect_right(times, at + 1e-6) - 1
        if last < 1:
            return None
        first = max(0, bisect.bisect_right(times, start + 1e-6) - 1)
        if first >= last:
            return None
        return start, samples[first : last + 1]

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
        window = self._window(query.at.timestamp() - self._settle_seconds, query.window_seconds)
        if window is None:
            return MetricReading(metric=name, no_data=True)
        start, samples = window
        canary = self._arm(start, samples, query.namespace, query.canary_workload, errors_re)
        stable = self._arm(start, samples, query.namespace, query.primary_workload, errors_re)
        if canary is None or stable is None or (canary.requests == 0 and stable.requests == 0):
            return MetricReading(metric=name, no_data=True)
        baseline = None
        if query.baseline_workload is not None:
            # As the Prometheus provider: a baseline without series counts zero.
            baseline = self._arm(
                start, samples, query.namespace, query.baseline_workload, errors_re
            ) or ArmCounts(
                requests=0,
                latency_buckets=dict.fromkeys(stable.latency_buckets or {}, 0.0),
            )
        return MetricReading(
            metric=name,
            record=IntervalRecord(
                weight=query.weight, canary=canary, stable=stable, baseline=baseline
            ),
        )

    def _arm(
        self,
        start: float,
        samples: list[_Sample],
        namespace: str,
        workload: str,
        errors_re: re.Pattern[str],
    ) -> ArmCounts | None:
        """Sum of the per-series exact counts of one workload; None when it has no series."""
        les = [le_label(b) for b in self._metrics.bounds] + ["+Inf"]
        end = samples[-1][0]
        history: dict[tuple[tuple[str, str], ...], list[tuple[float, _Series]]] = {}
        for t, series in samples:
            for key, value in series.items():
                if value.namespace == namespace and value.workload == workload:
                    history.setdefault(key, []).append((t, value))
        if not history:
            return None
        requests = errors = 0.0
        buckets = [0.0] * len(les)
        for points in history.values():
            last = points[-1][1]
            n = interval_increase(((t, v.requests) for t, v in points), start, end)
            requests += n
            http_error = errors_re.fullmatch(last.response_code) is not None
            if http_error or last.grpc_status not in ("", "0"):
                errors += n
            for i in range(len(les)):
                buckets[i] += interval_increase(((t, v.buckets[i]) for t, v in points), start, end)
        return ArmCounts(
            requests=requests, errors=errors, latency_buckets=dict(zip(les, buckets, strict=True))
        )
