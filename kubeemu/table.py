"""Server-side printing: the ``meta.k8s.io/v1`` Table kubectl asks for with
``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``.

Custom resources get a Name column plus the CRD's ``additionalPrinterColumns`` (or Age when
none), rendered as kube-apiserver's CRD table convertor does (``date`` cells as a human
duration such as ``5m3s``; ``string`` cells from lists/maps as JSON). A few built-in kinds get
their familiar columns; the others Name and Age.
"""

from __future__ import annotations

import calendar
import json
import re
import time
from typing import Any

from kubeemu.registry import ResourceType

Obj = dict[str, Any]

_NAME_COL = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "priority": 0,
    "description": "Name must be unique within a namespace. Is required when creating "
    "resources, although some resources may allow a client to request the generation of an "
    "appropriate name automatically. Name is primarily intended for creation idempotence and "
    "configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
}
_AGE = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
    "description": "CreationTimestamp is a timestamp representing the server time when "
    "this object was created.",
}

_TOKEN = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]|\['([^']*)'\]|\[\*\]")


def jsonpath(obj: Any, path: str) -> Any:
    """A simple JSONPath (``.a.b[0]['c.d']``, ``[*]``) as printer columns use; None if absent."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    cur: list[Any] = [obj]
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            return None
        pos = m.end()
        nxt: list[Any] = []
        for c in cur:
            if m.group(0) == "[*]":
                if isinstance(c, list):
                    nxt.extend(c)
            elif m.group(2) is not None:
                i = int(m.group(2))
                if isinstance(c, list) and i < len(c):
                    nxt.append(c[i])
            else:
                key = m.group(1) if m.group(1) is not None else m.group(3)
                if isinstance(c, dict) and key in c:
                    nxt.append(c[key])
        cur = nxt
    if not cur:
        return None
    return cur[0] if len(cur) == 1 else cur


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y{dy}d" if dy else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _age(ts: Any) -> str:
    if not isinstance(ts, str):
        return "<unknown>"
    try:
        t = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return "<invalid>"
    return human_duration(time.time() - t)


def _cell(col_type: str, value: Any) -> Any:
    if value is None:
        return None
    if col_type == "date":
        return _age(value)
    if col_type == "integer":
        return (
            int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        )
    if col_type == "number":
        return (
            float(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool)
            else None
        )
    if col_type == "boolean":
        return value if isinstance(value, bool) else None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _builtin_columns(rt: ResourceType) -> list[tuple[str, str, Any]]:
    """(name, type, getter) columns for a few built-in kinds."""

    def ready_pods(o: Obj) -> str:
        cs = (o.get("status") or {}).get("containerStatuses") or []
        n = len((o.get("spec") or {}).get("containers") or [])
        return f"{sum(1 for c in cs if c.get('ready'))}/{n}"

    def pod_status(o: Obj) -> str:
        st = o.get("status") or {}
        for c in st.get("containerStatuses") or []:
            waiting = (c.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason"):
                return str(waiting["reason"])
        if (o.get("metadata") or {}).get("deletionTimestamp"):
            return "Terminating"
        return str(st.get("phase", "Unknown"))

    def restarts(o: Obj) -> int:
        cs = (o.get("status") or {}).get("containerStatuses") or []
        return sum(int(c.get("restartCount", 0)) for c in cs)

    def ports(o: Obj) -> str:
        ps = (o.get("spec") or {}).get("ports") or []
        return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ps) or "<none>"

    k = (rt.group, rt.kind)
    if k == ("apps", "Deployment"):
        return [
            (
                "Ready",
                "string",
                lambda o: (
                    f"{(o.get('status') or {}).get('readyReplicas', 0)}/"
                    f"{(o.get('spec') or {}).get('replicas', 0)}"
                ),
            ),
            ("Up-to-date", "integer", lambda o: (o.get("status") or {}).get("updatedReplicas", 0)),
            ("Available", "integer", lambda o: (o.get("status") or {}).get("availableReplicas", 0)),
        ]
    if k == ("", "Pod"):
        return [
            ("Ready", "string", ready_pods),
            ("Status", "string", pod_status),
            ("Restarts", "string", lambda o: str(restarts(o))),
        ]
    if k == ("", "Service"):
        return [
            ("Type", "string", lambda o: (o.get("spec") or {}).get("type", "ClusterIP")),
            ("Cluster-IP", "string", lambda o: (o.get("spec") or {}).get("clusterIP", "<none>")),
            ("External-IP", "string", lambda o: "<none>"),
            ("Port(s)", "string", ports),
        ]
    if k == ("", "Namespace"):
        return [("Status", "string", lambda o: (o.get("status") or {}).get("phase", "Active"))]
    return []


def to_table(rt: ResourceType, objs: list[Obj], list_meta: Obj, include_object: str) -> Obj:
    """A ``Table`` for ``objs`` (``include_object``: None | Metadata | Object)."""
    defs: list[Obj] = [dict(_NAME_COL)]
    getters: list[Any] = []
    if rt.builtin:
        for name, ctype, getter in _builtin_columns(rt):
            defs.append(
                {"name": name, "type": ctype, "format": "", "description": name, "priority": 0}
            )
            getters.append(getter)
        # kube-apiserver prints a CRD's creation time itself, not its age.
        cols = (
            [_AGE]
            if rt.kind != "CustomResourceDefinition"
            else [{**_AGE, "name": "Created At", "type": "string"}]
        )
    else:
        cols = list(rt.printer_columns) or [_AGE]
    for col in cols:
        defs.append(
            {
                "name": col["name"],
                "type": col.get("type", "string"),
                "format": col.get("format", ""),
                "description": col.get("description", ""),
                "priority": int(col.get("priority", 0)),
            }
        )
        path = col["jsonPath"]
        ctype = col.get("type", "string")
        getters.append(lambda o, p=path, t=ctype: _cell(t, jsonpath(o, p)))
    rows = []
    for o in objs:
        cells: list[Any] = [o["metadata"]["name"]]
        for g in getters:
            cells.append(g(o))
        row: Obj = {"cells": cells}
        if include_object == "Object":
            row["object"] = o
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": o["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": defs,
        "rows": rows,
    }
