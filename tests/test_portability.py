"""What differs on Windows and macOS, checked on Linux: console encodings, Windows' process and
file APIs (simulated where Linux lacks them), its case-insensitive path order, and files left
open, which Windows refuses to move or delete."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import types
from pathlib import Path, PureWindowsPath

import numpy as np
import optuna
import pytest
from PIL import Image
from repo_path import pythonpath


def _image_folder(root: Path, classes: list[str], per_class: int = 10) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (4, 4), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


# --------------------------------------------------------------------------- console output
def test_cli_output_degrades_on_a_console_encoding_without_the_characters(tmp_path):
    """On Windows, output redirected to a file or a pipe is encoded with the ANSI code page
    (cp1252 here, as in Western Europe) and strictly: a class folder named in another script
    ended `mlplab data info` with UnicodeEncodeError. It is written as \\uXXXX instead, and
    what the code page has (é) is written as itself."""
    folder = _image_folder(tmp_path / "pets", ["café", "猫"])
    env = {**os.environ, "PYTHONPATH": pythonpath(),
           "PYTHONUTF8": "1", "PYTHONIOENCODING": "cp1252", "MLPLAB_DATA": str(tmp_path / "d")}
    run = subprocess.run([sys.executable, "-m", "mlplab", "data", "info", f"folder:{folder}"],
                         capture_output=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr.decode("cp1252", "replace")
    out = run.stdout.decode("cp1252")
    assert "classes   2: café, \\u732b" in out


def test_class_folders_named_in_utf8_under_an_ascii_locale(tmp_path):
    """Under ``LC_ALL=C`` without Python's UTF-8 mode file names are decoded as ASCII, so the
    class folder ``café`` reached mlplab as ``caf\\udcc3\\udca9`` and the dataset was refused:
    "class folder name b'caf\\xc3\\xa9' is not valid UTF-8" (it is). It is class ``café``, as
    under a UTF-8 locale."""
    folder = _image_folder(tmp_path / "pets", ["café", "dog"])
    env = {**os.environ, "PYTHONPATH": pythonpath(),
           "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0",
           "PYTHONIOENCODING": "utf-8", "MLPLAB_DATA": str(tmp_path / "d")}
    run = subprocess.run([sys.executable, "-m", "mlplab", "data", "info", f"folder:{folder}"],
                         capture_output=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr.decode("utf-8", "replace")
    assert "classes   2: café, dog" in run.stdout.decode("utf-8")


def test_cli_output_under_an_ascii_locale(tmp_path, monkeypatch):
    """Under ``LC_ALL=C`` without Python's UTF-8 mode standard output is ASCII with
    ``surrogateescape``: `mlplab data info` of a class ``café`` ended with "'ascii' codec can't
    encode character '\\xe9'", and standard error (``backslashreplace``) showed the report's
    stages as ``Q1 \\xb7 Forward pass``. Now é is written as \\xe9, mlplab's typography as
    its ASCII look-alike, a file name's undecodable byte as itself; the streams are left as they
    were found."""
    folder = _image_folder(tmp_path / "pets", ["café", "猫"])
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "d"))
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="surrogateescape")
    monkeypatch.setattr(sys, "stdout", stdout)
    from mlplab.cli import main

    assert main(["data", "info", f"folder:{folder}"]) == 0
    assert stdout.errors == "surrogateescape"
    stdout.flush()
    assert b"classes   2: caf\\xe9, \\u732b" in stdout.buffer.getvalue()
    from mlplab.cli._console import lenient_output

    stderr = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="backslashreplace")
    monkeypatch.setattr(sys, "stderr", stderr)
    with lenient_output():
        print("Q1 \u00b7 Forward pass \u2014 2 \u00d7 3 \u2264 7, caf\udce9", file=sys.stderr)
    assert stderr.errors == "backslashreplace"
    stderr.flush()
    assert stderr.buffer.getvalue() == b"Q1 - Forward pass - 2 x 3 <= 7, caf\xe9\n"


def test_cli_restores_its_output_streams(tmp_path, monkeypatch):
    """``main()`` called from Python leaves the streams' error handling as it found it."""
    folder = _image_folder(tmp_path / "pets", ["cat", "猫"])
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "d"))
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="ascii")  # errors: strict
    monkeypatch.setattr(sys, "stdout", stdout)
    from mlplab.cli import main

    assert main(["data", "info", f"folder:{folder}"]) == 0
    assert stdout.errors == "strict"
    stdout.flush()
    assert b"classes   2: cat, \\u732b" in stdout.buffer.getvalue()


def test_as_written_is_the_text_a_stream_writes():
    from mlplab.cli._console import as_written, lenient_output

    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="replace")
    assert as_written("café 猫", ascii_out) == "caf? ?"
    cp1252 = io.TextIOWrapper(io.BytesIO(), encoding="cp1252", errors="backslashreplace")
    assert as_written("café 猫", cp1252) == "café \\u732b"
    assert as_written("café 猫", io.StringIO()) == "café 猫"  # no encoding: as it is
    strict = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stdout", strict)
        with lenient_output():  # standard output by default, as the command's run writes it
            assert as_written("a…b caf\udce9 é") == "a...b caf\udce9 \\xe9"


@pytest.mark.parametrize("encoding", ["ascii", "cp1252", "ascii:replace"])
def test_tables_line_up_when_the_output_encoding_lacks_their_characters(tmp_path, encoding):
    """`mlplab runs`, `data info` and `evaluate` padded each cell by its text, but a character
    the output's encoding lacks is written otherwise (猫 as \\u732b or ?, … as ..., é as
    \\xe9 in ASCII): the columns after such a cell came out of line. Cells are padded as
    written. The commands that a run's end advises (``next:``) and a system error's message
    come out as lines of the encoding's text, aligned."""
    folder = _image_folder(tmp_path / "pêts", ["café", "猫", "dog", "a…b"], per_class=12)
    env = {**os.environ, "PYTHONPATH": pythonpath(),
           "PYTHONUTF8": "1", "PYTHONIOENCODING": encoding, "MLPLAB_DATA": str(tmp_path / "d"),
           "MPLBACKEND": "Agg"}
    codec = encoding.split(":")[0]

    def mlplab(*args: str) -> tuple[str, str]:
        run = subprocess.run([sys.executable, "-m", "mlplab", *args], capture_output=True,
                             env=env, cwd=tmp_path, timeout=300)
        out, err = run.stdout.decode(codec), run.stderr.decode(codec)
        assert run.returncode == 0, err
        return out, err

    def lines_up(table: list[str]) -> None:
        # every table's last column is right-aligned: rows in line are rows of one length
        assert len(table) > 2 and len({len(line) for line in table}) == 1, "\n".join(table)

    out, _ = mlplab("train", "--dataset", f"folder:{folder}", "--val-size", "8", "--test-size",
                    "8", "--epochs", "1", "--out", "runs/données", "--no-plots")
    mlplab("train", "--dataset", "digits", "--epochs", "1", "--out", "runs/digits", "--no-plots")
    # é as the output writes it: standard error writes ? as \\xe9 (Python's backslashreplace)
    e_out = {"cp1252": "é", "ascii": "\\xe9", "ascii:replace": "?"}[encoding]
    e_err = "é" if encoding == "cp1252" else "\\xe9"
    nexts = [line for line in out.splitlines() if line.startswith(("next: ", " " * 6))]
    assert nexts == [f"next: mlplab evaluate 'runs/donn{e_out}es' (per class, confusion matrix)",
                     f"      mlplab predict 'runs/donn{e_out}es' IMAGE...",
                     "      mlplab runs (the runs there, side by side)"], out

    out, _ = mlplab("data", "info", f"folder:{folder}", "--val-size", "8", "--test-size", "8")
    table = out[out.index("\nclass ") + 1:].splitlines()
    lines_up(table)
    assert len(table) == 6 and table[-1].startswith("total ")

    out, _ = mlplab("evaluate", "runs/données")
    table = out.splitlines()[1:6]  # the header and a row a class
    lines_up(table)
    assert table[0].startswith("  class ") and not out.splitlines()[6].startswith("  ")

    out, _ = mlplab("runs")
    lines_up(out.splitlines())
    assert f"\nruns/donn{e_out}es  " in out and "\nruns/digits  " in out

    # errors: one line, the path first and as the encoding writes it; a system error
    # (ENAMETOOLONG: 260 bytes in one name) without Python's "[Errno 36] ...: 'PATH'"
    too_long = "" if os.name == "nt" else "cannot be looked at (File name too long)"
    # (Windows: 255 characters)
    for args, said in ((["predict", "runs/données", "absent-é.png"],
                        f"mlplab predict: error: absent-{e_err}.png: no such image file.\n"),
                       (["evaluate", "runs/" + "é" * 130],
                        f"mlplab evaluate: error: runs/{e_err * 130} {too_long}".rstrip())):
        failed = subprocess.run([sys.executable, "-m", "mlplab", *args], capture_output=True,
                                env=env, cwd=tmp_path, timeout=300)
        err = failed.stderr.decode(codec)
        assert failed.returncode == 1 and err.startswith(said) and err.count("\n") == 1, err
        assert "Errno" not in err and err.endswith(".\n"), err


# --------------------------------------------------------------------------- processes
class _FakeWinapi(types.ModuleType):
    """The calls of Windows' ``_winapi`` that ``process_alive`` makes, for four processes:
    1 running, 2 exited (its handle still held elsewhere), 3 another user's, 4 no such id."""

    def __init__(self) -> None:
        super().__init__("_winapi")
        self.open_handles: set[int] = set()

    def OpenProcess(self, access: int, inherit: bool, pid: int) -> int:
        if pid in (3, 4):
            exc = OSError(13 if pid == 3 else 22, "refused")
            exc.winerror = 5 if pid == 3 else 87  # access denied; invalid parameter
            raise exc
        self.open_handles.add(1000 + pid)
        return 1000 + pid

    def WaitForSingleObject(self, handle: int, ms: int) -> int:
        return 0x102 if handle == 1001 else 0  # WAIT_TIMEOUT: running; WAIT_OBJECT_0: exited

    def CloseHandle(self, handle: int) -> None:
        self.open_handles.remove(handle)


def test_process_alive_on_windows_asks_windows_and_sends_nothing(monkeypatch):
    """``os.kill(pid, 0)`` on Windows sends CTRL_C_EVENT (0) to the console's processes: asking
    whether a trial's worker still runs would interrupt the live workers of a search, and
    answer nothing (a process id that is no process group raised, which read as alive)."""
    from mlplab.tuning import processes

    def no_kill(pid: int, sig: int) -> None:
        raise AssertionError(f"os.kill({pid}, {sig}) on Windows")

    winapi = _FakeWinapi()
    monkeypatch.setattr(processes, "_WINDOWS", True, raising=False)
    monkeypatch.setattr(os, "kill", no_kill)
    monkeypatch.setitem(sys.modules, "_winapi", winapi)
    assert [processes.process_alive(pid) for pid in (1, 2, 3, 4)] == [True, False, True, False]
    assert not winapi.open_handles


# --------------------------------------------------------------------------- files
def test_journal_storage_on_windows_without_the_symlink_privilege(tmp_path, monkeypatch):
    """Optuna's journal file locks with a symbolic link by default, which Windows lets only
    administrators (or Developer Mode) make: `--storage study.log` failed for everyone else
    with "A required privilege is not held by the client" (optuna/optuna#4298)."""
    from mlplab.tuning import storage

    def no_symlink(*args: object, **kwargs: object) -> None:
        # what Windows raises (WinError 1314, which Python maps to EINVAL)
        raise OSError(22, "A required privilege is not held by the client")

    monkeypatch.setattr(storage, "_WINDOWS", True, raising=False)
    monkeypatch.setattr(os, "symlink", no_symlink)
    spec = storage.StorageSpec(f"journal:{tmp_path / 'study.log'}", heartbeat=None)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=spec.open(), study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(optuna.load_study(study_name="s", storage=spec.open()).trials) == 2


def test_cifar_batches_are_opened_in_binary_mode(tmp_path, monkeypatch):
    """Without O_BINARY, a descriptor from ``os.open`` is in text mode on Windows: the read of a
    CIFAR-10 batch stopped at its first 0x1A byte and turned CR LF into LF."""
    from mlplab.data import cifar

    o_binary = 1 << 30  # unused by Linux's open flags; taken off again below
    flags = []
    real_open = os.open

    def spy(path: object, flag: int, *args: object) -> int:
        flags.append(flag)
        return real_open(path, flag & ~o_binary, *args)

    monkeypatch.setattr(os, "O_BINARY", o_binary, raising=False)
    monkeypatch.setattr(os, "open", spy)
    batch = tmp_path / "data_batch_1"
    batch.write_bytes(b"a\r\nb\x1ac")
    assert cifar._read(batch) == b"a\r\nb\x1ac"
    assert flags and flags[0] & o_binary


def test_class_order_does_not_depend_on_how_the_platform_compares_paths():
    """Classes are numbered in the order of their folders' names. Windows paths compare without
    case, so sorting the paths themselves numbered (Zebra, apple, Bird) differently there than
    on Linux and macOS: a model trained on one, evaluated or resumed on the other, would read
    its labels permuted."""
    from mlplab.data.folder import _class_dirs

    class WinDir(PureWindowsPath):
        def is_dir(self) -> bool:
            return True

    class Root:
        def iterdir(self) -> list[WinDir]:
            return [WinDir("C:/data/pets", n) for n in ("Zebra", "apple", "Bird", ".hidden")]

    assert [d.name for d in _class_dirs(Root())] == ["Bird", "Zebra", "apple"]


def test_cache_file_name_cut_inside_a_character_on_windows(tmp_path, monkeypatch):
    """The decode cache keeps 80 bytes of the folder's name. Windows decodes file names with
    'surrogatepass', which refuses a character cut in two: a folder named with 27 CJK characters
    (3 bytes each) ended the load with UnicodeDecodeError."""
    from mlplab.data import folder

    monkeypatch.setattr(os, "fsencode", lambda name: os.fspath(name).encode("utf-8",
                                                                          "surrogatepass"))
    monkeypatch.setattr(os, "fsdecode", lambda raw: raw.decode("utf-8", "surrogatepass")
                        if isinstance(raw, bytes) else raw)
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path))
    path = folder._cache_file(tmp_path / ("猫" * 27), [1], [2])
    assert path is not None and path.name.startswith("猫" * 26 + "-")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="lists open files with /proc")
def test_tune_leaves_no_database_connection_open(tmp_path, monkeypatch):
    """A study could outlive ``tune()`` (a traceback that Optuna keeps from its optional import
    of plotly holds the frames that ran the first search of a process), and with it the
    SQLite connections to study.db: on Windows `mlplab reproduce` then failed to move tuning/
    into place ("Access is denied"). Here the study is kept on purpose."""
    from mlplab.data import load_dataset
    from mlplab.tuning import tune

    kept = []
    create_study = optuna.create_study

    def keep(*args: object, **kwargs: object) -> optuna.Study:
        kept.append(create_study(*args, **kwargs))
        return kept[-1]

    monkeypatch.setattr(optuna, "create_study", keep)
    space = {"hidden_size": [8], "lr": 0.1, "epochs": 1, "batch_size": 64}
    tune(load_dataset("digits"), trials=1, search_space=space, out=tmp_path / "t",
         progress=False, search_only=True)
    assert kept

    def open_files() -> list[str]:
        names = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                names.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass
        return names

    assert not [f for f in open_files() if f.startswith(str(tmp_path))]
    assert kept[0].trials  # the study still works: it opens new connections


def test_the_reports_rerun_command_is_quoted_for_the_platforms_shell(monkeypatch):
    """A folder with a space: POSIX single quotes on Linux and macOS; on Windows double quotes,
    which cmd.exe and PowerShell read (they keep single quotes as part of the path)."""
    from mlplab._text import shell_command

    parts = ["mlplab", "reproduce", "--out", r"C:\My Runs\r1", "--only", "q1,q2"]
    assert shell_command(parts) == r"mlplab reproduce --out 'C:\My Runs\r1' --only q1,q2"
    monkeypatch.setattr(os, "name", "nt")
    windows = shell_command(parts)
    assert windows == r'mlplab reproduce --out "C:\My Runs\r1" --only q1,q2'
