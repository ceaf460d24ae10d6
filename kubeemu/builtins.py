"""Defaulting and validation of built-in kinds, as far as canaryd and its tests rely on them.

Not the whole of Kubernetes' validation: names, the Deployment selector/template contract,
required containers, Service ports, Secret ``stringData``, and CRD naming.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from kubeemu.errors import bad_request
from kubeemu.registry import ResourceType
from kubeemu.selectors import selector_from_match

Cause = tuple[str, str, str]

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_LABEL_KINDS = {"Namespace", "Service"}


def name_causes(rt: ResourceType, name: str) -> list[Cause]:
    """Causes against a new object's name: a DNS label for Namespace and Service, a DNS
    subdomain for every other kind (custom ones too)."""
    if rt.kind in _DNS_LABEL_KINDS:
        if len(name) <= 63 and _LABEL.match(name):
            return []
        rule = (
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character (e.g. 'my-name',  or "
            "'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        )
    else:
        if len(name) <= 253 and _SUBDOMAIN.match(name):
            return []
        rule = (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character (e.g. "
            "'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    return [
        ("FieldValueInvalid", "metadata.name", f'metadata.name: Invalid value: "{name}": {rule}')
    ]


# ---- decoding: what Go's typed JSON decoding refuses with 400 before validation runs --------

#: Go's ``metav1.RFC3339Micro`` layout; ``MicroTime.UnmarshalJSON`` parses with exactly this
#: layout, so the six fractional digits are required.
RFC3339_MICRO = "2006-01-02T15:04:05.000000Z07:00"
_MICRO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})(Z|[+-](\d{2}):(\d{2}))"
)
#: coordination.k8s.io/v1 LeaseSpec: field -> Go type.
_LEASE_SPEC = {
    "holderIdentity": "string",
    "leaseDurationSeconds": "int32",
    "acquireTime": "MicroTime",
    "renewTime": "MicroTime",
    "leaseTransitions": "int32",
    "strategy": "string",
    "preferredHolder": "string",
}


def _go_json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def parse_micro_time(value: str) -> datetime | None:
    """``value`` parsed as Go parses a MicroTime (RFC 3339, exactly 6 fractional digits,
    ``Z`` or a numeric offset), or None."""
    m = _MICRO.fullmatch(value)
    if m is None:
        return None
    try:
        tz = UTC
        if m.group(8) != "Z":
            sign = -1 if m.group(8)[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(m.group(9)), minutes=int(m.group(10))))
        year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
        return datetime(
            year, month, day, hour, minute, second, microsecond=int(m.group(7)), tzinfo=tz
        )
    except ValueError:  # month 13, hour 24, ...
        return None


def format_micro_time(when: datetime) -> str:
    """``MicroTime.MarshalJSON``: UTC, RFC 3339 with 6 fractional digits."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decode(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Refuse (400) what kube-apiserver's typed decoder cannot decode into the kind's Go
    struct, and normalise what it re-encodes differently (MicroTime). Only Lease so far: the
    other built-in kinds canaryd writes are decoded leniently."""
    if rt.kind != "Lease":
        return
    prefix = 'Lease in version "v1" cannot be handled as a Lease: '
    spec = obj.get("spec")
    if spec is None:
        return
    if not isinstance(spec, dict):
        raise bad_request(
            f"{prefix}json: cannot unmarshal {_go_json_type(spec)} into Go struct field "
            "Lease.spec of type v1.LeaseSpec"
        )
    for field, go_type in _LEASE_SPEC.items():
        value = spec.get(field)
        if value is None:
            continue
        where = f"Go struct field LeaseSpec.spec.{field}"
        if go_type == "int32":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad_request(
                    f"{prefix}json: cannot unmarshal {_go_json_type(value)} into {where} of "
                    "type int32"
                )
            if value != int(value) or not -(2**31) <= value < 2**31:
                raise bad_request(
                    f"{prefix}json: cannot unmarshal number {value} into {where} of type int32"
                )
            spec[field] = int(value)
        elif not isinstance(value, str):
            raise bad_request(
                f"{prefix}json: cannot unmarshal {_go_json_type(value)} into {where} of type "
                + ("string" if go_type == "string" else "v1.MicroTime")
            )
        elif go_type == "MicroTime":
            parsed = parse_micro_time(value)
            if parsed is None:
                raise bad_request(
                    f'{prefix}parsing time "{value}" as "{RFC3339_MICRO}": cannot parse '
                    f'"{value}" as "{RFC3339_MICRO}"'
                )
            spec[field] = format_micro_time(parsed)


def apply_defaults(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Server-side defaults of built-in kinds (the subset controllers read back)."""
    if rt.kind == "Deployment" and rt.group == "apps":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("progressDeadlineSeconds", 600)
        spec.setdefault("revisionHistoryLimit", 10)
        strategy = spec.setdefault("strategy", {})
        if isinstance(strategy, dict):
            strategy.setdefault("type", "RollingUpdate")
            if strategy["type"] == "RollingUpdate":
                rolling = strategy.setdefault("rollingUpdate", {})
                if isinstance(rolling, dict):
                    rolling.setdefault("maxUnavailable", "25%")
                    rolling.setdefault("maxSurge", "25%")
        _pod_spec_defaults((spec.get("template") or {}).get("spec"))
    elif rt.kind == "Pod":
        _pod_spec_defaults(obj.get("spec"))
        obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif rt.kind == "Service":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
    elif rt.kind == "Secret":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.setdefault("data", {})
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
    elif rt.kind == "Namespace":
        labels = obj.setdefault("metadata", {}).setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"].get("name", "")
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")


def _pod_spec_defaults(spec: Any) -> None:
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    for c in spec.get("containers") or []:
        if isinstance(c, dict):
            image = str(c.get("image", ""))
            tag_latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
            c.setdefault("imagePullPolicy", "Always" if tag_latest else "IfNotPresent")
            for p in c.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")


def validate(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    """Validation causes of a built-in kind besides its name's (:func:`name_causes`); empty
    when valid."""
    causes: list[Cause] = []
    if rt.kind == "Deployment" and rt.group == "apps":
        causes += _deployment(obj, old)
    elif rt.kind == "Pod":
        causes += _containers("spec", obj.get("spec"))
    elif rt.kind == "Service":
        spec = obj.get("spec") or {}
        if (
            spec.get("type") != "ExternalName"
            and spec.get("clusterIP") != "None"
            and not spec.get("ports")
        ):
            causes.append(("FieldValueRequired", "spec.ports", "spec.ports: Required value"))
        for i, p in enumerate(spec.get("ports") or []):
            port = p.get("port") if isinstance(p, dict) else None
            if not isinstance(port, int) or not 1 <= port <= 65535:
                causes.append(
                    (
                        "FieldValueInvalid",
                        f"spec.ports[{i}].port",
                        f"spec.ports[{i}].port: Invalid value: {port}: must be between 1 and "
                        "65535, inclusive",
                    )
                )
    elif rt.kind == "CustomResourceDefinition":
        causes += _crd(obj, old)
    elif rt.kind == "Lease":
        causes += _lease(obj)
    return causes


def _lease(obj: dict[str, Any]) -> list[Cause]:
    """``ValidateLeaseSpec`` (pkg/apis/coordination/validation)."""
    spec = obj.get("spec") or {}
    out: list[Cause] = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        f = "spec.leaseDurationSeconds"
        out.append(
            ("FieldValueInvalid", f, f"{f}: Invalid value: {duration}: must be greater than 0")
        )
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        f = "spec.leaseTransitions"
        out.append(
            (
                "FieldValueInvalid",
                f,
                f"{f}: Invalid value: {transitions}: must be greater than or equal to 0",
            )
        )
    return out


def _containers(prefix: str, spec: Any) -> list[Cause]:
    if not isinstance(spec, dict) or not spec.get("containers"):
        f = f"{prefix}.containers"
        return [("FieldValueRequired", f, f"{f}: Required value")]
    out: list[Cause] = []
    for i, c in enumerate(spec["containers"]):
        for field in ("name", "image"):
            if not isinstance(c, dict) or not c.get(field):
                f = f"{prefix}.containers[{i}].{field}"
                out.append(("FieldValueRequired", f, f"{f}: Required value"))
    return out


def _deployment(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    out: list[Cause] = []
    selector = spec.get("selector")
    if not selector:
        out.append(("FieldValueRequired", "spec.selector", "spec.selector: Required value"))
    else:
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector_from_match(selector)(labels):
            out.append(
                (
                    "FieldValueInvalid",
                    "spec.template.metadata.labels",
                    f"spec.template.metadata.labels: Invalid value: {_labels(labels)}: `selector` "
                    "does not match template `labels`",
                )
            )
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        out.append(
            (
                "FieldValueInvalid",
                "spec.replicas",
                f"spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0",
            )
        )
    out += _containers("spec.template.spec", (spec.get("template") or {}).get("spec"))
    out += _strategy(spec.get("strategy"))
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        out.append(
            (
                "FieldValueInvalid",
                "spec.selector",
                f"spec.selector: Invalid value: {_labels(selector)}: field is immutable",
            )
        )
    return out


_PERCENT = re.compile(r"[0-9]+%")


def _int_or_percent(value: Any, f: str) -> tuple[int | None, list[Cause]]:
    """``ValidatePositiveIntOrPercent``: (value in units or percent, causes)."""
    if isinstance(value, str):
        if not _PERCENT.fullmatch(value):
            return None, [
                (
                    "FieldValueInvalid",
                    f,
                    f"{f}: Invalid value: {value}: a valid percent string must be a numeric "
                    "string followed by an ending '%' (e.g. '1%',  or '93%', regex used for "
                    "validation is '[0-9]+%')",
                )
            ]
        return int(value[:-1]), []
    if isinstance(value, bool) or not isinstance(value, int):
        return None, [
            ("FieldValueInvalid", f, f"{f}: Invalid value: {value}: must be an int or percent")
        ]
    if value < 0:
        return value, [
            (
                "FieldValueInvalid",
                f,
                f"{f}: Invalid value: {value}: must be greater than or equal to 0",
            )
        ]
    return value, []


def _strategy(strategy: Any) -> list[Cause]:
    """``ValidateDeploymentStrategy`` and ``ValidateRollingUpdateDeployment``."""
    if not isinstance(strategy, dict):
        return []
    kind = strategy.get("type")
    rolling = strategy.get("rollingUpdate")
    if kind == "Recreate":
        if rolling is not None:
            f = "spec.strategy.rollingUpdate"
            return [
                (
                    "FieldValueForbidden",
                    f,
                    f"{f}: Forbidden: may not be specified when strategy `type` is 'Recreate'",
                )
            ]
        return []
    if kind != "RollingUpdate":
        f = "spec.strategy"
        return [
            (
                "FieldValueNotSupported",
                f,
                f'{f}: Unsupported value: "{kind}": supported values: "Recreate", "RollingUpdate"',
            )
        ]
    if not isinstance(rolling, dict):
        return []
    f_unav, f_surge = (
        "spec.strategy.rollingUpdate.maxUnavailable",
        "spec.strategy.rollingUpdate.maxSurge",
    )
    unav, out = _int_or_percent(rolling.get("maxUnavailable"), f_unav)
    surge, more = _int_or_percent(rolling.get("maxSurge"), f_surge)
    out += more
    raw = rolling.get("maxUnavailable")
    if unav == 0 and surge == 0:
        out.append(
            (
                "FieldValueInvalid",
                f_unav,
                f"{f_unav}: Invalid value: {raw}: may not be 0 when `maxSurge` is 0",
            )
        )
    if isinstance(raw, str) and unav is not None and unav > 100:
        out.append(
            (
                "FieldValueInvalid",
                f_unav,
                f"{f_unav}: Invalid value: {raw}: must not be greater than 100%",
            )
        )
    return out


def _labels(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _crd(obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    out: list[Cause] = []
    for field, value in (
        ("spec.group", spec.get("group")),
        ("spec.names.plural", names.get("plural")),
        ("spec.names.kind", names.get("kind")),
    ):
        if not value:
            out.append(("FieldValueRequired", field, f"{field}: Required value"))
    if out:
        return out
    want = f"{names['plural']}.{spec['group']}"
    if obj["metadata"]["name"] != want:
        out.append(
            (
                "FieldValueInvalid",
                "metadata.name",
                f'metadata.name: Invalid value: "{obj["metadata"]["name"]}": must be '
                'spec.names.plural+"."+spec.group',
            )
        )
    versions = spec.get("versions") or []
    if not versions:
        out.append(("FieldValueRequired", "spec.versions", "spec.versions: Required value"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        out.append(
            (
                "FieldValueInvalid",
                "spec.versions",
                "spec.versions: Invalid value: []apiextensions.CustomResourceDefinitionVersion"
                "{...}: must have exactly one version marked as storage version",
            )
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        out.append(
            (
                "FieldValueNotSupported",
                "spec.scope",
                f'spec.scope: Unsupported value: "{spec.get("scope")}": supported values: '
                '"Cluster", "Namespaced"',
            )
        )
    if old is not None and (old.get("spec") or {}).get("group") != spec.get("group"):
        out.append(
            ("FieldValueInvalid", "spec.group", "spec.group: Invalid value: field is immutable")
        )
    return out


def crd_status(obj: dict[str, Any]) -> dict[str, Any]:
    """The status apiserver gives an accepted CRD (Established, NamesAccepted)."""
    spec = obj["spec"]
    names = dict(spec["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", names["kind"] + "List")
    now = obj["metadata"]["creationTimestamp"]
    return {
        "acceptedNames": names,
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": now,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": now,
            },
        ],
        "storedVersions": [v["name"] for v in spec.get("versions", []) if v.get("storage")],
    }
