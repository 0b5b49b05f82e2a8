import sys

from mlplab._launch import main

code = main()
# A Ctrl-C (or SIGTERM, which mlplab turns into one) that lands while C code runs Python through
# PyRun_String (pybind11's exec, as in PyTorch's lazy imports) sets CPython's flag of an unhandled
# KeyboardInterrupt (Python 3.8 to 3.13), though mlplab handled it; under ``python -m`` the
# interpreter then ends by SIGINT whatever the exit status: 130 for SIGTERM's 143, and a death by
# signal for a parent process. The ``mlplab`` script, run as a file, is not affected (running a
# file sets the flag afresh). PyRun_String also clears the flag before it runs its code, and
# ``exec`` of a string is PyRun_String: this clears it in every such Python, where ctypes finds
# it only up to 3.11 (3.12 and 3.13 keep it in ``_PyRuntime``, with no symbol of its own).
exec("pass")
sys.exit(code)
