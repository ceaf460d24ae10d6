"""The informer stores (canaryd.adapters.cache) and the reflectors that fill them.

Covered: read-your-own-writes (a write's answer is held; a late, older event or re-list does not
replace it), DELETED events, re-lists that drop what was deleted meanwhile, derived values
dropped with the version they came from, managedFields dropped, a read waiting for the initial
list (then a TemporaryError), a conflict making the next read live, a kind the API server does
not serve (ready, empty), and, against the API emulator over HTTP, a reflector keeping a store
in step through events and through a 410 re-list; the Workloads adapter's writes held by the
store while the watch is held back; readiness and ticks waiting for every store's first list.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from canaryd.adapters.cache import DEPLOYMENTS, SERVICES, Cache, Kind, Reader, Store
from canaryd.adapters.kube import KubeApi, RetryPolicy, Workloads, load_api_client, parse_rollout
from canaryd.controller.watches import store_reflector
from canaryd.core.ports import TemporaryError
from kubeemu import Emulator
from tests.controller.conftest import Cluster, deployment_body, phase_is, rollout_body, wait_for

ROOT = Path(__file__).resolve().parents[2]
NS = "default"


def obj(name: str, rv: int | str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "resourceVersion": str(rv)}, **extra}


def rv_of(found: dict[str, Any] | None) -> str:
    assert found is not None
    return str(found["metadata"]["resourceVersion"])


# ---- the store, fed directly (events in any order) -------------------------------------------


def test_own_write_is_not_replaced_by_a_late_older_event() -> None:
    store = Store(SERVICES, NS)
    store.replace([obj("a", 5)], "5")
    store.wrote(obj("a", 7, spec={"v": "ours"}))
    # The watch now delivers the version before ours (someone else's write, delivered late).
    assert store.apply("MODIFIED", obj("a", 6, spec={"v": "theirs"})) is False
    assert rv_of(store.get(NS, "a")) == "7"
    assert store.ignored_stale == 1
    # Its own echo and anything newer are taken.
    assert store.apply("MODIFIED", obj("a", 7, spec={"v": "ours"})) is True
    assert store.apply("MODIFIED", obj("a", 9, spec={"v": "later"})) is True
    assert store.get(NS, "a") == obj("a", 9, spec={"v": "later"})


def test_deleted_event_removes_unless_older_than_what_is_held() -> None:
    store = Store(SERVICES, NS)
    store.replace([obj("a", 5), obj("b", 5)], "5")
    assert store.apply("DELETED", obj("a", 6)) is True
    assert store.get(NS, "a") is None
    store.wrote(obj("b", 8))  # recreated / updated by canaryd after the deletion was served
    assert store.apply("DELETED", obj("b", 7)) is False
    assert rv_of(store.get(NS, "b")) == "8"
    assert sorted(store.held_keys()) == [(NS, "b")]


def test_relist_drops_deleted_keeps_newer_own_writes() -> None:
    store = Store(SERVICES, NS)
    store.replace([obj("a", 3), obj("b", 3), obj("c", 3)], "3")
    store.wrote(obj("a", 12))  # our update, after the list below was served
    store.wrote(obj("d", 13))  # our create, after the list below was served
    gone = store.replace([obj("a", 10), obj("c", 11)], "11")
    assert gone == [(NS, "b")]  # deleted while the watch was away
    assert rv_of(store.get(NS, "a")) == "12"
    assert rv_of(store.get(NS, "c")) == "11"
    assert rv_of(store.get(NS, "d")) == "13"
    # An object absent from a newer list is gone, whoever wrote it.
    assert sorted(store.replace([], "20")) == [(NS, "a"), (NS, "c"), (NS, "d")]
    assert store.held_keys() == []


def test_derived_value_is_kept_per_version_and_dropped_with_it() -> None:
    store = Store(SERVICES, NS)
    store.replace([obj("a", 1)], "1")
    calls: list[str] = []

    def compute(o: dict[str, Any]) -> str:
        calls.append(rv_of(o))
        return rv_of(o)

    held = store.get(NS, "a")
    assert held is not None
    assert store.derived(held, "x", compute) == "1"
    assert store.derived(held, "x", compute) == "1"
    assert calls == ["1"]
    store.apply("MODIFIED", obj("a", 2))
    new = store.get(NS, "a")
    assert new is not None
    assert store.derived(new, "x", compute) == "2"
    # An object that is not the stored version (e.g. a GET's answer) is never memoised.
    assert store.derived(held, "x", compute) == "1"
    assert calls == ["1", "2", "1"]
    store.apply("DELETED", obj("a", 3))
    assert store._memo == {}


def test_managed_fields_are_not_kept() -> None:
    store = Store(SERVICES, NS)
    big = obj("a", 1)
    big["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    store.replace([big], "1")
    held = store.get(NS, "a")
    assert held is not None and "managedFields" not in held["metadata"]
    assert "managedFields" in big["metadata"]  # the caller's object is untouched


# ---- readers and reflectors against the API emulator ----------------------------------------


@pytest.fixture
def emu(tmp_path: Path) -> Iterator[tuple[Emulator, KubeApi]]:
    emulator = Emulator(crd_paths=[ROOT / "crds"], bookmark_interval=0.5).start()
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
    api = KubeApi(
        load_api_client(kubeconfig=str(kubeconfig)),
        retry=RetryPolicy(attempts=3, base_seconds=0.02, cap_seconds=0.1),
    )
    try:
        yield emulator, api
    finally:
        api.close()
        emulator.stop()


def requests(emulator: Emulator, *, resource: str) -> list[str]:
    return [r.verb for r in emulator.audit if r.resource == resource and r.verb != "watch"]


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
    }


def test_a_read_waits_for_the_initial_list_then_fails_temporarily(
    emu: tuple[Emulator, KubeApi],
) -> None:
    emulator, api = emu
    store = Store(SERVICES, NS)
    reader = Reader(api, SERVICES, [store], sync_wait=0.2)
    started = time.monotonic()
    with pytest.raises(TemporaryError, match="has not synced yet"):
        reader.get(NS, "web")
    assert time.monotonic() - started >= 0.2
    # A list arriving while a read waits releases it.
    threading.Timer(0.1, lambda: store.replace([obj("web", 4)], "4")).start()
    reader.sync_wait = 5.0
    assert rv_of(reader.get(NS, "web")) == "4"
    assert requests(emulator, resource="services") == []  # no GET: the store answered


def test_invalidate_makes_the_next_read_live(emu: tuple[Emulator, KubeApi]) -> None:
    emulator, api = emu
    created = api.create(f"/api/v1/namespaces/{NS}/services", service("web"))
    store = Store(SERVICES, NS)
    store.replace([obj("web", 1)], "1")  # a stale copy
    reader = Reader(api, SERVICES, [store])
    emulator.clear_audit()
    assert rv_of(reader.get(NS, "web")) == "1"
    reader.invalidate(NS, "web")
    assert rv_of(reader.get(NS, "web")) == rv_of(created)  # live
    assert rv_of(reader.get(NS, "web")) == rv_of(created)  # and the store updated with it
    assert requests(emulator, resource="services") == ["get"]


def test_reflector_keeps_the_store_in_step_through_events_and_410(
    emu: tuple[Emulator, KubeApi],
) -> None:
    emulator, api = emu
    services = f"/api/v1/namespaces/{NS}/services"
    api.create(services, service("a"))
    store = Store(SERVICES, NS)
    reflector = store_reflector(api, store, timeout_seconds=5)
    reflector.start()
    try:
        wait_for("initial list", reflector.ready, timeout=10)
        assert [k[1] for k in store.held_keys()] == ["a"]
        api.create(services, service("b"))
        wait_for("ADDED", lambda: store.get(NS, "b"), timeout=10)
        api.delete(f"{services}/a")
        wait_for("DELETED", lambda: store.get(NS, "a") is None, timeout=10)
        # Watch held back, history compacted while away: the re-watch gets 410 and re-lists;
        # what changed meanwhile is in the store afterwards.
        relists = reflector.relists
        emulator.faults.set_latency(1.0, verb="watch", resource="services")
        assert emulator.faults.drop_watches() >= 1
        api.delete(f"{services}/b")
        api.create(services, service("c"))
        emulator.compact()
        wait_for("re-list after 410", lambda: reflector.relists > relists, timeout=20)
        emulator.faults.clear()
        wait_for(
            "store after re-list", lambda: [k[1] for k in store.held_keys()] == ["c"], timeout=10
        )
    finally:
        reflector.stop()


def test_a_kind_that_is_not_served_is_ready_and_empty(emu: tuple[Emulator, KubeApi]) -> None:
    _, api = emu
    kind = Kind("Gadget", "example.invalid", "v1", "gadgets")
    store = Store(kind, NS)
    reflector = store_reflector(api, store, timeout_seconds=5)
    reflector.start()
    try:
        wait_for("absent kind ready", reflector.ready, timeout=10)
        assert store.synced and store.absent and len(store) == 0
        assert Reader(api, kind, [store]).get(NS, "x") is None
    finally:
        reflector.stop()


def test_workloads_writes_are_held_while_the_watch_is_held_back(
    emu: tuple[Emulator, KubeApi],
) -> None:
    """Read-your-own-writes: the watch delivers nothing (held back by latency); the store still
    answers with canaryd's last write, so a write already done is not made again (without the
    held answer: a second create, 409, and a live read)."""
    emulator, api = emu
    deployments = f"/apis/apps/v1/namespaces/{NS}/deployments"
    api.create(deployments, deployment_body("podinfo", "podinfo:1"))
    store = Store(DEPLOYMENTS, NS)
    reflector = store_reflector(api, store, timeout_seconds=5)
    reflector.start()
    try:
        wait_for("initial list", lambda: store.get(NS, "podinfo"), timeout=10)
        emulator.faults.set_latency(3.0, verb="watch", resource="deployments")
        assert emulator.faults.drop_watches() >= 1
        cache = Cache(api, [DEPLOYMENTS], [NS])
        cache.stores[DEPLOYMENTS] = (store,)
        workloads = Workloads(api, cache)
        rollout = parse_rollout({**rollout_body("podinfo", "podinfo"), "status": {}})
        emulator.clear_audit()
        workloads.ensure_primary(rollout)
        workloads.ensure_primary(rollout)  # held: no second create
        workloads.scale(NS, "podinfo", 3)
        held = store.get(NS, "podinfo")
        assert held is not None and held["spec"]["replicas"] == 3  # before any event
        workloads.scale(NS, "podinfo", 3)  # already there: no request
        verbs = [(r.verb, r.code) for r in emulator.audit if r.resource == "deployments"]
        assert verbs == [("create", 201), ("patch", 200)]
        state = workloads.state(NS, "podinfo-primary")
        assert state is not None and state.replicas == 2
    finally:
        emulator.faults.clear()
        reflector.stop()


def test_not_ready_and_ticks_wait_until_every_store_has_listed(cluster: Cluster) -> None:
    """/readyz is the controller's ``ready()``: False while a store's first list is pending;
    a tick that needs that store waits for it (no error recorded, no GET made instead)."""
    cluster.deploy("podinfo", "podinfo:1.0")
    cluster.create_rollout("podinfo", "podinfo")
    cluster.emu.faults.set_latency(2.0, verb="list", resource="virtualservices")
    started = time.monotonic()
    parts = cluster.start_controller()
    assert not parts.controller.ready()
    wait_for("Rollouts listed", parts.controller.scheduler.keys, timeout=10)
    assert not parts.controller.ready()
    assert parts.cache is not None and not parts.cache.synced()
    wait_for("ready", parts.controller.ready, timeout=20)
    assert time.monotonic() - started >= 2.0
    cluster.emu.faults.clear()
    status = wait_for("Initialized", phase_is(cluster, "podinfo", "Initialized"), timeout=30)
    assert all(c.get("status") == "True" for c in status["conditions"] if c["type"] == "Reconciled")
    gets = [r for r in cluster.emu.audit if r.verb == "get" and r.resource == "virtualservices"]
    assert gets == []
