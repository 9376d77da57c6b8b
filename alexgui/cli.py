"""`alexgui`: the desktop app with no arguments, and subcommands for headless use.

Each subcommand lives in alexgui/commands/<name>.py with add_parser(subparsers) and run(args) -> int;
heavy imports (torch, Qt) happen inside run(), so `alexgui --version` and `--help` stay quick.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from alexgui import __version__
from alexgui.engine.training.memory import share_one_heap
from alexgui.errors import AlexguiError

# Order is the order of `alexgui --help`.
COMMANDS = ("gui", "train", "summary", "classify", "index", "neighbours", "export", "experiment")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = argparse.ArgumentParser(
        prog="alexgui",
        description="See, train and use AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012). "
        "With no command, opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"alexgui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, ModuleType] = {}
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"alexgui.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"alexgui.commands.{name}":
                continue  # a command that is not part of this build
            raise
        module.add_parser(sub)
        modules[name] = module
    return parser, modules


def main(argv: Sequence[str] | None = None) -> int:
    # Before any thread exists: threads that already allocate keep their own heaps (engine/training/memory.py).
    share_one_heap()
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["gui", *(argv if argv is not None else sys.argv[1:])])
    try:
        return int(modules[args.command].run(args) or 0)
    except AlexguiError as e:  # a problem written for the user that no command caught: say it, no traceback
        print(f"alexgui {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alexgui: interrupted", file=sys.stderr)
        return 130
