"""Watch through ``kubernetes.watch.Watch().stream``: ordered events after a
resourceVersion, initial ADDED events, bookmarks, timeoutSeconds, 410 Gone, dropped streams."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from kubeemu import Emulator


def configmap_events(core: client.CoreV1Api, **params: Any) -> list[dict[str, Any]]:
    """Every event of a watch of the ConfigMaps in "default" that times out after 1 s."""
    return list(
        watch.Watch().stream(
            core.list_namespaced_config_map, "default", timeout_seconds=1, **params
        )
    )


def test_events_in_order_after_resource_version(core: client.CoreV1Api) -> None:
    start = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "1"}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "b"}})
    core.delete_namespaced_config_map("a", "default")
    seen = [
        (ev["type"], ev["object"].metadata.name, int(ev["object"].metadata.resource_version))
        for ev in configmap_events(core, resource_version=start.metadata.resource_version)
    ]
    assert [(t, n) for t, n, _ in seen] == [("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    rvs = [rv for _, _, rv in seen]
    assert rvs == sorted(rvs) and rvs[0] > int(start.metadata.resource_version)


def test_watch_without_resource_version_starts_with_current_state(
    core: client.CoreV1Api,
) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a", "labels": {"t": "1"}}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "b"}})
    seen = [
        (e["type"], e["object"].metadata.name) for e in configmap_events(core, label_selector="t=1")
    ]
    assert seen == [("ADDED", "a")]


def test_live_events_and_timeout_ends_stream(core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_config_map("default").metadata.resource_version

    def writer() -> None:
        time.sleep(0.2)
        core.create_namespaced_config_map("default", {"metadata": {"name": "late"}})

    t = threading.Thread(target=writer)
    t.start()
    began = time.monotonic()
    seen = [
        e["object"].metadata.name
        for e in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=1
        )
    ]
    elapsed = time.monotonic() - began
    t.join()
    assert seen == ["late"]
    assert 0.9 <= elapsed < 3.0


def test_bookmarks_carry_resource_version(core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_secret("default", {"metadata": {"name": "elsewhere"}})
    w = watch.Watch()
    types = []
    for ev in w.stream(
        core.list_namespaced_config_map,
        "default",
        resource_version=rv,
        allow_watch_bookmarks=True,
        timeout_seconds=3,  # the pre-timeout bookmark comes 2 s before the end
    ):
        types.append(ev["type"])
        if ev["type"] == "BOOKMARK":
            obj = ev["raw_object"]
            assert obj["kind"] == "ConfigMap" and obj["apiVersion"] == "v1"
            assert int(obj["metadata"]["resourceVersion"]) > int(rv)
            w.stop()
    assert types == ["BOOKMARK"]
    assert int(w.resource_version) > int(rv)


def test_too_old_resource_version_is_410(emulator: Emulator, core: client.CoreV1Api) -> None:
    old = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "1"}})
    emulator.compact()
    with pytest.raises(ApiException) as exc:
        configmap_events(core, resource_version=old.metadata.resource_version)
    assert exc.value.status == 410
    # A fresh list gives a resourceVersion that can be watched again.
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    assert configmap_events(core, resource_version=rv) == []


def test_bounded_history_expires_old_versions() -> None:
    emu = Emulator(install_istio=False, history_size=5).start()
    api = emu.api_client()
    try:
        core = client.CoreV1Api(api)
        first = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
        for i in range(12):
            core.patch_namespaced_config_map("a", "default", {"data": {"i": str(i)}})
        with pytest.raises(ApiException) as exc:
            configmap_events(core, resource_version=first.metadata.resource_version)
        assert exc.value.status == 410
    finally:
        api.close()
        emu.stop()


def test_drop_watches_closes_open_streams(emulator: Emulator, core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    outcome: dict[str, object] = {}

    def consume() -> None:
        began = time.monotonic()
        try:
            for _ in watch.Watch().stream(
                core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=30
            ):
                pass
            outcome["how"] = "ended"
        except Exception as exc:
            outcome["how"] = type(exc).__name__
        outcome["after"] = time.monotonic() - began

    t = threading.Thread(target=consume)
    t.start()
    deadline = time.monotonic() + 5
    while emulator.faults.drop_watches() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    t.join(timeout=10)
    assert not t.is_alive()
    assert float(outcome["after"]) < 10  # far earlier than the 30 s timeout


def test_selector_watch_sees_objects_enter_and_leave(core: client.CoreV1Api) -> None:
    start = core.create_namespaced_config_map(
        "default", {"metadata": {"name": "a", "labels": {"shard": "1"}}}
    )
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "v"}})
    core.patch_namespaced_config_map("a", "default", {"metadata": {"labels": {"shard": "2"}}})
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "w"}})  # not shard 1
    core.patch_namespaced_config_map("a", "default", {"metadata": {"labels": {"shard": "1"}}})
    seen = [
        e["type"]
        for e in watch.Watch().stream(
            core.list_namespaced_config_map,
            "default",
            label_selector="shard=1",
            resource_version=start.metadata.resource_version,
            timeout_seconds=1,
        )
    ]
    assert seen == ["MODIFIED", "DELETED", "ADDED"]


def test_concurrent_writers_every_event_once_in_order(
    core: client.CoreV1Api, kube_api: client.ApiClient
) -> None:
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    writers, per_writer = 4, 15

    def write(w: int) -> None:
        api = client.CoreV1Api(kube_api)
        api.create_namespaced_config_map("default", {"metadata": {"name": f"w{w}"}})
        for i in range(per_writer - 1):
            api.patch_namespaced_config_map(f"w{w}", "default", {"data": {"i": str(i)}})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    events = configmap_events(core, resource_version=rv)
    rvs = [int(e["object"].metadata.resource_version) for e in events]
    assert len(events) == writers * per_writer
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs)
    final = {c.metadata.name: c.data for c in core.list_namespaced_config_map("default").items}
    assert all(final[f"w{w}"] == {"i": str(per_writer - 2)} for w in range(writers))


def test_send_initial_events_ends_with_annotated_bookmark(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    w = watch.Watch()
    seen = []
    for ev in w.stream(
        core.list_namespaced_config_map,
        "default",
        send_initial_events=True,
        resource_version_match="NotOlderThan",
        allow_watch_bookmarks=True,
        timeout_seconds=1,
    ):
        seen.append(ev["type"])
        if ev["type"] == "BOOKMARK":
            annotations = ev["raw_object"]["metadata"]["annotations"]
            assert annotations == {"k8s.io/initial-events-end": "true"}
            w.stop()
    assert seen == ["ADDED", "BOOKMARK"]


# ---- kube-apiserver's watch timing (issue 10, item 5) ----------------------------------------


def bookmark_times(core: client.CoreV1Api, timeout: int) -> tuple[list[float], float]:
    """Seconds after the start at which BOOKMARK events arrived, and the stream's length."""
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    began = time.monotonic()
    times = [
        time.monotonic() - began
        for ev in watch.Watch().stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
        )
        if ev["type"] == "BOOKMARK"
    ]
    return times, time.monotonic() - began


def test_default_bookmarks_once_a_minute_and_shortly_before_the_timeout(
    core: client.CoreV1Api,
) -> None:
    """cacheWatcher.nextBookmarkTime (apiserver/pkg/storage/cacher): a bookmark every
    bookmarkFrequency (1 minute), but no later than 2 s before the watch's deadline. A 5 s
    watch therefore gets exactly one, about 3 s in (the old emulator sent one per second)."""
    times, length = bookmark_times(core, timeout=5)
    assert len(times) == 1, times
    assert 2.8 <= times[0] <= 4.0
    assert length >= 4.9


def test_bookmark_cadence_is_configurable() -> None:
    with Emulator(install_istio=False, bookmark_interval=1.0, bookmark_before_timeout=0.5) as emu:
        api = emu.api_client()
        try:
            times, _ = bookmark_times(client.CoreV1Api(api), timeout=3)
        finally:
            api.close()
    # every second, then once 0.5 s before the end: ~1, ~2, ~2.5
    assert len(times) == 3, times
    assert [round(t * 2) / 2 for t in times] == [1.0, 2.0, 2.5]


def test_history_is_compacted_by_time() -> None:
    """etcd is compacted every 5 minutes (--etcd-compaction-interval): a watch from a
    resourceVersion older than that gets 410 Gone and must re-list. Shortened to 1 s here."""
    with Emulator(install_istio=False, history_seconds=1.0) as emu:
        api = emu.api_client()
        try:
            core = client.CoreV1Api(api)
            first = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
            core.patch_namespaced_config_map("a", "default", {"data": {"k": "1"}})
            # Within the window the change is replayed ...
            seen = configmap_events(core, resource_version=first.metadata.resource_version)
            assert [e["type"] for e in seen] == ["MODIFIED"]
            time.sleep(1.2)
            # ... once it has passed, nothing else having happened, it is gone.
            with pytest.raises(ApiException) as exc:
                configmap_events(core, resource_version=first.metadata.resource_version)
            assert exc.value.status == 410
            assert "too old resource version" in str(exc.value)
            rv = core.list_namespaced_config_map("default").metadata.resource_version
            assert configmap_events(core, resource_version=rv) == []
        finally:
            api.close()


def test_watch_from_a_future_resource_version_is_504_after_3s(core: client.CoreV1Api) -> None:
    """The watch cache waits 3 s for a resourceVersion it has not reached
    (waitUntilFreshAndBlock), then answers storage.NewTooLargeResourceVersionError: 504,
    reason Timeout, cause ResourceVersionTooLarge, Retry-After 1."""
    current = int(core.list_namespaced_config_map("default").metadata.resource_version)
    began = time.monotonic()
    with pytest.raises(ApiException) as exc:
        configmap_events(core, resource_version=str(current + 1000))
    waited = time.monotonic() - began
    assert 2.9 <= waited < 6.0
    assert exc.value.status == 504
    body = json.loads(exc.value.body)
    assert body["reason"] == "Timeout"
    assert body["message"] == (
        f"Timeout: Too large resource version: {current + 1000}, current: {current}"
    )
    assert body["details"]["causes"] == [
        {"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}
    ]
    assert body["details"]["retryAfterSeconds"] == 1


def test_watch_from_a_version_reached_while_waiting_proceeds(core: client.CoreV1Api) -> None:
    current = int(core.list_namespaced_config_map("default").metadata.resource_version)
    timer = threading.Timer(
        0.5, lambda: core.create_namespaced_config_map("default", {"metadata": {"name": "n"}})
    )
    timer.start()
    try:
        # current + 1 is the create's resourceVersion: the watch starts after it.
        seen = configmap_events(core, resource_version=str(current + 1))
    finally:
        timer.join()
    assert seen == []
