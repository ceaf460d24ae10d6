"""kubectl (/usr/bin/kubectl) against the emulator with the written kubeconfig: discovery,
applying CRDs, short names, and ``kubectl get`` with server-side printer columns."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kubeemu import Emulator
from tests.emulator.conftest import WIDGET_CRD, widget
from tests.support.kube import REPO_CRDS

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


@pytest.fixture
def kubectl(emulator: Emulator, tmp_path: Path):
    kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [
                "kubectl",
                "--kubeconfig",
                str(kubeconfig),
                "--cache-dir",
                str(tmp_path / "cache"),
                *args,
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if ok:
            assert proc.returncode == 0, proc.stderr
        return proc

    return run


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()]


def test_apply_crd_then_get_with_printer_columns(kubectl, tmp_path: Path) -> None:
    crd_dir = tmp_path / "crds"
    crd_dir.mkdir()
    (crd_dir / "widgets.yaml").write_text(yaml.safe_dump(WIDGET_CRD))
    out = kubectl("apply", "-f", str(crd_dir)).stdout
    assert "customresourcedefinition.apiextensions.k8s.io/widgets.example.io created" in out
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(widget("w1", weight=7)))
    assert "widget.example.io/w1 created" in kubectl("apply", "-f", str(tmp_path / "w.yaml")).stdout
    table = rows(kubectl("get", "widgets").stdout)
    assert table[0] == ["NAME", "PHASE", "WEIGHT", "AGE"]
    assert table[1][0] == "w1" and table[1][1] == "7"  # empty PHASE cell collapses
    short = rows(kubectl("get", "wd", "w1").stdout)
    assert short[1][0] == "w1"
    # a schema violation comes back as kubectl's usual "is invalid" error
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(widget("w2", weight=700)))
    bad = kubectl("apply", "-f", str(tmp_path / "bad.yaml"), ok=False)
    assert bad.returncode != 0
    assert 'The Widget "w2" is invalid: spec.weight' in bad.stderr


def apply_deployment(kubectl, tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "app", "image": "podinfo:1"}]},
                    },
                },
            }
        )
    )
    kubectl("apply", "-f", str(tmp_path / "web.yaml"))


def test_get_builtin_and_istio_tables(kubectl, emulator: Emulator, tmp_path: Path) -> None:
    (tmp_path / "vs.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": "podinfo", "namespace": "default"},
                "spec": {
                    "hosts": ["podinfo"],
                    "http": [
                        {"route": [{"destination": {"host": "podinfo-primary"}, "weight": 100}]}
                    ],
                },
            }
        )
    )
    kubectl("apply", "-f", str(tmp_path / "vs.yaml"))
    vs = rows(kubectl("get", "vs").stdout)
    assert vs[0] == ["NAME", "GATEWAYS", "HOSTS", "AGE"]
    assert vs[1][:2] == ["podinfo", '["podinfo"]']
    apply_deployment(kubectl, tmp_path)
    out = kubectl("get", "deploy", "web").stdout
    assert rows(out)[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    ns = rows(kubectl("get", "ns").stdout)
    assert ns[1][:2] == ["default", "Active"]


def test_reapply_sends_strategic_merge_patch(kubectl, emulator: Emulator, tmp_path: Path) -> None:
    apply_deployment(kubectl, tmp_path)
    text = (tmp_path / "web.yaml").read_text().replace("podinfo:1", "podinfo:2")
    (tmp_path / "web.yaml").write_text(text)
    emulator.clear_audit()
    assert (
        "deployment.apps/web configured"
        in kubectl("apply", "-f", str(tmp_path / "web.yaml")).stdout
    )
    assert [r.verb for r in emulator.audit if r.resource == "deployments"] == ["get", "patch"]
    out = kubectl(
        "get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[*].image}"
    )
    assert out.stdout == "podinfo:2"


def test_kubectl_scale_and_patch(kubectl, tmp_path: Path) -> None:
    apply_deployment(kubectl, tmp_path)
    kubectl("scale", "deployment", "web", "--replicas=3")
    kubectl(
        "patch", "deployment", "web", "--type=merge", "-p", '{"metadata":{"labels":{"team":"a"}}}'
    )
    out = kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.metadata.labels.team}")
    assert out.stdout == "3 a"


def test_repository_crds_apply_and_are_discoverable(tmp_path: Path) -> None:
    """canaryd's own ``crds/`` through ``kubectl apply -f crds/``, as the README says."""
    crd_files = sorted(REPO_CRDS.glob("*.yaml"))
    assert crd_files, "crds/ holds no CRD files"
    emu = Emulator(install_istio=False).start()
    try:
        kubeconfig = emu.write_kubeconfig(tmp_path / "kubeconfig")
        base = ["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(tmp_path / "c")]

        def run(*args: str) -> str:
            proc = subprocess.run(
                [*base, *args], check=False, capture_output=True, text=True, timeout=60
            )
            assert proc.returncode == 0, proc.stderr
            return proc.stdout + proc.stderr

        run("apply", "-f", str(REPO_CRDS))
        resources = run("api-resources", "--api-group=canaryd.io")
        for f in crd_files:
            crd = yaml.safe_load(f.read_text())
            names = crd["spec"]["names"]
            line = next(x for x in resources.splitlines() if x.startswith(names["plural"] + " "))
            for short in names.get("shortNames", []):
                assert short in line
            assert "No resources found" in run("get", names["plural"])
    finally:
        emu.stop()
