"""What differs on Windows and macOS, checked on Linux: console encodings, Windows' process and
file APIs (simulated where Linux lacks them), its case-insensitive path order, and files left
open, which Windows refuses to move or delete."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


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
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONUTF8": "1", "PYTHONIOENCODING": "cp1252", "MLPLAB_DATA": str(tmp_path / "d")}
    run = subprocess.run([sys.executable, "-m", "mlplab", "data", "info", f"folder:{folder}"],
                         capture_output=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr.decode("cp1252", "replace")
    out = run.stdout.decode("cp1252")
    assert "classes   2: café, \\u732b" in out


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
