"""Delivery of the notices pending in ``status.outbox``: at least once, across restarts.

The core records every notice as pending in the status it decides; the reconciler writes that
status, then hands the pending notices to :class:`Outbox`, which queues each one (once while it
is in flight) with the notifier. The notifier reports every delivery as sent or failed (its
callbacks); a notice is *delivered* once every delivery queued for it was sent. The next tick
tells the core which keys were delivered (``Observations.delivered``) and the core removes them
from the outbox. A delivery that failed (Slack down beyond the notifier's retries, queue full)
is queued again at the next tick: an outage only delays a notice. That next tick must come
soon even when the Rollout is idle (an ended release ticks only at the idle resync): while its
outbox holds notices, the reconciler asks for a tick after :meth:`Outbox.retry_delay`, a
backoff from ``retry_base_seconds`` doubling to ``retry_cap_seconds`` (the notifier's own
longest backoff), reset by every delivery. A restart loses only what is in memory here, so a
notice sent just before a crash may be sent twice (at least once, never lost).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from canaryd.core.ports import AlertTarget, Notifier
from canaryd.core.types import Notice

Key = tuple[str, str]


@dataclass
class _InFlight:
    rollout: Key
    remaining: int
    failed: bool = False


@dataclass
class Outbox:
    """What is in flight and what was delivered, per notice key (thread-safe)."""

    notifier: Notifier
    retry_base_seconds: float = 1.0
    """First wait before a tick looks at a still-pending outbox again."""
    retry_cap_seconds: float = 8.0
    """Longest wait (the Slack notifier's ``RetryPolicy.max_backoff_seconds``): once Slack is
    back, a notice that was given up on leaves within this plus one delivery."""
    _in_flight: dict[str, _InFlight] = field(default_factory=dict)
    _delivered: dict[Key, set[str]] = field(default_factory=dict)
    _waits: dict[Key, int] = field(default_factory=dict)
    """Per Rollout: ticks in a row that left its outbox pending (the backoff's exponent)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered(self, rollout: Key) -> frozenset[str]:
        """Keys of ``rollout`` delivered and not yet forgotten."""
        with self._lock:
            return frozenset(self._delivered.get(rollout, ()))

    def rollouts_with_deliveries(self) -> list[Key]:
        with self._lock:
            return [k for k, keys in self._delivered.items() if keys]

    def send(self, rollout: Key, notices: Iterable[Notice], targets: Sequence[AlertTarget]) -> None:
        """Queue each notice that is neither in flight nor delivered."""
        for notice in notices:
            with self._lock:
                if notice.key in self._in_flight or notice.key in self._delivered.get(rollout, ()):
                    continue
                # Registered before queueing: the worker may report before notify returns.
                self._in_flight[notice.key] = _InFlight(rollout, remaining=len(targets) or 1)
            queued = self.notifier.notify(notice, targets) if targets else 0
            with self._lock:
                flight = self._in_flight.get(notice.key)
                if flight is None:
                    continue  # reported already
                # Deliveries the notifier did not queue (severity below a target's minimum, or
                # already sent by this process) will never be reported.
                flight.remaining -= max(0, (len(targets) or 1) - queued)
                self._settle(notice.key, flight)

    def retry_delay(self, rollout: Key) -> float:
        """Seconds until ``rollout``'s next tick should look at its pending outbox again (to
        re-queue what failed, or to drop what was delivered). Each call without a delivery in
        between doubles the wait, up to ``retry_cap_seconds``: a long outage costs one cheap
        tick per cap, not a tight loop against a dead Slack."""
        with self._lock:
            n = self._waits.get(rollout, 0)
            self._waits[rollout] = n + 1
        return min(self.retry_cap_seconds, self.retry_base_seconds * 2.0 ** min(n, 32))

    def sent(self, target: AlertTarget, notice: Notice) -> None:
        """Notifier callback: one delivery of ``notice`` succeeded."""
        with self._lock:
            flight = self._in_flight.get(notice.key)
            if flight is not None:
                # The channel works: the next look at this outbox (to commit) comes soon.
                self._waits.pop(flight.rollout, None)
                flight.remaining -= 1
                self._settle(notice.key, flight)

    def failed(self, target: AlertTarget, notice: Notice, error: Exception) -> None:
        """Notifier callback: one delivery of ``notice`` was given up on."""
        with self._lock:
            flight = self._in_flight.get(notice.key)
            if flight is not None:
                flight.failed = True
                flight.remaining -= 1
                self._settle(notice.key, flight)

    def forget(self, rollout: Key, keep: Iterable[str] = ()) -> None:
        """Drop delivered keys of ``rollout`` except ``keep`` (those still in its outbox)."""
        kept = set(keep)
        with self._lock:
            if not kept:
                self._waits.pop(rollout, None)
            done = self._delivered.get(rollout)
            if done is not None:
                done &= kept
                if not done:
                    self._delivered.pop(rollout, None)

    def _settle(self, key: str, flight: _InFlight) -> None:
        if flight.remaining > 0:
            return
        del self._in_flight[key]
        if not flight.failed:
            self._delivered.setdefault(flight.rollout, set()).add(key)
