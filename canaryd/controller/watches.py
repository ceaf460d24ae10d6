"""Watches that fill the informer stores and keep the scheduler's jobs in step with the cluster.

Each watch is a thread running the list-then-watch loop of client-go's reflector, through the
shared transport (:meth:`canaryd.adapters.transport.KubeApi.watch`), feeding a
:class:`canaryd.adapters.cache.Store` (when it has one) before its handlers, so a tick that an
event triggers reads the version that triggered it:

* list, replace the store's content, hand the items over (``on_list``), remember the list's
  ``resourceVersion``; a list answered 404 (the kind is not served: its CRD is not installed)
  leaves the store empty and synced, and is tried again every ``absent_retry_seconds``;
* watch from it with bookmarks (``allowWatchBookmarks``) and a server-side ``timeoutSeconds``;
  every event and bookmark advances the remembered ``resourceVersion``; when the server ends
  the watch, watch again from there (no re-list);
* 410 GoneError (the version was compacted away): re-list;
* a dropped connection or another error: reconnect from the remembered version after an
  exponential backoff with jitter;
* every ``resync_seconds``, the store's content is handed to ``on_resync`` (client-go's
  resync: handlers reconcile their own bookkeeping with the store, no request is made).

A reflector is ready (:meth:`Reflector.ready`, part of ``/readyz``) once its first list is in
the store and it is watching, or once its kind is known to be absent.

Rollout events add and remove jobs and trigger a tick when the spec (``generation``), the
manual-action annotation or the deletion state changed, not on canaryd's own status writes.
Deployment events trigger the tick of the Rollout that targets the Deployment (or its
``-primary``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial

from canaryd.adapters.cache import Cache, Kind, Store
from canaryd.adapters.kube import (
    GoneError,
    KubeApi,
    NotFoundError,
    Resources,
    baseline_name,
    paths,
    primary_name,
)
from canaryd.adapters.kube.workloads import revision_of
from canaryd.adapters.transport import JSON
from canaryd.api.models import ScheduleSpec, parse_duration
from canaryd.controller.manual import ACTION_ANNOTATION
from canaryd.controller.scheduler import Key, Scheduler, start_hint
from canaryd.core.ports import PermanentError, TemporaryError

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = ScheduleSpec().interval_seconds()


class Reflector:
    """List-then-watch loop for one resource in one namespace (or all)."""

    def __init__(
        self,
        name: str,
        *,
        list_fn: Callable[[], JSON],
        watch_fn: Callable[..., Iterator[tuple[str, JSON]]],
        on_list: Callable[[list[JSON]], None],
        on_event: Callable[[str, JSON], None],
        label_selector: str = "",
        timeout_seconds: int = 60,
        backoff_base: float = 0.2,
        backoff_cap: float = 10.0,
        store: Store | None = None,
        on_resync: Callable[[list[JSON]], None] | None = None,
        resync_seconds: float = 300.0,
        absent_retry_seconds: float = 60.0,
    ) -> None:
        self.name = name
        self.list_fn = list_fn
        self.watch_fn = watch_fn
        self.on_list = on_list
        self.on_event = on_event
        self.label_selector = label_selector
        self.timeout_seconds = timeout_seconds
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.store = store
        self.on_resync = on_resync
        self.resync_seconds = resync_seconds
        self.absent_retry_seconds = absent_retry_seconds
        self.resource_version: str | None = None
        self.relists = 0
        """Lists made (the first one included): more than one means 410 or a restart."""
        self.reconnects = 0
        self.resyncs = 0
        self.absent = False
        """The last list answered 404: the kind is not served."""
        self._last_resync = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"watch-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def ready(self) -> bool:
        """Listed and watching (the store holds a full list), or the kind is not served."""
        return self.absent or (self.relists > 0 and self.resource_version is not None)

    def _list(self) -> bool:
        """List into the store and the handlers; False when the kind is not served."""
        try:
            listed = self.list_fn()
        except NotFoundError:
            if not self.absent:
                log.info("watch %s: not served by the API server (404); empty", self.name)
            self.absent = True
            if self.store is not None:
                self.store.mark_absent()
            self.on_list([])
            return False
        self.absent = False
        self.relists += 1
        items = list(listed.get("items") or [])
        version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
        if self.store is not None:
            self.store.replace(items, version)
        self.on_list(items)
        self.resource_version = version
        return True

    def _deliver(self, kind: str, obj: JSON) -> None:
        # The store first: a tick the handler triggers reads this version. An event older than
        # what the store holds (canaryd's own write got there first) changes nothing.
        if self.store is not None and not self.store.apply(kind, obj):
            return
        self.on_event(kind, obj)

    def _maybe_resync(self) -> None:
        if self.on_resync is None or self.store is None or self.resync_seconds <= 0:
            return
        if time.monotonic() - self._last_resync < self.resync_seconds:
            return
        self._last_resync = time.monotonic()
        self.resyncs += 1
        self.on_resync(self.store.items())

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if self.resource_version is None and not self._list():
                    self._stop.wait(self.absent_retry_seconds)
                    continue
                for kind, obj in self._events():
                    self._deliver(kind, obj)
                    self._maybe_resync()
                self._maybe_resync()
                failures = 0
            except GoneError:
                log.info("watch %s: 410 GoneError, re-listing", self.name)
                self.resource_version = None
                continue
            except (PermanentError, TemporaryError) as exc:
                failures += 1
                self._pause(failures, exc)
            except Exception as exc:  # a handler bug: keep watching, loudly
                log.exception("watch %s: handler failed", self.name)
                failures += 1
                self._pause(failures, exc)

    def _pause(self, failures: int, exc: Exception) -> None:
        self.reconnects += 1
        high = min(self.backoff_cap, self.backoff_base * 2.0 ** min(failures, 10))
        delay = random.uniform(high / 2, high)
        log.info("watch %s: %s; reconnecting in %.2fs", self.name, exc, delay)
        self._stop.wait(delay)

    def _events(self) -> Iterator[tuple[str, JSON]]:
        for kind, obj in self.watch_fn(
            resource_version=self.resource_version,
            timeout_seconds=self.timeout_seconds,
            label_selector=self.label_selector,
            stop=self._stop,
        ):
            if self._stop.is_set():
                return
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if rv:
                self.resource_version = str(rv)
            if kind == "BOOKMARK":
                continue
            yield kind, obj


def interval_of(raw: JSON) -> float:
    """The Rollout's ``spec.schedule.interval`` in seconds (invalid or absent: the model's
    default)."""
    try:
        text = raw["spec"]["schedule"]["interval"]
        return parse_duration(str(text))
    except (KeyError, TypeError, ValueError):
        return DEFAULT_INTERVAL


def _version(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _recorded_revisions(obj: JSON) -> frozenset[str]:
    status = obj.get("status")
    if not isinstance(status, dict):
        return frozenset()
    found = (status.get("canaryRevision"), status.get("stableRevision"))
    return frozenset(r for r in found if isinstance(r, str) and r)


def _key(obj: JSON) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace", "default")), str(meta.get("name", "")))


class RolloutTracker:
    """Keeps jobs and the Deployment -> Rollout index in step with Rollout events."""

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        namespace: str | None,
        on_forget: Callable[[Key], None] | None = None,
        deployments: Store | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.namespace = namespace
        self.on_forget = on_forget
        """Called when a Rollout is gone (deleted, or missing from a re-list)."""
        self.deployments = deployments
        """The Deployment cache, to tell a release made while no process watched (see
        :meth:`release_pending`); None without a cache."""
        self._lock = threading.Lock()
        self._fingerprints: dict[Key, tuple[object, ...]] = {}
        self._recorded: dict[Key, tuple[Key, frozenset[str]]] = {}
        """Each Rollout's target Deployment and the revisions its status records (canary and
        stable)."""
        self._by_deployment: dict[Key, set[Key]] = {}
        self._targets: dict[Key, set[Key]] = {}

    def _in_scope(self, key: Key) -> bool:
        return self.namespace is None or key[0] == self.namespace

    def rollouts_for_deployment(self, key: Key) -> set[Key]:
        with self._lock:
            return set(self._by_deployment.get(key, set()))

    def release_pending(self, key: Key) -> bool:
        """The target Deployment, as the cache holds it, runs a template that the Rollout's
        status records neither as its canary nor as its stable revision: a release nobody has
        acted on yet, typically one made while no process watched (a restart, a failover, a
        watch that broke). Such an idle-looking Rollout has work: its tick must not wait for
        the start-up spread, which a controller restarted again and again would re-draw each
        time (a release then waited for minutes: the chaos suite's kills showed it)."""
        if self.deployments is None:
            return False
        with self._lock:
            recorded = self._recorded.get(key)
        if recorded is None or not recorded[1]:
            return False  # never reconciled: ticked at once anyway
        target, revisions = recorded
        deployment = self.deployments.get(*target)
        return deployment is not None and revision_of(deployment) not in revisions

    def on_list(self, items: list[JSON]) -> None:
        present = {_key(item) for item in items}
        with self._lock:
            gone = [k for k in self._fingerprints if self._in_scope(k) and k not in present]
        for key in gone:
            self._forget(key)
        for item in items:
            # After a re-list we may have missed anything: tick every Rollout once.
            self._upsert(item, force=True)

    def on_event(self, kind: str, obj: JSON) -> None:
        if kind == "DELETED":
            self._forget(_key(obj))
        elif kind in ("ADDED", "MODIFIED"):
            self._upsert(obj, force=False)

    def on_resync(self, items: list[JSON]) -> None:
        """The store's content, periodically: a job for every Rollout held, none for a Rollout
        the store no longer has (a deletion whose event was lost). Triggers nothing."""
        present = {_key(item): item for item in items}
        with self._lock:
            gone = [k for k in self._fingerprints if self._in_scope(k) and k not in present]
            missing = [item for k, item in present.items() if k not in self._fingerprints]
        for key in gone:
            self._forget(key)
        for item in missing:
            self._upsert(item, force=False)

    def tracked(self) -> tuple[int, int]:
        """Rollouts tracked and Deployments indexed (bounded by the Rollouts that exist)."""
        with self._lock:
            return len(self._fingerprints), len(self._by_deployment)

    def _unindex(self, key: Key, deployments: set[Key]) -> None:
        """Drop ``key`` from the Deployment index entries ``deployments`` (empty ones go)."""
        for dep in deployments:
            owners = self._by_deployment.get(dep)
            if owners is not None:
                owners.discard(key)
                if not owners:
                    del self._by_deployment[dep]

    def _upsert(self, obj: JSON, *, force: bool) -> None:
        key = _key(obj)
        meta = obj.get("metadata") or {}
        fingerprint = (
            meta.get("generation"),
            (meta.get("annotations") or {}).get(ACTION_ANNOTATION),
            bool(meta.get("deletionTimestamp")),  # deletion began: finalise now
        )
        target = ((obj.get("spec") or {}).get("targetRef") or {}).get("name")
        deployments = (
            {(key[0], str(target)), (key[0], primary_name(str(target)))} if target else set()
        )
        if target and (obj.get("spec") or {}).get("baseline") is not None:
            # spec.baseline: the baseline becoming ready starts the first step (issue 12).
            deployments.add((key[0], baseline_name(str(target))))
        with self._lock:
            changed = self._fingerprints.get(key) != fingerprint
            self._fingerprints[key] = fingerprint
            self._unindex(key, self._targets.get(key, set()) - deployments)
            for dep in deployments:
                self._by_deployment.setdefault(dep, set()).add(key)
            self._targets[key] = deployments
            if target:
                self._recorded[key] = ((key[0], str(target)), _recorded_revisions(obj))
            else:
                self._recorded.pop(key, None)
        hint = start_hint(obj)
        if hint.idle and self.release_pending(key):
            hint = replace(hint, pending=True)
        added = self.scheduler.ensure(key, interval_of(obj), hint)
        if not added and (changed or force):
            # After a re-list (force) nothing is known to have changed: idle ones spread.
            self.scheduler.trigger(key, maybe=not changed)

    def _forget(self, key: Key) -> None:
        with self._lock:
            self._fingerprints.pop(key, None)
            self._recorded.pop(key, None)
            self._unindex(key, self._targets.pop(key, set()))
        self.scheduler.remove(key)
        if self.on_forget is not None:
            self.on_forget(key)


class DeploymentTrigger:
    """Deployment events -> tick the Rollouts that target them."""

    def __init__(self, tracker: RolloutTracker) -> None:
        self.tracker = tracker
        self._lock = threading.Lock()
        self._seen: dict[Key, str] | None = None
        """resourceVersion of each Deployment as last listed or watched; None before the first
        list (bounded by the Deployments that exist: a deletion or re-list drops the rest)."""

    def on_list(self, items: list[JSON]) -> None:
        # A re-list (after 410, or a watch that broke) carries what the watch missed: a
        # Deployment whose version moved meanwhile may be a new release, so its Rollouts tick at
        # once; the others show nothing new and idle ones spread. The first list is start-up,
        # ordered by the scheduler's start-up hints.
        seen = {_key(item): _version(item) for item in items}
        with self._lock:
            before, self._seen = self._seen, seen
        for key, version in seen.items():
            changed = before is not None and before.get(key) != version
            self._trigger(key, maybe=not changed)

    def on_event(self, kind: str, obj: JSON) -> None:
        key = _key(obj)
        with self._lock:
            if self._seen is not None:
                if kind == "DELETED":
                    self._seen.pop(key, None)
                else:
                    self._seen[key] = _version(obj)
        self._trigger(key)

    def _trigger(self, key: Key, *, maybe: bool = False) -> None:
        for rollout in self.tracker.rollouts_for_deployment(key):
            # A list (the first, at start-up, included) that shows a release not yet acted on
            # is a change, whatever the resourceVersions say.
            pending = maybe and self.tracker.release_pending(rollout)
            self.tracker.scheduler.trigger(rollout, maybe=maybe and not pending)


def rollout_reflector(
    api: KubeApi,
    tracker: RolloutTracker,
    *,
    namespace: str | None,
    label_selector: str = "",
    timeout_seconds: int = 60,
    store: Store | None = None,
    resync_seconds: float = 300.0,
) -> Reflector:
    resources = Resources(api)
    path = (
        paths.custom_all("rollouts") if namespace is None else paths.custom(namespace, "rollouts")
    )
    return Reflector(
        f"rollouts/{namespace or '*'}",
        list_fn=lambda: resources.list_rollouts(namespace, label_selector=label_selector),
        watch_fn=partial(api.watch, path),
        on_list=tracker.on_list,
        on_event=tracker.on_event,
        label_selector=label_selector,
        timeout_seconds=timeout_seconds,
        store=store,
        on_resync=tracker.on_resync,
        resync_seconds=resync_seconds,
    )


def deployment_reflector(
    api: KubeApi,
    trigger: DeploymentTrigger,
    *,
    namespace: str | None,
    timeout_seconds: int = 60,
    store: Store | None = None,
) -> Reflector:
    path = paths.deployment_all() if namespace is None else paths.deployment(namespace)
    return Reflector(
        f"deployments/{namespace or '*'}",
        list_fn=lambda: api.list(path, what="list Deployments"),
        watch_fn=partial(api.watch, path),
        on_list=trigger.on_list,
        on_event=trigger.on_event,
        timeout_seconds=timeout_seconds,
        store=store,
    )


def _ignore_list(items: list[JSON]) -> None:
    """A kind whose changes trigger no tick: the store is all it feeds."""


def _ignore_event(kind: str, obj: JSON) -> None:
    """See :func:`_ignore_list`."""


def store_reflector(api: KubeApi, store: Store, *, timeout_seconds: int = 60) -> Reflector:
    """A reflector that only fills ``store`` (Services, routes, templates, alert providers:
    ticks read them; their changes are seen at the next tick, as before the cache)."""
    kind = store.kind
    path = kind.path(store.namespace)
    return Reflector(
        f"{kind.plural}/{store.namespace or '*'}",
        list_fn=lambda: api.list(path, what=f"list {kind.plural}"),
        watch_fn=partial(api.watch, path),
        on_list=_ignore_list,
        on_event=_ignore_event,
        timeout_seconds=timeout_seconds,
        store=store,
    )


def cache_reflectors(
    api: KubeApi,
    cache: Cache,
    *,
    namespace: str | None,
    skip: tuple[Kind, ...],
    timeout_seconds: int = 60,
) -> list[Reflector]:
    """The store-only reflectors of ``cache`` for one namespace scope (``skip``: the kinds
    whose reflectors also drive the scheduler, built with their handlers)."""
    return [
        store_reflector(api, cache.store(kind, namespace), timeout_seconds=timeout_seconds)
        for kind in cache.stores
        if kind not in skip
    ]


def store_of(cache: Cache | None, kind: Kind, namespace: str | None) -> Store | None:
    """The store of ``kind`` for a namespace scope, None without a cache (or that kind)."""
    if cache is None or kind not in cache.stores:
        return None
    return cache.store(kind, namespace)
