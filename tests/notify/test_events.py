"""Kubernetes Events on a Rollout, written through the official client to the API emulator:
the Event's shape, client-go style aggregation (count and lastTimestamp), re-creation after the
Event expired, truncation, and best effort when the API server is unreachable."""

from __future__ import annotations

import socket
import time

import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api

from canaryd.adapters.events import MAX_MESSAGE, KubeEventRecorder
from canaryd.adapters.transport import KubeApi, RetryPolicy
from tests.notify.rollouts import rollout

UID = "0b5e1f2a-1111-4c3d-9e8f-000000000001"


@pytest.fixture
def kube(kube_api: ApiClient) -> ApiClient:
    """The emulator's client (tests/support/kube.py) with namespace ``shop``."""
    CoreV1Api(kube_api).create_namespace({"metadata": {"name": "shop"}})
    return kube_api


def events(client: ApiClient) -> list:  # type: ignore[type-arg]
    items = CoreV1Api(client).list_namespaced_event("shop").items
    return sorted(items, key=lambda e: e.metadata.name)


def test_event_on_the_rollout(kube: ApiClient) -> None:
    recorder = KubeEventRecorder(KubeApi(kube), instance="canaryd-0")
    ro = rollout(uid=UID)
    recorder.record(ro, type="Warning", reason="RolledBack", message="error-rate: e-value 312")
    [ev] = events(kube)
    obj = ev.involved_object
    assert (obj.api_version, obj.kind, obj.name, obj.namespace, obj.uid) == (
        "canaryd.io/v1alpha1", "Rollout", "podinfo", "shop", UID,
    )  # fmt: skip
    assert (ev.type, ev.reason, ev.message, ev.count) == (
        "Warning", "RolledBack", "error-rate: e-value 312", 1,
    )  # fmt: skip
    assert ev.source.component == "canaryd" and ev.source.host == "canaryd-0"
    assert ev.reporting_component == "canaryd"
    assert ev.metadata.name.startswith("podinfo.")
    assert ev.first_timestamp == ev.last_timestamp
    assert recorder.failures == 0


def test_repeats_are_aggregated_like_client_go(kube: ApiClient) -> None:
    recorder = KubeEventRecorder(KubeApi(kube))
    ro = rollout(uid=UID)
    recorder.record(ro, type="Normal", reason="Waiting", message="gate load-test closed")
    time.sleep(1.1)  # timestamps have second precision
    recorder.record(ro, type="Normal", reason="Waiting", message="gate load-test closed")
    recorder.record(ro, type="Normal", reason="Waiting", message="gate load-test closed")
    recorder.record(ro, type="Normal", reason="Step", message="weight 10%")
    recorder.record(rollout("cart", uid="u2"), type="Normal", reason="Step", message="weight 10%")
    evs = events(kube)
    assert len(evs) == 3
    [waiting] = [e for e in evs if e.reason == "Waiting"]
    assert waiting.count == 3
    assert waiting.last_timestamp > waiting.first_timestamp
    assert sorted((e.involved_object.name, e.count) for e in evs if e.reason == "Step") == [
        ("cart", 1),
        ("podinfo", 1),
    ]


def test_expired_event_is_recreated(kube: ApiClient) -> None:
    recorder = KubeEventRecorder(KubeApi(kube))
    ro = rollout(uid=UID)
    recorder.record(ro, type="Normal", reason="Started", message="revision abc")
    [ev] = events(kube)
    CoreV1Api(kube).delete_namespaced_event(ev.metadata.name, "shop")  # as the TTL would
    recorder.record(ro, type="Normal", reason="Started", message="revision abc")
    [again] = events(kube)
    assert again.metadata.name != ev.metadata.name and again.count == 1
    assert recorder.failures == 0


def test_long_message_truncated_and_bad_type_rejected(kube: ApiClient) -> None:
    recorder = KubeEventRecorder(KubeApi(kube))
    recorder.record(rollout(), type="Normal", reason="Invalid", message="x" * 5000)
    [ev] = events(kube)
    assert len(ev.message) == MAX_MESSAGE and ev.message.endswith("...")
    recorder.record(rollout(), type="Fatal", reason="Oops", message="m")
    assert recorder.failures == 1 and len(events(kube)) == 1


def test_unreachable_api_server_never_raises() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = Configuration(host=f"http://127.0.0.1:{port}")
    config.retries = 0
    with ApiClient(config) as client:
        recorder = KubeEventRecorder(KubeApi(client, retry=RetryPolicy(attempts=1)))
        started = time.monotonic()
        recorder.record(rollout(), type="Warning", reason="RolledBack", message="m")
        assert recorder.failures == 1
        assert time.monotonic() - started < 5


def test_flood_of_distinct_messages_is_combined(kube: ApiClient) -> None:
    recorder = KubeEventRecorder(KubeApi(kube))
    ro = rollout(uid=UID)
    for i in range(13):
        recorder.record(
            ro, type="Warning", reason="NoData", message=f"no data for {i + 1} intervals"
        )
    recorder.record(ro, type="Warning", reason="NoData", message="no data for 1 intervals")
    evs = events(kube)
    combined = [e for e in evs if e.message.startswith("(combined from similar events): ")]
    assert len(evs) == 11 and len(combined) == 1
    assert combined[0].count == 3
    assert combined[0].message.endswith("no data for 13 intervals")
    [first] = [e for e in evs if e.message == "no data for 1 intervals"]
    assert first.count == 2  # a message seen before still aggregates on its own Event
