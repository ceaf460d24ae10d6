"""The short chaos run's rig: one set of servers for the whole module (starting Prometheus and
the controller costs seconds), a fresh :class:`benchmarks.chaos.Suite` whose fault-free row is
measured first, so every later experiment is compared with it."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from benchmarks import chaos
from benchmarks.chaos_rig import Rig
from meshsim.prometheus import prometheus_available

SEED = 7


@dataclass
class ChaosRun:
    rig: Rig
    suite: chaos.Suite
    rng: random.Random


@pytest.fixture(scope="module")
def chaos_run() -> Iterator[ChaosRun]:
    if not prometheus_available():
        pytest.skip("the chaos suite needs the real Prometheus (Debian package prometheus)")
    with chaos.make_rig(SEED) as rig:
        chaos.setup(rig, short=True)
        yield ChaosRun(rig, chaos.Suite(short=True, seed=SEED), random.Random(SEED))
