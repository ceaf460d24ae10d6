"""canaryd's custom resources and Secrets: list/read Rollouts, write their status, resolve
MetricTemplates, AlertProviders and Secret values.

The status write is the only write a tick makes to a Rollout. It is conflict-safe: a PUT to the
``status`` subresource carrying the ``metadata.resourceVersion`` that was read, so the API
server answers 409 when anybody changed the Rollout since (a second replica, a user's edit);
the tick then fails with :class:`ConflictError` and the next tick starts again from a fresh read.
A status that did not change is not written at all.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from canaryd.adapters.kube import paths
from canaryd.adapters.kube.parse import InvalidSpecError, describe
from canaryd.adapters.transport import JSON, KubeApi, NotFoundError
from canaryd.api.models import AlertProvider, MetricTemplate, RolloutStatus
from canaryd.core.ports import PermanentError

ROLLOUTS = "rollouts"
METRIC_TEMPLATES = "metrictemplates"
ALERT_PROVIDERS = "alertproviders"

M = TypeVar("M", bound=BaseModel)


def normalized_status(raw: JSON) -> Any:
    """The stored status in the form :meth:`RolloutStatus.wire` produces, for comparison. A
    status the model cannot read compares as itself (and so always differs from a valid one)."""
    stored = raw.get("status") or {}
    try:
        return RolloutStatus.model_validate(stored).wire()
    except ValidationError:
        return stored


class Resources:
    """Access to Rollouts, MetricTemplates, AlertProviders and Secrets."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    # ---- Rollouts ----------------------------------------------------------------------------

    def list_rollouts(self, namespace: str | None, *, label_selector: str = "") -> JSON:
        """The raw list (``items`` and ``metadata.resourceVersion``); all namespaces when None."""
        path = (
            paths.custom_all(ROLLOUTS) if namespace is None else paths.custom(namespace, ROLLOUTS)
        )
        return self.api.list(path, label_selector=label_selector, what="list Rollouts")

    def get_rollout(self, namespace: str, name: str) -> JSON | None:
        return self.api.get_or_none(
            paths.custom(namespace, ROLLOUTS, name), what=f"read Rollout {namespace}/{name}"
        )

    def write_status(self, raw: JSON, status: RolloutStatus) -> JSON | None:
        """PUT ``status`` to the status subresource, guarded by the ``resourceVersion`` of
        ``raw`` (the Rollout as read at the start of the tick).

        Returns the updated object, or None when the status is unchanged (no request made).
        Raises :class:`ConflictError` when the Rollout changed since it was read."""
        new = status.wire()
        if new == normalized_status(raw):
            return None
        meta = raw["metadata"]
        body = copy.deepcopy(raw)
        body["status"] = new
        return self.api.replace(
            paths.custom(meta["namespace"], ROLLOUTS, meta["name"]) + "/status",
            body,
            what=f"write status of Rollout {meta['namespace']}/{meta['name']}",
        )

    def set_finalizers(self, raw: JSON, finalizers: Sequence[str]) -> JSON:
        """PUT the Rollout as read with ``metadata.finalizers`` replaced (its resourceVersion
        guards the write: 409 when the Rollout changed since). The spec and status are sent as
        read, and a PUT of the main resource ignores status changes (status subresource)."""
        meta = raw["metadata"]
        body = copy.deepcopy(raw)
        body["metadata"]["finalizers"] = list(finalizers)
        return self.api.replace(
            paths.custom(meta["namespace"], ROLLOUTS, meta["name"]),
            body,
            what=f"set finalizers of Rollout {meta['namespace']}/{meta['name']}",
        )

    # ---- MetricTemplates, AlertProviders, Secrets --------------------------------------------

    def metric_template(self, namespace: str, name: str) -> MetricTemplate:
        """The typed MetricTemplate; raises NotFoundError or InvalidSpecError."""
        return self._typed(MetricTemplate, METRIC_TEMPLATES, namespace, name)

    def alert_provider(self, namespace: str, name: str) -> AlertProvider:
        """The typed AlertProvider; raises NotFoundError or InvalidSpecError."""
        return self._typed(AlertProvider, ALERT_PROVIDERS, namespace, name)

    def _typed(self, model: type[M], plural: str, namespace: str, name: str) -> M:
        kind = model.__name__
        raw = self.api.get(
            paths.custom(namespace, plural, name), what=f"read {kind} {namespace}/{name}"
        )
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise InvalidSpecError(f"{kind} {namespace}/{name}: {describe(exc)}") from exc

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        """The decoded value of ``data[key]`` (or ``stringData[key]``) of a Secret."""
        secret = self.api.get(paths.secret(namespace, name), what=f"read Secret {namespace}/{name}")
        data = secret.get("data") or {}
        if key in data:
            try:
                return base64.b64decode(data[key], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise PermanentError(f"Secret {namespace}/{name} key {key}: not base64") from exc
        string_data = secret.get("stringData") or {}
        if key in string_data:
            return str(string_data[key])
        raise NotFoundError(f"Secret {namespace}/{name} has no key {key!r}")
