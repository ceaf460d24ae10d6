"""The fast validity check (kubeemu.validity) answers exactly as jsonschema does.

The reference is jsonschema's own Draft 4 validator (with the emulator's RE2 ``pattern``), run
on objects generated from every CRD schema the emulator serves (canaryd's, Istio's, the Gateway
API's): values that follow the schema, with random faults put in (wrong types, numbers and
lengths past their bounds, strings outside their pattern or enum, missing required fields,
undeclared fields where none are allowed). Seeds are fixed.
"""

from __future__ import annotations

import glob
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeemu.schema import compile_schema

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = [
    (Path(path).name, version["name"], version["schema"]["openAPIV3Schema"])
    for path in sorted(
        glob.glob(str(ROOT / "crds" / "*.yaml"))
        + glob.glob(str(ROOT / "kubeemu" / "istio_crds" / "*.yaml"))
        + glob.glob(str(ROOT / "kubeemu" / "gateway_api_crds" / "*.yaml"))
    )
    for doc in yaml.safe_load_all(Path(path).read_text())
    if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
    for version in doc["spec"]["versions"]
    if (version.get("schema") or {}).get("openAPIV3Schema")
]

_WRONG = [None, True, 0, -1, 1.5, 10**6, "", "x" * 300, "UPPER case!", [], [1], {}, {"a": 1}]


def _value(schema: Any, rnd: random.Random, fault: float, depth: int = 0) -> Any:
    """A value for ``schema`` (translated form), faulty with probability ``fault`` per node."""
    if not isinstance(schema, dict):
        return None
    if rnd.random() < fault:
        return rnd.choice(_WRONG)
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema and "type" not in schema and "properties" not in schema:
            return _value(rnd.choice(schema[combinator]), rnd, fault, depth + 1)
    kind = schema.get("type")
    kind = rnd.choice(kind) if isinstance(kind, list) else kind
    if "enum" in schema:
        return rnd.choice(schema["enum"])
    if kind == "object" or "properties" in schema:
        out: dict[str, Any] = {}
        props = schema.get("properties") or {}
        for name, sub in props.items():
            wanted = name in (schema.get("required") or []) or (depth < 6 and rnd.random() < 0.5)
            if wanted and rnd.random() >= fault / 2:  # now and then a required one goes missing
                out[name] = _value(sub, rnd, fault, depth + 1)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict) and rnd.random() < 0.5:
            out[f"k{rnd.randrange(9)}"] = _value(addl, rnd, fault, depth + 1)
        if rnd.random() < fault:
            out["undeclared"] = 1
        return out
    if kind == "array":
        items = schema.get("items") or {}
        return [
            _value(items, rnd, fault, depth + 1)
            for _ in range(rnd.randrange(0 if depth > 6 else 4))
        ]
    if kind == "string":
        low, high = schema.get("minLength", 1), schema.get("maxLength", 12)
        size = max(rnd.randint(low, max(low, min(high, low + 12))), 1)
        text = "a" + "".join(rnd.choice("abc1") for _ in range(size - 1))  # a DNS-label-like name
        return text if rnd.random() < 0.9 else rnd.choice(["a-", "1.0", "http://x.test/", "500ms"])
    if kind in ("integer", "number"):
        low = schema.get("minimum", -5)
        high = schema.get("maximum", low + 100)
        value = rnd.randint(int(low) - 1, int(high) + 1) if low <= high else int(low)
        return float(value) + 0.5 if kind == "number" and rnd.random() < 0.5 else value
    if kind == "boolean":
        return rnd.random() < 0.5
    return rnd.choice(_WRONG)


@pytest.mark.parametrize(
    ("crd", "version", "raw"), SCHEMAS, ids=[f"{c}:{v}" for c, v, _ in SCHEMAS]
)
def test_fast_check_agrees_with_jsonschema(crd: str, version: str, raw: dict[str, Any]) -> None:
    bundle = compile_schema(raw)
    assert bundle.valid is not None
    translated = bundle.validator.schema
    rnd = random.Random(f"{crd}:{version}")
    answers = {True: 0, False: 0}
    for i in range(300):
        body = _value(translated, rnd, fault=0.0 if i % 3 == 0 else 0.02)
        expected = bundle.validator.is_valid(body)
        assert bundle.valid(body) == expected, (crd, version, body)
        answers[expected] += 1
    assert answers[False] > 0  # the faults were seen by the reference


def _rollout() -> dict[str, Any]:
    """A Rollout as the scale benchmark's controller leaves it: a spec and a status with a
    judge state of a few hundred numbers and an interval history."""
    arm = {"requests": 1600.0, "errors": 8.0, "latencyBuckets": {"100": 1500.0, "+Inf": 1600.0}}
    evidence = {
        "name": "error-rate",
        "outcome": "Inconclusive",
        "reason": "error-rate: canary 0.5% vs stable 0.5%",
        "eValue": 0.56,
        "pValue": 1.0,
        "canaryRequests": 1600.0,
        "stableRequests": 14400.0,
        "intervals": 2,
        "state": {"kind": "counts/2", "values": [i / 7 - 10 for i in range(300)]},
        "history": [{"weight": 10, "canary": arm, "stable": arm} for _ in range(5)],
    }
    return {
        "apiVersion": "canaryd.io/v1alpha1",
        "kind": "Rollout",
        "spec": {
            "targetRef": {"name": "podinfo"},
            "service": {"port": 8080},
            "schedule": {"interval": "1m", "stepWeights": [10, 50], "intervalsPerStep": 1000},
            "progressDeadlineSeconds": 3600,
        },
        "status": {
            "phase": "Progressing",
            "canaryWeight": 10,
            "weightHistory": [10],
            "analysis": {"outcome": "Inconclusive", "metrics": [evidence], "intervals": 2},
            "conditions": [],
        },
    }


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))] or [path]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))] or [path]
    return [path]


def test_real_rollouts_with_one_fault_each() -> None:
    """A real Rollout is valid for both; with one value replaced by a wrong one, both give the
    same answer, and both answers come up often (the comparison has teeth)."""
    raw = next(r for c, _, r in SCHEMAS if c == "rollouts.yaml")
    bundle = compile_schema(raw)
    assert bundle.valid is not None
    good = _rollout()
    assert bundle.valid(good) and bundle.validator.is_valid(good)
    rnd = random.Random(11)
    leaves = _leaves(good)
    answers = {True: 0, False: 0}
    for _ in range(400):
        body = _rollout()
        *parents, last = rnd.choice(leaves)
        node = body
        for part in parents:
            node = node[part]
        node[last] = rnd.choice(_WRONG)
        expected = bundle.validator.is_valid(body)
        assert bundle.valid(body) == expected, (parents, last, node[last])
        answers[expected] += 1
    assert answers[True] > 40 and answers[False] > 40, answers


def test_draft4_type_rules() -> None:
    """The type rules the fast check must share with Draft 4 (1.0 is no integer, True is no
    number, bounds and lengths ignore values of other types)."""
    bundle = compile_schema(
        {
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "n": {"type": "integer", "minimum": 0, "maximum": 3},
                        "x": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
                        "s": {"minLength": 2, "pattern": "^[a-z]+$"},
                        "e": {"type": "string", "enum": ["a", "b"]},
                    },
                }
            },
        }
    )
    assert bundle.valid is not None
    cases = [
        {"n": 1},
        {"n": 1.0},
        {"n": True},
        {"n": 4},
        {"x": 0},
        {"x": 0.001},
        {"x": False},
        {"s": 5},
        {"s": "ab"},
        {"s": "a"},
        {"s": "ab\n"},
        {"e": "c"},
        {"e": "a"},
    ]
    for spec in cases:
        body = {"spec": spec}
        assert bundle.valid(body) == bundle.validator.is_valid(body), spec
    assert [bundle.valid({"spec": c}) for c in cases] == [
        True, False, False, False, False, True, False, True, True, False, False, False, True,
    ]  # fmt: skip
