"""GcFreezer: what it freezes is skipped by collections but still freed by reference counting,
and a garbage cycle among frozen objects lives at most until the next full round."""

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
    freezer = GcFreezer(5.0, 900.0, clock=lambda: now[0])
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
