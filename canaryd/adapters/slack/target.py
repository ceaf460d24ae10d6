"""A resolved Slack destination and the pure helper that builds one from an AlertProvider.

Assumption: the controller has already read the Secret named by the provider; this module never
touches the API server. Credentials are kept out of ``repr`` so a target can be logged safely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from canaryd.api.models import AlertProvider, Severity

SLACK_API_BASE_URL = "https://slack.com/api/"

_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARN: 1, Severity.ERROR: 2}


def severity_meets(severity: Severity, minimum: Severity) -> bool:
    """True when ``severity`` is at least ``minimum`` (info < warn < error)."""
    return _SEVERITY_RANK[severity] >= _SEVERITY_RANK[minimum]


@dataclass(frozen=True, slots=True)
class SlackTarget:
    """One Slack destination: an incoming webhook, or a bot token plus a channel.

    Satisfies :class:`canaryd.core.ports.AlertTarget`. Exactly one of ``webhook_url`` and
    ``token`` is set (checked at construction)."""

    name: str
    """Stable identity used for de-duplication and thread memory (``namespace/provider``)."""
    min_severity: Severity = Severity.INFO
    """Notices below this severity are not sent to this target."""
    webhook_url: str | None = field(default=None, repr=False)
    """Incoming-webhook URL (a secret: whoever has it can post)."""
    token: str | None = field(default=None, repr=False)
    """Bot token for ``chat.postMessage`` (a secret)."""
    channel: str | None = None
    """Channel id or name, required with ``token``."""
    base_url: str | None = None
    """Slack Web API base URL override (Enterprise Grid proxies, tests); default slack.com."""
    dashboard_url: str | None = None
    """Grafana dashboard linked from messages; ``var-namespace``/``var-rollout`` are appended."""

    def __post_init__(self) -> None:
        if (self.webhook_url is None) == (self.token is None):
            raise ValueError(f"slack target {self.name!r}: set exactly one of webhook_url, token")
        if self.token is not None and not self.channel:
            raise ValueError(f"slack target {self.name!r}: token needs a channel")

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values that must never appear in a log line."""
        return tuple(s for s in (self.webhook_url, self.token) if s)


def slack_target_from(
    provider: AlertProvider, secret_value: str, min_severity: Severity
) -> SlackTarget:
    """Build the target for ``provider`` given the value of its Secret key.

    ``secret_value`` is the webhook URL when the provider uses ``webhookSecretRef`` and the bot
    token when it uses ``tokenSecretRef``; surrounding whitespace (a trailing newline from
    ``kubectl create secret --from-file``) is stripped. For webhooks, ``spec.address`` (if set)
    replaces the scheme and host of the URL, so a proxy can be used without editing the Secret.
    """
    spec = provider.spec
    name = f"{provider.metadata.namespace}/{provider.metadata.name}"
    value = secret_value.strip()
    if not value:
        raise ValueError(f"alert provider {name}: the referenced Secret key is empty")
    if spec.token_secret_ref is not None:
        base_url = spec.address.rstrip("/") + "/" if spec.address else None
        return SlackTarget(
            name=name,
            min_severity=min_severity,
            token=value,
            channel=spec.channel,
            base_url=base_url,
            dashboard_url=spec.dashboard_url,
        )
    url = value
    if spec.address:
        url = _rebase(value, spec.address)
    return SlackTarget(
        name=name,
        min_severity=min_severity,
        webhook_url=url,
        channel=spec.channel,
        dashboard_url=spec.dashboard_url,
    )


def _rebase(url: str, address: str) -> str:
    """``https://hooks.slack.com/services/T/B/X`` on ``http://proxy:8080`` ->
    ``http://proxy:8080/services/T/B/X``."""
    original = urlsplit(url)
    base = urlsplit(address)
    path = base.path.rstrip("/") + original.path
    return urlunsplit((base.scheme, base.netloc, path, original.query, ""))
