"""canaryd's custom resources and Secrets: list/read Rollouts, write their status, resolve
MetricTemplates, AlertProviders and Secret values.

Reads come from the informer stores (:mod:`canaryd.adapters.cache`) when the controller has
them, else from GETs (the CLI's one-shot commands).

The status write is the only write a tick makes to a Rollout. It is conflict-safe: a PUT to the
``status`` subresource carrying the ``metadata.resourceVersion`` that was read, so the API
server answers 409 when anybody changed the Rollout since (a second replica, a user's edit);
the tick then fails with :class:`ConflictError`, the cached copy is marked stale, and the next
tick starts again from a fresh (live) read. The body is light: identity, ``resourceVersion``
and the status only (the status subresource takes nothing else from it), not a deep copy of the
whole object. A status that did not change is not written at all, and the stored status is
normalised once per version of the object, not once per tick.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from canaryd.adapters.cache import Cache, Kind, Reader, reader_of
from canaryd.adapters.kube import paths
from canaryd.adapters.kube.parse import InvalidSpecError, describe
from canaryd.adapters.transport import JSON, ConflictError, KubeApi, NotFoundError
from canaryd.api.models import (
    API_VERSION,
    GROUP,
    VERSION,
    AlertProvider,
    MetricTemplate,
    RolloutStatus,
)
from canaryd.core.ports import PermanentError

ROLLOUTS = "rollouts"
METRIC_TEMPLATES = "metrictemplates"
ALERT_PROVIDERS = "alertproviders"
ROLLOUT_KIND = Kind("Rollout", GROUP, VERSION, ROLLOUTS)
METRIC_TEMPLATE_KIND = Kind("MetricTemplate", GROUP, VERSION, METRIC_TEMPLATES)
ALERT_PROVIDER_KIND = Kind("AlertProvider", GROUP, VERSION, ALERT_PROVIDERS)

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

    def __init__(self, api: KubeApi, cache: Cache | None = None) -> None:
        self.api = api
        self.rollouts = reader_of(api, ROLLOUT_KIND, cache)
        self._readers: dict[str, Reader] = {
            METRIC_TEMPLATES: reader_of(api, METRIC_TEMPLATE_KIND, cache),
            ALERT_PROVIDERS: reader_of(api, ALERT_PROVIDER_KIND, cache),
        }

    # ---- Rollouts ----------------------------------------------------------------------------

    def list_rollouts(self, namespace: str | None, *, label_selector: str = "") -> JSON:
        """The raw list (``items`` and ``metadata.resourceVersion``); all namespaces when None."""
        path = (
            paths.custom_all(ROLLOUTS) if namespace is None else paths.custom(namespace, ROLLOUTS)
        )
        return self.api.list(path, label_selector=label_selector, what="list Rollouts")

    def get_rollout(self, namespace: str, name: str) -> JSON | None:
        return self.rollouts.get(namespace, name)

    def write_status(self, raw: JSON, status: RolloutStatus) -> JSON | None:
        """PUT ``status`` to the status subresource, guarded by the ``resourceVersion`` of
        ``raw`` (the Rollout as read at the start of the tick).

        Returns the updated object, or None when the status is unchanged (no request made).
        Raises :class:`ConflictError` when the Rollout changed since it was read."""
        new = status.wire()
        if new == self.rollouts.derived(raw, "status", normalized_status):
            return None
        meta = raw["metadata"]
        ns, name = meta["namespace"], meta["name"]
        body = {
            "apiVersion": raw.get("apiVersion", API_VERSION),
            "kind": raw.get("kind", "Rollout"),
            "metadata": {
                "name": name,
                "namespace": ns,
                "resourceVersion": meta.get("resourceVersion"),
            },
            "status": new,
        }
        try:
            written = self.api.replace(
                paths.custom(ns, ROLLOUTS, name) + "/status",
                body,
                what=f"write status of Rollout {ns}/{name}",
            )
        except (ConflictError, NotFoundError):
            self.rollouts.invalidate(ns, name)
            raise
        # Stored as sent (the usual case): the next tick's comparison needs no re-normalising.
        memo = {"status": new} if written.get("status") == new else None
        return self.rollouts.wrote(written, memo)

    def set_finalizers(self, raw: JSON, finalizers: Sequence[str]) -> JSON:
        """PUT the Rollout as read with ``metadata.finalizers`` replaced (its resourceVersion
        guards the write: 409 when the Rollout changed since). The spec and status are sent as
        read, and a PUT of the main resource ignores status changes (status subresource)."""
        meta = raw["metadata"]
        ns, name = meta["namespace"], meta["name"]
        body = {**raw, "metadata": {**meta, "finalizers": list(finalizers)}}
        try:
            written = self.api.replace(
                paths.custom(ns, ROLLOUTS, name),
                body,
                what=f"set finalizers of Rollout {ns}/{name}",
            )
        except (ConflictError, NotFoundError):
            self.rollouts.invalidate(ns, name)
            raise
        done = written.get("metadata") or {}
        if done.get("deletionTimestamp") and not done.get("finalizers"):
            self.rollouts.deleted(ns, name)  # the last finalizer went: the object is gone
            return written
        return self.rollouts.wrote(written)

    # ---- MetricTemplates, AlertProviders, Secrets --------------------------------------------

    def metric_template(self, namespace: str, name: str) -> MetricTemplate:
        """The typed MetricTemplate; raises NotFoundError or InvalidSpecError."""
        return self._typed(MetricTemplate, METRIC_TEMPLATES, namespace, name)

    def alert_provider(self, namespace: str, name: str) -> AlertProvider:
        """The typed AlertProvider; raises NotFoundError or InvalidSpecError."""
        return self._typed(AlertProvider, ALERT_PROVIDERS, namespace, name)

    def _typed(self, model: type[M], plural: str, namespace: str, name: str) -> M:
        kind = model.__name__
        reader = self._readers[plural]
        raw = reader.require(namespace, name)

        def parse(obj: JSON) -> M | str:
            try:
                return model.model_validate(obj)
            except ValidationError as exc:
                return f"{kind} {namespace}/{name}: {describe(exc)}"

        # Parsed once per version of the object (a tick per interval reads it again); a new
        # error each time (a raised instance kept would grow its traceback).
        parsed = reader.derived(raw, "typed", parse)
        if isinstance(parsed, str):
            raise InvalidSpecError(parsed)
        return parsed

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
