"""REST paths of the resources canaryd touches (one place, so typos cannot hide)."""

from __future__ import annotations

from canaryd.api.models import GROUP, VERSION


def custom(namespace: str, plural: str, name: str = "") -> str:
    """``/apis/canaryd.io/v1alpha1/namespaces/<ns>/<plural>[/<name>]``."""
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
    return f"{base}/{name}" if name else base


def custom_all(plural: str) -> str:
    """All namespaces: ``/apis/canaryd.io/v1alpha1/<plural>``."""
    return f"/apis/{GROUP}/{VERSION}/{plural}"


def deployment(namespace: str, name: str = "") -> str:
    base = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    return f"{base}/{name}" if name else base


def deployment_all() -> str:
    """All namespaces: ``/apis/apps/v1/deployments``."""
    return "/apis/apps/v1/deployments"


def pods(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/pods"


def secret(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/secrets/{name}"


def lease(namespace: str, name: str = "") -> str:
    base = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    return f"{base}/{name}" if name else base
