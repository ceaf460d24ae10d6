"""The Prometheus metrics provider: Istio counts for canary and stable, never a verdict.

Assumptions and behaviour:

- Counts come from ``increase(...[window])`` evaluated at one instant for both arms, so both
  arms always cover the same window. Prometheus handles counter resets (pod restarts) inside
  ``increase``; its extrapolated, non-integer increases are kept as floats, clamped at >= 0, and
  an arm's errors are clamped to its requests (separate series extrapolate separately).
- Built-in metrics are batched: one PromQL query per (namespace, kind, window, instant) answers
  every Rollout of the namespace. The evaluation instant is aligned down to a grid of
  ``min(align_seconds, window / 4)`` seconds, and answers are cached per key, so Rollouts whose
  ticks fall in the same grid cell share one query: queries per interval stay flat as Rollouts
  grow. The price is a reading up to one grid cell old.
- :meth:`PrometheusProvider.read` never raises: every failure becomes a reading with ``error``;
  an arm without series, or zero requests in both arms, is ``no_data``.
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

from canaryd.adapters.prometheus import promql
from canaryd.adapters.prometheus.settings import PrometheusSettings, resolve_settings
from canaryd.api.models import ArmCounts, IntervalRecord, MetricKind
from canaryd.core.types import MetricQuery, MetricReading

_ERROR_FIELD = re.compile(r'"error"\s*:\s*("(?:[^"\\]|\\.)*")')
_CACHE_ENTRIES = 512

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
    """

    def __init__(
        self,
        *,
        settings: PrometheusSettings | None = None,
        address: str | None = None,
        align_seconds: float = 15.0,
    ) -> None:
        if settings is None:
            settings = PrometheusSettings(address=address or PrometheusSettings().address)
        elif address is not None:
            raise ValueError("give either settings or address, not both")
        self.settings = settings
        self._align_seconds = align_seconds
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
            canary, stable = self._error_rate(query)
        elif metric.kind == MetricKind.LATENCY:
            canary, stable = self._latency(query)
        else:
            canary, stable = self._template(query, batch)
        return MetricReading(
            metric=metric.name,
            record=IntervalRecord(weight=query.weight, canary=canary, stable=stable),
        )

    def _error_rate(self, q: MetricQuery) -> tuple[ArmCounts, ArmCounts]:
        at = self._instant(q.at, q.window_seconds)
        ns, rep, win = q.namespace, q.reporter, q.window_seconds
        reqs = self._batched(
            ("requests", q.namespace, q.reporter, q.window_seconds, at),
            promql.requests_query(namespace=ns, reporter=rep, window_seconds=win),
            at,
            _by_workload,
        )
        canary_n, stable_n = _arms(reqs, q, "requests")
        errs = self._batched(
            ("errors", q.metric.error_codes, q.namespace, q.reporter, q.window_seconds, at),
            promql.errors_query(
                namespace=ns, reporter=rep, window_seconds=win, error_codes=q.metric.error_codes
            ),
            at,
            _by_workload,
        )
        # No error series for an arm that has requests means zero errors, not missing data.
        canary_e = min(errs.get(q.canary_workload, 0.0), canary_n)
        stable_e = min(errs.get(q.primary_workload, 0.0), stable_n)
        return (
            ArmCounts(requests=canary_n, errors=canary_e),
            ArmCounts(requests=stable_n, errors=stable_e),
        )

    def _latency(self, q: MetricQuery) -> tuple[ArmCounts, ArmCounts]:
        at = self._instant(q.at, q.window_seconds)
        text = promql.latency_query(
            namespace=q.namespace, reporter=q.reporter, window_seconds=q.window_seconds
        )
        buckets = self._batched(
            ("latency", q.namespace, q.reporter, q.window_seconds, at),
            text,
            at,
            _buckets_by_workload,
        )
        arms: list[ArmCounts] = []
        for workload in (q.canary_workload, q.primary_workload):
            arm = buckets.get(workload)
            if not arm or "+Inf" not in arm:
                raise _NoDataError(f"no latency series for {workload}")
            arms.append(ArmCounts(requests=arm["+Inf"], latency_buckets=arm))
        if arms[0].requests <= 0 and arms[1].requests <= 0:
            raise _NoDataError("zero requests in both arms")
        return arms[0], arms[1]

    # ---- MetricTemplates ------------------------------------------------------------------

    def _template(
        self, q: MetricQuery, batch: Sequence[MetricQuery]
    ) -> tuple[ArmCounts, ArmCounts]:
        role = q.metric.template_role
        if role == "value":
            c, s = self._template_values(q)
            return ArmCounts(requests=0, value=c), ArmCounts(requests=0, value=s)
        if role == "requests":
            c, s = self._template_values(q, counts=True)
            if c <= 0 and s <= 0:
                raise _NoDataError("zero requests in both arms")
            return ArmCounts(requests=c), ArmCounts(requests=s)
        partner = _requests_partner(q, batch)
        err_c, err_s = self._template_values(q, counts=True)
        req_c, req_s = self._template_values(partner, counts=True)
        if req_c <= 0 and req_s <= 0:
            raise _NoDataError("zero requests in both arms")
        return (
            ArmCounts(requests=req_c, errors=min(err_c, req_c)),
            ArmCounts(requests=req_s, errors=min(err_s, req_s)),
        )

    def _template_values(self, q: MetricQuery, *, counts: bool = False) -> tuple[float, float]:
        """The template's single value for the canary and the primary (same instant)."""
        if q.template is None:
            raise QueryError(f"metric {q.metric.name!r}: MetricTemplate not resolved")
        at = self._instant(q.at, q.window_seconds)
        backend = self._for_template(q)
        values: list[float] = []
        for workload in (q.canary_workload, q.primary_workload):
            try:
                text = promql.render_template(q.template.query, template_vars(q, workload))
            except promql.TemplateError as exc:
                raise QueryError(f"metric {q.metric.name!r}: {exc}") from None
            series = backend._query(text, at=at)
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
            if math.isnan(value):
                raise _NoDataError(f"NaN for {workload}")
            if counts:
                if math.isinf(value):
                    raise QueryError(f"metric {q.metric.name!r}: infinite count for {workload}")
                value = max(value, 0.0)
            values.append(value)
        return values[0], values[1]

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
        grid = min(self._align_seconds, window_seconds / 4)
        return math.floor(ts / grid) * grid if grid > 0 else ts

    def _batched(
        self,
        key: tuple[Any, ...],
        text: str,
        at: float,
        parse: Callable[[Series], Any],
    ) -> Any:
        """Answer ``text`` at ``at`` once per key; concurrent and later callers share it.

        Errors are not cached: the next caller retries."""
        if self._align_seconds <= 0:
            return parse(self._query(text, at=at))
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
                flight.result = parse(self._query(text, at=at))
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
            raise QueryError(f"timed out waiting for a shared query: {text}")
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


def _by_workload(result: Series) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in result:
        workload = s.get("metric", {}).get("destination_workload")
        value = _value(s)
        if workload is not None and not math.isnan(value):
            out[workload] = max(value, 0.0)
    return out


def _buckets_by_workload(result: Series) -> dict[str, dict[str, float]]:
    raw: dict[str, dict[str, float]] = {}
    for s in result:
        labels = s.get("metric", {})
        workload, le = labels.get("destination_workload"), labels.get("le")
        value = _value(s)
        if workload is None or le is None or math.isnan(value):
            continue
        raw.setdefault(workload, {})[le] = max(value, 0.0)
    # Each bucket series is extrapolated on its own; restore cumulativeness (running max).
    out: dict[str, dict[str, float]] = {}
    for workload, buckets in raw.items():
        running = 0.0
        fixed: dict[str, float] = {}
        for le in sorted(buckets, key=float):
            running = max(running, buckets[le])
            fixed[le] = running
        out[workload] = fixed
    return out


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
