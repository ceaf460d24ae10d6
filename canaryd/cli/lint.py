"""``canaryd lint FILE...``: check canaryd resources before they reach a cluster.

Every YAML document of the given files (``-`` reads stdin) that is a ``Rollout``,
``MetricTemplate`` or ``AlertProvider`` is validated twice, as the cluster and the controller
would: against the CRD's OpenAPI schema (what the API server rejects at admission) and against
the pydantic model (what the controller rejects: cross-field rules, and unknown fields that the
API server would silently prune). References are checked inside the whole file set: the
``targetRef`` Deployment, a ``virtualServiceRef`` VirtualService, metric ``templateRef`` s and
alert ``providerRef`` s should be among the given documents, or a warning says so (they may
already live in the cluster); a VirtualService that is given must have the routes the Rollout
names (an error: the controller would refuse it).

Each finding is one line, ``FILE:LINE:COL: <field path>: <message>`` (warnings carry
``warning:`` before the message); the line and column are those of the offending YAML node,
found by walking ``yaml.compose``'s node tree along the field path (the parent's position when
the field is missing). Exit status: 1 with any error (or any warning under ``--strict``), else 0.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import jsonschema
import yaml
from pydantic import BaseModel, ValidationError

from canaryd.adapters.istio.routes import managed_indexes
from canaryd.api import crdgen
from canaryd.api.errors import error_message, field_path
from canaryd.api.models import (
    GROUP,
    VERSION,
    AlertProvider,
    MetricTemplate,
    Rollout,
    VirtualServiceRef,
)
from canaryd.core.ports import PermanentError

MODELS: dict[str, type[BaseModel]] = {
    "Rollout": Rollout,
    "MetricTemplate": MetricTemplate,
    "AlertProvider": AlertProvider,
}

PathPart = str | int


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem, located at a YAML node."""

    file: str
    line: int
    column: int
    path: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        level = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}:{self.column}: {self.path}: {level}{self.message}"


@dataclass(frozen=True, slots=True)
class Document:
    """One YAML document: its data, its node tree (for positions) and where it came from."""

    file: str
    node: yaml.Node
    data: Any

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", "")) if isinstance(self.data, dict) else ""

    @property
    def name(self) -> str:
        meta = self.data.get("metadata") if isinstance(self.data, dict) else None
        return str(meta.get("name", "")) if isinstance(meta, dict) else ""

    @property
    def namespace(self) -> str | None:
        meta = self.data.get("metadata") if isinstance(self.data, dict) else None
        ns = meta.get("namespace") if isinstance(meta, dict) else None
        return str(ns) if ns else None

    def at(self, path: Sequence[PathPart], text: str, severity: str = "error") -> Finding:
        mark = node_at(self.node, path).start_mark
        return Finding(self.file, mark.line + 1, mark.column + 1, dotted(path), text, severity)


# --------------------------------------------------------------------------------------------
# paths and positions
# --------------------------------------------------------------------------------------------


def dotted(path: Sequence[PathPart]) -> str:
    """``("spec", "schedule", "stepWeights", 1)`` -> ``spec.schedule.stepWeights[1]``; the
    empty path is the whole ``<document>``."""
    return field_path(path) or "<document>"


def node_at(root: yaml.Node, path: Sequence[PathPart]) -> yaml.Node:
    """The node at ``path`` below ``root``: a mapping key's own node when the path ends on a key
    (that is the line users look for); when the path leaves the document (a missing field), the
    key of the deepest mapping that exists, else the deepest node on the way."""
    node, last_key = root, root
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, yaml.MappingNode):
            match = next((kv for kv in node.value if kv[0].value == str(part)), None)
            if match is None:
                return last_key
            last_key = match[0]
            node = match[0] if last else match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return node
            node = last_key = node.value[part]
        else:
            return node
    return node


def read_documents(file: str, text: str) -> tuple[list[Document], list[Finding]]:
    """Parse every document of one file; a syntax error becomes a finding at its mark."""
    docs: list[Document] = []
    try:
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            if node is None:
                continue
            loader = yaml.SafeLoader("")
            data = loader.construct_document(node)
            docs.append(Document(file, node, data))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return docs, [Finding(file, line, col, "<document>", f"YAML syntax: {exc.problem}")]
    return docs, []


# --------------------------------------------------------------------------------------------
# schemas
# --------------------------------------------------------------------------------------------


def crd_schemas(crds: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """kind -> ``openAPIV3Schema`` of version ``v1alpha1`` for every canaryd.io CRD among
    ``crds`` (other objects are ignored)."""
    schemas: dict[str, dict[str, Any]] = {}
    for doc in crds:
        if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc.get("spec") or {}
        if spec.get("group") != GROUP:
            continue
        for version in spec.get("versions") or []:
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if version.get("name") == VERSION and schema:
                schemas[spec["names"]["kind"]] = schema
    return schemas


def load_crd_schemas(directory: Path | None = None) -> dict[str, dict[str, Any]]:
    """The CRD schemas from ``directory`` (``*.yaml``, e.g. what a cluster has installed), or,
    without one, generated from the models exactly as ``crds/`` is (a test in tests/crds keeps
    the committed files equal to the generator's output)."""
    if directory is None:
        return crd_schemas(crdgen.all_crds().values())
    docs: list[Any] = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        docs += yaml.safe_load_all(path.read_text())
    return crd_schemas(docs)


COMPOUND = frozenset({"oneOf", "anyOf", "allOf", "not"})


def schema_findings(doc: Document, schema: Mapping[str, Any]) -> list[tuple[Finding, bool]]:
    """Violations of the CRD schema, each at the most precise path (a missing required field
    at that field's path, positioned at its parent), with a flag for cross-field rules
    (oneOf/anyOf/not) that a more precise finding may explain better."""
    validator = crdgen.SchemaValidator(schema)  # OpenAPI 3.0 keywords, Go regex semantics
    findings = []
    for error in sorted(validator.iter_errors(doc.data), key=lambda e: list(map(str, e.path))):
        path: list[PathPart] = list(error.absolute_path)
        message = _short(error)
        if error.validator == "required":
            missing = next(
                (p for p in error.validator_value if p not in (error.instance or {})), None
            )
            if missing is not None:
                path.append(missing)
                message = "required field is missing"
        finding = doc.at(path, f"{message} (CRD schema)")
        # A cross-field rule that is not about which fields are set may be explained better
        # by a finding below it (e.g. an enum violation inside an anyOf branch).
        vague = error.validator in COMPOUND and not message.startswith("set ")
        findings.append((finding, vague))
    return findings


def _short(error: jsonschema.ValidationError) -> str:
    """jsonschema's message without a long repr of the instance, and cross-field rules in words."""
    rules = error.validator_value
    if error.validator in ("oneOf", "anyOf") and all(
        isinstance(r, dict) and set(r) == {"required"} for r in rules
    ):
        names = ", ".join(n for r in rules for n in r["required"])
        return f"set {'exactly' if error.validator == 'oneOf' else 'at least'} one of {names}"
    message = str(error.message)
    shown = repr(error.instance)
    if len(shown) > 40 and message.startswith(shown):
        message = f"the {type(error.instance).__name__} value{message[len(shown) :]}"
    return message


def model_findings(doc: Document, model: type[BaseModel]) -> list[Finding]:
    """What the controller's model rejects (cross-field rules, unknown fields, ...)."""
    try:
        model.model_validate(doc.data)
    except ValidationError as exc:
        findings = []
        for err in exc.errors():
            message = error_message(err)
            if err["type"] == "extra_forbidden":
                message = "unknown field (the API server would drop it)"
            elif err["type"] == "missing":
                message = "required field is missing"
            findings.append(doc.at(list(err["loc"]), message))
        return findings
    return []


# --------------------------------------------------------------------------------------------
# references
# --------------------------------------------------------------------------------------------


def reference_findings(docs: Sequence[Document]) -> list[Finding]:
    """Warnings for references to objects that none of the documents define, and for objects
    defined twice. A reference without a namespace means the referrer's namespace; an object
    without a namespace matches any (it is applied into whichever namespace is chosen)."""
    index: dict[tuple[str, str], list[Document]] = {}
    findings = []
    for doc in docs:
        if not doc.kind or not doc.name:
            continue
        twins = index.setdefault((doc.kind, doc.name), [])
        if any(t.namespace == doc.namespace for t in twins):
            findings.append(
                doc.at(["metadata", "name"], f"{doc.kind} {doc.name!r} is defined twice", "warning")
            )
        twins.append(doc)

    def check(
        doc: Document, path: list[PathPart], kind: str, name: object, ns: object
    ) -> list[Document]:
        if not isinstance(name, str):
            return []
        if isinstance(ns, str) and ns and ns != doc.namespace:
            # The controller resolves references in the Rollout's own namespace only.
            at = [*path[:-1], "namespace"]
            if doc.namespace is None:
                text = (
                    f"references resolve only in the Rollout's own namespace: this works only "
                    f"if the Rollout is applied into {ns!r}"
                )
                findings.append(doc.at(at, text, "warning"))
            else:
                text = (
                    f"{kind} in namespace {ns!r}: references resolve only in the Rollout's "
                    f"namespace {doc.namespace!r} (the controller refuses it)"
                )
                findings.append(doc.at(at, text))
                return []
        want_ns = ns if isinstance(ns, str) and ns else doc.namespace
        found = [
            d
            for d in index.get((kind, name), [])
            if d.namespace is None or want_ns is None or d.namespace == want_ns
        ]
        if not found:
            where = f" in namespace {want_ns}" if want_ns else ""
            text = f"{kind} {name!r} not found in the given files{where}"
            findings.append(doc.at(path, text, "warning"))
        return found

    for doc in docs:
        spec = doc.data.get("spec") if isinstance(doc.data, dict) else None
        if doc.kind != "Rollout" or not isinstance(spec, dict):
            continue
        for key, kind in (("targetRef", "Deployment"), ("virtualServiceRef", "VirtualService")):
            ref = spec.get(key)
            if isinstance(ref, dict):
                found = check(doc, ["spec", key, "name"], kind, ref.get("name"), None)
                if key == "virtualServiceRef" and found:
                    findings += route_findings(doc, ref, found[0])
        analysis = spec.get("analysis")
        metrics = analysis.get("metrics") if isinstance(analysis, dict) else None
        for i, metric in enumerate(metrics if isinstance(metrics, list) else []):
            ref = metric.get("templateRef") if isinstance(metric, dict) else None
            if isinstance(ref, dict):
                path: list[PathPart] = ["spec", "analysis", "metrics", i, "templateRef", "name"]
                check(doc, path, "MetricTemplate", ref.get("name"), ref.get("namespace"))
        alerts = spec.get("alerts")
        for i, alert in enumerate(alerts if isinstance(alerts, list) else []):
            ref = alert.get("providerRef") if isinstance(alert, dict) else None
            if isinstance(ref, dict):
                path = ["spec", "alerts", i, "providerRef", "name"]
                check(doc, path, "AlertProvider", ref.get("name"), ref.get("namespace"))
    return findings


def route_findings(doc: Document, ref: Mapping[str, Any], vs: Document) -> list[Finding]:
    """The routes a ``virtualServiceRef`` names must exist in the VirtualService given; the
    check is the Istio router's own, so the message is the one the Rollout would show."""
    try:
        parsed = VirtualServiceRef.model_validate(ref)
    except ValidationError:
        return []  # reported by the model check
    try:
        managed_indexes(vs.data, parsed)
    except PermanentError as exc:
        return [doc.at(["spec", "virtualServiceRef", "routes"], str(exc))]
    return []


# --------------------------------------------------------------------------------------------
# the whole check
# --------------------------------------------------------------------------------------------


def lint_documents(
    docs: Sequence[Document], schemas: Mapping[str, Mapping[str, Any]]
) -> list[Finding]:
    """All findings for a set of documents (already parsed), in file and line order."""
    findings: list[Finding] = []
    for doc in docs:
        if not isinstance(doc.data, dict):
            findings.append(doc.at([], "a Kubernetes object must be a mapping"))
            continue
        api_version = str(doc.data.get("apiVersion", ""))
        if not api_version or not doc.kind:
            findings.append(doc.at([], "apiVersion and kind are required"))
            continue
        if api_version.split("/", maxsplit=1)[0] != GROUP:
            continue
        model = MODELS.get(doc.kind)
        if model is None:
            findings.append(doc.at(["kind"], f"unknown kind; one of {sorted(MODELS)}"))
            continue
        if api_version != f"{GROUP}/{VERSION}":
            findings.append(doc.at(["apiVersion"], f"unknown version; use {GROUP}/{VERSION}"))
            continue
        from_schema = schema_findings(doc, schemas[doc.kind]) if doc.kind in schemas else []
        simple = [f for f, is_vague in from_schema if not is_vague]
        reported = {f.path for f in simple}
        # The model repeats most schema errors in its own words: keep only what it adds.
        from_model = [f for f in model_findings(doc, model) if f.path not in reported]
        precise = simple + from_model
        # A vague oneOf/anyOf failure says little when a finding at or below it says why.
        vague = [
            f
            for f, is_vague in from_schema
            if is_vague and not any(_within(p.path, f.path) for p in precise)
        ]
        findings += precise + vague
    findings += reference_findings(docs)
    return sorted(findings, key=lambda f: (f.file, f.line, f.column))


def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith((parent + ".", parent + "["))


def lint_files(
    files: Iterable[str], schemas: Mapping[str, Mapping[str, Any]], stdin: TextIO | None = None
) -> list[Finding]:
    docs: list[Document] = []
    findings: list[Finding] = []
    for file in files:
        try:
            text = (stdin or sys.stdin).read() if file == "-" else Path(file).read_text()
        except OSError as exc:
            findings.append(Finding(file, 1, 1, "<file>", f"cannot read: {exc.strerror}"))
            continue
        file_docs, syntax = read_documents(file, text)
        docs += file_docs
        findings += syntax
    return findings + lint_documents(docs, schemas)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="YAML files ('-' for stdin)")
    parser.add_argument(
        "--crds",
        type=Path,
        default=None,
        metavar="DIR",
        help="directory of canaryd CRD YAML to check against (default: this version's CRDs)",
    )
    parser.add_argument("--strict", action="store_true", help="warnings fail the check too")
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary line")


def main(args: argparse.Namespace) -> int:
    if args.crds is not None and not args.crds.is_dir():
        print(f"error: --crds {args.crds}: not a directory", file=sys.stderr)
        return 2
    schemas = load_crd_schemas(args.crds)
    if not schemas:
        print(f"warning: no canaryd CRDs in {args.crds}; checking the model only", file=sys.stderr)
    findings = lint_files(args.files, schemas)
    for finding in findings:
        print(finding)
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    if not args.quiet:
        print(
            f"{errors} error(s), {warnings} warning(s) in {len(args.files)} file(s)",
            file=sys.stderr,
        )
    return 1 if errors or (args.strict and warnings) else 0
