"""The chaos suite's oracle: the safety invariants, checked on every event of the emulator.

The checker is fed, in order, every change the API emulator stores (VirtualServices,
Deployments, Rollouts, Leases), every mutating request a controller process sent (from the
:class:`~benchmarks.chaos_servers.KubeProxy` in front of it), what the harness did (kills,
freezes, outages) and what Slack received. It never looks at the controller's insides.

The invariants (README "Safety"; each violation names its rule):

- ``route-sum``: every HTTP route of every VirtualService written has weights summing to 100.
- ``route-schema``: every VirtualService written validates against Istio's real CRD schema.
- ``route-no-pods``: no arm with weight > 0 has zero ready pods (canary = the target
  Deployment, primary = ``<target>-primary``, baseline = ``<target>-baseline``: rule
  ``route-no-pods-baseline``).
- ``baseline-weight``: a baseline (``spec.baseline``) never gets more than the canary's weight
  (``min(canary, 100 - canary)``), and none while the canary has none.
- ``unjudged-traffic``: the canary carries traffic only while it has a live judge: weight > 0
  for longer than ``interval + grace`` (plus the time no controller was alive) since it got
  traffic or since the last judged interval is a violation. "Judged" is a status write that
  advances ``analysis.lastAnalysisTime`` with an outcome other than Error: the judge looked and
  had an answer (Inconclusive on no data included). The outage rule
  (:class:`OutageRule`) sets whether metrics errors may keep traffic on the canary.
- ``primary-unpassed``: the primary only takes a revision that passed (its status reached
  the last step, or Promoting), never a known-bad image; a rollback to an earlier good
  revision is allowed.
- ``primary-not-ready``: the canary's traffic is removed at promotion only once the primary's
  new pods are all ready; ``primary-not-rolled-out``: ... and only once ``kubectl rollout
  status`` would succeed (no old replicas pending termination, available = updated).
- ``non-leader-write``: a successful write by a process that did not hold the Lease when it
  sent the write.
- endings (:meth:`Checker.finish_release`): good ends Succeeded, bad ends Failed, nothing
  stuck (ended within the harness's bound, canary weight 0 and target at 0 replicas after),
  every ending notice delivered at least once; duplicates counted and excused only when a
  controller died between the first post and the status write; ``baseline-left``: no
  ``<target>-baseline`` Deployment and no baseline weight after the ending.
"""

from __future__ import annotations

import functools
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ISTIO_VS_CRD = Path(__file__).resolve().parents[2] / "shared" / "istio" / "virtualservices.crd.yaml"
"""The real Istio CRD (``../shared/istio`` from the repository)."""
_FALLBACK_VS_CRD = Path(__file__).resolve().parents[1] / "kubeemu" / "istio_crds"

ENDING_KINDS = ("Promoted", "RolledBack", "NoData", "NotReady", "Invalid")
REVISION_ANNOTATION = "canaryd.io/revision"


@dataclass(frozen=True)
class OutageRule:
    """How the checker treats a metrics outage (Prometheus down, erroring or slow).

    ``withdraw=True`` (the designed semantics, issue 9 "metrics trouble is not a verdict"): a
    metric error is no judgement, so the canary must lose its traffic within one interval plus
    grace; a good release whose outage is shorter than ``deadline_seconds`` must still end
    Succeeded; a longer one ends Failed with ``not_judged_text`` in its message.
    ``withdraw=False``: today's documented errorLimit semantics (an Error interval counts as
    judged, errorLimit consecutive ones roll back; only the ending is checked).
    """

    withdraw: bool = True
    deadline_seconds: float | None = None
    not_judged_text: str = "not judged"


@dataclass
class Violation:
    rule: str
    rollout: str
    at: float
    detail: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.rollout} @{self.at:.1f}s: {self.detail}"


@dataclass
class Release:
    """One release the harness started: a new image on the target Deployment."""

    rollout: str
    revision: str
    image: str
    good: bool
    started: float
    expect: str = ""
    """Expected ending phase; defaults to Succeeded for good, Failed for bad."""
    expect_message: str = ""
    ended: float | None = None
    phase: str = ""
    message: str = ""
    correct: bool = False
    notices: int = 0
    duplicates: int = 0
    excused_duplicates: int = 0
    stuck: bool = False

    @property
    def expected_phase(self) -> str:
        return self.expect or ("Succeeded" if self.good else "Failed")

    @property
    def decision_seconds(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


@dataclass
class _RolloutState:
    name: str
    interval: float
    weights: list[int]
    replicas: int = 2
    canary_weight: int = 0
    primary_weight: int = 100
    vs_seen: bool = False
    target: dict[str, Any] | None = None
    primary: dict[str, Any] | None = None
    status: dict[str, Any] = field(default_factory=dict)
    traffic_since: float | None = None
    judged_at: float | None = None
    open_violation: set[str] = field(default_factory=set)
    passed: set[str] = field(default_factory=set)
    bad_revisions: set[str] = field(default_factory=set)
    primary_revision: str = ""
    hostile: bool = False
    baseline: dict[str, Any] | None = None
    baseline_weight: int = 0


def _ready(dep: dict[str, Any] | None) -> int:
    if dep is None:
        return 0
    return int((dep.get("status") or {}).get("readyReplicas") or 0)


def _rolled_out(dep: dict[str, Any] | None) -> bool:
    """What ``kubectl rollout status`` waits for."""
    if dep is None:
        return False
    spec, st = dep.get("spec") or {}, dep.get("status") or {}
    want = int(spec.get("replicas", 1))
    gen = int((dep.get("metadata") or {}).get("generation") or 0)
    return (
        int(st.get("observedGeneration") or 0) >= gen
        and int(st.get("updatedReplicas") or 0) >= want
        and int(st.get("replicas") or 0) <= int(st.get("updatedReplicas") or 0)
        and int(st.get("availableReplicas") or 0) >= int(st.get("updatedReplicas") or 0)
    )


def _new_pods_ready(dep: dict[str, Any] | None) -> bool:
    """Every replica of the current template exists and is ready (old pods may linger)."""
    if dep is None:
        return False
    spec, st = dep.get("spec") or {}, dep.get("status") or {}
    want = int(spec.get("replicas", 1))
    gen = int((dep.get("metadata") or {}).get("generation") or 0)
    return (
        int(st.get("observedGeneration") or 0) >= gen
        and int(st.get("updatedReplicas") or 0) >= want
        and int(st.get("readyReplicas") or 0) >= want
    )


def _counts(dep: dict[str, Any] | None) -> str:
    st = (dep or {}).get("status") or {}
    keys = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    want = ((dep or {}).get("spec") or {}).get("replicas")
    return f"spec.replicas={want} " + " ".join(f"{k}={st.get(k, 0)}" for k in keys)


def _revision(dep: dict[str, Any] | None) -> str:
    if dep is None:
        return ""
    return str(((dep.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION, ""))


def _parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 (as Kubernetes structural schemas use it) -> JSON Schema draft 4: ``nullable``
    and ``x-kubernetes-int-or-string`` mapped, other ``x-`` extensions dropped."""
    if isinstance(node, list):
        return [_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-") or key == "nullable":
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: _json_schema(v) for k, v in value.items()}
        else:
            out[key] = _json_schema(value)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def ending_posts(revision: str, posts: Iterable[Any]) -> list[Any]:
    """Slack posts that announce the end of ``revision``'s release (Promoted, RolledBack, ...;
    the message's context line ends with the notice kind, its facts name the revision)."""
    return [
        p for p in posts if revision in p.text and any(f"· {k}" in p.text for k in ENDING_KINDS)
    ]


@functools.lru_cache(maxsize=1)
def load_vs_validator() -> Callable[[dict[str, Any]], list[str]]:
    """A validator of VirtualService ``spec`` against Istio's real v1 schema (OpenAPI 3.0)."""
    path = ISTIO_VS_CRD
    if not path.exists():
        path = next(_FALLBACK_VS_CRD.glob("*virtualservice*"))
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    crd = next(d for d in docs if d.get("kind") == "CustomResourceDefinition")
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    validator = jsonschema.Draft4Validator(_json_schema(schema))

    def validate(spec: dict[str, Any]) -> list[str]:
        return [
            f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
            for e in validator.iter_errors(spec)
        ][:3]

    return validate


class Checker:
    """Consumes events in order (a queue drained by one thread) and records violations."""

    def __init__(
        self,
        *,
        grace: float = 2.0,
        outage: OutageRule | None = None,
        lease_duration: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.grace = grace
        self.outage = outage or OutageRule()
        self.lease_duration = lease_duration
        self.clock = clock
        self.t0 = clock()
        self.violations: list[Violation] = []
        self.releases: list[Release] = []
        self.rollouts: dict[str, _RolloutState] = {}
        self.kills: list[tuple[float, str]] = []
        self.down: list[tuple[float, float | None]] = []
        """Windows (start, end) during which no controller could act (kill until a Lease
        write by a live process)."""
        self.metrics_outages: list[tuple[float, float | None]] = []
        self.writes = 0
        self.vs_writes = 0
        self.events = 0
        self._q: queue.Queue[tuple[str, float, Any]] = queue.Queue()
        self._lock = threading.RLock()
        self._validate = load_vs_validator()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-checker", daemon=True)
        self._thread.start()

    # ---- feeding ------------------------------------------------------------------------------

    def on_store_event(self, ev: Any) -> None:
        """kubeemu ``Store`` listener: runs under the store lock, so only enqueue."""
        kind = ev.store_key[1] if isinstance(ev.store_key, tuple) else str(ev.store_key)
        if kind in ("virtualservices", "deployments", "rollouts", "leases"):
            self._q.put(("store", self.clock(), (kind, ev.type, ev.obj)))

    def on_write(self, rec: Any) -> None:
        self._q.put(("write", self.clock(), rec))

    def note_kill(self, what: str, *, leader: bool = True) -> None:
        now = self.clock()
        with self._lock:
            self.kills.append((now, what))
            if leader and not (self.down and self.down[-1][1] is None):
                self.down.append((now, None))

    def note_metrics_outage(self, start: bool) -> None:
        now = self.clock()
        with self._lock:
            if start:
                self.metrics_outages.append((now, None))
            elif self.metrics_outages and self.metrics_outages[-1][1] is None:
                self.metrics_outages[-1] = (self.metrics_outages[-1][0], now)

    def watch_rollout(
        self,
        name: str,
        *,
        interval: float,
        weights: list[int],
        replicas: int = 2,
        hostile: bool = False,
    ) -> None:
        with self._lock:
            self.rollouts[name] = _RolloutState(
                name, interval, list(weights), replicas, hostile=hostile
            )

    def forget(self, name: str) -> None:
        """Stop checking a Rollout (it is being deleted; what it leaves behind is no route)."""
        with self._lock:
            self.rollouts.pop(name, None)

    def start_release(self, release: Release) -> None:
        with self._lock:
            self.releases.append(release)
            st = self.rollouts[release.rollout]
            if not release.good:
                st.bad_revisions.add(release.revision)

    def mark_passed(self, rollout: str, revision: str) -> None:
        """The revision the primary starts from (bootstrap) counts as passed."""
        with self._lock:
            self.rollouts[rollout].passed.add(revision)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every queued event has been checked."""
        deadline = time.monotonic() + timeout
        while self._q.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.drain()
        self._stop.set()
        self._thread.join(timeout=5)

    # ---- the loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                kind, at, payload = self._q.get(timeout=0.2)
            except queue.Empty:
                with self._lock:
                    self._check_judges(self.clock())
                continue
            try:
                with self._lock:
                    self.events += 1
                    if kind == "store":
                        self._store(at, *payload)
                    elif kind == "write":
                        self._write(at, payload)
                    self._check_judges(at)
            except Exception as exc:  # a checker bug must be visible, not silent
                self.violations.append(Violation("checker-error", "-", at - self.t0, repr(exc)))
            finally:
                self._q.task_done()

    def _violate(self, st: _RolloutState | None, rule: str, at: float, detail: str) -> None:
        name = st.name if st else "-"
        if st is not None:
            if rule in st.open_violation:
                return  # one violation per episode, not one per event
            st.open_violation.add(rule)
        self.violations.append(Violation(rule, name, at - self.t0, detail))

    def _clear(self, st: _RolloutState, rule: str) -> None:
        st.open_violation.discard(rule)

    # ---- store events -------------------------------------------------------------------------

    def _store(self, at: float, kind: str, type_: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        if kind == "leases":
            self._lease(at, obj)
            return
        if kind == "virtualservices":
            self.vs_writes += 1
            self._virtual_service(at, name, type_, obj)
            return
        if kind == "deployments":
            base = name
            for suffix in ("-primary", "-baseline"):
                base = base.removesuffix(suffix) if base.endswith(suffix) else base
            st = self.rollouts.get(base)
            if st is None:
                return
            if type_ == "DELETED":
                obj = {}
            if name.endswith("-primary"):
                self._primary(at, st, obj or None)
            elif name.endswith("-baseline"):
                st.baseline = obj or None
            else:
                st.target = obj or None
            self._check_pods(at, st)
            return
        if kind == "rollouts":
            st = self.rollouts.get(name)
            if st is None or type_ == "DELETED":
                return
            self._rollout_status(at, st, obj.get("status") or {})

    def _lease(self, at: float, obj: dict[str, Any]) -> None:
        holder = (obj.get("spec") or {}).get("holderIdentity") or ""
        if holder and self.down and self.down[-1][1] is None:
            killed = {w for t, w in self.kills if t >= self.down[-1][0] - 0.01}
            if holder not in killed:
                self.down[-1] = (self.down[-1][0], at)

    def _virtual_service(self, at: float, name: str, type_: str, obj: dict[str, Any]) -> None:
        st = self.rollouts.get(name)
        if type_ == "DELETED":
            return
        spec = obj.get("spec") or {}
        errors = self._validate(spec)
        if errors:
            self._violate(st, "route-schema", at, "; ".join(errors))
        canary = 0
        primary = 0
        baseline = 0
        for route in spec.get("http") or []:
            dests = route.get("route") or []
            weights = [int(d.get("weight", 100 if len(dests) == 1 else 0)) for d in dests]
            if sum(weights) != 100:
                self._violate(st, "route-sum", at, f"route {route.get('name')} weights {weights}")
            for d, w in zip(dests, weights, strict=True):
                host = str((d.get("destination") or {}).get("host", ""))
                if host.startswith(f"{name}-canary"):
                    canary += w
                elif host.startswith(f"{name}-primary"):
                    primary += w
                elif host.startswith(f"{name}-baseline"):
                    baseline += w
        if st is None:
            return
        if baseline > min(canary, 100 - canary):
            self._violate(
                st,
                "baseline-weight",
                at,
                f"baseline at {baseline}% beside the canary at {canary}% "
                f"(at most {min(canary, 100 - canary)}%)",
            )
        else:
            self._clear(st, "baseline-weight")
        before = st.canary_weight
        st.canary_weight, st.primary_weight, st.vs_seen = canary, primary, True
        st.baseline_weight = baseline
        if canary > 0 and before == 0:
            st.traffic_since = at
            st.judged_at = None
        if canary == 0:
            st.traffic_since = None
            self._clear(st, "unjudged-traffic")
        if before > 0 and canary == 0:
            # The switch at promotion: the primary runs the canary's revision and must be
            # rolled out before it takes the canary's share.
            rev = str(st.status.get("canaryRevision", ""))
            if rev and st.primary_revision == rev:
                facts = _counts(st.primary)
                if not _new_pods_ready(st.primary):
                    self._violate(
                        st,
                        "primary-not-ready",
                        at,
                        f"canary {before}%->0 while the primary's new pods (revision {rev}) "
                        f"are not ready: {facts}",
                    )
                elif not _rolled_out(st.primary):
                    self._violate(
                        st,
                        "primary-not-rolled-out",
                        at,
                        f"canary {before}%->0 before `kubectl rollout status` of the primary "
                        f"(revision {rev}) would succeed: {facts}",
                    )
        self._check_pods(at, st)

    def _primary(self, at: float, st: _RolloutState, dep: dict[str, Any] | None) -> None:
        st.primary = dep
        rev = _revision(dep)
        if dep is None or not rev or rev == st.primary_revision:
            return
        status = st.status
        last = len(st.weights) - 1
        passed = rev in st.passed or (
            status.get("canaryRevision") == rev
            and (
                status.get("phase") in ("Promoting", "Finalising", "Succeeded")
                or int(status.get("currentStep") or 0) >= last
            )
        )
        if rev in st.bad_revisions:
            self._violate(st, "primary-unpassed", at, f"primary took the BAD revision {rev}")
        elif not passed:
            self._violate(
                st,
                "primary-unpassed",
                at,
                f"primary took revision {rev} at phase {status.get('phase')} step "
                f"{status.get('currentStep')}/{last}",
            )
        st.primary_revision = rev
        st.passed.add(rev)

    def _rollout_status(self, at: float, st: _RolloutState, status: dict[str, Any]) -> None:
        old = st.status
        st.status = status
        analysis = status.get("analysis") or {}
        old_analysis = old.get("analysis") or {}
        new_t = _parse_time(analysis.get("lastAnalysisTime"))
        old_t = _parse_time(old_analysis.get("lastAnalysisTime"))
        outcome = str(analysis.get("outcome") or "")
        judged = outcome != "Error" or not self.outage.withdraw
        if new_t is not None and new_t != old_t and judged:
            st.judged_at = at
            self._clear(st, "unjudged-traffic")
        phase = status.get("phase")
        rev = str(status.get("canaryRevision", ""))
        if phase in ("Promoting", "Finalising", "Succeeded") and rev:
            st.passed.add(rev)

    def _check_pods(self, at: float, st: _RolloutState) -> None:
        if not st.vs_seen:
            return
        if st.canary_weight > 0 and _ready(st.target) == 0:
            self._violate(
                st,
                "route-no-pods",
                at,
                f"canary at {st.canary_weight}% with 0 ready pods "
                f"(replicas {(st.target or {}).get('spec', {}).get('replicas')})",
            )
        else:
            self._clear(st, "route-no-pods")
        if st.primary_weight > 0 and st.primary is not None and _ready(st.primary) == 0:
            self._violate(st, "route-no-pods-primary", at, f"primary at {st.primary_weight}%")
        else:
            self._clear(st, "route-no-pods-primary")
        if st.baseline_weight > 0 and _ready(st.baseline) == 0:
            self._violate(
                st,
                "route-no-pods-baseline",
                at,
                f"baseline at {st.baseline_weight}% with 0 ready pods "
                f"({'no Deployment' if st.baseline is None else _counts(st.baseline)})",
            )
        else:
            self._clear(st, "route-no-pods-baseline")

    def _downtime(self, start: float, end: float) -> float:
        total = 0.0
        for s, e in self.down:
            e2 = end if e is None else e
            lo, hi = max(s, start), min(e2, end)
            if hi > lo:
                total += hi - lo
        return total

    def _check_judges(self, now: float) -> None:
        for st in self.rollouts.values():
            if st.canary_weight <= 0 or st.traffic_since is None:
                continue
            phase = st.status.get("phase")
            if phase in ("Promoting", "Finalising") and (
                str(st.status.get("canaryRevision", "")) in st.passed
            ):
                # A revision that passed keeps serving while the primary rolls out to it
                # (DESIGN: traffic stays where it is served and judged); the hand-over itself
                # is checked by the primary-readiness and no-pods rules.
                continue
            since = st.judged_at if st.judged_at is not None else st.traffic_since
            limit = st.interval + self.grace + self._downtime(since, now)
            if now - since > limit:
                self._violate(
                    st,
                    "unjudged-traffic",
                    now,
                    f"canary at {st.canary_weight}% for {now - since:.1f}s without a judged "
                    f"interval (limit {limit:.1f}s; phase {st.status.get('phase')}, outcome "
                    f"{(st.status.get('analysis') or {}).get('outcome')}: "
                    f"{str(st.status.get('message', ''))[:120]})",
                )

    # ---- writes -------------------------------------------------------------------------------

    def _write(self, at: float, rec: Any) -> None:
        self.writes += 1
        if rec.injected or not 200 <= rec.code < 300:
            return
        if rec.holder_at_send != rec.process:
            self._violate(
                None,
                "non-leader-write",
                at,
                f"{rec.process} {rec.method} {rec.path} -> {rec.code} while the Lease was "
                f"held by {rec.holder_at_send!r}",
            )

    # ---- endings ------------------------------------------------------------------------------

    def finish_release(
        self,
        release: Release,
        *,
        phase: str,
        message: str,
        ended: float | None,
        slack_posts: Iterable[Any],
    ) -> None:
        """Judge one release's ending and its notices (after the settle time)."""
        with self._lock:
            release.phase, release.message, release.ended = phase, message, ended
            st = self.rollouts[release.rollout]
            if ended is None:
                release.stuck = True
                self._violate(
                    None,
                    "stuck",
                    self.clock(),
                    f"{release.rollout} revision {release.revision} did not end "
                    f"(phase {phase}: {message[:160]})",
                )
                return
            ok = phase == release.expected_phase
            if ok and release.expect_message:
                ok = release.expect_message in message
            release.correct = ok
            if st.canary_weight != 0:
                self._violate(
                    st, "stuck", ended, f"ended {phase} with canary at {st.canary_weight}%"
                )
            if st.baseline is not None or st.baseline_weight != 0:
                self._violate(
                    st,
                    "baseline-left",
                    ended,
                    f"ended {phase} with the baseline "
                    f"{'Deployment still there' if st.baseline is not None else 'gone'} and "
                    f"{st.baseline_weight}% routed to it",
                )
            hits = ending_posts(release.revision, slack_posts)
            release.notices = len(hits)
            if not hits:
                self._violate(
                    None,
                    "notice-lost",
                    self.clock(),
                    f"{release.rollout} revision {release.revision} ended {phase}: no ending "
                    "notice delivered",
                )
            elif len(hits) > 1:
                release.duplicates = len(hits) - 1
                first, last = hits[0].at, hits[-1].at
                if any(first - 1.0 <= t <= last for t, _ in self.kills):
                    release.excused_duplicates = release.duplicates
                else:
                    self._violate(
                        None,
                        "notice-duplicate",
                        self.clock(),
                        f"{release.rollout} {release.revision}: {len(hits)} ending notices, "
                        "no controller died between them",
                    )

    # ---- summary ------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        with self._lock:
            ended = [r for r in self.releases if r.phase]
            return {
                "violations": [str(v) for v in self.violations],
                "rules": sorted({v.rule for v in self.violations}),
                "releases": len(self.releases),
                "correct": sum(r.correct for r in self.releases),
                "judged_releases": len(ended),
                "kills": len(self.kills),
                "vs_writes": self.vs_writes,
                "writes": self.writes,
                "duplicates": sum(r.duplicates for r in self.releases),
            }


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
