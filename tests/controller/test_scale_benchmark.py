"""benchmarks/controller_scale.py's accounting of full collections: each generation-2
collection is recorded with its start, length and what it found, and a run counts as near one
(of at least PAUSE_MIN seconds) when it started during it or within PAUSE_SETTLE seconds after
it ended."""

from __future__ import annotations

import gc
import time
from types import SimpleNamespace

from benchmarks.controller_scale import PAUSE_MIN, PAUSE_SETTLE, _CpuSplit, near_pause


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_a_full_collection_is_recorded_with_its_length_and_what_it_found() -> None:
    ticks: list[tuple[str, str]] = []
    scheduler = SimpleNamespace(
        reconciler=SimpleNamespace(tick=lambda ns, name: ticks.append((ns, name)))
    )
    split = _CpuSplit(scheduler)
    try:
        node = Node()
        node.other = node
        del node  # a cycle: only the collector frees it
        before = time.time()
        gc.collect()
        after = time.time()
        scheduler.reconciler.tick("ns", "r")
    finally:
        gc.callbacks.remove(split._on_gc)
        gc.callbacks.remove(split.pauses._on_gc)
    assert ticks == [("ns", "r")]
    ((at, took, found),) = split.pauses.full
    assert before <= at <= after and 0 <= took <= after - before
    assert found >= 1
    assert split.collections[2] == 1 and split.gc > 0


def test_runs_near_a_pause_are_those_during_it_or_within_the_settle_time_after() -> None:
    full = [(100.0, 2.0, 5), (500.0, 1.0, 0)]
    starts = [99.9, 100.0, 101.5, 102.0 + PAUSE_SETTLE, 102.1 + PAUSE_SETTLE, 499.0, 505.0]
    assert near_pause(starts, full) == [False, True, True, True, False, False, True]
    assert near_pause(starts, []) == [False] * len(starts)
    # A short collection (a frozen heap's) is not a pause.
    assert near_pause([100.5], [(100.0, PAUSE_MIN / 2, 0)]) == [False]
