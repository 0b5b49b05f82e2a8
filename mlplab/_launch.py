"""The ``mlplab`` command's entry point, kept apart from :mod:`mlplab.cli` so that a Ctrl-C or
SIGTERM while the command line's modules import (NumPy alone takes about a third of a second)
ends in one line, as one after it does, instead of a Python traceback from the import (or, for
SIGTERM, a death by the signal); and so that one more as the process ends is ignored, the
command's exit status kept."""

from __future__ import annotations

import sys

from mlplab import interrupts  # (the standard library only)


def main() -> int:
    with interrupts.starting():  # a SIGTERM as the modules import: 143, not a silent death
        try:
            from mlplab.cli import main as cli_main

            status = cli_main()  # (which handles its own Ctrl-C; this one is the import's)
        except KeyboardInterrupt as exc:
            if "--debug" in sys.argv[1:]:  # as the command's own handler: --debug keeps them
                raise
            terminated = isinstance(exc, interrupts.Terminated)
            print("mlplab: terminated (SIGTERM)" if terminated else "mlplab: interrupted",
                  file=sys.stderr)
            status = 143 if terminated else 130
        except (ImportError, MemoryError) as exc:
            # memory refused as the command line's modules load (NumPy's, under a low ulimit
            # -v): a traceback ending in "failed to map segment from shared object"
            from mlplab._machine import memory_refused, out_of_memory_message

            refused = memory_refused(exc)
            if refused is None or "--debug" in sys.argv[1:]:
                raise
            print(f"mlplab: error: {out_of_memory_message(refused)}", file=sys.stderr)
            status = 1
        except SystemExit:  # argparse's usage errors (2) and --help (0)
            interrupts.exiting()
            raise
        # a second Ctrl-C or SIGTERM as the process ends: ignored, the status kept
        interrupts.exiting()
    return status
