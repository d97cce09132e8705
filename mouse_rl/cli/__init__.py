"""Command-line interface: ``mouse-rl COMMAND ...``.

Each command lives in its own module exposing ``add_parser(subparsers)``,
which registers the sub-command and sets ``func(args) -> int`` as its handler.
:func:`main` is the one error boundary (:mod:`mouse_rl.cli.errors`): shared
options are checked first (:mod:`mouse_rl.cli.guards`), and every failure a
user can cause ends in a one-line message and exit code 2, never a traceback
(``--debug`` or ``MOUSE_RL_DEBUG=1`` shows it).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from .errors import DEBUG_ENV, USER_ERROR, one_line, run_guarded
from .guards import check_common

COMMANDS = ["simulate", "demo", "theory", "fit", "check", "recover", "dopamine", "sweep", "forecast", "fetch_ibl"]


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (the full usage of a command runs to 20+ lines).

    ``mouse-rl simulate --mice abc`` ends in ``mouse-rl simulate: error: argument --mice: invalid int value:
    'abc' (see `mouse-rl simulate --help`)`` on stderr and exit code 2, like every other user error.
    """

    def error(self, message):
        self.exit(USER_ERROR, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="mouse-rl",
        description="Simulate, predict (DLN theory), fit and analyse a deep RL network model of mice "
                    "learning a visual decision task. `mouse-rl COMMAND --help` for each command.")
    debug_help = f"on an error, also print the traceback (or set {DEBUG_ENV}=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"mouse_rl.cli.{name}").add_parser(sub)
    for command in sub.choices.values():  # `mouse-rl COMMAND ... --debug` works too
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    parser.commands = sub.choices
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # reported by the command's parser: `mouse-rl simulate: error: unrecognized arguments: ...`
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")

    def command() -> int:
        check_common(args)
        return args.func(args)

    return run_guarded(args.command, command, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
