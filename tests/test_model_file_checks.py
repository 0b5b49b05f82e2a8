"""io.model_from_arrays on one model file altered one way at a time: what a valid file gives back,
the message for each thing wrong with it, and which of two wrongs is named first (the
property-based tests only require a ValueError; these pin which one)."""

from __future__ import annotations

import numpy as np
import pytest

from mlplab import MLP, io
from mlplab.data import make_preprocessing
from mlplab.data.transforms import Pipeline
from mlplab.models import TwoLayerNet

SOURCE = "m.npz"


def _arrays(tmp_path, model=None, prep="pipeline", extra=None):
    if model is None:
        model = MLP(6, [5, 4], 3, seed=3)
    if prep == "pipeline":
        prep = make_preprocessing("standardize")
        prep.fit(np.random.RandomState(0).randint(0, 256, (20, 2, 3, 1)).astype(np.uint8))
    path = io.save_model(tmp_path / "m.npz", model, prep, extra or {"classes": ["a", "b", "c"]})
    return dict(io.read_npz(path))


def _meta(arrays):
    return io.parse_json_array(arrays[io.META_KEY], "meta")


def _with_meta(arrays, **changes):
    meta = {**_meta(arrays), **changes}
    return {**arrays, io.META_KEY: io.json_array(meta)}


def _with_config(arrays, **changes):
    return _with_meta(arrays, config={**_meta(arrays)["config"], **changes})


def test_a_valid_file_gives_back_the_model_its_preprocessing_and_extra(tmp_path):
    model = MLP(6, [5, 4], 3, seed=3)
    X = np.random.RandomState(1).randn(7, 6)
    loaded = io.model_from_arrays(_arrays(tmp_path, model), SOURCE)
    np.testing.assert_array_equal(loaded.model.predict(X), model.predict(X))
    assert loaded.model.config["seed"] == 3 and loaded.extra == {"classes": ["a", "b", "c"]}
    assert isinstance(loaded.preprocessing, Pipeline)
    # a dict's arrays come back beside its JSON values
    loaded = io.model_from_arrays(_arrays(tmp_path, prep={"mean": np.arange(3.0), "k": 2}), SOURCE)
    assert loaded.preprocessing.keys() == {"mean", "k"} and loaded.preprocessing["k"] == 2
    np.testing.assert_array_equal(loaded.preprocessing["mean"], np.arange(3.0))
    assert io.model_from_arrays(_arrays(tmp_path, prep=None), SOURCE).preprocessing is None
    two = TwoLayerNet(6, 4, 3, std=0.1, seed=0)
    loaded = io.model_from_arrays(_arrays(tmp_path, two), SOURCE).model
    assert isinstance(loaded, TwoLayerNet)
    np.testing.assert_array_equal(loaded.predict(X), two.predict(X))


def _drop(arrays, key):
    return {k: v for k, v in arrays.items() if k != key}


def _set(arrays, key, value):
    return {**arrays, key: value}


CASES = {
    "no meta": (lambda a: _drop(a, io.META_KEY),
                r"^m.npz is not an mlplab model file \(no __meta__ entry\).$"),
    "format": (lambda a: _with_meta(a, format="x"),
               r"^m.npz is not an mlplab model file \(format 'x'\).$"),
    "meta not a dict": (lambda a: _set(a, io.META_KEY, io.json_array([1])),
                        r"^m.npz is not an mlplab model file \(format None\).$"),
    "version": (lambda a: _with_meta(a, version=99),
                r"^m.npz has model-file version 99; this mlplab reads version 1. Upgrade"),
    "no config": (lambda a: _with_meta(a, config=[1]), r"^m.npz: the model config is missing.$"),
    "layer sizes": (lambda a: _with_config(a, hidden_sizes=[5, 3]),
                    r"^m.npz: W2 has shape \(5, 4\); the config implies \(5, 3\).$"),
    "activation": (lambda a: _with_config(a, activation="swish2"),
                   r"^m.npz: activation 'swish2' is not registered in this process"),
    "config": (lambda a: _with_config(a, dropout=5),
               r"^m.npz: the stored model config is invalid \("),
    "two-layer": (lambda a: _with_meta(a, **{"class": "TwoLayerNet"}),  # two hidden layers
                  r"^m.npz: the stored model config is invalid \(a TwoLayerNet has exactly one"),
    "extra array": (lambda a: _set(a, "param/W9", np.zeros(2)),
                    r"^m.npz does not match its config: missing arrays \[\], unexpected arrays "
                    r"\['W9'\].$"),
    "missing array": (lambda a: _drop(a, "param/b1"),
                      r"^m.npz does not match its config: missing arrays \['b1'\], unexpected"),
    "shape": (lambda a: _set(a, "param/b1", np.zeros(4)),
              r"^m.npz: b1 has shape \(4,\); the config implies \(5,\).$"),
    "dtype": (lambda a: _set(a, "param/b1", np.zeros(5, np.float64)),  # the model's: float32
              r"^m.npz: b1 has dtype float64; the config says float32.$"),
    "nan": (lambda a: _set(a, "param/b1", np.full(5, np.nan, np.float32)),
            r"^m.npz: b1 contains NaN or infinite values; the model is corrupt"),
    "prep array": (lambda a: _set(a, "preprocessing/zzz", np.array([np.inf])),
                   r"^m.npz: preprocessing/zzz is not a finite numeric array.$"),
    "pipeline": (lambda a: {k: v for k, v in a.items() if not k.startswith("preprocessing/")},
                 r"^m.npz: the stored preprocessing is invalid \("),
    # an edited standardisation would scale every input by garbage, silently
    "negative std": (lambda a: _set(a, "preprocessing/0.std", np.array([-1.0])),
                     r"^m.npz: the stored preprocessing is invalid \(Standardize needs one finite "
                     r"mean and one finite standard deviation >= 0 per channel; got mean "
                     r"\[[0-9.]+\], "
                     r"std \[-1.0\]\).$"),
    "std length": (lambda a: _set(a, "preprocessing/0.std", np.array([1.0, 2.0])),
                   r"^m.npz: the stored preprocessing is invalid \(Standardize needs one finite"),
    "prep type": (lambda a: _with_meta(a, preprocessing=5),
                  r"^m.npz: the stored preprocessing must be a JSON object or null; got int.$"),
    "extra": (lambda a: _with_meta(a, extra=[1]),
              r"^m.npz: the stored 'extra' must be a JSON object; got list.$"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_wrong_is_named(tmp_path, case):
    alter, message = CASES[case]
    with pytest.raises(ValueError, match=message):
        io.model_from_arrays(alter(_arrays(tmp_path)), SOURCE)


# each pair alters different parts of the file; the first of the two is named
ORDER = [("format", "version"), ("version", "no config"), ("no config", "extra array"),
         ("layer sizes", "activation"), ("activation", "config"), ("activation", "nan"),
         ("config", "extra array"), ("extra array", "prep array"), ("shape", "prep array"),
         ("dtype", "extra"), ("nan", "prep array"), ("prep array", "prep type"),
         ("prep array", "pipeline"), ("prep type", "extra"), ("pipeline", "extra")]


@pytest.mark.parametrize("first, second", ORDER)
def test_the_first_wrong_is_named_first(tmp_path, first, second):
    both = CASES[first][0](CASES[second][0](_arrays(tmp_path)))
    with pytest.raises(ValueError, match=CASES[first][1]):
        io.model_from_arrays(both, SOURCE)


def test_read_npz_reads_only_the_members_asked_for(tmp_path):
    """keys=: what mlplab runs uses to read a checkpoint's small trainer record alone; one
    name given as a string is that name, not the names containing its letters."""
    path = io.save_model(tmp_path / "m.npz", MLP(4, [3], 2, seed=0))
    everything = io.read_npz(path)
    assert list(io.read_npz(path, keys="__meta__")) == ["__meta__"]
    assert io.read_npz(path, keys="param/W1x") == {}  # not param/W1, a part of the string
    only = io.read_npz(path, keys=["param/W1", "not/there"])
    assert list(only) == ["param/W1"]
    np.testing.assert_array_equal(only["param/W1"], everything["param/W1"])
