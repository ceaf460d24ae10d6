"""Kubernetes adapter: typed access to Rollouts, Deployments, Secrets, canaryd's other custom
resources and Leases, through the official ``kubernetes`` client (raw JSON transport, typed
models at the boundary). The transport (client, retries, error taxonomy) is
:mod:`canaryd.adapters.transport`, shared by every adapter; its names are re-exported here."""

from canaryd.adapters.kube.leases import Leases
from canaryd.adapters.kube.parse import InvalidSpecError, parse_rollout
from canaryd.adapters.kube.resources import Resources
from canaryd.adapters.kube.workloads import (
    REVISION_ANNOTATION,
    Workloads,
    baseline_name,
    primary_name,
)
from canaryd.adapters.transport import (
    ConflictError,
    GoneError,
    KubeApi,
    NotFoundError,
    RetryPolicy,
    load_api_client,
)

__all__ = [
    "REVISION_ANNOTATION",
    "ConflictError",
    "GoneError",
    "InvalidSpecError",
    "KubeApi",
    "Leases",
    "NotFoundError",
    "Resources",
    "RetryPolicy",
    "Workloads",
    "baseline_name",
    "load_api_client",
    "parse_rollout",
    "primary_name",
]
