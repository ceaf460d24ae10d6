"""The chaos rig: everything a chaos experiment runs, on 127.0.0.1, stopped at exit.

- the API emulator (kubeemu, in this process: the oracle listens to its store), one
  :class:`~benchmarks.chaos_servers.KubeProxy` per controller slot in front of it;
- the mesh simulator (meshsim) reading the routes canaryd writes, a real Prometheus scraping
  it, a :class:`~benchmarks.chaos_servers.PromProxy` in front of Prometheus;
- a Slack endpoint and a hostile webhook server;
- real ``canaryd run`` processes (``python -m canaryd run``), each in its own process group,
  killed (SIGKILL), frozen (SIGSTOP) and thawed on cue; every group is killed at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.chaos_checker import Checker, OutageRule, Release, ending_posts
from benchmarks.chaos_servers import HostileWebhooks, KubeProxy, PromProxy, SlackEndpoint
from canaryd.adapters.kube import KubeApi, load_api_client
from canaryd.core.revision import template_hash
from kubeemu import Emulator
from meshsim import KubeRoutes, MeshApp, MeshSimulator, VersionProfile
from meshsim.prometheus import PrometheusServer

ROOT = Path(__file__).resolve().parents[1]
NS = "chaos"
GOOD = VersionProfile(error_rate=0.005)
BAD = VersionProfile(error_rate=0.25)
LEASE = {"duration": 3.0, "renew": 2.0, "retry": 0.5}
_LIVE_GROUPS: set[int] = set()


def _kill_live_groups() -> None:
    for pgid in list(_LIVE_GROUPS):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        _LIVE_GROUPS.discard(pgid)


atexit.register(_kill_live_groups)


def controller_tree() -> Path:
    """The checkout whose ``canaryd`` (and CRDs) the controller processes run:
    ``$CANARYD_CHAOS_TREE`` (e.g. a fix branch under this suite), else this repository."""
    return Path(os.environ.get("CANARYD_CHAOS_TREE") or ROOT)


@dataclass
class Timing:
    """One Rollout's schedule (short: the suite must end quickly; realistic: 1 m intervals)."""

    interval: float = 2.0
    weights: tuple[int, ...] = (10, 30, 50)
    deadline: int = 30
    release_timeout: float = 90.0


class ControllerProcess:
    """One ``canaryd run`` slot: a process (new incarnation after each kill) behind its proxy."""

    def __init__(self, rig: Rig, slot: str) -> None:
        self.rig = rig
        self.slot = slot
        self.incarnation = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False
        self.proxy = KubeProxy(
            rig.emu.url,
            process="",
            rng=random.Random(rig.rng.random()),
            lease_holder=rig.lease_holder,
            on_write=rig.checker.on_write,
        )
        self.proxy.start()
        self.kubeconfig = rig.tmp / f"kubeconfig-{slot}"
        cfg = rig.emu.kubeconfig(NS)
        cfg["clusters"][0]["cluster"]["server"] = self.proxy.url
        self.kubeconfig.write_text(yaml.safe_dump(cfg))
        self.log_path = rig.tmp / f"canaryd-{slot}.log"
        self.unexpected_exits: list[tuple[str, int]] = []

    @property
    def identity(self) -> str:
        # Stable across restarts, as the shipped manifests make it (--identity=$(POD_NAME)):
        # a container the kubelet restarts after a kill keeps its pod's name, so it renews its
        # own Lease at once instead of waiting for it to expire.
        return f"chaos-{self.slot}"

    def start(self) -> None:
        self.incarnation += 1
        self.proxy.process = self.identity
        self.frozen = False
        log = self.log_path.open("ab")
        cmd = [
            sys.executable, "-m", "canaryd", "run",
            "--kubeconfig", str(self.kubeconfig),
            "--namespace", NS,
            "--prometheus-url", self.rig.prom_proxy.url,
            "--prometheus-timeout", "2",
            "--metrics-host", "127.0.0.1", "--metrics-port", "0",
            "--identity", self.identity,
            "--lease-namespace", NS,
            "--lease-duration", str(LEASE["duration"]),
            "--renew-deadline", str(LEASE["renew"]),
            "--retry-period", str(LEASE["retry"]),
            "--log-level", "WARNING",
        ]  # fmt: skip
        tree = str(controller_tree())
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": tree}
        self.proc = subprocess.Popen(
            cmd, cwd=tree, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        _LIVE_GROUPS.add(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_exit(self) -> None:
        """Record an exit we did not cause (a crash is a finding)."""
        if self.proc is not None and self.proc.poll() is not None:
            self.unexpected_exits.append((self.identity, int(self.proc.returncode)))
            _LIVE_GROUPS.discard(self.proc.pid)
            self.proc = None

    def kill(self) -> None:
        if self.proc is None:
            return
        leader = self.rig.lease_holder() == self.identity
        self.rig.checker.note_kill(self.identity, leader=leader)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        _LIVE_GROUPS.discard(self.proc.pid)
        self.proc = None

    def freeze(self) -> None:
        if self.proc is not None:
            self.rig.checker.note_kill(
                self.identity, leader=self.rig.lease_holder() == self.identity
            )
            os.killpg(self.proc.pid, signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        if self.proc is not None and self.frozen:
            os.killpg(self.proc.pid, signal.SIGCONT)
            self.frozen = False

    def stop(self) -> None:
        """SIGTERM (clean shutdown), SIGKILL after 10 s."""
        if self.proc is None:
            return
        self.thaw()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        _LIVE_GROUPS.discard(self.proc.pid)
        self.proc = None


@dataclass
class App:
    name: str
    timing: Timing
    image_seq: int = 0
    hostile: bool = False
    webhooks: list[dict[str, Any]] = field(default_factory=list)


class Rig:
    """All servers of a chaos run. Use as a context manager; everything stops at exit."""

    def __init__(
        self,
        *,
        apps: list[str],
        seed: int = 1,
        rps: float = 150.0,
        # Scheduling slack on a loaded 2-core machine (30% injected 409s once took 5.2 s for 5 s).
        grace: float = 4.0,
        outage: OutageRule | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.app_names = apps
        self.tmp = Path(tempfile.mkdtemp(prefix="canaryd-chaos-"))
        self._stack = contextlib.ExitStack()
        self.checker = Checker(grace=grace, outage=outage, lease_duration=LEASE["duration"])
        self.emu = Emulator(crd_paths=[controller_tree() / "crds"], bookmark_interval=1.0)
        self.emu.store.add_listener(self.checker.on_store_event)
        self.emu.store.add_listener(self._on_event)
        self._triggers: list[Callable[[Any], None]] = []
        self.rps = rps
        self.controllers: dict[str, ControllerProcess] = {}
        self.apps: dict[str, App] = {}

    # ---- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Rig:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        self.emu.start()
        self._stack.callback(self.emu.stop)
        self.api = KubeApi(
            load_api_client(kubeconfig=str(self.emu.write_kubeconfig(self.tmp / "kc")))
        )
        self._stack.callback(self.api.close)
        self.api.create("/api/v1/namespaces", {"metadata": {"name": NS}})
        self.slack = SlackEndpoint()
        self.slack.start()
        self._stack.callback(self.slack.stop)
        self.hooks = HostileWebhooks(drip_seconds=90.0)
        self.hooks.start()
        self._stack.callback(self.hooks.stop)
        self.api.create(
            f"/api/v1/namespaces/{NS}/secrets",
            {
                "metadata": {"name": "chaos-slack", "namespace": NS},
                "stringData": {"url": self.slack.webhook_url},
            },
        )
        self.api.create(
            f"/apis/canaryd.io/v1alpha1/namespaces/{NS}/alertproviders",
            {
                "apiVersion": "canaryd.io/v1alpha1",
                "kind": "AlertProvider",
                "metadata": {"name": "chaos-slack", "namespace": NS},
                "spec": {
                    "type": "slack",
                    "webhookSecretRef": {"name": "chaos-slack", "key": "url"},
                },
            },
        )
        sim_client = load_api_client(kubeconfig=str(self.tmp / "kc"))
        self._stack.callback(sim_client.close)
        self.sim = MeshSimulator(
            apps=[MeshApp(NS, name) for name in self.app_names],
            routes=KubeRoutes(sim_client),
            profiles={"*-bad": BAD},
            default_profile=GOOD,
            rps=self.rps,
            seed=self.rng.randrange(1 << 30),
            refresh_s=0.25,
            tick_s=0.25,
        )
        self.sim.start()
        self._stack.callback(self.sim.stop)
        self.prom = PrometheusServer(targets=[self.sim.target], scrape_interval="1s")
        self._stack.callback(self.prom.stop)
        self.prom.start()
        self.prom_proxy = PromProxy(self.prom.url, slow_seconds=6.0)
        self.prom_proxy.start()
        self._stack.callback(self.prom_proxy.stop)
        self._stack.callback(self._stop_controllers)

    def close(self) -> None:
        self._stack.close()
        self.checker.stop()
        _kill_live_groups()

    def _stop_controllers(self) -> None:
        for c in self.controllers.values():
            c.stop()
            c.proxy.stop()

    # ---- controllers --------------------------------------------------------------------------

    def controller(self, slot: str) -> ControllerProcess:
        if slot not in self.controllers:
            self.controllers[slot] = ControllerProcess(self, slot)
        return self.controllers[slot]

    def lease_holder(self) -> str | None:
        rt = self.emu.registry.lookup("coordination.k8s.io", "v1", "leases")
        assert rt is not None
        lease = self.emu.store.raw(rt, NS, "canaryd-leader")
        if lease is None:
            return None
        holder = (lease.get("spec") or {}).get("holderIdentity")
        return str(holder) if holder else None

    def leader(self) -> ControllerProcess | None:
        holder = self.lease_holder()
        for c in self.controllers.values():
            if c.proc is not None and c.identity == holder:
                return c
        return None

    def wait_leader(self, timeout: float = 60.0) -> ControllerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for c in self.controllers.values():
                c.check_exit()
            leader = self.leader()
            if leader is not None and not leader.frozen:
                return leader
            time.sleep(0.1)
        raise TimeoutError(f"no leader after {timeout}s; logs in {self.tmp}")

    # ---- objects ------------------------------------------------------------------------------

    def _deployment(self, name: str, image: str) -> dict[str, Any]:
        labels = {"app": name}
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": image}]},
                },
            },
        }

    def add_app(
        self,
        name: str,
        timing: Timing,
        *,
        webhooks: list[dict[str, Any]] | None = None,
        hostile: bool = False,
        analysis: dict[str, Any] | None = None,
        baseline: bool = False,
    ) -> App:
        """Create the target Deployment and its Rollout (with ``spec.baseline`` when
        ``baseline``: a three-way split and a ``<name>-baseline`` Deployment to check)."""
        app = App(name, timing, hostile=hostile, webhooks=list(webhooks or []))
        self.apps[name] = app
        for dep in (name, f"{name}-primary", f"{name}-baseline"):
            self.emu.pods.set_behaviour(NS, dep, "ready", ready_after_seconds=1.0)
        self.checker.watch_rollout(
            name, interval=timing.interval, weights=list(timing.weights), hostile=hostile
        )
        image = f"chaos/{name}:0"
        body = self._deployment(name, image)
        stored = self.api.create(f"/apis/apps/v1/namespaces/{NS}/deployments", body)
        self.checker.mark_passed(name, template_hash(stored["spec"]["template"]))
        spec: dict[str, Any] = {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "service": {"port": 9898},
            "schedule": {
                "interval": f"{int(timing.interval * 1000)}ms",
                "stepWeights": list(timing.weights),
            },
            "progressDeadlineSeconds": timing.deadline,
            "analysis": {
                "judge": "sequential",
                "metrics": [{"name": "error-rate", "kind": "errorRate", "errorCodes": "5.."}],
                **(analysis or {}),
            },
            "alerts": [
                {"name": "team", "providerRef": {"name": "chaos-slack"}, "severity": "info"}
            ],
        }
        if webhooks:
            spec["webhooks"] = webhooks
        if baseline:
            spec["baseline"] = {}
        self.api.create(
            f"/apis/canaryd.io/v1alpha1/namespaces/{NS}/rollouts",
            {
                "apiVersion": "canaryd.io/v1alpha1",
                "kind": "Rollout",
                "metadata": {"name": name, "namespace": NS},
                "spec": spec,
            },
        )
        return app

    def wait_initialized(self, names: list[str], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.status(n).get("phase") in ("Initialized", "Succeeded") for n in names):
                return
            time.sleep(0.2)
        raise TimeoutError(
            f"not Initialized after {timeout}s: "
            + ", ".join(f"{n}={self.status(n).get('phase')}" for n in names)
        )

    def rollout(self, name: str) -> dict[str, Any] | None:
        rt = self.emu.registry.lookup("canaryd.io", "v1alpha1", "rollouts")
        assert rt is not None
        return self.emu.store.raw(rt, NS, name)

    def status(self, name: str) -> dict[str, Any]:
        obj = self.rollout(name)
        return dict((obj or {}).get("status") or {})

    def delete_rollout(self, name: str) -> None:
        with contextlib.suppress(Exception):
            self.api.delete(f"/apis/canaryd.io/v1alpha1/namespaces/{NS}/rollouts/{name}")

    def set_image(self, name: str, image: str) -> str:
        """Change the target's image (a CI pipeline's release); returns the new revision."""
        path = f"/apis/apps/v1/namespaces/{NS}/deployments/{name}"
        updated = self.api.merge_patch(
            path,
            {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}},
        )
        return template_hash(updated["spec"]["template"])

    # ---- releases -----------------------------------------------------------------------------

    def release(
        self,
        name: str,
        *,
        good: bool,
        expect: str = "",
        expect_message: str = "",
        during: Callable[[Release], None] | None = None,
        notice_wait: float = 15.0,
    ) -> Release:
        """Ship one release of ``name`` and wait for its ending and its notice."""
        app = self.apps[name]
        app.image_seq += 1
        image = f"chaos/{name}:{app.image_seq}" + ("" if good else "-bad")
        started = time.monotonic()
        rev = self.set_image(name, image)
        rel = Release(name, rev, image, good, started, expect=expect, expect_message=expect_message)
        self.checker.start_release(rel)
        if during is not None:
            threading.Thread(target=during, args=(rel,), daemon=True).start()
        deadline = started + app.timing.release_timeout
        phase, message, ended = "", "", None
        while time.monotonic() < deadline:
            st = self.status(name)
            phase, message = str(st.get("phase", "")), str(st.get("message", ""))
            if st.get("canaryRevision") == rev and phase in ("Succeeded", "Failed"):
                ended = time.monotonic()
                break
            time.sleep(0.1)
        if ended is not None:
            until = time.monotonic() + notice_wait
            while time.monotonic() < until:
                if ending_posts(rev, self.slack.delivered()):
                    time.sleep(0.5)  # a duplicate would follow at once
                    break
                time.sleep(0.1)
        self.checker.drain()
        self.checker.finish_release(
            rel, phase=phase, message=message, ended=ended, slack_posts=self.slack.delivered()
        )
        return rel

    # ---- event triggers -----------------------------------------------------------------------

    def add_trigger(self, fn: Callable[[Any], None]) -> None:
        self._triggers.append(fn)

    def clear_triggers(self) -> None:
        self._triggers.clear()

    def _on_event(self, ev: Any) -> None:
        # Runs under the store lock: the triggers only enqueue work for other threads.
        for fn in list(self._triggers):
            with contextlib.suppress(Exception):
                fn(ev)


@contextlib.contextmanager
def background(fn: Callable[[threading.Event], None]) -> Iterator[None]:
    """Run ``fn(stop)`` in a thread for the duration of the block."""
    stop = threading.Event()
    thread = threading.Thread(target=fn, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
