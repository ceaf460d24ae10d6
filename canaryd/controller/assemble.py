"""Build a complete controller from options: the one assembly used by ``canaryd run``, the
demo and the end-to-end tests (which swap only the metrics provider, through ``metrics_for``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubernetes.client import ApiClient

from canaryd.adapters.cache import DEPLOYMENTS, SERVICES, Cache, Kind
from canaryd.adapters.events import KubeEventRecorder
from canaryd.adapters.gateway.router import HTTP_ROUTES
from canaryd.adapters.istio.router import VIRTUAL_SERVICES
from canaryd.adapters.kube import KubeApi, Resources, RetryPolicy, Workloads
from canaryd.adapters.kube.resources import ALERT_PROVIDER_KIND, METRIC_TEMPLATE_KIND, ROLLOUT_KIND
from canaryd.adapters.prometheus import PrometheusSettings, ProviderCache
from canaryd.adapters.slack import RetryPolicy as SlackRetryPolicy
from canaryd.adapters.slack import SlackNotifier
from canaryd.adapters.transport import RateLimit
from canaryd.controller.alerting import ProviderRef
from canaryd.controller.metrics_source import prometheus_metrics_for
from canaryd.controller.observe import MetricsFor
from canaryd.controller.outbox import Outbox
from canaryd.controller.reconciler import Ports, Reconciler
from canaryd.controller.routing import RouterByKind
from canaryd.controller.runtime import Controller, ControllerConfig
from canaryd.controller.telemetry import Telemetry
from canaryd.core.ports import AlertTarget, TrafficRouter
from canaryd.core.types import Notice


@dataclass(frozen=True, slots=True)
class Options:
    """Everything ``canaryd run`` can be told (see ``canaryd run --help``)."""

    controller: ControllerConfig = field(default_factory=ControllerConfig)
    prometheus: PrometheusSettings = field(default_factory=PrometheusSettings)
    default_alert: ProviderRef | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    api_timeout: tuple[float, float] = (3.0, 15.0)
    rate_limit: RateLimit = field(default_factory=RateLimit)
    """Client-side QPS and burst of API requests (watches and the Lease exempt)."""
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    cache: bool = True
    """Ticks read informer stores (list + watch) instead of GETs; False reads with a GET each
    time (the behaviour before the cache, kept to compare and for debugging)."""


CACHED_KINDS: tuple[Kind, ...] = (
    ROLLOUT_KIND,
    DEPLOYMENTS,
    SERVICES,
    VIRTUAL_SERVICES,
    HTTP_ROUTES,
    METRIC_TEMPLATE_KIND,
    ALERT_PROVIDER_KIND,
)
"""What the controller keeps in informer stores: everything a tick reads, but Pods (listed
only while a Deployment rolls out, by label) and Secrets (read only to deliver a notice; a
watch on Secrets would need cluster-wide read access to them)."""


@dataclass
class Assembled:
    """A wired controller and the parts a caller may need to stop or inspect."""

    api: KubeApi
    controller: Controller
    reconciler: Reconciler
    telemetry: Telemetry
    notifier: SlackNotifier
    providers: ProviderCache
    cache: Cache | None = None

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        """Hand over cleanly: stop ticking first (a scheduled tick could otherwise queue a
        notice after the outbox was committed), then, still holding the Lease, deliver what is
        queued and record the deliveries in the statuses (so the next leader does not send
        them again), then release the Lease and close connections."""
        self.controller.stop_ticking()
        if self.controller.is_leader():
            # A commit tick may itself decide a transition and queue a notice: repeat a few
            # times until nothing delivered is left unrecorded.
            for _ in range(3):
                self.notifier.flush(5.0)
                if not self.reconciler.outbox.rollouts_with_deliveries():
                    break
                self.reconciler.commit_outbox()
            self.notifier.flush(5.0)
        self.controller.stop()
        self.notifier.close()
        self.providers.close()
        self.api.close()


def assemble(
    api_client: ApiClient,
    options: Options,
    *,
    metrics_for: MetricsFor | None = None,
    router: TrafficRouter | None = None,
    telemetry: Telemetry | None = None,
) -> Assembled:
    """Wire adapters, reconciler and runtime. Starts nothing but the Slack worker thread."""
    api = KubeApi(
        api_client, retry=options.retry, timeout=options.api_timeout, rate_limit=options.rate_limit
    )
    cache = Cache(api, CACHED_KINDS, options.controller.namespaces) if options.cache else None
    resources = Resources(api, cache)
    telemetry = telemetry or Telemetry()
    outboxes: list[Outbox] = []  # the outbox needs the notifier, the notifier its callbacks

    def sent(target: AlertTarget, notice: Notice) -> None:
        telemetry.notification_sent(target, notice)
        for outbox in outboxes:
            outbox.sent(target, notice)

    def failed(target: AlertTarget, notice: Notice, error: Exception) -> None:
        telemetry.notification_failed(target, notice, error)
        for outbox in outboxes:
            outbox.failed(target, notice, error)

    slack_retry = SlackRetryPolicy()
    notifier = SlackNotifier(on_failure=failed, on_sent=sent, retry=slack_retry)
    # A notice given up on is re-queued by a tick at most one notifier backoff after the last.
    outboxes.append(Outbox(notifier, retry_cap_seconds=slack_retry.max_backoff_seconds))
    providers = ProviderCache(options.prometheus)
    ports = Ports(
        resources=resources,
        workloads=Workloads(api, cache),
        router=router or RouterByKind.build(api, cache=cache),
        metrics_for=metrics_for or prometheus_metrics_for(providers, resources),
        notifier=notifier,
        events=KubeEventRecorder(api),
    )
    reconciler = Reconciler(
        ports,
        telemetry=telemetry,
        default_alert=options.default_alert,
        backoff_base=options.backoff_base,
        backoff_cap=options.backoff_cap,
        outbox=outboxes[0],
    )
    controller = Controller(api, reconciler, options.controller, cache=cache)
    controller.on_leader_change = telemetry.set_leader
    controller.on_forget = telemetry.forget
    return Assembled(api, controller, reconciler, telemetry, notifier, providers, cache)
