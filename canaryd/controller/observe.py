"""Gather one tick's :class:`Observations` through the adapters.

The reads every tick makes (target and primary Deployments, routing, MetricTemplates) go
through the ports to the informer stores (:mod:`canaryd.adapters.cache`): no request. Only what
the core's :class:`Plan` asked for costs I/O: metrics and webhook gates (and Pods, listed while
a Deployment rolls out).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from canaryd.adapters.kube import primary_name
from canaryd.api.models import MetricKind, MetricTemplateSpec, Rollout
from canaryd.controller.gates import call_gates
from canaryd.controller.manual import action_annotation
from canaryd.core.ports import (
    MetricsProvider,
    PermanentError,
    Resources,
    TemporaryError,
    TrafficRouter,
    Workloads,
)
from canaryd.core.types import (
    FINALIZER,
    MetricQuery,
    MetricReading,
    Observations,
    Plan,
    TrafficState,
)

log = logging.getLogger(__name__)

MetricsFor = Callable[[Rollout], MetricsProvider]
"""Picks the metrics provider of a Rollout (the global one, or one built from the Rollout's
``analysis.prometheus`` override)."""


def cross_namespace(field: str, namespace: str | None, own: str) -> str:
    """The error of a reference to another namespace (refused: item 8 of issue 9)."""
    return (
        f"{field} names namespace {namespace!r}: references resolve only in the "
        f"Rollout's namespace {own!r}"
    )


def metric_queries(
    rollout: Rollout,
    resources: Resources,
    *,
    window_seconds: float,
    now: datetime,
) -> tuple[list[MetricQuery], dict[str, MetricReading]]:
    """One query per metric of the analysis; MetricTemplates resolved here. A template that
    cannot be read yields an error reading instead of a query (the core decides what an error
    means; a missing template is never a crash)."""
    ns = rollout.metadata.namespace
    target = rollout.spec.target_ref.name
    queries: list[MetricQuery] = []
    failed: dict[str, MetricReading] = {}
    for metric in rollout.spec.analysis.metrics:
        template: MetricTemplateSpec | None = None
        if metric.kind == MetricKind.TEMPLATE and metric.template_ref is not None:
            ref = metric.template_ref
            if ref.namespace not in (None, ns):  # another team's template is not ours to use
                failed[metric.name] = MetricReading(
                    metric=metric.name, error=cross_namespace("templateRef", ref.namespace, ns)
                )
                continue
            try:
                template = resources.metric_template(ns, ref.name).spec
            except (PermanentError, TemporaryError) as exc:
                failed[metric.name] = MetricReading(metric=metric.name, error=str(exc))
                continue
        queries.append(
            MetricQuery(
                namespace=ns,
                rollout=rollout.metadata.name,
                canary_workload=target,
                primary_workload=primary_name(target),
                metric=metric,
                template=template,
                window_seconds=window_seconds,
                at=now,
                reporter=rollout.spec.analysis.reporter,
                weight=rollout.status.canary_weight,
            )
        )
    return queries, failed


def read_metrics(
    rollout: Rollout, resources: Resources, provider: MetricsProvider, *, plan: Plan, now: datetime
) -> tuple[MetricReading, ...]:
    """One reading per metric, in spec order; provider failures become error readings."""
    queries, failed = metric_queries(
        rollout, resources, window_seconds=plan.window_seconds, now=plan.end or now
    )
    got: dict[str, MetricReading] = {}
    if queries:
        try:
            answers = provider.read(queries)
        except Exception as exc:  # the port says never raises; a broken provider must not kill us
            log.exception("metrics provider raised")
            answers = [
                MetricReading(metric=q.metric.name, error=f"provider: {exc}") for q in queries
            ]
        for query, reading in zip(queries, answers, strict=False):
            got[query.metric.name] = reading
    out = []
    for metric in rollout.spec.analysis.metrics:
        found = failed.get(metric.name) or got.get(metric.name)
        out.append(found or MetricReading(metric=metric.name, error="no reading returned"))
    return tuple(out)


def observe(
    rollout: Rollout,
    plan: Plan,
    *,
    now: datetime,
    resources: Resources,
    workloads: Workloads,
    router: TrafficRouter,
    metrics_for: MetricsFor,
    delivered: frozenset[str] = frozenset(),
) -> Observations:
    """Read everything the core needs for this tick. TemporaryError from the API propagates
    (the tick is retried); a PermanentError of routing is an observation (``traffic_error``).
    A Rollout being deleted is observed without metrics or gates (finalisation needs neither)."""
    ns = rollout.metadata.namespace
    target_name = rollout.spec.target_ref.name
    meta = rollout.metadata
    deleting = meta.deletion_timestamp
    target = workloads.state(ns, target_name)
    primary = workloads.state(ns, primary_name(target_name))
    traffic: TrafficState | None = None
    traffic_error: str | None = None
    try:
        traffic = router.get_weights(rollout)
    except PermanentError as exc:
        traffic_error = str(exc)
    readings = None
    if plan.metrics and deleting is None:
        readings = read_metrics(rollout, resources, metrics_for(rollout), plan=plan, now=now)
    gates = call_gates(rollout, plan.gates) if plan.gates and deleting is None else ()
    return Observations(
        now=now,
        generation=meta.generation,
        target=target,
        primary=primary,
        traffic=traffic,
        traffic_error=traffic_error,
        readings=readings,
        gates=gates,
        action_annotation=action_annotation(rollout),
        delivered=delivered,
        has_finalizer=FINALIZER in meta.finalizers,
        deleting_since=deleting,
    )
