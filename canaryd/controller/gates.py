"""Webhook gates: an HTTP POST per gate the core asked for; a 2xx answer opens the gate.

The payload is JSON ``{"name", "namespace", "phase", "type", "canaryWeight", "revision",
"metadata"}`` (Flagger's webhook payload plus type, weight and revision). Anything but a 2xx
within the webhook's timeout holds the rollout: a non-2xx is ``Closed``, a network error or
timeout is ``Error`` (the core treats both as "not yet").
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Collection

from canaryd.api.models import Rollout, WebhookSpec, WebhookType
from canaryd.core.types import GateResult, GateStatus


def gate_payload(rollout: Rollout, hook: WebhookSpec) -> dict[str, object]:
    return {
        "name": rollout.metadata.name,
        "namespace": rollout.metadata.namespace,
        "phase": rollout.status.phase.value,
        "type": hook.type.value,
        "canaryWeight": rollout.status.canary_weight,
        "revision": rollout.status.canary_revision,
        "metadata": dict(hook.metadata),
    }


def call_gate(rollout: Rollout, hook: WebhookSpec) -> GateResult:
    """POST the payload to ``hook.url``; never raises."""
    request = urllib.request.Request(
        hook.url,
        data=json.dumps(gate_payload(rollout, hook)).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=hook.timeout_seconds) as response:
            code = int(response.status)
    except urllib.error.HTTPError as exc:
        return GateResult(hook.name, hook.type, GateStatus.CLOSED, f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return GateResult(hook.name, hook.type, GateStatus.ERROR, f"{type(exc).__name__}: {exc}")
    if 200 <= code <= 299:
        return GateResult(hook.name, hook.type, GateStatus.OPEN, f"HTTP {code}")
    return GateResult(hook.name, hook.type, GateStatus.CLOSED, f"HTTP {code}")


def call_gates(rollout: Rollout, types: Collection[WebhookType]) -> tuple[GateResult, ...]:
    """Results of every webhook of ``rollout`` whose type is in ``types``, in spec order."""
    return tuple(call_gate(rollout, hook) for hook in rollout.spec.webhooks if hook.type in types)
