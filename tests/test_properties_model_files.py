"""Property-based tests (hypothesis) of the model-file and checkpoint readers on hostile files.

A model file comes from someone else: random bytes, a truncated or bit-flipped download, arrays
renamed, reshaped, retyped or filled with NaN, object arrays (pickles), a crafted ``__meta__``
(absurd layer sizes, wrong types, unknown classes), ``.npy`` headers promising terabytes. The
reader must return a model that works, or raise ``ValueError`` with a one-line message naming the
file - never another exception or a large allocation.
"""

from __future__ import annotations

import io as stdio
import json
import os
import zipfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hostile import bounded as _bounded
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlplab import MLP, io
from mlplab.data import make_preprocessing
from mlplab.models import TwoLayerNet
from mlplab.runs import load_checkpoint, save_checkpoint
from mlplab.trainer import Trainer, TrainingDivergedError

MAX_PEAK = 64 << 20
SCALE = int(os.environ.get("MLPLAB_HYPOTHESIS_SCALE", "1"))
FAST = settings(max_examples=200 * SCALE, deadline=timedelta(seconds=10),
                derandomize=SCALE == 1,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def bounded(call, where: str):
    return _bounded(call, where, ValueError, MAX_PEAK)


def _models() -> dict[str, tuple]:
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, (20, 2, 3, 1)).astype(np.uint8)
    pre = make_preprocessing("standardize")
    pre.fit(images)
    return {
        "mlp": (MLP(6, [5, 4], 3, seed=0), pre),
        "batchnorm": (MLP(6, [5], 3, batchnorm=True, dropout=0.2, seed=0), {"mean": np.ones(6)}),
        "twolayer": (TwoLayerNet(6, 4, 3, std=0.1, seed=0), None),
    }


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def originals(scratch) -> dict[str, dict[str, np.ndarray]]:
    """The arrays of three valid model files and of a valid checkpoint."""
    out = {}
    for name, (model, pre) in _models().items():
        out[name] = io.read_npz(io.save_model(scratch / f"{name}.npz", model, pre,
                                              {"classes": ["a", "b", "c"]}))
    model, pre = _models()["mlp"]
    rng = np.random.RandomState(1)
    X, y = rng.randn(30, 6).astype(np.float32), rng.randint(0, 3, 30)
    trainer = Trainer(optimizer="adam", epochs=2, batch_size=8, patience=1)
    trainer.fit(model, X, y, X[:10], y[:10])
    out["checkpoint"] = io.read_npz(save_checkpoint(scratch / "ckpt.npz", trainer, pre))
    return out


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**64, 2**64) |
                    st.floats(allow_nan=False) | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=3) |
                    st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
ODD_SIZES = st.sampled_from([0, -1, 1, 3, 10**12, 2**63, 1.5, "5", True, None, [5], 2**31])
ODD_ARRAYS = st.one_of(
    st.builds(lambda shape, dt: np.zeros(shape, dt),
              st.lists(st.integers(0, 7), max_size=3).map(tuple),
              st.sampled_from(["f4", "f8", "f2", "i4", "u1", "?", "c8", "U2", "S2", "V3",
                               "M8[s]"])),
    st.builds(lambda shape, v: np.full(shape, v, np.float32),
              st.sampled_from([(6, 5), (5,), (5, 4), (4, 3), (3,)]),
              st.sampled_from([np.nan, np.inf, -np.inf, 1e30])),
    st.just(np.array([{"x": 1}, None], dtype=object)),
    st.just(np.array("{}")), st.just(np.array(b"\xff\xfe")),
)


@st.composite
def tampered(draw, originals) -> dict[str, np.ndarray]:
    """A valid model file's arrays, with one to three changes."""
    arrays = dict(originals[draw(st.sampled_from(["mlp", "batchnorm", "twolayer"]))])
    meta = json.loads(str(arrays["__meta__"]))
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["drop", "array", "meta", "config", "key", "meta array"]))
        keys = sorted(arrays)
        if what == "drop":
            arrays.pop(draw(st.sampled_from(keys)))
        elif what == "array":
            arrays[draw(st.sampled_from(keys))] = draw(ODD_ARRAYS)
        elif what == "key":
            arrays[draw(st.sampled_from(["param/W9", "param/", "param/ü", "preprocessing/x",
                                         "x", "param/running_mean1"]))] = draw(ODD_ARRAYS)
        elif what == "config":
            field = draw(st.sampled_from(["input_size", "hidden_sizes", "num_classes",
                                          "activation", "init", "std", "dropout", "batchnorm",
                                          "dtype", "seed", "unknown"]))
            value = draw(ODD_SIZES | JSON)
            if field == "hidden_sizes" and draw(st.booleans()):
                value = draw(st.lists(ODD_SIZES, max_size=3))
            if isinstance(meta.get("config"), dict):
                meta["config"][field] = value
        elif what == "meta":
            field = draw(st.sampled_from(["format", "version", "class", "config",
                                          "preprocessing", "extra"]))
            meta[field] = draw(JSON | st.sampled_from(["MLP", "TwoLayerNet", "mlplab-model"]))
        else:
            arrays["__meta__"] = draw(st.sampled_from(
                [np.array([json.dumps(meta)]), np.array(json.dumps(meta).encode()),
                 np.array("[1, 2]"), np.array('{"format": "mlplab-model"')]))
            continue
        if "__meta__" in arrays and arrays["__meta__"].dtype.kind == "U" and \
                arrays["__meta__"].shape == ():
            arrays["__meta__"] = io.json_array(meta)
    return arrays


def _npy_header(shape, descr: str) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


@st.composite
def model_files(draw, originals) -> bytes:
    kind = draw(st.sampled_from(["random", "damaged", "tampered", "tampered", "headers",
                                 "valid"]))
    if kind == "random":
        return draw(st.binary(max_size=500))
    if kind == "headers":  # hand-made .npy headers: huge shapes, odd dtypes, short data
        buf = stdio.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("__meta__.npy", _npy_header((), "<U2") + "{}".encode("utf-32-le"))
            shape = tuple(draw(st.lists(st.sampled_from([0, 1, 3, 2**20, 2**31, 2**40]),
                                        max_size=3)))
            descr = draw(st.sampled_from(["<f4", "<f8", "|O", "|V1000000", "<U100000000", "|u1"]))
            z.writestr("param/W1.npy", _npy_header(shape, descr) + draw(st.binary(max_size=64)))
        return buf.getvalue()
    buf = stdio.BytesIO()
    arrays = draw(tampered(originals)) if kind == "tampered" else \
        originals[draw(st.sampled_from(["mlp", "batchnorm", "twolayer"]))]
    np.savez(buf, **arrays)  # may pickle an object array: the reader must refuse it
    data = buf.getvalue()
    if kind == "damaged":
        how = draw(st.sampled_from(["truncate", "flip"]))
        if how == "truncate":
            return data[:draw(st.integers(0, len(data) - 1))]
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            out[draw(st.integers(0, len(out) - 1))] ^= draw(st.integers(1, 255))
        return bytes(out)
    return data


def _works(loaded) -> None:
    """A model that was accepted is usable: it predicts probabilities for its input size."""
    model = loaded.model
    X = np.zeros((2, model.input_size), model.dtype)
    probs = model.predict_proba(X)
    assert probs.shape == (2, model.num_classes) and np.isfinite(probs).all()
    for name, value in model.state_dict().items():
        assert np.isfinite(value).all(), name


@FAST
@given(st.data())
def test_load_model_on_hostile_files(scratch, originals, data):
    path = scratch / "shared-model.npz"
    path.write_bytes(data.draw(model_files(originals)))
    result = bounded(lambda: io.load_model(path), str(path))
    if not isinstance(result, ValueError):
        _works(result)


@st.composite
def checkpoints(draw, originals) -> bytes:
    arrays = dict(originals["checkpoint"])
    state = json.loads(str(arrays["__trainer__"]))
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["field", "drop", "array", "json"]))
        if what == "field" and isinstance(state, dict):
            state[draw(st.sampled_from(sorted(state) + ["history"]))] = draw(JSON)
        elif what == "drop" and isinstance(state, dict) and state:
            state.pop(draw(st.sampled_from(sorted(state))))
        elif what == "array" or what in ("field", "drop"):
            key = draw(st.sampled_from(sorted(arrays) + ["order", "best/W1", "optimizer/m.W1"]))
            arrays[key] = draw(ODD_ARRAYS)
        else:
            state = draw(JSON)
    if "__trainer__" in arrays and arrays["__trainer__"].dtype.kind == "U":
        arrays["__trainer__"] = io.json_array(state)
    buf = stdio.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@settings(FAST, max_examples=100 * SCALE)
@given(st.data())
def test_load_checkpoint_on_hostile_files(scratch, originals, data):
    path = scratch / "shared-checkpoint.npz"
    path.write_bytes(data.draw(checkpoints(originals)))
    result = bounded(lambda: load_checkpoint(path), str(path))
    if not isinstance(result, ValueError):
        loaded, state, seconds = result
        _works(loaded)
        assert isinstance(state["iteration"], int) and isinstance(state["history"], dict)
        # resuming from what was accepted works, or says the state is invalid
        rng = np.random.RandomState(1)
        X, y = rng.randn(30, 6).astype(np.float32), rng.randint(0, 3, 30)
        trainer = Trainer(optimizer="adam", epochs=3, batch_size=8)
        trainer.resume(state)
        try:
            with np.errstate(all="ignore"):
                trainer.fit(loaded.model, X, y)
        except TrainingDivergedError:  # finite but huge weights: a clear error of its own
            pass
        except ValueError as exc:
            assert "\n" not in str(exc) and "resume" in str(exc), exc


def test_terabyte_header_is_refused_before_allocating(scratch):
    buf = stdio.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("param/W1.npy", _npy_header((2**20, 2**20), "<f8") + b"x" * 16)
    path = scratch / "terabyte.npz"
    path.write_bytes(buf.getvalue())
    error = bounded(lambda: io.load_model(path), str(path))
    assert isinstance(error, ValueError) and "promises 8796093022208 bytes" in str(error)


def test_absurd_config_is_refused_before_building(scratch, originals):
    arrays = dict(originals["mlp"])
    meta = json.loads(str(arrays["__meta__"]))
    meta["config"].update(input_size=10**6, hidden_sizes=[10**6, 10**6])  # 8 TB of weights
    arrays["__meta__"] = io.json_array(meta)
    path = scratch / "absurd.npz"
    np.savez(path, **arrays)
    error = bounded(lambda: io.load_model(path), str(path))
    assert isinstance(error, ValueError) and "the config implies (1000000, 1000000)" in str(error)


@pytest.mark.parametrize("field,value", [("preprocessing", True), ("preprocessing", "mean"),
                                         ("preprocessing", [1, 2]), ("extra", ["ab"]),
                                         ("extra", "x"), ("class", ["MLP"])])
def test_found_by_the_deep_search(scratch, originals, field, value):
    """Cases a 20x search (MLPLAB_HYPOTHESIS_SCALE=20) found: non-object ``preprocessing`` or
    ``extra`` in ``__meta__`` raised TypeError, or a ValueError without the file name."""
    arrays = dict(originals["twolayer"])
    meta = json.loads(str(arrays["__meta__"]))
    meta[field] = value
    arrays["__meta__"] = io.json_array(meta)
    path = scratch / "regression.npz"
    np.savez(path, **arrays)
    result = bounded(lambda: io.load_model(path), str(path))
    assert isinstance(result, ValueError) or field == "class"


@pytest.mark.parametrize("offset,value", [(4, 0x6B), (6, 0x01), (8, 0x63)])
def test_zip_headers_claiming_a_new_version_encryption_or_compression(scratch, offset, value):
    """A damaged local header can claim a zip version or compression method zipfile does not
    implement (NotImplementedError) or an encrypted entry (RuntimeError): still a ValueError."""
    buf = stdio.BytesIO()
    np.savez(buf, __meta__=np.array("{}"))
    data = bytearray(buf.getvalue())
    data[offset] = value  # local file header: version needed (4), flags (6), method (8)
    cd = data.rfind(b"PK\x01\x02")  # and the same fields in the central directory
    data[cd + offset + 2] = value
    path = scratch / "zipflag.npz"
    path.write_bytes(bytes(data))
    error = bounded(lambda: io.load_model(path), str(path))
    assert isinstance(error, ValueError) and "is not a readable .npz file" in str(error)


def test_newlines_in_stored_names_stay_out_of_messages(scratch, originals):
    """Found by a 20x search: a key with a newline in the stored history or config made a
    two-line message."""
    arrays = dict(originals["checkpoint"])
    state = json.loads(str(arrays["__trainer__"]))
    state["history"]["\n"] = 1
    arrays["__trainer__"] = io.json_array(state)
    path = scratch / "newline.npz"
    np.savez(path, **arrays)
    error = bounded(lambda: load_checkpoint(path), str(path))
    assert isinstance(error, ValueError) and "bad history" in str(error)
    arrays = dict(originals["mlp"])
    meta = json.loads(str(arrays["__meta__"]))
    meta["config"]["a\nb"] = 1
    arrays["__meta__"] = io.json_array(meta)
    np.savez(path, **arrays)
    error = bounded(lambda: io.load_model(path), str(path))
    assert isinstance(error, ValueError) and "config is invalid" in str(error)
