"""``canaryd`` command: one sub-command per module in this package.

Each sub-command module exposes ``configure(parser)`` (add its arguments) and
``main(args) -> int`` (run it, return the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# sub-command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("canaryd.cli.run", "run the controller (kubeconfig or in-cluster config)"),
    "analyze": ("canaryd.cli.analyze", "judge recorded rollouts offline (JSON or JSON Lines)"),
    "get": ("canaryd.cli.ops", "list rollouts: phase, weight, step, verdict, age"),
    "status": ("canaryd.cli.ops", "show a rollout (evidence, conditions, events); --watch waits"),
    "promote": ("canaryd.cli.ops", "promote a rollout now (skip the remaining steps)"),
    "abort": ("canaryd.cli.ops", "abort a rollout: route all traffic to primary, mark Failed"),
    "retry": ("canaryd.cli.ops", "retry a failed rollout of the current revision"),
    "pause": ("canaryd.cli.ops", "pause a rollout (spec.paused=true) without losing state"),
    "resume": ("canaryd.cli.ops", "resume a paused rollout"),
    "lint": ("canaryd.cli.lint", "validate Rollout/MetricTemplate/AlertProvider YAML files"),
    "completion": ("canaryd.cli.ops", "print a bash or zsh completion script"),
    "demo": ("canaryd.cli.demo", "a good and a bad release on this machine, no cluster needed"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only``, just that sub-command's module is imported and configured
    (the others are listed for ``--help``). Importing every module would make each command (and
    each shell completion) pay for the controller's and scipy's import time."""
    parser = argparse.ArgumentParser(prog="canaryd", description=__doc__.splitlines()[0])
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subs.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            module = importlib.import_module(module_name)
            module.configure(sub)
            sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), "")
    args = build_parser(only=command).parse_args(words)
    code: int = args._module.main(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
