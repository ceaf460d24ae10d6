"""The :class:`Emulator`: a Kubernetes API server on 127.0.0.1 for tests, demos and kubectl."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import config
from kubernetes.client import ApiClient

from kubeemu.crdfiles import GATEWAY_API_CRDS, ISTIO_CRDS, load_crds
from kubeemu.faults import AuditRecord, Faults
from kubeemu.gc import GarbageCollector
from kubeemu.pods import DEFAULT_READY_AFTER, PodSimulator
from kubeemu.registry import Registry
from kubeemu.server import EmulatorServer, ServerState
from kubeemu.store import Store

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class Emulator:
    """A Kubernetes API server emulator serving real HTTP.

    Assumptions: one process, state in memory, no authentication or authorization (every
    request is allowed; the audit log records what RBAC would need). Istio's CRDs are
    installed at start unless ``install_istio=False``, and the Gateway API's (HTTPRoute, GRPCRoute,
    Gateway, GatewayClass, ReferenceGrant, v1.6.1) unless ``install_gateway_api=False`` (by
    default it follows ``install_istio``: ``install_istio=False`` alone means no built-in CRDs);
    their objects are validated against the CRDs' schemas. ``crd_paths`` adds CRD files or
    directories. Namespaces default, kube-system, kube-public and kube-node-lease exist.

    Timing, as kube-apiserver by default (tests shorten it): ``bookmark_interval`` (a watch
    bookmark about once a minute) and ``bookmark_before_timeout`` (one more that long before a
    watch's timeout); ``history_seconds`` (watch history compacted after 5 minutes; also at
    most ``history_size`` events); ``fresh_wait`` (a request for a resourceVersion not yet
    reached waits 3 s, then 504); ``pod_ready_seconds`` (new pods Ready after 0.2 s unless
    told otherwise through :meth:`PodSimulator.set_behaviour`).
    """

    def __init__(
        self,
        crd_paths: Iterable[str | os.PathLike[str]] = (),
        install_istio: bool = True,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        install_gateway_api: bool | None = None,
        bookmark_interval: float = 60.0,
        bookmark_before_timeout: float = 2.0,
        history_size: int = 100_000,
        history_seconds: float = 300.0,
        fresh_wait: float = 3.0,
        pod_ready_seconds: float = DEFAULT_READY_AFTER,
    ) -> None:
        self.registry = Registry()
        self.store = Store(
            self.registry, history_size=history_size, history_seconds=history_seconds
        )
        self.faults = Faults()
        self.gc = GarbageCollector(self.store)
        self.pods = PodSimulator(self.store, self.registry, ready_after=pod_ready_seconds)
        self._state = ServerState(
            store=self.store,
            registry=self.registry,
            faults=self.faults,
            bookmark_interval=bookmark_interval,
            bookmark_before_timeout=bookmark_before_timeout,
            fresh_wait=fresh_wait,
        )
        self.faults._dropper = self._state.drop_watches
        self._host, self._port = host, port
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: str | None = None
        builtin = [ISTIO_CRDS] if install_istio else []
        if install_istio if install_gateway_api is None else install_gateway_api:
            builtin.append(GATEWAY_API_CRDS)
        self._bootstrap(builtin, list(crd_paths))

    def _bootstrap(self, istio: list[Path], extra: list[str | os.PathLike[str]]) -> None:
        ns_rt = self.registry.lookup("", "v1", "namespaces")
        crd_rt = self.registry.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        assert ns_rt is not None and crd_rt is not None
        for ns in DEFAULT_NAMESPACES:
            self.store.create(ns_rt, "", {"metadata": {"name": ns}})
        for crd in load_crds([*istio, *extra]):
            self.store.create(crd_rt, "", crd, present=False)

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> Emulator:
        """Bind and serve in background threads (idempotent)."""
        if self._server is not None:
            return self
        self._server = EmulatorServer((self._host, self._port), self._state)
        self._state.address = f"{self._host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="kubeemu-http",
            daemon=True,
        )
        self._thread.start()
        self.pods.start()
        self.gc.start()
        return self

    def stop(self) -> None:
        """Stop serving, close watches, remove temporary files (idempotent)."""
        if self._server is not None:
            self._state.stopping = True
            self._state.drop_watches()
            self._server.shutdown()
            self._server.server_close()
            self._state.close_connections()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None
        self.pods.stop()
        self.gc.stop()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return f"http://{self._host}:{self.port}"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return int(self._server.server_address[1])

    # ---- clients -----------------------------------------------------------------------
    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kubeemu", "cluster": {"server": self.url}}],
            "users": [{"name": "kubeemu", "user": {"token": "kubeemu"}}],
            "contexts": [
                {
                    "name": "kubeemu",
                    "context": {"cluster": "kubeemu", "user": "kubeemu", "namespace": namespace},
                }
            ],
            "current-context": "kubeemu",
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | os.PathLike[str]) -> Path:
        """Write a kubeconfig whose current context points here; returns its path."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        # Written atomically: a process polling for the file never reads half of it.
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(yaml.safe_dump(self.kubeconfig(), sort_keys=False))
        tmp.replace(out)
        return out

    def api_client(self) -> ApiClient:
        """A fresh ``kubernetes.client.ApiClient`` built from this emulator's kubeconfig."""
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="kubeemu-")
        path = self.write_kubeconfig(Path(self._tmpdir) / "kubeconfig")
        api: ApiClient = config.new_client_from_config(config_file=str(path))  # type: ignore[no-untyped-call]
        return api

    # ---- test controls -----------------------------------------------------------------
    def compact(self, keep: int = 0) -> int:
        """Drop watch history (all but the last ``keep`` events); older watches get 410."""
        return self.store.compact(keep)

    @property
    def audit(self) -> list[AuditRecord]:
        """Every request served so far, in order (a copy)."""
        with self._state.audit_lock:
            return list(self._state.audit)

    def clear_audit(self) -> None:
        with self._state.audit_lock:
            self._state.audit.clear()

    def rbac_rules(self) -> list[dict[str, list[str]]]:
        """RBAC PolicyRules covering every successful resource request in the audit log
        (one rule per API group and resource, verbs sorted)."""
        verbs: dict[tuple[str, str], set[str]] = {}
        for rec in self.audit:
            if not rec.resource or (rec.code >= 400 and rec.code not in {404, 409}):
                continue
            res = rec.resource + (f"/{rec.subresource}" if rec.subresource else "")
            verbs.setdefault((rec.api_group, res), set()).add(rec.verb)
        return [
            {"apiGroups": [g], "resources": [r], "verbs": sorted(v)}
            for (g, r), v in sorted(verbs.items())
        ]
