"""Operator commands, in the spirit of ``kubectl argo rollouts``.

``get rollouts``, ``status NAME [--watch]``, ``promote``, ``abort``, ``retry``, ``pause``,
``resume`` and ``completion bash|zsh``. Each is registered in :data:`canaryd.cli.main.COMMANDS`
pointing at this module; :func:`configure` learns which sub-command it is building from the
parser's ``prog`` (``"canaryd status"``), so one module serves the whole family.

Every command talks to the API server through canaryd's one transport
(:mod:`canaryd.adapters.transport`: the official client's configuration, retries, the error
taxonomy) with any kubeconfig (``--kubeconfig``, ``--context``; in-cluster config when no
kubeconfig exists).
Manual actions are written the way the controller reads them: ``promote`` / ``abort`` /
``retry`` merge-patch the annotation ``canaryd.io/action: <verb>:<unique id>`` (the controller
consumes an id exactly once and records it in ``status.consumedAction``); ``pause`` / ``resume``
merge-patch ``spec.paused``.

Exit codes: 0 success (``status --watch``: the rollout Succeeded), 1 the rollout Failed,
2 usage error, 3 ``--timeout`` reached, 4 API error (e.g. the Rollout does not exist).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import kubernetes
from pydantic import ValidationError

from canaryd import __version__
from canaryd.adapters.kube import paths
from canaryd.adapters.transport import (
    GoneError,
    KubeApi,
    RetryPolicy,
    UnreachableError,
    load_api_client,
)
from canaryd.api.models import GROUP, Phase, RolloutStatus, ScheduleSpec
from canaryd.cli import output
from canaryd.controller.manual import ACTION_ANNOTATION
from canaryd.core.ports import PermanentError, TemporaryError

PLURAL = "rollouts"
# Named in the API server's audit log, so operators' actions are told apart from the controller's.
USER_AGENT = f"canaryd-cli/{__version__}"
RESOURCE_NAMES = ("rollouts", "rollout", "ro", "cdro")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 3
EXIT_API_ERROR = 4

VERBS = ("get", "status", "promote", "abort", "retry", "pause", "resume", "completion")
ACTION_VERBS = ("promote", "abort", "retry")
TERMINAL_PHASES = {Phase.SUCCEEDED: EXIT_OK, Phase.FAILED: EXIT_FAILED}
DONE_PHASES = frozenset({Phase.PROMOTING, Phase.FINALISING, Phase.SUCCEEDED})
STEPPING_PHASES = frozenset({Phase.PROGRESSING, Phase.WAITING, Phase.FAILED})
WATCH_CHUNK_SECONDS = 30  # one watch request at most; reconnect (from the last version) after
MAX_WATCH_FAILURES = 8  # consecutive broken watch connections before giving up
CLEAR_SCREEN = "\x1b[H\x1b[2J"  # cursor home + erase display (ANSI), for --watch on a terminal

# The kubernetes client ships without type information: go through Any, on purpose, once.
kube_config: Any = kubernetes.config


# --------------------------------------------------------------------------------------------
# argument parsing
# --------------------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of the sub-command named by the last word of ``parser.prog``."""
    verb = parser.prog.rsplit(" ", 1)[-1]
    if verb not in VERBS:
        raise ValueError(f"sub-command must be one of {set(VERBS)}, got {verb!r}")
    parser.set_defaults(ops_verb=verb)
    if verb == "completion":
        parser.add_argument("shell", choices=("bash", "zsh"), help="shell to generate for")
        return
    _add_connection_args(parser)
    if verb == "get":
        parser.add_argument("resource", choices=RESOURCE_NAMES, help="what to list")
        parser.add_argument(
            "-A", "--all-namespaces", action="store_true", help="list in every namespace"
        )
        parser.add_argument(
            "-o", "--output", choices=output.OUTPUT_FORMATS, default="table", help="format"
        )
        return
    parser.add_argument("name", help="Rollout name")
    if verb == "status":
        parser.add_argument(
            "-w", "--watch", action="store_true", help="follow until Succeeded (0) or Failed (1)"
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            metavar="SECONDS",
            help="with --watch: give up (exit 3) after this long",
        )
        parser.add_argument(
            "-o", "--output", choices=("table", "json", "yaml"), default="table", help="format"
        )
    elif verb in ACTION_VERBS:
        parser.add_argument(
            "--id", default=None, help="action id (default: a fresh random id, so it runs once)"
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=None,
            metavar="SECONDS",
            help="wait until the controller consumed the action (exit 3 if it did not in time)",
        )


def _add_connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG)")
    parser.add_argument("--context", default=None, help="kubeconfig context to use")
    parser.add_argument(
        "-n", "--namespace", default=None, help="namespace (default: the context's, or default)"
    )


def main(args: argparse.Namespace) -> int:
    """Run the sub-command; API, connection and kubeconfig errors become one line and exit 4."""
    try:
        return _HANDLERS[args.ops_verb](args)
    except UnreachableError as exc:
        print(f"error: cannot reach the API server: {_api_error_text(exc)}", file=sys.stderr)
    except (PermanentError, TemporaryError) as exc:
        print(f"error: {_api_error_text(exc)}", file=sys.stderr)
    except kubernetes.config.ConfigException as exc:
        print(f"error: kubeconfig: {exc}", file=sys.stderr)
    return EXIT_API_ERROR


def _api_error_text(exc: Exception) -> str:
    """The transport's message without its ``<what>:`` prefix: ``404 <server message>``."""
    return str(exc).partition(f"{API}: ")[2] or str(exc)


API = "API"
"""The ``what`` of every CLI request (stripped again from error messages)."""


# --------------------------------------------------------------------------------------------
# connection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connection:
    """An API client and the namespace commands act in."""

    api: KubeApi
    namespace: str

    def rollout(self, name: str) -> dict[str, Any]:
        """The Rollout ``name`` of this namespace, as the API returns it."""
        return self.api.get(paths.custom(self.namespace, PLURAL, name), what=API)


def connect(args: argparse.Namespace) -> Connection:
    """Client from ``--kubeconfig``/``--context`` (or ``$KUBECONFIG``, ``~/.kube/config``), or the
    in-cluster service account when no kubeconfig exists and we run in a Pod. The namespace is
    ``-n``, else the context's namespace, else ``default``."""
    config_file = args.kubeconfig or os.environ.get("KUBECONFIG") or None
    in_cluster = (
        config_file is None
        and args.context is None
        and not (Path.home() / ".kube" / "config").exists()
        and bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    )
    client = load_api_client(kubeconfig=config_file, context=args.context, in_cluster=in_cluster)
    client.user_agent = USER_AGENT
    # One try per request: an operator at a terminal wants the error now, not after backoff.
    api = KubeApi(client, retry=RetryPolicy(attempts=1))
    if args.namespace:
        namespace = args.namespace
    elif in_cluster:
        namespace = _incluster_namespace()
    else:
        namespace = _context_namespace(config_file, args.context)
    return Connection(api, namespace)


def _context_namespace(config_file: str | None, context: str | None) -> str:
    contexts, active = kube_config.list_kube_config_contexts(config_file=config_file)
    chosen = active
    if context is not None:
        chosen = next((c for c in contexts if c.get("name") == context), active)
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else "default"


def _incluster_namespace() -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.exists() else "default"


# --------------------------------------------------------------------------------------------
# a Rollout as the CLI shows it
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RolloutView:
    """The columns of one Rollout, read leniently from the raw object: a Rollout whose spec the
    model rejects is still listed (with an unknown number of steps)."""

    namespace: str
    name: str
    phase: str
    weight: int
    step: int
    steps: int | None
    verdict: str
    created: str | None
    message: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> RolloutView:
        meta = obj.get("metadata") or {}
        status = rollout_status(obj)
        steps = _step_count(obj.get("spec") or {})
        return cls(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            phase=status.phase.value if status is not None else "Pending",
            weight=status.canary_weight if status is not None else 0,
            step=_step_number(status, steps),
            steps=steps,
            verdict=status.verdict.value if status is not None and status.verdict else "-",
            created=meta.get("creationTimestamp"),
            message=status.message if status is not None else "",
        )

    @property
    def step_text(self) -> str:
        return f"{self.step}/{self.steps if self.steps is not None else '?'}"


def rollout_status(obj: Mapping[str, Any]) -> RolloutStatus | None:
    """The Rollout's status as the controller's own model; None when there is none yet or it
    cannot be read (an older or foreign writer): the CLI then shows what it can."""
    raw = obj.get("status")
    if not raw:
        return None
    try:
        return RolloutStatus.model_validate(raw)
    except ValidationError:
        return None


def _step_number(status: RolloutStatus | None, steps: int | None) -> int:
    """Steps reached, 1-based: ``status.currentStep`` is the 0-based index of the weight in
    force while a rollout runs; after promotion every step is done; before the first weight
    (or with no rollout at all) none is."""
    if status is None:
        return 0
    if status.phase in DONE_PHASES and steps is not None:
        return steps
    if status.phase in STEPPING_PHASES and status.weight_history:
        return status.current_step + 1
    return 0


def _step_count(spec: Mapping[str, Any]) -> int | None:
    try:
        return len(ScheduleSpec.model_validate(spec.get("schedule") or {}).weights())
    except ValidationError:
        return None


def _rollout_row(view: RolloutView, now: datetime, *, with_namespace: bool) -> list[str]:
    row = [view.name, view.phase, f"{view.weight}%", view.step_text, view.verdict]
    row.append(output.age(view.created, now))
    return [view.namespace, *row] if with_namespace else row


ROLLOUT_COLUMNS = ("NAME", "PHASE", "WEIGHT", "STEP", "VERDICT", "AGE")


# --------------------------------------------------------------------------------------------
# get rollouts
# --------------------------------------------------------------------------------------------


def cmd_get(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    conn = connect(args)
    if args.all_namespaces:
        listing = conn.api.list(paths.custom_all(PLURAL), what=API)
    else:
        listing = conn.api.list(paths.custom(conn.namespace, PLURAL), what=API)
    items = sorted(
        listing.get("items") or [],
        key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]),
    )
    if args.output in ("json", "yaml"):
        print(
            output.dump({"apiVersion": "v1", "kind": "List", "items": items}, args.output), file=out
        )
        return EXIT_OK
    if args.output == "name":
        for item in items:
            print(f"rollout.{GROUP}/{item['metadata']['name']}", file=out)
        return EXIT_OK
    if not items:
        where = "any namespace" if args.all_namespaces else f"namespace {conn.namespace}"
        print(f"No rollouts found in {where}.", file=sys.stderr)
        return EXIT_OK
    now = datetime.now(UTC)
    headers = ("NAMESPACE", *ROLLOUT_COLUMNS) if args.all_namespaces else ROLLOUT_COLUMNS
    rows = [_rollout_row(RolloutView.of(o), now, with_namespace=args.all_namespaces) for o in items]
    print(output.table(headers, rows), file=out)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------


def rollout_events(conn: Connection, name: str, *, limit: int = 10) -> list[dict[str, Any]]:
    """The newest core/v1 Events about Rollout ``name``, oldest first. The API server filters
    by involvedObject (as ``kubectl describe`` asks); we filter again, cheaply, in case a server
    ignores the selector."""
    selector = f"involvedObject.kind=Rollout,involvedObject.name={name}"
    raw = conn.api.list(
        f"/api/v1/namespaces/{conn.namespace}/events", field_selector=selector, what=API
    )
    events = [
        e
        for e in raw.get("items") or []
        if (e.get("involvedObject") or {}).get("kind") == "Rollout"
        and (e.get("involvedObject") or {}).get("name") == name
    ]
    events.sort(key=_event_time)
    return events[-limit:]


def _event_time(event: Mapping[str, Any]) -> str:
    meta = event.get("metadata") or {}
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        if event.get(key):
            return str(event[key])
    return str(meta.get("creationTimestamp") or "")


def render_status(obj: Mapping[str, Any], events: list[dict[str, Any]], now: datetime) -> str:
    """The full human view of one Rollout: summary, progress bar, evidence per metric,
    conditions and recent events."""
    view = RolloutView.of(obj)
    status = obj.get("status") or {}
    steps = view.steps or 0
    lines = [
        f"Name:        {view.name}",
        f"Namespace:   {view.namespace}",
        f"Phase:       {view.phase}",
        f"Weight:      canary {view.weight}% / primary {100 - view.weight}%",
        f"Step:        {view.step_text}",
        f"Progress:    {output.progress_bar(view.step, steps)} {view.step_text}",
        f"Verdict:     {view.verdict}",
    ]
    if status.get("canaryRevision") or status.get("stableRevision"):
        lines.append(
            f"Revisions:   canary {status.get('canaryRevision') or '-'}"
            f"  stable {status.get('stableRevision') or '-'}"
        )
    action = str(((obj.get("metadata") or {}).get("annotations") or {}).get(ACTION_ANNOTATION, ""))
    if action:
        # The controller records the whole annotation value (older builds: the bare id).
        consumed = status.get("consumedAction") in (action, action.partition(":")[2])
        lines.append(f"Action:      {action} ({'consumed' if consumed else 'pending'})")
    if (obj.get("spec") or {}).get("paused"):
        lines.append("Paused:      true (canaryd resume NAME to continue)")
    if view.message:
        lines.append(f"Message:     {view.message}")
    metrics = (status.get("analysis") or {}).get("metrics") or []
    if metrics:
        lines += ["", "Analysis:", _indent(_evidence_table(metrics))]
    conditions = status.get("conditions") or []
    if conditions:
        rows = [
            [
                str(c.get("type", "")),
                str(c.get("status", "")),
                str(c.get("reason", "")),
                output.age(c.get("lastTransitionTime"), now),
                str(c.get("message", "")),
            ]
            for c in conditions
        ]
        lines += ["", "Conditions:"]
        lines.append(_indent(output.table(("TYPE", "STATUS", "REASON", "AGE", "MESSAGE"), rows)))
    if events:
        rows = [
            [
                output.age(_event_time(e), now),
                str(e.get("type", "")),
                str(e.get("reason", "")),
                str(e.get("message", "")),
            ]
            for e in events
        ]
        lines += ["", "Events:", _indent(output.table(("AGE", "TYPE", "REASON", "MESSAGE"), rows))]
    return "\n".join(lines)


def _evidence_table(metrics: list[dict[str, Any]]) -> str:
    rows = []
    for m in metrics:
        evalue = m.get("eValue")
        rows.append(
            [
                str(m.get("name", "")),
                str(m.get("outcome", "")),
                output.number(m.get("canaryValue")),
                output.number(m.get("stableValue")),
                output.effect_text(m),
                output.number(evalue) if evalue is not None else output.number(m.get("pValue")),
                f"{output.count(m.get('canaryRequests', 0))}/"
                f"{output.count(m.get('stableRequests', 0))}",
                str(m.get("reason", "")),
            ]
        )
    headers = ("METRIC", "OUTCOME", "CANARY", "STABLE", "EFFECT", "E/P-VALUE", "REQUESTS", "REASON")
    return output.table(headers, rows)


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.splitlines())


def progress_line(obj: Mapping[str, Any], now: datetime) -> str:
    """One line per change while watching (what CI logs show)."""
    view = RolloutView.of(obj)
    metrics = ((obj.get("status") or {}).get("analysis") or {}).get("metrics") or []
    evidence = ", ".join(f"{m.get('name')}={m.get('outcome')}" for m in metrics)
    line = (
        f"{now:%H:%M:%S} {view.namespace}/{view.name} {view.phase:<12} "
        f"{output.progress_bar(view.step, view.steps or 0, width=16)} step {view.step_text} "
        f"weight {view.weight:>3}% verdict {view.verdict}"
    )
    if evidence:
        line += f" [{evidence}]"
    if view.message:
        line += f" - {view.message}"
    return line


def cmd_status(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    conn = connect(args)
    obj = conn.rollout(args.name)
    if not args.watch:
        _print_status(conn, obj, args.output, out)
        return EXIT_OK
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    live = args.output == "table" and out.isatty()
    code = follow(
        conn, obj, deadline=deadline, report=lambda o: _report_change(conn, o, args, out, live)
    )
    if live:
        out.write(CLEAR_SCREEN)
    _print_status(conn, _latest(conn, args.name, obj), args.output, out)
    if code == EXIT_TIMEOUT:
        print(f"error: timed out after {args.timeout:g}s waiting for {args.name}", file=sys.stderr)
    return code


def _latest(conn: Connection, name: str, fallback: dict[str, Any]) -> dict[str, Any]:
    try:
        return conn.rollout(name)
    except (PermanentError, TemporaryError):
        return fallback


def _print_status(conn: Connection, obj: dict[str, Any], fmt: str, out: TextIO) -> None:
    if fmt in ("json", "yaml"):
        print(output.dump(obj, fmt), file=out)
        return
    events = rollout_events(conn, obj["metadata"]["name"])
    print(render_status(obj, events, datetime.now(UTC)), file=out)


def _report_change(
    conn: Connection, obj: Mapping[str, Any], args: argparse.Namespace, out: TextIO, live: bool
) -> None:
    """On a terminal: redraw the whole view in place. Elsewhere (CI logs, pipes): one line per
    change, so the log reads as the rollout's history."""
    if args.output != "table":
        return
    now = datetime.now(UTC)
    if live:
        view = render_status(obj, rollout_events(conn, str(obj["metadata"]["name"])), now)
        out.write(f"{CLEAR_SCREEN}{view}\n\n{progress_line(obj, now)}\n")
        out.flush()
    else:
        print(progress_line(obj, now), file=out, flush=True)


def terminal_code(obj: Mapping[str, Any]) -> int | None:
    """EXIT_OK / EXIT_FAILED when the Rollout has finished with its current spec, else None.

    A phase counts only once the controller has observed the current generation: right after
    ``kubectl apply`` the old ``Succeeded`` must not end a CI wait early."""
    status = rollout_status(obj)
    generation = int((obj.get("metadata") or {}).get("generation") or 0)
    if status is None or status.observed_generation < generation:
        return None
    return TERMINAL_PHASES.get(status.phase)


def follow(
    conn: Connection,
    obj: dict[str, Any],
    *,
    deadline: float | None,
    report: Callable[[Mapping[str, Any]], None],
) -> int:
    """Follow one Rollout through a watch until it reaches a terminal phase (its exit code),
    is deleted (EXIT_API_ERROR) or ``deadline`` (time.monotonic) passes (EXIT_TIMEOUT).

    Each watch request lasts at most WATCH_CHUNK_SECONDS and resumes from the last
    resourceVersion seen; 410 Gone (history compacted) re-reads the object and resumes from it."""
    name = obj["metadata"]["name"]
    report(obj)
    code = terminal_code(obj)
    if code is not None:
        return code
    version = obj["metadata"].get("resourceVersion")
    failures = 0
    while True:
        remaining = WATCH_CHUNK_SECONDS if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            return EXIT_TIMEOUT
        chunk = max(1, min(WATCH_CHUNK_SECONDS, int(remaining + 0.999)))
        stream = conn.api.watch(
            paths.custom(conn.namespace, PLURAL),
            field_selector=f"metadata.name={name}",
            resource_version=version,
            timeout_seconds=chunk,
        )
        try:
            for kind, raw in stream:
                version = (raw.get("metadata") or {}).get("resourceVersion") or version
                if kind == "BOOKMARK" or (raw.get("metadata") or {}).get("name") != name:
                    continue
                if kind == "DELETED":
                    print(f"error: rollout {name} was deleted", file=sys.stderr)
                    return EXIT_API_ERROR
                report(raw)
                code = terminal_code(raw)
                if code is not None:
                    return code
                if deadline is not None and time.monotonic() >= deadline:
                    return EXIT_TIMEOUT
        except GoneError:
            obj = conn.rollout(name)
            version = obj["metadata"].get("resourceVersion")
            report(obj)
            code = terminal_code(obj)
            if code is not None:
                return code
        except UnreachableError as exc:
            # A dropped connection or a client-side read timeout: reconnect from `version`,
            # with a growing pause; a server that keeps failing ends the wait.
            failures += 1
            if failures > MAX_WATCH_FAILURES:
                print(f"error: watch keeps failing: {exc}", file=sys.stderr)
                return EXIT_API_ERROR
            print(f"warning: watch interrupted ({exc}); reconnecting", file=sys.stderr)
            time.sleep(min(2.0, 0.1 * 2**failures))
        else:
            failures = 0


# --------------------------------------------------------------------------------------------
# manual actions and pause / resume
# --------------------------------------------------------------------------------------------


def cmd_action(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    conn = connect(args)
    action_id = args.id or uuid.uuid4().hex[:12]
    value = f"{args.ops_verb}:{action_id}"
    patch = {"metadata": {"annotations": {ACTION_ANNOTATION: value}}}
    _merge_patch(conn, args.name, patch)
    print(
        f"rollout.{GROUP}/{args.name} {args.ops_verb} requested (action id {action_id})", file=out
    )
    if args.wait is None:
        return EXIT_OK
    return _wait_consumed(conn, args.name, value, action_id=action_id, seconds=args.wait, out=out)


def _wait_consumed(
    conn: Connection, name: str, value: str, *, action_id: str, seconds: float, out: TextIO
) -> int:
    """Poll until ``status.consumedAction`` names our action (the controller may record the
    bare id or the whole ``verb:id`` annotation value)."""
    deadline = time.monotonic() + seconds
    while True:
        status = rollout_status(conn.rollout(name))
        consumed = status.consumed_action if status is not None else ""
        if consumed in (value, action_id):
            print(f"rollout.{GROUP}/{name} action {action_id} consumed", file=out)
            return EXIT_OK
        if time.monotonic() >= deadline:
            print(f"error: action {action_id} not consumed within {seconds:g}s", file=sys.stderr)
            return EXIT_TIMEOUT
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def cmd_pause(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    conn = connect(args)
    paused = args.ops_verb == "pause"
    _merge_patch(conn, args.name, {"spec": {"paused": paused}})
    print(f"rollout.{GROUP}/{args.name} {'paused' if paused else 'resumed'}", file=out)
    return EXIT_OK


def _merge_patch(conn: Connection, name: str, patch: dict[str, Any]) -> None:
    """A JSON merge patch (RFC 7386) on the Rollout: only the keys given change, so it never
    conflicts with the controller's status writes and needs no resourceVersion."""
    conn.api.merge_patch(paths.custom(conn.namespace, PLURAL, name), patch, what=API)


# --------------------------------------------------------------------------------------------
# completion
# --------------------------------------------------------------------------------------------


def cmd_completion(args: argparse.Namespace, out: TextIO | None = None) -> int:
    # Imported at call time: main imports this module while building its parser.
    from canaryd.cli.main import build_parser  # noqa: PLC0415

    print(completion_script(build_parser(), args.shell), file=out or sys.stdout)
    return EXIT_OK


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """A bash completion function generated from the argparse tree: sub-commands, their options,
    option and positional choices, files where a file is expected and Rollout names (through
    ``canaryd get rollouts -o name``) where a Rollout is. zsh runs the same function through
    ``bashcompinit``, as argcomplete does."""
    if shell not in ("bash", "zsh"):
        raise ValueError(f"shell must be one of {{'bash', 'zsh'}}, got {shell!r}")
    prog = parser.prog
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cases = []
    for name, sub in subs.choices.items():
        options: list[str] = []
        words: list[str] = []
        value_cases: list[str] = []
        positional = "words"
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                options += action.option_strings
                continue
            if action.option_strings:
                options += action.option_strings
                flags = "|".join(action.option_strings)
                if action.choices:
                    choices = " ".join(str(c) for c in action.choices)
                    value_cases.append(
                        f'{flags}) COMPREPLY=($(compgen -W "{choices}" -- "$cur")); return;;'
                    )
                elif action.dest in ("kubeconfig", "crds") or "file" in action.dest:
                    value_cases.append(f'{flags}) COMPREPLY=($(compgen -f -- "$cur")); return;;')
                elif action.nargs != 0:
                    value_cases.append(f"{flags}) return;;")
            elif action.choices:
                words += [str(c) for c in action.choices]
            elif action.dest == "name" and name in VERBS:
                positional = "rollouts"
            elif action.dest in ("files", "file", "paths"):
                positional = "files"
        body = [f"        {name})", '            case "$prev" in']
        body += [f"                {c}" for c in value_cases]
        body.append("            esac")
        body.append(f'            opts="{" ".join(options)}"; words="{" ".join(words)}"')
        if positional == "rollouts":
            body.append(
                f'            words="$({prog} get rollouts -o name "${{conn[@]}}" 2>/dev/null'
                " | sed 's#.*/##')\""
            )
        elif positional == "files":
            body.append(
                '            [[ "$cur" != -* ]] && { COMPREPLY=($(compgen -f -- "$cur")); return; }'
            )
        body.append("            ;;")
        cases.append("\n".join(body))
    commands = " ".join(subs.choices)
    func = f"_{prog}_complete"
    script = f"""# {shell} completion for {prog}; generated by `{prog} completion {shell}`.
# Load it with:  source <({prog} completion {shell})
{func}() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local opts="" words="" i
    local -a conn=()
    # Pass the connection flags already typed on to the Rollout-name lookup.
    for ((i = 2; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            -n|--namespace|--kubeconfig|--context)
                conn+=("${{COMP_WORDS[i]}}" "${{COMP_WORDS[i+1]}}");;
        esac
    done
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W "{commands} -h --help" -- "$cur"))
        return
    fi
    case "${{COMP_WORDS[1]}}" in
{chr(10).join(cases)}
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    fi
}}
"""
    if shell == "zsh":
        script += (
            "autoload -U +X compinit && compinit\nautoload -U +X bashcompinit && bashcompinit\n"
        )
    return script + f"complete -o default -F {func} {prog}"


_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "get": cmd_get,
    "status": cmd_status,
    "promote": cmd_action,
    "abort": cmd_action,
    "retry": cmd_action,
    "pause": cmd_pause,
    "resume": cmd_pause,
    "completion": cmd_completion,
}
