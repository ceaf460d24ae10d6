"""The mesh simulator reading routes from the API emulator through the official kubernetes
client: VirtualService weights (networking.istio.io/v1), Deployment images and readiness."""

import time

from kubernetes import client as k8s

from meshsim import KubeRoutes, MeshApp, MeshSimulator, VersionProfile

APP = MeshApp(namespace="default", target="podinfo")


def deployment(name, image, replicas=1):
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def virtual_service(canary_weight):
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "podinfo"},
        "spec": {
            "hosts": ["podinfo"],
            "http": [
                {
                    "name": "primary",
                    "route": [
                        {"destination": {"host": "podinfo-primary"}, "weight": 100 - canary_weight},
                        {"destination": {"host": "podinfo-canary.default.svc.cluster.local"},
                         "weight": canary_weight},
                    ],
                }
            ],
        },
    }  # fmt: skip


def wait_ready(apps, name, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dep = apps.read_namespaced_deployment(name, "default")
        if (dep.status.ready_replicas or 0) >= (dep.spec.replicas or 0):
            return
        time.sleep(0.05)
    raise AssertionError(f"{name} not ready after {timeout}s")


def test_routes_follow_virtualservice_and_deployments(kube_api):
    apps, custom = k8s.AppsV1Api(kube_api), k8s.CustomObjectsApi(kube_api)
    routes = KubeRoutes(kube_api)
    apps.create_namespaced_deployment("default", deployment("podinfo", "podinfo:6.7.1"))
    # Before canaryd bootstraps (no VirtualService): everything goes to the target.
    wait_ready(apps, "podinfo")
    assert [(r.workload, r.weight, r.image) for r in routes.destinations(APP)] == [
        ("podinfo", 100, "podinfo:6.7.1")
    ]
    apps.create_namespaced_deployment("default", deployment("podinfo-primary", "podinfo:6.7.0"))
    wait_ready(apps, "podinfo-primary")
    custom.create_namespaced_custom_object(
        "networking.istio.io", "v1", "default", "virtualservices", virtual_service(20)
    )
    got = [(r.workload, r.service, r.weight, r.image) for r in routes.destinations(APP)]
    assert got == [
        ("podinfo-primary", "podinfo-primary", 80, "podinfo:6.7.0"),
        ("podinfo", "podinfo-canary", 20, "podinfo:6.7.1"),
    ]
    # The simulator sends traffic by those weights and judges versions by image.
    sim = MeshSimulator(apps=[APP], routes=routes, rps=1000.0, seed=3, start_time=0.0,
                        profiles={"podinfo:6.7.1": VersionProfile(error_rate=0.5)},
                        default_profile=VersionProfile(error_rate=0.0))  # fmt: skip
    stats = sim.step(2.0)
    c_req, c_err = stats.served[("default", "podinfo")]
    p_req, p_err = stats.served[("default", "podinfo-primary")]
    assert 0.15 < c_req / (c_req + p_req) < 0.25
    assert c_err > 0.3 * c_req and p_err == 0
    # Canary scaled to zero: it has no ready pod, its share is dropped (not served).
    apps.patch_namespaced_deployment_scale("podinfo", "default", {"spec": {"replicas": 0}})
    deadline = time.monotonic() + 10
    while routes.destinations(APP)[1].image is not None:
        assert time.monotonic() < deadline, "canary still has ready pods"
        time.sleep(0.05)
    stats = sim.step(2.0)
    assert ("default", "podinfo") not in stats.served and stats.dropped > 0


def test_one_set_of_series_per_ready_pod_named_after_the_pod_template(kube_api):
    apps = k8s.AppsV1Api(kube_api)
    routes = KubeRoutes(kube_api)
    apps.create_namespaced_deployment("default", deployment("podinfo", "podinfo:1", replicas=3))
    wait_ready(apps, "podinfo")
    sim = MeshSimulator(apps=[APP], routes=routes, rps=300.0, seed=1, start_time=0.0)
    sim.step(2.0)
    first = sim.pods("default", "podinfo")
    assert len(first) == 3 and len({p.rsplit("-", 1)[0] for p in first}) == 1
    labels = [dict(v.labels) for v in sim.metrics.snapshot()]
    assert {d["pod"] for d in labels if d["reporter"] == "destination"} == set(first)
    # A new image is a new pod template: once rolled out, other pods with new series.
    apps.patch_namespaced_deployment(
        "podinfo",
        "default",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "podinfo:2"}]}}}},
    )
    deadline = time.monotonic() + 20
    while True:
        dep = apps.read_namespaced_deployment("podinfo", "default")
        st = dep.status
        done = (st.updated_replicas or 0) == 3 == (st.ready_replicas or 0) == (st.replicas or 0)
        if done and dep.status.observed_generation == dep.metadata.generation:
            break
        assert time.monotonic() < deadline, "rollout did not finish"
        time.sleep(0.1)
    sim.step(2.0)
    second = sim.pods("default", "podinfo")
    assert len(second) == 3 and not set(second) & set(first)
    destination = {
        dict(v.labels)["pod"]
        for v in sim.metrics.snapshot()
        if dict(v.labels)["reporter"] == "destination"
    }
    assert destination == set(second)  # the old pods' series went with them
