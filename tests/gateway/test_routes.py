"""The pure HTTPRoute computations (no cluster): weights as the Gateway API defines them
(proportions, default 1), only the managed rules changed, precise errors, and every object
produced valid against the real v1.6.1 schema."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from canaryd.adapters.gateway import routes
from canaryd.api.models import HTTPRouteRef, Rollout
from canaryd.core.ports import PermanentError

from .conftest import RouteValidator

REF = HTTPRouteRef(name="r", rules=["main"], primary_service="stable", canary_service="preview")


def route(*rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "ns"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": list(rules)},
    }


def rule(name: str | None, *backends: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"backendRefs": list(backends)}
    if name is not None:
        out["name"] = name
    return out


def svc(name: str, weight: int | None = None, **extra: Any) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": name, "port": 8080, **extra}
    if weight is not None:
        ref["weight"] = weight
    return ref


@pytest.mark.parametrize(
    ("backends", "expected"),
    [
        ([svc("stable")], 0),  # one backend, default weight 1: everything to the primary
        ([svc("stable", 100), svc("preview", 0)], 0),
        ([svc("stable", 70), svc("preview", 30)], 30),
        ([svc("stable"), svc("preview")], 50),  # defaults 1:1
        ([svc("stable", 3), svc("preview", 1)], 25),  # proportions, not percentages
        ([svc("stable", 0), svc("preview", 5)], 100),
        ([svc("preview", 10), svc("stable", 90)], 10),  # order does not matter
    ],
)
def test_read_weights_as_proportions(backends: list[dict[str, Any]], expected: int) -> None:
    assert routes.read_weights(route(rule("main", *backends)), REF).canary_weight == expected


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([rule("other", svc("stable"))], r"no rule named 'main' \(rules: other\)"),
        ([rule("main", svc("stable"), svc("db"))], r"\['db'\] are neither primaryService"),
        (
            [rule("main", svc("stable"), svc("preview", kind="ServiceImport", group="x.io"))],
            r"x\.io/ServiceImport:preview",
        ),
        ([rule("main", svc("stable"), svc("stable"))], "exactly one backendRef"),
        ([rule("main")], "has no backendRefs"),
    ],
)
def test_unusable_rules_are_permanent_errors_naming_them(
    rules: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(PermanentError, match=message):
        routes.with_weights(route(*rules), REF, 10)
    with pytest.raises(PermanentError):
        routes.read_weights(route(*rules), REF)


def test_all_zero_weights_cannot_be_read_but_can_be_set() -> None:
    r = route(rule("main", svc("stable", 0), svc("preview", 0)))
    with pytest.raises(PermanentError, match="route nothing canaryd can read"):
        routes.read_weights(r, REF)
    assert routes.read_weights(routes.with_weights(r, REF, 0), REF).canary_weight == 0


def test_managed_rules_that_disagree_are_an_error() -> None:
    ref = REF.model_copy(update={"rules": ["a", "b"]})
    r = route(rule("a", svc("stable", 90), svc("preview", 10)), rule("b", svc("stable")))
    with pytest.raises(PermanentError, match=r"disagree on the canary weight \(\[0, 10\]\)"):
        routes.read_weights(r, ref)
    fixed = routes.with_weights(r, ref, 20)
    assert routes.read_weights(fixed, ref).canary_weight == 20


def test_an_unnamed_only_rule_is_managed_when_no_rules_are_named() -> None:
    ref = REF.model_copy(update={"rules": []})
    out = routes.with_weights(route(rule(None, svc("stable"))), ref, 5)
    assert [(b["name"], b["weight"]) for b in out["spec"]["rules"][0]["backendRefs"]] == [
        ("stable", 95),
        ("preview", 5),
    ]
    with pytest.raises(PermanentError, match="has 2 rules"):
        routes.with_weights(route(rule(None, svc("stable")), rule(None, svc("x"))), ref, 5)


@pytest.mark.parametrize("weight", [0, 1, 37, 99, 100])
def test_with_weights_touches_only_the_managed_rule_and_stays_valid(
    route_schema: RouteValidator, weight: int
) -> None:
    filters = [{"type": "RequestHeaderModifier",
                "requestHeaderModifier": {"add": [{"name": "x-v", "value": "1"}]}}]  # fmt: skip
    original = route(
        rule("static", svc("cdn", 3)),
        rule("main", svc("stable", filters=filters, namespace="ns")),
    )
    snapshot = copy.deepcopy(original)
    out = routes.with_weights(original, REF, weight)
    assert original == snapshot  # the input is not mutated
    assert out["spec"]["rules"][0] == snapshot["spec"]["rules"][0]
    primary, canary = out["spec"]["rules"][1]["backendRefs"]
    assert primary == {**snapshot["spec"]["rules"][1]["backendRefs"][0], "weight": 100 - weight}
    assert canary == {"name": "preview", "port": 8080, "namespace": "ns", "weight": weight}
    route_schema.check(out, managed=(1,))
    assert routes.read_weights(out, REF).canary_weight == weight


def test_generated_route_is_valid_and_reads_back(route_schema: RouteValidator) -> None:
    r = Rollout.model_validate(
        {
            "metadata": {"name": "app", "namespace": "ns", "uid": "u-1"},
            "spec": {
                "targetRef": {"name": "app"},
                "router": "gateway-api",
                "service": {"port": 80, "name": "web", "hosts": ["web.example.com"]},
            },
        }
    )
    for weight in (0, 5, 50, 100):
        body = routes.desired_http_route(r, weight)
        route_schema.check(body)
        assert routes.generated_weights(r, body) is not None
        assert routes.generated_weights(r, body).canary_weight == weight  # type: ignore[union-attr]
    body = routes.desired_http_route(r, 5)
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert body["spec"]["parentRefs"] == [
        {"group": "", "kind": "Service", "name": "web", "port": 80}
    ]
    # Someone else's backend added to the owned rule: not canaryd's shape any more.
    body["spec"]["rules"][0]["backendRefs"][0]["weight"] = 94
    body["spec"]["rules"][0]["backendRefs"].append({"name": "x", "port": 80, "weight": 1})
    assert routes.generated_weights(r, body) is None
    with pytest.raises(ValueError, match=r"0\.\.100"):
        routes.desired_http_route(r, 101)
