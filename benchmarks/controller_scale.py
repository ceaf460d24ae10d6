"""Controller scale benchmark: N Rollouts in a long analysis, steady state, failover, shards.

Every part runs in its own process, so that CPU and memory are per process:

* the API emulator (:class:`kubeemu.Emulator`, real HTTP on 127.0.0.1), whose audit log counts
  the requests of each controller (told apart by User-Agent);
* each controller: the real one (watches, apscheduler, Lease, rate limiter, Istio router,
  status writes) assembled exactly as ``canaryd run`` does, with the scripted metrics of the
  test suite in place of Prometheus (a good canary), so the numbers measure the control loop;
* this driver, which creates the objects, reads each process's CPU (``/proc/<pid>/stat``,
  user + system) and RSS (``/proc/<pid>/status``) over time, and collects the controllers'
  own measurements (scheduler lag, tick time, judged windows) over a pipe.

Phases:

1. setup: N Deployments and Rollouts (``intervalsPerStep: 1000``, so each stays in its first
   analysis step for the whole run), all bootstrapped (Initialized), then every target's image
   changed (Progressing), then one interval of warm-up;
2. steady state for ``--minutes``: ticks, API requests (from the emulator's audit, watches
   apart) and controller CPU per Rollout-interval, scheduler lag p50/p99 (tick start minus the
   time it was wanted), tick p99, judged windows against the schedule, RSS sampled every
   ``--sample-seconds`` (start/end/max and growth);
3. takeover (``--takeover failover``: a standby that watched all along; ``restart``: a fresh
   process with the leader's identity, as a kubelet restart keeps the pod name; ``none``):
   SIGKILL the leader (no Lease release), then the time until every active Rollout is judged
   again, the lag of the overdue ones, and the new leader's lag p99 in that phase.

``--shards K`` runs K leaders with disjoint ``--shard`` label selectors (``canaryd.io/shard=s0``
...), N Rollouts each, plus a standby for shard s0, whose takeover after its leader's SIGKILL is
measured. Output: Markdown tables. Every run is bounded by ``--minutes`` and ``--setup-timeout``.

Run: ``nice -n 10 python -m benchmarks.controller_scale --rollouts 1000 --minutes 5``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import logging
import multiprocessing as mp
import os
import pstats
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
from array import array
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from canaryd.adapters.kube import KubeApi, RetryPolicy, load_api_client  # noqa: E402
from canaryd.adapters.transport import RateLimit  # noqa: E402
from canaryd.api.models import parse_duration  # noqa: E402
from canaryd.controller.assemble import Options, assemble  # noqa: E402
from canaryd.controller.gcfreeze import GcFreezer  # noqa: E402
from canaryd.controller.runtime import ControllerConfig  # noqa: E402
from canaryd.controller.scheduler import skipped_runs  # noqa: E402
from canaryd.core.types import MetricQuery, MetricReading  # noqa: E402
from kubeemu import Emulator  # noqa: E402
from tests.support.scripted_metrics import Profile, ScriptedMetrics  # noqa: E402

NS = "default"
SHARD_LABEL = "canaryd.io/shard"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
ROLLOUTS = f"/apis/canaryd.io/v1alpha1/namespaces/{NS}/rollouts"


# ---- per-process readings -------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one live process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


# ---- the emulator process -------------------------------------------------------------------


class GcPauses:
    """Every generation-2 (full) collection of this process: wall-clock start, length (s),
    objects collected (a ``gc.callbacks`` pair; a collection holds the GIL throughout)."""

    def __init__(self) -> None:
        self.full: list[tuple[float, float, int]] = []
        self._started: dict[int, tuple[float, float]] = {}
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        me = threading.get_ident()
        if phase == "start":
            self._started[me] = (time.perf_counter(), time.time())
            return
        began = self._started.pop(me, None)
        if began is not None:
            self.full.append((began[1], time.perf_counter() - began[0], info.get("collected", 0)))


def emulator_main(conn: Connection, kubeconfig: str, freeze: bool) -> None:
    """The API emulator. ``freeze``: its collector's objects frozen as the controller's are
    (:class:`GcFreezer`). kube-apiserver is Go, whose collector runs beside the program with
    sub-millisecond stops; in this Python process, holding every object version, a full
    collection walks all of it (the controller's took 1.8-2.4 s at 1.4 GB), and every
    controller request waits meanwhile."""
    pauses = GcPauses()
    freezer = GcFreezer().start() if freeze else None
    emu = Emulator(crd_paths=[ROOT / "crds"], install_istio=True).start()
    emu.write_kubeconfig(kubeconfig)
    state = emu._state  # the audit log, taken and cleared under its own lock
    conn.send(("ready", os.getpid()))
    while True:
        cmd, *_ = conn.recv()
        if cmd == "gc":
            conn.send(list(pauses.full))
        elif cmd == "audit":
            with state.audit_lock:
                records = list(state.audit)
                state.audit.clear()
            conn.send(Counter((r.user_agent, r.verb, r.resource) for r in records))
        elif cmd == "stop":
            emu.stop()
            if freezer is not None:
                freezer.stop()
            conn.send("stopped")
            return


# ---- a controller process -------------------------------------------------------------------


class BenchMetrics(ScriptedMetrics):
    """Scripted metrics (a good canary) that keep no per-query history (memory stays flat) and
    record each judged window against the schedule, drained by the driver."""

    def __init__(self, interval: float) -> None:
        super().__init__(Profile(rps=400))
        self.interval = interval
        self.deviation = array("d")  # |window - interval|
        self.lateness = array("d")  # read time - end of the window
        self.judged = 0
        self.mark: float | None = None
        self.first_after_mark: dict[str, tuple[float, float]] = {}
        """Per Rollout, its first read after the mark: (when, end of the window it judged)."""

    def read(self, queries: Sequence[MetricQuery]) -> list[MetricReading]:
        now = time.time()
        with self._lock:
            for q in queries[:1]:  # one record per tick, not per metric
                self.judged += 1
                self.deviation.append(abs(q.window_seconds - self.interval))
                self.lateness.append(now - q.at.timestamp())
                if self.mark is not None and q.rollout not in self.first_after_mark:
                    self.first_after_mark[q.rollout] = (now, q.at.timestamp())
        return [self._one(q) for q in queries]


@dataclass
class ControllerSpec:
    identity: str
    kubeconfig: str
    interval: float
    shard: str = ""
    workers: int = 4
    qps: float = RateLimit().qps
    burst: int = RateLimit().burst
    nice: int | None = None
    """Niceness of the controller process (None: inherited from the driver)."""
    gc_full_seconds: float | None = None
    """The controller's ``gc_full_seconds`` (None: its default)."""


def controller_main(conn: Connection, spec: ControllerSpec) -> None:
    logging.basicConfig(level=logging.ERROR)
    # apscheduler's "skipped: maximum number of running instances" warnings reach the
    # scheduler's filter, which counts them (skipped_runs) and drops them.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.WARNING)
    trace_to = os.environ.get("CANARYD_SCALE_TRACEMALLOC")  # a file: where memory is held
    if trace_to:
        tracemalloc.start(1)
    baseline: list[tracemalloc.Snapshot] = []
    profiling: list[bool] = []
    if spec.nice is not None:
        os.setpriority(os.PRIO_PROCESS, 0, spec.nice)
    metrics = BenchMetrics(spec.interval)
    gc_options = {} if spec.gc_full_seconds is None else {"gc_full_seconds": spec.gc_full_seconds}
    client = load_api_client(kubeconfig=spec.kubeconfig)
    client.user_agent = f"bench/{spec.identity}"
    options = Options(
        controller=ControllerConfig(
            namespaces=(NS,),
            shard=spec.shard,
            identity=spec.identity,
            workers=spec.workers,
            **gc_options,
        ),
        retry=RetryPolicy(attempts=5, base_seconds=0.05, cap_seconds=1.0),
        rate_limit=RateLimit(qps=spec.qps, burst=spec.burst),
    )
    parts = assemble(client, options, metrics_for=lambda _r: metrics)
    scheduler = parts.controller.scheduler
    profile_to = os.environ.get("CANARYD_SCALE_PROFILE")  # a file: where a tick's CPU goes
    profiles: dict[int, cProfile.Profile] = {}
    if profile_to:
        _profile_ticks(scheduler, profiles)
    lock = threading.Lock()
    split = _CpuSplit(scheduler)
    lags = array("d")
    lag_at = array("d")  # when each lagged run started (wall clock), to place it near a pause
    durations = array("d")
    started: dict[tuple[str, str], float] = {}
    phases: dict[str, str] = {}
    errors = [0]
    leading: list[tuple[float, bool]] = []

    def on_start(key: tuple[str, str], lag: float) -> None:
        with lock:
            lags.append(lag)
            lag_at.append(time.time())
            started[key] = time.perf_counter()

    def on_tick(key: tuple[str, str], result: Any) -> None:
        with lock:
            t0 = started.pop(key, None)
            if t0 is not None:
                durations.append(time.perf_counter() - t0)
            if result.phase:
                phases[key[1]] = result.phase
            if result.error is not None:
                errors[0] += 1

    scheduler.on_start = on_start
    scheduler.on_tick = on_tick
    told = parts.controller.on_leader_change

    def on_leader_change(value: bool) -> None:
        leading.append((time.time(), value))
        if told is not None:
            told(value)

    parts.controller.on_leader_change = on_leader_change
    parts.start()
    conn.send(("ready", os.getpid()))
    while True:
        cmd, *arg = conn.recv()
        if cmd == "snapshot":
            with lock, metrics._lock:
                out = {
                    "lags": list(lags),
                    "lag_at": list(lag_at),
                    "durations": list(durations),
                    "ticks": scheduler.ticks,
                    "errors": errors[0],
                    "phases": Counter(phases.values()),
                    "deviation": list(metrics.deviation),
                    "lateness": list(metrics.lateness),
                    "judged": metrics.judged,
                    "first_after_mark": dict(metrics.first_after_mark),
                    "leading": list(leading),
                    "throttled": parts.api.limiter.throttled if parts.api.limiter else 0,
                    "skipped": skipped_runs(),
                    "kept": scheduler.retimes_skipped,
                    "tick_cpu": split.ticks,
                    "gc_cpu": split.gc,
                    "gc_counts": list(split.collections),
                    "gc_full": list(split.pauses.full),
                }
                if arg and arg[0] == "drain":
                    del lags[:], lag_at[:], durations[:], metrics.deviation[:], metrics.lateness[:]
                    if profile_to and not profiling:  # the start of the steady state
                        profiles.clear()  # each thread starts a new profile with its next tick
                        profiling.append(True)
                    if trace_to and not baseline:  # the start of the steady state
                        baseline.append(tracemalloc.take_snapshot())
            conn.send(out)
        elif cmd == "mark":
            with metrics._lock:
                metrics.mark = arg[0]
                metrics.first_after_mark.clear()
            conn.send("marked")
        elif cmd == "stop":
            if trace_to and baseline:
                _dump_memory(f"{trace_to}.{spec.identity}", baseline[0])
            if profile_to and profiles:
                _dump_profile(f"{profile_to}.{spec.identity}", list(profiles.values()))
            parts.stop()
            conn.send("stopped")
            return


class _CpuSplit:
    """Where the controller's CPU goes, cheaply enough to run in every measurement: the CPU
    time of the tick threads inside ticks (``time.thread_time``, exact per thread) and of
    Python's cyclic garbage collector (a ``gc.callbacks`` pair; a collection runs in the thread
    that triggered it and holds the GIL, so its thread CPU is its cost), per generation. The
    rest of the process' CPU is the watches, apscheduler's loop, the Lease and the reporting."""

    def __init__(self, scheduler: Any) -> None:
        self.ticks = 0.0
        self.gc = 0.0
        self.collections = [0, 0, 0]
        self.pauses = GcPauses()
        self._lock = threading.Lock()
        self._gc_started: dict[int, float] = {}
        reconciler = scheduler.reconciler
        tick = reconciler.tick

        def timed(namespace: str, name: str) -> Any:
            t0 = time.thread_time()
            try:
                return tick(namespace, name)
            finally:
                spent = time.thread_time() - t0
                with self._lock:
                    self.ticks += spent

        reconciler.tick = timed
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        me = threading.get_ident()
        if phase == "start":
            self._gc_started[me] = time.thread_time()
            return
        t0 = self._gc_started.pop(me, None)
        if t0 is not None:  # under the GIL: no other thread runs Python meanwhile
            self.gc += time.thread_time() - t0
            self.collections[info.get("generation", 2)] += 1


def _profile_ticks(scheduler: Any, profiles: dict[int, cProfile.Profile]) -> None:
    """Run every tick under a per-thread cProfile timed by the thread's CPU clock (diagnosis of
    CPU per tick: ``CANARYD_SCALE_PROFILE=<file prefix>``; the profiler's own overhead inflates
    the total, the shares are what it is for)."""
    reconciler = scheduler.reconciler
    tick = reconciler.tick

    def profiled(namespace: str, name: str) -> Any:
        prof = profiles.get(threading.get_ident())
        if prof is None:
            prof = profiles[threading.get_ident()] = cProfile.Profile(time.thread_time)
        prof.enable()
        try:
            return tick(namespace, name)
        finally:
            prof.disable()

    reconciler.tick = profiled


def _dump_profile(path: str, profiles: list[cProfile.Profile]) -> None:
    stats = pstats.Stats(profiles[0])
    for prof in profiles[1:]:
        stats.add(prof)
    stats.dump_stats(path)


def _dump_memory(path: str, baseline: tracemalloc.Snapshot) -> None:
    """Where memory grew since the steady state began, by line, the 40 largest (diagnosis of
    RSS growth: ``CANARYD_SCALE_TRACEMALLOC=<file prefix>``)."""
    grown = tracemalloc.take_snapshot().compare_to(baseline, "lineno")
    with open(path, "w") as out:
        out.writelines(f"{stat}\n" for stat in grown[:40])


@dataclass
class Proc:
    name: str
    process: Any
    conn: Connection
    pid: int = 0

    def ask(self, *cmd: Any, timeout: float = 120.0) -> Any:
        self.conn.send(cmd)
        if not self.conn.poll(timeout):
            raise SystemExit(f"{self.name} did not answer {cmd[0]} within {timeout}s")
        return self.conn.recv()

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.process.join(10)


def spawn(ctx: Any, name: str, target: Any, *args: Any) -> Proc:
    parent, child = ctx.Pipe()
    process = ctx.Process(target=target, args=(child, *args), name=name, daemon=True)
    process.start()
    if not parent.poll(120):
        raise SystemExit(f"{name} did not start")
    _, pid = parent.recv()
    return Proc(name, process, parent, pid)


# ---- objects --------------------------------------------------------------------------------


def deployment(name: str, image: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def rollout(name: str, interval: str, shard: str) -> dict[str, Any]:
    labels = {SHARD_LABEL: shard} if shard else {}
    return {
        "apiVersion": "canaryd.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "targetRef": {"name": name},
            "service": {"port": 8080},
            "schedule": {"interval": interval, "stepWeights": [10, 50], "intervalsPerStep": 1000},
            "progressDeadlineSeconds": 3600,
        },
    }


def in_parallel(fn: Any, items: Sequence[Any], threads: int = 8) -> None:
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(fn, items):
            pass


# ---- the run --------------------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    cpu: dict[str, float]
    rss: dict[str, float]


@dataclass
class Run:
    args: argparse.Namespace
    ctx: Any
    kubeconfig: str
    emulator: Proc
    admin: KubeApi
    interval: float
    controllers: dict[str, Proc] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def start_controller(self, identity: str, shard: str = "") -> Proc:
        spec = ControllerSpec(
            identity=identity,
            kubeconfig=self.kubeconfig,
            interval=self.interval,
            shard=shard,
            workers=self.args.workers,
            qps=self.args.kube_api_qps,
            burst=self.args.kube_api_burst,
            nice=self.args.controller_nice,
            gc_full_seconds=self.args.gc_full_seconds,
        )
        proc = spawn(self.ctx, identity, controller_main, spec)
        self.controllers[identity] = proc
        return proc

    def sample(self, names: Sequence[str]) -> Sample:
        procs = [self.emulator] + [self.controllers[n] for n in names]
        cpu = {p.name: cpu_seconds(p.pid) for p in procs}
        rss = {p.name: rss_mib(p.pid) for p in procs}
        return Sample(time.monotonic(), cpu, rss)

    def wait_phase(self, leaders: Sequence[str], phase: str, count: int, what: str) -> float:
        started = time.monotonic()
        deadline = started + self.args.setup_timeout
        while time.monotonic() < deadline:
            have = sum(self.controllers[n].ask("snapshot")["phases"].get(phase, 0) for n in leaders)
            if have >= count:
                return time.monotonic() - started
            time.sleep(2.0)
        raise SystemExit(f"{what}: only {have}/{count} {phase} within {self.args.setup_timeout}s")


def create_objects(run: Run, names: Sequence[str], shard_of: dict[str, str]) -> None:
    def create(name: str) -> None:
        run.admin.create(DEPLOYMENTS, deployment(name, f"{name}:1"))
        run.admin.create(ROLLOUTS, rollout(name, run.args.interval, shard_of.get(name, "")))

    in_parallel(create, names)


def release(run: Run, names: Sequence[str]) -> None:
    """Change every target's image, spread evenly over one interval (releases start at random
    moments in a real cluster; released all at once, every analysis would fall due at the same
    instant for ever, since due times are anchored to the schedule)."""
    image = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "v2"}]}}}}
    started = time.monotonic()
    gap = run.interval / max(len(names), 1)

    def patch(item: tuple[int, str]) -> None:
        i, name = item
        pause = started + i * gap - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        run.admin.merge_patch(f"{DEPLOYMENTS}/{name}", image)

    in_parallel(patch, list(enumerate(names)), threads=4)


def steady(run: Run, leaders: Sequence[str], others: Sequence[str], n_per: int) -> dict[str, Any]:
    """Measure ``--minutes`` of steady state; returns per-leader rows and the RSS series."""
    names = [*leaders, *others]
    for name in leaders:
        run.controllers[name].ask("snapshot", "drain")
    run.emulator.ask("audit")
    before = {n: run.controllers[n].ask("snapshot") for n in leaders}
    wall0 = time.time()
    first = run.sample(names)
    samples = [first]
    end = first.at + run.args.minutes * 60
    while (now := time.monotonic()) < end:
        time.sleep(min(run.args.sample_seconds, end - now))
        samples.append(run.sample(names))
    last = samples[-1]
    audit: Counter[tuple[str, str, str]] = run.emulator.ask("audit")
    emu_full = [f for f in run.emulator.ask("gc") if f[0] >= wall0]
    elapsed = last.at - first.at
    rollout_intervals = n_per * elapsed / run.interval
    rows = {}
    for name in leaders:
        snap = run.controllers[name].ask("snapshot", "drain")
        agent = f"bench/{name}"
        requests = sum(c for (ua, verb, _), c in audit.items() if ua == agent and verb != "watch")
        watches = sum(c for (ua, verb, _), c in audit.items() if ua == agent and verb == "watch")
        by_verb: Counter[str] = Counter()
        for (ua, verb, resource), c in audit.items():
            if ua == agent and verb != "watch":
                by_verb[f"{verb} {resource}"] += c
        cpu = last.cpu[name] - first.cpu[name]
        rss = [s.rss[name] for s in samples]
        full = [f for f in snap["gc_full"] if f[0] >= wall0]
        near = near_pause(snap["lag_at"], full)
        near_emu = near_pause(snap["lag_at"], emu_full)
        away = [v for v, a, b in zip(snap["lags"], near, near_emu, strict=True) if not (a or b)]
        rows[name] = {
            "rollouts": n_per,
            "seconds": elapsed,
            "ticks_per_ri": (snap["ticks"] - before[name]["ticks"]) / rollout_intervals,
            "req_per_ri": requests / rollout_intervals,
            "watches": watches,
            "by_verb": by_verb.most_common(8),
            "cpu_ms_per_ri": 1000 * cpu / rollout_intervals,
            "tick_cpu_ms_per_ri": 1000
            * (snap["tick_cpu"] - before[name]["tick_cpu"])
            / rollout_intervals,
            "gc_cpu_ms_per_ri": 1000
            * (snap["gc_cpu"] - before[name]["gc_cpu"])
            / rollout_intervals,
            "gc_counts": [
                a - b for a, b in zip(snap["gc_counts"], before[name]["gc_counts"], strict=True)
            ],
            "cpu_share": cpu / elapsed,
            "lag_p50": pct(snap["lags"], 0.50),
            "lag_p99": pct(snap["lags"], 0.99),
            "lag_max": max(snap["lags"], default=0.0),
            "gc_full": full,
            "lag_p99_away": pct(away, 0.99),
            "slow_near": sum(1 for v, n in zip(snap["lags"], near, strict=True) if n and v > 2),
            "slow_near_emulator": sum(
                1 for v, n in zip(snap["lags"], near_emu, strict=True) if n and v > 2
            ),
            "slow": sum(1 for v in snap["lags"] if v > 2),
            "tick_p50_ms": 1000 * pct(snap["durations"], 0.50),
            "tick_p99_ms": 1000 * pct(snap["durations"], 0.99),
            "judged_per_ri": (snap["judged"] - before[name]["judged"]) / rollout_intervals,
            "window_dev_max": max(snap["deviation"], default=0.0),
            "late_p99": pct(snap["lateness"], 0.99),
            "errors": snap["errors"] - before[name]["errors"],
            "throttled": snap["throttled"] - before[name]["throttled"],
            "skipped": snap["skipped"] - before[name]["skipped"],
            "kept": snap["kept"] - before[name]["kept"],
            "rss_start": rss[0],
            "rss_end": rss[-1],
            "rss_max": max(rss),
            "rss_growth": 100 * (rss[-1] - rss[0]) / rss[0] if rss[0] else 0.0,
            "rss_series": rss,
        }
    emu_cpu = last.cpu[run.emulator.name] - first.cpu[run.emulator.name]
    return {
        "rows": rows,
        "emulator_cpu_share": emu_cpu / elapsed,
        "emulator_rss": (first.rss[run.emulator.name], last.rss[run.emulator.name]),
        "emulator_full": emu_full,
        "others_rss": {o: (first.rss[o], last.rss[o]) for o in others},
    }


PAUSE_SETTLE = 10.0
"""Seconds after a full collection ends during which a run's lag still counts as its doing."""
PAUSE_MIN = 0.25
"""Full collections shorter than this are not counted as pauses (a frozen heap's are ~0 s)."""


def near_pause(starts: Sequence[float], full: Sequence[tuple[float, float, int]]) -> list[bool]:
    """For each run (its wall-clock start), did it start during a full collection of at least
    ``PAUSE_MIN`` s or within ``PAUSE_SETTLE`` s after one (the backlog the pause left)?"""
    spans = [(at, at + took + PAUSE_SETTLE) for at, took, _ in full if took >= PAUSE_MIN]
    return [any(a <= t <= b for a, b in spans) for t in starts]


def takeover(
    run: Run, leader: str, standby: str | None, names: Sequence[str], shard: str
) -> dict[str, Any]:
    """SIGKILL ``leader``; the standby (or, with no standby, a fresh process with the leader's
    identity: a restart) takes over. Time until every Rollout in ``names`` is judged again."""
    if standby is None:
        run.controllers[leader].ask("snapshot", "drain")
    else:
        run.controllers[standby].ask("snapshot", "drain")
    killed_at = time.time()
    if standby is not None:
        run.controllers[standby].ask("mark", killed_at)
    run.controllers[leader].kill()
    del run.controllers[leader]
    kind = "failover"
    if standby is None:
        kind = "restart"
        standby = leader
        run.start_controller(leader, shard)
        run.controllers[leader].ask("mark", killed_at)
    proc = run.controllers[standby]
    deadline = time.monotonic() + run.interval * 3 + 60
    snap = first = proc.ask("snapshot")
    while time.monotonic() < deadline:
        snap = proc.ask("snapshot")
        if len(snap["first_after_mark"]) >= len(names):
            break
        time.sleep(0.5)
    judged = snap["first_after_mark"]
    won = [t for t, v in snap["leading"] if v]
    won_at = won[-1] if won else None
    after_kill = sorted(t - killed_at for t, _ in judged.values())
    # How late each Rollout's first judgement came: after its interval ended, or after the
    # new leader took over when the interval ended while nobody led.
    after_won = sorted(t - max(end, won_at) for t, end in judged.values()) if won_at else []
    return {
        "kind": kind,
        "rollouts": len(names),
        "judged_again": len(judged),
        "lease_s": (won_at - killed_at) if won_at else None,
        "all_judged_s": after_kill[-1] if after_kill else None,
        "p50_after_won": pct(after_won, 0.5),
        "p99_after_won": pct(after_won, 0.99),
        "max_after_won": after_won[-1] if after_won else None,
        "lag_p99": pct(snap["lags"], 0.99),
        "lag_max": max(snap["lags"], default=0.0),
        "ticks": len(snap["lags"]),
        "skipped": snap["skipped"] - first["skipped"],
    }


# ---- output ---------------------------------------------------------------------------------


def print_steady(result: dict[str, Any], args: argparse.Namespace) -> None:
    print("\n### Steady state\n")
    print(
        "| process | Rollouts | interval | measured | ticks / RI | API req / RI | "
        "controller CPU ms / RI | CPU share | lag p50 / p99 / max s | tick p50 / p99 ms | "
        "judged window - interval, max s | read after window end p99 s | RSS start / end / max "
        "MiB | RSS growth |"
    )
    print("|" + "---|" * 14)
    for name, r in result["rows"].items():
        print(
            f"| {name} | {r['rollouts']} | {args.interval} | {r['seconds'] / 60:.1f} min | "
            f"{r['ticks_per_ri']:.3f} | {r['req_per_ri']:.2f} | {r['cpu_ms_per_ri']:.2f} | "
            f"{100 * r['cpu_share']:.0f}% | {r['lag_p50']:.3f} / {r['lag_p99']:.3f} / "
            f"{r['lag_max']:.2f} | {r['tick_p50_ms']:.1f} / {r['tick_p99_ms']:.1f} | "
            f"{r['window_dev_max']:.3f} | {r['late_p99']:.3f} | {r['rss_start']:.0f} / "
            f"{r['rss_end']:.0f} / {r['rss_max']:.0f} | {r['rss_growth']:+.1f}% |"
        )
    print("\nRI = Rollout-interval. Requests by verb (steady state, per leader):")
    for name, r in result["rows"].items():
        verbs = ", ".join(f"{k}: {v}" for k, v in r["by_verb"])
        print(
            f"- {name}: {verbs}; watch requests: {r['watches']}; tick errors: {r['errors']}; "
            f"throttled requests: {r['throttled']}; runs skipped while the Rollout's previous "
            f"run was in flight: {r['skipped']}; next runs kept as apscheduler held them: "
            f"{r['kept']}"
        )
        print(
            f"  CPU ms per RI: {r['cpu_ms_per_ri']:.2f} in all, of which inside ticks "
            f"{r['tick_cpu_ms_per_ri']:.2f} and in the cyclic GC {r['gc_cpu_ms_per_ri']:.2f} "
            f"(GC inside or outside ticks; collections by generation "
            f"{'/'.join(str(c) for c in r['gc_counts'])})"
        )
        full = r["gc_full"]
        print(
            f"  full collections (generation 2): {len(full)}{_pauses(full)}; runs with lag > 2 s: "
            f"{r['slow']}, of which {r['slow_near']} within {PAUSE_SETTLE:g} s of one of its "
            f"full collections of {PAUSE_MIN:g} s or more and {r['slow_near_emulator']} of the "
            f"emulator's; lag p99 of the runs near neither {r['lag_p99_away']:.3f} s"
        )
        print(f"  RSS series (MiB, every {args.sample_seconds:g} s): " + " ".join(
            f"{v:.0f}" for v in r["rss_series"]))  # fmt: skip
    emu = result["emulator_rss"]
    efull = result["emulator_full"]
    print(
        f"- emulator ({args.emulator_gc} collector): CPU share "
        f"{100 * result['emulator_cpu_share']:.0f}%, RSS {emu[0]:.0f} -> {emu[1]:.0f} MiB; full "
        f"collections {len(efull)}{_pauses(efull)}"
    )
    for name, (a, b) in result["others_rss"].items():
        print(f"- {name} (standby): RSS {a:.0f} -> {b:.0f} MiB")


def _pauses(full: Sequence[tuple[float, float, int]]) -> str:
    if not full:
        return ""
    took = sorted(t for _, t, _ in full)
    return f" ({took[0]:.2f}-{took[-1]:.2f} s each, {sum(f for *_, f in full)} objects found)"


def print_takeover(rows: Sequence[dict[str, Any]]) -> None:
    print("\n### Takeover (SIGKILL of the leader, no Lease release)\n")
    print(
        "| kind | Rollouts | judged again | kill -> leading s | kill -> all judged s | "
        "first judgement late p50 / p99 / max s | new leader's lag p99 / max s |"
    )
    print("|" + "---|" * 7)
    for r in rows:
        lease = f"{r['lease_s']:.1f}" if r["lease_s"] is not None else "never"
        alls = f"{r['all_judged_s']:.1f}" if r["all_judged_s"] is not None else "-"
        mx = f"{r['max_after_won']:.1f}" if r["max_after_won"] is not None else "-"
        print(
            f"| {r['kind']} | {r['rollouts']} | {r['judged_again']} | {lease} | {alls} | "
            f"{r['p50_after_won']:.1f} / {r['p99_after_won']:.1f} / {mx} | "
            f"{r['lag_p99']:.2f} / {r['lag_max']:.2f} |"
        )
    print(
        "\nLate = a Rollout's first judgement after the kill minus the later of its interval's "
        "end and the moment the new leader took over (the Lease wait is the column before)."
    )
    for r in rows:
        print(
            f"- {r['kind']}: runs skipped by the new leader's apscheduler while the Rollout's "
            f"previous run was in flight: {r['skipped']}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=100, help="Rollouts (per shard)")
    parser.add_argument("--interval", default="1m")
    parser.add_argument("--minutes", type=float, default=2.0, help="steady-state duration")
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kube-api-qps", type=float, default=RateLimit().qps)
    parser.add_argument("--kube-api-burst", type=int, default=RateLimit().burst)
    parser.add_argument("--shards", type=int, default=0, help="K sharded leaders (0: one)")
    parser.add_argument("--takeover", choices=["failover", "restart", "none"], default="failover")
    parser.add_argument("--setup-timeout", type=float, default=900.0)
    parser.add_argument(
        "--controller-nice",
        type=int,
        default=None,
        help="niceness of the controller processes (default: the driver's)",
    )
    parser.add_argument(
        "--warmup-intervals",
        type=float,
        default=1.5,
        help="intervals between the release and the steady state (11: every Rollout's display "
        "history of 10 intervals is full when the measurement starts)",
    )
    parser.add_argument(
        "--emulator-gc",
        choices=["freeze", "plain"],
        default="freeze",
        help="the emulator's collector: frozen as the controller's (default; kube-apiserver's "
        "Go collector does not stop the server for seconds), or Python's plain one",
    )
    parser.add_argument(
        "--gc-full-seconds",
        type=float,
        default=None,
        help="the controllers' gc_full_seconds (default: ControllerConfig's)",
    )
    args = parser.parse_args(argv)
    interval = parse_duration(args.interval)
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="canaryd-scale-") as tmp:
        kubeconfig = str(Path(tmp) / "kubeconfig")
        emulator = spawn(ctx, "emulator", emulator_main, kubeconfig, args.emulator_gc == "freeze")
        admin = KubeApi(load_api_client(kubeconfig=kubeconfig), retry=RetryPolicy(attempts=8))
        run = Run(args, ctx, kubeconfig, emulator, admin, interval)
        try:
            return execute(run)
        finally:
            for proc in list(run.controllers.values()):
                try:
                    proc.ask("stop", timeout=60)
                except (SystemExit, OSError, EOFError):
                    proc.kill()
            admin.close()
            emulator.ask("stop", timeout=60)


def execute(run: Run) -> int:
    args = run.args
    n = args.rollouts
    shards = [f"s{i}" for i in range(args.shards)] if args.shards else [""]
    names_of = {s: [f"{s or 'r'}-{i:05d}" for i in range(n)] for s in shards}
    shard_of = {name: s for s, names in names_of.items() for name in names}
    every = [name for names in names_of.values() for name in names]
    t0 = time.monotonic()
    create_objects(run, every, shard_of)
    print(f"created {len(every)} Deployments and Rollouts in {time.monotonic() - t0:.1f} s")
    leaders = []
    for s in shards:
        name = f"leader-{s}" if s else "leader"
        run.start_controller(name, f"{SHARD_LABEL}={s}" if s else "")
        leaders.append(name)
    standby = None
    if args.takeover == "failover":
        standby = f"standby-{shards[0]}" if shards[0] else "standby"
        shard0 = f"{SHARD_LABEL}={shards[0]}" if shards[0] else ""
        time.sleep(3.0)  # the leaders hold their Leases first
        run.start_controller(standby, shard0)
    boot = run.wait_phase(leaders, "Initialized", len(every), "bootstrap")
    print(f"all {len(every)} Initialized {boot:.1f} s after the controllers started")
    release(run, every)
    prog = run.wait_phase(leaders, "Progressing", len(every), "release")
    print(
        f"all Progressing {prog:.1f} s after the image change; warm-up "
        f"{args.warmup_intervals:g} x {args.interval}"
    )
    time.sleep(run.interval * args.warmup_intervals)
    result = steady(run, leaders, [standby] if standby else [], n)
    print(
        f"\n## controller_scale: {len(shards)} leader(s) x {n} Rollouts, interval "
        f"{args.interval}, {args.workers} workers, QPS {args.kube_api_qps:g} / burst "
        f"{args.kube_api_burst}, {os.cpu_count()} CPUs (shared)"
    )
    print_steady(result, args)
    if args.takeover != "none":
        row = takeover(run, leaders[0], standby, names_of[shards[0]], (
            f"{SHARD_LABEL}={shards[0]}" if shards[0] else ""))  # fmt: skip
        print_takeover([row])
    if args.shards:
        print(
            f"\nShards: {len(shards)} leaders with disjoint selectors {SHARD_LABEL}=s0..; "
            f"the takeover row is shard s0's ({n} Rollouts), the others kept running."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
