"""An independent re-implementation of Prometheus 2.x ``increase()`` (promql/functions.go,
``extrapolatedRate``), applied to the samples the simulator recorded, as the reference the
provider's numbers are checked against."""

from collections.abc import Callable, Sequence

from meshsim import OpenMetricsRecorder


def prom_increase(samples: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    """``increase(x[end-start])`` at ``end`` for one counter's samples in [start, end]."""
    if len(samples) < 2:
        return None
    first_t, first_v = samples[0]
    last_t, last_v = samples[-1]
    result = last_v - first_v
    prev = first_v
    for _, v in samples[1:]:
        if v < prev:  # counter reset: the counter restarted from zero
            result += prev
        prev = v
    sampled = last_t - first_t
    avg = sampled / (len(samples) - 1)
    to_start, to_end = first_t - start, end - last_t
    if result > 0 and first_v >= 0:
        to_zero = sampled * (first_v / result)
        to_start = min(to_start, to_zero)
    threshold = avg * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else avg / 2
    interval += to_end if to_end < threshold else avg / 2
    return result * interval / sampled


def reference(
    rec: OpenMetricsRecorder,
    *,
    at: float,
    window: float,
    select: Callable[[dict[str, str]], bool],
    value: Callable[[object], float] = lambda v: v.requests,  # type: ignore[attr-defined]
) -> float:
    """Sum over the selected series of ``increase`` at ``at`` over ``window`` seconds."""
    start = at - window
    idx = [i for i, t in enumerate(rec.timestamps) if start < t <= at]
    per_series: dict[tuple, list[tuple[float, float]]] = {}
    for i in idx:
        for labels, v in rec.values_at(i).items():
            if select(dict(labels)):
                per_series.setdefault(labels, []).append((rec.timestamps[i], float(value(v))))
    total = 0.0
    for samples in per_series.values():
        inc = prom_increase(samples, start, at)
        if inc is not None:
            total += inc
    return total
