"""Watch-stream CPU per event: the transport's watch against the API emulator over HTTP, one
object of ``--size`` bytes patched ``--events`` times, the watching thread's CPU time per event
read with ``time.thread_time``. Rows: the piece size the chunked stream is read in, the former
4 KiB and today's :data:`canaryd.adapters.transport.WATCH_PIECE_BYTES`, alternated over
``--rounds`` rounds in the same run.

    python -m benchmarks.watch_stream
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from canaryd.adapters import transport
from canaryd.adapters.transport import KubeApi
from kubeemu import Emulator

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
FORMER_PIECE = 4096


def cpu_per_event(api: KubeApi, piece: int, size: int, events: int, tag: str) -> float:
    """Microseconds of the watching thread's CPU per event (the first event starts the clock)."""
    transport.WATCH_PIECE_BYTES = piece  # read at each watch's start
    stop, done = threading.Event(), threading.Event()
    seen = [0]
    cpu = [float("nan")]

    def watch() -> None:
        started = None
        try:
            for _kind, _obj in api.watch(
                CONFIGMAPS, resource_version=None, timeout_seconds=120, stop=stop
            ):
                if started is None:
                    started = time.thread_time()
                seen[0] += 1
                if seen[0] == events + 1:
                    cpu[0] = (time.thread_time() - started) / events
                    done.set()
                    return
        except transport.UnreachableError:
            pass

    threading.Thread(target=watch, daemon=True).start()
    time.sleep(0.3)  # the watch is open
    text = "x" * size
    name = f"watch-{tag}"
    api.create(CONFIGMAPS, {"metadata": {"name": name}, "data": {"v": text}})
    for i in range(events):
        api.merge_patch(f"{CONFIGMAPS}/{name}", {"data": {"v": text[:-1] + chr(97 + i % 26)}})
        time.sleep(0.002)  # one event at a time, as a controller's echoes come
    done.wait(60)
    stop.set()
    api.delete(f"{CONFIGMAPS}/{name}")  # the next round's watch starts without it
    return 1e6 * cpu[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=30_000, help="bytes of the object's data")
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    pieces = (FORMER_PIECE, transport.WATCH_PIECE_BYTES)
    results: dict[int, list[float]] = {p: [] for p in pieces}
    with Emulator() as emu:
        api = KubeApi(emu.api_client())
        for r in range(args.rounds):
            for p in pieces:
                results[p].append(cpu_per_event(api, p, args.size, args.events, f"{r}-{p}"))
    transport.WATCH_PIECE_BYTES = pieces[1]
    former = statistics.median(results[FORMER_PIECE])
    print(f"\n## watch_stream: {args.events} events of a {args.size}-byte object per round\n")
    print("| piece size | watch-thread CPU us per event (median; rounds) | x former |")
    print("|---|---|---|")
    for p in pieces:
        med = statistics.median(results[p])
        rounds = ", ".join(f"{v:.0f}" for v in results[p])
        print(f"| {p} | {med:.1f} ({rounds}) | {med / former:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
