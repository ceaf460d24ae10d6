"""The transport's write fence: no write attempt leaves a process that no longer leads.

The reconciler checks leadership before each effect, but one effect is a transport call that
may retry after a backoff sleep; a process frozen or out-voted during that sleep must not send
the retry. Checked over HTTP against the API emulator by its audit log: what was refused was
never sent, reads still are, and the Lease's own writes are not fenced."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from canaryd.adapters.transport import FencedError, KubeApi, RetryPolicy
from kubeemu import Emulator

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


def _writes(emu: Emulator) -> list[str]:
    return [r.verb for r in emu.audit if r.verb in ("create", "update", "patch", "delete")]


def test_a_fenced_process_sends_no_write_but_still_reads(emu: Emulator) -> None:
    client = emu.api_client()
    api = KubeApi(client)
    leading = True
    api.fence = lambda: leading
    try:
        api.create(CONFIGMAPS, {"metadata": {"name": "a"}}, what="create a")
        leading = False
        emu.clear_audit()
        with pytest.raises(FencedError):
            api.create(CONFIGMAPS, {"metadata": {"name": "b"}}, what="create b")
        with pytest.raises(FencedError):
            api.merge_patch(f"{CONFIGMAPS}/a", {"data": {"k": "v"}}, what="patch a")
        assert _writes(emu) == []  # nothing was sent
        assert api.get_or_none(f"{CONFIGMAPS}/a") is not None  # reads are not fenced
        assert api.get_or_none(f"{CONFIGMAPS}/b") is None
        # The Lease goes through the unfenced copy (its writes decide who leads).
        api.unthrottled().create(LEASES, {"metadata": {"name": "l"}, "spec": {}}, what="lease")
        assert _writes(emu) == ["create"]
    finally:
        client.close()  # type: ignore[no-untyped-call]


class _LoseDuringBackoff(RetryPolicy):
    """Retries whose backoff sleep is where leadership is lost (a freeze, or a renewal that
    failed meanwhile)."""

    def __init__(self, lost: threading.Event) -> None:
        super().__init__(attempts=4, base_seconds=0.05, cap_seconds=0.05)
        object.__setattr__(self, "lost", lost)

    def delay(self, attempt: int) -> float:
        self.lost.set()  # type: ignore[attr-defined]
        return 0.05


def test_a_retry_after_the_lease_was_lost_during_its_backoff_is_not_sent(emu: Emulator) -> None:
    client = emu.api_client()
    lost = threading.Event()
    api = KubeApi(client, retry=_LoseDuringBackoff(lost))
    api.fence = lambda: not lost.is_set()
    # The first attempt fails (503, retryable); the retry must not be sent.
    emu.faults.fail_next(1, status=503, verb="create", resource="configmaps")
    try:
        emu.clear_audit()
        with pytest.raises(FencedError):
            api.create(CONFIGMAPS, {"metadata": {"name": "c"}}, what="create c")
        assert _writes(emu) == ["create"]  # the failed first attempt only
        assert api.get_or_none(f"{CONFIGMAPS}/c") is None
        # The same policy without the fence does retry (so the test can fail).
        lost.clear()
        emu.faults.fail_next(1, status=503, verb="create", resource="configmaps")
        unfenced = KubeApi(client, retry=_LoseDuringBackoff(lost))
        unfenced.create(CONFIGMAPS, {"metadata": {"name": "c"}}, what="create c")
        assert api.get_or_none(f"{CONFIGMAPS}/c") is not None
    finally:
        client.close()  # type: ignore[no-untyped-call]
