"""Which resources the emulator serves: built-in kinds plus those registered by CRDs.

A :class:`ResourceType` is one (group, version, plural). Objects are stored per
(group, plural), so every served version of a CRD shares one store (conversion strategy
``None``: only ``apiVersion`` differs between versions, as with most real CRDs).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

from kubeemu.schema import SchemaBundle, compile_schema

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUB_VERBS = ("get", "patch", "update")


@dataclass(frozen=True)
class ScaleSpec:
    """Where the ``/scale`` subresource reads and writes, as dotted JSON paths."""

    spec_replicas_path: str = ".spec.replicas"
    status_replicas_path: str = ".status.replicas"
    label_selector_path: str | None = None


@dataclass(frozen=True)
class ResourceType:
    """One served (group, version, resource)."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    scale: ScaleSpec | None = None
    printer_columns: tuple[dict[str, Any], ...] = ()
    schema: SchemaBundle | None = None
    builtin: bool = True
    #: Whether objects of this kind have a spec whose changes bump ``generation``.
    tracks_generation: bool = True
    list_kind: str = ""
    field_labels: tuple[str, ...] = ()
    #: kube-apiserver's ``RESTUpdateStrategy.AllowUnconditionalUpdate``: whether a PUT
    #: without ``metadata.resourceVersion`` is accepted (true for most built-in kinds, false
    #: for Leases and for every custom resource).
    unconditional_update: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def store_key(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"


def _b(group: str, plural: str, kind: str, **kw: Any) -> ResourceType:
    version = kw.pop("version", "v1")
    singular = kw.pop("singular", kind.lower())
    return ResourceType(
        group=group, version=version, plural=plural, singular=singular, kind=kind, **kw
    )


BUILTINS: tuple[ResourceType, ...] = (
    _b(
        "",
        "namespaces",
        "Namespace",
        namespaced=False,
        short_names=("ns",),
        status_subresource=True,
        tracks_generation=False,
        field_labels=("status.phase",),
    ),
    _b(
        "",
        "pods",
        "Pod",
        namespaced=True,
        short_names=("po",),
        categories=("all",),
        status_subresource=True,
        tracks_generation=False,
        field_labels=("status.phase", "spec.nodeName", "spec.restartPolicy"),
    ),
    _b(
        "",
        "services",
        "Service",
        namespaced=True,
        short_names=("svc",),
        categories=("all",),
        status_subresource=True,
        tracks_generation=False,
    ),
    _b("", "secrets", "Secret", namespaced=True, tracks_generation=False, field_labels=("type",)),
    _b(
        "", "configmaps", "ConfigMap", namespaced=True, short_names=("cm",), tracks_generation=False
    ),
    _b(
        "",
        "serviceaccounts",
        "ServiceAccount",
        namespaced=True,
        short_names=("sa",),
        tracks_generation=False,
    ),
    _b(
        "",
        "events",
        "Event",
        namespaced=True,
        short_names=("ev",),
        tracks_generation=False,
        field_labels=(
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ),
    ),
    _b(
        "apps",
        "deployments",
        "Deployment",
        namespaced=True,
        short_names=("deploy",),
        categories=("all",),
        status_subresource=True,
        scale=ScaleSpec(),
    ),
    _b(
        "apps",
        "replicasets",
        "ReplicaSet",
        namespaced=True,
        short_names=("rs",),
        categories=("all",),
        status_subresource=True,
        scale=ScaleSpec(),
    ),
    _b(
        "events.k8s.io",
        "events",
        "Event",
        namespaced=True,
        short_names=("ev",),
        tracks_generation=False,
        field_labels=(
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "reason",
            "reportingController",
            "type",
        ),
    ),
    _b(
        "coordination.k8s.io",
        "leases",
        "Lease",
        namespaced=True,
        tracks_generation=False,
        unconditional_update=False,
    ),
    _b(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short_names=("crd", "crds"),
        status_subresource=True,
        singular="customresourcedefinition",
    ),
)

_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key (ascending = preferred first) of Kubernetes-style version names:
    GA before beta before alpha, higher numbers first, non-conforming names last."""
    m = _VERSION_RE.match(version)
    if not m:
        return (3, 0, 0, version)
    major = int(m.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor, version)


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The served resource types a CustomResourceDefinition declares."""
    spec = crd["spec"]
    names = spec["names"]
    out = []
    for ver in spec.get("versions", []):
        if not ver.get("served", True):
            continue
        sub = ver.get("subresources") or {}
        scale = None
        if "scale" in sub:
            s = sub["scale"] or {}
            scale = ScaleSpec(
                spec_replicas_path=s.get("specReplicasPath", ".spec.replicas"),
                status_replicas_path=s.get("statusReplicasPath", ".status.replicas"),
                label_selector_path=s.get("labelSelectorPath"),
            )
        schema_doc = (ver.get("schema") or {}).get("openAPIV3Schema")
        out.append(
            ResourceType(
                group=spec["group"],
                version=ver["name"],
                plural=names["plural"],
                singular=names.get("singular") or names["kind"].lower(),
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status_subresource="status" in sub,
                scale=scale,
                printer_columns=tuple(ver.get("additionalPrinterColumns") or ()),
                schema=compile_schema(schema_doc) if schema_doc else None,
                builtin=False,
                list_kind=names.get("listKind", ""),
                unconditional_update=False,
            )
        )
    return out


@dataclass
class Registry:
    """Thread-safe map of served resource types, updated when CRDs come and go."""

    _types: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for rt in BUILTINS:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self._lock:
            return self._types.get((group, version, plural))

    def add_crd(self, crd: dict[str, Any]) -> None:
        """Serve the versions ``crd`` declares, in place of those it declared before."""
        new = types_from_crd(crd)
        with self._lock:
            self._drop_custom(crd)
            for rt in new:
                self._types[(rt.group, rt.version, rt.plural)] = rt

    def remove_crd(self, crd: dict[str, Any]) -> None:
        with self._lock:
            self._drop_custom(crd)

    def _drop_custom(self, crd: dict[str, Any]) -> None:
        """Forget every served version of ``crd``'s resource (the caller holds the lock)."""
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        for key in [k for k in self._types if (k[0], k[2]) == (group, plural)]:
            if not self._types[key].builtin:
                del self._types[key]

    def all(self) -> list[ResourceType]:
        with self._lock:
            return list(self._types.values())

    def groups(self) -> dict[str, list[str]]:
        """group -> served versions, preferred first (core group excluded)."""
        out: dict[str, set[str]] = {}
        for rt in self.all():
            if rt.group:
                out.setdefault(rt.group, set()).add(rt.version)
        return {g: sorted(v, key=version_priority) for g, v in sorted(out.items())}

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return sorted(
            (rt for rt in self.all() if rt.group == group and rt.version == version),
            key=lambda rt: rt.plural,
        )

    def by_store_key(self, group: str, plural: str) -> ResourceType | None:
        """The preferred served version of (group, plural)."""
        cands = [rt for rt in self.all() if rt.group == group and rt.plural == plural]
        cands.sort(key=lambda rt: version_priority(rt.version))
        return cands[0] if cands else None
