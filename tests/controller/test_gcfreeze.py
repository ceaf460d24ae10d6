"""GcFreezer: what it freezes is skipped by collections but still freed by reference counting,
a garbage cycle among frozen objects lives at most until the next full round, and full rounds
come only when the frozen generation grew (or the longest period passed), spaced apart."""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Iterator

import pytest

from canaryd.controller.gcfreeze import GcFreezer


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.collect()


def test_frozen_objects_are_skipped_by_collections_and_freed_by_refcount(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="canaryd.controller.gcfreeze")
    now = [0.0]
    freezer = GcFreezer(5.0, 900.0, min_full_seconds=0.0, clock=lambda: now[0])
    acyclic, cyclic = Node(), Node()
    cyclic.other = Node()
    cyclic.other.other = cyclic
    freed, cycle = weakref.ref(acyclic), weakref.ref(cyclic)
    freezer.step()
    assert gc.get_freeze_count() > 0
    del acyclic, cyclic
    assert freed() is None  # reference counting frees a frozen object at once
    gc.collect()
    assert cycle() is not None  # a frozen cycle is not walked by collections
    now[0] = 899.0
    freezer.step()
    gc.collect()
    assert cycle() is not None and freezer.full_collections == 0
    assert freezer.last_full_pause is None and not caplog.records
    now[0] = 900.0
    freezer.step()  # the full round: the permanent generation released and collected
    assert cycle() is None and freezer.full_collections == 1
    # The pause every tick waited for is measured and logged (the cycle: 2 unreachable).
    assert freezer.last_full_pause is not None and freezer.last_full_pause >= 0
    (record,) = caplog.records
    assert record.getMessage().startswith("full garbage collection: ")
    assert int(record.getMessage().split()[3]) >= 2
    assert gc.get_freeze_count() > 0  # and frozen again


def test_the_thread_freezes_and_stopping_unfreezes() -> None:
    freezer = GcFreezer(0.05, 900.0).start()
    try:
        deadline = 100
        while gc.get_freeze_count() == 0 and deadline:
            gc.collect(0)
            deadline -= 1
            freezer._stop.wait(0.02)
        assert gc.get_freeze_count() > 0
    finally:
        freezer.stop()
    assert gc.get_freeze_count() == 0


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        GcFreezer(0.0)
    with pytest.raises(ValueError):
        GcFreezer(10.0, 5.0)
    with pytest.raises(ValueError):
        GcFreezer(5.0, 100.0, min_full_seconds=200.0)
    with pytest.raises(ValueError):
        GcFreezer(5.0, 100.0, growth=0.0)


def test_a_full_round_comes_when_the_frozen_generation_grew_and_not_sooner_than_the_spacing() -> (
    None
):
    now = [0.0]
    freezer = GcFreezer(5.0, 21600.0, growth=0.25, min_full_seconds=900.0, clock=lambda: now[0])
    freezer.step()
    start = freezer.frozen
    assert start > 0 and freezer.full_collections == 0
    # A heap that doubles within the spacing (caches filling at start-up): no full round yet.
    held = [[i] for i in range(start + 1000)]
    now[0] = 600.0
    freezer.step()
    assert freezer.frozen >= 2 * start and freezer.full_collections == 0
    # At the spacing the count becomes the reference; no growth since then, no full round.
    now[0] = 900.0
    freezer.step()
    now[0] = 5000.0
    freezer.step()
    assert freezer.full_collections == 0
    # Growth of a quarter since the reference (garbage cycles may have built up): one full round,
    # which frees what died in a cycle while frozen.
    cycle = [held]
    cycle.append(cycle)
    ref = weakref.ref(cycle_marker := Node())
    cycle_marker.other = cycle_marker
    cycle.append(cycle_marker)
    more = [[i] for i in range(len(held))]  # +50% of the reference
    freezer.step()  # freezes the cycle with the new objects
    del cycle, cycle_marker
    now[0] = 5005.0
    freezer.step()
    assert freezer.full_collections == 1 and ref() is None
    assert freezer.last_full_pause is not None
    # The reference is now the heap as the full round left it: the same size, no second round
    # (and never one within the spacing).
    now[0] = 5010.0
    freezer.step()
    now[0] = 9000.0
    freezer.step()
    assert freezer.full_collections == 1
    del more


def test_without_growth_a_full_round_still_comes_every_full_seconds() -> None:
    now = [0.0]
    freezer = GcFreezer(5.0, 3600.0, min_full_seconds=900.0, clock=lambda: now[0])
    for t in (5.0, 900.0, 1800.0, 3599.0):
        now[0] = t
        freezer.step()
    assert freezer.full_collections == 0
    now[0] = 3600.0
    freezer.step()
    assert freezer.full_collections == 1
    now[0] = 7199.0
    freezer.step()
    assert freezer.full_collections == 1
    now[0] = 7200.0
    freezer.step()
    assert freezer.full_collections == 2
