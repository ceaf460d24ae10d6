"""manifests/: every kustomization builds with kubectl, every object is valid for what checks it
(kubernetes-validate --strict for built-in kinds, Istio's real CRD schemas, canaryd's CRDs and
models), and the controller's deployment settings (security, HA, probes, RBAC) hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from canaryd.api import crdgen
from canaryd.cli import lint
from canaryd.cli.main import build_parser, main
from tests.ship.manifests import (
    KUSTOMIZATIONS,
    MANIFESTS,
    ROOT,
    build,
    group,
    ident,
    istio_validator,
    of_kind,
)

# A current Kubernetes (the newest kubernetes-validate knows) and the oldest we support.
K8S_VERSIONS = (kubernetes_validate.latest_version(), "1.29.0")
CUSTOM_GROUPS = {"canaryd.io", "networking.istio.io", "monitoring.coreos.com"}
CONTROLLER_SETS = ("base", "overlays/production", "overlays/sharded")


def all_objects() -> list[tuple[str, dict[str, Any]]]:
    return [(name, obj) for name in KUSTOMIZATIONS for obj in build(name)]


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_kustomization_builds(name: str) -> None:
    objects = build(name)
    assert objects, f"manifests/{name} built nothing"
    names = [ident(o) for o in objects]
    assert len(names) == len(set(names)), f"duplicate objects in {name}: {names}"


def test_base_has_every_piece_of_an_install() -> None:
    kinds = {o["kind"] for o in build("base")}
    assert {
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
    } <= kinds
    crds = {o["metadata"]["name"] for o in of_kind(build("base"), "CustomResourceDefinition")}
    assert crds == {
        "rollouts.canaryd.io",
        "metrictemplates.canaryd.io",
        "alertproviders.canaryd.io",
    }


def test_production_adds_monitoring() -> None:
    kinds = {o["kind"] for o in build("overlays/production")}
    assert {"ServiceMonitor", "PriorityClass"} <= kinds


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_objects_validate_strictly(version: str) -> None:
    checked = 0
    for name, obj in all_objects():
        if group(obj) in CUSTOM_GROUPS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{name}: {ident(obj)}: {exc.message}") from None
        checked += 1
    assert checked >= 30


def test_monitoring_extras_validate_strictly() -> None:
    """The Grafana dashboards ConfigMap installed next to the manifests (see docs/install.md)."""
    path = ROOT / "grafana" / "provisioning" / "configmap.yaml"
    (configmap,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    kubernetes_validate.validate(configmap, K8S_VERSIONS[0], strict=True)
    rules = yaml.safe_load((MANIFESTS / "rules" / "prometheusrule.yaml").read_text())
    assert rules["kind"] == "PrometheusRule" and rules["spec"]["groups"]


def test_istio_objects_match_istio_crds_and_weights_sum_to_100() -> None:
    istio = [(n, o) for n, o in all_objects() if group(o) == "networking.istio.io"]
    assert {o["kind"] for _, o in istio} == {"Gateway", "VirtualService"}
    for name, obj in istio:
        errors = list(istio_validator(obj["kind"]).iter_errors(obj))
        assert not errors, f"{name}: {ident(obj)}: {[e.message for e in errors]}"
        for route in (obj["spec"].get("http") or []) if obj["kind"] == "VirtualService" else []:
            weights = [d.get("weight") for d in route["route"] if "weight" in d]
            assert not weights or sum(weights) == 100, f"{ident(obj)} route {route.get('name')}"


def test_canaryd_objects_pass_the_crd_schema_and_the_model() -> None:
    schemas = lint.load_crd_schemas(ROOT / "crds")
    assert set(schemas) == set(lint.MODELS)
    found = 0
    for name in KUSTOMIZATIONS:
        text = yaml.safe_dump_all(build(name))
        docs, syntax = lint.read_documents(name, text)
        assert not syntax
        findings = lint.lint_documents(docs, schemas)
        # The built set is complete: every reference resolves, so not even a warning.
        assert not findings, "\n".join(map(str, findings))
        found += sum(d.kind in lint.MODELS for d in docs)
    assert found == 3  # the example's Rollout, MetricTemplate, AlertProvider


def test_example_files_lint_clean_with_canaryd_lint(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(p) for p in (MANIFESTS / "examples" / "podinfo").glob("*.yaml"))
    assert main(["lint", "--strict", *files]) == 0
    assert capsys.readouterr().out == ""


def controller_deployments(name: str) -> list[dict[str, Any]]:
    deployments = [
        d
        for d in of_kind(build(name), "Deployment")
        if d["metadata"]["namespace"] == "canaryd-system"
    ]
    assert deployments
    return deployments


@pytest.mark.parametrize("name", CONTROLLER_SETS)
def test_controller_pods_are_locked_down(name: str) -> None:
    for deployment in controller_deployments(name):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod.get("hostNetwork") is not True and pod.get("hostPID") is not True
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc.get("privileged") is not True
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]
            assert not container["image"].endswith(":latest") and ":" in container["image"]


@pytest.mark.parametrize("name", CONTROLLER_SETS)
def test_controller_is_highly_available(name: str) -> None:
    objects = build(name)
    for deployment in controller_deployments(name):
        spec = deployment["spec"]
        assert spec["replicas"] == 2
        container = spec["template"]["spec"]["containers"][0]
        assert container["args"][0] == "run"
        # Leader election is canaryd run's default: it must not be switched off, and the
        # Lease must live where the Role allows it (the Pod's namespace).
        assert "--no-leader-elect" not in container["args"]
        assert "--lease-namespace=$(POD_NAMESPACE)" in container["args"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            assert container[probe]["httpGet"]["path"] == path
            assert container[probe]["httpGet"]["port"] in ports
        pod_labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
        pdbs = [
            p
            for p in of_kind(objects, "PodDisruptionBudget")
            if p["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
        ]
        assert len(pdbs) == 1, f"{ident(deployment)} needs exactly one PodDisruptionBudget"
        assert pdbs[0]["spec"]["minAvailable"] == 1


def test_shards_do_not_overlap() -> None:
    deployments = controller_deployments("overlays/sharded")
    assert len(deployments) == 2
    shards = []
    for d in deployments:
        args = d["spec"]["template"]["spec"]["containers"][0]["args"]
        shard = [a for a in args if a.startswith("--shard")]
        assert len(shard) == 1
        shards.append(shard[0])
        assert d["spec"]["selector"]["matchLabels"]["canaryd.io/shard"] in shard[0]
    assert len(set(shards)) == 2


def test_metrics_service_and_servicemonitor_reach_the_controller() -> None:
    objects = build("overlays/production")
    (service,) = [
        s for s in of_kind(objects, "Service") if s["metadata"]["name"] == "canaryd-metrics"
    ]
    (deployment,) = controller_deployments("overlays/production")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    container_ports = {
        p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
    (monitor,) = of_kind(objects, "ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= service_ports


def rbac_rules(objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return [r for o in objects if o["kind"] in ("ClusterRole", "Role") for r in o["rules"]]


@pytest.mark.parametrize("name", CONTROLLER_SETS)
def test_rbac_is_least_privilege(name: str) -> None:
    objects = build(name)
    for rule in rbac_rules(objects):
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], f"wildcard in {key}: {rule}"
        assert "resourceNames" not in rule or rule["resourceNames"]
        # Never read every Secret of the cluster by listing: get by name only.
        if "secrets" in rule["resources"]:
            assert set(rule["verbs"]) == {"get"}
    for binding in of_kind(objects, "ClusterRoleBinding") + of_kind(objects, "RoleBinding"):
        assert binding["roleRef"]["name"] not in {"cluster-admin", "admin", "edit"}
        assert [s["name"] for s in binding["subjects"]] == ["canaryd"]
    accounts = {
        d["spec"]["template"]["spec"]["serviceAccountName"] for d in controller_deployments(name)
    }
    assert accounts == {"canaryd"}


def test_kustomize_crd_bundle_is_the_generated_crds() -> None:
    # `kubectl apply -f crds/` must keep working, so crds/ holds no kustomization; kustomize
    # gets the same CRDs as one generated file inside its root.
    assert not (ROOT / "crds" / "kustomization.yaml").exists()
    bundle = (ROOT / crdgen.BUNDLE).read_text()
    assert bundle == crdgen.render_bundle()
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(bundle)]
    assert sorted(names) == sorted(c["metadata"]["name"] for c in crdgen.all_crds().values())


def test_controller_args_are_accepted_by_canaryd_run() -> None:
    parser = build_parser()
    for name in CONTROLLER_SETS:
        for deployment in controller_deployments(name):
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            env = {e["name"]: "x" for e in container.get("env", [])}
            args = [_expand(a, env) for a in container["args"]]
            parsed = parser.parse_args(args)
            assert parsed.command == "run"
            assert parsed.in_cluster and parsed.leader_elect
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert parsed.metrics_port == ports["http-metrics"]  # where the probes point


def _expand(arg: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of container args (enough for a parse check)."""
    for key, value in env.items():
        arg = arg.replace(f"$({key})", value)
    assert "$(" not in arg, f"unresolved variable in {arg!r}"
    return arg


def test_manifest_sources_are_plain_yaml() -> None:
    """Every YAML under manifests/ parses (a broken patch file would only fail at apply)."""
    paths = [
        p for p in MANIFESTS.rglob("*.yaml") if "rules" not in Path(p).relative_to(MANIFESTS).parts
    ]
    assert len(paths) >= 20
    for path in paths:
        list(yaml.safe_load_all(path.read_text()))
