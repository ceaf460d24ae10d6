"""Watches on Rollouts and Deployments that keep the scheduler's jobs in step with the cluster.

Each watch is a thread running the list-then-watch loop of client-go's reflector, through the
shared transport (:meth:`canaryd.adapters.transport.KubeApi.watch`):

* list, hand the items over (``on_list``), remember the list's ``resourceVersion``;
* watch from it with bookmarks (``allowWatchBookmarks``) and a server-side ``timeoutSeconds``;
  every event and bookmark advances the remembered ``resourceVersion``; when the server ends
  the watch, watch again from there (no re-list);
* 410 GoneError (the version was compacted away): re-list;
* a dropped connection or another error: reconnect from the remembered version after an
  exponential backoff with jitter.

Rollout events add and remove jobs and trigger a tick when the spec (``generation``), the
manual-action annotation or the deletion state changed, not on canaryd's own status writes.
Deployment events trigger the tick of the Rollout that targets the Deployment (or its
``-primary``).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator
from functools import partial

from canaryd.adapters.kube import GoneError, KubeApi, Resources, baseline_name, paths, primary_name
from canaryd.adapters.transport import JSON
from canaryd.api.models import ScheduleSpec, parse_duration
from canaryd.controller.manual import ACTION_ANNOTATION
from canaryd.controller.scheduler import Key, Scheduler
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
        self.resource_version: str | None = None
        self.relists = 0
        """Lists made (the first one included): more than one means 410 or a restart."""
        self.reconnects = 0
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

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    listed = self.list_fn()
                    self.relists += 1
                    self.on_list(list(listed.get("items") or []))
                    self.resource_version = str(listed.get("metadata", {}).get("resourceVersion"))
                for kind, obj in self._events():
                    self.on_event(kind, obj)
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
    ) -> None:
        self.scheduler = scheduler
        self.namespace = namespace
        self.on_forget = on_forget
        """Called when a Rollout is gone (deleted, or missing from a re-list)."""
        self._lock = threading.Lock()
        self._fingerprints: dict[Key, tuple[object, ...]] = {}
        self._by_deployment: dict[Key, set[Key]] = {}
        self._targets: dict[Key, set[Key]] = {}

    def _in_scope(self, key: Key) -> bool:
        return self.namespace is None or key[0] == self.namespace

    def rollouts_for_deployment(self, key: Key) -> set[Key]:
        with self._lock:
            return set(self._by_deployment.get(key, set()))

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
            for dep in self._targets.get(key, set()) - deployments:
                self._by_deployment.get(dep, set()).discard(key)
            for dep in deployments:
                self._by_deployment.setdefault(dep, set()).add(key)
            self._targets[key] = deployments
        added = self.scheduler.ensure(key, interval_of(obj))
        if not added and (changed or force):
            self.scheduler.trigger(key)

    def _forget(self, key: Key) -> None:
        with self._lock:
            self._fingerprints.pop(key, None)
            for dep in self._targets.pop(key, set()):
                self._by_deployment.get(dep, set()).discard(key)
        self.scheduler.remove(key)
        if self.on_forget is not None:
            self.on_forget(key)


class DeploymentTrigger:
    """Deployment events -> tick the Rollouts that target them."""

    def __init__(self, tracker: RolloutTracker) -> None:
        self.tracker = tracker

    def on_list(self, items: list[JSON]) -> None:
        for item in items:
            self._trigger(_key(item))

    def on_event(self, kind: str, obj: JSON) -> None:
        self._trigger(_key(obj))

    def _trigger(self, key: Key) -> None:
        for rollout in self.tracker.rollouts_for_deployment(key):
            self.tracker.scheduler.trigger(rollout)


def rollout_reflector(
    api: KubeApi,
    tracker: RolloutTracker,
    *,
    namespace: str | None,
    label_selector: str = "",
    timeout_seconds: int = 60,
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
    )


def deployment_reflector(
    api: KubeApi,
    trigger: DeploymentTrigger,
    *,
    namespace: str | None,
    timeout_seconds: int = 60,
) -> Reflector:
    path = paths.deployment_all() if namespace is None else paths.deployment(namespace)
    return Reflector(
        f"deployments/{namespace or '*'}",
        list_fn=lambda: api.list(path, what="list Deployments"),
        watch_fn=partial(api.watch, path),
        on_list=trigger.on_list,
        on_event=trigger.on_event,
        timeout_seconds=timeout_seconds,
    )
