"""The garbage collector and the namespace controller (kube-controller-manager's
``pkg/controller/garbagecollector`` and ``pkg/controller/namespace``), run in a background
thread when the write events say there is garbage (the graph builder's way), not periodically:

* a dependent all of whose ``ownerReferences`` point at objects that no longer exist (by
  uid) is deleted in the background; references to absent owners are dropped from a
  dependent that still has another owner;
* an owner being deleted with ``propagationPolicy: Foreground`` (finalizer
  ``foregroundDeletion``) has its dependents deleted first (those with dependents of their own
  in the foreground too); once no dependent with ``blockOwnerDeletion`` is left, the
  finalizer is removed and the owner goes;
* an owner deleted with ``Orphan`` (finalizer ``orphan``) first has its references removed
  from its dependents, which stay;
* a Namespace marked for deletion (phase ``Terminating``) has its content deleted; objects
  with finalizers hold it (condition ``NamespaceFinalizersRemaining``) until they go; then
  its ``kubernetes`` finalizer is removed and it vanishes.

Objects with finalizers are never removed here, only marked (``deletionTimestamp``): whoever
owns the finalizer removes it.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any

from kubeemu.errors import ApiError
from kubeemu.registry import ResourceType
from kubeemu.store import Obj, Store, WatchEvent, clone, now_rfc3339

_MAX_PASSES = 50
_DEPENDENT_DELAY_SECONDS = 1.0
_SAFETY_PASS_SECONDS = 30.0
"""A full pass even when nothing woke the collector (a missed wake-up is not forever)."""


class GarbageCollector:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._wake = threading.Event()
        self._deletion = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The graph, kept from the write events (kube's graph builder): the uids that exist,
        # each dependent's owners, and how many dependents each owner has. It says when a
        # pass can find garbage, so that a pass (a walk of every object under the store lock)
        # runs only then: with 3,000 Rollouts a pass takes about half a second, and one per
        # second cost the emulator most of its CPU.
        self._uids: set[str] = set()
        self._owners: dict[str, frozenset[str]] = {}
        self._dependents: dict[str, int] = {}
        self._deleting: set[str] = set()
        """uids marked for deletion (a foreground owner waits for its dependents to go)."""
        self._terminating: set[str] = set()
        """Namespaces marked for deletion (each waits for its content to go)."""
        with store.lock:
            for _, objs in store.buckets():
                for o in objs:
                    self._index(o)
            store.add_listener(self._on_event)

    def _index(self, obj: Obj) -> frozenset[str]:
        meta = obj["metadata"]
        uid = str(meta.get("uid"))
        self._uids.add(uid)
        namespace = meta["name"] if obj.get("kind") == "Namespace" else None
        if meta.get("deletionTimestamp"):
            self._deleting.add(uid)
            if namespace is not None:
                self._terminating.add(namespace)
        else:
            self._deleting.discard(uid)
        owners = frozenset(str(r.get("uid")) for r in meta.get("ownerReferences") or [])
        old = self._owners.get(uid, frozenset())
        if owners != old:
            self._count(old - owners, -1)
            self._count(owners - old, +1)
            if owners:
                self._owners[uid] = owners
            else:
                self._owners.pop(uid, None)
        return owners

    def _unindex(self, obj: Obj) -> None:
        uid = str(obj["metadata"].get("uid"))
        self._uids.discard(uid)
        self._deleting.discard(uid)
        if obj.get("kind") == "Namespace":
            self._terminating.discard(obj["metadata"]["name"])
        self._count(self._owners.pop(uid, frozenset()), -1)

    def _count(self, owners: frozenset[str], delta: int) -> None:
        for owner in owners:
            n = self._dependents.get(owner, 0) + delta
            if n > 0:
                self._dependents[owner] = n
            else:
                self._dependents.pop(owner, None)

    def _on_event(self, ev: WatchEvent) -> None:
        # Under the store lock: keep the graph and note whether a pass can find work. Garbage
        # appears only when an owner that has dependents goes, when a deletion begins
        # (namespaces, foreground and orphan finalizers), or when a dependent names an owner
        # that does not exist. A status write, an Event or a pod coming and going is nothing.
        meta = ev.obj["metadata"]
        if ev.type == "DELETED":
            uid = str(meta.get("uid"))
            owned = self._dependents.get(uid, 0) > 0  # its dependents are garbage now
            waited_for = bool(self._owners.get(uid, frozenset()) & self._deleting) or (
                meta.get("namespace", "") in self._terminating
            )  # a foreground owner or a terminating namespace may go now
            self._unindex(ev.obj)
            if owned or waited_for:
                self._deletion.set()
                self._wake.set()
            return
        owners = self._index(ev.obj)
        if meta.get("deletionTimestamp"):
            self._deletion.set()
            self._wake.set()
        elif any(owner not in self._uids for owner in owners):
            self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kubeemu-gc", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._deletion.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=_SAFETY_PASS_SECONDS)
            if not self._deletion.is_set():
                # Only dependents were written (a Deployment's ReplicaSets and pods): collect
                # within a second, in one pass with whatever else comes meanwhile (kube's
                # collector is asynchronous too). A deletion is acted on at once.
                self._deletion.wait(_DEPENDENT_DELAY_SECONDS)
            self._wake.clear()
            self._deletion.clear()
            if self._stop.is_set():
                return
            try:
                self.collect()
            except Exception:  # keep collecting on the next deletion
                traceback.print_exc()

    def collect(self) -> int:
        """Run passes until nothing changes; returns the number of writes."""
        total = 0
        for _ in range(_MAX_PASSES):
            with self._store.lock:
                changed = self._pass()
            total += changed
            if not changed:
                break
        return total

    # ---- one pass, under the store lock ----------------------------------------------------
    def _pass(self) -> int:
        store = self._store
        everything = store.buckets()
        uids = {o["metadata"]["uid"] for _, objs in everything for o in objs}
        dependents: dict[str, list[tuple[ResourceType, Obj]]] = {}
        for rt, objs in everything:
            for o in objs:
                for ref in o["metadata"].get("ownerReferences") or []:
                    dependents.setdefault(str(ref.get("uid")), []).append((rt, o))
        writes = 0
        for rt, objs in everything:
            for o in objs:
                meta = o["metadata"]
                finalizers = meta.get("finalizers") or []
                if meta.get("deletionTimestamp"):
                    if rt.kind == "Namespace" and rt.group == "":
                        writes += self._terminate_namespace(rt, o, everything)
                    elif "orphan" in finalizers:
                        writes += self._orphan(rt, o, dependents.get(meta["uid"], []))
                    elif "foregroundDeletion" in finalizers:
                        writes += self._foreground(rt, o, dependents)
                refs = meta.get("ownerReferences") or []
                absent = [r for r in refs if r.get("uid") not in uids]
                if not absent or self._stored(rt, o) is not o:
                    continue
                if len(absent) == len(refs):
                    if not meta.get("deletionTimestamp"):
                        writes += self._delete(rt, o, None)
                else:
                    new = clone(o)
                    new["metadata"]["ownerReferences"] = [r for r in refs if r not in absent]
                    store.rewrite(rt, o, new)
                    writes += 1
        return writes

    def _stored(self, rt: ResourceType, o: Obj) -> Obj | None:
        return self._store.raw(rt, o["metadata"].get("namespace", ""), o["metadata"]["name"])

    def _delete(self, rt: ResourceType, o: Obj, propagation: str | None) -> int:
        try:
            self._store.delete(
                rt,
                o["metadata"].get("namespace", ""),
                o["metadata"]["name"],
                propagation=propagation,
            )
        except ApiError:
            return 0
        return 1

    def _drop_finalizer(self, rt: ResourceType, o: Obj, finalizer: str) -> int:
        new = clone(o)
        new["metadata"]["finalizers"] = [
            f for f in new["metadata"].get("finalizers") or [] if f != finalizer
        ]
        self._store.rewrite(rt, o, new)
        return 1

    def _orphan(self, rt: ResourceType, owner: Obj, deps: list[tuple[ResourceType, Obj]]) -> int:
        uid = owner["metadata"]["uid"]
        writes = 0
        for drt, d in deps:
            current = self._stored(drt, d)
            if current is None:
                continue
            new = clone(current)
            new["metadata"]["ownerReferences"] = [
                r for r in new["metadata"].get("ownerReferences") or [] if r.get("uid") != uid
            ]
            if not new["metadata"]["ownerReferences"]:
                del new["metadata"]["ownerReferences"]
            self._store.rewrite(drt, current, new)
            writes += 1
        return writes + self._drop_finalizer(rt, owner, "orphan")

    def _foreground(
        self, rt: ResourceType, owner: Obj, dependents: dict[str, list[tuple[ResourceType, Obj]]]
    ) -> int:
        uid = owner["metadata"]["uid"]
        writes = 0
        blocking = 0
        for drt, d in dependents.get(uid, []):
            current = self._stored(drt, d)
            if current is None:
                continue
            if not current["metadata"].get("deletionTimestamp"):
                policy = "Foreground" if dependents.get(current["metadata"]["uid"]) else None
                writes += self._delete(drt, current, policy)
            still = self._stored(drt, d)
            if still is not None and any(
                r.get("uid") == uid and r.get("blockOwnerDeletion")
                for r in still["metadata"].get("ownerReferences") or []
            ):
                blocking += 1
        if blocking == 0:
            writes += self._drop_finalizer(rt, owner, "foregroundDeletion")
        return writes

    def _terminate_namespace(
        self, rt: ResourceType, ns: Obj, everything: list[tuple[ResourceType, list[Obj]]]
    ) -> int:
        name = ns["metadata"]["name"]
        writes = 0
        remaining: dict[str, int] = {}
        content = 0
        for crt, objs in everything:
            if not crt.namespaced:
                continue
            for o in objs:
                if o["metadata"].get("namespace") != name or self._stored(crt, o) is not o:
                    continue
                if not o["metadata"].get("deletionTimestamp"):
                    writes += self._delete(crt, o, None)
                if self._stored(crt, o) is not None:
                    content += 1
                    for f in self._stored(crt, o)["metadata"].get("finalizers") or []:  # type: ignore[index]
                        remaining[f] = remaining.get(f, 0) + 1
        if content:
            return writes + self._namespace_conditions(rt, ns, remaining)
        new = clone(ns)
        new.setdefault("spec", {})["finalizers"] = [
            f for f in (new["spec"].get("finalizers") or []) if f != "kubernetes"
        ]
        if not new["spec"]["finalizers"]:
            del new["spec"]["finalizers"]
        self._store.rewrite(rt, ns, new)
        return writes + 1

    def _namespace_conditions(self, rt: ResourceType, ns: Obj, remaining: dict[str, int]) -> int:
        """The namespace controller's report of what holds a Terminating namespace."""
        if not remaining:
            return 0
        detail = ", ".join(f"{f} in {n} resource instances" for f, n in sorted(remaining.items()))
        cond: dict[str, Any] = {
            "type": "NamespaceFinalizersRemaining",
            "status": "True",
            "reason": "SomeFinalizersRemain",
            "message": f"Some content in the namespace has finalizers remaining: {detail}",
        }
        status = ns.get("status") or {}
        old = [c for c in status.get("conditions") or [] if c.get("type") == cond["type"]]
        if old and {k: v for k, v in old[0].items() if k != "lastTransitionTime"} == cond:
            return 0
        new = clone(ns)
        cond["lastTransitionTime"] = now_rfc3339()
        others = [c for c in status.get("conditions") or [] if c.get("type") != cond["type"]]
        new.setdefault("status", {})["conditions"] = [*others, cond]
        self._store.rewrite(rt, ns, new)
        return 1
