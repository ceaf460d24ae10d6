"""The Prometheus metrics provider: Istio counts for canary and stable, never a verdict.

Assumptions and behaviour:

- Counts are exact integers for the interval ``(start, end]``, ``end = at - settle_seconds``
  (0 by default), ``start = end - window``: each
  counter's value at the last scrape at or before ``end`` minus its value at the last scrape at
  or before ``start``, a series born inside the interval counted from zero, resets added back
  reset by reset, a series that stopped (its pod went away) counted up to its last sample, no
  extrapolation (:func:`canaryd.adapters.prometheus.promql.counts_query`,
  :mod:`canaryd.adapters.prometheus.counters`). Both arms cover the same interval. Consecutive
  intervals add up exactly when each window starts where the previous one ended.
- Built-in metrics are batched: one PromQL query per (namespace, kind, interval) answers every
  Rollout of the namespace (``requests`` and ``errors`` share the error-rate query); workloads
  whose counters were reset cost one more range query per selector. Both ends of the interval
  are aligned down to a grid (the largest of 15, 10, 5, 2, 1, 0.5, 0.25, 0.1 s not above
  ``min(align_seconds, window / 4)``) and answers are cached per key, so Rollouts whose ticks
  fall in the same grid cells share one query: queries per interval stay flat as Rollouts grow.
  The price is a reading up to one grid cell old.
- :meth:`PrometheusProvider.read` never raises: every failure becomes a reading with ``error``;
  an arm without series, or zero requests in both arms, is ``no_data``.
- The baseline arm (``MetricQuery.baseline_workload``, with ``spec.baseline``): the batched
  answers already hold ``<target>-baseline``'s counts (they group by ``destination_workload``),
  so the record's ``baseline`` costs no query; a baseline without series (no pods yet, no
  traffic routed to it) counts zero, never no-data: the canary and the primary decide that.
  MetricTemplates are queried per arm, so a baseline costs them one more query each.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from canaryd.adapters.prometheus import counters, promql
from canaryd.adapters.prometheus.settings import PrometheusSettings, resolve_settings
from canaryd.api.models import ArmCounts, IntervalRecord, MetricKind
from canaryd.core.types import MetricQuery, MetricReading

_ERROR_FIELD = re.compile(r'"error"\s*:\s*("(?:[^"\\]|\\.)*")')
_CACHE_ENTRIES = 512
_GRIDS = (15.0, 10.0, 5.0, 2.0, 1.0, 0.5, 0.25, 0.1)
SETTLE_SECONDS = 0.0
"""Default delay of an interval's end behind the tick (see ``PrometheusProvider``): none, as
Prometheus's own ``rule_query_offset``; a local Prometheus stores a scrape milliseconds after
its timestamp, while a delay makes every reading (and so every rollback) that much later."""

Series = list[dict[str, Any]]
"""``data.result`` of an instant query: ``[{"metric": {...}, "value": [ts, "1.5"]}, ...]``."""


class QueryError(Exception):
    """A PromQL query failed; the message is fit for a Rollout condition."""


class _NoDataError(Exception):
    """No series (or no requests) for an arm: no information."""


@dataclass(slots=True)
class _Flight:
    """A cached (or in-flight) batched answer; waiters block on ``done``."""

    done: threading.Event
    result: Any = None
    error: str | None = None


class PrometheusProvider:
    """:class:`canaryd.core.ports.MetricsProvider` over a Prometheus-compatible HTTP API.

    Parameters
    ----------
    settings:
        Address, headers, credentials, CA and timeout (see :class:`PrometheusSettings`).
    align_seconds:
        Grid for evaluation instants (capped at a quarter of the window); 0 disables alignment
        and caching of batched answers.
    lookback_seconds:
        How far before an interval's start the counter's value at the start is looked for
        (5 minutes: Prometheus's own lookback delta). A series with no sample in it is taken
        as born inside the interval; it must exceed the scrape interval, with room for
        failed scrapes.
    settle_seconds:
        Built-in counts end this long before the tick (both ends of every interval shift
        alike, so intervals still tile): a scrape is stamped with its start time but stored
        only once its answer is parsed, so a query at "now" can miss a scrape that has begun,
        and the next interval, which sees it, would start after it: its requests counted by
        neither. Counts are exact if every scrape is stored within this time; set it (like
        Prometheus's ``rule_query_offset``) for backends that ingest late (remote write).
    """

    def __init__(
        self,
        *,
        settings: PrometheusSettings | None = None,
        address: str | None = None,
        align_seconds: float = 15.0,
        lookback_seconds: float = 300.0,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        if lookback_seconds <= 0:
            raise ValueError(f"lookback_seconds must be > 0, got {lookback_seconds}")
        if settle_seconds < 0:
            raise ValueError(f"settle_seconds must be >= 0, got {settle_seconds}")
        if settings is None:
            settings = PrometheusSettings(address=address or PrometheusSettings().address)
        elif address is not None:
            raise ValueError("give either settings or address, not both")
        self.settings = settings
        self._align_seconds = align_seconds
        self._lookback_seconds = lookback_seconds
        self._settle_seconds = settle_seconds
        session = requests.Session()
        if settings.ca_file:
            session.verify = settings.ca_file
        elif settings.insecure_skip_verify:
            session.verify = False
        # One quick retry for a dropped connection or a gateway hiccup; a slow or failing
        # Prometheus must surface as an Error reading within about one timeout, not minutes.
        # A read timeout is not retried (read=False): a slow query would only get slower.
        retry = Retry(
            total=1,
            read=False,
            backoff_factor=0.1,
            status_forcelist=(502, 504),
            allowed_methods=None,
        )
        self._client = PrometheusConnect(
            url=settings.address.rstrip("/"),
            headers=settings.header_dict(),
            auth=settings.basic_auth,
            retry=retry,
            session=session,
            timeout=settings.timeout_seconds,
        )
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[Any, ...], _Flight] = OrderedDict()
        self._siblings: dict[PrometheusSettings, PrometheusProvider] = {}
        self.queries_sent = 0
        """PromQL queries sent so far (batched answers served from the cache do not count)."""

    # ---- the port -------------------------------------------------------------------------

    def read(self, queries: Sequence[MetricQuery]) -> list[MetricReading]:
        """One reading per query, in order; never raises (see the module docstring)."""
        readings: list[MetricReading] = []
        for query in queries:
            try:
                readings.append(self._read_one(query, queries))
            except _NoDataError:
                readings.append(MetricReading(metric=query.metric.name, no_data=True))
            except QueryError as exc:
                readings.append(MetricReading(metric=query.metric.name, error=str(exc)))
            except Exception as exc:  # the contract: never raise from read
                readings.append(
                    MetricReading(metric=query.metric.name, error=f"{type(exc).__name__}: {exc}")
                )
        return readings

    def is_online(self) -> bool:
        """True when the backend answers ``vector(1)``."""
        try:
            self._query("vector(1)", at=None)
        except QueryError:
            return False
        return True

    def close(self) -> None:
        self._client.close()
        for sibling in self._siblings.values():
            sibling.close()

    # ---- one query ------------------------------------------------------------------------

    def _read_one(self, query: MetricQuery, batch: Sequence[MetricQuery]) -> MetricReading:
        metric = query.metric
        if metric.kind == MetricKind.ERROR_RATE:
            canary, stable, baseline = self._error_rate(query)
        elif metric.kind == MetricKind.LATENCY:
            canary, stable, baseline = self._latency(query)
        else:
            canary, stable, baseline = self._template(query, batch)
        return MetricReading(
            metric=metric.name,
            record=IntervalRecord(
                weight=query.weight, canary=canary, stable=stable, baseline=baseline
            ),
        )

    def _error_rate(self, q: MetricQuery) -> tuple[ArmCounts, ArmCounts, ArmCounts | None]:
        parts = promql.error_rate_parts(
            namespace=q.namespace, reporter=q.reporter, error_codes=q.metric.error_codes
        )
        counts = self._counts(q, ("error-rate", q.metric.error_codes), parts)
        requests = {group[0]: n for group, n in counts["requests"].items()}
        canary_n, stable_n = _arms(requests, q, "requests")
        errors = {group[0]: n for group, n in counts["errors"].items()}
        # No error series for an arm that has requests means zero errors, not missing data.
        canary_e = min(errors.get(q.canary_workload, 0.0), canary_n)
        stable_e = min(errors.get(q.primary_workload, 0.0), stable_n)
        baseline = None
        if q.baseline_workload is not None:
            baseline_n = requests.get(q.baseline_workload, 0.0)
            baseline_e = min(errors.get(q.baseline_workload, 0.0), baseline_n)
            baseline = ArmCounts(requests=baseline_n, errors=baseline_e)
        return (
            ArmCounts(requests=canary_n, errors=canary_e),
            ArmCounts(requests=stable_n, errors=stable_e),
            baseline,
        )

    def _latency(self, q: MetricQuery) -> tuple[ArmCounts, ArmCounts, ArmCounts | None]:
        parts = promql.latency_parts(namespace=q.namespace, reporter=q.reporter)
        counts = self._counts(q, ("latency",), parts)
        buckets: dict[str, dict[str, float]] = {}
        for (workload, le), n in counts["buckets"].items():
            buckets.setdefault(workload, {})[le] = n
        arms: list[ArmCounts] = []
        for workload in (q.canary_workload, q.primary_workload):
            arm = buckets.get(workload)
            if not arm or "+Inf" not in arm:
                raise _NoDataError(f"no latency series for {workload}")
            ordered = dict(sorted(arm.items(), key=lambda item: float(item[0])))
            arms.append(ArmCounts(requests=ordered["+Inf"], latency_buckets=ordered))
        if arms[0].requests <= 0 and arms[1].requests <= 0:
            raise _NoDataError("zero requests in both arms")
        baseline = None
        if q.baseline_workload is not None:
            found = buckets.get(q.baseline_workload)
            if found and "+Inf" in found:
                ordered = dict(sorted(found.items(), key=lambda item: float(item[0])))
                baseline = ArmCounts(requests=ordered["+Inf"], latency_buckets=ordered)
            else:
                # No series yet: zero requests in every bucket the other arms report.
                les = arms[1].latency_buckets or arms[0].latency_buckets or {}
                baseline = ArmCounts(requests=0, latency_buckets=dict.fromkeys(les, 0.0))
        return arms[0], arms[1], baseline

    # ---- exact counts ---------------------------------------------------------------------

    def _bounds(self, q: MetricQuery) -> tuple[int, int]:
        """The interval ``(start, end]`` in epoch milliseconds, both ends on the same grid, so
        the next interval of a Rollout starts exactly where this one ended."""
        end_ms = round((q.at.timestamp() - self._settle_seconds) * 1000)
        start_ms = end_ms - round(q.window_seconds * 1000)
        grid = _grid_ms(self._align_seconds, q.window_seconds)
        if grid > 0:
            end_ms, start_ms = end_ms // grid * grid, start_ms // grid * grid
        if start_ms >= end_ms:
            raise QueryError(f"window of {q.window_seconds:g}s is too short to measure")
        return start_ms, end_ms

    def _counts(
        self, q: MetricQuery, kind: tuple[str, ...], parts: tuple[promql.CounterPart, ...]
    ) -> dict[str, dict[tuple[str, ...], float]]:
        """Exact counts per part and group for every workload of the namespace (batched)."""
        start_ms, end_ms = self._bounds(q)
        key = (*kind, q.namespace, q.reporter, start_ms, end_ms)
        counts: dict[str, dict[tuple[str, ...], float]] = self._batched(
            key, lambda: self._exact_counts(parts, start_ms / 1000, end_ms / 1000)
        )
        return counts

    def _exact_counts(
        self, parts: tuple[promql.CounterPart, ...], start: float, end: float
    ) -> dict[str, dict[tuple[str, ...], float]]:
        window = end - start
        text = promql.counts_query(
            parts, window_seconds=window, lookback_seconds=self._lookback_seconds
        )
        series = self._query(text, at=end)
        ends: dict[str, dict[tuple[str, ...], float]] = {part.name: {} for part in parts}
        starts: dict[str, dict[tuple[str, ...], float]] = {part.name: {} for part in parts}
        reset: set[str] = set()
        by = {part.name: part.by for part in parts}
        for s in series:
            labels = s.get("metric", {})
            tag = str(labels.get(promql.PART_LABEL, ""))
            value = _value(s)
            if math.isnan(value):
                continue
            if tag == "resets":
                reset.add(str(labels.get("destination_workload", "")))
                continue
            name, _, which = tag.partition(":")
            if name not in by or which not in ("end", "start"):
                continue
            group = tuple(str(labels.get(label, "")) for label in by[name])
            (ends if which == "end" else starts)[name][group] = value
        # Every series summed at the start is summed at the end too (the end's range holds the
        # start's), so end - start is the sum of per-series increases; >= 0 without resets.
        out = {
            name: {g: max(v - starts[name].get(g, 0.0), 0.0) for g, v in end.items()}
            for name, end in ends.items()
        }
        if reset:
            self._recount(parts, out, sorted(reset), start, end)
        return out

    def _recount(
        self,
        parts: tuple[promql.CounterPart, ...],
        out: dict[str, dict[tuple[str, ...], float]],
        workloads: list[str],
        start: float,
        end: float,
    ) -> None:
        """Counters of ``workloads`` went down (a restart): redo their counts from the raw
        samples, reset by reset (one range query per selector, these workloads only)."""
        span = end - start + self._lookback_seconds
        for part in parts:
            exact: dict[tuple[str, ...], float] = {}
            for selector in part.selectors:
                text = promql.raw_query(selector, workloads=workloads, range_seconds=span)
                for s in self._query(text, at=end):
                    labels = s.get("metric", {})
                    samples = [(float(t), float(v)) for t, v in s.get("values", [])]
                    group = tuple(str(labels.get(label, "")) for label in part.by)
                    exact[group] = exact.get(group, 0.0) + counters.interval_increase(
                        samples, start, end
                    )
            # Every part groups by destination_workload first (promql.CounterPart.by).
            kept = {g: v for g, v in out[part.name].items() if g[0] not in workloads}
            out[part.name] = {**kept, **exact}

    # ---- MetricTemplates ------------------------------------------------------------------

    def _template(
        self, q: MetricQuery, batch: Sequence[MetricQuery]
    ) -> tuple[ArmCounts, ArmCounts, ArmCounts | None]:
        role = q.metric.template_role
        if role == "value":
            c, s, b = self._template_values(q)
            baseline = ArmCounts(requests=0, value=b) if b is not None else None
            return ArmCounts(requests=0, value=c), ArmCounts(requests=0, value=s), baseline
        if role == "requests":
            c, s, b = self._template_values(q, counts=True)
            if c <= 0 and s <= 0:
                raise _NoDataError("zero requests in both arms")
            baseline = ArmCounts(requests=b) if b is not None else None
            return ArmCounts(requests=c), ArmCounts(requests=s), baseline
        partner = _requests_partner(q, batch)
        err_c, err_s, err_b = self._template_values(q, counts=True)
        req_c, req_s, req_b = self._template_values(partner, counts=True)
        if req_c <= 0 and req_s <= 0:
            raise _NoDataError("zero requests in both arms")
        baseline = None
        if q.baseline_workload is not None:
            # A baseline without series counts zero (as for the built-in metrics).
            n = req_b or 0.0
            baseline = ArmCounts(requests=n, errors=min(err_b or 0.0, n))
        return (
            ArmCounts(requests=req_c, errors=min(err_c, req_c)),
            ArmCounts(requests=req_s, errors=min(err_s, req_s)),
            baseline,
        )

    def _template_values(
        self, q: MetricQuery, *, counts: bool = False
    ) -> tuple[float, float, float | None]:
        """The template's single value for the canary, the primary and (with a baseline
        workload) the baseline, at the same instant. The baseline's is None when the query
        has no baseline workload; 0 for counts (None for a value) when it has no series."""
        if q.template is None:
            raise QueryError(f"metric {q.metric.name!r}: MetricTemplate not resolved")
        at = self._instant(q.at, q.window_seconds)
        backend = self._for_template(q)
        values: list[float] = []
        arms = [q.canary_workload, q.primary_workload]
        if q.baseline_workload is not None:
            arms.append(q.baseline_workload)
        for index, workload in enumerate(arms):
            baseline_arm = index == 2
            try:
                text = promql.render_template(q.template.query, template_vars(q, workload))
            except promql.TemplateError as exc:
                raise QueryError(f"metric {q.metric.name!r}: {exc}") from None
            series = backend._query(text, at=at)
            if not series and baseline_arm:
                return values[0], values[1], (0.0 if counts else None)
            if not series:
                raise _NoDataError(f"no series for {workload}")
            if len(series) > 1:
                labels = "; ".join(_labels(s.get("metric", {})) for s in series[:5])
                raise QueryError(
                    f"metric {q.metric.name!r}: query returned {len(series)} series for "
                    f"workload {workload!r}, expected exactly 1 (aggregate it, e.g. sum(...)): "
                    f"{labels}"
                )
            value = _value(series[0])
            if math.isnan(value) and baseline_arm:
                return values[0], values[1], (0.0 if counts else None)
            if math.isnan(value):
                raise _NoDataError(f"NaN for {workload}")
            if counts:
                if math.isinf(value):
                    raise QueryError(f"metric {q.metric.name!r}: infinite count for {workload}")
                value = max(value, 0.0)
            values.append(value)
        return values[0], values[1], (values[2] if len(values) > 2 else None)

    def _for_template(self, q: MetricQuery) -> PrometheusProvider:
        """The provider a MetricTemplate's own ``prometheus`` settings ask for (address,
        headers, timeout); credentials are inherited from this provider, since the template's
        Secret references are not resolved here."""
        spec = q.template.prometheus if q.template is not None else None
        if spec is None:
            return self
        settings = resolve_settings(spec, self.settings)
        if settings == self.settings:
            return self
        with self._lock:
            sibling = self._siblings.get(settings)
            if sibling is None:
                sibling = PrometheusProvider(settings=settings, align_seconds=0)
                self._siblings[settings] = sibling
            return sibling

    # ---- batching and HTTP ----------------------------------------------------------------

    def _instant(self, at: datetime, window_seconds: float) -> float:
        ts = at.timestamp()
        grid = _grid_ms(self._align_seconds, window_seconds)
        return round(ts * 1000) // grid * grid / 1000 if grid > 0 else ts

    def _batched(self, key: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        """Compute once per key; concurrent and later callers share the answer.

        Errors are not cached: the next caller retries."""
        if self._align_seconds <= 0:
            return compute()
        with self._lock:
            flight = self._cache.get(key)
            owner = flight is None
            if flight is None:
                flight = _Flight(done=threading.Event())
                self._cache[key] = flight
                while len(self._cache) > _CACHE_ENTRIES:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(key)
        if owner:
            try:
                flight.result = compute()
            except Exception as exc:  # waiters must see the failure too, never a None result
                flight.error = (
                    str(exc) if isinstance(exc, QueryError) else f"{type(exc).__name__}: {exc}"
                )
                with self._lock:
                    if self._cache.get(key) is flight:
                        del self._cache[key]
            finally:
                flight.done.set()
        elif not flight.done.wait(self.settings.timeout_seconds * 3):
            raise QueryError(f"timed out waiting for a shared query: {key}")
        if flight.error is not None:
            raise QueryError(flight.error)
        return flight.result

    def _query(self, text: str, *, at: float | None) -> Series:
        params: dict[str, str] = {"timeout": f"{self.settings.timeout_seconds:g}s"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        with self._lock:
            self.queries_sent += 1
        where = self.settings.address
        try:
            result: Series = self._client.custom_query(text, params=params)
        except PrometheusApiClientException as exc:
            raise QueryError(f"Prometheus rejected the query {text!r}: {_api_error(exc)}") from None
        except requests.RequestException as exc:
            if isinstance(exc, requests.Timeout) or "timed out" in str(exc):
                raise QueryError(
                    f"Prometheus at {where} timed out after {self.settings.timeout_seconds:g}s"
                ) from None
            raise QueryError(f"Prometheus at {where} unreachable: {_short(exc)}") from None
        except ValueError as exc:  # a 200 answer that is not Prometheus JSON
            raise QueryError(f"Prometheus at {where} sent an invalid answer: {exc}") from None
        return result


# ---- helpers -------------------------------------------------------------------------------


def template_vars(q: MetricQuery, workload: str) -> dict[str, str]:
    """Variables a MetricTemplate may use. User variables cannot shadow the built-ins."""
    builtins = {
        "namespace": q.namespace,
        "rollout": q.rollout,
        "target": q.canary_workload,
        "canary": q.canary_workload,
        "primary": q.primary_workload,
        "workload": workload,
        "interval": promql.duration(q.window_seconds),
        "reporter": q.reporter,
    }
    return {**q.metric.variables, **builtins}


def _requests_partner(q: MetricQuery, batch: Sequence[MetricQuery]) -> MetricQuery:
    """The ``templateRole: requests`` metric paired with an ``errors`` metric: the one named
    by the variable ``requestsMetric`` or else the only one of the same Rollout."""
    candidates = [
        other
        for other in batch
        if other.metric.template_role == "requests"
        and other.namespace == q.namespace
        and other.rollout == q.rollout
    ]
    wanted = q.metric.variables.get("requestsMetric")
    if wanted is not None:
        candidates = [c for c in candidates if c.metric.name == wanted]
    if len(candidates) != 1:
        named = f" named {wanted!r}" if wanted else ""
        raise QueryError(
            f"metric {q.metric.name!r} (templateRole errors) needs exactly one templateRole "
            f"requests metric{named} in the same analysis, found {len(candidates)}"
        )
    return candidates[0]


def _arms(values: Mapping[str, float], q: MetricQuery, what: str) -> tuple[float, float]:
    if q.canary_workload not in values or q.primary_workload not in values:
        missing = [w for w in (q.canary_workload, q.primary_workload) if w not in values]
        raise _NoDataError(f"no {what} series for {', '.join(missing)}")
    canary, stable = values[q.canary_workload], values[q.primary_workload]
    if canary <= 0 and stable <= 0:
        raise _NoDataError("zero requests in both arms")
    return canary, stable


def _value(series: Mapping[str, Any]) -> float:
    return float(series["value"][1])


def _grid_ms(align_seconds: float, window_seconds: float) -> int:
    """The alignment grid in milliseconds: the largest of :data:`_GRIDS` not above
    ``align_seconds`` nor a quarter of the window (0: no alignment). A fixed ladder, not
    ``window / 4`` itself, so that windows a few milliseconds apart (ticks run a little late)
    use the same grid and consecutive intervals share their boundary exactly."""
    limit = min(align_seconds, window_seconds / 4)
    return next((round(g * 1000) for g in _GRIDS if g <= limit), 0)


def _labels(metric: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"


def _api_error(exc: PrometheusApiClientException) -> str:
    """Prometheus's own error message out of the client's exception text."""
    text = str(exc)
    match = _ERROR_FIELD.search(text.replace("\\\\", "\\"))
    if match is not None:
        try:
            message: str = json.loads(match.group(1))
            return message
        except ValueError:
            pass
    return text


def _short(exc: Exception) -> str:
    text = str(exc)
    reason = re.search(r"\[SSL: [A-Z_]+\][^'\")]*|\[Errno -?\d+\] [^'\")]+", text)
    return reason.group(0) if reason else text[:200]
