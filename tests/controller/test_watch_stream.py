"""The transport's watch stream against the API emulator over HTTP: events of every size (a few
bytes, several pieces of the read size, megabytes) arrive whole and in order, and a small event
right behind a large one is not held back waiting for more bytes."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import pytest

from canaryd.adapters.transport import WATCH_PIECE_BYTES, KubeApi, UnreachableError
from kubeemu import Emulator

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
SIZES = [1, 3_000, 4_097, WATCH_PIECE_BYTES - 200, WATCH_PIECE_BYTES + 1, 3 * WATCH_PIECE_BYTES, 2]


@pytest.fixture()
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


def test_events_of_every_size_arrive_whole_in_order_and_at_once(emu: Emulator) -> None:
    client = emu.api_client()
    api = KubeApi(client)
    events: queue.Queue[tuple[str, dict[str, object], float]] = queue.Queue()
    stop = threading.Event()

    def watch() -> None:
        try:
            for kind, obj in api.watch(
                CONFIGMAPS, resource_version=None, timeout_seconds=30, stop=stop
            ):
                events.put((kind, obj, time.monotonic()))
        except UnreachableError:
            assert stop.is_set()  # only the emulator going away at the end ends it

    threading.Thread(target=watch, daemon=True).start()
    try:
        time.sleep(0.3)  # the watch is open
        for i, size in enumerate(SIZES):
            # a character per position: a piece lost, doubled or reordered changes the text
            text = "".join(chr(ord("a") + (j * 7 + i) % 26) for j in range(size))
            api.create(CONFIGMAPS, {"metadata": {"name": f"cm{i}"}, "data": {"v": text}})
            sent = time.monotonic()
            kind, obj, seen = events.get(timeout=10)
            assert kind == "ADDED"
            assert obj["metadata"]["name"] == f"cm{i}"  # type: ignore[index]
            assert obj["data"] == {"v": text}
            # delivered as soon as it was written, whatever came before it (the last one is
            # two bytes behind a 196-KB event)
            assert seen - sent < 2.0, (size, seen - sent)
    finally:
        stop.set()
        client.close()  # type: ignore[no-untyped-call]
