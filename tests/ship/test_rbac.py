"""RBAC derived from real calls: the real controller (assembled as ``canaryd run`` does it, all
namespaces, leader election in canaryd-system) runs complete rollouts against the API emulator
— a good release promoted with Slack alerts through an AlertProvider and its Secret, a bad one
rolled back on a user-owned VirtualService with a MetricTemplate, a manual promotion, a write of
each kind answered 409 (then read live) — and every
request it made (the emulator's audit log, told apart from the test's own requests by the
User-Agent) must be allowed by the ClusterRole/Role in manifests/base, and every verb those
rules grant must have been used. A missing verb fails; so does an unused one. The same for
the people's side: every CLI command against the canaryd-operator ClusterRole."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from canaryd.adapters.kube import RetryPolicy, load_api_client
from canaryd.cli.main import main as canaryd
from canaryd.cli.ops import USER_AGENT
from canaryd.controller.assemble import Assembled, Options, assemble
from canaryd.controller.runtime import ControllerConfig
from kubeemu import Emulator
from tests.controller.conftest import Cluster, phase_is, rollout_body, wait_for
from tests.ship.manifests import build
from tests.support.scripted_metrics import BAD
from tests.support.slack import SlackServer

CONTROLLER_AGENT = "canaryd-under-audit"
LEASE_NAMESPACE = "canaryd-system"
NS = "default"

Call = tuple[str, str, str, str]  # verb, api group, resource[/subresource], namespace ("" = all)


CONTROLLER_ROLES = {"canaryd", "canaryd-leader-election"}


def grants(names: set[str]) -> set[Call]:
    """Every (verb, group, resource, namespace) the named ClusterRoles/Roles of manifests/base
    grant; "" namespace = any."""
    out = set()
    for obj in build("base"):
        if obj["kind"] not in ("ClusterRole", "Role") or obj["metadata"]["name"] not in names:
            continue
        ns = obj["metadata"].get("namespace", "") if obj["kind"] == "Role" else ""
        for rule in obj["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        out.add((verb, group, resource, ns))
    return out


def calls_of(emu: Emulator, agent: str) -> set[Call]:
    """What ``agent`` did, in RBAC terms (resource/subresource, namespace)."""
    calls = set()
    for r in emu.audit:
        if r.user_agent == agent and r.resource:
            resource = f"{r.resource}/{r.subresource}" if r.subresource else r.resource
            calls.add((r.verb, r.api_group, resource, r.namespace))
    return calls


def check_exact(calls: set[Call], granted: set[Call], who: str) -> None:
    missing = sorted(c for c in calls if not allowed(c, granted))
    unused = sorted(g for g in granted if not used(g, calls))
    assert not missing, f"{who} made calls manifests/base does not allow: {missing}"
    assert not unused, f"manifests/base grants {who} verbs it never used: {unused}"


def allowed(call: Call, granted: set[Call]) -> bool:
    verb, group, resource, ns = call
    return (verb, group, resource, "") in granted or (ns != "" and call in granted)


def used(grant: Call, calls: set[Call]) -> bool:
    verb, group, resource, ns = grant
    return any(c[:3] == (verb, group, resource) and (ns == "" or c[3] == ns) for c in calls)


@pytest.fixture
def audited(cluster: Cluster) -> Iterator[Cluster]:
    """The cluster fixture with the namespaces a real install has."""
    core = kubernetes.client.CoreV1Api(cluster.api.api_client)
    core.create_namespace({"metadata": {"name": LEASE_NAMESPACE}})
    yield cluster


def start_audited_controller(cluster: Cluster) -> Assembled:
    """The controller as manifests/base runs it: every namespace, Lease in canaryd-system."""
    config = ControllerConfig(
        namespaces=None,
        identity="canaryd-0",
        lease_namespace=LEASE_NAMESPACE,
        lease_duration=3.0,
        renew_deadline=2.0,
        retry_period=0.3,
        workers=4,
        idle_resync_seconds=2.0,
        watch_timeout_seconds=5,
    )
    options = Options(
        controller=config,
        retry=RetryPolicy(attempts=4, base_seconds=0.05, cap_seconds=0.5),
        backoff_base=0.2,
        backoff_cap=2.0,
    )
    client = load_api_client(kubeconfig=str(cluster.kubeconfig))
    client.user_agent = CONTROLLER_AGENT
    parts = assemble(client, options, metrics_for=lambda _r: cluster.metrics)
    parts.start()
    cluster.controllers.append(parts)
    return parts


def user_owned_routing(cluster: Cluster, name: str) -> None:
    """Services per arm and a VirtualService with a route canaryd manages and one it must not."""
    for arm, selector in (("primary", f"{name}-primary"), ("canary", name)):
        cluster.api.create(
            f"/api/v1/namespaces/{NS}/services",
            {
                "metadata": {"name": f"{name}-{arm}"},
                "spec": {"selector": {"app": selector}, "ports": [{"port": 9898}]},
            },
        )
    route = [
        {"destination": {"host": f"{name}-primary"}, "weight": 100},
        {"destination": {"host": f"{name}-canary"}, "weight": 0},
    ]
    cluster.api.create(
        f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices",
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": name},
            "spec": {
                "hosts": [f"{name}.example.com"],
                "http": [
                    {"name": "admin", "route": [{"destination": {"host": f"{name}-primary"}}]},
                    {"name": "main", "route": route},
                ],
            },
        },
    )


def drift(cluster: Cluster, name: str) -> None:
    """Someone routes 30% to the canary of an idle Rollout by hand."""
    path = f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices/{name}"
    vs = cluster.api.get(path)
    for d in vs["spec"]["http"][0]["route"]:
        d["weight"] = 30 if d["destination"]["host"].endswith("-canary") else 70
    cluster.api.replace(path, vs)


def repeated_event(cluster: Cluster, reason: str) -> bool:
    events = cluster.api.get(f"/api/v1/namespaces/{NS}/events")["items"]
    return any(e.get("reason") == reason and (e.get("count") or 1) >= 2 for e in events)


def test_rbac_covers_exactly_the_calls_the_controller_makes(
    audited: Cluster,
    slack_server: SlackServer,
) -> None:
    rig = audited
    # Alerts: an AlertProvider whose webhook URL lives in a Secret.
    rig.api.create(
        f"/api/v1/namespaces/{NS}/secrets",
        {"metadata": {"name": "slack"}, "stringData": {"url": slack_server.webhook_url}},
    )
    rig.api.create(
        f"/apis/canaryd.io/v1alpha1/namespaces/{NS}/alertproviders",
        {
            "apiVersion": "canaryd.io/v1alpha1",
            "kind": "AlertProvider",
            "metadata": {"name": "team"},
            "spec": {"webhookSecretRef": {"name": "slack", "key": "url"}},
        },
    )
    rig.api.create(
        f"/apis/canaryd.io/v1alpha1/namespaces/{NS}/metrictemplates",
        {
            "apiVersion": "canaryd.io/v1alpha1",
            "kind": "MetricTemplate",
            "metadata": {"name": "panics"},
            "spec": {"query": 'sum(panics_total{namespace="{{ namespace }}"})'},
        },
    )
    alerts = [{"name": "team", "providerRef": {"name": "team"}, "severity": "info"}]
    metrics = [
        {"name": "error-rate", "kind": "errorRate"},
        {
            "name": "panics",
            "kind": "template",
            "templateRef": {"name": "panics"},
            "thresholdRange": {"max": 0},
            "critical": False,
        },
    ]
    start_audited_controller(rig)

    # 1. Host-level split (canaryd creates Services and the VirtualService), good release.
    rig.deploy("web", "web:1.0")
    rig.create_rollout("web", "web", alerts=alerts)
    # 2. A user-owned VirtualService, a MetricTemplate, a bad release.
    rig.deploy("api", "api:1.0")
    user_owned_routing(rig, "api")
    rig.metrics.set_profile(NS, "api", BAD)
    body = rollout_body(
        "api",
        "api",
        virtualServiceRef={
            "name": "api",
            "routes": ["main"],
            "primaryHost": "api-primary",
            "canaryHost": "api-canary",
        },
        analysis={"metrics": metrics},
    )
    del body["spec"]["service"]
    rig.api.create(f"/apis/canaryd.io/v1alpha1/namespaces/{NS}/rollouts", body)
    # 3. A slow release promoted by hand with the CLI.
    rig.deploy("shop", "shop:1.0")
    rig.create_rollout(
        "shop", "shop", schedule={"interval": "500ms", "stepWeights": [5, 10, 20, 30, 40, 50]}
    )
    # 4. The Gateway API router: canaryd creates, updates and (at deletion) deletes an HTTPRoute.
    rig.deploy("gw", "gw:1.0")
    rig.create_rollout("gw", "gw", router="gateway-api")
    for name in ("web", "api", "shop", "gw"):
        wait_for(f"{name} Initialized", phase_is(rig, name, "Initialized"), timeout=30)

    # Writes answered 409 (someone else wrote first): canaryd reads that object live (a get) and
    # retries, instead of trusting its cache, which may not have the other write yet.
    for resource in ("rollouts/status", "deployments", "services", "virtualservices", "httproutes"):
        rig.emu.faults.fail_next(1, status=409, verb="update", resource=resource)
    # Someone edits a Service canaryd owns: the router must put it back (an update).
    rig.api.merge_patch(
        f"/api/v1/namespaces/{NS}/services/web-canary", {"spec": {"selector": {"app": "other"}}}
    )
    rig.set_image("web", "web:2.0")
    rig.set_image("api", "api:2.0")
    rig.set_image("shop", "shop:2.0")
    rig.set_image("gw", "gw:2.0")
    wait_for("shop Progressing", phase_is(rig, "shop", "Progressing"), timeout=30)
    kubeconfig = str(rig.kubeconfig)
    assert canaryd(["promote", "shop", "--kubeconfig", kubeconfig, "-n", NS, "--wait", "30"]) == 0
    wait_for("web Succeeded", phase_is(rig, "web", "Succeeded"), timeout=60)
    wait_for("api Failed", phase_is(rig, "api", "Failed"), timeout=60)
    wait_for("shop Succeeded", phase_is(rig, "shop", "Succeeded"), timeout=60)
    wait_for("gw Succeeded", phase_is(rig, "gw", "Succeeded"), timeout=60)
    slack_server.wait_for(1, timeout=10)
    # The same drift of the routing twice: the repeated Event is aggregated (a patch of count).
    for _ in range(2):
        drift(rig, "web")
        wait_for("drift corrected", lambda: rig.canary_weight_routed("web") == 0)
    wait_for(
        "an aggregated TrafficCorrected event", lambda: repeated_event(rig, "TrafficCorrected")
    )
    service = rig.api.get(f"/api/v1/namespaces/{NS}/services/web-canary")
    assert service["spec"]["selector"] == {"app": "web"}, "the drifted Service was not repaired"
    # Deleting a Rollout: the finalizer hands routing back (deletes what canaryd created).
    for name in ("web", "gw"):
        path = f"/apis/canaryd.io/v1alpha1/namespaces/{NS}/rollouts/{name}"
        rig.api.delete(path)
        wait_for(f"{name} deleted", lambda p=path: rig.api.get_or_none(p) is None, timeout=30)
    for parts in list(rig.controllers):
        rig.stop_controller(parts)  # releases the Lease: part of the audited calls
    # A watch is audited when its stream ends: end the ones still open.
    rig.emu.faults.drop_watches()
    records = wait_for(
        "the controller's watches in the audit log",
        lambda: (
            [r for r in rig.emu.audit if r.user_agent == CONTROLLER_AGENT]
            if {("watch", "rollouts"), ("watch", "deployments")}
            <= {(r.verb, r.resource) for r in rig.emu.audit}
            else None
        ),
        timeout=15,
    )
    assert records
    check_exact(calls_of(rig.emu, CONTROLLER_AGENT), grants(CONTROLLER_ROLES), "the controller")


def test_operator_role_covers_exactly_what_the_cli_does(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every CLI command that talks to the cluster, then the audit log against the
    canaryd-operator ClusterRole: nothing missing, nothing unused."""
    kubeconfig = str(emulator.write_kubeconfig(tmp_path / "kubeconfig"))
    api = emulator.api_client()
    kubernetes.client.CustomObjectsApi(api).create_namespaced_custom_object(
        "canaryd.io", "v1alpha1", NS, "rollouts", rollout_body("web", "web")
    )
    status = {"phase": "Succeeded", "observedGeneration": 3}  # pause + resume: generation 3
    for argv in (
        ["get", "rollouts"],
        ["get", "rollouts", "-A"],
        ["status", "web"],
        ["promote", "web"],
        ["abort", "web"],
        ["retry", "web"],
        ["pause", "web"],
        ["resume", "web"],
    ):
        assert canaryd([*argv, "--kubeconfig", kubeconfig, "-n", NS]) == 0, argv

    def finish() -> None:  # the controller's part: the rollout ends while the CLI watches
        time.sleep(0.5)
        kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
            "canaryd.io", "v1alpha1", NS, "rollouts", "web", {"status": status}
        )

    finisher = threading.Thread(target=finish, daemon=True)
    finisher.start()
    watch = ["status", "web", "-w", "--timeout", "10", "--kubeconfig", kubeconfig, "-n", NS]
    assert canaryd(watch) == 0
    finisher.join(5)
    emulator.faults.drop_watches()

    def with_watch() -> set[Call] | None:
        calls = calls_of(emulator, USER_AGENT)
        return calls if any(verb == "watch" for verb, *_ in calls) else None

    calls = wait_for("the CLI's watch in the audit log", with_watch, timeout=15)
    check_exact(calls, grants({"canaryd-operator"}), "the CLI")
