"""Resolve a Rollout's alert destinations: AlertProvider + Secret -> Slack target.

Resolution happens only when a tick has notices to send (rare), so nothing is cached: a
rotated Secret is picked up by the next notice. A provider that cannot be resolved is reported
(the reconciler turns it into a Warning event) and skipped; the others still get the notice.
"""

from __future__ import annotations

from dataclasses import dataclass

from canaryd.adapters.slack import slack_target_from
from canaryd.api.models import Rollout, Severity
from canaryd.core.ports import AlertTarget, PermanentError, Resources, TemporaryError


@dataclass(frozen=True, slots=True)
class ProviderRef:
    """An AlertProvider by namespace/name, with the minimum severity sent to it."""

    namespace: str
    name: str
    severity: Severity = Severity.INFO

    @classmethod
    def parse(cls, text: str, *, severity: Severity = Severity.INFO) -> ProviderRef:
        """``"ns/name"`` (or ``"name"`` in ``default``)."""
        namespace, _, name = text.rpartition("/")
        return cls(namespace or "default", name, severity)


def resolve_provider(resources: Resources, ref: ProviderRef) -> AlertTarget:
    provider = resources.alert_provider(ref.namespace, ref.name)
    secret_ref = provider.spec.webhook_secret_ref or provider.spec.token_secret_ref
    if secret_ref is None:  # the model forbids it; kept for mypy and for old objects
        raise PermanentError(f"AlertProvider {ref.namespace}/{ref.name}: no secret reference")
    value = resources.secret_value(ref.namespace, secret_ref.name, secret_ref.key)
    try:
        return slack_target_from(provider, value, ref.severity)
    except ValueError as exc:
        raise PermanentError(str(exc)) from exc


def alert_targets(
    rollout: Rollout, resources: Resources, *, default: ProviderRef | None
) -> tuple[list[AlertTarget], list[str]]:
    """The targets of ``rollout.spec.alerts`` (or ``default`` when it names none) and the
    problems met while resolving them. A provider is looked up in the Rollout's namespace
    only, and its Secret in the provider's (that same) namespace."""
    ns = rollout.metadata.namespace
    refs: list[ProviderRef] = []
    problems: list[str] = []
    for alert in rollout.spec.alerts:
        wanted = alert.provider_ref
        if wanted.namespace not in (None, ns):
            # Another namespace's provider would post with that namespace's Secret.
            problems.append(
                f"alert {alert.name}: providerRef names namespace {wanted.namespace!r}: "
                f"references resolve only in the Rollout's namespace {ns!r}"
            )
            continue
        refs.append(ProviderRef(ns, wanted.name, alert.severity))
    if not rollout.spec.alerts and default is not None:
        refs = [default]  # the controller's own choice (``--alert-provider``), any namespace
    targets: list[AlertTarget] = []
    for ref in refs:
        try:
            targets.append(resolve_provider(resources, ref))
        except (PermanentError, TemporaryError) as exc:
            problems.append(f"alert provider {ref.namespace}/{ref.name}: {exc}")
    return targets, problems
