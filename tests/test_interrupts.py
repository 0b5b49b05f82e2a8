"""mlplab.interrupts: Ctrl-C and SIGTERM held back while files are replaced, handlers put back."""

import io
import os
import signal
import sys
import threading
import time

import pytest
from repo_path import pythonpath

from mlplab import interrupts


def _signal_self_from_another_thread(sig: int) -> None:
    """As the kernel may do: a process-wide signal taken by a thread that is not the main one."""
    t = threading.Thread(target=os.kill, args=(os.getpid(), sig))
    t.start()
    t.join()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_deferred_holds_a_signal_until_the_block_ends(sig):
    reached_end_of_block = False
    with pytest.raises(KeyboardInterrupt), interrupts.installed():
        with interrupts.deferred():
            _signal_self_from_another_thread(sig)
            time.sleep(0.05)  # Python runs handlers between bytecodes: plenty of chances
            reached_end_of_block = True
    assert reached_end_of_block
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_deferred_without_a_signal_changes_nothing():
    # the mask as the suite's process inherited it (a parent may block signals of its own)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with interrupts.deferred():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask  # no mask left behind


def test_a_signal_held_during_an_error_is_remembered_not_raised():
    with interrupts.installed():
        with pytest.raises(OSError), interrupts.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            raise OSError("disk full")
        assert interrupts.requested()  # the command ends with 130


def test_an_ignored_sigint_stays_ignored():
    """A process started with SIGINT ignored (a shell script's `cmd &`) keeps ignoring it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts.installed():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is interrupts._sigterm
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_deferred_leaves_an_ignored_signal_ignored():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts.installed():
            with interrupts.deferred():
                _signal_self_from_another_thread(signal.SIGINT)
                time.sleep(0.05)
            assert not interrupts.requested()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_what_a_command_remembers_stays_with_it():
    """A command run from inside another has its own flag; outside every command nothing is
    remembered (a library user's Ctrl-C must not stop a later call)."""
    with interrupts.installed():
        interrupts.note()
        with interrupts.installed():
            assert not interrupts.requested()
        assert interrupts.requested()
    assert not interrupts.requested()
    interrupts.note()
    assert not interrupts.requested()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_ctrl_c_in_the_exercise_training_stops_the_check(monkeypatch, capsys, sig):
    """The trainer's graceful stop ends TwoLayerNet.train with KeyboardInterrupt (its stats
    would be a cut-short run), and `mlplab check` with 130, not a failed check; SIGTERM takes
    the same way out with the shell's status for it, 143."""
    from mlplab.cli import main
    from mlplab.trainer import Trainer

    real, calls = Trainer._end_epoch, []

    def stop_at_the_30th_epoch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 30:
            os.kill(os.getpid(), sig)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_end_epoch", stop_at_the_30th_epoch)
    assert main(["check"]) == 128 + sig
    last = "mlplab: interrupted" if sig == signal.SIGINT else "mlplab: terminated (SIGTERM)"
    assert capsys.readouterr().err.splitlines()[-1] == last


def test_a_ctrl_c_once_the_command_has_its_result_is_remembered_not_raised():
    with interrupts.installed():
        interrupts.closing()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # no KeyboardInterrupt, so no traceback as the command ends
        assert interrupts.requested()
    with interrupts.installed():  # the next command starts afresh
        assert not interrupts.requested()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_exit_status_is_that_of_the_signal_that_asked_first(sig):
    """128 + the signal's number, as a shell reports a process the signal ended: 130 for
    Ctrl-C, 143 for SIGTERM; a second signal of the other kind does not change it, and the next
    command starts afresh."""
    other = signal.SIGTERM if sig == signal.SIGINT else signal.SIGINT
    with interrupts.installed():
        assert interrupts.exit_status() == 130  # none yet: a KeyboardInterrupt is Ctrl-C's
        for s in (sig, other):
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), s)
                time.sleep(0.05)
        assert interrupts.exit_status() == 128 + sig
    with interrupts.installed():
        assert interrupts.exit_status() == 130


def test_a_sigterm_held_back_keeps_its_exit_status():
    """Held by deferred() while files are replaced, delivered when the block ends (or only
    remembered if the block failed): still SIGTERM's 143, not Ctrl-C's 130."""
    with interrupts.installed():
        with pytest.raises(KeyboardInterrupt), interrupts.deferred():
            _signal_self_from_another_thread(signal.SIGTERM)
            time.sleep(0.05)
        assert interrupts.exit_status() == 143
    with interrupts.installed():
        with pytest.raises(OSError), interrupts.deferred():
            _signal_self_from_another_thread(signal.SIGTERM)
            time.sleep(0.05)
            raise OSError("disk full")
        assert interrupts.requested() and interrupts.exit_status() == 143


def test_sigterm_ends_tune_with_143(tmp_path, monkeypatch, capsys):
    """`mlplab tune` stops on SIGTERM as on Ctrl-C (the finished trials kept), exit 143."""
    import mlplab.tuning as tmod
    from mlplab.cli import main

    real = tmod.Objective.__call__

    def terminated(self, trial):
        if trial.number == 1:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        return real(self, trial)

    monkeypatch.setattr(tmod.Objective, "__call__", terminated)
    space = tmp_path / "space.yaml"
    space.write_text("hidden_size: [8, 16]\nepochs: 1\nbatch_size: 64\n")
    assert main(["tune", "--trials", "3", "--search-space", str(space), "--out",
                 str(tmp_path / "o"), "--no-progress", "--search-only"]) == 143
    err = capsys.readouterr().err
    assert err.endswith("run the same command again to continue it up to --trials\n"
                        "mlplab: terminated (SIGTERM)\n"), err


def test_sigterm_ends_torch_train_with_143(tmp_path, monkeypatch):
    """`mlplab torch train` saves the run as it was on SIGTERM as on Ctrl-C, exit 143."""
    torch = pytest.importorskip("torch")
    from mlplab.cli import main

    step, calls = torch.optim.Adam.step, []

    def step_then_sigterm(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 30:  # in epoch 2 (23 batches an epoch)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_sigterm)
    terminal = io.StringIO()  # stdout and stderr as one terminal shows them
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    out = tmp_path / "run"
    assert main(["torch", "train", "--hidden", "16", "--epochs", "3", "--batch-size", "64",
                 "--threads", "1", "--no-plots", "--no-progress", "--out", str(out)]) == 143
    # the run's results, then how to go on: not the finished run's "next: mlplab evaluate ..."
    # lines, which came first and advised evaluating the half-trained model
    lines = terminal.getvalue().splitlines()
    assert not [line for line in lines if line.startswith("next: ")], lines
    assert lines[-3:] == [f"run folder: {out}", "interrupted; saved: the run as it stopped, and a "
                          "checkpoint of its last whole epoch; --resume goes on from the end of "
                          "that epoch. Continue with: mlplab torch train "
                          f"--resume {out} --threads 1 --no-plots",
                          "mlplab: terminated (SIGTERM)"], lines
    assert '"status": "interrupted"' in (out / "metrics.json").read_text()


_CTRL_C_IN_MATPLOTLIB_IMPORT = """
import importlib.abc, os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)

class CtrlCOnce(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "matplotlib.ft2font":  # one of its C extensions, mid-import
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlCOnce())
try:
    {entry}
except KeyboardInterrupt:
    print(" ".join(m for m in ("matplotlib.ft2font", "matplotlib.pyplot") if m in sys.modules))
sys.exit(130)
"""


@pytest.mark.parametrize("entry", [
    "import mlplab.plots",
    "import mlplab.report.style",  # the report's figures
    # each imports Matplotlib as its first line, so no dataset or study is needed to get there
    "from mlplab.data.preview import sample_grid; sample_grid(None, 'x.png')",  # data show
    "from mlplab.tuning.results import write_plots; write_plots(None, None)",  # tune's plots
    "from mlplab.tuning.quiet import matplotlib_style_kept\nwith matplotlib_style_kept(): pass",
])
def test_a_ctrl_c_waits_for_matplotlibs_import_to_end(entry):
    """A second Ctrl-C while a stopped run writes its figures often landed in Matplotlib's
    import, leaving a C extension half initialised: Python then died of SIGINT or aborted
    ("Fatal Python error: PyThreadState_Get") as it exited, instead of the command's 130. The
    import finishes first now, and the KeyboardInterrupt comes after it, whichever module of
    mlplab imports Matplotlib first (mlplab._matplotlib's import). (A process of its own: the
    suite has imported Matplotlib already.)"""
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=pythonpath(), MPLBACKEND="Agg")
    script = _CTRL_C_IN_MATPLOTLIB_IMPORT.replace("{entry}", entry.replace("\n", "\n    "))
    res = subprocess.run([sys.executable, "-c", script], env=env,
                         capture_output=True, text=True, timeout=120,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert res.returncode == 130, res.stderr
    assert res.stdout.split() == ["matplotlib.ft2font", "matplotlib.pyplot"], res


def _ctrl_c_once(real, before=False):
    """``real`` with a Ctrl-C just after (or ``before``) its first call; the signal's handler
    runs at once."""
    calls = []

    def ctrl_c():
        if not calls:
            calls.append(1)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)

    def with_ctrl_c(*args, **kwargs):
        if before:
            ctrl_c()
        result = real(*args, **kwargs)
        ctrl_c()
        return result

    return with_ctrl_c


def test_a_ctrl_c_as_an_atomic_write_starts_leaves_no_temporary_file(tmp_path, monkeypatch):
    """A Ctrl-C just after the temporary file was made, before the block that removes it (a
    second Ctrl-C while a stopped run saves its checkpoint), left `.checkpoint.npz.x1y2.npz`."""
    import tempfile

    from mlplab.io import atomic_path

    monkeypatch.setattr(tempfile, "mkstemp", _ctrl_c_once(tempfile.mkstemp))
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "checkpoint.npz") as tmp:
        tmp.write_bytes(b"never")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("foreign", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_handler_set_from_c_is_left_alone_by_deferred_and_atomic_writes(tmp_path, monkeypatch,
                                                                          foreign):
    """A program that embeds Python (uWSGI, say) may install its own handler in C: Python shows
    it as None and cannot put it back (``signal.signal(SIGTERM, None)`` is a TypeError).
    deferred(), which every atomic write now enters, replaced it all the same: the write failed
    with that TypeError, and SIGTERM and SIGINT stayed held for ever (Ctrl-C did nothing); a
    command (installed()) ended with that TypeError's traceback. Left alone, as an ignored
    signal is; the other signal is still handled."""
    from mlplab.io import atomic_path

    real_signal, real_getsignal = signal.signal, signal.getsignal

    def getsignal(sig):
        return None if sig == foreign else real_getsignal(sig)

    def set_handler(sig, handler):
        if sig == foreign:
            raise AssertionError("the C handler was replaced, and cannot be put back")
        return real_signal(sig, handler)

    monkeypatch.setattr(signal, "getsignal", getsignal)
    monkeypatch.setattr(signal, "signal", set_handler)
    with atomic_path(tmp_path / "model.npz") as tmp:
        tmp.write_bytes(b"saved")
    assert (tmp_path / "model.npz").read_bytes() == b"saved"
    with interrupts.installed():  # a command run inside such a program
        pass
    if foreign == signal.SIGTERM:
        with pytest.raises(KeyboardInterrupt):
            with interrupts.deferred():
                _signal_self_from_another_thread(signal.SIGINT)
                time.sleep(0.05)
                reached_end_of_block = True
        assert reached_end_of_block
    assert real_getsignal(signal.SIGINT) is signal.default_int_handler
    assert real_getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_ctrl_c_while_a_failed_atomic_write_cleans_up_still_removes_it(tmp_path, monkeypatch):
    """The write failed (a full disk) and a Ctrl-C lands as its temporary file is removed: the
    file goes all the same, and the Ctrl-C is raised after."""
    from pathlib import Path

    from mlplab.io import atomic_path

    monkeypatch.setattr(Path, "unlink", _ctrl_c_once(Path.unlink, before=True))
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "model.npz") as tmp:
        tmp.write_bytes(b"half")
        raise OSError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_as_the_command_line_starts_is_one_line_and_130(monkeypatch, capsys):
    """A Ctrl-C while the plugins load or the parser is built (before the command's handler is
    installed) ended mlplab with a Python traceback; --debug still shows it."""
    from mlplab import cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    try:
        code = cli.main(["torch", "depth", "--resume", "x"])
    except KeyboardInterrupt:  # (uncaught, it would end the test session, not fail the test)
        pytest.fail("the Ctrl-C left mlplab's main as a KeyboardInterrupt")
    assert code == 130
    assert capsys.readouterr().err == "mlplab: interrupted\n"
    with pytest.raises(KeyboardInterrupt):
        cli.main(["--debug", "torch", "depth"])


_INTERRUPTED_IMPORT = """
import sys

class CtrlC:  # a Ctrl-C as NumPy imports: the import's first third of a second
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            raise KeyboardInterrupt

sys.meta_path.insert(0, CtrlC())
import mlplab  # the entry point's package: no NumPy yet
from mlplab._launch import main
sys.exit(main())
"""


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_ctrl_c_as_the_command_lines_modules_import_is_one_line_and_130(debug):
    """The command's entry point imported mlplab.cli (and NumPy, through ``import mlplab``)
    before anything caught a Ctrl-C: one in the command's first third of a second printed a
    Python traceback. The entry point (the ``mlplab`` script's and ``python -m mlplab``'s) now
    imports them inside its own guard; --debug still shows the traceback."""
    import subprocess
    import sys

    words = ["--debug"] * debug + ["data", "info", "digits"]
    proc = subprocess.run([sys.executable, "-c", _INTERRUPTED_IMPORT, *words],
                          capture_output=True, text=True, timeout=120)
    # an uncaught KeyboardInterrupt ends Python by SIGINT, as the shell expects of a Ctrl-C
    assert proc.returncode == (-signal.SIGINT if debug else 130), proc.stderr
    if debug:
        assert "Traceback" in proc.stderr and "KeyboardInterrupt" in proc.stderr
    else:
        assert proc.stderr == "mlplab: interrupted\n"


def test_the_entry_points_are_the_guarded_launcher():
    """The installed script and ``python -m mlplab`` both start from the guard above."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    scripts = (root / "pyproject.toml").read_text().split("[project.scripts]")[1].split("[")[0]
    assert scripts.split() == ["mlplab", "=", '"mlplab._launch:main"']
    assert "from mlplab._launch import main" in (root / "mlplab" / "__main__.py").read_text()


@pytest.mark.parametrize("symbol", [True, False], ids=["flag-symbol", "no-flag-symbol"])
def test_python_m_mlplab_exits_with_its_status_after_a_handled_ctrl_c(tmp_path, symbol):
    """A Ctrl-C handled while C code ran Python (PyTorch's lazy imports, through pybind11's
    PyRun_String) left CPython's flag of an unhandled KeyboardInterrupt set, and ``python -m
    mlplab`` then died by SIGINT (-2) instead of exiting with its status (143 for SIGTERM). A
    plugin sets the flag as the command ends, as that path does: ``exec`` of a string is
    PyRun_String (Python 3.8 to 3.13 set the flag there; later ones do not). Python 3.12 and
    3.13 keep the flag in ``_PyRuntime``, with no symbol ``_Py_UnhandledKeyboardInterrupt`` for
    ctypes to clear: ``no-flag-symbol`` runs this Python so (it died by SIGINT there)."""
    import subprocess
    import sys

    plugin = tmp_path / "flagging.py"
    plugin.write_text(
        "import ctypes\n"
        "from mlplab import interrupts\n"
        f"if not {symbol}:  # as Python 3.12 and 3.13\n"
        "    def in_dll(dll, name, _in_dll=ctypes.c_int.in_dll):\n"
        "        if name == '_Py_UnhandledKeyboardInterrupt':\n"
        "            raise ValueError(f'symbol not found: {name}')\n"
        "        return _in_dll(dll, name)\n"
        "    ctypes.c_int.in_dll = in_dll\n"
        "_closing = interrupts.closing\n"
        "def closing():\n"
        "    try:\n"
        "        exec('raise KeyboardInterrupt')  # handled, as mlplab handles a Ctrl-C\n"
        "    except KeyboardInterrupt:\n"
        "        pass\n"
        "    _closing()\n"
        "interrupts.closing = closing\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "mlplab", "--plugin", str(plugin), "runs",
                           str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr)


_TERMINATED_IMPORT = """
import os, signal, sys

class Kill:  # a SIGTERM as NumPy imports
    def find_spec(self, name, path=None, target=None):
        if name == "numpy":
            os.kill(os.getpid(), signal.SIGTERM)

sys.meta_path.insert(0, Kill())
from mlplab._launch import main
sys.exit(main())
"""


def test_sigterm_as_the_command_lines_modules_import_is_one_line_and_143():
    """A SIGTERM in the command's first third of a second, before its own handling was
    installed, ended the process with no word, and its parent saw a death by SIGTERM (-15), not
    the documented 143."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _TERMINATED_IMPORT, "data", "info", "digits"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr == "mlplab: terminated (SIGTERM)\n"


_SIGNAL_AS_IT_ENDS = """
import atexit, os, signal, sys, time

def late():  # one more signal as the process ends (its exit callbacks run)
    os.kill(os.getpid(), signal.{sig})
    time.sleep(0.2)  # (where the signal would be handled)

atexit.register(late)
from mlplab._launch import main
sys.exit(main())
"""


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("words, status", [(["--version"], 0),
                                           (["data", "info", "no-such-data"], 2)])
def test_a_signal_as_the_process_ends_is_ignored_and_the_commands_status_kept(sig, words,
                                                                               status):
    """A second Ctrl-C in the third of a second a command takes to exit (threads joined,
    PyTorch's exit callbacks, the interpreter's shutdown) printed a traceback from whatever ran
    then, or ended the process by the signal (-2, -15): it is ignored, the status kept."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _SIGNAL_AS_IT_ENDS.replace("{sig}", sig),
                           *words], capture_output=True, text=True, timeout=120)
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "KeyboardInterrupt" not in proc.stderr
