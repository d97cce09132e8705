"""Command-line interface: ``mouse-rl COMMAND ...``.

Each command lives in its own module exposing ``add_parser(subparsers)``,
which registers the sub-command and sets ``func(args) -> int`` as its handler.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["simulate", "demo", "theory", "fit", "recover", "dopamine", "sweep"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mouse-rl",
        description="Simulate, predict (DLN theory), fit and analyse a deep RL network model of mice "
                    "learning a visual decision task. `mouse-rl COMMAND --help` for each command.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"mouse_rl.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"mouse_rl.cli.{name}":
                continue  # command not built in this installation
            raise
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"mouse-rl {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
