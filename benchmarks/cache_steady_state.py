"""Steady state with and without the informer cache: N Rollouts judged interval after interval.

The emulator runs in its own process (``python -m kubeemu``), so the CPU measured is the
controller's alone. Each Rollout is held at one weight (``intervalsPerStep: 1000``) after its
release starts, so every tick is a judged interval; over a window the benchmark reports ticks,
the requests the controller sent (counted in its transport; watches and the Lease reported
apart), by verb and resource, and the controller's CPU per tick and per Rollout-interval.
``--no-cache`` reads with a GET each time (``Options.cache=False``: the behaviour before the
cache), for comparison in one command.

Run: ``python benchmarks/cache_steady_state.py --rollouts 100 --window 30 [--no-cache]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.controller_scale import (  # noqa: E402
    NS,
    cpu_seconds,
    deployment,
    rss_mib,
    start_emulator,
    wait_all,
)
from canaryd.adapters.kube import KubeApi, RetryPolicy, load_api_client  # noqa: E402
from canaryd.api.models import parse_duration  # noqa: E402
from canaryd.controller.assemble import Options, assemble  # noqa: E402
from canaryd.controller.runtime import ControllerConfig  # noqa: E402
from tests.support.scripted_metrics import Profile, ScriptedMetrics  # noqa: E402

RESOURCES = ("rollouts", "events", "deployments", "services", "virtualservices", "httproutes")
RESOURCES += ("pods", "metrictemplates", "alertproviders", "leases")


def rollout(name: str, interval: str) -> dict[str, Any]:
    return {
        "apiVersion": "canaryd.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "targetRef": {"name": name},
            "service": {"port": 9898},
            "schedule": {"interval": interval, "stepWeights": [10], "intervalsPerStep": 1000},
            "progressDeadlineSeconds": 600,
        },
    }


def label(method: str, path: str) -> str:
    """``PUT rollouts/status``: verb and resource of a request path."""
    parts = path.split("?", maxsplit=1)[0].split("/")
    resource = next((p for p in parts if p in RESOURCES), path)
    return f"{method} {resource}{'/status' if parts[-1] == 'status' else ''}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=100)
    parser.add_argument("--interval", default="2s")
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="canaryd-steady-") as tmp:
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
            namespaces=(NS,), workers=4, identity="bench", idle_resync_seconds=60.0
        ),
        retry=RetryPolicy(attempts=5, base_seconds=0.05, cap_seconds=1.0),
        cache=not args.no_cache,
    )
    parts = assemble(
        load_api_client(kubeconfig=str(kubeconfig)), options, metrics_for=lambda _r: metrics
    )
    counts: dict[str, int] = {}
    lock = threading.Lock()
    inner = parts.api._once

    def counted(method: str, path: str, *rest: Any, **kw: Any) -> Any:
        with lock:
            key = label(method, path)
            counts[key] = counts.get(key, 0) + 1
        return inner(method, path, *rest, **kw)

    parts.api._once = counted  # type: ignore[method-assign]
    for name in names:
        admin.create(f"/apis/apps/v1/namespaces/{NS}/deployments", deployment(name, f"{name}:1"))
        admin.create(
            f"/apis/canaryd.io/v1alpha1/namespaces/{NS}/rollouts", rollout(name, args.interval)
        )
    parts.start()
    try:
        wait_all(admin, names, "Initialized", 600)
        for name in names:
            admin.merge_patch(
                f"/apis/apps/v1/namespaces/{NS}/deployments/{name}",
                {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "v2"}]}}}},
            )
        wait_all(admin, names, "Progressing", 600)
        time.sleep(10)  # the step's one-off writes are done
        with lock:
            counts.clear()
        ticks0 = parts.controller.scheduler.ticks
        cpu0, wall0, rss0 = cpu_seconds(), time.monotonic(), rss_mib()
        time.sleep(args.window)
        cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
        ticks = parts.controller.scheduler.ticks - ticks0
        with lock:
            seen = dict(counts)
    finally:
        parts.stop()
        admin.close()
    intervals = args.rollouts * wall / parse_duration(args.interval)
    leases = sum(n for k, n in seen.items() if k.endswith("leases"))
    per_rollout = {k: n for k, n in seen.items() if not k.endswith("leases")}
    total = sum(per_rollout.values())
    reads = sum(n for k, n in per_rollout.items() if k.startswith("GET"))
    print(f"cache {'off' if args.no_cache else 'on'}: {args.rollouts} Rollouts, interval "
          f"{args.interval}, window {wall:.1f} s")  # fmt: skip
    print(
        f"Rollout-intervals {intervals:.0f}; ticks {ticks} ({ticks / intervals:.2f} per interval)"
    )
    print(f"requests {total} ({total / max(ticks, 1):.2f} per tick, {reads} reads); "
          f"Lease requests {leases} (per process)")  # fmt: skip
    print("by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(per_rollout.items())))
    print(f"controller CPU {cpu:.2f} s: {1000 * cpu / max(ticks, 1):.2f} ms per tick, "
          f"{1000 * cpu / intervals:.2f} ms per Rollout-interval; RSS {rss0:.0f} -> "
          f"{rss_mib():.0f} MiB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
