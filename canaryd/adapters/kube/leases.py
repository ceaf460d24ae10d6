"""``coordination.k8s.io/v1`` Leases as plain JSON (the election logic lives in
:mod:`canaryd.controller.leader`). Writes are create (409 when it exists) and PUT guarded by
``resourceVersion`` (409 when stale), which is what makes an election safe."""

from __future__ import annotations

from canaryd.adapters.kube import paths
from canaryd.adapters.transport import JSON, KubeApi


class Leases:
    def __init__(self, api: KubeApi) -> None:
        self.api = api

    def get(self, namespace: str, name: str) -> JSON | None:
        return self.api.get_or_none(
            paths.lease(namespace, name), what=f"read Lease {namespace}/{name}"
        )

    def create(self, namespace: str, name: str, spec: JSON) -> JSON:
        body = _lease({"name": name, "namespace": namespace}, spec)
        return self.api.create(
            paths.lease(namespace), body, what=f"create Lease {namespace}/{name}"
        )

    def replace(self, lease: JSON, spec: JSON) -> JSON:
        """PUT ``spec`` with the ``resourceVersion`` of ``lease`` (409 when it changed)."""
        meta = lease["metadata"]
        body = _lease(
            {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "resourceVersion": meta["resourceVersion"],
            },
            spec,
        )
        return self.api.replace(
            paths.lease(meta["namespace"], meta["name"]),
            body,
            what=f"update Lease {meta['namespace']}/{meta['name']}",
        )


def _lease(metadata: JSON, spec: JSON) -> JSON:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": spec,
    }
