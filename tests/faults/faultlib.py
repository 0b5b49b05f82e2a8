"""Shared helpers of the fault-injection suite: real ``mlplab`` processes and a checker that
every file present in a run folder is complete."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: one BLAS thread, so that separate processes compute bit-identical results
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg",
       "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def mlplab_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "mlplab", *args]


def check_run_folder(run: Path) -> dict:
    """Parse every file a run folder may hold; raise AssertionError naming any that is torn.

    Returns what was found: ``{"files": [...], "iteration": checkpoint iteration or None,
    "temp_files": [names of leftover temporary files]}``.
    """
    from mlplab import io
    from mlplab.runs import RunConfig, load_checkpoint, read_history

    found = {"files": [], "iteration": None, "temp_files": []}
    if not run.exists():
        return found
    for p in sorted(run.iterdir()):
        if p.name.startswith("."):
            found["temp_files"].append(p.name)
            continue
        found["files"].append(p.name)
        try:
            if p.name == "config.json":
                RunConfig.from_dict(json.loads(p.read_text())).validate()
            elif p.name == "checkpoint.npz":
                _, state, _ = load_checkpoint(p)
                found["iteration"] = state["iteration"]
            elif p.name == "model.npz":
                io.load_model(p)
            elif p.name == "history.csv":
                assert read_history(p)["loss"], "history.csv has no rows"
            elif p.name == "metrics.json":
                assert json.loads(p.read_text())["status"] in ("completed", "interrupted")
            elif p.suffix == ".png":
                from PIL import Image

                with Image.open(p) as im:
                    im.verify()
            else:
                raise AssertionError(f"unexpected file {p.name}")
        except Exception as exc:  # anything but a complete file is a failure of atomicity
            raise AssertionError(f"{p} is torn or unreadable: {type(exc).__name__}: {exc}") \
                from exc
    return found
