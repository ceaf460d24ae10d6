"""The controller image definition (no container engine here, so checked without one): base
image, unprivileged numeric user matching the manifests, entry point, build context, and a
wheel built from exactly the files the Dockerfile copies (what ``pip wheel .`` does in it)."""

from __future__ import annotations

import fnmatch
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from tests.ship.manifests import ROOT, build, of_kind

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line.removesuffix("\\").strip() + " "
        if not line.endswith("\\"):
            keyword, _, args = pending.strip().partition(" ")
            out.append((keyword.upper(), args.strip()))
            pending = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def copied_sources() -> list[str]:
    sources = []
    for keyword, args in instructions():
        if keyword == "COPY" and not args.startswith("--from"):
            sources += shlex.split(args)[:-1]
    return sources


def test_every_stage_is_python_311_slim() -> None:
    bases = [args.split()[0] for k, args in instructions() if k == "FROM"]
    assert bases and all(b == "python:3.11-slim" for b in bases)


def test_runs_as_the_unprivileged_user_of_the_manifests() -> None:
    users = [args for k, args in final_stage() if k == "USER"]
    assert users, "the final stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, "numeric, so the kubelet can verify runAsNonRoot"
    assert gid.isdigit() and int(gid) > 0
    for deployment in of_kind(build("base"), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]["securityContext"]
        assert (pod["runAsUser"], pod["runAsGroup"]) == (int(uid), int(gid))


def test_entrypoint_is_the_canaryd_command() -> None:
    (entry,) = [args for k, args in final_stage() if k == "ENTRYPOINT"]
    assert entry == '["canaryd"]'
    (cmd,) = [args for k, args in final_stage() if k == "CMD"]
    assert cmd == '["run"]'
    ports = [args for k, args in final_stage() if k == "EXPOSE"]
    assert ports == ["8080"]


def test_build_context_keeps_what_the_image_copies() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = copied_sources()
    assert {"pyproject.toml", "canaryd", "analysis"} <= set(sources)
    for source in sources:
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source
    for pattern in (".git", ".venv", "tests"):
        assert pattern in ignored


def test_package_from_the_copied_files_has_the_controller(tmp_path: Path) -> None:
    """What ``pip wheel .`` in the image packages, from exactly the files the Dockerfile copies
    (setuptools' egg_info: the same discovery and metadata, without needing the wheel tool).
    Needs README.md (pyproject's readme), exactly as ``docker build`` does."""
    context = tmp_path / "context"
    context.mkdir()
    for source in copied_sources():
        src = ROOT / source
        if src.is_dir():
            shutil.copytree(src, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, context / source)
    out = tmp_path / "meta"
    out.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import setuptools; setuptools.setup()",
            "-q",
            "egg_info",
            "--egg-base",
            str(out),
        ],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (info,) = out.glob("canaryd.egg-info")
    assert (info / "top_level.txt").read_text().split() == ["analysis", "canaryd"]
    sources = set((info / "SOURCES.txt").read_text().split())
    for module in ("canaryd/cli/main.py", "canaryd/cli/run.py", "canaryd/py.typed"):
        assert module in sources
    assert "canaryd = canaryd.cli.main:main" in (info / "entry_points.txt").read_text()
