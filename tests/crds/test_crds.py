"""The CRDs in crds/: generated from the models, structural, and in agreement with the models.

Covers: committed YAML == generator output; Kubernetes structural-schema rules on every node;
names, short names, categories, status subresource and printer columns; example Rollouts,
MetricTemplates and AlertProviders accepted or rejected identically by the pydantic models and
by the CRD schema (validated with jsonschema's Draft 4 validator, whose keyword semantics --
boolean ``exclusiveMinimum`` -- are those of OpenAPI 3.0 used by Kubernetes).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from canaryd.adapters.kube import InvalidSpecError, parse_rollout
from canaryd.api import crdgen
from canaryd.api.errors import error_message
from canaryd.api.models import AlertProvider, MetricTemplate, Rollout

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"


def load(filename: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CRD_DIR / filename).read_text(encoding="utf-8"))
    return data


def schema_of(filename: str) -> dict[str, Any]:
    schema: dict[str, Any] = load(filename)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def schema_accepts(filename: str, obj: dict[str, Any]) -> bool:
    validator = crdgen.SchemaValidator(
        schema_of(filename), format_checker=jsonschema.FormatChecker()
    )
    return not list(validator.iter_errors(obj))


def model_accepts(model: type[BaseModel], obj: dict[str, Any]) -> bool:
    try:
        model.model_validate(obj)
    except ValidationError:
        return False
    return True


# ---- generated == committed ------------------------------------------------------------------


@pytest.mark.parametrize("filename", sorted(crdgen.all_crds()))
def test_committed_yaml_is_generator_output(filename: str) -> None:
    committed = (CRD_DIR / filename).read_text(encoding="utf-8")
    assert committed == crdgen.render(crdgen.all_crds()[filename]), (
        f"crds/{filename} is stale: run `python -m canaryd.api.crdgen`"
    )


def test_generator_writes_every_file(tmp_path: Path) -> None:
    written = crdgen.write_all(tmp_path)
    assert sorted(p.name for p in written) == [
        "alertproviders.yaml",
        "metrictemplates.yaml",
        "rollouts.yaml",
    ]
    for path in written:
        assert path.read_text(encoding="utf-8") == (CRD_DIR / path.name).read_text(encoding="utf-8")


# ---- structural schema rules -----------------------------------------------------------------

_JUNCTORS = ("anyOf", "oneOf", "allOf", "not")


def walk(
    node: dict[str, Any], path: str, *, in_junctor: bool = False
) -> Iterator[tuple[str, dict[str, Any], bool]]:
    yield path, node, in_junctor
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}", in_junctor=in_junctor)
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]", in_junctor=in_junctor)
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*", in_junctor=in_junctor)
    for junctor in _JUNCTORS:
        value = node.get(junctor)
        children = [value] if isinstance(value, dict) else (value or [])
        for i, child in enumerate(children):
            yield from walk(child, f"{path}/{junctor}[{i}]", in_junctor=True)


ALL_FILES = sorted(crdgen.all_crds())


@pytest.mark.parametrize("filename", ALL_FILES)
def test_every_node_is_structural(filename: str) -> None:
    problems = []
    nodes = list(walk(schema_of(filename), "root"))
    assert len(nodes) > 10
    for path, node, in_junctor in nodes:
        if in_junctor:
            # Structural rule: inside a junctor only value validations, never types/defaults.
            for forbidden in ("type", "description", "default", "additionalProperties", "nullable"):
                if forbidden in node:
                    problems.append(f"{path}: {forbidden} inside a junctor")
            continue
        if "type" not in node:
            problems.append(f"{path}: no type")
        if "$ref" in node:
            problems.append(f"{path}: $ref")
        if node.get("nullable"):
            problems.append(f"{path}: nullable")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties")
        if node.get("additionalProperties") is False:
            problems.append(f"{path}: additionalProperties: false")
        if "x-kubernetes-preserve-unknown-fields" in node:
            problems.append(f"{path}: preserve-unknown-fields")
        if "title" in node or "examples" in node or "const" in node:
            problems.append(f"{path}: JSON-Schema-only keyword")
        for junctor in ("anyOf", "oneOf"):
            for option in node.get(junctor, []):
                for prop in option.get("properties", {}):
                    if prop not in node.get("properties", {}):
                        problems.append(f"{path}: {junctor} names {prop} not declared outside")
        if "default" in node:
            # A default must itself validate against its node (Kubernetes checks this).
            jsonschema.Draft4Validator(node).validate(node["default"])
        if node.get("type") == "number" and node.get("exclusiveMinimum") not in (None, True):
            problems.append(f"{path}: numeric exclusiveMinimum (JSON Schema 2020 form)")
    assert problems == []


def test_crd_names_short_names_and_subresources() -> None:
    rollouts, templates, providers = (
        load("rollouts.yaml"),
        load("metrictemplates.yaml"),
        load("alertproviders.yaml"),
    )
    expected = {
        "rollouts.canaryd.io": (rollouts, "Rollout", ["cdro"]),
        "metrictemplates.canaryd.io": (templates, "MetricTemplate", ["mtpl"]),
        "alertproviders.canaryd.io": (providers, "AlertProvider", ["alertp"]),
    }
    for name, (obj, kind, short) in expected.items():
        assert obj["apiVersion"] == "apiextensions.k8s.io/v1"
        assert obj["metadata"]["name"] == name
        assert obj["spec"]["group"] == "canaryd.io"
        assert obj["spec"]["scope"] == "Namespaced"
        assert obj["spec"]["names"]["kind"] == kind
        assert obj["spec"]["names"]["shortNames"] == short
        assert obj["spec"]["names"]["categories"] == ["canaryd"]
        [version] = obj["spec"]["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert rollouts["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_rollout_printer_columns_point_at_real_fields() -> None:
    version = load("rollouts.yaml")["spec"]["versions"][0]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Phase", "Weight", "Step", "Verdict", "Age"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for name in ("Phase", "Weight", "Step", "Verdict"):
        field = columns[name]["jsonPath"].removeprefix(".status.")
        assert field in status, name
        assert status[field]["type"] == columns[name]["type"]
    assert columns["Age"] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }


# ---- model and schema agree on examples ------------------------------------------------------


def rollout(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "targetRef": {"name": "podinfo"},
        "service": {"port": 9898, "hosts": ["podinfo.example.com"]},
    }
    base.update(spec)
    return {
        "apiVersion": "canaryd.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": base,
    }


FULL_ROLLOUT = rollout(
    schedule={"interval": "30s", "stepWeights": [5, 10, 20, 50], "intervalsPerStep": 2},
    progressDeadlineSeconds=120,
    analysis={
        "judge": "sequential",
        "alpha": 0.01,
        "toleratedDegradation": 0.25,
        "metrics": [
            {"name": "error-rate", "kind": "errorRate", "errorCodes": "5.."},
            {"name": "latency", "kind": "latency", "latencyThresholdsMs": [100, 250]},
            {
                "name": "p99",
                "kind": "template",
                "templateRef": {"name": "p99"},
                "thresholdRange": {"max": 500},
            },
        ],
        "noDataLimit": 3,
        "minRequests": 100,
        "prometheus": {"address": "http://prometheus:9090"},
    },
    webhooks=[{"name": "load", "type": "rollout", "url": "http://loadtester/"}],
    alerts=[{"name": "slack", "providerRef": {"name": "team"}, "severity": "warn"}],
    paused=False,
)

VS_ROLLOUT = rollout(
    service=None,
    virtualServiceRef={
        "name": "shop",
        "routes": ["primary"],
        "primaryHost": "shop-stable",
        "canaryHost": "shop-canary",
    },
)
del VS_ROLLOUT["spec"]["service"]

WITH_STATUS = copy.deepcopy(FULL_ROLLOUT)
WITH_STATUS["status"] = {
    "phase": "Progressing",
    "observedGeneration": 3,
    "canaryRevision": "abc",
    "stableRevision": "def",
    "currentStep": 1,
    "canaryWeight": 10,
    "weightHistory": [5, 10],
    "verdict": "Inconclusive",
    "analysis": {
        "intervals": 2,
        "metrics": [
            {
                "name": "error-rate",
                "outcome": "Inconclusive",
                "eValue": 1.5,
                "history": [
                    {
                        "weight": 5,
                        "canary": {"requests": 10, "errors": 0},
                        "stable": {"requests": 190, "errors": 1},
                    }
                ],
            }
        ],
        "lastAnalysisTime": "2026-01-01T00:00:00Z",
    },
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Progressing",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 3,
        }
    ],
}


def _without(obj: dict[str, Any], *path: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    node = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


VALID_ROLLOUTS = {
    "minimal": rollout(),
    "full": FULL_ROLLOUT,
    "virtual-service-ref": VS_ROLLOUT,
    "with-status": WITH_STATUS,
    "step-weight": rollout(schedule={"stepWeight": 10, "maxWeight": 60}),
    "weight-100": rollout(schedule={"stepWeights": [5, 100], "maxWeight": 100}),
    "with-baseline": rollout(baseline={}),
}

INVALID_ROLLOUTS = {
    # a baseline needs spec.service: there is no baseline host in a user's VirtualService
    "baseline-without-service": {**VS_ROLLOUT, "spec": {**VS_ROLLOUT["spec"], "baseline": {}}},
    "weight-0": rollout(schedule={"stepWeights": [0, 10]}),
    "weight-101": rollout(schedule={"stepWeights": [5, 101]}),
    "start-weight-0": rollout(schedule={"startWeight": 0}),
    "max-weight-101": rollout(schedule={"maxWeight": 101}),
    "bad-interval": rollout(schedule={"interval": "1 minute"}),
    "bad-interval-unit": rollout(schedule={"interval": "10d"}),
    "missing-target-ref": _without(rollout(), "spec", "targetRef"),
    "target-without-name": rollout(targetRef={"kind": "Deployment"}),
    "target-not-deployment": rollout(targetRef={"name": "x", "kind": "StatefulSet"}),
    "unknown-judge": rollout(analysis={"judge": "bayesian"}),
    "unknown-metric-kind": rollout(analysis={"metrics": [{"name": "m", "kind": "cpu"}]}),
    "unknown-webhook-type": rollout(
        webhooks=[{"name": "w", "type": "pre-flight", "url": "http://x/"}]
    ),
    "unknown-severity": rollout(
        alerts=[{"name": "a", "providerRef": {"name": "p"}, "severity": "critical"}]
    ),
    "alpha-0": rollout(analysis={"alpha": 0}),
    "alpha-half": rollout(analysis={"alpha": 0.5}),
    "port-0": rollout(service={"port": 0}),
    "bad-name": rollout(targetRef={"name": "Pod_Info"}),
    "no-traffic-mode": _without(rollout(), "spec", "service"),
    "both-traffic-modes": rollout(virtualServiceRef=VS_ROLLOUT["spec"]["virtualServiceRef"]),
    "template-without-ref": rollout(analysis={"metrics": [{"name": "m", "kind": "template"}]}),
    "webhook-bad-url": rollout(webhooks=[{"name": "w", "type": "rollout", "url": "ftp://x"}]),
    "bad-phase": {**WITH_STATUS, "status": {"phase": "Exploded"}},
    "deadline-0": rollout(progressDeadlineSeconds=0),
    # Bounded input (issue 9 items 4, 6, 11): each of these reached the controller before.
    "interval-overflow": rollout(schedule={"interval": "100000000000h"}),
    "interval-five-parts": rollout(schedule={"interval": "1h1h1h1h1h"}),
    "interval-long-decimals": rollout(schedule={"interval": "1.0000000001s"}),
    "webhook-url-unbalanced-ipv6": rollout(
        webhooks=[{"name": "w", "type": "rollout", "url": "http://[::1"}]
    ),
    "webhook-url-trailing-newline": rollout(
        webhooks=[{"name": "w", "type": "rollout", "url": "http://loadtester/\n"}]
    ),
    "webhook-url-inner-newline": rollout(
        webhooks=[{"name": "w", "type": "rollout", "url": "http://loadtester/a\nHost: x"}]
    ),
    "webhook-url-space": rollout(
        webhooks=[{"name": "w", "type": "rollout", "url": "http://loadtester/a b"}]
    ),
    "webhook-url-userinfo": rollout(
        webhooks=[{"name": "w", "type": "rollout", "url": "http://user:pw@loadtester/"}]
    ),
    "webhook-url-no-host": rollout(webhooks=[{"name": "w", "type": "rollout", "url": "http:///x"}]),
    "webhook-url-port-0": rollout(
        webhooks=[{"name": "w", "type": "rollout", "url": "http://loadtester:0/"}]
    ),
    "prometheus-port-overflow": rollout(analysis={"prometheus": {"address": "http://p:99999"}}),
    "prometheus-header-newline": rollout(
        analysis={"prometheus": {"headers": {"X-Scope-OrgID": "a\r\nX-Evil: 1"}}}
    ),
    "webhook-timeout-huge": rollout(
        webhooks=[{"name": "w", "type": "rollout", "url": "http://x/", "timeoutSeconds": 1e9}]
    ),
    "webhook-metadata-huge": rollout(
        webhooks=[
            {"name": "w", "type": "rollout", "url": "http://x/", "metadata": {"a": "x" * 2000}}
        ]
    ),
    "too-many-webhooks": rollout(
        webhooks=[{"name": f"w{i}", "type": "rollout", "url": "http://x/"} for i in range(33)]
    ),
    "too-many-step-weights": rollout(schedule={"stepWeights": list(range(1, 10001))}),
    "metrics-empty": rollout(analysis={"metrics": []}),
    "negative-latency-threshold": rollout(
        analysis={"metrics": [{"name": "l", "kind": "latency", "latencyThresholdsMs": [-5]}]}
    ),
    "zero-latency-threshold": rollout(
        analysis={"metrics": [{"name": "l", "kind": "latency", "latencyThresholdsMs": [0]}]}
    ),
    "metric-weight-huge": rollout(analysis={"metrics": [{"name": "m", "weight": 1e9}]}),
    "no-data-limit-huge": rollout(analysis={"noDataLimit": 10**9}),
    "error-limit-huge": rollout(analysis={"errorLimit": 10**9}),
    "kayenta-tolerance-huge": rollout(analysis={"kayenta": {"tolerance": 1e9}}),
    "threshold-huge": rollout(
        analysis={
            "metrics": [
                {
                    "name": "m",
                    "kind": "template",
                    "templateRef": {"name": "t"},
                    "thresholdRange": {"max": 1e300},
                }
            ]
        }
    ),
    "host-with-space": rollout(service={"port": 80, "hosts": ["a b"]}),
    "secret-key-slash": rollout(
        analysis={"prometheus": {"bearerTokenSecretRef": {"name": "s", "key": "../x"}}}
    ),
}

MODEL_ONLY_ROLLOUTS = {
    # What the OpenAPI schema cannot say: CEL rules and `listType: map` enforce these at a real
    # kube-apiserver (both are in the CRD); the model enforces them everywhere, and the
    # controller reports them as Ready=False/InvalidSpec naming the field.
    "interval-0s": (rollout(schedule={"interval": "0s"}), "spec.schedule.interval"),
    "interval-50ms": (rollout(schedule={"interval": "50ms"}), "spec.schedule.interval"),
    "interval-25h": (rollout(schedule={"interval": "25h"}), "spec.schedule.interval"),
    "duplicate-metrics": (
        rollout(analysis={"metrics": [{"name": "m"}, {"name": "m", "kind": "latency"}]}),
        "spec.analysis",
    ),
    "duplicate-webhooks": (
        rollout(
            webhooks=[
                {"name": "w", "type": "rollout", "url": "http://x/"},
                {"name": "w", "type": "pre-rollout", "url": "http://y/"},
            ]
        ),
        "spec",
    ),
    "threshold-min-above-max": (
        rollout(
            analysis={
                "metrics": [
                    {
                        "name": "m",
                        "kind": "template",
                        "templateRef": {"name": "t"},
                        "thresholdRange": {"min": 5, "max": 1},
                    }
                ]
            }
        ),
        "spec.analysis.metrics[0].thresholdRange",
    ),
    "same-primary-and-canary-host": (
        rollout(
            service=None,
            virtualServiceRef={"name": "shop", "primaryHost": "shop", "canaryHost": "shop"},
        ),
        "spec.virtualServiceRef",
    ),
    "webhook-url-bad-ipv6": (
        rollout(webhooks=[{"name": "w", "type": "rollout", "url": "http://[:::::]/"}]),
        "spec.webhooks[0].url",
    ),
}
del MODEL_ONLY_ROLLOUTS["same-primary-and-canary-host"][0]["spec"]["service"]


@pytest.mark.parametrize("name", sorted(VALID_ROLLOUTS))
def test_valid_rollouts_accepted_by_model_and_schema(name: str) -> None:
    obj = VALID_ROLLOUTS[name]
    assert model_accepts(Rollout, obj)
    assert schema_accepts("rollouts.yaml", obj)


@pytest.mark.parametrize("name", sorted(INVALID_ROLLOUTS))
def test_invalid_rollouts_rejected_by_model_and_schema(name: str) -> None:
    obj = INVALID_ROLLOUTS[name]
    assert not model_accepts(Rollout, obj)
    assert not schema_accepts("rollouts.yaml", obj)


@pytest.mark.parametrize("name", sorted(MODEL_ONLY_ROLLOUTS))
def test_model_only_rules_name_the_field(name: str) -> None:
    obj, field = MODEL_ONLY_ROLLOUTS[name]
    assert schema_accepts("rollouts.yaml", obj)
    with pytest.raises(InvalidSpecError) as err:
        parse_rollout(obj)
    assert str(err.value).startswith(f"{field}: "), str(err.value)


def test_real_api_server_rules_are_in_the_crd() -> None:
    """The model-only rules above, as a real kube-apiserver enforces them (CEL, listType)."""
    spec = schema_of("rollouts.yaml")["properties"]["spec"]
    rules = {
        r["rule"]
        for node in (
            spec["properties"]["schedule"],
            spec["properties"]["virtualServiceRef"],
            spec["properties"]["analysis"]["properties"]["metrics"]["items"]["properties"][
                "thresholdRange"
            ],
        )
        for r in node["x-kubernetes-validations"]
    }
    assert "self.primaryHost != self.canaryHost" in rules
    assert "!has(self.min) || !has(self.max) || self.min <= self.max" in rules
    assert any("duration('24h')" in r and "duration('100ms')" in r for r in rules)
    for lst in (spec["properties"]["analysis"]["properties"]["metrics"],
                spec["properties"]["webhooks"], spec["properties"]["alerts"]):  # fmt: skip
        assert lst["x-kubernetes-list-type"] == "map"
        assert lst["x-kubernetes-list-map-keys"] == ["name"]


def test_invalid_spec_messages_are_bounded_and_name_the_field() -> None:
    """A 10,000-weight list was quoted whole into a 79 KB condition message."""
    for obj, field in (
        (rollout(schedule={"stepWeights": list(range(10000, 0, -1))}), "spec.schedule.stepWeights"),
        (rollout(schedule={"stepWeights": [*range(1, 100), 1]}), "spec.schedule"),
        (rollout(analysis={"metrics": [{"name": "m"}] * 32}), "spec.analysis"),
    ):
        with pytest.raises(InvalidSpecError) as err:
            parse_rollout(obj)
        message = str(err.value)
        assert message.startswith(f"{field}: "), message
        assert len(message) < 600, len(message)
    with pytest.raises(InvalidSpecError) as err:
        parse_rollout(rollout(schedule={"stepWeights": [*range(1, 100), 1]}))
    assert str(err.value) == (
        "spec.schedule: stepWeights must increase strictly, "
        "got [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ... (+90 more)]"
    )


def test_go_pattern_reads_dollar_as_end_of_text() -> None:
    """kube-apiserver's RE2 ``$`` is end of text; Python's also matches before a final newline.
    The schema validator used by lint and the tests reads patterns the Go way."""
    pattern = crdgen.go_pattern(r"^[a-z$]+$")
    assert pattern == r"^[a-z$]+\Z"
    assert re.search(r"^[a-z]+$", "abc\n") and not re.search(pattern, "abc\n")
    assert re.search(pattern, "ab$c")


def test_model_only_rules_are_documented_and_caught_by_the_model() -> None:
    """Rules OpenAPI cannot state: the schema lets them through, the model rejects them (the
    controller turns that into Ready=False/InvalidSpec)."""
    for obj in (
        rollout(schedule={"stepWeights": [5, 50, 20]}),
        rollout(schedule={"startWeight": 60, "maxWeight": 50}),  # CEL on a real API server
    ):
        assert schema_accepts("rollouts.yaml", obj)
        assert not model_accepts(Rollout, obj)
    doc = crdgen.__doc__ or ""
    assert "stepWeights" in doc and "startWeight <= maxWeight" in doc
    schedule = schema_of("rollouts.yaml")["properties"]["spec"]["properties"]["schedule"]
    assert schedule["x-kubernetes-validations"][0]["rule"] == "self.startWeight <= self.maxWeight"


def template(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p99"}, "spec": spec}


def provider(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "team"}, "spec": spec}


@pytest.mark.parametrize(
    ("obj", "valid"),
    [
        (template(query="sum(rate(x[{{ interval }}]))"), True),
        (template(query="up", prometheus={"address": "https://thanos:9090"}), True),
        (template(query=""), False),
        (template(), False),
        (template(query="up", prometheus={"address": "thanos:9090"}), False),
    ],
)
def test_metric_template_model_and_schema_agree(obj: dict[str, Any], valid: bool) -> None:
    assert model_accepts(MetricTemplate, obj) is valid
    assert schema_accepts("metrictemplates.yaml", obj) is valid


SECRET = {"name": "slack", "key": "url"}


@pytest.mark.parametrize(
    ("obj", "valid"),
    [
        (provider(webhookSecretRef=SECRET), True),
        (provider(tokenSecretRef=SECRET, channel="#deploys"), True),
        (provider(webhookSecretRef=SECRET, dashboardUrl="http://grafana/d/x"), True),
        (provider(), False),
        (provider(webhookSecretRef=SECRET, tokenSecretRef=SECRET, channel="#x"), False),
        (provider(tokenSecretRef=SECRET), False),
        (provider(type="teams", webhookSecretRef=SECRET), False),
        (provider(webhookSecretRef={"name": "slack"}), False),
    ],
)
def test_alert_provider_model_and_schema_agree(obj: dict[str, Any], valid: bool) -> None:
    assert model_accepts(AlertProvider, obj) is valid
    assert schema_accepts("alertproviders.yaml", obj) is valid


def test_optional_fields_are_plain_types_not_nullable_unions() -> None:
    spec = schema_of("rollouts.yaml")["properties"]["spec"]["properties"]
    assert spec["service"]["type"] == "object"
    assert spec["service"]["properties"]["targetPort"] == {
        "description": "Container port; defaults to port.",
        "type": "integer",
        "minimum": 1,
        "maximum": 65535,
    }


# ---- no spec can crash the model's paths -----------------------------------------------------

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["100000000000h", "0s", "http://[::1", "http://x/\n", "5..", "+Inf"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            out += _paths(child, (*prefix, i))
    return out


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_spec_is_either_valid_or_an_invalid_spec_error(data: st.DataObject) -> None:
    """Item "no spec can crash a tick": replace any node of a valid Rollout's spec with any
    JSON value; the model either accepts it (and the values a tick derives from it are
    computable) or raises InvalidSpecError naming a field -- never anything else."""
    base = copy.deepcopy(VALID_ROLLOUTS[data.draw(st.sampled_from(sorted(VALID_ROLLOUTS)))])
    base.pop("status", None)
    path = data.draw(st.sampled_from(_paths(base["spec"])))
    value = data.draw(_JSON)
    if path:
        node = base["spec"]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    else:
        base["spec"] = value
    try:
        parsed = parse_rollout(base)
    except InvalidSpecError as exc:
        assert str(exc) and len(str(exc)) < 2000
        return
    seconds = parsed.spec.schedule.interval_seconds()
    assert 0.1 <= seconds <= 86400
    timedelta(seconds=seconds)  # the scheduler's arithmetic
    assert parsed.spec.schedule.weights()


def test_error_messages_are_capped_with_the_count_elided() -> None:
    long = {"msg": "Value error, " + "x" * 5000, "loc": ("spec",)}
    text = error_message(long)
    assert text.startswith("x" * 400 + "... (4600 characters elided)")
    assert len(text) < 450
    assert error_message({"msg": "Value error, short"}) == "short"
