"""The Deployment and ReplicaSet controllers, plus the kubelet's part (pod readiness).

Ported from kube-controller-manager's ``pkg/controller/deployment`` (rolling.go, recreate.go,
sync.go, progress.go, util/deployment_util.go) and ``pkg/controller/replicaset``:

* a Deployment owns one ReplicaSet per pod template (``<name>-<pod-template-hash>``, labels
  and selector with ``pod-template-hash``, annotations ``deployment.kubernetes.io/revision``,
  ``desired-replicas``, ``max-replicas``); the Deployment carries the revision of its new
  ReplicaSet. Going back to an older template re-uses its ReplicaSet with the next revision
  (``revision-history`` keeps the old numbers), so ``kubectl rollout history/undo`` work.
* RollingUpdate: the new ReplicaSet grows while the total stays within
  ``replicas + maxSurge`` (percent rounded up); old ReplicaSets shrink, unhealthy pods
  first, while at least ``replicas - maxUnavailable`` (percent rounded down) pods stay
  available; both zero means ``maxUnavailable = 1``. Recreate: old pods go first, then the
  new ReplicaSet is created at full size.
* a pod is available once Ready for ``minReadySeconds``; ReplicaSet and Deployment status
  counts are computed as ``calculateStatus`` does; ``Available`` and ``Progressing``
  (``NewReplicaSetCreated``, ``ReplicaSetUpdated``, ``NewReplicaSetAvailable``,
  ``ProgressDeadlineExceeded``) follow ``syncRolloutStatus``, including that a completed
  rollout is not re-estimated on a mere scale-up.
* pods become ready after a delay, never, or crash-loop, per Deployment, on cue.

Simplifications (docs/emulator.md): pods are deleted at once (no graceful termination), a
scale in the middle of a rollout is not distributed proportionally, ``paused`` is ignored,
no hash collisions, no Events.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from kubeemu.errors import ApiError
from kubeemu.registry import Registry, ResourceType
from kubeemu.store import NAME_ALPHABET, Obj, Store, WatchEvent, clone, now_rfc3339, pod_name

BEHAVIOURS = ("ready", "never-ready", "crashloop")
_MAX_BACKOFF = 300.0
DEFAULT_READY_AFTER = 0.2
"""Seconds from a pod's creation to Ready unless a test asks otherwise: small, so suites and
the demo stay fast, yet non-zero, so a rollout has observable intermediate states."""

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
HASH_LABEL = "pod-template-hash"
#: Deployment annotations the controller does not copy to ReplicaSets (deployment_util.go).
_NOT_COPIED = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)


@dataclass(frozen=True)
class _Behaviour:
    kind: str
    ready_after: float
    since: float


@dataclass
class _PodState:
    deployment: tuple[str, str]
    behaviour: _Behaviour
    born: float
    ready_since: float | None = None


def _canonical(value: Any) -> Any:
    """JSON with nulls and empty maps/lists dropped: what Go's zero values serialise to
    differs by client (``kubectl rollout undo`` sends ``creationTimestamp: null`` and
    ``resources: {}``), while the controller compares the decoded structs."""
    if isinstance(value, dict):
        out = {k: _canonical(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def template_hash(template: Any) -> str:
    """A 10-character pod-template-hash, equal for templates equal as Go structs."""
    digest = hashlib.sha256(json.dumps(_canonical(template), sort_keys=True).encode()).digest()
    return "".join(NAME_ALPHABET[b % len(NAME_ALPHABET)] for b in digest[:10])


def _scaled(raw: Any, total: int, *, round_up: bool) -> int:
    """``intstr.GetScaledValueFromIntOrPercent``."""
    if isinstance(raw, str) and raw.endswith("%"):
        try:
            pct = int(raw[:-1])
        except ValueError:
            return 0
        return -(-pct * total // 100) if round_up else pct * total // 100
    try:
        return int(raw)
    except (TypeError, ValueError):
        return 0


def fenceposts(spec: Obj) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) in pods: ``deploymentutil.ResolveFenceposts``."""
    replicas = int(spec.get("replicas", 1))
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    surge = _scaled(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = _scaled(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        # "Validation should never allow the user to explicitly use zero values for both
        # maxSurge maxUnavailable. Due to rounding down maxUnavailable though, it may
        # resolve to zero. If both fenceposts resolve to zero, then we should set
        # maxUnavailable to 1 on the basis that we want to proceed with a rollout."
        unavailable = 1
    return surge, unavailable


def max_unavailable(spec: Obj) -> int:
    """``deploymentutil.MaxUnavailable``: 0 for Recreate or zero replicas."""
    replicas = int(spec.get("replicas", 1))
    if _is_recreate(spec) or replicas == 0:
        return 0
    return min(fenceposts(spec)[1], replicas)


def _is_recreate(spec: Obj) -> bool:
    return bool((spec.get("strategy") or {}).get("type") == "Recreate")


def _revision(rs: Obj) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _replicas(rs: Obj) -> int:
    return int((rs.get("spec") or {}).get("replicas", 0))


def _st(rs: Obj, field: str) -> int:
    return int((rs.get("status") or {}).get(field, 0))


def _creation_order(rs: Obj) -> tuple[str, str]:
    return (rs["metadata"].get("creationTimestamp", ""), rs["metadata"]["name"])


class PodSimulator:
    """Runs in a background thread; reacts to Deployment/ReplicaSet/Pod changes and timers."""

    def __init__(
        self, store: Store, registry: Registry, *, ready_after: float = DEFAULT_READY_AFTER
    ) -> None:
        self._store = store
        dep_rt = registry.lookup("apps", "v1", "deployments")
        rs_rt = registry.lookup("apps", "v1", "replicasets")
        pod_rt = registry.lookup("", "v1", "pods")
        assert dep_rt is not None and rs_rt is not None and pod_rt is not None
        self._dep_rt: ResourceType = dep_rt
        self._rs_rt: ResourceType = rs_rt
        self._pod_rt: ResourceType = pod_rt
        self.default_ready_after = ready_after
        self._lock = threading.Lock()
        self._dirty: set[tuple[str, str]] = set()
        self._due: dict[tuple[str, str], float] = {}
        self._behaviours: dict[tuple[str, str], _Behaviour] = {}
        self._pods: dict[str, _PodState] = {}
        #: Monotonic time of the last progress of a rollout (the condition's lastUpdateTime,
        #: with sub-second precision), from which the progress deadline runs.
        self._progress: dict[tuple[str, str], float] = {}
        #: Controller-owner uid -> {child uid: (namespace, name)} for ReplicaSets and pods,
        #: kept from the store's events, so a reconcile reads only its own objects.
        self._children: dict[str, dict[str, tuple[str, str]]] = {}
        self._owner_of: dict[str, str] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        store.add_listener(self._on_event)

    # ---- public ------------------------------------------------------------------------
    def set_behaviour(
        self,
        namespace: str,
        deployment_name: str,
        behaviour: str,
        ready_after_seconds: float | None = None,
        *,
        new_pods_only: bool = False,
    ) -> None:
        """How the pods of one Deployment behave from now on.

        ``ready``: Running and Ready ``ready_after_seconds`` after creation.
        ``never-ready``: Running, readiness never succeeds.
        ``crashloop``: containers wait in ``CrashLoopBackOff``, ``restartCount`` grows with
        exponential back-off starting at ``ready_after_seconds``.

        ``ready_after_seconds`` defaults to the emulator's ``pod_ready_seconds``. Existing
        pods take the new behaviour too (a Running pod stays Running under ``ready``) unless
        ``new_pods_only``: then only pods created from now on do, e.g. the new pods of a
        rollout that follows.
        """
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {set(BEHAVIOURS)}, got {behaviour!r}")
        delay = self.default_ready_after if ready_after_seconds is None else ready_after_seconds
        if delay < 0:
            raise ValueError("ready_after_seconds must be >= 0")
        key = (namespace, deployment_name)
        beh = _Behaviour(behaviour, delay, time.monotonic())
        with self._lock:
            self._behaviours[key] = beh
            if not new_pods_only:
                for state in self._pods.values():
                    if state.deployment == key:
                        state.behaviour = beh
            self._dirty.add(key)
        self._wake.set()

    def behaviour(self, namespace: str, deployment_name: str) -> str:
        with self._lock:
            b = self._behaviours.get((namespace, deployment_name))
        return b.kind if b else "ready"

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kubeemu-deployments", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ---- loop --------------------------------------------------------------------------
    def _owner(self, meta: Obj, kind: str) -> str | None:
        for ref in meta.get("ownerReferences") or []:
            if ref.get("kind") == kind and ref.get("controller"):
                return str(ref.get("name"))
        return None

    def _index(self, ev: WatchEvent) -> None:
        meta = ev.obj["metadata"]
        uid = meta.get("uid", "")
        owner = next(
            (
                str(r.get("uid"))
                for r in meta.get("ownerReferences") or []
                if r.get("controller") and r.get("kind") in ("Deployment", "ReplicaSet")
            ),
            None,
        )
        with self._lock:
            before = self._owner_of.pop(uid, None)
            if before is not None:
                children = self._children.get(before)
                if children is not None:
                    children.pop(uid, None)
                    if not children:
                        del self._children[before]
            if owner is not None and ev.type != "DELETED":
                self._owner_of[uid] = owner
                self._children.setdefault(owner, {})[uid] = (
                    meta.get("namespace", ""),
                    meta["name"],
                )

    def _owned(self, rt: ResourceType, owner_uid: str) -> list[Obj]:
        """Live (not being deleted) objects of ``rt`` whose controller is ``owner_uid``."""
        with self._lock:
            keys = list(self._children.get(owner_uid, {}).values())
        out = []
        for ns, name in keys:
            obj = self._store.raw(rt, ns, name)
            if (
                obj is not None
                and not obj["metadata"].get("deletionTimestamp")
                and any(
                    r.get("uid") == owner_uid and r.get("controller")
                    for r in obj["metadata"].get("ownerReferences") or []
                )
            ):
                out.append(obj)
        return out

    def _on_event(self, ev: WatchEvent) -> None:
        """Runs under the store lock: find the Deployment concerned and mark it dirty."""
        if ev.store_key in (("apps", "replicasets"), ("", "pods")):
            self._index(ev)
        meta = ev.obj["metadata"]
        ns = meta.get("namespace", "")
        name: str | None = None
        if ev.store_key == ("apps", "deployments"):
            name = meta["name"]
        elif ev.store_key == ("apps", "replicasets"):
            name = self._owner(meta, "Deployment")
        elif ev.store_key == ("", "pods"):
            if ev.type == "DELETED":
                with self._lock:
                    state = self._pods.pop(meta.get("uid", ""), None)
                if state is not None:
                    name = state.deployment[1]
            else:
                rs_name = self._owner(meta, "ReplicaSet")
                rs = self._store.raw(self._rs_rt, ns, rs_name) if rs_name else None
                name = self._owner(rs["metadata"], "Deployment") if rs else None
        if name is None:
            return
        with self._lock:
            self._dirty.add((ns, name))
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                now = time.monotonic()
                keys = set(self._dirty)
                self._dirty.clear()
                for key, when in list(self._due.items()):
                    if when <= now:
                        keys.add(key)
                        del self._due[key]
                nxt = min(self._due.values(), default=now + 1.0)
            for key in sorted(keys):
                try:
                    self._reconcile(*key)
                except ApiError:
                    # A racing client write (e.g. the namespace went away): the next event
                    # retriggers this Deployment.
                    self._schedule(key, 0.05)
                except Exception:  # keep simulating the other Deployments
                    traceback.print_exc()
                    self._schedule(key, 1.0)
            if not keys:
                self._wake.wait(timeout=max(0.0, min(nxt - time.monotonic(), 1.0)))
                self._wake.clear()

    def _schedule(self, key: tuple[str, str], delay: float) -> None:
        when = time.monotonic() + max(delay, 0.0)
        with self._lock:
            if key not in self._due or self._due[key] > when:
                self._due[key] = when
        self._wake.set()

    # ---- the Deployment controller -----------------------------------------------------
    def _reconcile(self, namespace: str, name: str) -> None:
        store = self._store
        key = (namespace, name)
        with store.lock:
            dep = store.raw(self._dep_rt, namespace, name)
            if dep is None or dep["metadata"].get("deletionTimestamp"):
                with self._lock:
                    self._progress.pop(key, None)
                return
            now = time.monotonic()
            wake: list[float] = []
            uid = dep["metadata"]["uid"]
            rses = sorted(self._owned(self._rs_rt, uid), key=_creation_order)
            pods_by_rs = {
                rs["metadata"]["uid"]: self._owned(self._pod_rt, rs["metadata"]["uid"])
                for rs in rses
            }
            # The ReplicaSet controller's pass: pods to spec.replicas, their states, status.
            rses = [
                self._sync_replicaset(dep, rs, pods_by_rs.get(rs["metadata"]["uid"], []), now, wake)
                for rs in rses
            ]
            spec = dep.get("spec") or {}
            h = template_hash(spec.get("template") or {})
            new_rs = next(
                (rs for rs in rses if (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == h),
                None,
            )
            old = [rs for rs in rses if rs is not new_rs]
            progressing: tuple[str, str, str] | None = None
            if new_rs is not None:
                new_rs = self._sync_revision(dep, new_rs, old)
            if _is_recreate(spec):
                new_rs, created = self._rollout_recreate(dep, new_rs, old, pods_by_rs)
            else:
                new_rs, created = self._rollout_rolling(dep, new_rs, old)
            if created is not None:
                progressing = (
                    "True",
                    "NewReplicaSetCreated",
                    f'Created new replica set "{created}"',
                )
            rses = [*old, *([new_rs] if new_rs is not None else [])]
            status = self._write_status(
                dep, new_rs, rses, progressing=progressing, now=now, wake=wake
            )
            if new_rs is not None and self._complete(dep, status):
                self._cleanup(dep, old)
        if wake:
            self._schedule(key, min(wake))

    def _sync_revision(self, dep: Obj, new_rs: Obj, old: list[Obj]) -> Obj:
        """Going back to an older template: its ReplicaSet gets the next revision
        (``SetNewReplicaSetAnnotations``), the old number kept in ``revision-history``."""
        max_old = max((_revision(rs) for rs in old), default=0)
        current = _revision(new_rs)
        if current > max_old:
            return new_rs
        body = clone(new_rs)
        ann = body["metadata"].setdefault("annotations", {})
        history = [h for h in (ann.get(REVISION_HISTORY) or "").split(",") if h]
        if current:
            history.append(str(current))
        ann[REVISION] = str(max_old + 1)
        if history:
            ann[REVISION_HISTORY] = ",".join(history)
        return self._store.update(
            self._rs_rt, body["metadata"]["namespace"], body["metadata"]["name"], body
        )

    def _new_rs_annotations(self, dep: Obj, revision: int) -> dict[str, str]:
        spec = dep.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        ann = {
            k: v
            for k, v in (dep["metadata"].get("annotations") or {}).items()
            if k not in _NOT_COPIED
        }
        ann[REVISION] = str(revision)
        ann[DESIRED_REPLICAS] = str(replicas)
        surge = 0 if _is_recreate(spec) else fenceposts(spec)[0]
        ann[MAX_REPLICAS] = str(replicas + surge)
        return ann

    def _create_rs(self, dep: Obj, old: list[Obj], replicas: int) -> Obj:
        meta = dep["metadata"]
        spec = dep.get("spec") or {}
        template = clone(spec.get("template") or {})
        h = template_hash(spec.get("template") or {})
        tmeta = template.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), HASH_LABEL: h}
        selector = clone(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: h}
        revision = max((_revision(rs) for rs in old), default=0) + 1
        body: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{h}",
                "namespace": meta["namespace"],
                "labels": dict(tmeta["labels"]),
                "annotations": self._new_rs_annotations(dep, revision),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": int(spec.get("minReadySeconds", 0)),
                "selector": selector,
                "template": template,
            },
        }
        return self._store.create(self._rs_rt, meta["namespace"], body)

    def _scale_rs(self, dep: Obj, rs: Obj, replicas: int) -> Obj:
        """``scaleReplicaSet``: spec.replicas plus the desired/max-replicas annotations."""
        spec = dep.get("spec") or {}
        want = {
            DESIRED_REPLICAS: str(int(spec.get("replicas", 1))),
            MAX_REPLICAS: str(
                int(spec.get("replicas", 1)) + (0 if _is_recreate(spec) else fenceposts(spec)[0])
            ),
        }
        ann = rs["metadata"].get("annotations") or {}
        min_ready = int(spec.get("minReadySeconds", 0))
        if (
            _replicas(rs) == replicas
            and all(ann.get(k) == v for k, v in want.items())
            and int((rs.get("spec") or {}).get("minReadySeconds", 0)) == min_ready
        ):
            return rs
        body = clone(rs)
        body["spec"]["replicas"] = replicas
        body["spec"]["minReadySeconds"] = min_ready
        body["metadata"].setdefault("annotations", {}).update(want)
        return self._store.update(
            self._rs_rt, rs["metadata"]["namespace"], rs["metadata"]["name"], body
        )

    def _rollout_rolling(
        self, dep: Obj, new_rs: Obj | None, old: list[Obj]
    ) -> tuple[Obj | None, str | None]:
        """``rolloutRolling``: grow the new ReplicaSet within maxSurge, or else shrink the
        old ones within maxUnavailable. Returns (new ReplicaSet, its name if created now)."""
        spec = dep.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        surge, unavailable = fenceposts(spec)
        created = None
        if new_rs is None:
            current = sum(_replicas(rs) for rs in old)
            start = max(min(replicas + surge - current, replicas), 0)
            new_rs = self._create_rs(dep, old, start)
            return new_rs, new_rs["metadata"]["name"]
        # reconcileNewReplicaSet
        n = _replicas(new_rs)
        if n > replicas:
            return self._scale_rs(dep, new_rs, replicas), created
        if n < replicas:
            current = n + sum(_replicas(rs) for rs in old)
            if current < replicas + surge:
                up = min(replicas + surge - current, replicas - n)
                return self._scale_rs(dep, new_rs, n + up), created
        new_rs = self._scale_rs(dep, new_rs, n)  # annotations follow spec.replicas
        # reconcileOldReplicaSets
        if sum(_replicas(rs) for rs in old) == 0:
            return new_rs, created
        all_pods = _replicas(new_rs) + sum(_replicas(rs) for rs in old)
        min_available = replicas - unavailable
        new_unavailable = _replicas(new_rs) - _st(new_rs, "availableReplicas")
        max_down = all_pods - min_available - new_unavailable
        if max_down <= 0:
            return new_rs, created
        # cleanupUnhealthyReplicas: old pods that are not available go first.
        done = 0
        for i, rs in enumerate(old):
            if done >= max_down:
                break
            unhealthy = _replicas(rs) - _st(rs, "availableReplicas")
            if _replicas(rs) == 0 or unhealthy <= 0:
                continue
            down = min(max_down - done, unhealthy)
            old[i] = self._scale_rs(dep, rs, _replicas(rs) - down)
            done += down
        # scaleDownOldReplicaSetsForRollingUpdate
        available = _st(new_rs, "availableReplicas") + sum(
            _st(rs, "availableReplicas") for rs in old
        )
        if available <= min_available:
            return new_rs, created
        total, done = available - min_available, 0
        for i, rs in enumerate(old):
            if done >= total:
                break
            if _replicas(rs) == 0:
                continue
            down = min(_replicas(rs), total - done)
            old[i] = self._scale_rs(dep, rs, _replicas(rs) - down)
            done += down
        return new_rs, created

    def _rollout_recreate(
        self, dep: Obj, new_rs: Obj | None, old: list[Obj], pods_by_rs: dict[str, list[Obj]]
    ) -> tuple[Obj | None, str | None]:
        """``rolloutRecreate``: scale every old ReplicaSet to zero, wait until their pods are
        gone, then create (or scale up) the new one at full size."""
        replicas = int((dep.get("spec") or {}).get("replicas", 1))
        for i, rs in enumerate(old):
            if _replicas(rs):
                old[i] = self._scale_rs(dep, rs, 0)
        if any(pods_by_rs.get(rs["metadata"]["uid"]) for rs in old):
            return new_rs, None
        if new_rs is None:
            new_rs = self._create_rs(dep, old, replicas)
            return new_rs, new_rs["metadata"]["name"]
        return self._scale_rs(dep, new_rs, replicas), None

    def _cleanup(self, dep: Obj, old: list[Obj]) -> None:
        """``cleanupDeployment``: keep ``revisionHistoryLimit`` idle old ReplicaSets."""
        limit = int((dep.get("spec") or {}).get("revisionHistoryLimit", 10))
        idle = [rs for rs in old if _replicas(rs) == 0 and _st(rs, "replicas") == 0]
        for rs in sorted(idle, key=_revision)[: max(len(idle) - limit, 0)]:
            try:
                self._store.delete(self._rs_rt, rs["metadata"]["namespace"], rs["metadata"]["name"])
            except ApiError:
                continue

    # ---- status ------------------------------------------------------------------------
    @staticmethod
    def _complete(dep: Obj, status: Obj) -> bool:
        """``deploymentutil.DeploymentComplete``."""
        replicas = int((dep.get("spec") or {}).get("replicas", 1))
        return bool(
            status.get("updatedReplicas", 0) == replicas
            and status.get("replicas", 0) == replicas
            and status.get("availableReplicas", 0) == replicas
            and status.get("observedGeneration", 0) >= dep["metadata"].get("generation", 1)
        )

    def _write_status(
        self,
        dep: Obj,
        new_rs: Obj | None,
        rses: list[Obj],
        *,
        progressing: tuple[str, str, str] | None,
        now: float,
        wake: list[float],
    ) -> Obj:
        """``calculateStatus`` and ``syncRolloutStatus``, written through ``/status``
        together with the revision annotation; returns the status."""
        meta = dep["metadata"]
        spec = dep.get("spec") or {}
        key = (meta["namespace"], meta["name"])
        replicas = int(spec.get("replicas", 1))
        old_status = dep.get("status") or {}
        available = sum(_st(rs, "availableReplicas") for rs in rses)
        counts = {
            "replicas": sum(_st(rs, "replicas") for rs in rses),
            "updatedReplicas": _st(new_rs, "replicas") if new_rs is not None else 0,
            "readyReplicas": sum(_st(rs, "readyReplicas") for rs in rses),
            "availableReplicas": available,
            "unavailableReplicas": max(sum(_replicas(rs) for rs in rses) - available, 0),
        }
        status: Obj = {"observedGeneration": meta.get("generation", 1)}
        status.update({k: v for k, v in counts.items() if v})
        conditions = {c.get("type"): c for c in old_status.get("conditions") or []}
        if available >= replicas - max_unavailable(spec):
            avail = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            avail = (
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        conditions["Available"] = _condition(conditions.get("Available"), "Available", *avail)
        rs_name = new_rs["metadata"]["name"] if new_rs is not None else ""
        if progressing is not None:
            conditions["Progressing"] = _condition(
                conditions.get("Progressing"), "Progressing", *progressing, touch=True
            )
            with self._lock:
                self._progress[key] = now
        prev = conditions.get("Progressing")
        deadline = spec.get("progressDeadlineSeconds")
        complete_before = (
            counts["replicas"] == counts["updatedReplicas"]
            and prev is not None
            and prev.get("reason") == "NewReplicaSetAvailable"
        )
        if deadline is None:
            conditions.pop("Progressing", None)
        elif not complete_before:
            old_old = int(old_status.get("replicas", 0)) - int(old_status.get("updatedReplicas", 0))
            moved = (
                counts["updatedReplicas"] > int(old_status.get("updatedReplicas", 0))
                or counts["replicas"] - counts["updatedReplicas"] < old_old
                or counts["readyReplicas"] > int(old_status.get("readyReplicas", 0))
                or available > int(old_status.get("availableReplicas", 0))
            )
            with self._lock:
                since = self._progress.setdefault(key, now)
            if self._complete(dep, status):
                conditions["Progressing"] = _condition(
                    prev,
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    f'ReplicaSet "{rs_name}" has successfully progressed.',
                )
            elif moved:
                conditions["Progressing"] = _condition(
                    prev,
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    f'ReplicaSet "{rs_name}" is progressing.',
                    touch=True,
                )
                with self._lock:
                    self._progress[key] = now
                wake.append(float(deadline) + 0.01)
            elif prev is not None and prev.get("reason") != "ProgressDeadlineExceeded":
                if now - since > float(deadline):
                    conditions["Progressing"] = _condition(
                        prev,
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        f'ReplicaSet "{rs_name}" has timed out progressing.',
                    )
                else:
                    wake.append(since + float(deadline) - now + 0.01)
        order = ("Available", "Progressing", "ReplicaFailure")
        status["conditions"] = [conditions[t] for t in order if t in conditions] + [
            c for t, c in conditions.items() if t not in order
        ]
        annotations = dict(meta.get("annotations") or {})
        if new_rs is not None:
            annotations[REVISION] = str(_revision(new_rs))
        if _same_status(old_status, status) and annotations == (meta.get("annotations") or {}):
            return status
        body = clone(dep)
        body["status"] = status
        body["metadata"]["annotations"] = annotations
        self._store.update(
            self._dep_rt, meta["namespace"], meta["name"], body, subresource="status"
        )
        return status

    # ---- the ReplicaSet controller and the kubelet ----------------------------------------
    def _sync_replicaset(
        self, dep: Obj, rs: Obj, pods: list[Obj], now: float, wake: list[float]
    ) -> Obj:
        """Pods to ``spec.replicas`` (surplus: the least useful first, as ``ActivePods``
        ranks them), each pod's state for ``now``, and the ReplicaSet's status."""
        want = _replicas(rs)
        dkey = (dep["metadata"]["namespace"], dep["metadata"]["name"])
        for _ in range(want - len(pods)):
            pods.append(self._create_pod(dkey, rs, now))
        if len(pods) > want:
            ranked = sorted(pods, key=lambda p: self._deletion_rank(p, now))
            for p in ranked[: len(pods) - want]:
                self._delete_pod(p)
            keep = {p["metadata"]["uid"] for p in ranked[len(pods) - want :]}
            pods = [p for p in pods if p["metadata"]["uid"] in keep]
        min_ready = float((rs.get("spec") or {}).get("minReadySeconds", 0))
        ready = available = 0
        for pod in pods:
            p, delay = self._advance_pod(dkey, pod, now)
            if delay is not None:
                wake.append(delay)
            if not _ready(p):
                continue
            ready += 1
            with self._lock:
                state = self._pods.get(p["metadata"]["uid"])
                since = state.ready_since if state is not None else now
            since = now if since is None else since
            if now - since >= min_ready:
                available += 1
            else:
                wake.append(since + min_ready - now + 0.01)
        status: Obj = {"replicas": len(pods)}
        for field, value in (
            ("fullyLabeledReplicas", len(pods)),
            ("readyReplicas", ready),
            ("availableReplicas", available),
        ):
            if value:
                status[field] = value
        status["observedGeneration"] = rs["metadata"].get("generation", 1)
        if rs.get("status") == status:
            return rs
        body = clone(rs)
        body["status"] = status
        return self._store.update(
            self._rs_rt,
            rs["metadata"]["namespace"],
            rs["metadata"]["name"],
            body,
            subresource="status",
        )

    def _deletion_rank(self, pod: Obj, now: float) -> tuple[int, int, float, int, str]:
        """``controller.ActivePods`` order: pending before running, not ready before ready,
        ready for less time first, more restarts first, newer first."""
        status = pod.get("status") or {}
        phase = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase", ""), 0)
        with self._lock:
            state = self._pods.get(pod["metadata"]["uid"])
        since = state.ready_since if state is not None else None
        restarts = sum(int(c.get("restartCount", 0)) for c in status.get("containerStatuses") or [])
        ready_for = now - since if since is not None else -1.0
        created = pod["metadata"].get("creationTimestamp", "")
        # Newer first: invert the timestamp's order by negating its characters' code points.
        newer_first = "".join(chr(0x10FFFF - ord(c)) for c in created)
        return (phase, int(_ready(pod)), ready_for, -restarts, newer_first)

    def _create_pod(self, dkey: tuple[str, str], rs: Obj, now: float) -> Obj:
        meta = rs["metadata"]
        template = (rs.get("spec") or {}).get("template") or {}
        tmeta = template.get("metadata") or {}
        spec = clone(template.get("spec") or {})
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name(meta["name"]),
                "namespace": meta["namespace"],
                "labels": dict(tmeta.get("labels") or {}),
                "annotations": dict(tmeta.get("annotations") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {**spec, "nodeName": "kubeemu-node"},
        }
        with self._lock:
            beh = self._behaviours.get(dkey) or _Behaviour("ready", self.default_ready_after, 0.0)
        created = self._store.create(self._pod_rt, meta["namespace"], pod)
        with self._lock:
            self._pods[created["metadata"]["uid"]] = _PodState(dkey, beh, now)
        return created

    def _delete_pod(self, pod: Obj) -> None:
        try:
            self._store.delete(self._pod_rt, pod["metadata"]["namespace"], pod["metadata"]["name"])
        except ApiError:
            return

    def _advance_pod(self, dkey: tuple[str, str], pod: Obj, now: float) -> tuple[Obj, float | None]:
        """Write the pod's status for ``now``; returns (pod, seconds until it changes again)."""
        uid = pod["metadata"]["uid"]
        with self._lock:
            state = self._pods.get(uid)
            if state is None:  # a pod from before a restart of the simulator's bookkeeping
                beh = self._behaviours.get(dkey) or _Behaviour(
                    "ready", self.default_ready_after, 0.0
                )
                state = self._pods[uid] = _PodState(dkey, beh, now)
            beh, born = state.behaviour, state.born
        start = max(born, beh.since)
        elapsed = now - start
        containers = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
        old_status = pod.get("status") or {}
        started_at = old_status.get("startTime") or now_rfc3339()
        ip = _pod_ip(uid)
        delay: float | None = None
        if elapsed < beh.ready_after and old_status.get("phase") != "Running":
            status = _pending(containers)
            delay = beh.ready_after - elapsed
        elif beh.kind == "ready":
            status = _running(containers, started_at, ip, ready=True)
        elif beh.kind == "never-ready":
            status = _running(containers, started_at, ip, ready=False)
        else:
            base = max(beh.ready_after, 0.2)
            t, restarts, gap = elapsed - beh.ready_after, 0, base
            while t >= gap:
                t -= gap
                restarts += 1
                gap = min(gap * 2, _MAX_BACKOFF)
            delay = gap - t
            status = _crashloop(containers, started_at, ip, restarts + 1)
        is_ready = _ready({"status": status})
        with self._lock:
            if is_ready and state.ready_since is None:
                state.ready_since = now
            elif not is_ready:
                state.ready_since = None
        if pod.get("status") == status or _same_status(old_status, status):
            return pod, delay
        body = clone(pod)
        body["status"] = status
        return self._store.update(
            self._pod_rt,
            pod["metadata"]["namespace"],
            pod["metadata"]["name"],
            body,
            subresource="status",
        ), delay


def _pod_ip(uid: str) -> str:
    """A stable per-pod address in 10.244.0.0/16 (Prometheus's pod discovery labels by it)."""
    digest = hashlib.sha256(uid.encode()).digest()
    return f"10.244.{digest[0]}.{1 + digest[1] % 254}"


def _ready(pod: Obj) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def _strip_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip_times(v)
            for k, v in value.items()
            if k
            not in (
                "lastTransitionTime",
                "lastUpdateTime",
                "startTime",
                "startedAt",
                "finishedAt",
                "lastProbeTime",
            )
        }
    if isinstance(value, list):
        return [_strip_times(v) for v in value]
    return value


def _same_status(a: Obj, b: Obj) -> bool:
    """Equal up to timestamps: avoids a write (and a resourceVersion) per tick."""
    return bool(_strip_times(a) == _strip_times(b))


def _condition(
    prev: Obj | None, type_: str, status: str, reason: str, message: str, *, touch: bool = False
) -> Obj:
    """``deploymentutil.SetDeploymentCondition``: the transition time moves only when the
    status changes; the update time when the reason changes or ``touch`` (progress)."""
    now = now_rfc3339()
    transition = update = now
    if prev is not None and prev.get("status") == status:
        transition = prev.get("lastTransitionTime", now)
        if prev.get("reason") == reason and not touch:
            update = prev.get("lastUpdateTime", now)
    return {
        "type": type_,
        "status": status,
        "lastUpdateTime": update,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    }


def _pod_conditions(ready: bool, containers: list[str]) -> list[Obj]:
    now = now_rfc3339()
    unready = (
        {}
        if ready
        else {
            "reason": "ContainersNotReady",
            "message": f"containers with unready status: [{' '.join(containers)}]",
        }
    )
    return [
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {
            "type": "Ready",
            "status": "True" if ready else "False",
            "lastTransitionTime": now,
            **unready,
        },
        {
            "type": "ContainersReady",
            "status": "True" if ready else "False",
            "lastTransitionTime": now,
            **unready,
        },
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
    ]


def _pending(containers: list[str]) -> Obj:
    return {
        "phase": "Pending",
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()}
        ],
        "containerStatuses": [
            {
                "name": c,
                "ready": False,
                "started": False,
                "restartCount": 0,
                "image": "",
                "imageID": "",
                "state": {"waiting": {"reason": "ContainerCreating"}},
            }
            for c in containers
        ],
        "qosClass": "BestEffort",
    }


def _running(containers: list[str], started_at: str, ip: str, *, ready: bool) -> Obj:
    return {
        "phase": "Running",
        "hostIP": "10.0.0.1",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": started_at,
        "conditions": _pod_conditions(ready, containers),
        "containerStatuses": [
            {
                "name": c,
                "ready": ready,
                "started": True,
                "restartCount": 0,
                "image": "",
                "imageID": "",
                "state": {"running": {"startedAt": started_at}},
            }
            for c in containers
        ],
        "qosClass": "BestEffort",
    }


def _crashloop(containers: list[str], started_at: str, ip: str, restarts: int) -> Obj:
    return {
        "phase": "Running",
        "hostIP": "10.0.0.1",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": started_at,
        "conditions": _pod_conditions(False, containers),
        "containerStatuses": [
            {
                "name": c,
                "ready": False,
                "started": False,
                "restartCount": restarts,
                "image": "",
                "imageID": "",
                "state": {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off restarting failed container={c}",
                    }
                },
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
            }
            for c in containers
        ],
        "qosClass": "BestEffort",
    }
