"""The ``mlplab`` command's entry point, kept apart from :mod:`mlplab.cli` so that a Ctrl-C
while the command line's modules import (NumPy alone takes about a third of a second) ends in
one line, as one after it does, instead of a Python traceback from the import."""

from __future__ import annotations

import signal
import sys


def main() -> int:
    try:
        from mlplab.cli import main as cli_main
    except KeyboardInterrupt:
        if "--debug" in sys.argv[1:]:  # as the command's own handler: --debug keeps tracebacks
            raise
        print("mlplab: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    return cli_main()
