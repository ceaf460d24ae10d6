"""Structural-schema handling of custom resources: pruning, defaulting, validation.

Order as in kube-apiserver: unknown fields are pruned (unless
``x-kubernetes-preserve-unknown-fields``), schema defaults are applied, then the object is
validated. OpenAPI v3.0 is translated to JSON Schema draft 4 (same ``exclusiveMaximum``
boolean form) with ``nullable`` and ``x-kubernetes-int-or-string`` mapped. CEL rules
(``x-kubernetes-validations``) are not evaluated.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
from dataclasses import dataclass
from typing import Any

import jsonschema

from kubeemu.validity import Check, compile_check

_ROOT_KEPT = ("apiVersion", "kind", "metadata")


@dataclass(frozen=True)
class SchemaBundle:
    """One version's ``openAPIV3Schema`` with its compiled validator."""

    raw: dict[str, Any]
    validator: Any
    valid: Check | None = None
    """A fast yes/no check with the validator's meaning (:mod:`kubeemu.validity`); None when
    the schema has references (checked by the validator alone)."""

    def prune(self, obj: dict[str, Any]) -> None:
        """Drop fields the schema does not declare, in place (root metadata kept)."""
        for key in list(obj):
            if key in _ROOT_KEPT:
                continue
            props = self.raw.get("properties") or {}
            if key in props:
                obj[key] = _prune(obj[key], props[key])
            elif not self.raw.get("x-kubernetes-preserve-unknown-fields"):
                del obj[key]

    def apply_defaults(self, obj: dict[str, Any]) -> None:
        """Fill missing fields from schema ``default`` values, in place."""
        _default(obj, self.raw, root=True)

    def errors(self, obj: dict[str, Any]) -> list[tuple[str, str, str]]:
        """Validation failures as (cause reason, field path, apiserver-style message)."""
        out: list[tuple[str, str, str]] = []
        body = {k: v for k, v in obj.items() if k != "metadata"}
        if self.valid is not None and self.valid(body):
            return out  # the validator would find nothing: its walk is only run for errors
        for err in sorted(
            self.validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path))
        ):
            cause = _render(err)
            if cause not in out:
                out.append(cause)
        return out


def _prune(value: Any, schema: dict[str, Any]) -> Any:
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    if isinstance(value, dict):
        if schema.get("x-kubernetes-embedded-resource"):
            kept = {k: value[k] for k in _ROOT_KEPT if k in value}
        else:
            kept = {}
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        for key, sub in value.items():
            if props and key in props:
                kept[key] = _prune(sub, props[key])
            elif isinstance(addl, dict):
                kept[key] = _prune(sub, addl)
            elif addl is True or preserve or key in kept:
                kept[key] = sub
        return kept
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune(v, schema["items"]) for v in value]
    return value


def _default(value: Any, schema: dict[str, Any], *, root: bool = False) -> None:
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if root and key in _ROOT_KEPT:
                continue
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                _default(value[key], sub)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for key, sub in value.items():
                if key not in (schema.get("properties") or {}):
                    _default(sub, addl)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for v in value:
            _default(v, schema["items"])


def _translate(node: Any) -> Any:
    """OpenAPI v3.0 (Kubernetes dialect) -> JSON Schema draft 4."""
    if isinstance(node, list):
        return [_translate(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, val in node.items():
        if key in ("description", "default", "example", "externalDocs", "format") or key.startswith(
            "x-kubernetes-"
        ):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: _translate(v) for k, v in val.items()}
        elif key == "nullable":
            continue
        else:
            out[key] = _translate(val)
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def re2_to_python(pattern: str) -> str:
    """An RE2 pattern as a Python one with the same meaning for the constructs CRDs use.

    kube-apiserver matches ``pattern`` with Go's ``regexp`` (RE2), where ``$`` outside a
    character class matches only at the end of the text; Python's ``$`` also matches before
    a trailing newline, which would admit ``"podinfo\\n"`` against ``^[a-z0-9]+$``. So ``$``
    becomes ``\\Z`` (Python's end of text) and RE2's ``\\z`` becomes ``\\Z`` too."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append("\\Z" if nxt == "z" and not in_class else c + nxt)
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
            # A "]" (or "^]") right after "[" is a literal member, not the class's end.
            j = i + 1
            if pattern[j : j + 1] == "^":
                j += 1
            if pattern[j : j + 1] == "]":
                out.append(pattern[i : j + 1])
                i = j + 1
                continue
        elif c == "$":
            out.append("\\Z")
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


_RE2_CACHE: dict[str, re.Pattern[str]] = {}


def _re2(pattern: str) -> re.Pattern[str]:
    compiled = _RE2_CACHE.get(pattern)
    if compiled is None:
        compiled = _RE2_CACHE[pattern] = re.compile(re2_to_python(pattern))
    return compiled


def _re2_search(pattern: str, text: str) -> bool:
    return _re2(pattern).search(text) is not None


def _pattern_keyword(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    """jsonschema's ``pattern`` keyword with RE2 semantics (see :func:`re2_to_python`)."""
    if validator.is_type(instance, "string") and not _re2_search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(jsonschema.Draft4Validator, {"pattern": _pattern_keyword})

_CACHE: dict[str, SchemaBundle] = {}
_CACHE_LOCK = threading.Lock()


def compile_schema(raw: dict[str, Any]) -> SchemaBundle:
    """Compile (cached by content: Istio's big schemas are compiled once per process)."""
    key = hashlib.sha1(json.dumps(raw, sort_keys=True).encode()).hexdigest()
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    translated = _translate(raw)
    props = dict(translated.get("properties") or {})
    props.pop("metadata", None)
    translated["properties"] = props
    valid = None
    if "$ref" not in json.dumps(translated):  # a node's own validator would not resolve it
        valid = compile_check(translated, node_validator=_Validator, pattern=_re2)
    bundle = SchemaBundle(raw=raw, validator=_Validator(translated), valid=valid)
    with _CACHE_LOCK:
        _CACHE[key] = bundle
    return bundle


def _path(parts: list[Any]) -> str:
    s = ""
    for p in parts:
        s += f"[{p}]" if isinstance(p, int) else (f".{p}" if s else str(p))
    return s


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _val(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return '"' + _json_type(value) + '"'
    return json.dumps(value)


def _render(err: Any) -> tuple[str, str, str]:
    parts = list(err.absolute_path)
    path = _path(parts)
    v = err.validator
    inst = err.instance
    if v == "required":
        m = re.match(r"^'(.+)' is a required property$", str(err.message))
        missing = [r for r in err.validator_value if not isinstance(inst, dict) or r not in inst]
        name = m.group(1) if m else (missing[0] if missing else None)
        field = _path([*parts, name]) if name is not None else path
        return ("FieldValueRequired", field, f"{field}: Required value")
    if v == "type":
        want = err.validator_value
        want_s = want if isinstance(want, str) else "/".join(w for w in want if w != "null")
        got = _json_type(inst)
        return (
            "FieldValueTypeInvalid",
            path,
            f'{path}: Invalid value: "{got}": {path} in body must be of type {want_s}: "{got}"',
        )
    if v == "enum":
        allowed = ", ".join(json.dumps(a) for a in err.validator_value if a is not None)
        return (
            "FieldValueNotSupported",
            path,
            f"{path}: Unsupported value: {_val(inst)}: supported values: {allowed}",
        )
    phrases = {
        "maximum": "should be less than or equal to {}",
        "minimum": "should be greater than or equal to {}",
        "maxLength": "should be at most {} chars long",
        "minLength": "should be at least {} chars long",
        "maxItems": "should have at most {} items",
        "minItems": "should have at least {} items",
        "maxProperties": "should have at most {} properties",
        "minProperties": "should have at least {} properties",
        "pattern": "should match '{}'",
        "multipleOf": "should be a multiple of {}",
    }
    if v in phrases:
        limit = err.validator_value
        if v == "maximum" and err.schema.get("exclusiveMaximum"):
            text = f"should be less than {limit}"
        elif v == "minimum" and err.schema.get("exclusiveMinimum"):
            text = f"should be greater than {limit}"
        else:
            text = phrases[v].format(limit)
        return (
            "FieldValueInvalid",
            path,
            f"{path}: Invalid value: {_val(inst)}: {path} in body {text}",
        )
    if v == "uniqueItems":
        return ("FieldValueDuplicate", path, f"{path}: Duplicate value: {_val(inst)}")
    if v == "oneOf":
        text = "must validate one and only one schema (oneOf)"
    elif v == "anyOf":
        text = "must validate at least one schema (anyOf)"
    elif v == "not":
        text = "must not validate the schema (not)"
    else:
        text = str(err.message)
    return (
        "FieldValueInvalid",
        path,
        f"{path}: Invalid value: {_val(inst)}: {path} in body {text}",
    )
