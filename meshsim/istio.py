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
- Series are per **pod**, as Prometheus's Kubernetes pod discovery scrapes each sidecar: every
  series carries the labels Istio's Prometheus configuration (``samples/addons/prometheus.yaml``,
  job ``kubernetes-pods``, ``honor_labels: true``) adds from the pod: its Kubernetes labels
  (``app``, ``pod_template_hash``, ``security_istio_io_tlsMode``,
  ``service_istio_io_canonical_name``, ``service_istio_io_canonical_revision``), ``namespace``,
  ``pod``, ``node``, ``instance`` (``<pod IP>:15020``) and ``job``. A ``source``-reported
  series belongs to the calling pod (the ingress gateway in ``istio-system``).
- A series exists from the first request of its label set on (Envoy does not pre-create
  series): nothing is primed at zero.
- A sidecar restart (:meth:`IstioMetrics.restart_pod`) drops all of the pod's series; they come
  back, from zero, with the next requests. A pod that goes away (:meth:`IstioMetrics.remove_pod`)
  takes its series with it, so Prometheus marks them stale.
- :meth:`IstioMetrics.totals` is the ground truth: everything a workload ever served, which
  restarts and pod churn do not reset.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from meshsim.traffic import ISTIO_BUCKETS_MS, Outcome

LabelSet = tuple[tuple[str, str], ...]


def le_label(bound: float) -> str:
    """``le`` as Envoy writes it (``%g``)."""
    return f"{bound:g}"


@dataclass(frozen=True, slots=True)
class Pod:
    """One pod with an Istio sidecar, as Kubernetes pod discovery sees it."""

    namespace: str
    name: str
    app: str
    revision: str
    """``pod-template-hash`` of the pod's ReplicaSet."""
    ip: str
    node: str = "node-1"


GATEWAY_POD = Pod(
    namespace="istio-system",
    name="istio-ingressgateway-7d4f9c6b8-x2k9p",
    app="istio-ingressgateway",
    revision="7d4f9c6b8",
    ip="10.244.0.10",
)
"""The caller of every simulated request: the pod that reports ``reporter="source"``."""


def waypoint_pod(namespace: str) -> Pod:
    """The namespace's Istio ambient waypoint proxy: the pod that reports
    ``reporter="waypoint"`` for every workload behind it (one series per workload and code on
    the waypoint, not one per destination pod)."""
    return Pod(
        namespace=namespace,
        name="waypoint-6c9f8d7b5-q4w2z",
        app="waypoint",
        revision="6c9f8d7b5",
        ip="10.244.0.20",
    )


def pod_labels(pod: Pod) -> dict[str, str]:
    """What Istio's ``kubernetes-pods`` scrape job adds to every series of ``pod``."""
    return {
        "app": pod.app,
        "pod_template_hash": pod.revision,
        "security_istio_io_tlsMode": "istio",
        "service_istio_io_canonical_name": pod.app,
        "service_istio_io_canonical_revision": "latest",
        "namespace": pod.namespace,
        "pod": pod.name,
        "node": pod.node,
        "instance": f"{pod.ip}:15020",
        "job": "kubernetes-pods",
    }


@dataclass(frozen=True, slots=True)
class Destination:
    """Where requests go: a workload behind a Service."""

    namespace: str
    workload: str
    service: str
    app: str
    protocol: str = "http"  # "http" | "grpc"


def label_set(
    dest: Destination,
    *,
    reporter: str,
    response_code: str,
    grpc_status: str,
    pod: Pod | None = None,
) -> LabelSet:
    """The labels of a request from the ingress gateway to ``dest`` as stored by Prometheus:
    Istio's, plus the reporting pod's discovery labels (``pod`` serves ``dest``; the gateway
    reports ``source``). Without ``pod``, Istio's labels only."""
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
        "connection_security_policy": (
            "mutual_tls" if reporter in ("destination", "waypoint") else "unknown"
        ),
    }
    if pod is not None:
        reporting = {"destination": pod, "waypoint": waypoint_pod(ns)}.get(reporter, GATEWAY_POD)
        labels.update(pod_labels(reporting))
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
        self._served: dict[tuple[str, str, str], tuple[int, int]] = {}
        self._ledger: deque[tuple[float, dict[tuple[str, str, str], tuple[int, int]]]] = deque(
            maxlen=200_000
        )
        self._lock = threading.Lock()

    def record(
        self,
        dest: Destination,
        outcome: Outcome,
        *,
        error_code: str,
        pod: Pod | None = None,
        reporters: Sequence[str] | None = None,
    ) -> None:
        """Add one step's requests served by ``pod`` of ``dest`` (successes and failures), as
        ``reporters`` (default: every reporter emitted) see them."""
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
                    continue  # a series is born with its first request, never before
                for reporter in self.reporters:
                    if reporters is not None and reporter not in reporters:
                        continue
                    s = self._get(label_set(dest, reporter=reporter, response_code=code,
                                            grpc_status=status, pod=pod))  # fmt: skip
                    s.requests += n
                    s.buckets += buckets
                    s.sum_ms += total
                    key = (dest.namespace, dest.workload, reporter)
                    req, err = self._served.get(key, (0, 0))
                    is_err = code.startswith("5") or status not in ("", "0")
                    self._served[key] = (req + n, err + (n if is_err else 0))

    def restart_pod(self, namespace: str, pod: str) -> int:
        """A sidecar restart: every series of ``pod`` is gone until its next requests, which
        count from zero again. Returns the number of series dropped."""
        return self._drop(lambda d: d.get("namespace") == namespace and d.get("pod") == pod)

    def remove_pod(self, namespace: str, pod: str) -> int:
        """A pod deleted (scaled down, replaced in a rolling update): its series vanish."""
        return self.restart_pod(namespace, pod)

    def reset_workload(self, namespace: str, workload: str) -> int:
        """Every sidecar of ``workload`` restarts (see :meth:`restart_pod`); returns the number
        of series dropped."""
        return self._drop(
            lambda d: (
                d["destination_workload"] == workload
                and d["destination_workload_namespace"] == namespace
                and d["reporter"] == "destination"
            )
        )

    def pods(self, namespace: str, workload: str) -> list[str]:
        """Names of the pods of ``workload`` that have series now."""
        found = {
            d.get("pod", "")
            for labels in self.snapshot_labels()
            if (d := dict(labels))["destination_workload"] == workload
            and d["destination_workload_namespace"] == namespace
            and d["reporter"] == "destination"
        }
        return sorted(found - {""})

    def snapshot_labels(self) -> list[LabelSet]:
        with self._lock:
            return sorted(self._series)

    def _drop(self, match: Callable[[dict[str, str]], bool]) -> int:
        with self._lock:
            gone = [labels for labels in self._series if match(dict(labels))]
            for labels in gone:
                del self._series[labels]
        return len(gone)

    def snapshot(self) -> list[SeriesValue]:
        """Every series' current values, in a stable order."""
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> list[SeriesValue]:
        return [
            SeriesValue(
                labels=labels,
                requests=s.requests,
                cumulative_buckets=tuple(int(x) for x in np.cumsum(s.buckets)),
                sum_ms=s.sum_ms,
            )
            for labels, s in sorted(self._series.items())
        ]

    def totals(
        self, namespace: str, workload: str, reporter: str = "destination"
    ) -> tuple[int, int]:
        """(requests, errors with a 5xx code or non-zero gRPC status) ``workload`` ever served:
        the ground truth, not reset by restarts or pods going away."""
        with self._lock:
            return self._served.get((namespace, workload, reporter), (0, 0))

    def exposition(self, *, scrape: bool = False) -> str:
        """Prometheus text format (version 0.0.4), as a sidecar's ``/stats/prometheus``;
        ``scrape``: recorded as a scrape (see :meth:`scrape`)."""
        return render([self.scrape() if scrape else self.snapshot()], self.bounds)

    def scrape(self, at: float | None = None) -> list[SeriesValue]:
        """What a scrape sees now; the ground truth at this very instant (every workload's
        :meth:`totals`, taken under the same lock) is recorded with it for :meth:`served_at`."""
        with self._lock:
            self._ledger.append((time.time() if at is None else at, dict(self._served)))
            return self._snapshot()

    def served_at(
        self, namespace: str, workload: str, at: float, reporter: str = "destination"
    ) -> tuple[int, int]:
        """(requests, errors) ``workload`` had served as of the last scrape at or before epoch
        second ``at`` ((0, 0) before the first one)."""
        found = (0, 0)
        for t, req, err in self.scrapes(namespace, workload, reporter):
            if t > at:
                break
            found = (req, err)
        return found

    def scrapes(
        self, namespace: str, workload: str, reporter: str = "destination"
    ) -> list[tuple[float, int, int]]:
        """Every scrape so far: (epoch second, requests, errors ``workload`` had served)."""
        key = (namespace, workload, reporter)
        with self._lock:
            return [(t, *served.get(key, (0, 0))) for t, served in self._ledger]

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
