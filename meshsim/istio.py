"""Istio's standard metrics as Envoy sidecars expose them, and their text formats.

- ``istio_requests_total`` (counter) and ``istio_request_duration_milliseconds`` (histogram:
  ``_bucket{le}``, ``_sum``, ``_count``), with the label set of Istio's telemetry v2
  (``reporter``, ``source_*``, ``destination_*``, ``request_protocol``, ``response_code``,
  ``grpc_response_status``, ``response_flags``, ``connection_security_policy``).
- ``le`` values are written like Envoy does (C ``%g``): ``"0.5"``, ``"1"``, ..., ``"600000"``,
  ``"1.8e+06"``, ``"3.6e+06"``, ``"+Inf"``.
- :class:`IstioMetrics` holds the counters; :meth:`IstioMetrics.exposition` renders the Prometheus
  text format (live scraping); :class:`OpenMetricsRecorder` keeps timestamped snapshots and
  renders OpenMetrics text for ``promtool tsdb create-blocks-from openmetrics``.
- A pod restart is modelled by :meth:`IstioMetrics.reset_workload`: its counters drop to zero,
  exactly what Prometheus sees when a sidecar restarts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from meshsim.traffic import ISTIO_BUCKETS_MS, Outcome

LabelSet = tuple[tuple[str, str], ...]


def le_label(bound: float) -> str:
    """``le`` as Envoy writes it (``%g``)."""
    return f"{bound:g}"


@dataclass(frozen=True, slots=True)
class Destination:
    """Where requests go: a workload behind a Service."""

    namespace: str
    workload: str
    service: str
    app: str
    protocol: str = "http"  # "http" | "grpc"


def label_set(
    dest: Destination, *, reporter: str, response_code: str, grpc_status: str
) -> LabelSet:
    """The labels Istio attaches to a request from the ingress gateway to ``dest``."""
    ns = dest.namespace
    src_sa = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
    labels = {
        "reporter": reporter,
        "source_workload": "istio-ingressgateway",
        "source_workload_namespace": "istio-system",
        "source_principal": src_sa,
        "source_app": "istio-ingressgateway",
        "source_version": "unknown",
        "source_canonical_service": "istio-ingressgateway",
        "source_canonical_revision": "latest",
        "source_cluster": "Kubernetes",
        "destination_workload": dest.workload,
        "destination_workload_namespace": ns,
        "destination_principal": f"spiffe://cluster.local/ns/{ns}/sa/default",
        "destination_app": dest.app,
        "destination_version": "unknown",
        "destination_service": f"{dest.service}.{ns}.svc.cluster.local",
        "destination_service_name": dest.service,
        "destination_service_namespace": ns,
        "destination_canonical_service": dest.app,
        "destination_canonical_revision": "latest",
        "destination_cluster": "Kubernetes",
        "request_protocol": dest.protocol,
        "response_code": response_code,
        "grpc_response_status": grpc_status,
        "response_flags": "-",
        "connection_security_policy": "mutual_tls" if reporter == "destination" else "unknown",
    }
    return tuple(labels.items())


class _Series:
    __slots__ = ("buckets", "requests", "sum_ms")

    def __init__(self, size: int) -> None:
        self.requests = 0
        self.buckets = np.zeros(size, dtype=np.int64)  # non-cumulative; last slot = overflow
        self.sum_ms = 0.0


@dataclass(frozen=True, slots=True)
class SeriesValue:
    """One series' counter values at one instant."""

    labels: LabelSet
    requests: int
    cumulative_buckets: tuple[int, ...]
    """Cumulative counts for each bound and finally ``+Inf`` (== requests)."""
    sum_ms: float


class IstioMetrics:
    """Counters of every (reporter, destination, response code) seen so far. Thread-safe."""

    def __init__(
        self,
        *,
        reporters: Sequence[str] = ("destination", "source"),
        bounds: Sequence[float] = ISTIO_BUCKETS_MS,
    ) -> None:
        self.reporters = tuple(reporters)
        self.bounds = tuple(bounds)
        self._series: dict[LabelSet, _Series] = {}
        self._lock = threading.Lock()

    def record(self, dest: Destination, outcome: Outcome, *, error_code: str) -> None:
        """Add one step's requests served by ``dest`` (successes and failures)."""
        grpc = dest.protocol == "grpc"
        ok_code, ok_grpc = "200", ("0" if grpc else "")
        # gRPC failures travel in an HTTP 200 with grpc-status 14 (UNAVAILABLE).
        err_code, err_grpc = ("200", "14") if grpc else (error_code, "")
        parts = (
            (ok_code, ok_grpc, outcome.requests - outcome.errors, outcome.ok_bucket_counts,
             outcome.ok_sum_ms),
            (err_code, err_grpc, outcome.errors, outcome.err_bucket_counts, outcome.err_sum_ms),
        )  # fmt: skip
        with self._lock:
            for code, status, n, buckets, total in parts:
                if n <= 0:
                    continue
                for reporter in self.reporters:
                    s = self._get(label_set(dest, reporter=reporter, response_code=code,
                                            grpc_status=status))  # fmt: skip
                    s.requests += n
                    s.buckets += buckets
                    s.sum_ms += total

    def prime(self, dest: Destination) -> None:
        """Create ``dest``'s success series at zero, so the first requests after it appears
        are counted by ``increase()`` (Envoy creates series at the first request)."""
        grpc = dest.protocol == "grpc"
        with self._lock:
            for reporter in self.reporters:
                self._get(label_set(dest, reporter=reporter, response_code="200",
                                    grpc_status="0" if grpc else ""))  # fmt: skip

    def reset_workload(self, namespace: str, workload: str) -> int:
        """A pod restart: zero every counter of ``workload``; returns the series reset."""
        n = 0
        with self._lock:
            for labels, s in self._series.items():
                d = dict(labels)
                if d["destination_workload"] == workload and (
                    d["destination_workload_namespace"] == namespace
                ):
                    s.requests, s.sum_ms = 0, 0.0
                    s.buckets[:] = 0
                    n += 1
        return n

    def snapshot(self) -> list[SeriesValue]:
        """Every series' current values, in a stable order."""
        with self._lock:
            items = sorted(self._series.items())
            return [
                SeriesValue(
                    labels=labels,
                    requests=s.requests,
                    cumulative_buckets=tuple(int(x) for x in np.cumsum(s.buckets)),
                    sum_ms=s.sum_ms,
                )
                for labels, s in items
            ]

    def totals(
        self, namespace: str, workload: str, reporter: str = "destination"
    ) -> tuple[int, int]:
        """(requests, errors with a 5xx code or non-zero gRPC status) of ``workload``."""
        req = err = 0
        for v in self.snapshot():
            d = dict(v.labels)
            if (d["destination_workload"], d["destination_workload_namespace"],
                    d["reporter"]) != (workload, namespace, reporter):  # fmt: skip
                continue
            req += v.requests
            if d["response_code"].startswith("5") or d["grpc_response_status"] not in ("", "0"):
                err += v.requests
        return req, err

    def exposition(self) -> str:
        """Prometheus text format (version 0.0.4), as a sidecar's ``/stats/prometheus``."""
        return render([self.snapshot()], self.bounds)

    def _get(self, labels: LabelSet) -> _Series:
        s = self._series.get(labels)
        if s is None:
            s = self._series[labels] = _Series(len(self.bounds) + 1)
        return s


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt_labels(labels: Iterable[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _num(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


def render(
    snapshots: Sequence[Sequence[SeriesValue]],
    bounds: Sequence[float],
    *,
    timestamps: Sequence[float] | None = None,
    openmetrics: bool = False,
) -> str:
    """Render counters: every series gets one sample per snapshot (stamped with ``timestamps``
    when given), in time order, grouped by metric family as OpenMetrics requires."""
    les = [le_label(b) for b in bounds] + ["+Inf"]
    # Series in the union of all snapshots; a series absent from a snapshot has no sample there.
    order: dict[LabelSet, None] = {}
    for snap in snapshots:
        for sv in snap:
            order.setdefault(sv.labels, None)
    by_snap = [{sv.labels: sv for sv in snap} for snap in snapshots]

    def stamp(i: int) -> str:
        return "" if timestamps is None else f" {timestamps[i]:.3f}"

    out: list[str] = []
    req_family = "istio_requests" if openmetrics else "istio_requests_total"
    out.append(f"# HELP {req_family} Total requests.")
    out.append(f"# TYPE {req_family} counter")
    for labels in order:
        for i, values_at in enumerate(by_snap):
            v = values_at.get(labels)
            if v is not None:
                out.append(f"istio_requests_total{_fmt_labels(labels)} {v.requests}{stamp(i)}")
    hist = "istio_request_duration_milliseconds"
    out.append(f"# HELP {hist} Request duration in milliseconds.")
    out.append(f"# TYPE {hist} histogram")
    for labels in order:
        for i, values_at in enumerate(by_snap):
            v = values_at.get(labels)
            if v is None:
                continue
            for le, count in zip(les, v.cumulative_buckets, strict=True):
                lbl = _fmt_labels((*labels, ("le", le)))
                out.append(f"{hist}_bucket{lbl} {count}{stamp(i)}")
            out.append(f"{hist}_sum{_fmt_labels(labels)} {_num(v.sum_ms)}{stamp(i)}")
            out.append(f"{hist}_count{_fmt_labels(labels)} {v.requests}{stamp(i)}")
    if openmetrics:
        out.append("# EOF")
    return "\n".join(out) + "\n"


class OpenMetricsRecorder:
    """Timestamped snapshots of :class:`IstioMetrics`, rendered as OpenMetrics for backfill."""

    def __init__(self, metrics: IstioMetrics) -> None:
        self._metrics = metrics
        self.timestamps: list[float] = []
        self._snapshots: list[list[SeriesValue]] = []

    def capture(self, at: float) -> None:
        """Record every series' values at epoch second ``at`` (must increase)."""
        if self.timestamps and at <= self.timestamps[-1]:
            raise ValueError(f"timestamps must increase: {at} after {self.timestamps[-1]}")
        self.timestamps.append(at)
        self._snapshots.append(self._metrics.snapshot())

    def values_at(self, index: int) -> dict[LabelSet, SeriesValue]:
        """The series captured at ``timestamps[index]``, by label set."""
        return {v.labels: v for v in self._snapshots[index]}

    def openmetrics(self) -> str:
        """OpenMetrics text with a timestamp on every sample, ending in ``# EOF``."""
        return render(
            self._snapshots, self._metrics.bounds, timestamps=self.timestamps, openmetrics=True
        )
