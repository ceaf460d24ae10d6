"""load_api_client resolves the environment's proxy once, when the client is built: the
connection pool uses that proxy (or none, as NO_PROXY says), and requests do not resolve it
again (the config loader's token refresh hook re-assigns ``host`` before every request, which
made the client scan the environment each time)."""

from __future__ import annotations

from pathlib import Path

import pytest
import urllib3

from canaryd.adapters.kube import KubeApi, load_api_client
from tests.controller.conftest import Cluster

PROXY = "http://proxy.test:3128"


def _clear_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_the_environment_proxy_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clear_proxies(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", PROXY)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://api.test:6443'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    api_client = load_api_client(kubeconfig=str(kubeconfig))
    assert api_client.configuration.proxy == PROXY
    assert isinstance(api_client.rest_client.pool_manager, urllib3.ProxyManager)
    monkeypatch.setenv("NO_PROXY", "api.test")
    bypassing = load_api_client(kubeconfig=str(kubeconfig))
    assert not isinstance(bypassing.rest_client.pool_manager, urllib3.ProxyManager)


def test_requests_do_not_resolve_the_proxy_again(
    monkeypatch: pytest.MonkeyPatch, cluster: Cluster
) -> None:
    _clear_proxies(monkeypatch)
    api_client = load_api_client(kubeconfig=str(cluster.kubeconfig))
    api = KubeApi(api_client)
    assert api_client.configuration.proxy is None
    api.get("/api/v1/namespaces/default")
    # A proxy named after the client was built: the pool never uses it, and the configuration
    # does not pretend it does (before, the next request's refresh hook resolved it).
    monkeypatch.setenv("HTTP_PROXY", PROXY)
    assert api.get("/api/v1/namespaces/default")["metadata"]["name"] == "default"
    assert api_client.configuration.proxy is None
    assert api_client.configuration.api_key["BearerToken"] == "Bearer kubeemu"  # the hook still ran
    api.close()
