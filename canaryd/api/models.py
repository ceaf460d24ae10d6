"""Typed models of canaryd's custom resources (group ``canaryd.io``, version ``v1alpha1``).

These pydantic models are the single source of truth for the API: ``crds/`` is generated from
them (``python -m canaryd.api.crdgen``) and a test fails when the two drift apart.  Field names
are camelCase on the wire (Kubernetes convention) and snake_case in Python.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import re
import struct
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

GROUP = "canaryd.io"
VERSION = "v1alpha1"
API_VERSION: Final = "canaryd.io/v1alpha1"

# Patterns are written for two regex engines at once: kube-apiserver's (Go RE2) and Python's
# (jsonschema in `canaryd lint`, the emulator and the tests). Both read them the same way as
# long as they use only ASCII classes (`\s` differs: RE2's is ASCII-only, Python's Unicode) and
# `$` is read as "end of text" -- see `canaryd.api.schema_re` for Python callers.
#
# Every number of a duration has at most 5 digits (and 9 decimals) and there are at most 4
# parts, so no admitted duration can overflow a timedelta (the scheduler's OverflowError).
DURATION_PATTERN = r"^([0-9]{1,5}(\.[0-9]{1,9})?(ms|s|m|h)){1,4}$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MIN_INTERVAL_SECONDS: Final = 0.1
MAX_INTERVAL_SECONDS: Final = 86400.0

# An http(s) URL that every client can open: scheme, a host (DNS name, IPv4, or a bracketed
# IPv6 literal), an optional port 1..65535, then an optional path/query/fragment of printable
# ASCII without spaces. No user:password@ (credentials belong in Secrets), no control
# characters (a newline made urllib raise InvalidURL inside a tick), no unbalanced `[`.
_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
URL_PATTERN = (
    r"^https?://(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9]([-A-Za-z0-9._]{0,251}[A-Za-z0-9])?)"
    rf"(:{_PORT})?([/?#][!-~]*)?$"
)
MAX_URL_LENGTH: Final = 2048

Duration = Annotated[
    str, Field(max_length=64, pattern=DURATION_PATTERN, examples=["30s", "1m", "1h30m"])
]
K8sName = Annotated[
    str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
]


def _openable_url(value: str) -> str:
    """The URL rules, with a message people can act on (pydantic's own would quote the whole
    pattern), and what a pattern cannot say: the URL parses as the HTTP clients will parse it
    (a bracketed host must be a real IPv6 address)."""
    if not re.fullmatch(URL_PATTERN, value):
        raise ValueError(
            f"{value[:100]!r} is not an http(s) URL of the form scheme://host[:port][/path] "
            "(host: DNS name, IPv4 or [IPv6]; port 1..65535; printable ASCII, no spaces, "
            "no user@)"
        )
    parts = urlsplit(value)  # ValueError on e.g. an unbalanced or invalid IPv6 literal
    _ = parts.port  # ValueError on a port out of range
    if parts.netloc.startswith("["):
        ipaddress.IPv6Address(parts.hostname or "")  # AddressValueError is a ValueError
    return value


HttpUrl = Annotated[
    str,
    Field(
        min_length=8,
        max_length=MAX_URL_LENGTH,
        # The CRD carries the pattern (kube-apiserver checks it); the model checks it in
        # _openable_url, with a readable message.
        json_schema_extra={"pattern": URL_PATTERN},
        examples=["http://loadtester.test/", "https://[fd00::1]:8443/gate"],
    ),
    AfterValidator(_openable_url),
]
ShortText = Annotated[str, Field(max_length=1024)]
"""A free-text value (metadata, variables): bounded so no object can carry megabytes."""
HostName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[!-~]+$")]
# RFC 7230 token for header names; values: printable ASCII and tabs (no CR/LF injection).
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$"
HeaderValue = Annotated[str, Field(max_length=4096, pattern=r"^[\t -~]*$")]
# Finite and bounded: thresholds, weights and scores are compared, summed and printed.
Bounded = Annotated[float, Field(ge=-1e15, le=1e15, allow_inf_nan=False)]

MAX_LIST_QUOTED: Final = 10
"""How many items of a list a validation message quotes before eliding the rest."""


def brief(items: list[Any] | tuple[Any, ...]) -> str:
    """``[1, 2, 3, ... (+9997 more)]``: a list quoted in a message without quoting it whole."""
    shown = ", ".join(repr(i) for i in items[:MAX_LIST_QUOTED])
    more = len(items) - MAX_LIST_QUOTED
    return f"[{shown}, ... (+{more} more)]" if more > 0 else f"[{shown}]"


@functools.lru_cache(maxsize=512)
def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration string such as ``"1m30s"`` (units ms, s, m, h).

    Remembered per string: a tick asks for the same few (interval, warm-up, deadlines) about
    ten times."""
    if len(text) > 64 or not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text[:64]!r}: use e.g. 30s, 1m, 1h30m")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    dupes = [n for n in names if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
    if dupes:
        raise ValueError(f"{what} must be unique; repeated: {brief(sorted(set(dupes)))}")


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
    hosts: list[HostName] = Field(
        default_factory=list, max_length=64, description="VirtualService hosts."
    )
    gateways: list[HostName] = Field(
        default_factory=list, max_length=64, description="VirtualService gateways."
    )
    parent_refs: list[ParentRef] = Field(
        default_factory=list,
        max_length=32,
        description="HTTPRoute parentRefs (router gateway-api); default: the Service <name> "
        "itself (mesh routing, e.g. an Istio ambient waypoint).",
    )
    route_kind: GatewayRouteKind | None = Field(
        default=None,
        description="Router gateway-api: the route generated, HTTPRoute (default) or GRPCRoute.",
    )


class VirtualServiceRef(Model):
    """Patch only the named HTTP routes of a VirtualService the user already owns (as Argo
    Rollouts does). Every other route is left exactly as it is."""

    name: K8sName
    routes: list[HostName] = Field(
        default_factory=list,
        max_length=64,
        description="Names of the HTTP routes to manage; empty means the only HTTP route.",
    )
    primary_host: HostName = Field(description="Destination host of the stable (primary) Service.")
    canary_host: HostName = Field(description="Destination host of the canary Service.")

    @model_validator(mode="after")
    def _two_hosts(self) -> VirtualServiceRef:
        if self.primary_host == self.canary_host:
            raise ValueError(
                f"primaryHost and canaryHost must differ (both are {self.primary_host!r}): "
                "one destination cannot be both stable and canary"
            )
        _unique(self.routes, "routes")
        return self


# ---- traffic router choice (gateway stream): Istio VirtualService or Gateway API HTTPRoute ----


class RouterKind(StrEnum):
    """Which API carries the split: Istio's VirtualService or the Gateway API's HTTPRoute
    (Istio ambient waypoints, Istio's gateways, any Gateway API implementation)."""

    ISTIO = "istio"
    GATEWAY_API = "gateway-api"


GatewayName = Annotated[
    str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
]


class ParentRef(Model):
    """An HTTPRoute ``parentRef`` (Gateway API): a Gateway, or a Service for mesh (GAMMA)
    routing such as an Istio ambient waypoint. Defaults as the Gateway API's."""

    group: str = Field(
        default="gateway.networking.k8s.io",
        max_length=253,
        description="'gateway.networking.k8s.io' for a Gateway, '' for a Service (mesh).",
    )
    kind: str = Field(default="Gateway", min_length=1, max_length=63)
    name: GatewayName
    namespace: GatewayName | None = None
    section_name: GatewayName | None = None
    port: int | None = Field(default=None, ge=1, le=65535)


GatewayRouteKind = Literal["HTTPRoute", "GRPCRoute"]
"""The Gateway API routes canaryd splits: HTTP, or gRPC (GRPCRoute, backendRef weights alike)."""


class HTTPRouteRef(Model):
    """Patch only the named rules of an HTTPRoute (or, ``kind: GRPCRoute``, a GRPCRoute) the
    user already owns (router gateway-api): only the weights of the backendRefs to
    ``primaryService`` and ``canaryService`` change."""

    kind: GatewayRouteKind = Field(
        default="HTTPRoute", description="HTTPRoute (default) or GRPCRoute."
    )
    name: K8sName
    rules: list[GatewayName] = Field(
        default_factory=list,
        max_length=64,
        description="Names of the HTTPRoute rules to manage; empty means the only rule.",
    )
    primary_service: GatewayName = Field(description="backendRef name of the primary Service.")
    canary_service: GatewayName = Field(description="backendRef name of the canary Service.")

    @model_validator(mode="after")
    def _two_services(self) -> HTTPRouteRef:
        if self.primary_service == self.canary_service:
            raise ValueError(
                f"primaryService and canaryService must differ (both are "
                f"{self.primary_service!r}): one backend cannot be both stable and canary"
            )
        _unique(self.rules, "rules")
        return self


# ---- traffic beyond weights (traffic stream): A/B matches and mirroring ----------------------

MATCH_HEADER_PATTERN = r"^[a-z0-9!#$%&'*+.^_`|~-]{1,256}$"
"""Header names of a match: lower case (Istio requires it; HTTP/2 sends them so)."""
QUERY_PARAM_PATTERN = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,256}$"
"""Query parameter names: the Gateway API's pattern (an HTTP token)."""
COOKIE_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$"
"""A cookie name is an HTTP token (RFC 6265 section 4.1.1)."""
COOKIE_VALUE_PATTERN = r"^[!#-+\--:<-\[\]-~]{1,1024}$"
"""cookie-octet (RFC 6265): printable ASCII without space, '"', ',', ';' and backslash."""
MatchValue = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[ -~]+$")]
"""An exact or prefix value: printable ASCII (no CR/LF; the Gateway API's minimum length 1)."""
MAX_REGEX_LENGTH: Final = 1024

# Constructs Python's `re` accepts and RE2 (Envoy's regex engine, Go's) refuses: backreferences,
# lookaround, atomic groups, conditionals, possessive quantifiers. A pattern with any of them is
# refused here rather than by the proxy, which would reject the whole route.
_NOT_RE2 = re.compile(r"\\[1-9]|\\g<|\(\?P=|\(\?[=!]|\(\?<[=!]|\(\?>|\(\?\(|[*+?}]\+")


def _re2_regex(value: str) -> str:
    """A regex both engines read the same way: Python compiles it and it uses nothing RE2 lacks
    (checked on the pattern text, escapes included, so ``\\1`` is refused even if harmless)."""
    if not re.fullmatch(r"[ -~]*", value):
        raise ValueError(f"regex {value[:100]!r}: printable ASCII only")
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"regex {value[:100]!r} does not compile: {exc}") from None
    found = _NOT_RE2.search(value.replace("\\\\", ""))
    if found:
        raise ValueError(
            f"regex {value[:100]!r} uses {found.group(0)!r}, which RE2 (Envoy, Go) does not "
            "support: no backreferences, lookaround, atomic groups or possessive quantifiers"
        )
    return value


def re2_escape(text: str) -> str:
    """``text`` as a regex matching itself in RE2 and Python alike: every ASCII character that
    is not a letter or digit is escaped (both read ``\\<punctuation>`` as the character;
    Python's re.escape would also escape a space, which RE2 refuses)."""
    return "".join(f"\\{c}" if c.isascii() and not c.isalnum() and c != " " else c for c in text)


Re2Regex = Annotated[
    str,
    Field(min_length=1, max_length=MAX_REGEX_LENGTH, description="An RE2 regular expression."),
    AfterValidator(_re2_regex),
]


class StringMatch(Model):
    """How a header or query parameter value matches: exactly one of exact, prefix, regex
    (Istio's StringMatch; regex is RE2, matched against the whole value as Envoy does)."""

    exact: MatchValue | None = None
    prefix: MatchValue | None = None
    regex: Re2Regex | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> StringMatch:
        if sum(v is not None for v in (self.exact, self.prefix, self.regex)) != 1:
            raise ValueError("set exactly one of exact, prefix and regex")
        return self


class CookieMatch(Model):
    """A cookie of the request with this exact value (matched on the ``cookie`` header, as
    Flagger's examples do; there is no cookie match in Istio or the Gateway API)."""

    name: str = Field(pattern=COOKIE_NAME_PATTERN, max_length=256)
    value: str = Field(pattern=COOKIE_VALUE_PATTERN, max_length=1024)

    def header_regex(self) -> str:
        """An RE2 regex matching a ``cookie`` header that carries ``name=value`` among its
        cookies (the form of Flagger's examples; anchored, name and value escaped)."""
        return rf"^(.*?;\s*)?({re2_escape(self.name)}={re2_escape(self.value)})(;.*)?$"


class RequestMatch(Model):
    """One condition: every header, query parameter and the cookie given must match (AND).
    The conditions of ``abTest.match`` are ORed, as Istio's and the Gateway API's are."""

    headers: dict[str, StringMatch] = Field(
        default_factory=dict, max_length=15, description="Header name (lower case) -> match."
    )
    query_params: dict[str, StringMatch] = Field(
        default_factory=dict, max_length=16, description="Query parameter name -> match."
    )
    cookie: CookieMatch | None = Field(
        default=None, description="A cookie with an exact value (on the cookie header)."
    )

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, StringMatch]) -> dict[str, StringMatch]:
        bad = [n for n in value if not re.fullmatch(MATCH_HEADER_PATTERN, n)]
        if bad:
            raise ValueError(f"invalid header name(s) {brief(bad)}: a lower-case HTTP token")
        return value

    @field_validator("query_params")
    @classmethod
    def _query_names(cls, value: dict[str, StringMatch]) -> dict[str, StringMatch]:
        bad = [n for n in value if not re.fullmatch(QUERY_PARAM_PATTERN, n)]
        if bad:
            raise ValueError(f"invalid query parameter name(s) {brief(bad)}: an HTTP token")
        return value

    @model_validator(mode="after")
    def _something(self) -> RequestMatch:
        if not (self.headers or self.query_params or self.cookie is not None):
            raise ValueError("a match needs at least one of headers, queryParams and cookie")
        if self.cookie is not None and "cookie" in self.headers:
            raise ValueError("set the cookie header through either headers.cookie or cookie")
        return self


class ABTestSpec(Model):
    """A/B testing (Flagger's ``analysis.match`` + ``iterations``): requests matching any
    condition go to the canary, all others to the primary, for ``iterations`` judged
    intervals; then the canary is promoted (no weight steps)."""

    match: list[RequestMatch] = Field(
        min_length=1, max_length=16, description="Conditions (ORed) routing to the canary."
    )
    iterations: int = Field(ge=1, le=1000, description="Judged intervals before promotion.")


MAX_COOKIE_AGE: Final = 34_560_000
"""400 days: the longest lifetime browsers keep a cookie (RFC 6265bis caps Max-Age so)."""


class SessionAffinitySpec(Model):
    """Session affinity (Flagger's ``analysis.sessionAffinity``): a response from the canary
    (reached by weight) sets the cookie ``cookieName``; requests carrying it go to the canary
    for as long as the canary has traffic. When the canary's traffic ends (promotion done,
    rollback) the cookie's holders go to the primary and the cookie is expired."""

    cookie_name: str = Field(
        pattern=COOKIE_NAME_PATTERN, max_length=256, description="Name of the sticky cookie."
    )
    max_age: int = Field(
        default=86400, ge=1, le=MAX_COOKIE_AGE, description="The cookie's Max-Age, seconds."
    )

    def cookie(self, revision: str) -> str:
        """``name=value`` of the cookie for the canary of ``revision``: a new revision, a new
        cookie, so holders of an older one are not sent to the new canary."""
        return f"{self.cookie_name}={revision or 'none'}"

    def match_regex(self, revision: str) -> str:
        """The ``cookie`` header regex matching a request that carries this cookie."""
        return CookieMatch(name=self.cookie_name, value=revision or "none").header_regex()

    def set_cookie(self, revision: str, *, expire: bool = False) -> str:
        """The ``Set-Cookie`` value a canary response carries (or, ``expire``, deletes it)."""
        age = 0 if expire else self.max_age
        return f"{self.cookie(revision)}; Max-Age={age}; Path=/"


class MirrorSpec(Model):
    """Mirroring (Flagger's ``mirror`` + ``mirrorWeight``): before any live traffic, a copy
    of ``percent`` % of the requests goes to the canary for ``iterations`` judged intervals;
    users get the primary's answers, the canary's are discarded (but measured)."""

    percent: int = Field(default=100, ge=1, le=100, description="Share of requests copied.")
    iterations: int = Field(ge=1, le=1000, description="Judged intervals of mirroring.")


class ScheduleSpec(Model):
    """When and how far traffic moves. The first step is ``startWeight`` (5% by default)."""

    interval: Duration = Field(
        default="1m", description="Time between analysis ticks, 100ms to 24h."
    )
    start_weight: int = Field(default=5, ge=1, le=100)
    step_weights: list[Annotated[int, Field(ge=1, le=100)]] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Explicit increasing weights; overrides stepWeight/maxWeight.",
    )
    step_weight: int | None = Field(default=None, ge=1, le=100)
    max_weight: int = Field(default=50, ge=1, le=100)
    intervals_per_step: int = Field(
        default=1, ge=1, le=1000, description="Analysis intervals judged at each weight."
    )

    @field_validator("interval")
    @classmethod
    def _interval_bounds(cls, value: str) -> str:
        seconds = parse_duration(value)
        if not MIN_INTERVAL_SECONDS <= seconds <= MAX_INTERVAL_SECONDS:
            raise ValueError(f"interval must be between 100ms and 24h, got {value} ({seconds:g}s)")
        return value

    @model_validator(mode="after")
    def _increasing(self) -> ScheduleSpec:
        if self.step_weights is not None:
            if not self.step_weights:
                raise ValueError("stepWeights must not be empty")
            if any(b <= a for a, b in zip(self.step_weights, self.step_weights[1:], strict=False)):
                # Quoted briefly: a 10,000-weight list once made a 79 KB condition message.
                raise ValueError(
                    f"stepWeights must increase strictly, got {brief(self.step_weights)}"
                )
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

    min: Bounded | None = None
    max: Bounded | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ThresholdRange:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(
                f"min ({self.min:g}) must not exceed max ({self.max:g}): no value could pass"
            )
        return self


class TemplateRef(Model):
    """A MetricTemplate or AlertProvider. It is looked up in the Rollout's own namespace;
    ``namespace``, when given, must be that namespace (cross-namespace references are refused:
    another team's template or provider, and its Secrets, are not the Rollout's to use)."""

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
        default="5..",
        min_length=1,
        max_length=256,
        description="response_code regex counted as errors (errorRate).",
    )
    latency_thresholds_ms: list[Annotated[float, Field(gt=0, le=3.6e6)]] | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        description="Bucket bounds (le, ms) judged for 'slower than' counts; default: the judge's.",
    )
    threshold_range: ThresholdRange | None = None
    weight: float = Field(
        default=1.0, ge=0, le=1000, description="Weight in the Kayenta-style score."
    )
    critical: bool = Field(default=True, description="A failure of this metric fails the rollout.")
    variables: dict[str, ShortText] = Field(
        default_factory=dict, max_length=32, description="Template variables."
    )

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


WARMUP_MAX_SECONDS = 3600.0


class AnalysisSpec(Model):
    """How canary and stable are compared. Defaults judge Istio's error rate and latency."""

    judge: JudgeKind = JudgeKind.SEQUENTIAL
    alpha: float = Field(
        default=0.01, gt=0, lt=0.5, description="Bound on the false-rollback rate of a good canary."
    )
    tolerated_degradation: float = Field(
        default=0.0,
        ge=0,
        le=10,
        description=(
            "Relative degradation tolerated before a canary counts as worse (0.25 = 25%); "
            "0 (default) catches small regressions fastest."
        ),
    )
    metrics: list[MetricSpec] = Field(default_factory=_default_metrics, min_length=1, max_length=32)
    early_promotion: bool = Field(
        default=False, description="Promote before the schedule ends once evidence allows."
    )
    no_data_limit: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Consecutive intervals without requests in either arm before an alert "
        "(NoTraffic); the step is held, never failed, for this alone.",
    )
    error_limit: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Deprecated and ignored: metric errors withdraw the canary's traffic at once "
        "and fail only after outageDeadlineSeconds.",
    )
    # ---- metrics outage (tick stream; see docs/rollout.md "Metrics trouble") ----
    outage_deadline_seconds: int = Field(
        default=600,
        ge=1,
        le=86400,
        description="How long the canary may stay unjudged (metrics failing, or the canary "
        "missing from them) before the Rollout fails with reason NotJudged.",
    )
    min_requests: int = Field(
        default=0, ge=0, le=10**12, description="Canary requests needed before a step may advance."
    )
    reporter: Literal["destination", "source", "waypoint"] = Field(
        default="destination",
        description="Istio metrics reporter: 'destination' (sidecars), 'waypoint' (ambient).",
    )
    warmup: Duration = Field(
        default="0s",
        description=(
            "Time from the canary's first data during which metrics are shown but not judged "
            "(Kayenta's beginAnalysisAfter, Argo's initialDelay); at most 1h. Delays every "
            "rollback by as much."
        ),
    )
    prometheus: PrometheusSpec | None = None
    kayenta: KayentaSpec | None = None
    thresholds: ThresholdsSpec | None = None

    @model_validator(mode="after")
    def _kayenta_groups_name_metrics(self) -> AnalysisSpec:
        names = {m.name for m in self.metrics}
        for group in (self.kayenta.groups or []) if self.kayenta is not None else []:
            unknown = sorted(set(group.metrics) - names)
            if unknown:
                raise ValueError(
                    f"kayenta.groups[{group.name!r}] names metrics not in the analysis: {unknown}"
                )
        return self

    @model_validator(mode="after")
    def _warmup_bounded(self) -> AnalysisSpec:
        if parse_duration(self.warmup) > WARMUP_MAX_SECONDS:
            raise ValueError(f"warmup must be at most 1h, got {self.warmup!r}")
        return self

    def warmup_seconds(self) -> float:
        return parse_duration(self.warmup)

    @model_validator(mode="after")
    def _unique_metrics(self) -> AnalysisSpec:
        _unique([m.name for m in self.metrics], "metric names")
        return self


class SecretKeyRef(Model):
    name: K8sName
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class PrometheusSpec(Model):
    """Where to read metrics; unset fields fall back to the controller's global settings.

    The controller's own credentials (bearer token, tenant headers) go only to the controller's
    own address: a different ``address`` gets only the credentials and headers given here, read
    from Secrets in the Rollout's namespace."""

    address: HttpUrl | None = None
    bearer_token_secret_ref: SecretKeyRef | None = None
    basic_auth_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding 'user:password'."
    )
    ca_secret_ref: SecretKeyRef | None = None
    headers: dict[str, HeaderValue] = Field(
        default_factory=dict, max_length=32, description="Extra headers, e.g. X-Scope-OrgID."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not re.fullmatch(HEADER_NAME_PATTERN, name)]
        if bad:
            raise ValueError(f"invalid header name(s) {brief(bad)}: use an HTTP token")
        return value


# ---- Kayenta and Flagger modes (judge: kayenta / thresholds) --------------------------------

KAYENTA_MAX_POINTS: Final = 1000
"""Points per arm the Kayenta judge keeps (its memory in the status); older ones slide out."""


class KayentaGroup(Model):
    """A Kayenta metric group: its score is the share of its metrics classified Pass."""

    name: str = Field(min_length=1, max_length=63)
    weight: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Percent of the summary score; unweighted groups share what is left of 100.",
    )
    metrics: list[K8sName] = Field(min_length=1, description="Names of metrics of the analysis.")


class KayentaEffectSize(Model):
    """Kayenta's ``effectSize``: a High (Low) also needs the effect to reach allowedIncrease
    (allowedDecrease); a critical metric fails the canary outright only beyond criticalIncrease
    (criticalDecrease). Unset: the measure's neutral value (1 for meanRatio, 0.5 for cles)."""

    measure: Literal["meanRatio", "cles"] = "meanRatio"
    allowed_increase: float | None = Field(default=None, ge=0)
    allowed_decrease: float | None = Field(default=None, ge=0)
    critical_increase: float | None = Field(default=None, ge=0)
    critical_decrease: float | None = Field(default=None, ge=0)


class KayentaSpec(Model):
    """Settings of the Kayenta judge (NetflixACAJudge's classifier and score)."""

    confidence: float = Field(default=0.98, gt=0.5, lt=1)
    tolerance: float = Field(default=0.25, ge=0, le=10)
    pass_score: float = Field(default=95.0, ge=0, le=100)
    marginal_score: float = Field(default=75.0, ge=0, le=100)
    direction: Literal["increase", "decrease", "either"] = Field(
        default="increase",
        description="Which change fails a metric (Kayenta's default is either; errors and "
        "latency only fail by increasing).",
    )
    nan_strategy: Literal["remove", "replace"] = Field(
        default="remove", description="Intervals without a value: dropped, or counted as 0."
    )
    must_have_data: bool = Field(
        default=False, description="A non-critical metric without data counts as a failure."
    )
    effect_size: KayentaEffectSize = Field(default_factory=KayentaEffectSize)
    groups: list[KayentaGroup] | None = Field(
        default=None,
        description="Metric groups; default: one group per metric weighted by metrics[].weight.",
    )
    min_intervals: int = Field(
        default=3, ge=2, le=KAYENTA_MAX_POINTS, description="Intervals before the first score."
    )
    lookback_intervals: int | None = Field(
        default=None,
        ge=2,
        le=KAYENTA_MAX_POINTS,
        description="Classify the last N intervals (sliding); default: all so far (growing), "
        f"at most {KAYENTA_MAX_POINTS}.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> KayentaSpec:
        if self.marginal_score > self.pass_score:
            raise ValueError(
                f"kayenta.marginalScore ({self.marginal_score:g}) must not exceed "
                f"passScore ({self.pass_score:g})"
            )
        if self.groups is not None:
            names = [g.name for g in self.groups]
            if len(set(names)) != len(names):
                raise ValueError(f"kayenta.groups: names must be unique, got {names}")
            total = sum(g.weight or 0.0 for g in self.groups)
            if total > 100:
                raise ValueError(f"kayenta.groups: weights sum to {total:g} > 100")
        return self


class ThresholdsSpec(Model):
    """Settings of the thresholds judge (Flagger's analysis)."""

    threshold: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="Failed checks before rollback, counted over the whole analysis (Flagger's "
        "analysis.threshold); an interval with any failing metric is one failed check.",
    )
    no_data_fails: bool = Field(
        default=False,
        description="Count an interval where a metric has no canary value as a failed check "
        "(Flagger's behaviour); default: no data is no information.",
    )


class KayentaState(Model):
    """The Kayenta judge's memory of one metric: its points and classification per interval."""

    canary: list[float | None] = Field(default_factory=list, max_length=KAYENTA_MAX_POINTS)
    stable: list[float | None] = Field(default_factory=list, max_length=KAYENTA_MAX_POINTS)
    labels: str = Field(
        default="",
        max_length=KAYENTA_MAX_POINTS,
        description="Classification per interval: P(ass) H(igh) L(ow) N(odata) F (NodataFail) "
        "E(rror), lower case when critical, '-' before the first score.",
    )
    intervals: int = Field(default=0, ge=0, description="Intervals judged in total.")


class WebhookType(StrEnum):
    PRE_ROLLOUT = "pre-rollout"
    ROLLOUT = "rollout"
    CONFIRM_PROMOTION = "confirm-promotion"
    POST_ROLLOUT = "post-rollout"


class WebhookSpec(Model):
    """An HTTP gate: a 2xx answer lets the rollout go on; anything else holds it (Waiting)."""

    name: K8sName
    type: WebhookType
    url: HttpUrl
    timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="Deadline of the whole call (connect to body)."
    )
    metadata: dict[str, ShortText] = Field(default_factory=dict, max_length=32)


class Severity(StrEnum):
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


class AlertSpec(Model):
    """Send events of at least ``severity`` to an AlertProvider."""

    name: K8sName
    provider_ref: TemplateRef
    severity: Severity = Severity.INFO


class BaselineSpec(Model):
    """The baseline arm (Spinnaker/Kayenta's practice): present means on.

    canaryd creates ``<target>-baseline`` from the primary's (stable) pod template, fresh pods
    at the canary's replica count, labelled ``app: <target>-baseline``; routes it the canary's
    weight (a three-way split primary / baseline / canary summing to 100; above 50% canary the
    baseline gets what the canary leaves, ``min(w, 100 - w)``); and removes it on promotion,
    rollback and deletion. Its metrics are read with the canary's and the primary's in the same
    batched queries. Needs ``spec.service`` (canaryd owns the Services it routes to)."""


class RolloutSpec(Model):
    target_ref: TargetRef
    service: ServiceSpec | None = None
    virtual_service_ref: VirtualServiceRef | None = None
    router: RouterKind | None = Field(
        default=None,
        description="istio (VirtualService) or gateway-api (HTTPRoute); default: gateway-api "
        "when httpRouteRef is set, else istio.",
    )
    http_route_ref: HTTPRouteRef | None = None
    ab_test: ABTestSpec | None = Field(
        default=None,
        description="A/B testing: matching requests to the canary for N judged intervals "
        "(replaces the weight steps; needs spec.service).",
    )
    mirror: MirrorSpec | None = Field(
        default=None,
        description="Mirror a share of requests to the canary before it takes live traffic "
        "(needs spec.service and reporter destination).",
    )
    session_affinity: SessionAffinitySpec | None = Field(
        default=None,
        description="A cookie keeps a user routed to the canary on the canary (weight steps; "
        "needs spec.service).",
    )
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    progress_deadline_seconds: int = Field(default=600, ge=1, le=86400)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    webhooks: list[WebhookSpec] = Field(default_factory=list, max_length=32)
    alerts: list[AlertSpec] = Field(default_factory=list, max_length=16)
    paused: bool = False
    baseline: BaselineSpec | None = Field(
        default=None,
        description="Baseline arm: <target>-baseline, the stable version deployed fresh beside "
        "the canary at its size and weight (present means on; needs spec.service).",
    )

    @model_validator(mode="after")
    def _one_traffic_mode(self) -> RolloutSpec:
        modes = [self.service, self.virtual_service_ref, self.http_route_ref]
        if sum(m is not None for m in modes) != 1:
            raise ValueError(
                "set exactly one of spec.service, spec.virtualServiceRef and spec.httpRouteRef"
            )
        router = self.router_kind
        if router == RouterKind.ISTIO and self.http_route_ref is not None:
            raise ValueError("spec.httpRouteRef needs spec.router gateway-api")
        if router == RouterKind.GATEWAY_API:
            if self.virtual_service_ref is not None:
                raise ValueError("spec.virtualServiceRef needs spec.router istio")
            if self.service is not None and self.service.gateways:
                raise ValueError(
                    "spec.service.gateways is Istio's; with spec.router gateway-api use "
                    "spec.service.parentRefs"
                )
        elif self.service is not None and self.service.parent_refs:
            raise ValueError("spec.service.parentRefs needs spec.router gateway-api")
        elif self.service is not None and self.service.route_kind is not None:
            raise ValueError("spec.service.routeKind needs spec.router gateway-api")
        if self.baseline is not None and self.service is None:
            # A baseline needs a Service selecting its pods; canaryd creates Services only in
            # the host-level / generated mode (a user's VirtualService or HTTPRoute names the
            # user's own Services, and there is no third host to route to).
            raise ValueError(
                "spec.baseline needs spec.service (with spec.virtualServiceRef or "
                "spec.httpRouteRef there is no baseline Service to route to)"
            )
        _unique([w.name for w in self.webhooks], "webhook names")
        _unique([a.name for a in self.alerts], "alert names")
        self._traffic_features()
        return self

    def _traffic_features(self) -> None:
        """A/B and mirroring: generated routes only, one at a time, mirroring measured where
        mirrored requests are seen (see docs/traffic.md)."""
        features = (
            ("abTest", self.ab_test),
            ("mirror", self.mirror),
            ("sessionAffinity", self.session_affinity),
        )
        for field, value in features:
            if value is not None and self.service is None:
                raise ValueError(
                    f"spec.{field} needs spec.service (routes canaryd generates); it is not "
                    "supported with spec.virtualServiceRef or spec.httpRouteRef"
                )
        if self.ab_test is not None and self.mirror is not None:
            raise ValueError("set at most one of spec.abTest and spec.mirror")
        grpc = self.service is not None and self.service.route_kind == "GRPCRoute"
        for field, value in features:
            if grpc and value is not None:
                raise ValueError(
                    f"spec.{field} is not supported with spec.service.routeKind GRPCRoute "
                    "(canaryd splits a GRPCRoute by backendRef weights only)"
                )
        if self.ab_test is not None and self.session_affinity is not None:
            raise ValueError(
                "spec.sessionAffinity works with the weight steps, not with spec.abTest (whose "
                "matches already keep a user on one version)"
            )
        if self.baseline is not None:
            for field, value in features:
                if value is not None:
                    # The baseline takes the canary's weight in the weighted split; with A/B
                    # matches, mirrored copies or sticky users its traffic would not be the
                    # canary's (same requests, same share), so the comparison would not hold.
                    raise ValueError(
                        f"spec.baseline is not supported with spec.{field} (a baseline arm "
                        "mirrors the canary's weighted share of the traffic)"
                    )
        if self.mirror is not None and self.analysis.reporter != "destination":
            raise ValueError(
                f"spec.mirror needs spec.analysis.reporter destination (got "
                f"{self.analysis.reporter!r}): only the canary's own sidecar reports mirrored "
                "requests; the source sidecar and a waypoint do not"
            )

    def steps(self) -> list[int]:
        """The canary weight of each step: ``[100]`` (of the matching requests) for an A/B
        test, the schedule's weights otherwise, after a step at 0% when mirroring."""
        weights = [100] if self.ab_test is not None else self.schedule.weights()
        return [0, *weights] if self.mirror is not None else weights

    def step_intervals(self, step: int) -> int:
        """Judged intervals needed at ``step`` before it may advance."""
        if self.mirror is not None and step == 0:
            return self.mirror.iterations
        if self.ab_test is not None:
            return self.ab_test.iterations
        return self.schedule.intervals_per_step

    def mirror_percent(self, step: int) -> int:
        """Percent of requests mirrored to the canary at ``step`` (0: none)."""
        return self.mirror.percent if self.mirror is not None and step == 0 else 0

    @property
    def router_kind(self) -> RouterKind:
        """The router in effect (``spec.router``, or inferred from the traffic mode)."""
        if self.router is not None:
            return self.router
        return RouterKind.GATEWAY_API if self.http_route_ref is not None else RouterKind.ISTIO


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
    """Counts of one arm (canary, stable or baseline) over one interval."""

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
    baseline: ArmCounts | None = Field(
        default=None,
        description="The baseline arm (spec.baseline): the stable version deployed fresh beside "
        "the canary, at the canary's size and weight. Absent when there is none.",
    )


RECENT_INTERVALS = 10
"""Intervals a judge with a ``state`` keeps in ``MetricEvidence.history`` (for display)."""


class JudgeState(Model):
    """One judge's sufficient statistics for one metric: fixed size, its whole memory."""

    kind: str = Field(
        min_length=1, description="The judge and layout that wrote it, e.g. 'counts/2'."
    )
    values: list[float] = Field(
        default_factory=list,
        description="The numbers, in its layout, as a list (read when 'packed' is absent: "
        "statuses of earlier versions, and judges with a few numbers).",
    )
    packed: str | None = Field(
        default=None,
        description="The numbers, in its layout, as base64 of little-endian IEEE 754 doubles "
        "(8 bytes each, bit-exact); takes precedence over 'values'.",
    )

    @classmethod
    def of(cls, kind: str, numbers: Sequence[float]) -> JudgeState:
        """A state holding ``numbers`` packed: a latency state's thousand numbers take about
        half the bytes of a JSON list (11 KB instead of 20), in every status write, its
        answer and its watch echo, and parse as one string instead of a thousand numbers."""
        raw = struct.pack(f"<{len(numbers)}d", *numbers)
        packed = base64.b64encode(raw).decode("ascii")
        return cls.model_construct(kind=kind, values=[], packed=packed)

    def numbers(self) -> list[float]:
        """The numbers, from ``packed`` when present; ``ValueError`` when it does not decode
        (not base64, or not a whole number of doubles). Their meaning is the judge's to check."""
        if self.packed is None:
            return list(self.values)
        try:
            raw = base64.b64decode(self.packed, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"state.packed is not base64: {exc}") from exc
        if len(raw) % 8:
            raise ValueError(f"state.packed holds {len(raw)} bytes, not a whole number of doubles")
        return list(struct.unpack(f"<{len(raw) // 8}d", raw))


class BaselineNoise(Model):
    """The baseline arm's A/A estimate (baseline vs primary: the same version), fixed size.

    What the judge tempers the canary's evidence by: the noise of the arms' log ratio and how
    long it lasts, measured live on the same traffic instead of assumed."""

    kappa: float = Field(
        ge=0,
        description="Estimated variance of the arms' log-ratio noise (0 = counts are Poisson; "
        "0.18 = per-arm sigma 0.3) at blockSeconds.",
    )
    block_seconds: float = Field(
        ge=0, description="Estimated correlation length of that noise (seconds)."
    )
    blocks: float = Field(default=0, ge=0, description="Completed A/A blocks at that length.")
    shift: float | None = Field(
        default=None,
        description="Relative difference baseline vs primary (a systematic one is fresh pods "
        "against old ones, which the judge then tolerates as noise).",
    )
    baseline_requests: float = Field(default=0, ge=0)
    baseline_value: float | None = Field(
        default=None, description="The baseline's value (error rate in %, or p99 in ms)."
    )
    bound_ms: float | None = Field(
        default=None, description="Latency: the bucket bound whose A/A noise is shown."
    )


class MetricEvidence(Model):
    """Per metric: the judge's latest verdict and the numbers behind it. Fixed size for judges
    with a ``state``; each number has one meaning whatever the judge."""

    name: str
    outcome: Outcome
    reason: str = ""
    e_value: float | None = Field(
        default=None, description="Sequential: evidence that the canary is worse (vs 1/alpha)."
    )
    e_value_no_worse: float | None = Field(
        default=None,
        description="Sequential: evidence that the canary is no worse than the pass margin.",
    )
    p_value: float | None = Field(
        default=None, description="Anytime-valid (sequential) or Mann-Whitney (kayenta) p-value."
    )
    failed_checks: int | None = Field(
        default=None,
        ge=0,
        description="Thresholds (Flagger): failed checks of the analysis so far (same in every "
        "metric).",
    )
    u_statistic: float | None = Field(
        default=None, description="Kayenta: the Mann-Whitney U of canary vs stable."
    )
    effect: float | None = Field(
        default=None, description="Estimated relative change (0.5 = +50%)."
    )
    effect_low: float | None = Field(
        default=None, description="Lower end of the effect's interval (sequential: anytime)."
    )
    effect_high: float | None = Field(default=None, description="Upper end of that interval.")
    canary_value: float | None = None
    stable_value: float | None = None
    canary_requests: float = 0
    stable_requests: float = 0
    intervals: int = Field(
        default=0, ge=0, description="Intervals with data seen for this metric (warm-up included)."
    )
    compared_with: str | None = Field(
        default=None,
        description="With a baseline arm: the arm the canary was compared with in the last "
        "interval ('primary', or 'baseline' when the primary served nothing). Absent without "
        "a baseline (the canary is compared with stable, the primary).",
    )
    baseline_noise: BaselineNoise | None = Field(
        default=None,
        description="With a baseline arm: the A/A noise estimate (baseline vs primary) that "
        "tempers the canary's evidence.",
    )
    state: JudgeState | None = Field(
        default=None, description="The judge's sufficient statistics (its memory), fixed size."
    )
    kayenta: KayentaState | None = Field(
        default=None, description="Kayenta judge's memory (points and codes, fixed maximum size)."
    )
    history: list[IntervalRecord] = Field(
        default_factory=list,
        description=(
            "Per-interval counts: all of them for judges without a state (their memory), the "
            "last few (for display) for judges with one."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _older_versions(cls, data: Any) -> Any:
        # Statuses written before the evidence fields were split carry `statistic`, whose
        # meaning depended on the judge; the judge recomputes what it needs from `history`.
        if isinstance(data, dict) and "statistic" in data:
            data = {k: v for k, v in data.items() if k != "statistic"}
        return data


class AnalysisStatus(Model):
    outcome: Outcome = Outcome.INCONCLUSIVE
    metrics: list[MetricEvidence] = Field(default_factory=list)
    intervals: int = Field(default=0, description="Intervals judged in this rollout.")
    no_data_intervals: int = Field(default=0, description="Consecutive intervals with no data.")
    error_intervals: int = Field(default=0, description="Consecutive intervals with errors.")
    step_intervals: int = Field(default=0, description="Intervals judged at the current step.")
    step_requests: float = Field(default=0, description="Canary requests seen at the current step.")
    last_analysis_time: datetime | None = None


# ---- outbox and metrics outage (tick stream) ------------------------------------------------


class PendingNotice(Model):
    """A notice decided but not yet known to be delivered (the outbox: recorded in the status
    first, sent after the status write, removed once delivered; a restart re-sends it)."""

    key: str
    kind: str
    severity: Severity
    title: str
    message: str
    revision: str = ""
    image: str = ""
    weight: int = 0
    phase: str = ""
    duration_seconds: float | None = None
    with_evidence: bool = Field(
        default=False, description="Send with the status's analysis.metrics as evidence."
    )


class OutageKind(StrEnum):
    METRICS_ERROR = "MetricsError"
    """Prometheus failed or timed out (or the judge could not compute)."""
    CANARY_UNSEEN = "CanaryUnseen"
    """The stable arm had requests, the canary (with traffic) had none: its series are missing."""


class MetricsOutage(Model):
    """The canary cannot be judged: its traffic is withdrawn (0%) and the step kept."""

    kind: OutageKind
    since: datetime
    message: str = ""
    weight: int = Field(default=0, description="Canary weight withdrawn (restored on resume).")


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
        default_factory=list, description="Idempotency keys of alerts already decided."
    )
    outbox: list[PendingNotice] = Field(
        default_factory=list, description="Notices decided and not yet known to be delivered."
    )
    outage: MetricsOutage | None = Field(
        default=None, description="Set while the canary cannot be judged (traffic withdrawn)."
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
    deletion_timestamp: datetime | None = None
    finalizers: list[str] = Field(default_factory=list)


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

    query: str = Field(min_length=1, max_length=16384)
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
    channel: str | None = Field(
        default=None, max_length=256, description="Channel for the bot token mode."
    )
    webhook_secret_ref: SecretKeyRef | None = None
    token_secret_ref: SecretKeyRef | None = None
    address: HttpUrl | None = Field(default=None, description="Override Slack's API base URL.")
    dashboard_url: HttpUrl | None = Field(
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
