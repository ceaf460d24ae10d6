"""Typed models of canaryd's custom resources (group ``canaryd.io``, version ``v1alpha1``).

These pydantic models are the single source of truth for the API: ``crds/`` is generated from
them (``python -m canaryd.api.crdgen``) and a test fails when the two drift apart.  Field names
are camelCase on the wire (Kubernetes convention) and snake_case in Python.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

GROUP = "canaryd.io"
VERSION = "v1alpha1"
API_VERSION: Final = "canaryd.io/v1alpha1"

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, examples=["30s", "1m", "1h30m"])]
K8sName = Annotated[
    str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
]


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration string such as ``"1m30s"`` (units ms, s, m, h)."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 1m, 1h30m")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


class Model(BaseModel):
    """Base: camelCase aliases on the wire, unknown fields rejected (the CRD prunes them too)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON form sent to the API server: camelCase, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------------------------
# Rollout spec
# --------------------------------------------------------------------------------------------


class TargetRef(Model):
    """The Deployment whose pod template changes start a rollout (it becomes the canary)."""

    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["Deployment"] = "Deployment"
    name: K8sName


class ServiceSpec(Model):
    """Host-level split, as Flagger does: canaryd creates ``<name>-primary`` and ``<name>-canary``
    Services and one VirtualService ``<name>`` whose HTTP route weights always sum to 100."""

    port: int = Field(ge=1, le=65535, description="Port the Services expose.")
    target_port: int | None = Field(
        default=None, ge=1, le=65535, description="Container port; defaults to port."
    )
    name: K8sName | None = Field(
        default=None,
        description="Base name of the Services and VirtualService; defaults to the target.",
    )
    hosts: list[str] = Field(default_factory=list, description="VirtualService hosts.")
    gateways: list[str] = Field(default_factory=list, description="VirtualService gateways.")


class VirtualServiceRef(Model):
    """Patch only the named HTTP routes of a VirtualService the user already owns (as Argo
    Rollouts does). Every other route is left exactly as it is."""

    name: K8sName
    routes: list[str] = Field(
        default_factory=list,
        description="Names of the HTTP routes to manage; empty means the only HTTP route.",
    )
    primary_host: str = Field(description="Destination host of the stable (primary) Service.")
    canary_host: str = Field(description="Destination host of the canary Service.")


class ScheduleSpec(Model):
    """When and how far traffic moves. The first step is ``startWeight`` (5% by default)."""

    interval: Duration = Field(default="1m", description="Time between analysis ticks.")
    start_weight: int = Field(default=5, ge=1, le=100)
    step_weights: list[Annotated[int, Field(ge=1, le=100)]] | None = Field(
        default=None, description="Explicit increasing weights; overrides stepWeight/maxWeight."
    )
    step_weight: int | None = Field(default=None, ge=1, le=100)
    max_weight: int = Field(default=50, ge=1, le=100)
    intervals_per_step: int = Field(
        default=1, ge=1, le=1000, description="Analysis intervals judged at each weight."
    )

    @model_validator(mode="after")
    def _increasing(self) -> ScheduleSpec:
        if self.step_weights is not None:
            if not self.step_weights:
                raise ValueError("stepWeights must not be empty")
            if any(b <= a for a, b in zip(self.step_weights, self.step_weights[1:], strict=False)):
                raise ValueError(f"stepWeights must increase strictly, got {self.step_weights}")
        if self.start_weight > self.max_weight:
            raise ValueError(
                f"startWeight ({self.start_weight}) must not exceed maxWeight ({self.max_weight})"
            )
        return self

    def weights(self) -> list[int]:
        """The weight of each step, in order."""
        if self.step_weights is not None:
            return list(self.step_weights)
        if self.step_weight is None:
            # Default ladder: small first steps, where a bad canary reaches few users.
            ladder = [w for w in (10, 25, 50, 75) if w < self.max_weight] + [self.max_weight]
        else:
            ladder = list(range(self.step_weight, self.max_weight, self.step_weight))
            ladder.append(self.max_weight)
        return [self.start_weight, *(w for w in ladder if w > self.start_weight)]

    def interval_seconds(self) -> float:
        return parse_duration(self.interval)


class MetricKind(StrEnum):
    """What a metric measures. ``errorRate`` and ``latency`` come from Istio's standard metrics;
    ``template`` runs a MetricTemplate's PromQL."""

    ERROR_RATE = "errorRate"
    LATENCY = "latency"
    TEMPLATE = "template"


class ThresholdRange(Model):
    """Absolute SLO bound applied to the canary alone (Flagger-compatible)."""

    min: float | None = None
    max: float | None = None


class TemplateRef(Model):
    name: K8sName
    namespace: K8sName | None = None


class MetricSpec(Model):
    """One metric of the analysis."""

    name: K8sName
    kind: MetricKind = MetricKind.ERROR_RATE
    template_ref: TemplateRef | None = Field(
        default=None, description="Required when kind is template."
    )
    template_role: Literal["errors", "requests", "value"] = Field(
        default="value",
        description=(
            "For kind template: 'value' judges the query's number against thresholdRange; "
            "'errors' and 'requests' pair two templates into counts judged canary vs stable."
        ),
    )
    error_codes: str = Field(
        default="5..", description="response_code regex counted as errors (errorRate)."
    )
    latency_thresholds_ms: list[float] | None = Field(
        default=None,
        description="Bucket bounds (le, ms) judged for 'slower than' counts; default: the judge's.",
    )
    threshold_range: ThresholdRange | None = None
    weight: float = Field(default=1.0, ge=0, description="Weight in the Kayenta-style score.")
    critical: bool = Field(default=True, description="A failure of this metric fails the rollout.")
    variables: dict[str, str] = Field(default_factory=dict, description="Template variables.")

    @model_validator(mode="after")
    def _template_needs_ref(self) -> MetricSpec:
        if self.kind == MetricKind.TEMPLATE and self.template_ref is None:
            raise ValueError(f"metric {self.name!r}: kind template needs templateRef")
        return self


class JudgeKind(StrEnum):
    SEQUENTIAL = "sequential"  # canaryd's anytime-valid e-process (default)
    THRESHOLDS = "thresholds"  # Flagger-style absolute bounds on the canary only
    KAYENTA = "kayenta"  # Mann-Whitney classifier as in Kayenta's NetflixACAJudge


def _default_metrics() -> list[MetricSpec]:
    return [
        MetricSpec(name="error-rate", kind=MetricKind.ERROR_RATE),
        MetricSpec(name="latency", kind=MetricKind.LATENCY),
    ]


class AnalysisSpec(Model):
    """How canary and stable are compared. Defaults judge Istio's error rate and latency."""

    judge: JudgeKind = JudgeKind.SEQUENTIAL
    alpha: float = Field(
        default=0.01, gt=0, lt=0.5, description="Bound on the false-rollback rate of a good canary."
    )
    tolerated_degradation: float = Field(
        default=0.25,
        ge=0,
        le=10,
        description="Relative degradation tolerated before a canary counts as worse (0.25 = 25%).",
    )
    metrics: list[MetricSpec] = Field(default_factory=_default_metrics)
    early_promotion: bool = Field(
        default=False, description="Promote before the schedule ends once evidence allows."
    )
    no_data_limit: int = Field(
        default=5, ge=1, description="Consecutive intervals without data before failing (NoData)."
    )
    error_limit: int = Field(
        default=5,
        ge=1,
        description="Consecutive metric errors (e.g. Prometheus down) before failing.",
    )
    min_requests: int = Field(
        default=0, ge=0, description="Canary requests needed before a step may advance."
    )
    reporter: Literal["destination", "source"] = "destination"
    prometheus: PrometheusSpec | None = None
    kayenta: KayentaSpec | None = None


class SecretKeyRef(Model):
    name: K8sName
    key: str = Field(min_length=1)


class PrometheusSpec(Model):
    """Where to read metrics; unset fields fall back to the controller's global settings."""

    address: str | None = Field(default=None, pattern=r"^https?://")
    bearer_token_secret_ref: SecretKeyRef | None = None
    basic_auth_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding 'user:password'."
    )
    ca_secret_ref: SecretKeyRef | None = None
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra headers, e.g. X-Scope-OrgID."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)


class KayentaSpec(Model):
    """Kayenta-compatible classifier settings."""

    confidence: float = Field(default=0.98, gt=0.5, lt=1)
    tolerance: float = Field(default=0.25, ge=0)
    pass_score: float = Field(default=95.0, ge=0, le=100)
    marginal_score: float = Field(default=75.0, ge=0, le=100)


class WebhookType(StrEnum):
    PRE_ROLLOUT = "pre-rollout"
    ROLLOUT = "rollout"
    CONFIRM_PROMOTION = "confirm-promotion"
    POST_ROLLOUT = "post-rollout"


class WebhookSpec(Model):
    """An HTTP gate: a 2xx answer lets the rollout go on; anything else holds it (Waiting)."""

    name: K8sName
    type: WebhookType
    url: str = Field(pattern=r"^https?://")
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    metadata: dict[str, str] = Field(default_factory=dict)


class Severity(StrEnum):
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


class AlertSpec(Model):
    """Send events of at least ``severity`` to an AlertProvider."""

    name: K8sName
    provider_ref: TemplateRef
    severity: Severity = Severity.INFO


class RolloutSpec(Model):
    target_ref: TargetRef
    service: ServiceSpec | None = None
    virtual_service_ref: VirtualServiceRef | None = None
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    progress_deadline_seconds: int = Field(default=600, ge=1, le=86400)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    webhooks: list[WebhookSpec] = Field(default_factory=list)
    alerts: list[AlertSpec] = Field(default_factory=list)
    paused: bool = False

    @model_validator(mode="after")
    def _one_traffic_mode(self) -> RolloutSpec:
        if (self.service is None) == (self.virtual_service_ref is None):
            raise ValueError("set exactly one of spec.service and spec.virtualServiceRef")
        return self


# --------------------------------------------------------------------------------------------
# Rollout status: everything needed to resume after a restart lives here.
# --------------------------------------------------------------------------------------------


class Phase(StrEnum):
    INITIALIZING = "Initializing"
    INITIALIZED = "Initialized"
    WAITING = "Waiting"
    PROGRESSING = "Progressing"
    PROMOTING = "Promoting"
    FINALISING = "Finalising"
    SUCCEEDED = "Succeeded"
    ROLLING_BACK = "RollingBack"
    FAILED = "Failed"


class Outcome(StrEnum):
    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


class Condition(Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: datetime
    observed_generation: int | None = None


class ArmCounts(Model):
    """Counts of one arm (canary or stable) over one interval."""

    requests: float = Field(ge=0)
    errors: float = Field(default=0, ge=0)
    latency_buckets: dict[str, float] | None = Field(
        default=None,
        description="Cumulative count of requests with duration <= le (key: le in ms).",
    )
    value: float | None = Field(default=None, description="Single value of a 'value' metric.")


class IntervalRecord(Model):
    """What was observed for one metric in one interval: the judge's whole input."""

    weight: int = Field(ge=0, le=100)
    canary: ArmCounts
    stable: ArmCounts
    # ---- latency judge v2 (issue 16): the dispersion blocks are in seconds ----
    seconds: float | None = Field(
        default=None,
        gt=0,
        le=86400,
        description="Duration of the interval in seconds (unset: the schedule's default, 60).",
    )


class MetricEvidence(Model):
    """Per metric: the judge's latest verdict and the numbers behind it."""

    name: str
    outcome: Outcome
    reason: str = ""
    statistic: float | None = None
    e_value: float | None = None
    p_value: float | None = None
    effect: float | None = Field(
        default=None, description="Estimated relative change (0.5 = +50%)."
    )
    effect_low: float | None = None
    effect_high: float | None = None
    canary_value: float | None = None
    stable_value: float | None = None
    canary_requests: float = 0
    stable_requests: float = 0
    history: list[IntervalRecord] = Field(
        default_factory=list, description="Per-interval counts so far (the judge's memory)."
    )
    # ---- latency judge v2 (issue 16) ----
    latency_state: list[float] | None = Field(
        default=None,
        description="Latency judge's fixed-size state (analysis.latency.LatencyState), so "
        "each interval is judged in O(1) and a restarted controller resumes exactly.",
    )


class AnalysisStatus(Model):
    outcome: Outcome = Outcome.INCONCLUSIVE
    metrics: list[MetricEvidence] = Field(default_factory=list)
    intervals: int = Field(default=0, description="Intervals judged in this rollout.")
    no_data_intervals: int = Field(default=0, description="Consecutive intervals with no data.")
    error_intervals: int = Field(default=0, description="Consecutive intervals with errors.")
    step_intervals: int = Field(default=0, description="Intervals judged at the current step.")
    step_requests: float = Field(default=0, description="Canary requests seen at the current step.")
    last_analysis_time: datetime | None = None


class RolloutStatus(Model):
    phase: Phase = Phase.INITIALIZING
    observed_generation: int = 0
    canary_revision: str = Field(default="", description="Hash of the target's pod template.")
    stable_revision: str = Field(default="", description="Hash of the primary's pod template.")
    current_step: int = 0
    canary_weight: int = 0
    weight_history: list[int] = Field(default_factory=list)
    verdict: Outcome | None = None
    message: str = ""
    rollout_started_at: datetime | None = None
    step_started_at: datetime | None = None
    phase_started_at: datetime | None = None
    last_transition_time: datetime | None = None
    analysis: AnalysisStatus = Field(default_factory=AnalysisStatus)
    conditions: list[Condition] = Field(default_factory=list)
    consumed_action: str = Field(
        default="", description="Id of the last manual action consumed (exactly once)."
    )
    notified: list[str] = Field(
        default_factory=list, description="Idempotency keys of alerts already sent."
    )


class ObjectMeta(BaseModel):
    """The parts of ObjectMeta canaryd reads; everything else passes through untouched."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)

    name: str
    namespace: str = "default"
    uid: str = ""
    resource_version: str = ""
    generation: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    creation_timestamp: datetime | None = None


class Rollout(BaseModel):
    """A Rollout as read from the API server."""

    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel, extra="ignore")

    api_version: Literal["canaryd.io/v1alpha1"] = API_VERSION
    kind: Literal["Rollout"] = "Rollout"
    metadata: ObjectMeta
    spec: RolloutSpec
    status: RolloutStatus = Field(default_factory=RolloutStatus)


# --------------------------------------------------------------------------------------------
# MetricTemplate and AlertProvider
# --------------------------------------------------------------------------------------------


class MetricTemplateSpec(Model):
    """A PromQL query with ``{{ variable }}`` placeholders. Built-in variables: namespace,
    target, primary, canary, workload (the arm being measured), interval. Values are escaped
    before substitution so a name cannot inject PromQL."""

    query: str = Field(min_length=1)
    prometheus: PrometheusSpec | None = None


class MetricTemplate(BaseModel):
    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel, extra="ignore")

    api_version: Literal["canaryd.io/v1alpha1"] = API_VERSION
    kind: Literal["MetricTemplate"] = "MetricTemplate"
    metadata: ObjectMeta
    spec: MetricTemplateSpec


class AlertProviderSpec(Model):
    """A Slack target. Exactly one of webhook or bot token, each read from a Secret."""

    type: Literal["slack"] = "slack"
    channel: str | None = Field(default=None, description="Channel for the bot token mode.")
    webhook_secret_ref: SecretKeyRef | None = None
    token_secret_ref: SecretKeyRef | None = None
    address: str | None = Field(
        default=None, pattern=r"^https?://", description="Override Slack's API base URL."
    )
    dashboard_url: str | None = Field(
        default=None, description="Grafana dashboard link put in messages."
    )

    @model_validator(mode="after")
    def _one_credential(self) -> AlertProviderSpec:
        if (self.webhook_secret_ref is None) == (self.token_secret_ref is None):
            raise ValueError("set exactly one of webhookSecretRef and tokenSecretRef")
        if self.token_secret_ref is not None and not self.channel:
            raise ValueError("tokenSecretRef needs channel")
        return self


class AlertProvider(BaseModel):
    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel, extra="ignore")

    api_version: Literal["canaryd.io/v1alpha1"] = API_VERSION
    kind: Literal["AlertProvider"] = "AlertProvider"
    metadata: ObjectMeta
    spec: AlertProviderSpec


AnalysisSpec.model_rebuild()
