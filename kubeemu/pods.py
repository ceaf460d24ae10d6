"""A simulated Deployment controller (plus the kubelet's part: pod readiness).

For every Deployment it keeps one Pod per replica of the current template (labels from the
template plus ``pod-template-hash``), marks pods ready, never ready or crash-looping as told,
deletes pods of older templates once the new ones are all ready (a surge-all rolling update:
old pods keep serving while new ones are unready, as a stuck real rollout does), and writes
``status`` (replicas, updated/ready/available counts, observedGeneration, Available and
Progressing conditions incl. ``ProgressDeadlineExceeded``) through the status subresource.

Simplifications: pods are owned by their Deployment directly (no ReplicaSet objects);
``minReadySeconds`` and ``paused`` are ignored.
"""

from __future__ import annotations

import hashlib
import json
import math
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


@dataclass(frozen=True)
class _Behaviour:
    kind: str
    ready_after: float
    since: float


def template_hash(template: Any) -> str:
    """A 10-character pod-template-hash, stable for equal templates."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(NAME_ALPHABET[b % len(NAME_ALPHABET)] for b in digest[:10])


def _max_unavailable(dep: Obj, replicas: int) -> int:
    strategy = (dep.get("spec") or {}).get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return replicas
    raw = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(raw, str) and raw.endswith("%"):
        return math.floor(replicas * int(raw[:-1]) / 100)
    return int(raw)


class PodSimulator:
    """Runs in a background thread; reacts to Deployment/Pod changes and to its own timers."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self._store = store
        dep_rt = registry.lookup("apps", "v1", "deployments")
        pod_rt = registry.lookup("", "v1", "pods")
        assert dep_rt is not None and pod_rt is not None
        self._dep_rt: ResourceType = dep_rt
        self._pod_rt: ResourceType = pod_rt
        self._lock = threading.Lock()
        self._dirty: set[tuple[str, str]] = set()
        self._due: dict[tuple[str, str], float] = {}
        self._behaviours: dict[tuple[str, str], _Behaviour] = {}
        self._born: dict[str, float] = {}
        #: (template hash, replicas, ready new pods, when any of them last changed): progress
        #: that restarts the progress deadline, as a new template, a scale or a ready pod does.
        self._progress: dict[tuple[str, str], tuple[str, int, int, float]] = {}
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
        ready_after_seconds: float = 0.2,
    ) -> None:
        """How the pods of one Deployment behave from now on (existing pods included).

        ``ready``: Running and Ready ``ready_after_seconds`` after creation.
        ``never-ready``: Running, readiness never succeeds.
        ``crashloop``: containers wait in ``CrashLoopBackOff``, ``restartCount`` grows with
        exponential back-off starting at ``ready_after_seconds``.
        """
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"behaviour must be one of {set(BEHAVIOURS)}, got {behaviour!r}")
        if ready_after_seconds < 0:
            raise ValueError("ready_after_seconds must be >= 0")
        with self._lock:
            self._behaviours[(namespace, deployment_name)] = _Behaviour(
                behaviour, ready_after_seconds, time.monotonic()
            )
            self._dirty.add((namespace, deployment_name))
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
    def _on_event(self, ev: WatchEvent) -> None:
        meta = ev.obj["metadata"]
        if ev.store_key == ("apps", "deployments"):
            key = (meta.get("namespace", ""), meta["name"])
        elif ev.store_key == ("", "pods"):
            owner = next(
                (r for r in meta.get("ownerReferences") or [] if r.get("kind") == "Deployment"),
                None,
            )
            if owner is None:
                return
            key = (meta.get("namespace", ""), owner["name"])
        else:
            return
        with self._lock:
            self._dirty.add(key)
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

    # ---- reconcile ---------------------------------------------------------------------
    def _reconcile(self, namespace: str, name: str) -> None:
        store = self._store
        with store.lock:
            dep = store.raw(self._dep_rt, namespace, name)
            if dep is None or dep["metadata"].get("deletionTimestamp"):
                with self._lock:
                    self._progress.pop((namespace, name), None)
                return
            uid = dep["metadata"]["uid"]
            spec = dep.get("spec") or {}
            replicas = int(spec.get("replicas", 1))
            template = spec.get("template") or {}
            h = template_hash(template)
            with self._lock:
                beh = self._behaviours.get((namespace, name)) or _Behaviour("ready", 0.2, 0.0)
            pods = [
                p
                for p in store.all_of("", "pods")
                if p["metadata"].get("namespace") == namespace
                and any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])
                and not p["metadata"].get("deletionTimestamp")
            ]
            new = [p for p in pods if p["metadata"].get("labels", {}).get("pod-template-hash") == h]
            old = [p for p in pods if p not in new]
            now = time.monotonic()
            for _ in range(replicas - len(new)):
                new.append(self._create_pod(dep, template, h, now))
            if len(new) > replicas:
                extra = sorted(new, key=lambda p: p["metadata"]["creationTimestamp"])[replicas:]
                for p in extra:
                    self._delete_pod(p)
                new = [p for p in new if p not in extra]
            wake_in: list[float] = []
            pods_now = []
            for p in new + old:
                updated, delay = self._advance_pod(p, beh, now)
                pods_now.append(updated)
                if delay is not None:
                    wake_in.append(delay)
            ready_new = sum(1 for p in pods_now[: len(new)] if _ready(p))
            if old and (replicas == 0 or ready_new >= replicas):
                for p in old:
                    self._delete_pod(p)
                pods_now = pods_now[: len(new)]
            wake_in += self._write_status(
                dep,
                h,
                replicas=replicas,
                pods=pods_now,
                updated=len(new),
                ready_new=ready_new,
                now=now,
            )
        if wake_in:
            self._schedule((namespace, name), min(wake_in))

    def _create_pod(self, dep: Obj, template: Obj, h: str, now: float) -> Obj:
        meta = dep["metadata"]
        tmeta = template.get("metadata") or {}
        labels = dict(tmeta.get("labels") or {})
        labels["pod-template-hash"] = h
        spec = clone(template.get("spec") or {})
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name(f"{meta['name']}-{h}"),
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": dict(tmeta.get("annotations") or {}),
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
            "spec": {**spec, "nodeName": "kubeemu-node"},
        }
        created = self._store.create(self._pod_rt, meta["namespace"], pod)
        with self._lock:
            self._born[created["metadata"]["uid"]] = now
        return created

    def _delete_pod(self, pod: Obj) -> None:
        try:
            self._store.delete(self._pod_rt, pod["metadata"]["namespace"], pod["metadata"]["name"])
        except ApiError:
            return
        with self._lock:
            self._born.pop(pod["metadata"]["uid"], None)

    def _advance_pod(self, pod: Obj, beh: _Behaviour, now: float) -> tuple[Obj, float | None]:
        """Write the pod's status for ``now``; returns (pod, seconds until it changes again)."""
        with self._lock:
            born = self._born.setdefault(pod["metadata"]["uid"], now)
        start = max(born, beh.since)
        elapsed = now - start
        containers = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
        old_status = pod.get("status") or {}
        started_at = old_status.get("startTime") or now_rfc3339()
        delay: float | None = None
        if elapsed < beh.ready_after and old_status.get("phase") != "Running":
            status = _pending(containers)
            delay = beh.ready_after - elapsed
        elif beh.kind == "ready":
            status = _running(containers, started_at, ready=True)
        elif beh.kind == "never-ready":
            status = _running(containers, started_at, ready=False)
        else:
            base = max(beh.ready_after, 0.2)
            t, restarts, gap = elapsed - beh.ready_after, 0, base
            while t >= gap:
                t -= gap
                restarts += 1
                gap = min(gap * 2, _MAX_BACKOFF)
            delay = gap - t
            status = _crashloop(containers, started_at, restarts + 1)
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

    def _write_status(
        self,
        dep: Obj,
        h: str,
        *,
        replicas: int,
        pods: list[Obj],
        updated: int,
        ready_new: int,
        now: float,
    ) -> list[float]:
        meta = dep["metadata"]
        key = (meta["namespace"], meta["name"])
        ready = sum(1 for p in pods if _ready(p))
        total = len(pods)
        with self._lock:
            prev = self._progress.get(key)
            if prev is None or prev[:2] != (h, replicas) or ready_new > prev[2]:
                self._progress[key] = (h, replicas, ready_new, now)
            progress_at = self._progress[key][3]
        old_status = dep.get("status") or {}
        rs_name = f"{meta['name']}-{h}"
        complete = updated == replicas and ready_new == replicas and total == replicas
        deadline = float((dep.get("spec") or {}).get("progressDeadlineSeconds", 600))
        wake: list[float] = []
        if complete:
            prog = (
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
            )
        elif now - progress_at >= deadline:
            prog = (
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{rs_name}" has timed out progressing.',
            )
        else:
            prog = ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
            wake.append(progress_at + deadline - now)
        avail_ok = ready >= replicas - _max_unavailable(dep, replicas)
        avail = (
            ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
            if avail_ok
            else (
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        )
        conditions = [
            _condition(old_status, "Available", *avail, touch=False),
            _condition(old_status, "Progressing", *prog, touch=prog[1] == "ReplicaSetUpdated"),
        ]
        status: Obj = {"observedGeneration": meta.get("generation", 1)}
        for field, value in (
            ("replicas", total),
            ("updatedReplicas", updated),
            ("readyReplicas", ready),
            ("availableReplicas", ready),
            ("unavailableReplicas", max(total, replicas) - ready),
        ):
            if value:
                status[field] = value
        status["conditions"] = conditions
        if _same_status(old_status, status):
            return wake
        body = clone(dep)
        body["status"] = status
        self._store.update(
            self._dep_rt, meta["namespace"], meta["name"], body, subresource="status"
        )
        return wake


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
    old_status: Obj, type_: str, status: str, reason: str, message: str, *, touch: bool
) -> Obj:
    now = now_rfc3339()
    prev = next((c for c in old_status.get("conditions") or [] if c.get("type") == type_), None)
    transition = now
    update = now
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


def _running(containers: list[str], started_at: str, *, ready: bool) -> Obj:
    return {
        "phase": "Running",
        "hostIP": "10.0.0.1",
        "podIP": "10.244.0.10",
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


def _crashloop(containers: list[str], started_at: str, restarts: int) -> Obj:
    return {
        "phase": "Running",
        "hostIP": "10.0.0.1",
        "podIP": "10.244.0.10",
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
