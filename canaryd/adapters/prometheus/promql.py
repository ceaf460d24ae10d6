"""PromQL text: safe literals, the batched Istio queries, and MetricTemplate rendering (pure).

Assumptions:

- Istio's standard metrics, labelled as Istio's telemetry v2 writes them
  (``destination_workload``, ``destination_workload_namespace``, ``reporter``, ``response_code``,
  ``grpc_response_status``, ``le``).
- Every built-in query is *batched*: it answers all workloads of one namespace at once, grouped
  ``by (destination_workload)``, so the number of queries does not grow with the number of
  Rollouts.
- Template placeholders are ``{{ name }}``. A value is escaped for the syntactic context the
  placeholder sits in (see :func:`render_template`), so no value can change the query's shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

REQUESTS_METRIC = "istio_requests_total"
DURATION_BUCKET_METRIC = "istio_request_duration_milliseconds_bucket"

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Outside string literals a value may only be a number, a duration or an identifier: none of
# these characters can start a new operator, selector, string or comment.
_BARE_SAFE = re.compile(r"^[A-Za-z0-9_:.]+$")


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


def _selector(namespace: str, reporter: str, extra: str = "") -> str:
    base = (
        f"reporter={string_literal(reporter)},"
        f"destination_workload_namespace={string_literal(namespace)}"
    )
    return "{" + base + (("," + extra) if extra else "") + "}"


def requests_query(*, namespace: str, reporter: str, window_seconds: float) -> str:
    """Requests per workload of ``namespace`` over the window (``increase``)."""
    sel = _selector(namespace, reporter)
    return (
        f"sum by (destination_workload) "
        f"(increase({REQUESTS_METRIC}{sel}[{duration(window_seconds)}]))"
    )


def errors_query(*, namespace: str, reporter: str, window_seconds: float, error_codes: str) -> str:
    """Errors per workload: HTTP ``response_code`` matching ``error_codes`` (anchored regex, as
    in PromQL), plus gRPC calls whose HTTP code is not an error but whose
    ``grpc_response_status`` is set and non-zero. The two sets are disjoint (they differ in
    ``response_code``), so ``or`` is their exact union before the sum."""
    win = duration(window_seconds)
    codes = string_literal(error_codes)
    http = _selector(namespace, reporter, f"response_code=~{codes}")
    grpc = _selector(namespace, reporter, f'response_code!~{codes},grpc_response_status!~"|0"')
    return (
        f"sum by (destination_workload) ("
        f"increase({REQUESTS_METRIC}{http}[{win}]) or "
        f"increase({REQUESTS_METRIC}{grpc}[{win}]))"
    )


def latency_query(*, namespace: str, reporter: str, window_seconds: float) -> str:
    """Cumulative latency bucket counts per workload and ``le`` over the window."""
    sel = _selector(namespace, reporter)
    return (
        f"sum by (destination_workload, le) "
        f"(increase({DURATION_BUCKET_METRIC}{sel}[{duration(window_seconds)}]))"
    )


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
        if not _BARE_SAFE.match(value):
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
