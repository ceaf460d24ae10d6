"""The operator CLI against the API emulator over HTTP, through a written kubeconfig:
``get rollouts`` (table, -A, json, yaml, name), ``status`` (evidence, conditions, events),
``status --watch`` exit codes while the Rollout's status changes underneath (status
subresource), ``promote``/``abort``/``retry`` annotations (+ ``--wait``), ``pause``/``resume``,
errors, shell completion, and one run as a subprocess."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from canaryd.cli import ops
from canaryd.cli.main import build_parser
from canaryd.cli.main import main as canaryd
from canaryd.cli.ops import ACTION_ANNOTATION, EXIT_API_ERROR, EXIT_FAILED, EXIT_TIMEOUT
from kubeemu import Emulator
from tests.ship.samples import ERROR_RATE_EVIDENCE

GROUP, VERSION, PLURAL = "canaryd.io", "v1alpha1", "rollouts"


@pytest.fixture
def emu(emulator: Emulator) -> Emulator:
    return emulator


@pytest.fixture
def kubeconfig(emu: Emulator, tmp_path: Path) -> str:
    return str(emu.write_kubeconfig(tmp_path / "kubeconfig"))


@pytest.fixture
def custom(emu: Emulator) -> Any:
    api = emu.api_client()
    core = kubernetes.client.CoreV1Api(api)
    for ns in ("shop", "blog"):
        core.create_namespace({"metadata": {"name": ns}})
    return kubernetes.client.CustomObjectsApi(api)


def make_rollout(custom: Any, name: str, namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {"targetRef": {"name": name}, "service": {"port": 80}, **spec},
    }
    obj: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )
    return obj


def set_status(custom: Any, name: str, status: dict[str, Any], namespace: str = "shop") -> None:
    """Write the status as the controller does: through the status subresource."""
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": status}
    )


def read(custom: Any, name: str, namespace: str = "shop") -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return obj


def cli(kubeconfig: str, *argv: str) -> int:
    return canaryd([*argv[:1], "--kubeconfig", kubeconfig, *argv[1:]])


PROGRESSING = {
    "phase": "Progressing",
    "observedGeneration": 1,
    "canaryWeight": 10,
    "currentStep": 1,
    "weightHistory": [5, 10],
    "verdict": "Inconclusive",
    "canaryRevision": "c0ffee",
    "stableRevision": "beef00",
    "analysis": {"outcome": "Inconclusive", "metrics": [ERROR_RATE_EVIDENCE]},
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Progressing",
            "message": "canary at 10%",
            "lastTransitionTime": "2026-11-25T12:00:00Z",
        }
    ],
}


# --------------------------------------------------------------------------------------------
# get
# --------------------------------------------------------------------------------------------


def test_get_rollouts_table(
    custom: Any, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make_rollout(custom, "web")
    make_rollout(custom, "api", schedule={"stepWeights": [5, 20, 40, 60, 80]})
    set_status(custom, "web", PROGRESSING)
    assert cli(kubeconfig, "get", "rollouts", "-n", "shop") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "WEIGHT", "STEP", "VERDICT", "AGE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["web"][1:5] == ["Progressing", "10%", "2/4", "Inconclusive"]
    assert rows["api"][1:5] == ["Pending", "0%", "0/5", "-"]
    assert rows["web"][5].endswith("s")  # created seconds ago


def test_get_all_namespaces_and_the_context_namespace(
    custom: Any, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make_rollout(custom, "web")
    make_rollout(custom, "blog", namespace="blog")
    assert cli(kubeconfig, "get", "rollouts", "-A") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert [line.split()[:2] for line in lines[1:]] == [["blog", "blog"], ["shop", "web"]]
    # Without -n: the kubeconfig context's namespace (default), which has none.
    assert cli(kubeconfig, "get", "cdro") == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "No rollouts found in namespace default." in captured.err


def test_context_picks_cluster_and_namespace(
    emu: Emulator, custom: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--context chooses among several: here the current one points at a dead address."""
    config = emu.kubeconfig()
    config["clusters"].append({"name": "dead", "cluster": {"server": "http://127.0.0.1:9"}})
    config["contexts"] = [
        {"name": "prod", "context": {"cluster": "dead", "user": "kubeemu"}},
        {"name": "lab", "context": {"cluster": "kubeemu", "user": "kubeemu", "namespace": "shop"}},
    ]
    config["current-context"] = "prod"
    path = tmp_path / "two-contexts"
    path.write_text(yaml.safe_dump(config))
    make_rollout(custom, "web")
    assert canaryd(["get", "rollouts", "--kubeconfig", str(path), "--context", "lab"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == "web"


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_get_structured_output(
    custom: Any, kubeconfig: str, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    make_rollout(custom, "web")
    set_status(custom, "web", PROGRESSING)
    assert cli(kubeconfig, "get", "rollouts", "-n", "shop", "-o", fmt) == 0
    text = capsys.readouterr().out
    data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert data["kind"] == "List"
    (item,) = data["items"]
    assert item["metadata"]["name"] == "web"
    assert item["status"]["canaryWeight"] == 10


def test_get_names(custom: Any, kubeconfig: str, capsys: pytest.CaptureFixture[str]) -> None:
    make_rollout(custom, "web")
    make_rollout(custom, "api")
    assert cli(kubeconfig, "get", "rollouts", "-n", "shop", "-o", "name") == 0
    assert capsys.readouterr().out.splitlines() == [
        "rollout.canaryd.io/api",
        "rollout.canaryd.io/web",
    ]


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------


def test_status_shows_evidence_conditions_and_events(
    emu: Emulator, custom: Any, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    uid = make_rollout(custom, "web")["metadata"]["uid"]
    set_status(custom, "web", PROGRESSING)
    core = kubernetes.client.CoreV1Api(emu.api_client())
    for name, kind, reason in (("web", "Rollout", "Advanced"), ("web", "Deployment", "Scaled")):
        core.create_namespaced_event(
            "shop",
            {
                "metadata": {"name": f"{name}.{kind.lower()}"},
                "involvedObject": {"kind": kind, "name": name, "namespace": "shop", "uid": uid},
                "reason": reason,
                "message": f"{reason} happened",
                "type": "Normal",
                "lastTimestamp": "2026-11-25T12:00:05Z",
            },
        )
    assert cli(kubeconfig, "status", "web", "-n", "shop") == 0
    text = capsys.readouterr().out
    assert "Phase:       Progressing" in text
    assert "Progress:    [############............] 2/4" in text
    assert "canary 10% / primary 90%" in text
    evidence = next(line for line in text.splitlines() if line.strip().startswith("error-rate"))
    assert "+4% [-30%, +55%]" in evidence and "not enough evidence yet" in evidence
    assert "canary at 10%" in text  # the condition
    assert "Advanced happened" in text
    assert "Scaled happened" not in text  # an event of another object


def test_status_json(custom: Any, kubeconfig: str, capsys: pytest.CaptureFixture[str]) -> None:
    make_rollout(custom, "web")
    set_status(custom, "web", PROGRESSING)
    assert cli(kubeconfig, "status", "web", "-n", "shop", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out)["status"]["verdict"] == "Inconclusive"


def test_status_of_a_missing_rollout_is_an_api_error(
    custom: Any, emu: Emulator, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(kubeconfig, "status", "nope", "-n", "shop") == EXIT_API_ERROR
    assert "error: 404" in capsys.readouterr().err


def change_later(emu: Emulator, steps: list[tuple[float, Callable[[], None]]]) -> threading.Thread:
    """Run each change after its delay, in a thread (the controller's part in these tests).

    The delays count from the CLI's first read of the Rollout (seen in the emulator's audit),
    not from the call: on a loaded machine the CLI may start later than a fixed delay, and a
    change made before its first read would never be seen as a change."""
    emu.clear_audit()

    def cli_has_read() -> bool:
        return any(
            r.resource == "rollouts" and r.verb in ("get", "list", "watch") for r in emu.audit
        )

    def run() -> None:
        deadline = time.monotonic() + 30
        while not cli_has_read() and time.monotonic() < deadline:
            time.sleep(0.02)
        for delay, change in steps:
            time.sleep(delay)
            change()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(("final", "code"), [("Succeeded", 0), ("Failed", EXIT_FAILED)])
def test_status_watch_follows_to_the_end(
    custom: Any,
    emu: Emulator,
    kubeconfig: str,
    capsys: pytest.CaptureFixture[str],
    final: str,
    code: int,
) -> None:
    make_rollout(custom, "web")
    set_status(
        custom, "web", {**PROGRESSING, "canaryWeight": 5, "currentStep": 0, "weightHistory": [5]}
    )
    done = {
        **PROGRESSING,
        "phase": final,
        "canaryWeight": 0,
        "verdict": "Pass" if code == 0 else "Fail",
    }
    thread = change_later(
        emu,
        [
            (0.3, lambda: set_status(custom, "web", PROGRESSING)),
            (0.3, lambda: set_status(custom, "web", done)),
        ],
    )
    started = time.monotonic()
    assert cli(kubeconfig, "status", "web", "-n", "shop", "--watch", "--timeout", "20") == code
    assert time.monotonic() - started < 10
    thread.join(5)
    out = capsys.readouterr().out
    progress = [line for line in out.splitlines() if "shop/web" in line]
    assert "weight   5%" in progress[0] and "step 1/4" in progress[0]
    assert any("weight  10%" in line for line in progress)
    assert final in progress[-1]
    assert f"Phase:       {final}" in out  # the full view at the end


class Terminal(io.StringIO):
    """An in-memory stream that says it is a terminal (what ``--watch`` checks)."""

    def isatty(self) -> bool:
        return True


def test_status_watch_redraws_in_place_on_a_terminal(
    custom: Any, emu: Emulator, kubeconfig: str
) -> None:
    make_rollout(custom, "web")
    set_status(custom, "web", PROGRESSING)
    change_later(
        emu, [(0.3, lambda: set_status(custom, "web", {**PROGRESSING, "phase": "Succeeded"}))]
    )
    args = build_parser().parse_args(
        ["status", "web", "-n", "shop", "-w", "--timeout", "20", "--kubeconfig", kubeconfig]
    )
    screen = Terminal()
    assert ops.cmd_status(args, screen) == 0
    frames = screen.getvalue().split(ops.CLEAR_SCREEN)[1:]
    assert len(frames) == 3  # the first state, the change, the final view
    assert "Phase:       Progressing" in frames[0] and "Analysis:" in frames[0]
    assert "Phase:       Succeeded" in frames[-1]


def test_status_watch_times_out(
    custom: Any, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make_rollout(custom, "web")
    set_status(custom, "web", PROGRESSING)
    started = time.monotonic()
    assert cli(kubeconfig, "status", "web", "-n", "shop", "-w", "--timeout", "1.5") == EXIT_TIMEOUT
    assert 1.4 < time.monotonic() - started < 8
    assert "timed out after 1.5s" in capsys.readouterr().err


def test_status_watch_waits_for_the_controller_to_see_the_new_spec(
    custom: Any, emu: Emulator, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Right after a spec change the old Succeeded must not end the wait."""
    make_rollout(custom, "web")
    set_status(custom, "web", {**PROGRESSING, "phase": "Succeeded", "observedGeneration": 1})
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "shop", PLURAL, "web", {"spec": {"schedule": {"interval": "30s"}}}
    )
    assert read(custom, "web")["metadata"]["generation"] == 2
    failed = {**PROGRESSING, "phase": "Failed", "observedGeneration": 2}
    change_later(emu, [(0.5, lambda: set_status(custom, "web", failed))])
    assert cli(kubeconfig, "status", "web", "-n", "shop", "-w", "--timeout", "20") == EXIT_FAILED


def test_status_watch_survives_compacted_history(
    emu: Emulator, custom: Any, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """410 Gone (watch history compacted while we were away) re-reads and goes on."""
    make_rollout(custom, "web")
    set_status(custom, "web", PROGRESSING)

    def compact_then_succeed() -> None:
        emu.faults.drop_watches()
        for i in range(3):
            set_status(custom, "web", {**PROGRESSING, "message": f"tick {i}"})
        emu.compact()
        set_status(custom, "web", {**PROGRESSING, "phase": "Succeeded"})

    change_later(emu, [(0.5, compact_then_succeed)])
    assert cli(kubeconfig, "status", "web", "-n", "shop", "-w", "--timeout", "20") == 0


# --------------------------------------------------------------------------------------------
# manual actions, pause / resume
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["promote", "abort", "retry"])
def test_actions_write_a_unique_annotation(
    custom: Any, kubeconfig: str, capsys: pytest.CaptureFixture[str], verb: str
) -> None:
    make_rollout(custom, "web")
    assert cli(kubeconfig, verb, "web", "-n", "shop") == 0
    first = read(custom, "web")["metadata"]["annotations"][ACTION_ANNOTATION]
    assert cli(kubeconfig, verb, "web", "-n", "shop") == 0
    second = read(custom, "web")["metadata"]["annotations"][ACTION_ANNOTATION]
    assert first.startswith(f"{verb}:") and second.startswith(f"{verb}:")
    assert first != second  # a repeated command is a new action, consumed once more
    assert f"{verb} requested (action id {second.split(':', 1)[1]})" in capsys.readouterr().out
    # The spec is untouched: no new generation, so no restarted analysis.
    assert read(custom, "web")["metadata"]["generation"] == 1


def test_action_wait_returns_once_consumed(
    custom: Any, emu: Emulator, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make_rollout(custom, "web")
    change_later(emu, [(0.4, lambda: set_status(custom, "web", {"consumedAction": "promote:x1"}))])
    assert cli(kubeconfig, "promote", "web", "-n", "shop", "--id", "x1", "--wait", "10") == 0
    assert "action x1 consumed" in capsys.readouterr().out
    assert cli(kubeconfig, "abort", "web", "-n", "shop", "--wait", "0.6") == EXIT_TIMEOUT
    assert "not consumed within 0.6s" in capsys.readouterr().err


def test_pause_and_resume(custom: Any, kubeconfig: str, capsys: pytest.CaptureFixture[str]) -> None:
    make_rollout(custom, "web")
    assert cli(kubeconfig, "pause", "web", "-n", "shop") == 0
    assert read(custom, "web")["spec"]["paused"] is True
    assert cli(kubeconfig, "resume", "web", "-n", "shop") == 0
    obj = read(custom, "web")
    assert obj["spec"]["paused"] is False
    assert obj["metadata"]["generation"] == 3
    assert capsys.readouterr().out.splitlines() == [
        "rollout.canaryd.io/web paused",
        "rollout.canaryd.io/web resumed",
    ]


def test_action_on_a_missing_rollout(
    custom: Any, kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(kubeconfig, "pause", "ghost", "-n", "shop") == EXIT_API_ERROR
    assert "404" in capsys.readouterr().err


def test_unreachable_server_and_bad_context(
    emu: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = emu.kubeconfig()
    config["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:9"  # nothing listens there
    path = tmp_path / "dead"
    path.write_text(yaml.safe_dump(config))
    assert canaryd(["get", "rollouts", "--kubeconfig", str(path)]) == EXIT_API_ERROR
    assert "error: cannot reach the API server" in capsys.readouterr().err
    assert canaryd(["status", "web", "--kubeconfig", str(path), "--context", "nope"]) == 4
    assert "error: kubeconfig:" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# completion, subprocess
# --------------------------------------------------------------------------------------------


def complete(script: str, words: list[str], env_extra: str = "") -> list[str]:
    """Run the completion function in a real bash for the given command line."""
    line = " ".join(words)
    program = (
        f"{script}\n{env_extra}\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}\n"
        "_canaryd_complete; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    result = subprocess.run(
        ["bash", "--norc", "-c", program], capture_output=True, text=True, timeout=120, check=True
    )
    return sorted(result.stdout.split())


def test_bash_completion(custom: Any, kubeconfig: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert canaryd(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    assert subprocess.run(["bash", "-n", "-c", script], check=False).returncode == 0
    assert complete(script, ["canaryd", "st"]) == ["status"]
    assert complete(script, ["canaryd", "get", "-o", "y"]) == ["yaml"]
    assert "--watch" in complete(script, ["canaryd", "status", "--w"])
    make_rollout(custom, "web")
    make_rollout(custom, "api")
    bin_dir = Path(sys.executable).parent
    names = complete(
        script,
        ["canaryd", "promote", "--kubeconfig", kubeconfig, "-n", "shop", "''"],
        env_extra=f'PATH="{bin_dir}:$PATH"',
    )
    assert names == ["api", "web"]


def test_zsh_completion_wraps_the_bash_function(capsys: pytest.CaptureFixture[str]) -> None:
    assert canaryd(["completion", "zsh"]) == 0
    script = capsys.readouterr().out
    assert "bashcompinit" in script
    assert script.rstrip().endswith("complete -o default -F _canaryd_complete canaryd")


def test_status_watch_as_a_subprocess(custom: Any, emu: Emulator, kubeconfig: str) -> None:
    """What a CI pipeline does: wait on the rollout, read the exit code."""
    make_rollout(custom, "web")
    set_status(custom, "web", PROGRESSING)
    change_later(
        emu, [(1.5, lambda: set_status(custom, "web", {**PROGRESSING, "phase": "Failed"}))]
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "canaryd",
            "status",
            "web",
            "--kubeconfig",
            kubeconfig,
            "-n",
            "shop",
            "--watch",
            "--timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == EXIT_FAILED, result.stderr
    assert "Phase:       Failed" in result.stdout
