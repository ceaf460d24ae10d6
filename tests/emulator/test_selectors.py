"""Label selectors (equality and set-based) and field selectors on LIST."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException


@pytest.fixture
def labelled(core: client.CoreV1Api) -> client.CoreV1Api:
    for name, labels in (
        ("a", {"app": "web", "track": "stable"}),
        ("b", {"app": "web", "track": "canary"}),
        ("c", {"app": "db"}),
        ("d", {}),
    ):
        core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": labels}})
    core.create_namespace({"metadata": {"name": "other"}})
    core.create_namespaced_config_map(
        "other", {"metadata": {"name": "a", "labels": {"app": "web"}}}
    )
    return core


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app=web", ["a", "b"]),
        ("app==web,track=canary", ["b"]),
        ("app!=web", ["c", "d"]),
        ("track in (stable, canary)", ["a", "b"]),
        ("track notin (canary)", ["a", "c", "d"]),
        ("track", ["a", "b"]),
        ("!track", ["c", "d"]),
        ("app in (web,db),!track", ["c"]),
    ],
)
def test_label_selectors(labelled: client.CoreV1Api, selector: str, expected: list[str]) -> None:
    items = labelled.list_namespaced_config_map("default", label_selector=selector).items
    assert [i.metadata.name for i in items] == expected


def test_field_selectors(labelled: client.CoreV1Api) -> None:
    got = labelled.list_config_map_for_all_namespaces(field_selector="metadata.name=a").items
    assert [(i.metadata.namespace, i.metadata.name) for i in got] == [
        ("default", "a"),
        ("other", "a"),
    ]
    got = labelled.list_config_map_for_all_namespaces(
        field_selector="metadata.name=a,metadata.namespace!=default"
    ).items
    assert [i.metadata.namespace for i in got] == ["other"]


def test_bad_selectors_are_400(labelled: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as exc:
        labelled.list_namespaced_config_map("default", label_selector="app in web")
    assert exc.value.status == 400
    with pytest.raises(ApiException) as exc:
        labelled.list_namespaced_config_map("default", field_selector="data.k=v")
    assert exc.value.status == 400
