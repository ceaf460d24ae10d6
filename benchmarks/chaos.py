"""The chaos suite: real ``canaryd run`` processes under kills, freezes and injected faults.

``python -m benchmarks.chaos [--short] [--seed N] [--only NAME ...] [--json PATH]`` prints one
table row per experiment: invariant violations (by rule), correct endings, decision time
against the fault-free run. Everything runs on 127.0.0.1 (see :mod:`benchmarks.chaos_rig`);
the oracle is :mod:`benchmarks.chaos_checker`. The short version (``--short``) is what CI runs
(``tests/chaos/``): >= 10 kills and each fault kind once.

Experiments (issue 9): 0 fault-free; 1 SIGKILL at random instants and at Promoting/Finalising;
2 two replicas, the leader killed and frozen (SIGSTOP) past its lease; 3 API 5xx 10% / 30%,
409 30%, latency, dropped watches and 410 Gone; 4 Prometheus down / slow / empty for 1-3
intervals and down for longer than the deadline; 5 Slack 429 / 5xx / down; 6 hostile webhooks
(slow drip, huge body, redirect, bad URL) beside a sentinel Rollout.
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.chaos_checker import OutageRule, Release
from benchmarks.chaos_rig import LEASE, NS, Rig, Timing, background
from benchmarks.chaos_servers import KubeProxy

MAIN_APPS = ["app0", "app1", "app2"]
SENTINEL = "sentinel"
HOSTILE = {
    # As many dripping gates as the controller has workers (4 by default): issue 9 item 5.
    **{f"h-drip{i}": {"type": "rollout", "path": "/drip"} for i in range(4)},
    "h-huge": {"type": "rollout", "path": "/huge"},
    "h-redirect": {"type": "confirm-promotion", "path": "/redirect"},
    "h-badurl": {"type": "rollout", "url": "http://[::1"},
}
ALL_APPS = [*MAIN_APPS, SENTINEL, *HOSTILE]
ERROR_LIMIT = 5
"""The Rollouts' analysis.errorLimit (the default): the metrics-outage deadline, in intervals,
of the code before issue 9 item 9."""
OUTAGE_DEADLINE_SECONDS = 10
"""``analysis.outageDeadlineSeconds`` of every Rollout (item 9's field, tick stream): the same
10 s as errorLimit x interval. A server whose CRD does not know the field prunes it."""
ANALYSIS = {"outageDeadlineSeconds": OUTAGE_DEADLINE_SECONDS}
BASELINE_APPS = frozenset({"app2"})
"""Main apps with a baseline arm (``spec.baseline``): their three-way split, the baseline
Deployment's lifecycle and its removal after every ending are checked in every experiment that
releases them (SIGKILL, two replicas, API faults, Prometheus and Slack outages)."""


@dataclass
class Row:
    experiment: str
    fault: str
    releases: int = 0
    correct: int = 0
    violations: list[str] = field(default_factory=list)
    kills: int = 0
    good_seconds: list[float] = field(default_factory=list)
    bad_seconds: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def rules(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in self.violations:
            rule = v.split("]", 1)[0].lstrip("[")
            out[rule] = out.get(rule, 0) + 1
        return out

    @property
    def correct_pct(self) -> float:
        return 100.0 * self.correct / self.releases if self.releases else 0.0


@dataclass
class Suite:
    short: bool
    seed: int
    rows: list[Row] = field(default_factory=list)
    baseline_good: float | None = None
    baseline_bad: float | None = None


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


# ---- plumbing ------------------------------------------------------------------------------------


class Killer:
    """Kills controller processes on cue (from event triggers or a random timer), restarting
    each at once as a new incarnation. Runs in its own thread: triggers only enqueue."""

    def __init__(self, rig: Rig, slots: Sequence[str]) -> None:
        self.rig = rig
        self.slots = list(slots)
        self.q: queue.Queue[tuple[float, str]] = queue.Queue()
        self.kills = 0
        self.by_reason: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def request(self, reason: str, delay: float = 0.0) -> None:
        self.q.put((time.monotonic() + delay, reason))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                when, reason = self.q.get(timeout=0.1)
            except queue.Empty:
                continue
            time.sleep(max(0.0, when - time.monotonic()))
            target = self.rig.leader() or self.rig.controller(self.slots[0])
            if target.proc is None:
                continue
            target.kill()
            target.start()
            self.kills += 1
            self.by_reason[reason] = self.by_reason.get(reason, 0) + 1


def drive(
    rig: Rig,
    apps: Sequence[str],
    count: int,
    rng: random.Random,
    *,
    bad_share: float = 0.4,
    until: Callable[[], bool] = lambda: True,
    **kwargs: Any,
) -> list[Release]:
    """``count`` releases spread over ``apps`` (one thread per app, releases of one app in
    sequence), good or bad at random (both kinds at least once when count >= 2); keeps going
    past ``count`` while ``until()`` is false."""
    kinds = [rng.random() >= bad_share for _ in range(count)]
    if count >= 2 and all(kinds):
        kinds[-1] = False
    if count >= 2 and not any(kinds):
        kinds[0] = True
    lock = threading.Lock()
    todo = list(kinds)
    done: list[Release] = []

    def worker(name: str) -> None:
        while True:
            with lock:
                if todo:
                    good = todo.pop(0)
                elif not until():
                    good = rng.random() >= bad_share
                else:
                    return
            rel = rig.release(name, good=good, **kwargs)
            with lock:
                done.append(rel)
            time.sleep(rng.uniform(0.2, 1.0))

    threads = [threading.Thread(target=worker, args=(a,), daemon=True) for a in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done


def _collect(rig: Rig, row: Row, releases: Sequence[Release], v_start: int, t0: float) -> Row:
    rig.checker.drain()
    for c in rig.controllers.values():
        c.check_exit()
        for ident, code in c.unexpected_exits:
            row.violations.append(f"[controller-exit] {ident} exited with {code}")
        c.unexpected_exits.clear()
    row.violations += [str(v) for v in rig.checker.violations[v_start:]]
    row.releases += len(releases)
    row.correct += sum(r.correct for r in releases)
    row.good_seconds += [r.decision_seconds for r in releases if r.good and r.decision_seconds]
    row.bad_seconds += [r.decision_seconds for r in releases if not r.good and r.decision_seconds]
    for r in releases:
        if not r.correct:
            row.notes.append(
                f"{r.rollout} {'good' if r.good else 'bad'} {r.revision}: ended "
                f"{r.phase or 'never'} (expected {r.expected_phase}"
                f"{' + ' + repr(r.expect_message) if r.expect_message else ''}): {r.message[:140]}"
            )
    row.elapsed = time.monotonic() - t0
    return row


def _ensure_single(rig: Rig) -> None:
    """Exactly one controller (slot a) running and leading."""
    for slot, c in rig.controllers.items():
        if slot != "a":
            c.stop()
    a = rig.controller("a")
    a.check_exit()
    a.thaw()
    if a.proc is None:
        a.start()
    rig.wait_leader()


def _settle(rig: Rig, apps: Sequence[str], timeout: float = 60.0) -> None:
    """Wait until no app has a release in flight (a failed experiment must not leak into the
    next one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(rig.status(a).get("phase") in ("Initialized", "Succeeded", "Failed") for a in apps):
            return
        time.sleep(0.2)


# ---- experiments ---------------------------------------------------------------------------------


def exp_baseline(rig: Rig, suite: Suite, rng: random.Random) -> Row:
    t0, v0 = time.monotonic(), len(rig.checker.violations)
    _ensure_single(rig)
    n = 4 if suite.short else 9
    rels = drive(rig, MAIN_APPS if not suite.short else MAIN_APPS[:2], n, rng)
    row = _collect(rig, Row("0 fault-free", "none"), rels, v0, t0)
    suite.baseline_good = _median(row.good_seconds)
    suite.baseline_bad = _median(row.bad_seconds)
    return row


def exp_kills(rig: Rig, suite: Suite, rng: random.Random) -> Row:
    t0, v0 = time.monotonic(), len(rig.checker.violations)
    _ensure_single(rig)
    releases, min_kills = (6, 10) if suite.short else (30, 50)
    seen: set[tuple[str, str]] = set()
    p_phase = 1.0 if suite.short else 0.6

    with Killer(rig, ["a"]) as killer:

        def on_event(ev: Any) -> None:
            kind = ev.store_key[1]
            obj = ev.obj
            name = obj["metadata"]["name"]
            if kind == "rollouts" and name in MAIN_APPS:
                st = obj.get("status") or {}
                key = (str(st.get("canaryRevision")), str(st.get("phase")))
                if key[1] in ("Promoting", "Finalising") and key not in seen:
                    seen.add(key)
                    if rng.random() < p_phase:
                        killer.request(key[1], rng.uniform(0.0, 0.3))
            elif (
                kind == "deployments"
                and name in MAIN_APPS
                and (obj.get("spec") or {}).get("replicas") == 0
            ):
                # The instant after "route 0% + scale the canary to 0" of a promotion, before
                # the Finalising status is written (issue 9 item 1's window).
                phase = rig.status(name).get("phase")
                key = (name + str(obj["metadata"].get("generation")), "scale0")
                if phase == "Promoting" and key not in seen:
                    seen.add(key)
                    killer.request("after-scale-to-0", 0.0)

        def random_kills(stop: threading.Event) -> None:
            # A random instant after the controller is leading again: kills spaced closer
            # than a restart would only ever hit a process that has not started acting.
            while not stop.is_set():
                while rig.leader() is None and not stop.wait(0.1):
                    pass
                if stop.wait(rng.uniform(0.2, 6.0)):
                    return
                if killer.q.empty():
                    killer.request("random")
                stop.wait(0.5)

        rig.add_trigger(on_event)
        try:
            with background(random_kills):
                rels = drive(
                    rig,
                    MAIN_APPS,
                    releases,
                    rng,
                    until=lambda: killer.kills >= min_kills,
                )
        finally:
            rig.clear_triggers()
        kills, reasons = killer.kills, dict(killer.by_reason)
    row = _collect(
        rig, Row("1 SIGKILL", "kill -9 at random + at Promoting/Finalising"), rels, v0, t0
    )
    row.kills = kills
    row.notes.insert(0, f"kills by instant: {reasons}")
    return row


def exp_ha(rig: Rig, suite: Suite, rng: random.Random) -> Row:
    t0, v0 = time.monotonic(), len(rig.checker.violations)
    _ensure_single(rig)
    b = rig.controller("b")
    if b.proc is None:
        b.start()
    n = 4 if suite.short else 10
    actions = {"kill": 0, "freeze": 0}

    def chaos(stop: threading.Event) -> None:
        turn = 0
        while not stop.wait(rng.uniform(3.0, 6.0)):
            leader = rig.leader()
            if leader is None or leader.frozen:
                continue
            if turn % 2 == 0:
                leader.kill()
                leader.start()
                actions["kill"] += 1
            else:
                leader.freeze()
                actions["freeze"] += 1
                stop.wait(LEASE["duration"] + 2.0)
                leader.thaw()
            turn += 1

    with background(chaos):
        rels = drive(rig, MAIN_APPS, n, rng)
    b.stop()
    row = _collect(rig, Row("2 two replicas", "leader SIGKILL / SIGSTOP past lease"), rels, v0, t0)
    row.kills = actions["kill"] + actions["freeze"]
    row.notes.insert(0, f"leader kills {actions['kill']}, freezes {actions['freeze']}")
    return row


def exp_api(rig: Rig, suite: Suite, rng: random.Random) -> list[Row]:
    rows = []
    per = 2 if suite.short else 4
    cases: list[tuple[str, dict[str, float]]] = [
        ("API 5xx 10%", {"error_share": 0.10}),
        ("API 5xx 30%", {"error_share": 0.30}),
        ("API 409 30% of writes", {"conflict_share": 0.30}),
        ("API +200 ms latency", {"latency": 0.2}),
        ("watches dropped + 410 Gone", {}),
    ]
    for label, faults in cases:
        t0, v0 = time.monotonic(), len(rig.checker.violations)
        _ensure_single(rig)
        proxy = rig.controller("a").proxy

        def churn(stop: threading.Event, proxy: KubeProxy = proxy) -> None:
            n = 0
            while not stop.wait(2.5):
                n += 1
                if n % 2 == 0:
                    rig.emu.compact()
                proxy.cut_watches()

        for k, v in faults.items():
            setattr(proxy.faults, k, v)
        try:
            if faults:
                rels = drive(rig, MAIN_APPS[:per], per, rng, bad_share=0.5)
            else:
                with background(churn):
                    rels = drive(rig, MAIN_APPS[:per], per, rng, bad_share=0.5)
        finally:
            proxy.faults.error_share = proxy.faults.conflict_share = proxy.faults.latency = 0.0
        _settle(rig, MAIN_APPS)
        row = _collect(rig, Row(f"3 {label}", label), rels, v0, t0)
        row.notes.insert(0, f"injected {proxy.injected} of {proxy.requests} requests so far")
        rows.append(row)
    return rows


def _when_canary_has_traffic(rig: Rig, rel: Release, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = rig.status(rel.rollout)
        if st.get("canaryRevision") == rel.revision and int(st.get("canaryWeight") or 0) > 0:
            return True
        time.sleep(0.05)
    return False


def exp_prometheus(rig: Rig, suite: Suite, rng: random.Random) -> list[Row]:
    interval = Timing().interval
    deadline = float(OUTAGE_DEADLINE_SECONDS)
    assert deadline == ERROR_LIMIT * interval
    short_cases = [("down", 2, True), ("slow", 1, True), ("empty", 3, True), ("error", 3, False)]
    if not suite.short:
        short_cases += [("down", 1, True), ("down", 3, True), ("slow", 3, True), ("empty", 1, True)]
    long_cases = [("down", True)] if suite.short else [("down", True), ("empty", True)]
    rows = []
    for title, cases, long in (
        ("1-3 intervals", short_cases, False),
        ("> deadline", long_cases, True),
    ):
        t0, v0 = time.monotonic(), len(rig.checker.violations)
        _ensure_single(rig)
        rels: list[Release] = []
        for case in cases:
            mode, good = case[0], case[-1]
            k = case[1] if not long else int(deadline / interval) + 3
            seconds = k * interval

            def outage(rel: Release, mode: str = mode, seconds: float = seconds) -> None:
                if not _when_canary_has_traffic(rig, rel):
                    return
                time.sleep(rng.uniform(0.0, interval / 2))
                rig.checker.note_metrics_outage(True)
                rig.prom_proxy.mode = mode
                time.sleep(seconds)
                rig.prom_proxy.mode = "ok"
                rig.checker.note_metrics_outage(False)

            expect, text = "", ""
            if long and mode != "empty":
                # Designed semantics: fail only after the deadline, saying it was not judged.
                expect, text = "Failed", rig.checker.outage.not_judged_text
            rels.append(
                rig.release(
                    MAIN_APPS[0],
                    good=good,
                    expect=expect,
                    expect_message=text,
                    during=outage,
                )
            )
            rig.prom_proxy.mode = "ok"
            _settle(rig, MAIN_APPS)
        label = ", ".join(f"{c[0]}" + ("" if long else f" {c[1]}x") for c in cases)
        row = _collect(
            rig,
            Row(
                f"4 Prometheus {title}",
                label + (f" for {int(deadline / interval) + 3} intervals" if long else ""),
            ),
            rels,
            v0,
            t0,
        )
        rows.append(row)
    return rows


def exp_slack(rig: Rig, suite: Suite, rng: random.Random) -> Row:
    t0, v0 = time.monotonic(), len(rig.checker.violations)
    _ensure_single(rig)
    window = 20.0
    modes = ["429", "500", "down"]
    if suite.short:
        # One 21-s outage, 7 s of each kind, across three releases in flight at once (a bad
        # one ends in it first, the good ones later): each ending notice meets the outage.
        def rotate(stop: threading.Event) -> None:
            if stop.wait(2.0):
                return
            for mode in modes:
                rig.slack.mode = mode
                if stop.wait(window / len(modes)):
                    break
            rig.slack.mode = "ok"

        kinds = iter([False, True, True])
        lock = threading.Lock()
        rels: list[Release] = []

        def one(name: str) -> None:
            with lock:
                good = next(kinds)
            rel = rig.release(name, good=good, notice_wait=window + 25)
            with lock:
                rels.append(rel)

        with background(rotate):
            threads = [threading.Thread(target=one, args=(a,), daemon=True) for a in MAIN_APPS]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    else:
        rels = []
        for i, mode in enumerate(modes * 2):
            good = i % 2 == 0

            def outage(rel: Release, mode: str = mode) -> None:
                # From shortly before the expected ending to ``window`` seconds later.
                time.sleep(max(0.0, (suite.baseline_good or 9.0) * (0.6 if rel.good else 0.2)))
                rig.slack.mode = mode
                time.sleep(window)
                rig.slack.mode = "ok"

            rels.append(
                rig.release(MAIN_APPS[i % 2], good=good, during=outage, notice_wait=window + 20)
            )
    rig.slack.mode = "ok"
    return _collect(
        rig, Row("5 Slack outages", f"429 / 500 / down for {window:.0f}s"), rels, v0, t0
    )


def exp_hostile(rig: Rig, suite: Suite, rng: random.Random) -> Row:
    t0, v0 = time.monotonic(), len(rig.checker.violations)
    _ensure_single(rig)
    created, rejected = [], []
    for name, hook in HOSTILE.items():
        url = hook.get("url") or f"{rig.hooks.url}{hook['path']}"
        webhooks = [{"name": "gate", "type": hook["type"], "url": url, "timeoutSeconds": 2}]
        try:
            rig.add_app(
                name, timing(suite.short), webhooks=webhooks, hostile=True, analysis=ANALYSIS
            )
        except Exception as exc:  # rejected at admission is a safe outcome
            rejected.append(f"{name}: {str(exc)[:80]}")
            continue
        created.append(name)
    if SENTINEL not in rig.apps:
        rig.add_app(SENTINEL, timing(suite.short), analysis=ANALYSIS)
    try:
        rig.wait_initialized([SENTINEL, *created], timeout=40)
    except TimeoutError as exc:
        note = str(exc)
    else:
        note = ""
    for name in created:
        try:
            rig.set_image(name, f"chaos/{name}:1")
        except Exception as exc:
            rejected.append(f"{name} release: {exc}")
    n = 2 if suite.short else 4
    rels = [rig.release(SENTINEL, good=(i % 2 == 0)) for i in range(n)]
    row = _collect(
        rig,
        Row("6 hostile webhooks", "drip, huge body, redirect, bad URL + sentinel"),
        rels,
        v0,
        t0,
    )
    redirect = rig.status("h-redirect")
    if "h-redirect" in created and redirect.get("phase") in (
        "Promoting",
        "Finalising",
        "Succeeded",
    ):
        row.violations.append(
            f"[gate-bypassed] h-redirect promoted through a confirm-promotion gate that only "
            f"redirects (phase {redirect.get('phase')})"
        )
    for name in created:
        st = rig.status(name)
        row.notes.append(
            f"{name}: phase {st.get('phase')}, weight {st.get('canaryWeight')}, intervals "
            f"{(st.get('analysis') or {}).get('intervals')}: {str(st.get('message', ''))[:100]}"
        )
    if rejected:
        row.notes.append("rejected: " + "; ".join(rejected))
    if note:
        row.notes.append(note)
    row.notes.append(f"hook calls {rig.hooks.calls}")
    for name in created:
        rig.checker.forget(name)
        rig.delete_rollout(name)
    # A controller wedged by a webhook must not spill into the next experiment.
    a = rig.controller("a")
    a.kill()
    a.start()
    return row


EXPERIMENTS: dict[str, Callable[[Rig, Suite, random.Random], Row | list[Row]]] = {
    "baseline": exp_baseline,
    "kills": exp_kills,
    "ha": exp_ha,
    "api": exp_api,
    "prometheus": exp_prometheus,
    "slack": exp_slack,
    "hostile": exp_hostile,
}


def timing(short: bool) -> Timing:
    """2 s intervals, steps 10/30/50; a release not decided in 45 s (short) or 90 s is stuck."""
    return Timing(release_timeout=45.0 if short else 90.0)


def make_rig(seed: int, outage: OutageRule | None = None) -> Rig:
    return Rig(apps=ALL_APPS, seed=seed, outage=outage)


def setup(rig: Rig, *, short: bool) -> None:
    rig.controller("a").start()
    for name in MAIN_APPS:
        rig.add_app(name, timing(short), analysis=ANALYSIS, baseline=name in BASELINE_APPS)
    rig.wait_leader()
    rig.wait_initialized(MAIN_APPS)


def run(*, short: bool, seed: int, only: Sequence[str] = (), rig: Rig | None = None) -> Suite:
    suite = Suite(short=short, seed=seed)
    rng = random.Random(seed)
    names = [n for n in EXPERIMENTS if not only or n in only or n == "baseline"]

    def go(r: Rig) -> None:
        if "app0" not in r.apps:
            setup(r, short=short)
        for name in names:
            print(f"== {name}", file=sys.stderr, flush=True)
            out = EXPERIMENTS[name](r, suite, rng)
            for row in out if isinstance(out, list) else [out]:
                suite.rows.append(row)
                print(f"   {format_row(row, suite)}", file=sys.stderr, flush=True)

    if rig is not None:
        go(rig)
    else:
        with make_rig(seed) as r:
            go(r)
    return suite


# ---- output --------------------------------------------------------------------------------------


def _ratio(value: float | None, base: float | None) -> str:
    if value is None:
        return "–"
    if not base:
        return f"{value:.1f}s"
    return f"{value:.1f}s ({value / base:.2f}×)"


def format_row(row: Row, suite: Suite) -> str:
    rules = ", ".join(f"{k} {v}" for k, v in sorted(row.rules.items())) or "–"
    return (
        f"| {row.experiment} | {row.fault} | {row.releases} | {row.kills or '–'} | "
        f"{len(row.violations)} | {rules} | {row.correct}/{row.releases} "
        f"({row.correct_pct:.0f}%) | {_ratio(_median(row.good_seconds), suite.baseline_good)} | "
        f"{_ratio(_median(row.bad_seconds), suite.baseline_bad)} |"
    )


def table(suite: Suite) -> str:
    head = (
        "| experiment | fault | releases | kills | violations | by rule | correct endings | "
        "good: median decision (× fault-free) | bad: median decision (× fault-free) |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    return "\n".join([head, *(format_row(r, suite) for r in suite.rows)])


def details(suite: Suite) -> str:
    out = []
    for row in suite.rows:
        if not row.violations and not row.notes:
            continue
        out.append(f"{row.experiment} ({row.elapsed:.0f}s):")
        out += [f"  note: {n}" for n in row.notes]
        out += [f"  {v}" for v in row.violations[:12]]
        if len(row.violations) > 12:
            out.append(f"  ... {len(row.violations) - 12} more")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chaos", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--short", action="store_true", help="the CI version (>= 10 kills)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", action="append", default=[], choices=list(EXPERIMENTS))
    parser.add_argument("--json", help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    started = time.monotonic()
    suite = run(short=args.short, seed=args.seed, only=args.only)
    print(table(suite))
    print()
    print(details(suite))
    total = sum(len(r.violations) for r in suite.rows)
    endings = sum(r.correct for r in suite.rows), sum(r.releases for r in suite.rows)
    print(
        f"\n{total} violation(s); {endings[0]}/{endings[1]} correct endings; "
        f"{time.monotonic() - started:.0f}s; namespace {NS}, seed {args.seed}"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([asdict(r) for r in suite.rows], fh, indent=2)
    return 0 if total == 0 and endings[0] == endings[1] else 1


if __name__ == "__main__":
    sys.exit(main())
