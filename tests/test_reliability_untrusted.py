"""Untrusted files never run code.

A crafted CIFAR-10 batch or model file whose pickle would run a shell command is refused, through
the library and through the command line, and the command does not run. Each payload is first
shown to work with a plain ``pickle.loads`` / ``np.load(allow_pickle=True)``, so the refusals are
of something real. A static check walks the source for every way of loading a pickle.
"""

from __future__ import annotations

import ast
import codecs
import io as stdio
import os
import pickle
import shlex
import tarfile
from pathlib import Path

import numpy as np
import pytest

from mlplab import MLP, io
from mlplab.cli import main
from mlplab.data import DatasetError, load_dataset
from mlplab.data.cifar import parse_batch
from mlplab.runs import load_checkpoint, train_run

ROOT = Path(__file__).resolve().parents[1]


class Command:
    """Unpickling this runs ``touch <marker>`` through ``callable_``."""

    def __init__(self, marker: Path, callable_=os.system) -> None:
        self.marker, self.callable = marker, callable_

    def __reduce__(self):
        if self.callable is os.system:
            return os.system, (f"touch {shlex.quote(str(self.marker))}",)
        if self.callable is exec:
            return exec, (f"open({str(self.marker)!r}, 'w').close()",)
        import subprocess

        return subprocess.call, (["touch", str(self.marker)],)


def _batch(payload) -> dict:
    """A CIFAR-10 batch dict with ``payload`` hidden in one of its values."""
    return {b"batch_label": b"training batch 1 of 5", b"labels": [0, 1],
            b"data": np.zeros((2, 3072), np.uint8), b"filenames": [b"a.png", payload]}


PAYLOADS = [
    pytest.param(os.system, protocol, id=f"os.system-p{protocol}") for protocol in range(6)
] + [pytest.param(exec, 2, id="exec"), pytest.param("subprocess", 4, id="subprocess.call")]


@pytest.mark.parametrize("callable_,protocol", PAYLOADS)
def test_crafted_cifar_pickle_is_refused_and_runs_nothing(tmp_path, callable_, protocol):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_batch(Command(marker, callable_)), protocol=protocol)
    with pytest.raises(DatasetError, match="refusing to load") as info:
        parse_batch(payload, "data_batch_1")
    assert "\n" not in str(info.value)
    assert not marker.exists()
    # the payload is real: an ordinary unpickler runs the command
    pickle.loads(payload)
    assert marker.exists()


def _cifar_archive(folder: Path, bad_member: str, payload: bytes) -> Path:
    good = pickle.dumps(_batch(b"x.png"), protocol=2)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    archive = folder / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in names:
            data = payload if name == bad_member else (
                pickle.dumps({b"label_names": [b"a"] * 10}, protocol=2)
                if name == "batches.meta" else good)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, stdio.BytesIO(data))
    return archive


@pytest.mark.parametrize("member", ["data_batch_3", "test_batch", "batches.meta"])
def test_crafted_batch_inside_the_archive_is_refused_by_load_dataset_and_the_cli(
        tmp_path, member, monkeypatch, capsys):
    monkeypatch.setenv("MLPLAB_DATA", str(tmp_path / "root"))
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar"
    folder.mkdir()
    _cifar_archive(folder, member, pickle.dumps({b"x": Command(marker)}, protocol=2))
    with pytest.raises(DatasetError, match=f"{member}: refusing to load posix.system"):
        load_dataset("cifar10", data_dir=folder)
    code = main(["data", "info", "cifar10", "--data-dir", str(folder)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "refusing to load posix.system" in err[0]
    assert not marker.exists()


def _malicious_npz(path: Path, marker: Path, good: dict[str, np.ndarray]) -> Path:
    """``good``'s arrays plus an object array whose pickle runs ``touch marker``."""
    np.savez(path, **good, **{"param/evil": np.array([Command(marker)], dtype=object)})
    return path


def test_model_file_with_an_object_array_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    good = io.read_npz(io.save_model(tmp_path / "good.npz", MLP(4, [3], 2, seed=0)))
    bad = _malicious_npz(tmp_path / "model.npz", marker, good)
    with pytest.raises(ValueError, match="'param/evil.npy' is a pickled Python object array"):
        io.load_model(bad)
    assert not marker.exists()
    with np.load(bad, allow_pickle=True) as z:  # the payload is real
        z["param/evil"]
    assert marker.exists()


def test_malicious_files_in_a_run_folder_are_refused_by_every_command(tmp_path, capsys):
    run = tmp_path / "run"
    train_run(dataset="digits", hidden=[8], epochs=1, out=run, plots=False)
    img = tmp_path / "digit.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    marker = tmp_path / "pwned"
    for name in ("model.npz", "checkpoint.npz"):
        _malicious_npz(run / name, marker, io.read_npz(run / name))
    (run / "metrics.json").unlink()  # so that --resume reads the checkpoint
    for argv in (["evaluate", str(run)], ["predict", str(run), str(img)],
                 ["train", "--resume", str(run), "--quiet"]):
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 1, argv
        assert "pickled Python object array" in err[-1] and "Traceback" not in "".join(err)
    # mlplab runs reads only the checkpoint's trainer record, but checks every member first
    assert main(["runs", str(run)]) == 0
    out, err = capsys.readouterr()
    assert " unreadable " in out and "pickled Python object array" in err
    with pytest.raises(ValueError, match="object array"):
        load_checkpoint(run / "checkpoint.npz")
    assert not marker.exists()


def test_object_arrays_are_never_written(tmp_path):
    with pytest.raises(ValueError, match="object array"):
        io.write_npz(tmp_path / "x.npz", {"a": np.array([None], dtype=object)})
    assert not (tmp_path / "x.npz").exists()


# --------------------------------------------------------------------------- every code path
def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = f.value.id if isinstance(f, ast.Attribute) and \
                isinstance(f.value, ast.Name) else ""
            kwargs = {k.arg: k.value for k in node.keywords}
            yield owner, name, kwargs, node.lineno


def _const(node) -> object:
    return node.value if isinstance(node, ast.Constant) else "<not a constant>"


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


#: the loaders a ``yaml.load`` call may name: SafeLoader's subclasses, checked to be so below
SAFE_LOADERS = {"_unique_key_loader()"}


def test_the_yaml_loaders_named_safe_are_safe():
    import yaml

    from mlplab.tuning.space import _unique_key_loader

    assert issubclass(_unique_key_loader(), yaml.SafeLoader)
    with pytest.raises(yaml.YAMLError, match="could not determine a constructor"):
        yaml.load("!!python/object/apply:os.system ['true']", Loader=_unique_key_loader())


def test_no_code_path_unpickles_outside_the_restricted_unpickler():
    """Every load in the package: ``np.load`` with ``allow_pickle=False``, ``torch.load`` with
    ``weights_only=True``, YAML through ``safe_load``, and no ``pickle``/``marshal``/``dill``/
    ``joblib``/``shelve`` loads or unpicklers except the CIFAR-10 ``RestrictedUnpickler``."""
    problems, seen = [], {"np.load": 0, "torch.load": 0, "Unpickler": 0}
    for path in sorted((ROOT / "mlplab").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        rel = path.relative_to(ROOT)
        for owner, name, kwargs, line in _calls(tree):
            where = f"{rel}:{line}"
            if owner in ("pickle", "marshal", "dill", "joblib", "shelve", "cPickle", "_pickle") \
                    and name in ("load", "loads", "Unpickler", "open"):
                problems.append(f"{where}: {owner}.{name}")
            if owner == "np" and name == "load":
                seen["np.load"] += 1
                if _const(kwargs.get("allow_pickle")) is not False:
                    problems.append(f"{where}: np.load without allow_pickle=False")
            if owner == "torch" and name == "load":
                seen["torch.load"] += 1
                if _const(kwargs.get("weights_only")) is not True:
                    problems.append(f"{where}: torch.load without weights_only=True")
            if owner == "yaml" and name in ("load", "unsafe_load", "full_load", "load_all") \
                    and ast.unparse(kwargs.get("Loader", ast.Constant(None))) not in SAFE_LOADERS:
                problems.append(f"{where}: yaml.{name} (use safe_load)")
            # (python -m mlplab's exec("pass") runs a literal, to clear CPython's flag of an
            # unhandled Ctrl-C: no data can reach it)
            if name in ("eval", "exec") and owner == "" and \
                    lines_of(path)[line - 1].strip() != 'exec("pass")':
                problems.append(f"{where}: {name}()")
        # declarations for type checkers only never run (safe_pickle's stub of the pure-Python
        # unpickler's internals, which typeshed leaves out)
        type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                     and ast.unparse(block.test) == "TYPE_CHECKING"
                     for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):  # subclasses of an unpickler must be the restricted one
            if id(node) in type_only:
                continue
            if isinstance(node, ast.ClassDef) and any("Unpickler" in ast.unparse(b)
                                                      for b in node.bases):
                seen["Unpickler"] += 1
                if (rel.as_posix(), node.name) != ("mlplab/data/safe_pickle.py",
                                                   "RestrictedUnpickler"):
                    problems.append(f"{rel}:{node.lineno}: unpickler {node.name}")
                elif not any(isinstance(f, ast.FunctionDef) and f.name == "find_class"
                             for f in node.body):
                    problems.append(f"{rel}: RestrictedUnpickler must override find_class")
    assert problems == []
    assert seen["np.load"] >= 2 and seen["torch.load"] >= 1 and seen["Unpickler"] == 1, seen


def test_the_unpickler_admits_exactly_the_cifar_globals():
    from mlplab.data.safe_pickle import RestrictedUnpickler

    allowed = RestrictedUnpickler(stdio.BytesIO(b""))._allowed()
    assert sorted(allowed) == [("_codecs", "encode"), ("numpy", "dtype"), ("numpy", "ndarray"),
                                ("numpy._core.multiarray", "_reconstruct"),
                                ("numpy._core.numeric", "_frombuffer"),
                                ("numpy.core.multiarray", "_reconstruct"),
                                ("numpy.core.numeric", "_frombuffer")]
    # _codecs.encode is admitted for latin1 text only (what Python 3 writes for bytes)

    class CodecTrick:
        def __reduce__(self):
            return codecs.encode, (b"x" * 100, "zlib")

    trick = pickle.dumps({b"data": CodecTrick()}, protocol=2)
    assert b"_codecs\nencode" in trick
    with pytest.raises(DatasetError, match="only encodes text as latin1"):
        parse_batch(trick, "data_batch_1")


def test_json_meta_is_never_evaluated(tmp_path):
    """The model file's metadata is JSON read with json.loads; a Python expression is not
    evaluated."""
    good = io.read_npz(io.save_model(tmp_path / "good.npz", MLP(4, [3], 2, seed=0)))
    marker = tmp_path / "pwned"
    good["__meta__"] = np.array(f"__import__('os').system('touch {marker}')")
    np.savez(tmp_path / "bad.npz", **good)
    with pytest.raises(ValueError, match="not valid JSON"):
        io.load_model(tmp_path / "bad.npz")
    assert not marker.exists()


def test_a_pickle_cut_before_its_end_says_truncated_once():
    """A batch cut before its STOP opcode said "the file may be truncated" twice in one line:
    once in the reader's reason, once in the advice around it."""
    from mlplab.data.base import DatasetError
    from mlplab.data.safe_pickle import load_pickle

    whole = pickle.dumps({b"labels": [1, 2]}, protocol=2)
    with pytest.raises(DatasetError) as e:
        load_pickle(whole[:-1], "data_batch_1")
    assert str(e.value).count("truncated") == 1, e.value
    assert "before its STOP opcode" in str(e.value)
