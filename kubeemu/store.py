"""The object store: kube-apiserver's storage semantics over an in-memory map.

One lock guards everything; every write takes the next value of one global, monotonically
increasing ``resourceVersion`` and appends a watch event to a history kept for
``history_seconds`` (5 minutes, as kube-apiserver's etcd compaction interval) and at most
``history_size`` events; watches from before the oldest kept event get 410 Gone.
Objects are never mutated in place once stored: readers may share them until they copy.
"""

from __future__ import annotations

import base64
import bisect
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubeemu import builtins
from kubeemu.errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
    qualified,
)
from kubeemu.patch import json_patch, merge_patch, strategic_merge_patch
from kubeemu.registry import Registry, ResourceType
from kubeemu.selectors import Matcher, selector_string

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped kinds


@dataclass(frozen=True)
class WatchEvent:
    """One change, as kept in the watch history."""

    rv: int
    type: str
    store_key: tuple[str, str]
    obj: Obj
    #: The object before a MODIFIED change (lets selector-filtered watches turn a change
    #: into ADDED or DELETED when an object starts or stops matching, as apiserver does).
    prev: Obj | None = None


def clone(value: Any) -> Any:
    """Deep copy of JSON-shaped data (several times faster than ``copy.deepcopy``)."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""apiserver's alphabet of generated name suffixes: no vowels, no confusable characters."""


def _rand_suffix(n: int = 5) -> str:
    return "".join(random.choice(NAME_ALPHABET) for _ in range(n))


def get_path(obj: Any, dotted: str) -> Any:
    cur = obj
    for part in dotted.strip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def set_path(obj: Obj, dotted: str, value: Any) -> None:
    parts = dotted.strip(".").split(".")
    cur = obj
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value


#: Kinds whose ``/status`` strategy keeps annotation changes (apps/v1 Deployment, ReplicaSet).
_STATUS_KEEPS_ANNOTATIONS = frozenset({"Deployment", "ReplicaSet"})

PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+json": "apply",
}


class Store:
    """All objects, the resourceVersion counter and the watch history."""

    def __init__(
        self,
        registry: Registry,
        *,
        history_size: int = 100_000,
        history_seconds: float = 300.0,
    ) -> None:
        self.registry = registry
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        """Notified after every write (what :meth:`wait_for_revision` waits on)."""
        self._kind_changed: dict[tuple[str, str], threading.Condition] = {}
        self._rv = 0
        self._objects: dict[tuple[str, str], dict[Key, Obj]] = {}
        self._history: list[WatchEvent] = []
        self._history_rvs: list[int] = []
        self._history_times: list[float] = []
        self._history_size = history_size
        #: kube-apiserver compacts etcd every 5 minutes (``--etcd-compaction-interval``):
        #: events older than this are forgotten, so a watch resumed from before gets 410.
        self.history_seconds = history_seconds
        #: Highest resourceVersion whose event was dropped from the history.
        self.compacted_rv = 0
        self._listeners: list[Callable[[WatchEvent], None]] = []

    # ---- bookkeeping -------------------------------------------------------------------
    @property
    def resource_version(self) -> int:
        with self.lock:
            return self._rv

    def add_listener(self, fn: Callable[[WatchEvent], None]) -> None:
        """``fn`` runs under the store lock after every write: keep it tiny (set a flag)."""
        with self.lock:
            self._listeners.append(fn)

    def _emit(self, type_: str, rt: ResourceType, obj: Obj, prev: Obj | None = None) -> None:
        ev = WatchEvent(int(obj["metadata"]["resourceVersion"]), type_, rt.store_key, obj, prev)
        self._history.append(ev)
        self._history_rvs.append(ev.rv)
        self._history_times.append(time.monotonic())
        if len(self._history) > self._history_size * 2:
            self._trim(self._history_size)
        self._expire()
        for fn in self._listeners:
            fn(ev)
        self.changed.notify_all()
        watching = self._kind_changed.get(rt.store_key)
        if watching is not None:
            watching.notify_all()

    def kind_changed(self, store_key: tuple[str, str]) -> threading.Condition:
        """The condition a watch of one kind waits on: notified by that kind's changes only,
        as kube-apiserver's watch cache dispatches an event to the watchers of its resource
        (one condition for all made every watch thread wake, and look, at every write)."""
        with self.lock:
            cond = self._kind_changed.get(store_key)
            if cond is None:
                cond = self._kind_changed[store_key] = threading.Condition(self.lock)
            return cond

    def wake_watches(self) -> None:
        """Wake every waiting watch (to see that it was dropped or the server stops)."""
        with self.lock:
            self.changed.notify_all()
            for cond in self._kind_changed.values():
                cond.notify_all()

    def _trim(self, keep: int) -> None:
        drop = len(self._history) - keep
        if drop <= 0:
            return
        self.compacted_rv = self._history_rvs[drop - 1]
        del self._history[:drop]
        del self._history_rvs[:drop]
        del self._history_times[:drop]

    def _expire(self) -> None:
        """Time-based compaction: drop events older than ``history_seconds``."""
        cutoff = time.monotonic() - self.history_seconds
        drop = bisect.bisect_left(self._history_times, cutoff)
        if drop:
            self._trim(len(self._history) - drop)

    def compact(self, keep: int = 0) -> int:
        """Forget all but the last ``keep`` watch events; returns the compacted revision.

        A watch from an older resourceVersion then gets ``410 Gone``."""
        with self.lock:
            self._trim(keep)
            if keep == 0:
                self.compacted_rv = self._rv
            return self.compacted_rv

    def events_after(self, rv: int) -> list[WatchEvent] | None:
        """Events with resourceVersion > ``rv``, or None when ``rv`` is too old."""
        with self.lock:
            self._expire()
            if rv < self.compacted_rv:
                return None
            idx = bisect.bisect_right(self._history_rvs, rv)
            return self._history[idx:]

    def wait_for_revision(self, rv: int, timeout: float) -> bool:
        """Block until the store has reached resourceVersion ``rv`` (False after ``timeout``
        seconds), as the watch cache's ``waitUntilFreshAndBlock`` does."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self._rv < rv:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(timeout=left)
            return True

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _bucket(self, rt: ResourceType) -> dict[Key, Obj]:
        return self._objects.setdefault(rt.store_key, {})

    @staticmethod
    def _key(rt: ResourceType, namespace: str, name: str) -> Key:
        """An object's key in its bucket (the namespace ignored for cluster-scoped kinds)."""
        return (namespace if rt.namespaced else "", name)

    @staticmethod
    def present(rt: ResourceType, obj: Obj) -> Obj:
        """A deep copy of a stored object as seen through ``rt``'s version."""
        out: Obj = clone(obj)
        out["apiVersion"] = rt.api_version
        out["kind"] = rt.kind
        return out

    # ---- reads -------------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        with self.lock:
            obj = self._bucket(rt).get((namespace, name))
            if obj is None:
                raise not_found(rt.plural, rt.group, name)
            return self.present(rt, obj)

    def raw(self, rt: ResourceType, namespace: str, name: str) -> Obj | None:
        """The stored object itself (do not mutate), or None."""
        with self.lock:
            return self._bucket(rt).get((namespace, name))

    def list_objects(
        self,
        rt: ResourceType,
        namespace: str | None,
        match: Matcher,
        *,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> Obj:
        """A ``<Kind>List`` of matching objects in key order, with the list resourceVersion."""
        start: Key | None = None
        if continue_token:
            try:
                ns_name = json.loads(base64.b64decode(continue_token))["start"]
                start = (str(ns_name[0]), str(ns_name[1]))
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid") from None
        with self.lock:
            items: list[Obj] = []
            more = False
            remaining = 0
            for k, obj in sorted(self._bucket(rt).items()):
                if namespace is not None and k[0] != namespace:
                    continue
                if start is not None and k <= start:
                    continue
                if not match(obj):
                    continue
                if limit and len(items) >= limit:
                    more = True
                    remaining += 1
                    continue
                items.append(obj)
            rv = str(self._rv)
            last = (
                (items[-1]["metadata"].get("namespace", ""), items[-1]["metadata"]["name"])
                if items
                else None
            )
            presented = [self.present(rt, o) for o in items]
        meta: Obj = {"resourceVersion": rv}
        if more and last is not None:
            meta["continue"] = base64.b64encode(
                json.dumps({"rv": rv, "start": list(last)}).encode()
            ).decode()
            meta["remainingItemCount"] = remaining
        return {
            "kind": rt.list_kind_name,
            "apiVersion": rt.api_version,
            "metadata": meta,
            "items": presented,
        }

    def snapshot(self, rt: ResourceType, namespace: str | None) -> tuple[list[Obj], int]:
        """Current objects (stored references) and the revision they are consistent with."""
        with self.lock:
            objs = [
                o
                for k, o in sorted(self._bucket(rt).items())
                if namespace is None or k[0] == namespace
            ]
            return objs, self._rv

    def all_of(self, group: str, plural: str) -> list[Obj]:
        with self.lock:
            return list(self._objects.get((group, plural), {}).values())

    # ---- writes ------------------------------------------------------------------------
    def _check_kind(self, rt: ResourceType, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request was not a JSON object")
        api_version = body.get("apiVersion")
        if (
            api_version
            and api_version.split("/")[0] != rt.api_version.split("/")[0]
            and (api_version != rt.api_version)
        ):
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rt.api_version})"
            )
        kind = body.get("kind")
        if kind and kind != rt.kind:
            raise bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        return body

    def _admit(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        """Defaults, pruning and validation; raises 422 with every cause."""
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        causes = builtins.name_causes(rt, obj["metadata"]["name"]) if old is None else []
        if rt.builtin:
            builtins.decode(rt, obj)
            builtins.apply_defaults(rt, obj)
            causes += builtins.validate(rt, obj, old)
        elif rt.schema is not None:
            rt.schema.prune(obj)
            rt.schema.apply_defaults(obj)
            causes += rt.schema.errors(obj)
        meta = obj.get("metadata") or {}
        for field in ("labels", "annotations"):
            val = meta.get(field)
            if val is not None and (
                not isinstance(val, dict) or not all(isinstance(v, str) for v in val.values())
            ):
                causes.append(
                    (
                        "FieldValueTypeInvalid",
                        f"metadata.{field}",
                        f"metadata.{field}: Invalid value: must be a map of strings",
                    )
                )
        if causes:
            raise invalid(rt.kind, rt.group, meta.get("name", ""), causes)

    def create(
        self,
        rt: ResourceType,
        namespace: str,
        body: Any,
        *,
        dry_run: bool = False,
        present: bool = True,
    ) -> Obj:
        """Create; returns the stored object as seen through ``rt`` (or ``{}`` when
        ``present`` is False, which spares a copy)."""
        obj = clone(self._check_kind(rt, body))
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if meta.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        with self.lock:
            if not meta.get("name"):
                if meta.get("generateName"):
                    meta["name"] = meta["generateName"] + _rand_suffix()
                else:
                    raise invalid(
                        rt.kind,
                        rt.group,
                        "",
                        [
                            (
                                "FieldValueRequired",
                                "metadata.name",
                                "metadata.name: Required value: name or generateName is required",
                            )
                        ],
                    )
            name = meta["name"]
            if rt.namespaced:
                ns_rt = self.registry.lookup("", "v1", "namespaces")
                assert ns_rt is not None
                ns_obj = self._bucket(ns_rt).get(("", namespace))
                if ns_obj is None:
                    raise not_found("namespaces", "", namespace)
                if ns_obj["metadata"].get("deletionTimestamp"):
                    raise ApiError(
                        403,
                        f'{qualified(rt.plural, rt.group)} "{name}" is forbidden: unable to '
                        f"create new content in namespace {namespace} because it is being "
                        "terminated",
                        reason="Forbidden",
                        details={
                            "name": name,
                            **({"group": rt.group} if rt.group else {}),
                            "kind": rt.plural,
                            "causes": [
                                {
                                    "reason": "NamespaceTerminating",
                                    "message": f"namespace {namespace} is being terminated",
                                    "field": "metadata.namespace",
                                }
                            ],
                        },
                    )
            key = self._key(rt, namespace, name)
            if key in self._bucket(rt):
                raise already_exists(rt.plural, rt.group, name)
            if rt.status_subresource and rt.kind not in ("Namespace",):
                obj.pop("status", None)
                if rt.builtin:
                    # kube-apiserver's create strategies reset a built-in object's status to its
                    # zero value, serialized as ``status: {}``; custom resources get none.
                    obj["status"] = {}
            for server_field in ("uid", "creationTimestamp", "deletionTimestamp", "generation"):
                meta.pop(server_field, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if rt.tracks_generation:
                meta["generation"] = 1
            self._admit(rt, obj, None)
            if rt.kind == "CustomResourceDefinition":
                obj["status"] = builtins.crd_status(obj)
            if dry_run:
                return self.present(rt, obj)
            meta["resourceVersion"] = self._next_rv()
            self._bucket(rt)[key] = obj
            if rt.kind == "CustomResourceDefinition":
                self.registry.add_crd(obj)
            self._emit("ADDED", rt, obj)
            return self.present(rt, obj) if present else {}

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        new = clone(self._check_kind(rt, body))
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = new["metadata"] = {}
        if meta.get("name") and meta["name"] != name:
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})"
            )
        if rt.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        key = self._key(rt, namespace, name)
        with self.lock:
            old = self._bucket(rt).get(key)
            if old is None:
                raise not_found(rt.plural, rt.group, name)
            if not meta.get("resourceVersion") and not rt.unconditional_update:
                # genericregistry.Store.Update: a strategy without AllowUnconditionalUpdate
                # (Leases, custom resources) needs the resourceVersion it read.
                raise invalid(
                    rt.plural,
                    rt.group,
                    name,
                    [
                        (
                            "FieldValueInvalid",
                            "metadata.resourceVersion",
                            "metadata.resourceVersion: Invalid value: 0x0: must be specified "
                            "for an update",
                        )
                    ],
                )
            if (
                meta.get("resourceVersion")
                and meta["resourceVersion"] != old["metadata"]["resourceVersion"]
            ):
                raise conflict(rt.plural, rt.group, name)
            if subresource == "status":
                status = new.get("status")
                annotations = meta.get("annotations")
                new = clone(old)
                if status is None:
                    new.pop("status", None)
                else:
                    new["status"] = status
                if rt.kind in _STATUS_KEEPS_ANNOTATIONS and rt.group == "apps":
                    # deploymentStatusStrategy.PrepareForUpdate resets only spec and labels:
                    # the Deployment controller records its revision annotation this way.
                    if annotations:
                        new["metadata"]["annotations"] = annotations
                    else:
                        new["metadata"].pop("annotations", None)
            elif rt.status_subresource:
                if "status" in old:
                    new["status"] = clone(old["status"])
                else:
                    new.pop("status", None)
            meta = new.setdefault("metadata", {})
            for fixed in ("uid", "creationTimestamp", "deletionTimestamp", "generation", "name"):
                if fixed in old["metadata"]:
                    meta[fixed] = old["metadata"][fixed]
                else:
                    meta.pop(fixed, None)
            if rt.namespaced:
                meta["namespace"] = namespace
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            self._admit(rt, new, old)
            if rt.kind == "CustomResourceDefinition" and subresource != "status":
                new["status"] = builtins.crd_status(new)
            if {**new, "apiVersion": old.get("apiVersion")} == old:
                # A no-op write changes nothing, not even the resourceVersion (served versions
                # of a CRD share storage, so apiVersion alone is no change).
                return self.present(rt, old)
            if (
                rt.tracks_generation
                and subresource != "status"
                and (
                    self._spec_part(rt, new) != self._spec_part(rt, old)
                    or (
                        # deploymentStrategy.PrepareForUpdate: "annotation updates bump the
                        # generation because annotations are copied from deployments to their
                        # replica sets" (pkg/registry/apps/deployment/strategy.go).
                        rt.kind == "Deployment"
                        and rt.group == "apps"
                        and (meta.get("annotations") or {})
                        != (old["metadata"].get("annotations") or {})
                    )
                )
            ):
                meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
            if dry_run:
                return self.present(rt, new)
            meta["resourceVersion"] = self._next_rv()
            if meta.get("deletionTimestamp") and not _held(rt, new):
                del self._bucket(rt)[key]
                self._emit("DELETED", rt, new)
                self._after_delete(rt, new)
                return self.present(rt, new)
            self._bucket(rt)[key] = new
            if rt.kind == "CustomResourceDefinition":
                self.registry.add_crd(new)
            self._emit("MODIFIED", rt, new, old)
            return self.present(rt, new)

    @staticmethod
    def _spec_part(rt: ResourceType, obj: Obj) -> Obj:
        skip = {"metadata", "apiVersion", "kind"}
        if rt.status_subresource:
            skip.add("status")
        return {k: v for k, v in obj.items() if k not in skip}

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        patch_body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Obj:
        kind = PATCH_TYPES.get(content_type)
        if kind is None:
            raise ApiError(
                415,
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {', '.join(PATCH_TYPES)}",
            )
        if kind == "strategic" and not rt.builtin:
            raise ApiError(
                415,
                "the body of the request was in an unknown format - accepted media types "
                "include: application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml",
            )
        with self.lock:
            raw = self._bucket(rt).get(self._key(rt, namespace, name))
            if raw is None:
                if kind == "apply":
                    return self.create(rt, namespace, patch_body, dry_run=dry_run)
                raise not_found(rt.plural, rt.group, name)
            current = self.present(rt, raw)
            if kind == "json":
                result = json_patch(current, patch_body)
            elif kind == "strategic":
                if not isinstance(patch_body, dict):
                    raise bad_request("strategic merge patch must be a JSON object")
                result = strategic_merge_patch(current, patch_body)
            else:
                if not isinstance(patch_body, dict):
                    raise bad_request("merge patch must be a JSON object")
                result = merge_patch(current, patch_body)
            if not isinstance(result, dict):
                raise bad_request("the patched object is not a JSON object")
            rmeta = result.setdefault("metadata", {})
            if not isinstance(rmeta, dict):
                raise bad_request("metadata must be an object")
            if not rmeta.get("resourceVersion"):
                rmeta["resourceVersion"] = raw["metadata"]["resourceVersion"]
            return self.update(
                rt, namespace, name, result, subresource=subresource, dry_run=dry_run
            )

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        *,
        propagation: str | None = None,
        precondition_rv: str | None = None,
        precondition_uid: str | None = None,
        dry_run: bool = False,
    ) -> tuple[Obj, bool]:
        """Delete, or mark for deletion (``deletionTimestamp``) while finalizers remain.
        Returns (object, gone).

        ``propagationPolicy`` as kube-apiserver: ``Background`` (the default) removes the
        object now and leaves its dependents to the garbage collector; ``Foreground`` adds
        the ``foregroundDeletion`` finalizer (the collector deletes the dependents first);
        ``Orphan`` adds ``orphan`` (the collector strips the owner references first). A
        Namespace goes ``Terminating``: the namespace controller empties it, then it goes."""
        if propagation not in (None, "", "Background", "Foreground", "Orphan"):
            raise bad_request(
                f'propagationPolicy: Unsupported value: "{propagation}": supported values: '
                '"Foreground", "Background", "Orphan"'
            )
        key = self._key(rt, namespace, name)
        with self.lock:
            old = self._bucket(rt).get(key)
            if old is None:
                raise not_found(rt.plural, rt.group, name)
            if precondition_uid and precondition_uid != old["metadata"]["uid"]:
                raise ApiError(
                    409,
                    f"Precondition failed: UID in precondition: {precondition_uid}, UID in "
                    f"object meta: {old['metadata']['uid']}",
                    reason="Conflict",
                )
            if precondition_rv and precondition_rv != old["metadata"]["resourceVersion"]:
                raise conflict(rt.plural, rt.group, name)
            if dry_run:
                return self.present(rt, old), True
            finalizers = list(old["metadata"].get("finalizers") or [])
            extra = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}.get(propagation or "")
            if extra and extra not in finalizers:
                finalizers.append(extra)
            terminating = rt.kind == "Namespace" and rt.group == ""
            if finalizers or terminating:
                if old["metadata"].get("deletionTimestamp") and finalizers == list(
                    old["metadata"].get("finalizers") or []
                ):
                    return self.present(rt, old), False
                new = clone(old)
                new["metadata"].setdefault("deletionTimestamp", now_rfc3339())
                new["metadata"].setdefault("deletionGracePeriodSeconds", 0)
                if finalizers:
                    new["metadata"]["finalizers"] = finalizers
                if terminating:
                    new.setdefault("status", {})["phase"] = "Terminating"
                new["metadata"]["resourceVersion"] = self._next_rv()
                self._bucket(rt)[key] = new
                self._emit("MODIFIED", rt, new, old)
                return self.present(rt, new), False
            gone = clone(old)
            gone["metadata"]["resourceVersion"] = self._next_rv()
            del self._bucket(rt)[key]
            self._emit("DELETED", rt, gone)
            self._after_delete(rt, gone)
            return self.present(rt, gone), True

    def _after_delete(self, rt: ResourceType, obj: Obj) -> None:
        """A deleted CRD takes its objects with it (at once: the emulator does not model the
        ``customresourcecleanup`` finalizer). Dependents are the garbage collector's."""
        if rt.kind == "CustomResourceDefinition":
            group, plural = obj["spec"]["group"], obj["spec"]["names"]["plural"]
            crt = self.registry.by_store_key(group, plural)
            if crt is not None:
                for o in list(self._objects.get((group, plural), {}).values()):
                    self._force_delete(crt, o)
            self.registry.remove_crd(obj)
            self._objects.pop((group, plural), None)

    def _force_delete(self, rt: ResourceType, obj: Obj) -> None:
        key = self._key(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if self._bucket(rt).pop(key, None) is None:
            return
        gone = clone(obj)
        gone["metadata"]["resourceVersion"] = self._next_rv()
        self._emit("DELETED", rt, gone)
        self._after_delete(rt, gone)

    def rewrite(self, rt: ResourceType, obj: Obj, new: Obj) -> None:
        """A controller-side write of ``new`` in place of the stored ``obj`` without
        admission (finalizers and owner references the garbage collector maintains); an
        object marked for deletion whose last finalizer goes is deleted."""
        key = self._key(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if self._bucket(rt).get(key) is not obj:
            return
        meta = new["metadata"]
        if not meta.get("finalizers"):
            meta.pop("finalizers", None)
        meta["resourceVersion"] = self._next_rv()
        if meta.get("deletionTimestamp") and not _held(rt, new):
            del self._bucket(rt)[key]
            self._emit("DELETED", rt, new)
            self._after_delete(rt, new)
            return
        self._bucket(rt)[key] = new
        self._emit("MODIFIED", rt, new, obj)

    def buckets(self) -> list[tuple[ResourceType, list[Obj]]]:
        """Every stored object with the resource type it is presented through (the caller
        holds the lock)."""
        out = []
        for (group, plural), bucket in self._objects.items():
            rt = self.registry.by_store_key(group, plural)
            if rt is not None and bucket:
                out.append((rt, list(bucket.values())))
        return out

    # ---- /scale ------------------------------------------------------------------------
    def get_scale(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        assert rt.scale is not None
        obj = self.get(rt, namespace, name)
        return self._scale_of(rt, obj)

    @staticmethod
    def _scale_of(rt: ResourceType, obj: Obj) -> Obj:
        assert rt.scale is not None
        meta = obj["metadata"]
        status: Obj = {"replicas": get_path(obj, rt.scale.status_replicas_path) or 0}
        if rt.scale.label_selector_path:
            sel = get_path(obj, rt.scale.label_selector_path)
            if sel:
                status["selector"] = sel
        elif rt.builtin:
            status["selector"] = selector_string((obj.get("spec") or {}).get("selector"))
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: meta[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in meta
            },
            "spec": {"replicas": get_path(obj, rt.scale.spec_replicas_path) or 0},
            "status": status,
        }

    def update_scale(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        content_type: str | None = None,
    ) -> Obj:
        """PUT (``content_type`` None) or PATCH of the Scale view of an object."""
        assert rt.scale is not None
        with self.lock:
            current = self.get(rt, namespace, name)
            scale = self._scale_of(rt, current)
            if content_type is not None:
                kind = PATCH_TYPES.get(content_type)
                if kind == "json":
                    scale = json_patch(scale, body)
                elif kind in ("merge", "strategic", "apply"):
                    scale = merge_patch(scale, body)
                else:
                    raise ApiError(415, "unsupported patch type for scale")
            else:
                scale = body
            if not isinstance(scale, dict):
                raise bad_request("the body of the request was not a JSON object")
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise invalid(
                    "Scale",
                    "autoscaling",
                    name,
                    [
                        (
                            "FieldValueInvalid",
                            "spec.replicas",
                            f"spec.replicas: Invalid value: {replicas}: must be greater than "
                            "or equal to 0",
                        )
                    ],
                )
            rv = (scale.get("metadata") or {}).get("resourceVersion")
            if rv and rv != current["metadata"]["resourceVersion"]:
                raise conflict(rt.plural, rt.group, name)
            set_path(current, rt.scale.spec_replicas_path, replicas)
            updated = self.update(rt, namespace, name, current)
            return self._scale_of(rt, updated)


def _held(rt: ResourceType, obj: Obj) -> bool:
    """Whether finalizers still hold an object marked for deletion (a Namespace also by its
    ``spec.finalizers``, which the namespace controller removes once it is empty)."""
    if obj["metadata"].get("finalizers"):
        return True
    return bool(
        rt.kind == "Namespace" and rt.group == "" and (obj.get("spec") or {}).get("finalizers")
    )


def pod_name(prefix: str) -> str:
    """``<prefix>-xxxxx`` as a ReplicaSet names its pods."""
    return f"{prefix}-{_rand_suffix()}"


__all__ = [
    "NAME_ALPHABET",
    "PATCH_TYPES",
    "Store",
    "WatchEvent",
    "get_path",
    "now_rfc3339",
    "pod_name",
    "set_path",
]
