"""Deployments: observe them as :class:`WorkloadState`, create, promote and scale the primary.

Naming (as Flagger's): the Rollout's target Deployment ``<t>`` is the canary; canaryd owns
``<t>-primary`` (the stable version), whose labels and selector are ``app: <t>-primary`` and
whose pod template is a copy of the target's with that label. The primary carries the
annotation ``canaryd.io/revision``: the hash of the *target* template it was copied from, so
primary and target revisions compare directly (the label rewrite would change a plain hash).
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from canaryd.adapters.cache import DEPLOYMENTS, Cache, reader_of
from canaryd.adapters.kube import paths
from canaryd.adapters.transport import JSON, ConflictError, KubeApi, NotFoundError, owner_reference
from canaryd.api.models import Rollout
from canaryd.core.ports import PermanentError, TemporaryError
from canaryd.core.revision import template_hash
from canaryd.core.types import WorkloadState

REVISION_ANNOTATION = "canaryd.io/revision"
LAST_GOOD_TEMPLATE_ANNOTATION = "canaryd.io/last-good-template"
"""On the primary: the pod template it ran before the last promotion (JSON)."""
LAST_GOOD_REVISION_ANNOTATION = "canaryd.io/last-good-revision"
"""On the primary: the revision of ``canaryd.io/last-good-template``."""
PRIMARY_SUFFIX = "-primary"

# Container waiting reasons that mean "these pods will not become ready by themselves".
_STUCK_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)


class RevisionChangedError(PermanentError):
    """The target's template is not the revision asked for (it changed after being judged)."""


def primary_name(target: str) -> str:
    return f"{target}{PRIMARY_SUFFIX}"


# ---- pure: JSON -> state, and the objects we write -------------------------------------------


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _image(template: Mapping[str, Any]) -> str:
    containers = template.get("spec", {}).get("containers") or [{}]
    return str(containers[0].get("image", ""))


def _observed(deployment: Mapping[str, Any]) -> bool:
    status = deployment.get("status", {})
    return _int(status.get("observedGeneration")) >= _int(
        deployment.get("metadata", {}).get("generation")
    )


def deadline_exceeded(deployment: Mapping[str, Any]) -> bool:
    """The ``Progressing`` condition says ``ProgressDeadlineExceeded`` for the current spec
    (``kubectl rollout status`` reads conditions only once the spec update is observed: a
    condition left from an earlier rollout says nothing about a spec just written)."""
    if not _observed(deployment):
        return False
    return any(
        cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded"
        for cond in deployment.get("status", {}).get("conditions") or []
    )


def deployment_failure(deployment: Mapping[str, Any]) -> str | None:
    """Why a Deployment cannot progress, from its conditions (kube's deployment controller),
    once the current spec is observed (see :func:`deadline_exceeded`)."""
    if not _observed(deployment):
        return None
    for cond in deployment.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return f"ProgressDeadlineExceeded: {cond.get('message', '')}".rstrip(": ")
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return f"ReplicaFailure: {cond.get('message', cond.get('reason', ''))}"
    return None


def pods_failure(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """The first container stuck in a state it will not leave alone (CrashLoopBackOff...)."""
    for pod in pods:
        status = pod.get("status", {})
        for cs in (status.get("initContainerStatuses") or []) + (
            status.get("containerStatuses") or []
        ):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in _STUCK_REASONS:
                pod_name = pod.get("metadata", {}).get("name", "?")
                detail = waiting.get("message", "")
                text = f"{reason}: pod {pod_name} container {cs.get('name', '?')}"
                return f"{text}: {detail}" if detail else text
    return None


def revision_of(deployment: Mapping[str, Any]) -> str:
    """The revision a Deployment's pod template is: canaryd's annotation where canaryd wrote the
    Deployment (the primary, the baseline), else the template's hash."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    written = (meta.get("annotations") or {}).get(REVISION_ANNOTATION)
    return str(written or template_hash(spec.get("template") or {}))


def workload_state(
    deployment: Mapping[str, Any], pods: Sequence[Mapping[str, Any]] = ()
) -> WorkloadState:
    """The :class:`WorkloadState` of a Deployment JSON (and, when given, its pods)."""
    meta = deployment.get("metadata", {})
    spec = deployment.get("spec", {})
    status = deployment.get("status", {})
    template = spec.get("template", {})
    return WorkloadState(
        name=str(meta.get("name", "")),
        template_hash=revision_of(deployment),
        image=_image(template),
        replicas=_int(spec.get("replicas", 1)),
        ready_replicas=_int(status.get("readyReplicas")),
        updated_replicas=_int(status.get("updatedReplicas")),
        rolled_out=_observed(deployment),
        failure=deployment_failure(deployment) or pods_failure(pods),
        total_replicas=_int(status.get("replicas")),
        available_replicas=_int(status.get("availableReplicas")),
        deadline_exceeded=deadline_exceeded(deployment),
    )


def _primary_template(target: Mapping[str, Any], name: str) -> JSON:
    template: JSON = copy.deepcopy(dict(target.get("spec", {}).get("template", {})))
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), "app": name}
    return template


def primary_from(target: Mapping[str, Any], rollout: Rollout) -> JSON:
    """The primary Deployment built from the target (bootstrap). Replicas: the target's, at
    least 1 (a target already scaled to zero still yields a serving primary)."""
    t_meta = target.get("metadata", {})
    name = primary_name(str(t_meta["name"]))
    labels = {**(t_meta.get("labels") or {}), "app": name}
    spec = target.get("spec", {})
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": t_meta.get("namespace", rollout.metadata.namespace),
            "labels": labels,
            "annotations": {REVISION_ANNOTATION: template_hash(spec.get("template", {}))},
            "ownerReferences": [owner_reference(rollout)],
        },
        "spec": {
            "replicas": max(_int(spec.get("replicas", 1)), 1),
            "selector": {"matchLabels": {"app": name}},
            "template": _primary_template(target, name),
        },
    }


def selector_string(deployment: Mapping[str, Any]) -> str:
    """``k=v,...`` from ``spec.selector.matchLabels`` (matchExpressions are not used here)."""
    labels = deployment.get("spec", {}).get("selector", {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


# ---- I/O -------------------------------------------------------------------------------------


class Workloads:
    """Reads and writes Deployments for the reconciler. Reads come from the Deployment store
    when there is a cache (every write's answer goes into it: read-your-own-writes; a conflict
    makes the next read a live GET), else from GETs."""

    def __init__(self, api: KubeApi, cache: Cache | None = None) -> None:
        self.api = api
        self.deployments = reader_of(api, DEPLOYMENTS, cache)

    def get(self, namespace: str, name: str) -> JSON | None:
        return self.deployments.get(namespace, name)

    def _write(self, namespace: str, name: str, send: Callable[[], JSON]) -> JSON:
        """One write; its answer held by the store; a conflict marks the copy stale."""
        try:
            written = send()
        except ConflictError:
            self.deployments.invalidate(namespace, name)
            raise
        return self.deployments.wrote(written)

    def state(self, namespace: str, name: str) -> WorkloadState | None:
        """None when the Deployment does not exist. Pods are listed whenever a rollout is in
        progress (not ready by ``kubectl rollout status``'s rules: old pods may still serve
        while new ones crash-loop), to see CrashLoopBackOff and the like; skipped when the
        Deployment is rolled out, scaled to zero, or already failed, to keep ticks cheap."""
        deployment = self.get(namespace, name)
        if deployment is None:
            return None
        # Computed once per version of the Deployment (the template hash is not free).
        state = self.deployments.derived(deployment, "state", workload_state)
        if state.ready or state.replicas == 0 or state.failure:
            return state
        selector = selector_string(deployment)
        if not selector:
            return state
        pods = self.api.list(
            paths.pods(namespace), label_selector=selector, what=f"list pods of {name}"
        )
        return workload_state(deployment, pods.get("items") or [])

    def ensure_primary(self, rollout: Rollout) -> None:
        """Create ``<target>-primary`` from the target when missing. Idempotent."""
        ns, target = rollout.metadata.namespace, rollout.spec.target_ref.name
        if self.get(ns, primary_name(target)) is not None:
            return
        source = self.get(ns, target)
        if source is None:
            raise TemporaryError(f"target Deployment {ns}/{target} not found")
        try:
            self.deployments.wrote(
                self.api.create(
                    paths.deployment(ns),
                    primary_from(source, rollout),
                    what=f"create Deployment {ns}/{primary_name(target)}",
                )
            )
        except ConflictError:
            # Created meanwhile (a retry after a lost answer, or another writer): it exists.
            if self.deployments.live(ns, primary_name(target)) is None:
                raise

    def promote(self, rollout: Rollout, *, revision: str) -> None:
        """Copy the target's pod template into the primary (PUT guarded by resourceVersion),
        only when that template is ``revision``, the judged one: a target changed since it was
        judged raises :class:`RevisionChangedError` and the primary is not touched.

        The template the primary ran before is kept in the annotations ``canaryd.io/last-good-
        template`` / ``-revision`` (written with the same PUT), so :meth:`revert_primary` can
        return to it if the new primary cannot become ready."""
        ns, target = rollout.metadata.namespace, rollout.spec.target_ref.name
        source = self.get(ns, target)
        if source is None:
            raise TemporaryError(f"target Deployment {ns}/{target} not found")
        found = template_hash(source.get("spec", {}).get("template", {}))
        if found != revision:
            raise RevisionChangedError(
                f"refusing to promote Deployment {ns}/{target}: its template is revision {found}, "
                f"not the judged revision {revision} (the target changed during promotion)"
            )
        primary = self.get(ns, primary_name(target))
        if primary is None:
            self.ensure_primary(rollout)
            return
        updated = copy.deepcopy(primary)
        meta = updated["metadata"]
        annotations = dict(meta.get("annotations") or {})
        running = annotations.get(REVISION_ANNOTATION)
        if running != revision:
            annotations[LAST_GOOD_TEMPLATE_ANNOTATION] = json.dumps(
                primary.get("spec", {}).get("template", {}), sort_keys=True
            )
            annotations[LAST_GOOD_REVISION_ANNOTATION] = revision_of(primary)
        annotations[REVISION_ANNOTATION] = revision
        meta["annotations"] = annotations
        updated["spec"]["template"] = _primary_template(source, primary_name(target))
        if updated == primary:
            return
        self._write(
            ns,
            primary_name(target),
            lambda: self.api.replace(
                paths.deployment(ns, primary_name(target)),
                updated,
                what=f"promote Deployment {ns}/{primary_name(target)}",
            ),
        )

    def revert_primary(self, rollout: Rollout, *, revision: str) -> None:
        """Return the primary to the template it ran before the last promotion, when that was
        ``revision``. Idempotent (no write when the primary already runs ``revision``); raises
        :class:`PermanentError` when no template of ``revision`` was kept."""
        ns, target = rollout.metadata.namespace, rollout.spec.target_ref.name
        name = primary_name(target)
        primary = self.get(ns, name)
        if primary is None:
            raise TemporaryError(f"primary Deployment {ns}/{name} not found")
        annotations = dict(primary.get("metadata", {}).get("annotations") or {})
        if annotations.get(REVISION_ANNOTATION) == revision:
            return
        kept = annotations.get(LAST_GOOD_TEMPLATE_ANNOTATION)
        if annotations.get(LAST_GOOD_REVISION_ANNOTATION) != revision or not kept:
            raise PermanentError(
                f"cannot return Deployment {ns}/{name} to revision {revision}: no template of "
                f"that revision kept (annotation {LAST_GOOD_REVISION_ANNOTATION} is "
                f"{annotations.get(LAST_GOOD_REVISION_ANNOTATION)!r})"
            )
        updated = copy.deepcopy(primary)
        updated["spec"]["template"] = json.loads(kept)
        annotations[REVISION_ANNOTATION] = revision
        updated["metadata"]["annotations"] = annotations
        self._write(
            ns,
            name,
            lambda: self.api.replace(
                paths.deployment(ns, name),
                updated,
                what=f"return Deployment {ns}/{name} to revision {revision}",
            ),
        )

    def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Set ``spec.replicas`` (merge patch of one field; skipped when already there)."""
        current = self.get(namespace, name)
        if current is None:
            raise TemporaryError(f"Deployment {namespace}/{name} not found")
        if _int(current.get("spec", {}).get("replicas", 1)) == replicas:
            return
        self._write(
            namespace,
            name,
            lambda: self.api.merge_patch(
                paths.deployment(namespace, name),
                {"spec": {"replicas": replicas}},
                what=f"scale Deployment {namespace}/{name} to {replicas}",
            ),
        )

    # ---- the baseline arm (spec.baseline) -----------------------------------------------------

    def ensure_baseline(self, rollout: Rollout, *, revision: str, replicas: int) -> None:
        """Create ``<target>-baseline`` from the primary's template of ``revision`` with
        ``replicas``, or bring an existing one to that template and size (PUT guarded by its
        resourceVersion; no write when already so). PermanentError when the primary keeps no
        template of ``revision``."""
        ns, target = rollout.metadata.namespace, rollout.spec.target_ref.name
        name = baseline_name(target)
        primary = self.get(ns, primary_name(target))
        if primary is None:
            raise TemporaryError(f"primary Deployment {ns}/{primary_name(target)} not found")
        template = stable_template(primary, revision)
        if template is None:
            runs = (primary.get("metadata", {}).get("annotations") or {}).get(REVISION_ANNOTATION)
            raise PermanentError(
                f"cannot create Deployment {ns}/{name}: the primary keeps no template of the "
                f"stable revision {revision} (it runs {runs!r})"
            )
        desired = baseline_from(primary, rollout, template, revision=revision, replicas=replicas)
        existing = self.get(ns, name)
        if existing is None:
            try:
                self.deployments.wrote(
                    self.api.create(
                        paths.deployment(ns), desired, what=f"create Deployment {ns}/{name}"
                    )
                )
                return
            except ConflictError:
                # Created meanwhile (a retry after a lost answer): bring it to the desired below.
                existing = self.deployments.live(ns, name)
                if existing is None:
                    raise
        updated = copy.deepcopy(existing)
        meta = updated.setdefault("metadata", {})
        meta["annotations"] = {
            **(meta.get("annotations") or {}),
            REVISION_ANNOTATION: revision,
        }
        updated.setdefault("spec", {})["replicas"] = replicas
        updated["spec"]["template"] = desired["spec"]["template"]
        if updated == existing:
            return
        self._write(
            ns,
            name,
            lambda: self.api.replace(
                paths.deployment(ns, name),
                updated,
                what=f"update Deployment {ns}/{name} (revision {revision}, {replicas} replicas)",
            ),
        )

    def remove_baseline(self, rollout: Rollout) -> None:
        """Delete ``<target>-baseline``; nothing to do when it is gone."""
        ns, target = rollout.metadata.namespace, rollout.spec.target_ref.name
        name = baseline_name(target)
        if self.get(ns, name) is None:
            return  # the store is synced by the watch: gone already, no request
        with contextlib.suppress(NotFoundError):
            self.api.delete(paths.deployment(ns, name), what=f"delete Deployment {ns}/{name}")
        self.deployments.deleted(ns, name)


BASELINE_SUFFIX = "-baseline"


def baseline_name(target: str) -> str:
    """``<target>-baseline``: the Deployment (and ``destination_workload``) of the baseline."""
    return f"{target}{BASELINE_SUFFIX}"


def stable_template(primary: Mapping[str, Any], revision: str) -> JSON | None:
    """The primary's pod template of ``revision``: its current one when it runs ``revision``,
    else the one it kept from before its last promotion when that was ``revision``; None when
    neither is (the baseline must run the stable version, never a half-promoted one)."""
    annotations = primary.get("metadata", {}).get("annotations") or {}
    template = primary.get("spec", {}).get("template", {})
    if revision_of(primary) == revision:
        return copy.deepcopy(dict(template))
    kept = annotations.get(LAST_GOOD_TEMPLATE_ANNOTATION)
    if kept and annotations.get(LAST_GOOD_REVISION_ANNOTATION) == revision:
        loaded: JSON = json.loads(kept)
        return loaded
    return None


def baseline_from(
    primary: Mapping[str, Any],
    rollout: Rollout,
    template: Mapping[str, Any],
    *,
    revision: str,
    replicas: int,
) -> JSON:
    """The baseline Deployment: the stable ``template`` with the label ``app:
    <target>-baseline`` (its own selector, so neither the primary's nor the canary's Service
    selects its pods, and Istio reports it as its own ``destination_workload``), ``replicas``,
    and the revision annotation (compared with the stable revision as the primary's is)."""
    name = baseline_name(rollout.spec.target_ref.name)
    p_meta = primary.get("metadata", {})
    relabelled: JSON = copy.deepcopy(dict(template))
    t_meta = relabelled.setdefault("metadata", {})
    t_meta["labels"] = {**(t_meta.get("labels") or {}), "app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": p_meta.get("namespace", rollout.metadata.namespace),
            "labels": {**(p_meta.get("labels") or {}), "app": name},
            "annotations": {REVISION_ANNOTATION: revision},
            "ownerReferences": [owner_reference(rollout)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": relabelled,
        },
    }
