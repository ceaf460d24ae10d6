"""``canaryd analyze``: judge recorded rollouts offline (the judge's public contract).

Input: one JSON object, or JSON Lines of many, each a recorded rollout::

    {"analysis": {...same fields as a Rollout's spec.analysis, optional...},
     "intervals": [{"weight": 5,
                    "canary": {"requests": 300, "errors": 2,
                               "latency": {"25": 120, ..., "+Inf": 300}},
                    "stable": {"requests": 5700, "errors": 31},
                    "baseline": {"requests": 300, "errors": 1}},
                   ...]}

``baseline`` (optional) is the baseline arm (``spec.baseline``: the stable version deployed
fresh beside the canary), with the same fields as ``canary``; with it the judge calibrates its
noise handling from baseline vs stable (docs/judge.md, "The baseline arm").

``latency`` (optional) holds cumulative bucket counts keyed by ``le`` in ms. Template metrics
read their per-interval data from ``"metrics": {"<name>": {"canary": {...}, "stable": {...}}}``
inside an interval (``value`` for value templates, ``requests``/``errors`` for count templates).

Output: one JSON object per input line: ``decision`` (rollback / promote / inconclusive),
``interval`` (0-based, or null), ``outcome``, ``reason`` and per-metric ``metrics`` evidence.
A bad line gets ``{"line": n, "error": ...}`` on stdout and a message on stderr naming the line
and field; the other lines are still judged and the exit code is 1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections.abc import Iterator
from typing import IO, Any

from pydantic import ValidationError

from canaryd.api.models import AnalysisSpec, ArmCounts, IntervalRecord, MetricKind
from canaryd.core.judges import replay


class InputError(ValueError):
    """A recorded rollout that cannot be judged; the message names the field."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file",
        nargs="?",
        default="-",
        help="JSON or JSON Lines file of recorded rollouts (- = stdin)",
    )
    parser.add_argument("--output", "-o", default="-", help="where to write results (- = stdout)")
    parser.add_argument("--summary", action="store_true", help="print decision counts to stderr")


def main(args: argparse.Namespace) -> int:
    # Bytes, not text: a line that is not UTF-8 is that line's error, not a traceback.
    if args.file == "-":
        data: str | bytes = (getattr(sys.stdin, "buffer", None) or sys.stdin).read()
    else:
        try:
            with open(args.file, "rb") as source:
                data = source.read()
        except OSError as exc:
            print(f"{args.file}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    sink: IO[str] = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        return run(data, sink, sys.stderr, summary=args.summary)
    finally:
        if sink is not sys.stdout:
            sink.close()


def run(text: str | bytes, out: IO[str], err: IO[str], *, summary: bool = False) -> int:
    """Judge every document in ``text``; write one result line each. Returns the exit code.

    Nothing a line holds stops the others: a bad line gets ``line N: field: message`` on
    ``err`` and ``{"line": N, "error": ...}`` on ``out``, and the exit code is 1."""
    failures = 0
    counts: dict[str, int] = {}
    for line_no, doc in _documents(text):
        try:
            result = {"line": line_no, **analyze_document(doc)}
            line = json.dumps(result, allow_nan=False)
            counts[result["decision"]] = counts.get(result["decision"], 0) + 1
        except InputError as exc:
            failures += 1
            message = _bounded(str(exc))
            print(f"line {line_no}: {message}", file=err)
            line = json.dumps({"line": line_no, "error": message})
        except Exception as exc:  # a judge bug must not cost the other lines their verdict
            failures += 1
            message = _bounded(f"<judge>: {type(exc).__name__}: {exc}")
            print(f"line {line_no}: {message}", file=err)
            line = json.dumps({"line": line_no, "error": message})
        out.write(line + "\n")
    if summary:
        print(json.dumps({"decisions": counts, "errors": failures}), file=err)
    return 1 if failures else 0


MAX_MESSAGE = 500
"""Longest error message printed for one line (inputs can be megabytes)."""


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    return f"{message[:MAX_MESSAGE]}... ({len(message) - MAX_MESSAGE} more characters)"


def _show(value: Any) -> str:
    """A value quoted in a message: huge integers by their size (``str()`` of a 5,000-digit
    integer raises), everything else as bounded JSON."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"an integer of about {digits} digits"
    try:
        text = json.dumps(value)
    except (ValueError, TypeError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def _parse(text: str) -> Any:
    """``json.loads``, with every way it can fail (syntax, over-long integers, deep nesting)
    turned into a :class:`_Broken` that names the problem."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        return _Broken(f"invalid JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return _Broken("invalid JSON: nested too deeply")
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        return _Broken(f"invalid JSON: {exc}")


def _documents(text: str | bytes) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) for a single JSON document or for JSON Lines."""
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    stripped = raw.strip()
    if not stripped:
        return
    try:
        whole = _parse(stripped.decode("utf-8"))
    except UnicodeDecodeError:
        whole = None
    del stripped  # a copy of the input: not needed while the document is judged
    if isinstance(whole, dict):
        yield 1, whole
        return
    for i, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            decoded = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield i, _Broken(f"invalid input: not UTF-8 (byte {exc.start + 1} of the line)")
            continue
        yield i, _parse(decoded)


class _Broken:
    def __init__(self, message: str) -> None:
        self.message = message


def analyze_document(doc: Any) -> dict[str, Any]:
    """Judge one recorded rollout; raises :class:`InputError` naming the bad field.

    ``doc["intervals"]`` is consumed (emptied to None entries) as it is read."""
    if isinstance(doc, _Broken):
        raise InputError(doc.message)
    if not isinstance(doc, dict):
        raise InputError(f"expected a JSON object, got {type(doc).__name__}")
    unknown = sorted(set(doc) - {"analysis", "intervals", "name"})
    if unknown:
        raise InputError(f"unknown field(s) {unknown}; allowed: analysis, intervals, name")
    try:
        analysis = AnalysisSpec.model_validate(doc.get("analysis") or {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"analysis.{where}: {first['msg']}") from None
    intervals = doc.get("intervals")
    if not isinstance(intervals, list):
        raise InputError("intervals: missing or not a list")
    if "analysis" not in doc and not _any_latency(doc.get("intervals")):
        # A Rollout's defaults judge latency too; a recording without buckets cannot feed it.
        analysis = analysis.model_copy(
            update={"metrics": [m for m in analysis.metrics if m.kind != MetricKind.LATENCY]}
        )
    names = {m.name for m in analysis.metrics}
    histories: dict[str, list[IntervalRecord]] = {m.name: [] for m in analysis.metrics}
    for i, raw in enumerate(intervals):
        # Each parsed interval is dropped once read: a long timeline is held once (as
        # records), not twice (as parsed JSON and records).
        intervals[i] = None
        where = f"intervals[{i}]"
        if not isinstance(raw, dict):
            raise InputError(f"{where}: expected an object")
        extra = sorted(set(raw) - {"weight", "canary", "stable", "baseline", "metrics"})
        if extra:
            raise InputError(
                f"{where}: unknown field(s) {extra}; allowed: baseline, canary, metrics, stable, "
                "weight"
            )
        canary = _arm(raw.get("canary"), f"{where}.canary")
        stable = _arm(raw.get("stable"), f"{where}.stable")
        baseline = (
            _arm(raw["baseline"], f"{where}.baseline") if raw.get("baseline") is not None else None
        )
        weight = _weight(raw.get("weight"), canary, stable, f"{where}.weight", baseline)
        per_metric = raw.get("metrics") or {}
        if not isinstance(per_metric, dict):
            raise InputError(f"{where}.metrics: expected an object of metric name -> arms")
        for name in per_metric:
            if name not in names:
                raise InputError(
                    f"{where}.metrics: unknown metric {name!r}; known: {sorted(names)}"
                )
        shared: IntervalRecord | None = None
        for spec in analysis.metrics:
            if spec.kind == MetricKind.TEMPLATE:
                data = per_metric.get(spec.name)
                if data is None:
                    rec = IntervalRecord(
                        weight=weight, canary=ArmCounts(requests=0), stable=ArmCounts(requests=0)
                    )
                else:
                    mw = f"{where}.metrics.{spec.name}"
                    if not isinstance(data, dict):
                        raise InputError(f"{mw}: expected an object with canary and stable")
                    rec = IntervalRecord(
                        weight=weight,
                        canary=_arm(data.get("canary"), f"{mw}.canary", template=True),
                        stable=_arm(data.get("stable"), f"{mw}.stable", template=True),
                    )
            else:
                # One record for every metric judged on the interval's own arms.
                if shared is None:
                    shared = IntervalRecord(
                        weight=weight, canary=canary, stable=stable, baseline=baseline
                    )
                rec = shared
            histories[spec.name].append(rec)
    try:
        result = replay(analysis, histories)
    except ValueError as exc:
        raise InputError(f"intervals: {exc}") from None
    return {
        **({"name": doc["name"]} if "name" in doc else {}),
        "decision": result.decision,
        "interval": result.interval,
        "outcome": result.verdict.outcome.value,
        "reason": result.verdict.reason,
        "metrics": [
            e.model_dump(mode="json", by_alias=True, exclude={"history"})
            for e in result.verdict.metrics
        ],
    }


def _any_latency(intervals: Any) -> bool:
    if not isinstance(intervals, list):
        return False
    return any(
        isinstance(iv, dict)
        and any(
            isinstance(iv.get(arm), dict) and iv[arm].get("latency")
            for arm in ("canary", "stable", "baseline")
        )
        for iv in intervals
    )


def _float(value: Any, where: str) -> float:
    """A JSON number as a float; InputError for non-numbers and integers beyond a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{where}: expected a number, got {_show(value)}")
    try:
        return float(value)
    except OverflowError:
        raise InputError(f"{where}: number out of range, got {_show(value)}") from None


def _number(value: Any, where: str) -> float:
    x = _float(value, where)
    if not math.isfinite(x) or x < 0:
        raise InputError(f"{where}: must be a finite number >= 0, got {_show(value)}")
    return x


def _arm(raw: Any, where: str, *, template: bool = False) -> ArmCounts:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: missing or not an object")
    allowed = {"requests", "errors", "latency", "value"}
    extra = sorted(set(raw) - allowed)
    if extra:
        raise InputError(f"{where}: unknown field(s) {extra}; allowed: {sorted(allowed)}")
    if template and "value" in raw and "requests" not in raw:
        value = _float(raw["value"], f"{where}.value")
        if not math.isfinite(value):
            raise InputError(f"{where}.value: expected a finite number, got {_show(raw['value'])}")
        return ArmCounts(requests=0, value=value)
    if "requests" not in raw:
        raise InputError(f"{where}.requests: missing")
    requests = _number(raw["requests"], f"{where}.requests")
    if "errors" not in raw:
        raise InputError(f"{where}.errors: missing")
    errors = _number(raw["errors"], f"{where}.errors")
    if errors > requests:
        raise InputError(f"{where}.errors: {errors:g} exceeds requests {requests:g}")
    buckets = None
    if raw.get("latency") is not None:
        lat = raw["latency"]
        if not isinstance(lat, dict) or not lat:
            raise InputError(f"{where}.latency: expected an object of le (ms) -> cumulative count")
        buckets = {}
        for key, count in lat.items():
            try:
                le = math.inf if key.strip().lower() in ("+inf", "inf") else float(key)
            except ValueError:
                raise InputError(
                    f"{where}.latency: bucket key {key!r} is not a number or +Inf"
                ) from None
            if not le > 0 or (math.isinf(le) and "inf" not in key.lower()):  # NaN, 1e999
                raise InputError(f"{where}.latency: bucket key {key[:40]!r} must be > 0 and finite")
            buckets[key] = _number(count, f"{where}.latency[{key!r}]")
        ordered = sorted(
            buckets.items(), key=lambda kv: math.inf if "inf" in kv[0].lower() else float(kv[0])
        )
        if any(b[1] < a[1] - 1e-9 for a, b in itertools.pairwise(ordered)):
            raise InputError(f"{where}.latency: counts must be cumulative (non-decreasing in le)")
        if all("inf" in k.lower() for k in buckets):
            raise InputError(
                f"{where}.latency: needs at least one finite bucket (le in ms) besides +Inf"
            )
        if not any("inf" in k.lower() for k in buckets):
            buckets["+Inf"] = requests
    raw_value = raw.get("value")
    return ArmCounts(
        requests=requests,
        errors=errors,
        latency_buckets=buckets,
        value=None if raw_value is None else _float(raw_value, f"{where}.value"),
    )


def _weight(
    raw: Any, canary: ArmCounts, stable: ArmCounts, where: str, baseline: ArmCounts | None = None
) -> int:
    if raw is None:
        total = canary.requests + stable.requests + (baseline.requests if baseline else 0.0)
        return round(100 * canary.requests / total) if total > 0 else 0
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 100:
        raise InputError(f"{where}: expected a number between 0 and 100, got {_show(raw)}")
    return round(raw)
