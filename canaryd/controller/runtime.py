"""The running controller: watches + scheduler + reconciler + leader election, wired together.

:class:`Controller` is what ``canaryd run`` starts and what the end-to-end tests start (the
same code path, against the API emulator). It owns threads only; every adapter is passed in.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from canaryd.adapters.cache import DEPLOYMENTS, Cache
from canaryd.adapters.kube import KubeApi, Leases
from canaryd.adapters.kube.resources import ROLLOUT_KIND
from canaryd.controller.gcfreeze import GcFreezer
from canaryd.controller.leader import LeaderElector, lease_name_for
from canaryd.controller.reconciler import Reconciler
from canaryd.controller.scheduler import Scheduler
from canaryd.controller.watches import (
    DeploymentTrigger,
    Reflector,
    RolloutTracker,
    cache_reflectors,
    deployment_reflector,
    rollout_reflector,
    store_of,
)

log = logging.getLogger(__name__)


def default_identity() -> str:
    """``<hostname>-<pid>-<random>``: unique per process, readable in the Lease."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    namespaces: tuple[str, ...] | None = None
    """Namespaces to watch; None means all."""
    shard: str = ""
    """Label selector of the Rollouts this controller serves (``canaryd.io/shard=a``); each
    shard has its own Lease."""
    leader_election: bool = True
    lease_namespace: str = "default"
    lease_name: str = ""
    """Defaults to ``canaryd-leader`` (plus the shard)."""
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    workers: int = 4
    idle_resync_seconds: float = 60.0
    startup_spread_seconds: float | None = None
    """After winning the Lease (or starting), idle Rollouts' first ticks are spread at random
    over this many seconds (None: the idle resync); active and overdue ones tick at once."""
    watch_timeout_seconds: int = 60
    gc_freeze_seconds: float = 5.0
    """Freeze the cyclic collector's objects this often (0: never), so that a full collection
    of the informer stores does not stop every tick (:mod:`canaryd.controller.gcfreeze`)."""
    gc_full_seconds: float = 21600.0
    """With freezing, a full collection at least this often (garbage cycles live at most this
    long); sooner once resident memory grew by ``gc_full_growth``."""
    gc_full_growth: float = 0.25
    """A full collection once resident memory grew by this fraction since the last one left it
    (garbage cycles may have built up)."""
    gc_full_min_seconds: float = 900.0
    """Never two full collections (each stops every tick for a while) closer than this."""
    wedged_tick_seconds: float = 600.0
    """/healthz fails once a tick has run this long: every call a tick makes is bounded (API
    retries, metric query timeouts, webhook answers are waited for 1 s), so a tick past it
    is stuck, and a restart by the kubelet is the way out."""


class Controller:
    """Start with :meth:`start`, stop with :meth:`stop` (releases the Lease)."""

    def __init__(
        self,
        api: KubeApi,
        reconciler: Reconciler,
        config: ControllerConfig,
        *,
        cache: Cache | None = None,
    ) -> None:
        self.api = api
        self.cache = cache
        """The informer stores the adapters read (filled by :attr:`reflectors`)."""
        self.reconciler = reconciler
        self.config = config
        self.identity = config.identity or default_identity()
        self.elector: LeaderElector | None = None
        if config.leader_election:
            self.elector = LeaderElector(
                # Renewals never queue behind ticks in the rate limiter (a missed renew
                # deadline would hand over for nothing).
                Leases(api.unthrottled()),
                namespace=config.lease_namespace,
                name=config.lease_name or lease_name_for(config.shard),
                identity=self.identity,
                lease_duration=config.lease_duration,
                renew_deadline=config.renew_deadline,
                retry_period=config.retry_period,
                on_started=self._on_leader,
                on_stopped=self._on_follower,
            )
        # Every write of a tick checks the Lease (a tick begun while leading may resume after a
        # freeze past the lease, when another process leads).
        reconciler.leading = self.is_leader
        # ...and so does every attempt of every write the transport sends (a retry after a
        # backoff sleep included); the Lease itself goes through an unfenced copy.
        api.fence = self.is_leader
        self.scheduler = Scheduler(
            reconciler,
            is_leader=self.is_leader,
            workers=config.workers,
            idle_resync_seconds=config.idle_resync_seconds,
            startup_spread_seconds=config.startup_spread_seconds,
        )
        self.reflectors: list[Reflector] = []
        self.trackers: list[RolloutTracker] = []
        scopes: tuple[str | None, ...] = config.namespaces or (None,)
        for ns in scopes:
            tracker = RolloutTracker(
                self.scheduler,
                namespace=ns,
                on_forget=self._forget,
                deployments=store_of(cache, DEPLOYMENTS, ns),
            )
            self.trackers.append(tracker)
            self.reflectors.append(
                rollout_reflector(
                    api,
                    tracker,
                    namespace=ns,
                    label_selector=config.shard,
                    timeout_seconds=config.watch_timeout_seconds,
                    store=store_of(cache, ROLLOUT_KIND, ns),
                )
            )
            self.reflectors.append(
                deployment_reflector(
                    api,
                    DeploymentTrigger(tracker),
                    namespace=ns,
                    timeout_seconds=config.watch_timeout_seconds,
                    store=store_of(cache, DEPLOYMENTS, ns),
                )
            )
            if cache is not None:
                self.reflectors += cache_reflectors(
                    api,
                    cache,
                    namespace=ns,
                    skip=(ROLLOUT_KIND, DEPLOYMENTS),
                    timeout_seconds=config.watch_timeout_seconds,
                )
        self._started = False
        self._gc: GcFreezer | None = None
        self._stopped_ticking = False
        self.on_leader_change: Callable[[bool], None] | None = None
        """Called with True when this process starts leading, False when it stops."""
        self.on_forget: Callable[[str, str], None] | None = None
        """Called with (namespace, name) when a Rollout is gone (e.g. drop its metrics)."""

    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader()

    def healthy(self) -> bool:
        """Liveness: no worker wedged in a tick for longer than ``wedged_tick_seconds``."""
        return self.scheduler.oldest_tick_seconds() <= self.config.wedged_tick_seconds

    def ready(self) -> bool:
        """Readiness: every watch has listed and is streaming (not re-listing after a 410 or a
        lost connection), and this process either leads or still campaigns as a standby (a
        standby is ready: it takes over within a lease duration; one whose election loop died
        never will)."""
        watches = all(r.ready() for r in self.reflectors)
        leadership = self.elector is None or self.is_leader() or self.elector.is_campaigning()
        return watches and leadership and self._started

    def _on_leader(self) -> None:
        # Restart or failover: the deferred, active and overdue Rollouts first (most overdue
        # first), the idle ones spread (the watch's view of each status orders them).
        self.scheduler.start_leading()
        if self.on_leader_change is not None:
            self.on_leader_change(True)

    def _forget(self, key: tuple[str, str]) -> None:
        self.reconciler.forget(*key)
        if self.on_forget is not None:
            self.on_forget(*key)

    def _on_follower(self) -> None:
        if self.on_leader_change is not None:
            self.on_leader_change(False)

    def start(self) -> None:
        if self.config.gc_freeze_seconds > 0:
            self._gc = GcFreezer(
                self.config.gc_freeze_seconds,
                self.config.gc_full_seconds,
                growth=self.config.gc_full_growth,
                min_full_seconds=min(self.config.gc_full_min_seconds, self.config.gc_full_seconds),
            )
            self._gc.start()
        self.scheduler.start()
        for reflector in self.reflectors:
            reflector.start()
        if self.elector is not None:
            self.elector.start()
        elif self.on_leader_change is not None:
            self.on_leader_change(True)
        self._started = True
        log.info("controller %s started", self.identity)

    def stop_ticking(self) -> None:
        """Stop watching and ticking, waiting for running ticks; the Lease is kept, so no other
        replica acts until :meth:`stop` (the leader can still record what it delivered)."""
        if not self._started or self._stopped_ticking:
            return
        self._stopped_ticking = True
        for reflector in self.reflectors:
            reflector.stop()
        self.scheduler.shutdown(wait=True)

    def stop(self) -> None:
        """Stop watching and ticking (waits for running ticks), then release the Lease."""
        if not self._started:
            return
        self.stop_ticking()
        self._started = False
        if self.elector is not None:
            self.elector.stop(release=True)
        if self._gc is not None:
            self._gc.stop()
            self._gc = None
        log.info("controller %s stopped", self.identity)
