"""Exact counter arithmetic for one interval ``(start, end]`` from raw samples (pure).

A counter's count over the interval is its value at the last sample at or before ``end``
minus its value at the last sample at or before ``start``, plus, for every reset in between
(a sample lower than the one before it: the process restarted and counts again from zero), the
value reached before the reset. A series with no sample at or before ``start`` (within the
lookback the caller fetched) was born inside the interval and counts from zero; a series whose
last sample is before ``end`` (its pod went away) counts up to that sample. No extrapolation:
requests served after the last scrape before ``end`` belong to the next interval, so
consecutive intervals add up exactly.
"""

from __future__ import annotations

from collections.abc import Iterable


def interval_increase(samples: Iterable[tuple[float, float]], start: float, end: float) -> float:
    """Exact increase of one counter over ``(start, end]``.

    ``samples`` are ``(timestamp, value)`` in time order (as Prometheus returns a range
    vector); samples after ``end`` are ignored."""
    previous = 0.0
    total = 0.0
    for t, v in samples:
        if t > end:
            break
        if t <= start:
            previous = v  # the baseline: the counter's value at the interval's start
            continue
        total += v - previous if v >= previous else v
        previous = v
    return total
