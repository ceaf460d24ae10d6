"""A fast yes/no check of an object against a translated (draft 4) CRD schema.

jsonschema's validator walks every value through ``descend``/``evolve`` (a new validator object
per node): a Rollout status with a few hundred numbers in its judge state cost ~7 ms per status
write, most of the emulator's CPU at scale. kube-apiserver validates in Go, where the same walk
is nearly free, so that cost is the emulator's own, not part of what it emulates.

:func:`compile_check` turns a schema into nested closures that answer only "valid?", with
exactly jsonschema's Draft 4 meaning for the keywords CRD schemas use (types as Draft 4's type
checker has them: ``1.0`` is not an ``integer``, ``True`` not a ``number``; bounds, lengths and
patterns apply only to values of their type). Every other keyword, and ``enum`` with anything
but strings, is checked by a jsonschema validator compiled for that node, so no schema is ever
read differently. The caller asks jsonschema for the errors only when this says "invalid": the
messages are jsonschema's, as before.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

_HANDLED = frozenset(
    {
        "type",
        "properties",
        "additionalProperties",
        "required",
        "items",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "pattern",
        "enum",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
    }
)


def _is_number(value: Any) -> bool:
    if value.__class__ is float or value.__class__ is int:
        return True
    return not isinstance(value, bool) and isinstance(value, numbers.Number)


def _is_integer(value: Any) -> bool:
    # Draft 4: an int that is not a bool (a float with an integral value is not an integer).
    return isinstance(value, int) and not isinstance(value, bool)


_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": _is_number,
    "integer": _is_integer,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def compile_check(
    schema: Any,
    *,
    node_validator: Callable[[Any], Any],
    pattern: Callable[[str], re.Pattern[str]],
) -> Check:
    """The yes/no check of ``schema``. ``node_validator(node)`` builds the jsonschema validator
    used for a node with a keyword this module does not handle; ``pattern(p)`` compiles a
    ``pattern`` as the emulator's validator reads it (RE2 semantics)."""
    if not isinstance(schema, dict):
        return node_validator(schema).is_valid  # type: ignore[no-any-return]
    unhandled = set(schema) - _HANDLED
    enum = schema.get("enum")
    required = schema.get("required")
    if (
        unhandled
        or (enum is not None and not all(isinstance(e, str) or e is None for e in enum))
        or (required is not None and not isinstance(required, list))
    ):
        return node_validator(schema).is_valid  # type: ignore[no-any-return]

    def sub(node: Any) -> Check:
        return compile_check(node, node_validator=node_validator, pattern=pattern)

    checks: list[Check] = []
    kind = schema.get("type")
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        if not all(isinstance(k, str) and k in _TYPES for k in kinds):
            return node_validator(schema).is_valid  # type: ignore[no-any-return]
        tests = [_TYPES[k] for k in kinds]
        if len(tests) == 1:
            checks.append(tests[0])
        else:
            checks.append(lambda v: any(t(v) for t in tests))
    if enum is not None:
        allowed = frozenset(e for e in enum if e is not None)
        none_ok = None in enum
        checks.append(lambda v: (v is None and none_ok) or (isinstance(v, str) and v in allowed))
    checks.extend(_object_checks(schema, sub))
    checks.extend(_array_checks(schema, sub))
    checks.extend(_scalar_checks(schema, pattern))
    checks.extend(_combinators(schema, sub))
    if not checks:
        return lambda v: True
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(c(v) for c in checks)


def _object_checks(schema: dict[str, Any], sub: Callable[[Any], Check]) -> list[Check]:
    out: list[Check] = []
    props = schema.get("properties")
    addl = schema.get("additionalProperties")
    required = schema.get("required")
    if props is not None or addl is not None:
        declared = {name: sub(node) for name, node in (props or {}).items()}
        extra: Check | None = sub(addl) if isinstance(addl, dict) else None
        forbid = addl is False

        def fields(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for key, value in v.items():
                check = declared.get(key)
                if check is not None:
                    if not check(value):
                        return False
                elif forbid or (extra is not None and not extra(value)):
                    return False
            return True

        out.append(fields)
    if required:
        names = tuple(required)
        out.append(lambda v: not isinstance(v, dict) or all(n in v for n in names))
    return out + _size_checks(schema, dict, "minProperties", "maxProperties")


def _array_checks(schema: dict[str, Any], sub: Callable[[Any], Check]) -> list[Check]:
    out: list[Check] = []
    items = schema.get("items")
    if isinstance(items, dict):
        each = sub(items)
        out.append(lambda v: not isinstance(v, list) or all(each(x) for x in v))
    elif isinstance(items, list):
        positional = [sub(node) for node in items]
        out.append(
            lambda v: (
                not isinstance(v, list) or all(c(x) for c, x in zip(positional, v, strict=False))
            )
        )
    return out + _size_checks(schema, list, "minItems", "maxItems")


def _size_checks(
    schema: dict[str, Any], kind: type[dict[Any, Any] | list[Any] | str], least: str, most: str
) -> list[Check]:
    """``minProperties``/``maxProperties``, ``minItems``/``maxItems``, ``minLength``/
    ``maxLength``: they bound the size of a value of their own kind and pass any other."""
    out: list[Check] = []
    low, high = schema.get(least), schema.get(most)
    if low is not None:
        out.append(lambda v: not isinstance(v, kind) or len(v) >= low)
    if high is not None:
        out.append(lambda v: not isinstance(v, kind) or len(v) <= high)
    return out


def _scalar_checks(
    schema: dict[str, Any], pattern: Callable[[str], re.Pattern[str]]
) -> list[Check]:
    out = _size_checks(schema, str, "minLength", "maxLength")
    if "pattern" in schema:
        compiled = pattern(schema["pattern"])
        out.append(lambda v: not isinstance(v, str) or compiled.search(v) is not None)
    if "minimum" in schema:
        low = schema["minimum"]
        if schema.get("exclusiveMinimum", False):
            out.append(lambda v: not _is_number(v) or v > low)
        else:
            out.append(lambda v: not _is_number(v) or v >= low)
    if "maximum" in schema:
        high = schema["maximum"]
        if schema.get("exclusiveMaximum", False):
            out.append(lambda v: not _is_number(v) or v < high)
        else:
            out.append(lambda v: not _is_number(v) or v <= high)
    return out


def _combinators(schema: dict[str, Any], sub: Callable[[Any], Check]) -> list[Check]:
    out: list[Check] = []
    if "allOf" in schema:
        every = [sub(node) for node in schema["allOf"]]
        out.append(lambda v: all(c(v) for c in every))
    if "anyOf" in schema:
        some = [sub(node) for node in schema["anyOf"]]
        out.append(lambda v: any(c(v) for c in some))
    if "oneOf" in schema:
        one = [sub(node) for node in schema["oneOf"]]
        out.append(lambda v: sum(1 for c in one if c(v)) == 1)
    if "not" in schema:
        negated = sub(schema["not"])
        out.append(lambda v: not negated(v))
    return out
