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
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="canaryd", description=__doc__.splitlines()[0])
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subs.add_parser(name, help=help_text, description=help_text)
        module.configure(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args._module.main(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
