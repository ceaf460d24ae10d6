"""Generate canaryd's CustomResourceDefinitions from the pydantic models.

``python -m canaryd.api.crdgen [DIR]`` writes ``rollouts.yaml``, ``metrictemplates.yaml`` and
``alertproviders.yaml`` (default ``DIR``: ``crds/``, applied with ``kubectl apply -f crds/``) and,
with the default directory, the same three as one file ``manifests/base/cluster/crds.yaml`` for
kustomize (which refuses files outside its root, and a kustomization inside ``crds/`` would break
``kubectl apply -f crds/``). A test compares the committed files with this output, so the models
and the CRDs cannot drift apart.

The pydantic JSON schema (JSON Schema 2020-12) is turned into a Kubernetes *structural* OpenAPI
v3 schema:

* ``$ref`` s are inlined (Kubernetes does not resolve references);
* ``Optional[X]`` (``anyOf: [X, null]``) becomes plain ``X``: an absent field means None, and
  ``nullable`` would let clients send ``null`` that the models would then have to accept;
* numeric ``exclusiveMinimum: n`` becomes OpenAPI 3.0's ``minimum: n, exclusiveMinimum: true``;
* single-value ``Literal`` s (``const``) become one-value enums;
* ``default: null``, ``title``, ``examples`` and ``additionalProperties: false`` are dropped
  (Kubernetes prunes unknown fields instead of rejecting them, and forbids the boolean form).

Cross-field rules of the model validators are added where OpenAPI can state them without types
(``oneOf``/``anyOf`` of ``required``): exactly one traffic mode, ``templateRef`` for template
metrics, exactly one Slack credential, ``service`` for ``baseline``. Rules OpenAPI cannot
state (strictly increasing ``stepWeights``, a valid IPv6 literal in a URL) are enforced by the
model; the controller reports them as condition ``Ready=False`` with reason ``InvalidSpec``.
Some are also given to real API servers: as CEL rules (``x-kubernetes-validations``):
``startWeight <= maxWeight``, ``interval`` between 100ms and 24h, ``thresholdRange``
``min <= max``, ``primaryHost != canaryHost``; and as ``x-kubernetes-list-type: map`` keyed by
``name`` (no two metrics, webhooks or alerts of one name). The API emulator evaluates neither,
so there the model is what refuses them.

Patterns are read by kube-apiserver with Go's RE2, where ``$`` is the end of the text; Python's
``$`` also matches before a final newline. :data:`SchemaValidator` (used by ``canaryd lint`` and
the tests) reads them the Go way.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pydantic import BaseModel

from canaryd.api.models import (
    GROUP,
    VERSION,
    AlertProviderSpec,
    AnalysisSpec,
    MetricSpec,
    MetricTemplateSpec,
    RolloutSpec,
    RolloutStatus,
    ScheduleSpec,
    ThresholdRange,
    VirtualServiceRef,
)

# Keys of the pydantic schema that carry no meaning for Kubernetes (or that it forbids).
_DROPPED_KEYS = frozenset({"title", "examples", "$defs"})

# Cross-field rules of the model validators that OpenAPI can express with value validations
# only (structural schemas forbid types inside oneOf/anyOf/not). Keyed by model class name.
_CROSS_FIELD: dict[str, dict[str, Any]] = {
    RolloutSpec.__name__: {
        "oneOf": [
            {"required": ["service"]},
            {"required": ["virtualServiceRef"]},
            {"required": ["httpRouteRef"]},
        ],
        # spec.baseline needs spec.service (canaryd routes to the baseline Service it owns).
        "anyOf": [{"not": {"required": ["baseline"]}}, {"required": ["service"]}],
    },
    MetricSpec.__name__: {
        "anyOf": [
            {"properties": {"kind": {"enum": ["errorRate", "latency"]}}},
            {"required": ["templateRef"]},
        ],
    },
    AlertProviderSpec.__name__: {
        "oneOf": [{"required": ["webhookSecretRef"]}, {"required": ["tokenSecretRef"]}],
        "anyOf": [{"not": {"required": ["tokenSecretRef"]}}, {"required": ["channel"]}],
    },
    ScheduleSpec.__name__: {
        "x-kubernetes-validations": [
            {
                "rule": "self.startWeight <= self.maxWeight",
                "message": "startWeight must not exceed maxWeight",
            },
            {
                "rule": "duration(self.interval) >= duration('100ms') && "
                "duration(self.interval) <= duration('24h')",
                "message": "interval must be between 100ms and 24h",
            },
        ],
    },
    ThresholdRange.__name__: {
        "x-kubernetes-validations": [
            {
                "rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
                "message": "min must not exceed max",
            }
        ],
    },
    VirtualServiceRef.__name__: {
        "x-kubernetes-validations": [
            {
                "rule": "self.primaryHost != self.canaryHost",
                "message": "primaryHost and canaryHost must differ",
            }
        ],
    },
}

# Lists of named items: kube-apiserver refuses two items with one name (``listType: map``).
_LIST_MAPS: dict[str, tuple[str, ...]] = {
    AnalysisSpec.__name__: ("metrics",),
    RolloutSpec.__name__: ("webhooks", "alerts"),
}
_LIST_MAP = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}


class SchemaError(ValueError):
    """The pydantic schema uses a construct with no structural OpenAPI equivalent."""


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Inline a ``$ref`` (keeping sibling keys such as ``default``); return the node and the
    name of the referenced definition ('' when there was none)."""
    if "$ref" not in node:
        return dict(node), ""
    name = str(node["$ref"]).rsplit("/", 1)[-1]
    merged = dict(defs[name])
    merged.update({k: v for k, v in node.items() if k != "$ref"})
    return merged, name


def _drop_null(node: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, {type: null}]`` -> ``X`` merged with the outer keys."""
    options = node.get("anyOf")
    if options is None:
        return node
    kept = [o for o in options if o.get("type") != "null"]
    if len(kept) != 1:
        raise SchemaError(f"union of several types cannot be structural: {options}")
    merged = {k: v for k, v in node.items() if k != "anyOf"}
    merged.update(kept[0])
    if merged.get("default", 0) is None:
        del merged["default"]
    return merged


def structural(
    node: Mapping[str, Any], defs: Mapping[str, Any], path: str = "", *, model: str = ""
) -> dict[str, Any]:
    """Convert one pydantic JSON-schema node (and its children) to a structural schema.

    ``model`` names the model class of a root node (nested ones are known by their ``$ref``);
    it selects the cross-field rules added to the node."""
    resolved, name = _resolve(node, defs)
    name = name or model
    resolved = _drop_null(resolved)
    if "$ref" in resolved:  # Optional[Model]: the kept option was itself a reference
        return structural(resolved, defs, path)
    out: dict[str, Any] = {}
    for key, value in resolved.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "additionalProperties":
            if value is False:
                continue  # Kubernetes prunes unknown fields; the boolean form is forbidden
            out[key] = structural(value, defs, f"{path}.*")
        elif key == "properties":
            out[key] = {p: structural(s, defs, f"{path}.{p}") for p, s in value.items()}
            for prop in _LIST_MAPS.get(name, ()):
                out[key][prop] = _ordered({**out[key][prop], **copy.deepcopy(_LIST_MAP)})
        elif key == "items":
            out[key] = structural(value, defs, f"{path}[]")
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "description":
            out[key] = " ".join(str(value).split())  # docstrings: one line, no indentation
        elif key == "const":
            out["enum"] = [value]
            out.setdefault("type", "string")
        elif key in ("anyOf", "oneOf", "allOf"):
            raise SchemaError(f"{path or '<root>'}: {key} with types is not structural")
        else:
            out[key] = copy.deepcopy(value)
    if "type" not in out:
        raise SchemaError(f"{path or '<root>'}: no type in {dict(resolved)}")
    out.update(copy.deepcopy(_CROSS_FIELD.get(name, {})))
    return _ordered(out)


_KEY_ORDER = ("description", "type", "format", "enum", "default", "minimum", "exclusiveMinimum")


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    """Stable, readable key order: description and type first, then the rest sorted."""
    head = [k for k in _KEY_ORDER if k in node]
    tail = sorted(k for k in node if k not in _KEY_ORDER)
    return {k: node[k] for k in (*head, *tail)}


def go_pattern(pattern: str) -> str:
    """``pattern`` rewritten so Python's ``re`` reads it as kube-apiserver (Go RE2) does: an
    unescaped ``$`` outside a character class means end of text (``\\Z``), not "end of text or
    before a final newline" (which let ``http://x/\\n`` through a URL pattern)."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]" or out[-1] in ("[", "[^")
        elif ch == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "^":
                out.append("[^")
                i += 2
                continue
        elif ch == "$":
            ch = r"\Z"
        out.append(ch)
        i += 1
    return "".join(out)


def _go_pattern_check(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if isinstance(instance, str) and not re.search(go_pattern(pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


SchemaValidator = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"pattern": _go_pattern_check}
)
"""JSON Schema draft 4 (OpenAPI 3.0's boolean ``exclusiveMinimum``) with ``pattern`` read with
Go's semantics: what ``canaryd lint`` and the tests validate CRD schemas with."""


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural schema of one pydantic model (wire names, validation mode)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}), path=model.__name__, model=model.__name__)


def _object_schema(spec: type[BaseModel], status: type[BaseModel] | None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": model_schema(spec),
    }
    if status is not None:
        properties["status"] = model_schema(status)
    return {"type": "object", "required": ["spec"], "properties": properties}


def crd(
    *,
    kind: str,
    plural: str,
    short_names: list[str],
    spec: type[BaseModel],
    status: type[BaseModel] | None = None,
    printer_columns: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One apiextensions.k8s.io/v1 CustomResourceDefinition (namespaced, one version)."""
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": _object_schema(spec, status)},
    }
    if status is not None:
        version["subresources"] = {"status": {}}
    if printer_columns:
        version["additionalPrinterColumns"] = printer_columns
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["canaryd"],
            },
            "scope": "Namespaced",
            "versions": [version],
        },
    }


ROLLOUT_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight"},
    {"name": "Step", "type": "integer", "jsonPath": ".status.currentStep"},
    {"name": "Verdict", "type": "string", "jsonPath": ".status.verdict"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD object, for every canaryd resource."""
    return {
        "rollouts.yaml": crd(
            kind="Rollout",
            plural="rollouts",
            short_names=["cdro"],
            spec=RolloutSpec,
            status=RolloutStatus,
            printer_columns=ROLLOUT_COLUMNS,
        ),
        "metrictemplates.yaml": crd(
            kind="MetricTemplate",
            plural="metrictemplates",
            short_names=["mtpl"],
            spec=MetricTemplateSpec,
        ),
        "alertproviders.yaml": crd(
            kind="AlertProvider",
            plural="alertproviders",
            short_names=["alertp"],
            spec=AlertProviderSpec,
        ),
    }


HEADER = "# Generated by `python -m canaryd.api.crdgen` from canaryd/api/models.py. Do not edit.\n"


def render(obj: Mapping[str, Any]) -> str:
    """The YAML text written for one CRD (deterministic)."""
    body = yaml.safe_dump(dict(obj), sort_keys=False, width=100, allow_unicode=True)
    return HEADER + body


def write_all(directory: Path) -> list[Path]:
    """Write every CRD into ``directory``; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, obj in all_crds().items():
        path = directory / filename
        path.write_text(render(obj), encoding="utf-8")
        written.append(path)
    return written


BUNDLE = Path("manifests/base/cluster/crds.yaml")
"""The kustomize copy of every CRD, relative to the repository root."""


def render_bundle() -> str:
    """All CRDs as one multi-document YAML file (the kustomize copy)."""
    return "---\n".join(render(obj) for obj in all_crds().values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write canaryd's CRDs from the pydantic models.")
    parser.add_argument("directory", nargs="?", default="crds", type=Path)
    args = parser.parse_args(argv)
    for path in write_all(args.directory):
        print(path)
    if args.directory == Path("crds"):
        BUNDLE.write_text(render_bundle(), encoding="utf-8")
        print(BUNDLE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
