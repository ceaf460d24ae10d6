"""Flat memory: what the controller keeps per Rollout goes when the Rollout goes.

Rollouts are created, brought to Initialized, deleted (canaryd finalises them), and created
again under the same names; after the deletion every per-Rollout structure is empty again (the
scheduler's jobs, the tracker and its Deployment index, the reconciler's parses, last valid
specs and backoffs) and the informer stores hold only what still exists (the target
Deployments; the Services and VirtualServices canaryd made are deleted by finalisation, the
primaries collected with their owner). The second round behaves as the first.
"""

from __future__ import annotations

from canaryd.adapters.cache import DEPLOYMENTS, SERVICES
from canaryd.adapters.istio.router import VIRTUAL_SERVICES
from canaryd.adapters.kube.resources import ROLLOUT_KIND
from canaryd.controller.assemble import Assembled
from tests.controller.conftest import ROLLOUTS, Cluster, phase_is, wait_for

NAMES = [f"app-{i}" for i in range(4)]


def held(parts: Assembled) -> dict[str, int]:
    cache = parts.cache
    assert cache is not None
    sizes = cache.sizes()
    tracked, indexed = parts.controller.trackers[0].tracked()
    return {
        "jobs": len(parts.controller.scheduler.keys()),
        "tracked": tracked,
        "indexed": indexed,
        "reconciler": parts.reconciler.remembered(),
        "rollouts": sizes[ROLLOUT_KIND.plural],
        "deployments": sizes[DEPLOYMENTS.plural],
        "services": sizes[SERVICES.plural],
        "virtualservices": sizes[VIRTUAL_SERVICES.plural],
    }


def one_round(cluster: Cluster, parts: Assembled) -> None:
    for name in NAMES:
        cluster.create_rollout(name, name)
    for name in NAMES:
        wait_for(f"{name} Initialized", phase_is(cluster, name, "Initialized"), timeout=40)
    busy = held(parts)
    assert busy["jobs"] == busy["tracked"] == busy["reconciler"] == len(NAMES), busy
    assert busy["virtualservices"] == len(NAMES) and busy["services"] == 2 * len(NAMES), busy
    for name in NAMES:
        cluster.api.delete(f"{ROLLOUTS}/{name}")
    for name in NAMES:
        wait_for(
            f"{name} finalised and gone",
            lambda n=name: cluster.api.get_or_none(f"{ROLLOUTS}/{n}") is None,
            timeout=40,
        )
    idle = {
        "jobs": 0,
        "tracked": 0,
        "indexed": 0,
        "reconciler": 0,
        "rollouts": 0,
        "deployments": len(NAMES),  # the targets (the user's) stay
        "services": 0,
        "virtualservices": 0,
    }
    wait_for("per-Rollout state dropped", lambda: held(parts) == idle, timeout=30)


def test_deleted_rollouts_leave_nothing_behind(cluster: Cluster) -> None:
    for name in NAMES:
        cluster.deploy(name, f"{name}:1")
    parts = cluster.start_controller()
    one_round(cluster, parts)
    one_round(cluster, parts)  # the same names again: nothing stale in the way
