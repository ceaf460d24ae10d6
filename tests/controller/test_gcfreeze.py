"""GcFreezer: what it freezes is skipped by collections but still freed by reference counting,
a garbage cycle among frozen objects lives at most until the next full round, and full rounds
come only when resident memory grew (or the longest period passed), spaced apart."""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Iterator

import pytest

from canaryd.controller.gcfreeze import GcFreezer, resident_bytes


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
    freezer = GcFreezer(5.0, 900.0, min_full_seconds=0.0, clock=lambda: now[0], memory=lambda: 1000)
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


def test_a_full_round_comes_when_memory_grew_and_not_sooner_than_the_spacing() -> None:
    now, rss = [0.0], [1000]
    freezer = GcFreezer(
        5.0,
        21600.0,
        growth=0.25,
        min_full_seconds=900.0,
        clock=lambda: now[0],
        memory=lambda: rss[0],
    )
    freezer.step()
    # Memory that doubles within the spacing (caches filling at start-up): no full round yet.
    rss[0], now[0] = 2000, 600.0
    freezer.step()
    assert freezer.full_collections == 0
    # At the spacing the memory becomes the reference; +24% since then: no full round.
    now[0] = 900.0
    freezer.step()
    rss[0], now[0] = 2480, 5000.0
    freezer.step()
    assert freezer.full_collections == 0
    # +25% (garbage cycles may have built up): one full round, which frees what died in a cycle
    # while frozen.
    marker = Node()
    marker.other = marker
    ref = weakref.ref(marker)
    freezer.step()  # freezes the cycle
    del marker
    gc.collect()
    assert ref() is not None
    rss[0], now[0] = 2500, 5005.0
    freezer.step()
    assert freezer.full_collections == 1 and ref() is None
    assert freezer.last_full_pause is not None
    # The reference is now the memory the full round left (2500): no second round at the same
    # size, and none within the spacing even after more growth.
    now[0] = 9000.0
    freezer.step()
    assert freezer.full_collections == 1
    rss[0], now[0] = 4000, 5010.0 + 800.0
    freezer.step()
    assert freezer.full_collections == 1
    now[0] = 5005.0 + 900.0
    freezer.step()
    assert freezer.full_collections == 2


def test_resident_bytes_reads_this_process() -> None:
    before = resident_bytes()
    block = bytearray(64 << 20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page
    assert 32 << 20 < resident_bytes() - before < 256 << 20
    del block


def test_without_growth_a_full_round_still_comes_every_full_seconds() -> None:
    now = [0.0]
    freezer = GcFreezer(
        5.0, 3600.0, min_full_seconds=900.0, clock=lambda: now[0], memory=lambda: 1000
    )
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
