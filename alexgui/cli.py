"""`alexgui`: the desktop app with no arguments, and subcommands for headless use.

Each subcommand lives in alexgui/commands/<name>.py with add_parser(subparsers) and run(args) -> int;
heavy imports (torch, Qt) happen inside run(), so `alexgui --version` and `--help` stay quick.
Arguments are checked as argparse reads them (commands/arguments.py); whatever goes wrong for the
user, a bad argument or an AlexguiError, is one line on stderr, exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from alexgui import __version__
from alexgui.engine.training.memory import share_one_heap
from alexgui.errors import AlexguiError

# Order is the order of `alexgui --help`.
COMMANDS = (
    "gui", "train", "summary", "classify", "evaluate", "explain", "top-images", "filters", "index", "neighbours",
    "map", "export", "experiment",
)  # fmt: skip


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors on one line, like every other message of the command line:
    "alexgui CMD: argument --NAME: problem" and exit 2 (`alexgui CMD --help` shows the usage). The
    subcommands' parsers are of the same class (add_subparsers uses the parent's)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = OneLineParser(
        prog="alexgui",
        description="See, train and use AlexNet (Krizhevsky, Sutskever & Hinton, NIPS 2012). "
        "With no command, opens the desktop app.",
    )
    parser.add_argument("--version", action="version", version=f"alexgui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, ModuleType] = {}
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"alexgui.commands.{name.replace('-', '_')}")
        except ModuleNotFoundError as e:
            if e.name == f"alexgui.commands.{name.replace('-', '_')}":
                continue  # a command that is not part of this build
            raise
        module.add_parser(sub)
        modules[name] = module
    return parser, modules


def main(argv: Sequence[str] | None = None) -> int:
    # Before any thread exists: threads that already allocate keep their own heaps (engine/training/memory.py).
    share_one_heap()
    _print_anything()
    parser, modules = build_parser()
    try:  # argparse exits (--help, --version, a bad argument); the exit status is returned instead
        args = parser.parse_args(argv)
        if args.command is None:
            args = parser.parse_args(["gui", *(argv if argv is not None else sys.argv[1:])])
    except SystemExit as e:
        return int(e.code or 0)
    try:
        code = int(modules[args.command].run(args) or 0)
        sys.stdout.flush()  # a reader gone shows here, where it is caught, rather than at the exit's flush
        return code
    except AlexguiError as e:  # a problem written for the user that no command caught: say it, no traceback
        print(f"alexgui {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alexgui: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise  # a pipe of something else: not ours to hide
        # The reader went away (`alexgui map --json | head`): what it wanted it has. Python would print
        # a second error when flushing stdout at exit, so stdout is pointed at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command cut off this way


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end is closed (poll reports an error on its writing end)."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except AttributeError:  # no poll (Windows): the pipe error is most likely stdout's, as before
        return True
    except (OSError, ValueError):  # no usable stdout
        return False


def _print_anything() -> None:
    # A file name that is not valid UTF-8 (surrogate escapes) or a character the terminal's encoding
    # lacks must not end a command with UnicodeEncodeError while printing: such characters are
    # written as backslash escapes instead. Streams that already cope (surrogateescape) are left alone.
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
