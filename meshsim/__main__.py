"""``python -m meshsim``: serve Istio metrics for one app, routed by a real (or emulated) API.

Example::

    python -m meshsim --namespace default --target podinfo --rps 100 --port 9101 \\
        --profile '*-bad=0.02' --profile 'ghcr.io/x/podinfo:6.7.2=0.005,120'

``--profile IMAGE=ERROR_RATE[,MEDIAN_MS[,TAIL_FRACTION,TAIL_MULTIPLIER]]`` (IMAGE may be a glob).
Routes are read with the kubeconfig (``--kubeconfig``, ``$KUBECONFIG`` or in-cluster) unless
``--static-weight N`` is given, which routes N% to the canary without any API server.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from kubernetes import client, config

from meshsim.routes import KubeRoutes, MeshApp, RouteSource, StaticRoutes
from meshsim.simulator import MeshSimulator
from meshsim.traffic import VersionProfile


def parse_profile(text: str) -> tuple[str, VersionProfile]:
    """``IMAGE=ERROR_RATE[,MEDIAN_MS[,TAIL_FRACTION,TAIL_MULTIPLIER]]`` -> (image, profile)."""
    image, sep, spec = text.rpartition("=")
    if not sep or not image:
        raise argparse.ArgumentTypeError(f"--profile wants IMAGE=ERROR_RATE[,...], got {text!r}")
    parts = [float(x) for x in spec.split(",")]
    if len(parts) not in (1, 2, 4):
        raise argparse.ArgumentTypeError(f"--profile {text!r}: give 1, 2 or 4 numbers")
    base = VersionProfile(error_rate=parts[0])
    median = parts[1] if len(parts) >= 2 else base.latency_median_ms
    tail_fraction, tail_mult = (parts[2], parts[3]) if len(parts) == 4 else (0.0, 1.0)
    return image, VersionProfile(
        error_rate=parts[0],
        latency_median_ms=median,
        tail_fraction=tail_fraction,
        tail_multiplier=tail_mult,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshsim", description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--target", required=True, help="the Rollout's target Deployment")
    parser.add_argument("--service", default=None, help="Service/VirtualService base name")
    parser.add_argument("--rps", type=float, default=50.0)
    parser.add_argument("--port", type=int, default=9101)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--profile", type=parse_profile, action="append", default=[])
    parser.add_argument("--default-error-rate", type=float, default=0.005)
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--static-weight", type=int, default=None)
    args = parser.parse_args(argv)

    app = MeshApp(namespace=args.namespace, target=args.target, service=args.service)
    routes: RouteSource
    if args.static_weight is not None:
        static = StaticRoutes()
        static.set_weight(app, args.static_weight)
        routes = static
    elif args.kubeconfig:
        config.load_kube_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
        routes = KubeRoutes(client.ApiClient())
    else:
        routes = KubeRoutes()
    sim = MeshSimulator(
        apps=[app],
        routes=routes,
        profiles=dict(args.profile),
        default_profile=VersionProfile(error_rate=args.default_error_rate),
        rps=args.rps,
        seed=args.seed,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    sim.start(port=args.port)
    print(f"meshsim: serving {sim.url}/metrics for {args.namespace}/{args.target}", flush=True)
    try:
        done.wait()
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
