"""The ``era-hf`` command line.

Each feature module defines ``register_cli(subparsers)`` that adds its sub-command with
``set_defaults(func=...)``; heavy imports happen inside the command functions so that
``era-hf --help`` stays fast. User mistakes (:class:`ERAError`, wrong arguments, a path that cannot be read or
written) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, NoReturn, Sequence

from .errors import ERAError

#: Modules that contribute sub-commands, in help order.
COMMAND_MODULES = (
    "era_hf.offline_cli",
    "era_hf.demo",
    "era_hf.train",
    "era_hf.evaluation",
    "era_hf.benchmark",
    "era_hf.space",
    "era_hf.hub",
)


class ERAArgumentParser(argparse.ArgumentParser):
    """Usage mistakes are one line too: ``error: …`` and where to look, not the whole usage block.
    Sub-command parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = ERAArgumentParser(
        prog="era-hf",
        description="ERA: a strong query encoder + a small adapter over a cheap, frozen document index.",
    )
    parser.add_argument("--version", action="version", version=f"era_hf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register_cli(sub)
    return parser


def os_error_line(err: OSError) -> str:
    """``cannot use PATH: reason`` for an OSError from the filesystem or a socket."""
    where = f" {err.filename}" if err.filename else ""
    return f"cannot use{where}: {err.strerror or err}"


def run_command(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace) -> int:
    """Run a command; a user mistake prints one ``error: …`` line and returns 2."""
    try:
        return int(func(args) or 0)
    except ERAError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a path the commands do not check up front (those fail earlier, with more to say)
        print(f"error: {os_error_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
