"""The client-side rate limiter of the transport (issue 13): a token bucket (QPS and burst) that
every API request goes through, retries included, with watches and leader election exempt.

The bucket's arithmetic is checked on a fake clock (exact), then the real thing against the API
emulator over HTTP, by lower bounds on elapsed time (load only makes a run slower, so these
cannot flake under CPU contention, and without the limiter the same requests take a fraction of
the bound) and by the emulator's audit (every request arrives, none is lost to throttling)."""

from __future__ import annotations

import threading
import time

import pytest

from canaryd.adapters.transport import KubeApi, RateLimit, TokenBucket
from kubeemu import Emulator

LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_bucket_allows_the_burst_then_exactly_qps() -> None:
    t = FakeTime()
    bucket = TokenBucket(RateLimit(qps=10, burst=5), clock=t.clock, sleep=t.sleep)
    waits = [bucket.acquire() for _ in range(5)]
    assert waits == [0.0] * 5  # the burst
    waits = [bucket.acquire() for _ in range(10)]
    assert waits == pytest.approx([0.1] * 10)  # then one token per 1/qps
    assert t.now == pytest.approx(1.0)
    t.now += 0.35  # a quiet spell refills 3.5 tokens (never more than the burst)
    assert [bucket.acquire() for _ in range(3)] == [0.0] * 3
    assert bucket.acquire() == pytest.approx(0.05)
    t.now += 100.0
    assert [bucket.acquire() for _ in range(5)] == [0.0] * 5
    assert bucket.acquire() == pytest.approx(0.1)
    assert bucket.throttled == 12


def test_concurrent_callers_queue_in_order_without_exceeding_the_rate() -> None:
    """Reservations: N callers arriving at once are spaced 1/qps apart, each sleeping once."""
    t = FakeTime()
    lock = threading.Lock()
    reserved: list[float] = []

    def no_sleep(seconds: float) -> None:  # time stands still: every caller arrives at 0
        with lock:
            reserved.append(seconds)

    bucket = TokenBucket(RateLimit(qps=50, burst=2), clock=t.clock, sleep=no_sleep)
    threads = [threading.Thread(target=bucket.acquire) for _ in range(40)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(reserved) == pytest.approx([(i + 1) / 50 for i in range(38)])


def test_zero_qps_means_no_limit_and_bad_settings_are_refused() -> None:
    t = FakeTime()
    bucket = TokenBucket(RateLimit(qps=0, burst=1), clock=t.clock, sleep=t.sleep)
    assert all(bucket.acquire() == 0.0 for _ in range(1000))
    with pytest.raises(ValueError, match="qps"):
        RateLimit(qps=-1)
    with pytest.raises(ValueError, match="qps"):
        RateLimit(qps=float("nan"))
    with pytest.raises(ValueError, match="burst"):
        RateLimit(burst=0)


@pytest.fixture
def emu() -> Emulator:
    with Emulator() as emulator:
        yield emulator


def _gets(api: KubeApi, n: int, threads: int) -> float:
    """``n`` GETs spread over ``threads`` threads; returns the elapsed seconds."""
    per = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]

    def run(count: int) -> None:
        for _ in range(count):
            api.list(CONFIGMAPS)

    started = time.monotonic()
    workers = [threading.Thread(target=run, args=(c,)) for c in per]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    return time.monotonic() - started


def test_requests_through_the_transport_are_held_to_qps(emu: Emulator) -> None:
    client = emu.api_client()
    limited = KubeApi(client, rate_limit=RateLimit(qps=20, burst=5))
    free = KubeApi(client)
    try:
        unlimited_s = _gets(free, 45, threads=4)
        emu.clear_audit()
        limited_s = _gets(limited, 45, threads=4)
        # 5 at once, then 40 more at 20/s: at least 2 s (load can only add to it).
        assert limited_s >= 2.0 - 0.02, limited_s
        assert unlimited_s < limited_s / 2, (unlimited_s, limited_s)
        assert len([r for r in emu.audit if r.verb == "list"]) == 45  # all arrived
        assert limited.limiter is not None and limited.limiter.throttled >= 39
    finally:
        client.close()  # type: ignore[no-untyped-call]


def test_watches_and_leader_election_are_not_throttled(emu: Emulator) -> None:
    client = emu.api_client()
    api = KubeApi(client, rate_limit=RateLimit(qps=0.5, burst=1))
    try:
        api.list(CONFIGMAPS)  # the only token: the next request waits 2 s
        started = time.monotonic()
        stop = threading.Event()
        watched = threading.Thread(
            target=lambda: [
                None
                for _ in api.watch(CONFIGMAPS, resource_version=None, timeout_seconds=5, stop=stop)
            ],
            daemon=True,
        )
        watched.start()
        deadline = time.monotonic() + 1.5
        while not any(r.verb == "watch" for r in emu.audit) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert any(r.verb == "watch" for r in emu.audit), "the watch waited for a token"
        lease = api.unthrottled()
        for i in range(5):
            lease.create(LEASES, {"metadata": {"name": f"l{i}"}, "spec": {}})
        exempt_s = time.monotonic() - started
        assert exempt_s < 1.5, exempt_s  # a throttled request alone would wait 2 s
        throttled_started = time.monotonic()
        api.list(CONFIGMAPS)
        assert time.monotonic() - throttled_started >= 1.0  # the bucket still holds the rest
        stop.set()
        api.create(CONFIGMAPS, {"metadata": {"name": "wake"}})  # ends the watch's read
        watched.join(timeout=10)
    finally:
        client.close()  # type: ignore[no-untyped-call]
