"""The code examples in the public API's docstrings run as written: the ``>>>`` examples (as
doctests) and the ``::`` blocks of the docstrings of mlplab's packages, of every name in their
``__all__`` (and its public methods) and of the modules that define those names.

A ``::`` block runs in its module's namespace, as a reader of that module would, in a fresh
folder (examples write ``runs/...``); the names it leaves to the reader (``X_train``, ``ds``, ...)
are the bundled digits, the dataset a user has without a download. The examples that download or
take long are skipped by name below (``SKIPPED``) or by ``# doctest: +SKIP``.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import re
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

PACKAGES = ["mlplab", "mlplab.data", "mlplab.runs", "mlplab.tuning", "mlplab.report"]
if importlib.util.find_spec("torch") is not None:
    PACKAGES.append("mlplab.torch_mlp")

# (where, first line of the block) -> why it does not run here
SKIPPED = {
    ("mlplab.runs", 'result = train_run(preset="exercise-default", dataset="cifar10", '
                    'out="runs/ex")'): "needs CIFAR-10, a download",
}


def _documented() -> list[tuple[str, Any, ModuleType]]:
    """(name, object, the module whose namespace its examples run in) of every public docstring."""
    found: dict[int, tuple[str, Any, ModuleType]] = {}

    def add(name: str, obj: Any, module: ModuleType) -> None:
        # constants (ints, dicts) carry their type's docstring, not mlplab's
        if inspect.ismodule(obj) or getattr(obj, "__module__", "").startswith("mlplab"):
            found.setdefault(id(obj), (name, obj, module))

    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        add(package_name, package, package)
        for name in package.__all__:
            obj = getattr(package, name)
            defining = sys.modules.get(getattr(obj, "__module__", ""), package)
            add(f"{package_name}.{name}", obj, defining)
            add(defining.__name__, defining, defining)
            if inspect.isclass(obj):
                for attribute, value in vars(obj).items():
                    if attribute.startswith("_"):
                        continue
                    value = value.fget if isinstance(value, property) else value
                    value = getattr(value, "__func__", value)  # classmethod, staticmethod
                    if inspect.isfunction(value):
                        add(f"{package_name}.{name}.{attribute}", value, defining)
    return list(found.values())


DOCUMENTED = _documented()


def _literal_blocks(doc: str) -> list[str]:
    """The indented blocks that follow a paragraph ending in ``::`` (reST's literal blocks)."""
    blocks = []
    for match in re.finditer(r"::\n\n((?:[ \t]+\S.*\n|\n)+)", doc + "\n"):
        blocks.append(textwrap.dedent(match.group(1)).strip() + "\n")
    return blocks


BLOCKS = [(name, module, block) for name, obj, module in DOCUMENTED
          for block in _literal_blocks(inspect.getdoc(obj) or "")]
DOCTESTS = [(name, module, test) for name, obj, module in DOCUMENTED
            for test in [doctest.DocTestParser().get_doctest(
                inspect.getdoc(obj) or "", {}, name, None, None)]
            if test.examples]


def test_the_examples_are_found() -> None:
    # the collection itself: it must find the examples that are there, or the tests are vacuous
    names = {name for name, _, _ in BLOCKS}
    assert {"mlplab.estimator", "mlplab.data.transforms", "mlplab.runs"} <= names
    assert "mlplab.report" in {name for name, _, _ in DOCTESTS}
    assert not [key for key in SKIPPED
                if not any((n, b.splitlines()[0]) == key for n, _, b in BLOCKS)], \
        "a skipped example is no longer in its docstring: drop it from SKIPPED"


@pytest.fixture(scope="module")
def digits() -> dict[str, Any]:
    """What a snippet leaves to its reader, from the bundled digits: the raw dataset ``ds`` and
    flat (N, 64) splits ``X_train``, ``y_train``, ...."""
    from mlplab.data import load_dataset

    ds = load_dataset("digits", seed=0)
    names: dict[str, Any] = {"ds": ds}
    for split in ("train", "val", "test"):
        X, y = ds.split(split)
        names[f"X_{split}"], names[f"y_{split}"] = X.reshape(len(X), -1), y
    return names


@pytest.mark.parametrize("name,module,block", BLOCKS,
                         ids=[f"{n}:{b.splitlines()[0][:40]}" for n, _, b in BLOCKS])
def test_docstring_block_runs(name: str, module: ModuleType, block: str, digits: dict[str, Any],
                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              request: pytest.FixtureRequest) -> None:
    code = compile(block, name, "exec")  # a skipped block still has to be Python
    if (name, block.splitlines()[0]) in SKIPPED:
        pytest.skip(f"{name}: {SKIPPED[name, block.splitlines()[0]]}")
    if name.startswith("mlplab.torch_mlp"):
        request.getfixturevalue("keep_torch_threads")  # a PyTorch run sets the process's threads
    monkeypatch.chdir(tmp_path)
    exec(code, {**vars(module), **digits})


@pytest.mark.parametrize("name,module,test", DOCTESTS, ids=[n for n, _, _ in DOCTESTS])
def test_docstring_doctest_passes(name: str, module: ModuleType, test: doctest.DocTest,
                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    test.globs = dict(vars(module))
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    failures: list[str] = []
    runner.run(test, out=failures.append)
    assert runner.failures == 0, "".join(failures)
