"""Leader election on a ``coordination.k8s.io/v1`` Lease (client-go's algorithm, simplified).

Every candidate loops every ``retry_period``:

* no Lease: create it holding it (201 wins; 409 means another candidate was faster);
* we hold it: renew ``renewTime`` with a PUT guarded by ``resourceVersion``;
* someone else holds it: take it over only when the Lease has not changed for
  ``lease_duration`` seconds *as observed locally* (no clock comparison across machines),
  again with a guarded PUT, so two candidates can never both win: one PUT gets 409.

We consider ourselves leader until ``renew_deadline`` after our last successful renew
(``renew_deadline < lease_duration``), so the old leader stops acting before anybody else may
take over. On shutdown the holder releases the Lease (empty holder), so a standby takes over
at its next retry instead of waiting out the lease.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from canaryd.adapters.kube import Leases
from canaryd.adapters.transport import JSON
from canaryd.core.ports import PermanentError, TemporaryError

log = logging.getLogger(__name__)


def micro_time(now: datetime | None = None) -> str:
    """Kubernetes MicroTime: RFC 3339 with microseconds, UTC."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_name_for(shard: str | None, base: str = "canaryd-leader") -> str:
    """One Lease per shard: ``canaryd.io/shard=a`` -> ``canaryd-leader-canaryd.io-shard-a``."""
    if not shard:
        return base
    safe = "".join(c if c.isalnum() or c in ".-" else "-" for c in shard.lower()).strip("-.")
    return f"{base}-{safe}"[:253]


class LeaderElector:
    """Campaigns in a background thread; :meth:`is_leader` is cheap and thread-safe."""

    def __init__(
        self,
        leases: Leases,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_started: Callable[[], None] | None = None,
        on_stopped: Callable[[], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self.leases = leases
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started = on_started
        self.on_stopped = on_stopped
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._renewed_at: float | None = None
        self._observed: tuple[str, float] | None = None  # (resourceVersion, local time seen)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._was_leader = False
        self.transitions = 0
        """Times this candidate became leader."""

    # ---- state -------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        with self._lock:
            return (
                self._renewed_at is not None
                and self._monotonic() - self._renewed_at < self.renew_deadline
            )

    # ---- one round ---------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One campaign round; True when we hold the Lease afterwards."""
        now_mono = self._monotonic()
        try:
            lease = self.leases.get(self.namespace, self.name)
            if lease is None:
                self._won(self.leases.create(self.namespace, self.name, self._spec(None)), now_mono)
                return True
            rv = str(lease["metadata"].get("resourceVersion", ""))
            if self._observed is None or self._observed[0] != rv:
                self._observed = (rv, now_mono)
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            if holder != self.identity and holder:
                duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
                if now_mono - self._observed[1] < duration:
                    self._lost()
                    return False
            self._won(self.leases.replace(lease, self._spec(lease)), now_mono)
            return True
        except TemporaryError as exc:  # 409 (someone else won the race) or the API is down
            log.debug("lease %s: %s", self.name, exc)
        except PermanentError as exc:
            log.warning("lease %s: %s", self.name, exc)
        self._check_expired()
        return False

    def _spec(self, lease: JSON | None) -> JSON:
        now = micro_time()
        old = (lease or {}).get("spec") or {}
        ours = old.get("holderIdentity") == self.identity
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(int(self.lease_duration), 1),
            "acquireTime": old.get("acquireTime") if ours else now,
            "renewTime": now,
            "leaseTransitions": int(old.get("leaseTransitions") or 0) + (0 if ours else 1),
        }

    def _won(self, lease: JSON, now_mono: float) -> None:
        with self._lock:
            lapsed = self._renewed_at is None or now_mono - self._renewed_at >= self.renew_deadline
            self._renewed_at = now_mono
        self._observed = (str(lease["metadata"].get("resourceVersion", "")), now_mono)
        if self._was_leader and lapsed:
            # A renew that came back after the renew deadline (a slow API server, a frozen
            # process) with no failed round in between: we stopped acting meanwhile, so this is
            # a new term like any other (the scheduler runs what it deferred), not a quiet
            # continuation (ticks deferred in the gap waited for their next interval).
            log.warning("leadership lapsed, renewed (lease %s/%s)", self.namespace, self.name)
            self._was_leader = False
            if self.on_stopped is not None:
                self.on_stopped()
        if not self._was_leader:
            self._was_leader = True
            self.transitions += 1
            log.info("became leader (lease %s/%s)", self.namespace, self.name)
            if self.on_started is not None:
                self.on_started()

    def _lost(self) -> None:
        with self._lock:
            self._renewed_at = None
        if self._was_leader:
            self._was_leader = False
            log.warning("lost leadership (lease %s/%s)", self.namespace, self.name)
            if self.on_stopped is not None:
                self.on_stopped()

    def _check_expired(self) -> None:
        if self._was_leader and not self.is_leader():
            self._lost()

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="canaryd-leader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.try_acquire_or_renew()
            self._stop.wait(self.retry_period)

    def is_campaigning(self) -> bool:
        """True while the election loop runs (a standby that still watches the Lease)."""
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def stop(self, *, release: bool = True) -> None:
        """Stop campaigning; release the Lease when we hold it (a standby takes over at once)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.retry_period + 5)
        if release and self.is_leader():
            try:
                lease = self.leases.get(self.namespace, self.name)
                if (
                    lease is not None
                    and (lease.get("spec") or {}).get("holderIdentity") == self.identity
                ):
                    spec = dict(lease.get("spec") or {})
                    spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=micro_time())
                    self.leases.replace(lease, spec)
            except (PermanentError, TemporaryError) as exc:
                log.warning("could not release lease %s: %s", self.name, exc)
        self._lost()
