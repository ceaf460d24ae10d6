"""``canaryd run``: the controller process (kubeconfig or in-cluster config).

Starts the watches, the scheduler, leader election and the /metrics, /healthz, /readyz server,
then waits for SIGTERM or SIGINT and shuts down cleanly: stop ticking (running ticks finish),
release the Lease so a standby takes over at once, flush queued alerts.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from types import FrameType

from canaryd.adapters.kube import load_api_client
from canaryd.adapters.prometheus import PrometheusSettings
from canaryd.adapters.transport import RateLimit
from canaryd.api.models import Severity
from canaryd.controller.alerting import ProviderRef
from canaryd.controller.assemble import Options, assemble
from canaryd.controller.runtime import ControllerConfig
from canaryd.controller.telemetry import TelemetryServer

log = logging.getLogger("canaryd")

# The flags' defaults are the settings' own, so the two cannot drift apart.
_CONTROLLER = ControllerConfig()
_PROMETHEUS = PrometheusSettings()
_RATE = RateLimit()


def configure(parser: argparse.ArgumentParser) -> None:
    conn = parser.add_argument_group("cluster")
    conn.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    conn.add_argument("--context", help="kubeconfig context")
    conn.add_argument("--in-cluster", action="store_true", help="use the Pod's service account")
    conn.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="namespace to watch (repeatable; default: all namespaces)",
    )
    conn.add_argument(
        "--shard",
        default="",
        metavar="SELECTOR",
        help="serve only Rollouts matching this label selector, e.g. canaryd.io/shard=a "
        "(each shard elects its own leader)",
    )
    conn.add_argument(
        "--kube-api-qps",
        type=float,
        default=_RATE.qps,
        metavar="QPS",
        help="client-side limit on API requests per second, watches and the Lease exempt "
        "(0: no limit; default %(default)s)",
    )
    conn.add_argument(
        "--kube-api-burst",
        type=int,
        default=_RATE.burst,
        metavar="N",
        help="requests allowed at once above the QPS after a quiet spell (default %(default)s)",
    )
    conn.add_argument(
        "--workers",
        type=int,
        default=_CONTROLLER.workers,
        help="concurrent ticks (default %(default)s)",
    )

    prom = parser.add_argument_group("metrics backend")
    prom.add_argument(
        "--prometheus-url", default=_PROMETHEUS.address, help="global Prometheus address"
    )
    prom.add_argument(
        "--prometheus-header",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="extra header for every query, e.g. X-Scope-OrgID:team-a (repeatable)",
    )
    prom.add_argument(
        "--prometheus-timeout",
        type=float,
        default=_PROMETHEUS.timeout_seconds,
        help="seconds per query",
    )

    alerts = parser.add_argument_group("alerts")
    alerts.add_argument(
        "--alert-provider",
        metavar="NS/NAME",
        help="AlertProvider used by Rollouts that name none",
    )
    alerts.add_argument(
        "--alert-severity",
        choices=[s.value for s in Severity],
        default=Severity.INFO.value,
        help="minimum severity sent to the default provider",
    )

    le = parser.add_argument_group("leader election")
    le.add_argument(
        "--no-leader-elect",
        dest="leader_elect",
        action="store_false",
        help="act without a Lease (only with a single replica)",
    )
    le.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE", _CONTROLLER.lease_namespace),
        help="namespace of the Lease (default: $POD_NAMESPACE, else default)",
    )
    le.add_argument("--lease-name", default="", help="default: canaryd-leader[-<shard>]")
    le.add_argument("--identity", default="", help="holder identity (default: host-pid-random)")
    le.add_argument("--lease-duration", type=float, default=_CONTROLLER.lease_duration)
    le.add_argument("--renew-deadline", type=float, default=_CONTROLLER.renew_deadline)
    le.add_argument("--retry-period", type=float, default=_CONTROLLER.retry_period)

    ops = parser.add_argument_group("operations")
    ops.add_argument("--metrics-host", default="0.0.0.0", help="bind address of /metrics")
    ops.add_argument("--metrics-port", type=int, default=8080, help="0 picks a free port")
    ops.add_argument(
        "--wedged-tick-seconds",
        type=float,
        default=_CONTROLLER.wedged_tick_seconds,
        help="/healthz fails once a tick has run this long (default %(default)s)",
    )
    ops.add_argument(
        "--startup-spread-seconds",
        type=float,
        default=None,
        metavar="S",
        help="after a restart or failover, spread idle Rollouts' first ticks over S seconds "
        "(active and overdue ones go first; default: the idle resync, 60)",
    )
    ops.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def parse_headers(values: list[str]) -> tuple[tuple[str, str], ...]:
    """``["X-Scope-OrgID:team-a"]`` -> ``(("X-Scope-OrgID", "team-a"),)``."""
    out = []
    for value in values:
        name, sep, text = value.partition(":")
        if not sep or not name.strip():
            raise SystemExit(f"--prometheus-header {value!r}: use NAME:VALUE")
        out.append((name.strip(), text.strip()))
    return tuple(out)


def options_from(args: argparse.Namespace) -> Options:
    controller = ControllerConfig(
        namespaces=tuple(args.namespaces) if args.namespaces else None,
        shard=args.shard,
        leader_election=args.leader_elect,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        identity=args.identity,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
        workers=args.workers,
        wedged_tick_seconds=args.wedged_tick_seconds,
        startup_spread_seconds=args.startup_spread_seconds,
    )
    if args.startup_spread_seconds is not None and not args.startup_spread_seconds >= 0:
        raise SystemExit("--startup-spread-seconds: must be >= 0")
    default_alert = None
    if args.alert_provider:
        default_alert = ProviderRef.parse(
            args.alert_provider, severity=Severity(args.alert_severity)
        )
    try:
        rate_limit = RateLimit(qps=args.kube_api_qps, burst=args.kube_api_burst)
    except ValueError as exc:
        flag = "--kube-api-qps" if "qps" in str(exc) else "--kube-api-burst"
        raise SystemExit(f"{flag}: {exc}") from exc
    return Options(
        controller=controller,
        rate_limit=rate_limit,
        prometheus=PrometheusSettings(
            address=args.prometheus_url,
            headers=parse_headers(args.prometheus_header),
            timeout_seconds=args.prometheus_timeout,
        ),
        default_alert=default_alert,
    )


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    options = options_from(args)
    api_client = load_api_client(
        kubeconfig=args.kubeconfig, context=args.context, in_cluster=args.in_cluster
    )
    parts = assemble(api_client, options)
    server = TelemetryServer(
        parts.telemetry,
        host=args.metrics_host,
        port=args.metrics_port,
        ready=parts.controller.ready,
        healthy=parts.controller.healthy,
    ).start()
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    parts.start()
    log.info("canaryd running as %s; metrics on %s/metrics", parts.controller.identity, server.url)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        parts.stop()
        server.stop()
    log.info("canaryd stopped")
    return 0
