"""``canaryd lint``: schema and model errors with the exact line and column of the offending
node, YAML syntax errors, references across files, exit codes, stdin, and the CRD source."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from canaryd.cli import lint
from canaryd.cli.main import main as canaryd
from tests.ship.manifests import ROOT

GOOD = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27"}]
---
apiVersion: canaryd.io/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  targetRef: {name: web}
  service: {port: 80}
  analysis:
    metrics:
    - {name: errors, kind: errorRate}
    - {name: custom, kind: template, templateRef: {name: web-custom}, thresholdRange: {max: 1}}
  alerts:
  - {name: team, providerRef: {name: slack}}
"""

TEMPLATE_AND_PROVIDER = """\
apiVersion: canaryd.io/v1alpha1
kind: MetricTemplate
metadata:
  name: web-custom
spec:
  query: sum(up{namespace="{{ namespace }}"})
---
apiVersion: canaryd.io/v1alpha1
kind: AlertProvider
metadata:
  name: slack
spec:
  webhookSecretRef: {name: slack, key: url}
"""

# Line numbers matter below: each error sits on a known line and column.
BROKEN = """\
apiVersion: canaryd.io/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  targetRef:
    name: web
  service:
    port: 80
  virtualServiceRef:
    name: vs
    primaryHost: a
    canaryHost: b
  schedule:
    interval: 1minute
    stepWeights: [5, 0, 50]
  analysis:
    metrics:
    - name: errs
      kind: errorRat
  bogus: 1
---
apiVersion: canaryd.io/v1alpha1
kind: AlertProvider
metadata:
  name: slack
spec:
  channel: "#deploys"
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run(*argv: str) -> int:
    return canaryd(["lint", *argv])


def test_broken_file_reports_each_error_at_its_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, "broken.yaml", BROKEN)
    assert run(file) == 1
    lines = capsys.readouterr().out.splitlines()
    located = {line.split(": ", 2)[0] + ": " + line.split(": ", 2)[1] for line in lines}
    assert located == {
        f"{file}:5:1: spec",  # both service and virtualServiceRef
        f"{file}:7:5: spec.targetRef.name",  # warning: Deployment not in the files
        f"{file}:11:5: spec.virtualServiceRef.name",  # warning: VirtualService not in the files
        f"{file}:15:5: spec.schedule.interval",
        f"{file}:16:22: spec.schedule.stepWeights[1]",
        f"{file}:20:7: spec.analysis.metrics[0].kind",
        f"{file}:21:3: spec.bogus",
        f"{file}:27:1: spec",  # AlertProvider: neither webhook nor token
    }
    text = "\n".join(lines)
    assert f"{file}:16:22: spec.schedule.stepWeights[1]: 0 is less than the minimum of 1" in text
    assert f"{file}:5:1: spec: set exactly one of service, virtualServiceRef" in text
    assert f"{file}:21:3: spec.bogus: unknown field (the API server would drop it)" in text
    assert f"{file}:7:5: spec.targetRef.name: warning: Deployment 'web' not found" in text
    assert "'errorRat' is not one of ['errorRate', 'latency', 'template']" in text


def test_model_only_rules_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Cross-field rules the CRD cannot express come from the model, at the object's path."""
    text = GOOD.replace(
        "  service: {port: 80}\n", "  service: {port: 80}\n  schedule: {startWeight: 60}\n"
    )
    file = write(tmp_path, "rule.yaml", text + "---\n" + TEMPLATE_AND_PROVIDER)
    assert run(file) == 1
    out = capsys.readouterr().out
    assert f"{file}:19:3: spec.schedule: startWeight (60) must not exceed maxWeight (50)" in out


def test_missing_required_field_points_at_its_parent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        "apiVersion: canaryd.io/v1alpha1\nkind: MetricTemplate\n"
        "metadata:\n  name: q\nspec:\n  prometheus: {}\n"
    )
    file = write(tmp_path, "missing.yaml", text)
    assert run(file) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{file}:5:1: spec.query: required field is missing (CRD schema)"]


def test_references_resolve_across_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rollout = write(tmp_path, "rollout.yaml", GOOD)
    others = write(tmp_path, "others.yaml", TEMPLATE_AND_PROVIDER)
    assert run("--strict", rollout, others) == 0
    assert capsys.readouterr().out == ""
    # Alone, the Rollout's references are unknown: warnings (exit 0), errors under --strict.
    assert run(rollout) == 0
    out = capsys.readouterr().out
    assert (
        f"{rollout}:22:52: spec.analysis.metrics[1].templateRef.name: "
        "warning: MetricTemplate 'web-custom' not found" in out
    )
    assert (
        f"{rollout}:24:32: spec.alerts[0].providerRef.name: warning: AlertProvider 'slack'" in out
    )
    assert run("--strict", rollout) == 1


def test_reference_in_another_namespace_does_not_resolve(tmp_path: Path) -> None:
    docs, _ = lint.read_documents(
        "a.yaml",
        GOOD.replace(
            "  name: web\nspec:\n  targetRef", "  name: web\n  namespace: prod\nspec:\n  targetRef"
        )
        + "---\n"
        + TEMPLATE_AND_PROVIDER.replace("  name: slack\n", "  name: slack\n  namespace: staging\n"),
    )
    findings = lint.lint_documents(docs, lint.load_crd_schemas())
    assert [f.path for f in findings] == ["spec.alerts[0].providerRef.name"]
    assert "in namespace prod" in findings[0].message


def test_reference_naming_another_namespace_is_an_error(tmp_path: Path) -> None:
    """Issue 9 item 8: the controller resolves templateRef/providerRef in the Rollout's own
    namespace only; lint says so at the reference's namespace."""
    docs, _ = lint.read_documents(
        "a.yaml",
        MINIMAL.replace("namespace: test", "namespace: prod")
        + "  alerts: [{name: a, providerRef: {name: slack, namespace: staging}}]\n"
        + "---\n"
        + TEMPLATE_AND_PROVIDER.replace("  name: slack\n", "  name: slack\n  namespace: staging\n"),
    )
    findings = lint.lint_documents(docs, lint.load_crd_schemas())
    errors = [f for f in findings if f.severity == "error"]
    assert [f.path for f in errors] == ["spec.alerts[0].providerRef.namespace"]
    assert "references resolve only in the Rollout's namespace 'prod'" in errors[0].message


def test_yaml_syntax_error_is_located(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write(tmp_path, "syntax.yaml", "kind: Rollout\nspec:\n  a: [1, 2\n  b: 3\n")
    assert run(file) == 1
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{file}:4:4: <document>: YAML syntax:")


def test_unknown_kind_and_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (
        "apiVersion: canaryd.io/v1alpha1\nkind: Canary\nmetadata: {name: x}\n---\n"
        "apiVersion: canaryd.io/v1\nkind: Rollout\nmetadata: {name: y}\n"
    )
    file = write(tmp_path, "kinds.yaml", text)
    assert run(file) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{file}:2:1: kind: unknown kind")
    assert out[1] == f"{file}:5:1: apiVersion: unknown version; use canaryd.io/v1alpha1"


def test_files_on_disk_and_generated_crds_agree(tmp_path: Path) -> None:
    docs, _ = lint.read_documents("b.yaml", BROKEN)
    from_files = lint.lint_documents(docs, lint.load_crd_schemas(ROOT / "crds"))
    generated = lint.lint_documents(docs, lint.load_crd_schemas())
    assert from_files == generated
    assert len(from_files) == 8


def test_stdin_and_unreadable_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    findings = lint.lint_files(["-"], lint.load_crd_schemas(), stdin=io.StringIO(BROKEN))
    assert all(f.file == "-" for f in findings) and len(findings) == 8
    assert run(str(tmp_path / "absent.yaml")) == 1
    assert "cannot read" in capsys.readouterr().out


def test_node_at_prefers_the_key_line() -> None:
    root = yaml.compose("a:\n  b:\n    - x\n    - y: 1\n")
    assert node_line(root, ["a", "b"]) == 2
    assert node_line(root, ["a", "b", 1, "y"]) == 4
    assert node_line(root, ["a", "missing"]) == 1  # the key of the mapping it belongs in
    assert node_line(root, ["a", "b", 1, "z"]) == 4  # the sequence item
    assert lint.dotted(["spec", "metrics", 0, "name"]) == "spec.metrics[0].name"


def node_line(root: yaml.Node, path: list[str | int]) -> int:
    return int(lint.node_at(root, path).start_mark.line) + 1


VS_ROLLOUT = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web
spec:
  hosts: [web.example.com]
  http:
  - name: admin
    route: [{destination: {host: web-primary}}]
  - name: main
    route: [{destination: {host: web-primary}, weight: 100}]
---
apiVersion: canaryd.io/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  targetRef: {name: web}
  virtualServiceRef:
    name: web
    routes: [mian]
    primaryHost: web-primary
    canaryHost: web-canary
"""


def test_virtual_service_routes_are_checked_like_the_router_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = write(tmp_path, "vs.yaml", VS_ROLLOUT)
    assert run(file) == 1
    out = capsys.readouterr().out
    assert (
        f"{file}:21:5: spec.virtualServiceRef.routes: VirtualService web: "
        "no HTTP route named 'mian' (routes: admin, main)"
    ) in out
    # Without route names, a VirtualService with two HTTP routes is ambiguous.
    file = write(tmp_path, "vs2.yaml", VS_ROLLOUT.replace("    routes: [mian]\n", ""))
    assert run(file) == 1
    assert "has 2 HTTP routes; name the ones to manage" in capsys.readouterr().out
    file = write(tmp_path, "vs3.yaml", VS_ROLLOUT.replace("[mian]", "[main]"))
    assert run(file) == 0


MINIMAL = """\
apiVersion: canaryd.io/v1alpha1
kind: Rollout
metadata: {name: web, namespace: test}
spec:
  targetRef: {name: web}
  service: {port: 80}
"""


def test_unopenable_urls_and_unbounded_values_are_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 9 items 4, 6, 11: URLs that crashed every tick, an interval that overflowed the
    scheduler, and specs the controller accepted silently are lint errors naming the field.
    A trailing newline passes Python's ``$`` but not Go's (the API server's): lint reads
    patterns the Go way."""
    text = MINIMAL + (
        "  schedule: {interval: 100000000000h}\n"
        "  webhooks:\n"
        '    - {name: a, type: rollout, url: "http://[::1"}\n'
        '    - {name: b, type: rollout, url: "http://x/\\n"}\n'
        '    - {name: c, type: rollout, url: "http://[:::::]/"}\n'
    )
    file = write(tmp_path, "urls.yaml", text)
    assert run(file) == 1
    out = capsys.readouterr().out
    assert f"{file}:7:14: spec.schedule.interval: '100000000000h' does not match" in out
    assert f"{file}:9:32: spec.webhooks[0].url: 'http://[::1' does not match" in out
    assert f"{file}:10:32: spec.webhooks[1].url: 'http://x/\\n' does not match" in out
    assert (
        f"{file}:11:32: spec.webhooks[2].url: ':::::' does not appear to be an IPv4 or IPv6" in out
    )
    for rule, message in (
        ("  schedule: {interval: 0s}\n", "spec.schedule.interval: interval must be between"),
        (
            "  analysis: {metrics: [{name: m}, {name: m, kind: latency}]}\n",
            "spec.analysis: metric names must be unique; repeated: ['m']",
        ),
        ("  analysis: {metrics: []}\n", "spec.analysis.metrics: [] should be non-empty"),
    ):
        file = write(tmp_path, "rule.yaml", MINIMAL + rule)
        assert run(file) == 1
        assert message in capsys.readouterr().out, rule
