"""Informer stores: what the watches delivered, read by ticks instead of GETs.

client-go's controllers read through shared informers: a reflector lists and watches a kind and
keeps a thread-safe store (an indexer by ``namespace/name``); handlers and reconcilers read the
store, and a reconcile makes no request unless it writes. This module is the store half, shared
by every adapter (as the transport is); the list-then-watch loop that fills a store is
:class:`canaryd.controller.watches.Reflector`.

* :class:`Store` holds one kind in one namespace (or all), as raw JSON dicts (the wire form, no
  typed-client models: they would only be converted again). ``metadata.managedFields`` is
  dropped on the way in (client-go's informers do the same with a transform; canaryd never reads
  it, and a PUT without it keeps the server's).
* **Read-your-own-writes.** After canaryd writes an object, the watch delivers the new version
  a moment later; a tick in between would act on the old one (and its next write would conflict,
  or worse, repeat the effect). Every write's answer is put into the store at once
  (:meth:`Store.wrote`), and an event or a re-list never replaces a stored object by an *older*
  one: ``resourceVersion`` is compared as a number (etcd's revision; kube-apiserver and kubeemu
  serve integers; a version that is not a number is taken as newer, the watch order). A conflict
  (409) marks the key stale (:meth:`Reader.invalidate`): the next read is a live GET.
* :class:`Reader` is what the adapters call: the store when one covers the namespace, else a GET
  (a router or workloads adapter built without a cache, as the CLI's one-shot commands do). A
  store that has not synced yet makes the read wait for the initial list (bounded), then fail
  with a :class:`TemporaryError` (the tick is retried): a tick never decides on a half-filled
  cache.
* A kind the API server does not serve (its CRD is not installed: the list answers 404) is an
  empty, synced store (:meth:`Store.mark_absent`): a GET would answer 404 too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from canaryd.adapters.transport import JSON, KubeApi, NotFoundError
from canaryd.core.ports import TemporaryError

Key = tuple[str, str]
MAX_STALE = 10_000
"""Keys marked stale at most (a bound: marks of keys never read again do not pile up)."""
T = TypeVar("T")

SYNC_WAIT_SECONDS = 10.0
"""How long a read waits for a store's initial list before the tick fails (and is retried)."""


@dataclass(frozen=True, slots=True)
class Kind:
    """A namespaced resource a store holds (REST coordinates and a name for messages)."""

    label: str
    """Kind, for messages: ``Deployment``."""
    group: str
    """API group; empty for the core group (``/api/v1``)."""
    version: str
    plural: str

    def path(self, namespace: str | None, name: str = "") -> str:
        """The collection (all namespaces when ``namespace`` is None) or one object."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is None:
            return f"{root}/{self.plural}"
        base = f"{root}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{name}" if name else base


def key_of(obj: JSON) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def resource_version(obj: JSON | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


def newer(candidate: str, held: str) -> bool:
    """Is version ``candidate`` at least as new as ``held``? Numbers compare as numbers; any
    version that is not a number is taken as newer (the order the watch delivered)."""
    if candidate.isdigit() and held.isdigit():
        return int(candidate) >= int(held)
    return True


def strictly_newer(candidate: str, held: str) -> bool:
    """Is ``candidate`` known to be newer than ``held`` (both numbers, and larger)?"""
    return candidate.isdigit() and held.isdigit() and int(candidate) > int(held)


def slim(obj: JSON) -> JSON:
    """The object without ``metadata.managedFields`` (a shallow copy when it had them)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        meta = {k: v for k, v in meta.items() if k != "managedFields"}
        return {**obj, "metadata": meta}
    return obj


class Store:
    """The objects of one kind in one namespace (or all), by ``(namespace, name)``.

    Thread-safe. Objects handed out are the stored dicts themselves: callers never mutate them
    (every adapter builds new dicts for its writes)."""

    def __init__(self, kind: Kind, namespace: str | None) -> None:
        self.kind = kind
        self.namespace = namespace
        self._lock = threading.Lock()
        self._objects: dict[Key, JSON] = {}
        self._memo: dict[Key, dict[str, Any]] = {}
        self._synced = threading.Event()
        self.absent = False
        """The API server does not serve this kind (its list answered 404)."""
        self.ignored_stale = 0
        """Events and list items dropped because the store held a newer version."""

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)

    def covers(self, namespace: str) -> bool:
        return self.namespace is None or self.namespace == namespace

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def get(self, namespace: str, name: str) -> JSON | None:
        with self._lock:
            return self._objects.get((namespace, name))

    def items(self) -> list[JSON]:
        with self._lock:
            return list(self._objects.values())

    def held_keys(self) -> list[Key]:
        with self._lock:
            return list(self._objects)

    # ---- fed by the reflector ----------------------------------------------------------------

    def replace(self, items: Iterable[JSON], list_version: str) -> list[Key]:
        """A (re-)list: the store becomes ``items``, except objects written by canaryd after
        the list was served (a newer version than the list's), which stay. Returns the keys
        that were dropped (deleted while the watch was away)."""
        fresh = {key_of(item): slim(item) for item in items}
        with self._lock:
            for key, held in self._objects.items():
                rv = resource_version(held)
                new = fresh.get(key)
                if new is None:
                    if strictly_newer(rv, list_version):
                        fresh[key] = held  # created by canaryd after the list was served
                elif resource_version(new) == rv:
                    fresh[key] = held  # unchanged: keep the object (and what was derived)
                elif strictly_newer(rv, resource_version(new)):
                    fresh[key] = held  # canaryd's own write is newer than the list
                    self.ignored_stale += 1
            gone = [key for key in self._objects if key not in fresh]
            self._memo = {
                key: memo
                for key, memo in self._memo.items()
                if fresh.get(key) is self._objects.get(key)
            }
            self._objects = fresh
            self.absent = False
        self._synced.set()
        return gone

    def apply(self, kind: str, obj: JSON) -> bool:
        """A watch event (ADDED, MODIFIED, DELETED). False when it was older than what the
        store holds (a late delivery after canaryd's own write): ignored."""
        key = key_of(obj)
        rv = resource_version(obj)
        with self._lock:
            held = self._objects.get(key)
            if held is not None and kind != "DELETED" and rv and rv == resource_version(held):
                return True  # the same version (the echo of canaryd's own write): keep it
            if held is not None and not newer(rv, resource_version(held)):
                self.ignored_stale += 1
                return False
            self._memo.pop(key, None)
            if kind == "DELETED":
                self._objects.pop(key, None)
            else:
                self._objects[key] = slim(obj)
        return True

    def mark_absent(self) -> None:
        """The kind is not served: empty and synced (every read answers "not found")."""
        with self._lock:
            self._objects.clear()
            self._memo.clear()
            self.absent = True
        self._synced.set()

    # ---- fed by canaryd's own writes ---------------------------------------------------------

    def wrote(self, obj: JSON, memo: Mapping[str, Any] | None = None) -> JSON:
        """The answer of canaryd's own write (create, update, patch): held at once, unless the
        watch already delivered a newer version. ``memo``: values derived from it that the
        writer already knows (see :meth:`derived`). Returns the object as now held when it is
        this version (ticks recognise it by identity), else ``obj``."""
        if not obj.get("metadata"):
            return obj
        key = key_of(obj)
        self.apply("MODIFIED", obj)
        with self._lock:
            held = self._objects.get(key)
            if held is None or resource_version(held) != resource_version(obj):
                return obj
            if memo:
                self._memo.setdefault(key, {}).update(memo)
            return held

    def forget(self, namespace: str, name: str) -> None:
        """canaryd deleted the object (or a live read found it gone)."""
        with self._lock:
            self._objects.pop((namespace, name), None)
            self._memo.pop((namespace, name), None)

    def derived(self, obj: JSON, tag: str, compute: Callable[[JSON], T]) -> T:
        """``compute(obj)``, remembered while ``obj`` is the stored version of its key (a tick
        that finds the object unchanged skips re-parsing it). Dropped with the object."""
        key = key_of(obj)
        with self._lock:
            if self._objects.get(key) is not obj:
                stored = False
            else:
                stored = True
                memo = self._memo.get(key)
                if memo is not None and tag in memo:
                    return memo[tag]  # type: ignore[no-any-return]
        value = compute(obj)
        if stored:
            with self._lock:
                if self._objects.get(key) is obj:
                    self._memo.setdefault(key, {})[tag] = value
        return value


class Reader:
    """Reads of one kind for an adapter: from the covering store, else a GET."""

    def __init__(
        self,
        api: KubeApi,
        kind: Kind,
        stores: Sequence[Store] = (),
        *,
        sync_wait: float = SYNC_WAIT_SECONDS,
    ) -> None:
        self.api = api
        self.kind = kind
        self.stores = tuple(stores)
        self.sync_wait = sync_wait
        self._stale: set[Key] = set()
        self._lock = threading.Lock()

    def store_for(self, namespace: str) -> Store | None:
        for store in self.stores:
            if store.covers(namespace):
                return store
        return None

    def get(self, namespace: str, name: str) -> JSON | None:
        """The object, or None when it does not exist."""
        store = self.store_for(namespace)
        if store is None:
            return self.live(namespace, name)
        with self._lock:
            stale = (namespace, name) in self._stale
        if stale:
            return self.live(namespace, name)
        if not store.synced and not store.wait_synced(self.sync_wait):
            raise TemporaryError(
                f"read {self.kind.label} {namespace}/{name}: the cache of {self.kind.plural} "
                "has not synced yet (waiting for the initial list)"
            )
        return store.get(namespace, name)

    def held(self, namespace: str, name: str) -> JSON | None:
        """The stored object, never a request: None without a synced covering store, when the
        copy is known stale, or when the store holds none."""
        store = self.store_for(namespace)
        if store is None or not store.synced:
            return None
        with self._lock:
            if (namespace, name) in self._stale:
                return None
        return store.get(namespace, name)

    def live(self, namespace: str, name: str) -> JSON | None:
        """A GET (and the store updated with its answer)."""
        found = self.api.get_or_none(
            self.kind.path(namespace, name), what=f"read {self.kind.label} {namespace}/{name}"
        )
        store = self.store_for(namespace)
        with self._lock:
            self._stale.discard((namespace, name))
        if store is not None:
            if found is None:
                store.forget(namespace, name)
            else:
                store.wrote(found)
                return store.get(namespace, name) or found
        return found

    def require(self, namespace: str, name: str) -> JSON:
        found = self.get(namespace, name)
        if found is None:
            raise NotFoundError(f"{self.kind.label} {namespace}/{name} not found")
        return found

    def wrote(self, obj: JSON, memo: Mapping[str, Any] | None = None) -> JSON:
        """Hold the answer of a write (read-your-own-writes); returns the object as held (see
        :meth:`Store.wrote`)."""
        store = self.store_for(key_of(obj)[0])
        if store is not None:
            return store.wrote(obj, memo)
        return obj

    def deleted(self, namespace: str, name: str) -> None:
        store = self.store_for(namespace)
        if store is not None:
            store.forget(namespace, name)
        with self._lock:
            self._stale.discard((namespace, name))

    def invalidate(self, namespace: str, name: str) -> None:
        """The stored copy is known stale (a write conflicted): the next read is a GET."""
        if self.store_for(namespace) is None:
            return
        with self._lock:
            if len(self._stale) >= MAX_STALE:
                # Keys marked and never read again (their objects gone): drop the marks; at
                # worst a stale copy costs one more conflict, which marks it again.
                self._stale.clear()
            self._stale.add((namespace, name))

    def derived(self, obj: JSON, tag: str, compute: Callable[[JSON], T]) -> T:
        """``compute(obj)``, remembered by the store while ``obj`` is current there."""
        store = self.store_for(key_of(obj)[0])
        if store is None:
            return compute(obj)
        return store.derived(obj, tag, compute)


class Cache:
    """The stores of one controller: one per kind and namespace scope (all namespaces when
    ``namespaces`` is None)."""

    def __init__(
        self,
        api: KubeApi,
        kinds: Iterable[Kind],
        namespaces: Sequence[str] | None,
        *,
        sync_wait: float = SYNC_WAIT_SECONDS,
    ) -> None:
        self.api = api
        self.sync_wait = sync_wait
        scopes: tuple[str | None, ...] = tuple(namespaces) if namespaces else (None,)
        self.stores: dict[Kind, tuple[Store, ...]] = {
            kind: tuple(Store(kind, ns) for ns in scopes) for kind in kinds
        }

    def store(self, kind: Kind, namespace: str | None) -> Store:
        for store in self.stores[kind]:
            if store.namespace == namespace:
                return store
        raise KeyError(f"no store of {kind.plural} for namespace {namespace!r}")

    def reader(self, kind: Kind) -> Reader:
        return Reader(self.api, kind, self.stores.get(kind, ()), sync_wait=self.sync_wait)

    def all_stores(self) -> list[Store]:
        return [store for stores in self.stores.values() for store in stores]

    def synced(self) -> bool:
        return all(store.synced for store in self.all_stores())

    def sizes(self) -> dict[str, int]:
        """Objects held per kind (for memory checks and /metrics)."""
        return {kind.plural: sum(len(s) for s in stores) for kind, stores in self.stores.items()}


def reader_of(api: KubeApi, kind: Kind, cache: Cache | None) -> Reader:
    """The cache's reader of ``kind``, or a GET-only reader when there is no cache."""
    return cache.reader(kind) if cache is not None and kind in cache.stores else Reader(api, kind)


DEPLOYMENTS = Kind("Deployment", "apps", "v1", "deployments")
SERVICES = Kind("Service", "", "v1", "services")
