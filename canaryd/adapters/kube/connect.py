"""Build an ``ApiClient`` from a kubeconfig file or the in-cluster service account."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes import config as _config

config: Any = _config  # kubeconfig loading is untyped in the client


def load_api_client(
    *, kubeconfig: str | None = None, context: str | None = None, in_cluster: bool = False
) -> client.ApiClient:
    """An ``ApiClient`` for the cluster.

    ``in_cluster`` uses the mounted service account; otherwise ``kubeconfig`` (or the default
    ``~/.kube/config`` / ``$KUBECONFIG`` when None) with ``context``. Each call returns a new
    client with its own connection pool, so several controllers in one process (tests) never
    share configuration by accident.
    """
    configuration = client.Configuration()
    if in_cluster:
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    # Enough connections for the scheduler's worker threads plus the watches.
    configuration.connection_pool_maxsize = 32
    return client.ApiClient(configuration)
