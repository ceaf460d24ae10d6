"""PromQL text: safe literals, the batched Istio queries, and MetricTemplate rendering (pure).

Assumptions:

- Istio's standard metrics, labelled as Istio's telemetry v2 writes them
  (``destination_workload``, ``destination_workload_namespace``, ``reporter``, ``response_code``,
  ``grpc_response_status``, ``le``).
- Every built-in query is *batched*: it answers all workloads of one namespace at once, grouped
  ``by (destination_workload)``, so the number of queries does not grow with the number of
  Rollouts. The counts query (:func:`counts_query`) returns counter values at the interval's
  two instants, never ``increase()``: the provider does the exact arithmetic (see
  docs/metrics.md, "Exact counts").
- Template placeholders are ``{{ name }}``. A value is escaped for the syntactic context the
  placeholder sits in (see :func:`render_template`), so no value can change the query's shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

REQUESTS_METRIC = "istio_requests_total"
DURATION_BUCKET_METRIC = "istio_request_duration_milliseconds_bucket"

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Outside string literals a value may only be a number, a duration or an identifier: none of
# these characters can start a new operator, selector, string or comment. fullmatch, never
# ``^...$``: Python's ``$`` also matches before a trailing newline, and a newline outside a
# string could end a ``#`` comment the template author wrote around the placeholder.
_BARE_SAFE = re.compile(r"[A-Za-z0-9_:.]+")


class TemplateError(ValueError):
    """A MetricTemplate cannot be rendered (unknown variable, unsafe value)."""


def string_literal(value: str) -> str:
    """``value`` as a double-quoted PromQL string literal (Go escaping rules)."""
    return '"' + _escape(value, '"') + '"'


def _escape(value: str, quote: str) -> str:
    out = value.replace("\\", "\\\\").replace(quote, "\\" + quote)
    return out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t").replace("\0", "")


def duration(seconds: float) -> str:
    """A PromQL range duration: whole seconds when possible, else milliseconds."""
    ms = round(seconds * 1000)
    if ms <= 0:
        raise ValueError(f"window must be positive, got {seconds!r} s")
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _selector(metric: str, namespace: str, reporter: str, extra: str = "") -> str:
    base = (
        f"reporter={string_literal(reporter)},"
        f"destination_workload_namespace={string_literal(namespace)}"
    )
    return metric + "{" + base + (("," + extra) if extra else "") + "}"


@dataclass(frozen=True, slots=True)
class CounterPart:
    """One count the provider needs per workload: the union of ``selectors`` (disjoint series
    sets of counters), summed ``by`` these labels."""

    name: str
    selectors: tuple[str, ...]
    by: tuple[str, ...] = ("destination_workload",)


def error_rate_parts(
    *, namespace: str, reporter: str, error_codes: str
) -> tuple[CounterPart, CounterPart]:
    """``requests`` (every response) and ``errors``: HTTP ``response_code`` matching
    ``error_codes`` (anchored regex, as in PromQL), plus gRPC calls whose HTTP code is not an
    error but whose ``grpc_response_status`` is set and non-zero. The two error selectors are
    disjoint (they differ in ``response_code``), so their union counts each series once."""
    codes = string_literal(error_codes)
    return (
        CounterPart("requests", (_selector(REQUESTS_METRIC, namespace, reporter),)),
        CounterPart(
            "errors",
            (
                _selector(REQUESTS_METRIC, namespace, reporter, f"response_code=~{codes}"),
                _selector(
                    REQUESTS_METRIC,
                    namespace,
                    reporter,
                    f'response_code!~{codes},grpc_response_status!~"|0"',
                ),
            ),
        ),
    )


def latency_parts(*, namespace: str, reporter: str) -> tuple[CounterPart]:
    """Cumulative latency bucket counts per workload and ``le``."""
    return (
        CounterPart(
            "buckets",
            (_selector(DURATION_BUCKET_METRIC, namespace, reporter),),
            by=("destination_workload", "le"),
        ),
    )


PART_LABEL = "canaryd_part"
"""Label the batched counts query adds to tell its parts apart."""


def _tag(expr: str, tag: str) -> str:
    return f'label_replace({expr}, "{PART_LABEL}", "{tag}", "", "")'


def counts_query(
    parts: tuple[CounterPart, ...], *, window_seconds: float, lookback_seconds: float
) -> str:
    """One instant query, evaluated at the interval's end, that answers every workload of the
    namespace with, per part and group: ``<part>:end``, the sum over its series of the last
    sample in ``[start - lookback, end]``; ``<part>:start``, the sum of the last sample in
    ``[start - lookback, start]`` (``offset`` by the window); and ``resets``, the workloads
    whose counters went down anywhere in ``[start - lookback, end]``.

    Every series of the start sum is also in the end sum, so ``end - start`` is the exact sum of
    the per-series increases when no counter was reset: a series born inside the interval
    contributes its whole value (counted from zero), a series that stopped (its pod went away)
    contributes up to its last sample. Workloads listed under ``resets`` need the raw samples
    (:func:`raw_query`)."""
    win = duration(window_seconds)
    look = duration(lookback_seconds)
    wide = duration(window_seconds + lookback_seconds)
    terms: list[str] = []
    for part in parts:
        by = ", ".join(part.by)
        end = " or ".join(f"last_over_time({s}[{wide}])" for s in part.selectors)
        start = " or ".join(f"last_over_time({s}[{look}] offset {win})" for s in part.selectors)
        terms.append(_tag(f"sum by ({by}) ({end})", f"{part.name}:end"))
        terms.append(_tag(f"sum by ({by}) ({start})", f"{part.name}:start"))
    # Resets of any series of the first part's first selector (every series of the kind).
    everything = parts[0].selectors[0]
    terms.append(
        _tag(f"sum by (destination_workload) (resets({everything}[{wide}])) > 0", "resets")
    )
    return " or ".join(terms)


def regex_literal(values: list[str]) -> str:
    """A PromQL string literal for an RE2 regex matching exactly one of ``values``."""
    alternatives = ("".join(c if c.isalnum() or c == "_" else "\\" + c for c in v) for v in values)
    return string_literal("|".join(alternatives))


def raw_query(selector: str, *, workloads: list[str], range_seconds: float) -> str:
    """Every raw sample of ``selector``'s series of ``workloads`` in the last ``range_seconds``
    (a range selector: the answer is a matrix of the samples as scraped)."""
    if not selector.endswith("}"):
        raise ValueError(f"not a selector with matchers: {selector!r}")
    matcher = f"destination_workload=~{regex_literal(workloads)}"
    return f"{selector[:-1]},{matcher}}}[{duration(range_seconds)}]"


def render_template(query: str, variables: Mapping[str, str]) -> str:
    """Substitute ``{{ name }}`` placeholders in ``query`` with escaped values.

    The template is scanned as PromQL: a placeholder inside a ``"..."`` or ``'...'`` string
    literal gets its value escaped for that quote; inside a raw ```...``` string a value with a
    backtick is refused (raw strings have no escapes); outside any string the value must be a
    number, duration or identifier (``[A-Za-z0-9_:.]+``), e.g. ``[{{ interval }}]``.

    Raises
    ------
    TemplateError
        Naming the unknown variable, or the variable whose value is unsafe where it is used.
    """
    out: list[str] = []
    quote: str | None = None
    i = 0
    n = len(query)
    while i < n:
        match = _PLACEHOLDER.match(query, i)
        if match is not None:
            name = match.group(1)
            if name not in variables:
                known = ", ".join(sorted(variables))
                raise TemplateError(f"unknown template variable {name!r} (known: {known})")
            out.append(_substitute(name, variables[name], quote))
            i = match.end()
            continue
        ch = query[i]
        out.append(ch)
        if quote is None:
            if ch in "\"'`":
                quote = ch
            elif ch == "#":  # a comment runs to the end of the line: copy it verbatim
                end = query.find("\n", i)
                end = n if end < 0 else end
                out.append(query[i + 1 : end])
                i = end
                continue
        elif ch == "\\" and quote != "`" and i + 1 < n:
            out.append(query[i + 1])
            i += 2
            continue
        elif ch == quote:
            quote = None
        i += 1
    return "".join(out)


def _substitute(name: str, value: str, quote: str | None) -> str:
    if quote is None:
        if not _BARE_SAFE.fullmatch(value):
            raise TemplateError(
                f"variable {name!r} is used outside a string literal, so its value must be a "
                f"number, duration or identifier; got {value!r}"
            )
        return value
    if quote == "`":
        if "`" in value:
            raise TemplateError(f"variable {name!r} contains a backtick inside a raw string")
        return value
    return _escape(value, quote)


def template_variables(query: str) -> list[str]:
    """Names of the placeholders used in ``query``, in order of first use."""
    seen: dict[str, None] = {}
    for match in _PLACEHOLDER.finditer(query):
        seen.setdefault(match.group(1), None)
    return list(seen)
