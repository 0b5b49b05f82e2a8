"""The ``mlplab`` command line: a thin shell over the library.

Each sub-module in ``COMMAND_MODULES`` defines ``register(subparsers)``, adding its commands with a
``func(args) -> int`` default. Errors the user can fix (bad input, missing files, diverged
training) end with a one-line message and exit code 1; usage errors exit with 2 (argparse); a
Python traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mlplab import __version__

COMMAND_MODULES = ["check", "data", "train", "tune", "torch", "reproduce"]


class CLIError(Exception):
    """An error to report to the user as one line (exit code 1)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlplab",
        description="Fully-connected neural networks with hand-derived backpropagation in NumPy: "
                    "check the maths, train, tune, compare with PyTorch and write up the study.",
    )
    parser.add_argument("--version", action="version", version=f"mlplab {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show full Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"mlplab.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"mlplab.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("mlplab: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user, unless --debug
        if args.debug:
            raise
        if isinstance(exc, CLIError | ValueError | OSError | RuntimeError) or \
                type(exc).__name__.endswith("Error"):
            print(f"mlplab {args.command}: error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
