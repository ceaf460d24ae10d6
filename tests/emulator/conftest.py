"""Shared fixtures of the emulator tests: the emulator itself, typed API objects, a test CRD."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from kubeemu import Emulator
from tests.support import kube as _kube

# The shared fixtures, re-exported for this package.
emulator = _kube.emulator
kube_api = _kube.kube_api

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.io"},
    "spec": {
        "group": "example.io",
        "scope": "Namespaced",
        "names": {
            "plural": "widgets",
            "singular": "widget",
            "kind": "Widget",
            "shortNames": ["wd"],
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas",
                    },
                },
                "additionalPrinterColumns": [
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                    {"name": "Weight", "type": "integer", "jsonPath": ".spec.weight"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["weight"],
                                "properties": {
                                    "weight": {"type": "integer", "minimum": 1, "maximum": 100},
                                    "mode": {
                                        "type": "string",
                                        "enum": ["fast", "slow"],
                                        "default": "slow",
                                    },
                                    "replicas": {"type": "integer"},
                                    "extra": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "phase": {"type": "string"},
                                    "replicas": {"type": "integer"},
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, weight: Any = 5, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.io/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"weight": weight, **spec},
    }


def deployment(name: str, image: str = "podinfo:1", replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "app", "image": image, "ports": [{"containerPort": 9898}]},
                    ]
                },
            },
        },
    }


@pytest.fixture
def core(kube_api: ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api)


@pytest.fixture
def apps(kube_api: ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(kube_api)


@pytest.fixture
def custom(kube_api: ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api)


@pytest.fixture
def widgets(kube_api: ApiClient) -> client.CustomObjectsApi:
    """The Widget CRD installed; returns the CustomObjectsApi."""
    client.ApiextensionsV1Api(kube_api).create_custom_resource_definition(WIDGET_CRD)
    return client.CustomObjectsApi(kube_api)


@pytest.fixture
def raw(kube_api: ApiClient, emulator: Emulator) -> Callable[..., tuple[int, Any]]:
    """(status, decoded JSON body) of a raw request through the client's HTTP stack."""

    def call(
        method: str,
        path: str,
        *,
        accept: str = "application/json",
        body: Any = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        resp = kube_api.call_api(method, emulator.url + path, header_params=headers, body=body)
        data = resp.read()
        return resp.status, json.loads(data) if data else None

    return call


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05) -> Any:
    """Poll until ``predicate`` returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")
