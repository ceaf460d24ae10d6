"""Controller scale benchmark: N concurrent Rollouts against the API emulator.

The emulator runs in its own process (``python -m kubeemu``), so the CPU and memory measured
here are the controller's alone. The controller is the real one (watches, apscheduler, Lease,
Istio router, status writes) assembled as ``canaryd run`` does; metrics come from the scripted
provider of the test suite (a good canary), so the numbers measure the control loop, not
Prometheus.

Phases: create N Deployments and Rollouts and wait until all are Initialized (bootstrap: primary
Deployments, Services, VirtualServices); then change every target's image and wait until all
are Succeeded. Reported for the release phase: tick latency p50/p95/p99, ticks, API requests per
tick, controller CPU seconds (user+sys) and CPU per tick, peak RSS, wall time.

Run: ``python benchmarks/controller_scale.py --rollouts 100`` (prints a Markdown table row).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from canaryd.adapters.kube import KubeApi, RetryPolicy, load_api_client  # noqa: E402
from canaryd.controller.assemble import Options, assemble  # noqa: E402
from canaryd.controller.runtime import ControllerConfig  # noqa: E402
from tests.support.scripted_metrics import Profile, ScriptedMetrics  # noqa: E402

NS = "default"


def start_emulator(workdir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    kubeconfig = workdir / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubeemu", "--port", "0", "--kubeconfig", str(kubeconfig),
         "--crds", str(ROOT / "crds")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not kubeconfig.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("emulator did not start")
        time.sleep(0.1)
    time.sleep(0.3)
    return proc, kubeconfig


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


def rollout(name: str, interval: str) -> dict[str, Any]:
    return {
        "apiVersion": "canaryd.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "targetRef": {"name": name},
            "service": {"port": 8080},
            "schedule": {"interval": interval, "stepWeights": [5, 25, 50]},
        },
    }


def phases(api: KubeApi) -> dict[str, str]:
    items = api.list(f"/apis/canaryd.io/v1alpha1/namespaces/{NS}/rollouts")["items"]
    return {i["metadata"]["name"]: (i.get("status") or {}).get("phase", "") for i in items}


def wait_all(api: KubeApi, names: list[str], phase: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        current = phases(api)
        if all(current.get(n) == phase for n in names):
            return time.monotonic() - started
        time.sleep(0.5)
    done = sum(1 for n in names if phases(api).get(n) == phase)
    raise SystemExit(f"only {done}/{len(names)} reached {phase} within {timeout}s")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=50)
    parser.add_argument("--interval", default="2s")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="canaryd-bench-") as tmp:
        emu, kubeconfig = start_emulator(Path(tmp))
        try:
            return run(args, kubeconfig)
        finally:
            emu.terminate()
            emu.wait(timeout=20)


def run(args: argparse.Namespace, kubeconfig: Path) -> int:
    admin = KubeApi(load_api_client(kubeconfig=str(kubeconfig)))
    names = [f"svc-{i:04d}" for i in range(args.rollouts)]
    metrics = ScriptedMetrics(Profile(rps=2000))
    options = Options(
        controller=ControllerConfig(
            namespaces=(NS,), workers=args.workers, identity="bench", idle_resync_seconds=60.0
        ),
        retry=RetryPolicy(attempts=5, base_seconds=0.05, cap_seconds=1.0),
    )
    parts = assemble(
        load_api_client(kubeconfig=str(kubeconfig)), options, metrics_for=lambda _r: metrics
    )
    durations: list[float] = []
    lock = threading.Lock()
    inner_tick = parts.reconciler.tick

    def timed_tick(namespace: str, name: str) -> Any:
        t0 = time.perf_counter()
        result = inner_tick(namespace, name)
        with lock:
            durations.append(time.perf_counter() - t0)
        return result

    parts.reconciler.tick = timed_tick  # type: ignore[method-assign]
    requests = [0]
    inner_once = parts.api._once

    def counted_once(*a: Any, **kw: Any) -> Any:
        with lock:
            requests[0] += 1
        return inner_once(*a, **kw)

    parts.api._once = counted_once  # type: ignore[method-assign]

    for name in names:
        admin.create(f"/apis/apps/v1/namespaces/{NS}/deployments", deployment(name, f"{name}:1"))
        admin.create(
            f"/apis/canaryd.io/v1alpha1/namespaces/{NS}/rollouts", rollout(name, args.interval)
        )
    rss_before = rss_mib()
    parts.start()
    try:
        boot_s = wait_all(admin, names, "Initialized", args.timeout)
        with lock:
            durations.clear()
            requests[0] = 0
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        for name in names:
            admin.merge_patch(
                f"/apis/apps/v1/namespaces/{NS}/deployments/{name}",
                {
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": "app", "image": f"{name}:2"}]}
                        }
                    }
                },
            )
        release_s = wait_all(admin, names, "Succeeded", args.timeout)
        cpu = cpu_seconds() - cpu0
        wall = time.monotonic() - wall0
        with lock:
            ticks = list(durations)
            reqs = requests[0]
    finally:
        parts.stop()
        admin.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ms = [d * 1000 for d in ticks]
    print(
        "| rollouts | interval | workers | bootstrap s | release s | ticks | tick p50 ms | "
        "tick p95 ms | tick p99 ms | API req/tick | CPU s | CPU ms/tick | peak RSS MiB |"
    )
    print("|" + "---|" * 13)
    print(
        f"| {args.rollouts} | {args.interval} | {args.workers} | {boot_s:.1f} | {release_s:.1f} | "
        f"{len(ms)} | {statistics.median(ms):.1f} | {pct(ms, 0.95):.1f} | {pct(ms, 0.99):.1f} | "
        f"{reqs / max(len(ms), 1):.1f} | {cpu:.1f} | {1000 * cpu / max(len(ms), 1):.1f} | "
        f"{peak:.0f} |"
    )
    print(f"(RSS before start {rss_before:.0f} MiB; release wall time {wall:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
