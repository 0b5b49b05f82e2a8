import sys

from mlplab.cli import main

code = main()
try:
    # A Ctrl-C (or SIGTERM, which mlplab turns into one) that lands while C code runs Python
    # through PyRun_String (pybind11's exec, as in PyTorch's lazy imports) sets CPython's flag of
    # an unhandled KeyboardInterrupt, though mlplab handled it; under ``python -m`` the
    # interpreter then ends by SIGINT whatever the exit status: 130 for SIGTERM's 143, and a
    # death by signal for a parent process. The ``mlplab`` script, run as a file, is not affected
    # (running a file sets the flag afresh).
    import ctypes

    ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
except (ImportError, ValueError, AttributeError):  # no such flag in this Python: nothing to do
    pass
sys.exit(code)
