"""The Python examples of README.md and docs/*.md, run: each ``python`` block in a fresh
interpreter, in a folder of its own, as a reader would paste it into a script or a notebook.

tests/test_docs.py only compiles them, which a renamed function, a wrong keyword or a file name
the code does not write passes. Here every block is listed in ``EXAMPLES``, either to run or
skipped with its reason, and a block added to the docs without an entry fails
``test_every_example_is_listed``. Blocks written for CIFAR-10 or Fashion-MNIST, or for hours of
training, run on the bundled digits with fewer epochs: the substitutions are listed with each
block, and one whose text is no longer in the block fails, so that none is silently lost.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from repo_path import pythonpath

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Example:
    """How to run one documented block, found in ``doc`` by ``marker`` (text that only it
    holds). The example ``after`` names runs first where the block continues another one, then
    ``setup`` (what the text around the block assumes: data, a run folder), then the block with
    each ``(old, new)`` of ``replace`` applied once, then ``then`` (assertions on what it made).
    That script must exit 0, print what ``prints`` matches and leave the files named in
    ``writes``. ``skip`` gives the reason not to run the block."""

    doc: str
    marker: str
    setup: str = ""
    after: Example | None = None
    replace: tuple[tuple[str, str], ...] = ()
    prints: str = ""
    writes: tuple[str, ...] = ()
    then: str = ""
    skip: str = ""


# The digits as the text's X_train ... y_val (a network of 64 inputs)
DIGITS = """\
from mlplab.data import load_dataset as _load, make_preprocessing as _prep
_ds = _load("digits")
_pre = _prep("standardize")
X_train, y_train = _pre.fit_transform(_ds.X_train), _ds.y_train
X_val, y_val = _pre.transform(_ds.X_val), _ds.y_val
X, y = X_val, y_val
"""

# A finished run in the folder ``{}`` (a two-epoch digits run)
RUN = """\
from mlplab.runs import train_run as _train
_train(dataset="digits", epochs=2, out={!r}, plots=False)
"""

# Ctrl-C after the fifth step, as a user stops a run that resume_run is then to continue
CTRL_C = """\
import os as _os
import signal as _signal
from mlplab.trainer import Callback as _Callback


class _CtrlC(_Callback):
    def on_iteration_end(self, trainer, iteration, loss):
        if iteration == 5:
            _os.kill(_os.getpid(), _signal.SIGINT)
"""

# CIFAR-10's and Fashion-MNIST's names and sizes, as the digits
FASHION = (('dataset="fashion-mnist", val_size=5000', 'dataset="digits", val_size=180'),)
DATA_INTRO = Example("data.md", 'load_dataset("cifar10")', replace=(('"cifar10"', '"digits"'),),
                     then="assert X_train.dtype == 'float32' and X_train.shape == (1437, 64)\n")

EXAMPLES = [
    Example("README.md", "TwoLayerNet(input_size=3072", setup=DIGITS,
            replace=(("3072", "64"), ("3072", "64"), ("num_iters=1000", "num_iters=100")),
            then="assert probs.shape == (len(X), 10) and abs(probs.sum(1) - 1).max() < 1e-5\n"),
    Example("architecture.md", "class ELU(Layer)",
            skip="tests/test_extending.py runs it (and the --plugin commands load it)"),
    DATA_INTRO,
    Example("data.md", "load_dataset(name, data_dir=None",
            skip="a signature, not code: test_docs.py checks it against load_dataset's"),
    Example("data.md", "Pipeline.from_state_dict", after=DATA_INTRO,
            writes=("preprocessing.npz",)),
    Example("pytorch.md", "tm.depth_study(", replace=(
        ('"folder:/tmp/mlplab-data/train", val_size=1000, test_size=1000', '"digits"'),
        ("3072", "64"), ("depths=[2, 3, 4, 5]", "depths=[2, 3]")),
        prints=r"\| init \| layers \|"),
    Example("pytorch.md", "tm.depth_run(", replace=(
        ('epochs=10', 'epochs=2'), ('init="default")', 'init="default", epochs=2)'),
        ('tm.depth_run("cifar10"', 'tm.depth_run("digits"'),
        ("layers=[2, 3, 4, 5]", "layers=[2, 3]"), ('init="both")', 'init="both", epochs=2)')),
        writes=("runs/torch/model.pt", "runs/torch/model.npz", "runs/torch/metrics.json",
                "runs/depth/depth.md", "runs/depth/depth.json")),
    Example("report.md", 'reproduce("digits", "quick"',
            skip="the quick digits study takes 15-30 s; tests/test_report.py runs this call"),
    Example("results.md", "epochs=150, hidden=[1024, 1024, 1024]",
            replace=(*FASHION, ("epochs=150", "epochs=1"))),
    Example("results.md", "epochs=275, restore_best=False, seed=0)  # and seed=1",
            replace=(*FASHION, ("epochs=275", "epochs=1"))),
    Example("results.md", 'load_run("RUN")', setup=RUN.format("RUN"), prints=r"0\.\d+"),
    Example("results.md", "lr=0.1)  # and lr=0.025",
            replace=(*FASHION, ("epochs=275", "epochs=1"))),
    Example("results.md", "class MaxNorm(Callback)",
            replace=(*FASHION, ("epochs=100", "epochs=1"))),
    Example("training.md", "read_image(p, extra", setup=RUN.format("runs/x") + """\
from PIL import Image as _Image
import numpy as _np
_Image.fromarray(_np.full((20, 24, 3), 200, _np.uint8)).save("cat.png")
_Image.fromarray(_np.full((40, 30, 3), 50, _np.uint8)).save("dog.jpg")
""", writes=("copy.npz",)),
    Example("training.md", "resume_run(\"runs/a\")", setup=CTRL_C, replace=(
        ('"cifar10"', '"digits"'), ('"cifar10"', '"digits"'),
        ('epochs=30, out="runs/a")', 'epochs=3, out="runs/a", callbacks=[_CtrlC()])'),
        ("seed=1)", "seed=1, iters=20)")),
        then="assert not result.interrupted and result.metrics['status'] == 'completed'\n"),
    Example("training.md", "class Log(Callback)", prints=r"^1 0\.\d+$"),
    Example("training.md", "GridSearchCV(pipe", replace=(
        ("random_state=0)", "random_state=0, max_epochs=5)"),)),
    Example("tuning.md", "tune(\"digits\", trials=30", setup="""\
open("space.yaml", "w").write("lr: {type: float, low: 1.0e-4, high: 0.3, log: true}\\n")
""", replace=(('storage="postgresql://me@db/optuna"', "storage=None"),
              ("trials=30", "trials=2")),
        writes=("runs/digits-ext/best-run/model.npz", "runs/digits-ext/summary.json")),
]


def _python_blocks() -> list[tuple[str, int, str]]:
    """(document, first line, body) of every ``python`` block of the docs."""
    return [(doc.name, text.count("\n", 0, m.start()) + 2, m.group(1))
            for doc in DOCS for text in [doc.read_text()]
            for m in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S)]


BLOCKS = _python_blocks()


def _block(example: Example) -> tuple[str, str]:
    """(where, body) of the one block the example names."""
    found = [(f"{doc}:{line}", body) for doc, line, body in BLOCKS
             if doc == example.doc and example.marker in body]
    assert len(found) == 1, f"{example.doc}: {len(found)} python blocks hold {example.marker!r}"
    return found[0]


def test_every_example_is_listed() -> None:
    # a block the list does not name would be neither run nor knowingly skipped
    listed = {_block(e)[0] for e in EXAMPLES}
    missing = [f"{doc}:{line}" for doc, line, _ in BLOCKS if f"{doc}:{line}" not in listed]
    assert not missing, f"python blocks not in EXAMPLES (run or skip them): {missing}"
    assert len(listed) == len(EXAMPLES) == len(BLOCKS)


def _runnable(example: Example) -> str:
    where, source = _block(example)
    for old, new in example.replace:
        assert old in source, f"{where}: {old!r} is no longer in the block; update EXAMPLES"
        source = source.replace(old, new, 1)
    before = _runnable(example.after) if example.after else ""
    return before + example.setup + source + example.then


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"{e.doc}:{e.marker}" for e in EXAMPLES])
def test_documented_example_runs(example: Example, tmp_path: Path) -> None:
    if example.skip:
        pytest.skip(example.skip)
    where = _block(example)[0]
    source = _runnable(example)
    if re.search(r"\btorch", source):  # PyTorch is an optional extra: its blocks need it here
        pytest.importorskip("torch", reason="PyTorch not installed (pip install 'mlplab[torch]')")
    script = tmp_path / "example.py"  # a file: tune's workers (spawn) import the __main__ script
    script.write_text(source)
    env = {**os.environ, "PYTHONPATH": pythonpath(), "MLPLAB_DATA": str(tmp_path / "data"),
           "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{where} failed:\n{output[-3000:]}"
    assert re.search(example.prints, done.stdout, re.M), \
        f"{where} did not print {example.prints!r}:\n{done.stdout[-2000:]}"
    for name in example.writes:
        assert (tmp_path / name).is_file(), f"{where} did not write {name}"
