"""Input validation at every public entry point of the library.

Shapes, dtypes, NaN/inf, label ranges and hyperparameter ranges must be refused with a
``ValueError`` whose message names the argument and says what was expected - before any work is
done, never as a NumPy broadcasting error, a ``ZeroDivisionError``, or silent acceptance.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlplab import MLP
from mlplab.data import Augmenter, DatasetError, load_dataset, make_preprocessing
from mlplab.estimator import MLPClassifier
from mlplab.models import TwoLayerNet
from mlplab.optim import make_optimizer
from mlplab.runs import build_config, train_run
from mlplab.trainer import TrainConfig, Trainer

RNG = np.random.RandomState(0)
X = RNG.randn(20, 4).astype(np.float32)
Y = np.arange(20) % 3


def _net() -> MLP:
    return MLP(4, [5], 3, seed=0)


MODEL_ARGS = [  # MLP(4, [5], 3, **kwargs) or MLP(*args)
    ((0, [5], 3), {}, "input_size must be an integer >= 1; got 0"),
    ((2.5, [5], 3), {}, "input_size must be an integer >= 1; got 2.5"),
    ((True, [5], 3), {}, "input_size must be an integer >= 1; got True"),
    # the message names the argument, and shows a lone width as given
    ((4, [0], 3), {}, r"every hidden size must be a positive integer \(hidden_sizes: a width, "
                      r"or a list of one width per hidden layer\); got \[0\]"),
    ((4, 0, 3), {}, r"every hidden size must be a positive integer \(hidden_sizes.*; got 0\.$"),
    ((4, [-3], 3), {}, "every hidden size must be a positive integer"),
    ((4, "12", 3), {}, "every hidden size must be a positive integer .*; got '12'"),
    ((4, [5.5], 3), {}, "every hidden size must be a positive integer"),
    # a lone True or 2.5 was "'bool' object is not iterable", a TypeError naming nothing
    ((4, True, 3), {}, "every hidden size must be a positive integer .*; got True"),
    ((4, 2.5, 3), {}, "every hidden size must be a positive integer .*; got 2.5"),
    ((4, [5], 1), {}, "num_classes must be an integer >= 2; got 1"),
    ((4, [5], 3), {"dropout": 1.0}, r"dropout must be a number in \[0, 1\); got 1.0"),
    ((4, [5], 3), {"dropout": -0.5}, r"dropout must be a number in \[0, 1\); got -0.5"),
    ((4, [5], 3), {"dropout": float("nan")}, "dropout must be a number"),
    ((4, [5], 3), {"std": -1.0}, "std must be a finite number > 0; got -1.0"),
    ((4, [5], 3), {"std": float("inf")}, "std must be a finite number > 0"),
    ((4, [5], 3), {"seed": -1}, "seed must be None or an integer between 0 and 2\\*\\*32 - 1"),
    ((4, [5], 3), {"seed": 1.5}, "seed must be None or an integer"),
    # a generator is no seed (none could be recorded): the message says how to get one
    ((4, [5], 3), {"seed": np.random.default_rng(0)},
     r"seed must be None or an integer .*; got Generator.*; draw one from the generator, e\.g\. "
     r"seed=int\(rng\.integers\(2\*\*31\)\)\.$"),
    ((4, [5], 3), {"seed": np.random.RandomState(0)},
     r"; got RandomState.*seed=int\(rng\.randint\(2\*\*31\)\)\.$"),
    ((4, [5], 3), {"activation": "swish"}, "unknown activation 'swish'; choose one of"),
    ((4, [5], 3), {"init": "orthogonal"}, "unknown init 'orthogonal'"),
    ((4, [5], 3), {"dtype": "int32"}, "dtype must be float32 or float64"),
]


@pytest.mark.parametrize("args,kwargs,message", MODEL_ARGS)
def test_model_hyperparameters(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(*args, **kwargs)


def test_two_layer_net_checks_like_mlp():
    with pytest.raises(ValueError, match="^hidden_size must be an integer >= 1; got 0"):
        TwoLayerNet(4, 0, 3)  # its own argument's name, not MLP's hidden_sizes
    # the messages name train()'s own arguments, not the Trainer's lr, iters and lr_decay
    for kwargs, message in [({"learning_rate": -1}, "^learning_rate must be a finite number > 0"),
                            ({"batch_size": 0}, "^batch_size must be an integer >= 1"),
                            ({"num_iters": 0}, "^num_iters must be an integer >= 1"),
                            ({"reg": -1}, "^reg must be a finite number >= 0"),
                            ({"learning_rate_decay": 0},
                             r"^learning_rate_decay must be a number in \(0, 1\]")]:
        with pytest.raises(ValueError, match=message):
            TwoLayerNet(4, 5, 3).train(X, Y, X, Y, **kwargs)


X_BAD = [
    (X[0], "X must be a 2-D array of shape \\(n_samples, n_features\\); got 1-D"),
    (X[None], "X must be a 2-D array"),
    (X[:, :3], r"X has 3 features but the model expects 4 \(input_size=4\)\.$"),
    # a column per sample, as the exercise's derivation writes x: the message says so
    (X.T, r"X has 20 features but the model expects 4 \(input_size=4\)\. X looks transposed: "
          r"it needs a row per sample, \(n_samples, 4\); pass X\.T\.$"),
    # one sample's values in rows (one image preprocessed on its own: (H, W * C))
    (X[0].reshape(2, 2), r"X has 2 features but the model expects 4 \(input_size=4\)\. X holds "
                         r"one sample's 4 values in rows; for one sample pass "
                         r"X\.reshape\(1, -1\)\.$"),
    (np.where(X > 1, np.nan, X), "X contains NaN or infinite values \\(first at row"),
    (np.full_like(X, np.inf), "X contains NaN or infinite values"),
    (X.astype(str), "X must hold numbers; got dtype <U"),
    (X.astype(object), "X must hold numbers; got dtype object"),
    (X.astype(complex), "X must hold numbers; got dtype complex128"),
    # finite in float64, infinite once cast to the float32 model: refused, not NaN predictions
    (np.where(X > 1, 1e39, X.astype(np.float64)),
     r"X has values beyond float32's range \(\+-3.403e\+38; first at row"),
]


@pytest.mark.parametrize("bad,message", X_BAD)
@pytest.mark.parametrize("method", ["predict", "predict_proba", "loss", "accuracy", "fit"])
def test_feature_arrays(bad, message, method):
    net = _net()
    with pytest.raises(ValueError, match=message):
        if method == "fit":
            Trainer(epochs=1).fit(net, bad, Y)
        elif method == "accuracy":
            net.accuracy(bad, Y)
        else:
            getattr(net, method)(bad)


Y_BAD = [
    (Y + 3, r"y has labels out of range \[0, 2\]: min 3, max 5; number the classes 0..K-1 "
            r"first \(np.unique\(y, return_inverse=True\)\[1\] does\), or use "
            r"mlplab.MLPClassifier, which takes labels of any kind\.$"),
    (Y - 1, r"y has labels out of range \[0, 2\]: min -1"),
    (Y + 0.5, "y must hold integer class labels; got non-integer values"),
    (np.full(20, np.nan), "y must hold integer class labels"),
    (Y[:, None], r"y must be a 1-D array of class labels; got shape \(20, 1\)"),
    (Y[:5], "y has 5 labels but X has 20 rows"),
    (Y.astype(str), "y must hold integer class labels 0..K-1; got dtype <U.*; number the "
                    "classes 0..K-1 first"),
]


@pytest.mark.parametrize("bad,message", Y_BAD)
@pytest.mark.parametrize("method", ["loss", "fit", "fit_val", "accuracy"])
def test_label_arrays(bad, message, method):
    net = _net()
    if method == "fit_val":
        message = message.replace("y ", "y_val ", 1).replace("X has", "X_val has")
    with pytest.raises(ValueError, match=message):
        if method == "loss":
            net.loss(X, bad)
        elif method == "fit":
            Trainer(epochs=1).fit(net, X, bad)
        elif method == "fit_val":
            Trainer(epochs=1).fit(net, X, Y, X, bad)
        else:
            net.accuracy(X, bad)


TRAIN_ARGS = [
    ({"lr": -1}, "lr must be a finite number > 0; got -1"),
    ({"lr": 0}, "lr must be a finite number > 0"),
    ({"lr": float("nan")}, "lr must be a finite number > 0; got nan"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1; got 0"),
    ({"batch_size": 2.5}, "batch_size must be an integer >= 1; got 2.5"),
    ({"epochs": 0}, "epochs must be an integer >= 1; got 0"),
    ({"epochs": "3"}, "epochs must be an integer >= 1; got '3'"),
    ({"epochs": None}, "epochs must be a positive integer; got None"),
    ({"iters": 0}, "iters must be an integer >= 1"),
    ({"reg": -1}, "reg must be a finite number >= 0"),
    ({"reg": float("inf")}, "reg must be a finite number >= 0"),
    ({"momentum": 1.0}, r"momentum must be a number in \[0, 1\)"),
    ({"momentum": -0.1}, r"momentum must be a number in \[0, 1\)"),
    ({"beta1": 1.0}, r"beta1 must be a number in \[0, 1\)"),
    ({"beta2": float("nan")}, r"beta2 must be a number in \[0, 1\)"),
    ({"lr_decay": 0}, r"lr_decay must be a number in \(0, 1\]"),
    ({"lr_decay": 1.5}, r"lr_decay must be a number in \(0, 1\]"),
    ({"step_epochs": 0}, "step_epochs must be an integer >= 1"),
    ({"warmup_epochs": float("nan")}, "warmup_epochs must be a finite number >= 0"),
    ({"min_lr": -1}, "min_lr must be a finite number >= 0"),
    ({"weight_decay": -1}, "weight_decay must be a finite number >= 0"),
    ({"weight_decay": 0.1, "optimizer": "sgd"}, "applies to the adam optimizer only; use reg "
                                                 "for L2"),
    ({"patience": 0}, r"patience must be an integer >= 1; got 0 \(patience=None for no early "
                      r"stopping\)"),
    ({"seed": -1}, "seed must be None or an integer between 0 and 2\\*\\*32 - 1"),
    ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'; choose one of"),
    ({"schedule": "linear"}, "unknown schedule 'linear'; choose one of"),
    ({"sampling": "bootstrap"}, "unknown sampling 'bootstrap'; choose one of shuffle, replacement"),
    ({"train_acc": "all"}, "unknown train_acc 'all'; choose one of batch, subset"),
    ({"label_smoothing": "0.1"}, r"label_smoothing must be a number in \[0, 1\); got '0.1'"),
    ({"label_smoothing": 1.0}, r"label_smoothing must be a number in \[0, 1\); got 1.0"),
    ({"no_such_option": 1}, "unknown training options: no_such_option"),
    # any object is true or false: "no" would have meant yes
    ({"restore_best": "no"}, "restore_best must be True or False; got 'no'"),
    ({"verbose": None}, "verbose must be True or False; got None"),
    ({"progress": 2}, "progress must be True or False; got 2"),
]


@pytest.mark.parametrize("kwargs,message", TRAIN_ARGS)
def test_training_hyperparameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Trainer(**kwargs)
    # the run API checks the same, before loading data (verbose and progress are its own
    # arguments there, not run options)
    if not {"no_such_option", "verbose", "progress"} & set(kwargs):
        with pytest.raises(ValueError, match=message):
            train_run(**{"dataset": "/no/such/dataset", **kwargs})


def test_fit_refuses_what_cannot_train():
    with pytest.raises(ValueError, match="empty training set"):
        Trainer(epochs=1).fit(_net(), X[:0], Y[:0])
    with pytest.raises(ValueError, match="early stopping .* needs validation data"):
        Trainer(epochs=1, patience=2).fit(_net(), X, Y)
    with pytest.raises(ValueError, match="X_val has 3 features but the model expects 4"):
        Trainer(epochs=1).fit(_net(), X, Y, X[:, :3], Y)
    with pytest.raises(ValueError, match="reg must be a finite number >= 0"):
        _net().loss(X, Y, reg=-1)


RUN_ARGS = [
    # named as MLP names hidden_sizes (it said "hidden sizes must be ...", naming no argument)
    ({"hidden": [0]}, r"^every hidden size must be a positive integer \(hidden: a width, .*"
                      r"got \[0\]\.$"),
    ({"hidden": [64, -1]}, r"\(hidden: .*got \[64, -1\]\.$"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ({"std": -1}, "std must be a finite number > 0"),
    ({"activation": "x"}, "unknown activation 'x'"),
    ({"init": "x"}, "unknown init 'x'"),
    ({"preprocessing": "x"}, "unknown preprocessing 'x'"),
    ({"augment": "rotate"}, "unknown augmentation 'rotate'"),
    ({"dtype": "float16"}, "dtype must be float32 or float64"),
    ({"data_seed": "a"}, "data_seed must be None or an integer"),
    ({"bogus": 1}, "unknown run options: bogus"),
    ({"batchnorm": "yes"}, "batchnorm must be True or False; got 'yes'"),
    ({"eval_test": "false"}, "eval_test must be True or False; got 'false'"),
    # True was a distortion of 1 pixel
    ({"augment": ["elastic"], "elastic_pixels": True},
     r"elastic_pixels must be a number of pixels in \(0, 8\]; got True"),
]


@pytest.mark.parametrize("kwargs,message", RUN_ARGS)
def test_run_options(kwargs, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        build_config(**kwargs)
    with pytest.raises(ValueError, match=message):
        train_run(out=tmp_path / "run", **kwargs)
    assert not (tmp_path / "run").exists()  # refused before anything is written


DATA_ARGS = [
    ({"val_size": -1}, "val_size must be between 0 and 1616"),
    ({"val_size": 1.5}, r"val_size must be a count >= 0 or a fraction in \(0, 1\)"),
    ({"val_size": float("nan")}, "val_size must be a count"),
    ({"test_size": 10**9}, "test_size must be between 0 and"),
    ({"image_size": "abc"}, "image size must be a positive integer N or HxW"),
    ({"image_size": 0}, "image size must be a positive integer"),
    # not 1x1 pixels, not 32x24 from 32.5
    ({"image_size": True}, r"image size must be a positive integer N or HxW.*; got True"),
    ({"image_size": (32.5, 24)}, r"image size must be a positive integer.*; got \(32.5, 24\)"),
    ({"image_size": (True, 8)}, r"image size must be a positive integer.*; got \(True, 8\)"),
    ({"seed": "x"}, "seed must be None or an integer"),
    ({"seed": -1}, "seed must be None or an integer"),
]


@pytest.mark.parametrize("kwargs,message", DATA_ARGS)
def test_dataset_options(kwargs, message):
    with pytest.raises(DatasetError, match=message):
        load_dataset("digits", **kwargs)


def test_other_entry_points():
    for call, message in [
        (lambda: load_dataset(""), "dataset name must be a non-empty string"),
        (lambda: load_dataset(None), "dataset name must be a non-empty string"),
        (lambda: make_preprocessing("whiten"), "unknown preprocessing 'whiten'"),
        (lambda: Augmenter((8, 8, 1), crop=-1), "crop padding must be an integer >= 0"),
        (lambda: Augmenter((8, 8), crop=1), r"image_shape must be \(H, W, C\)"),
        (lambda: make_optimizer("rmsprop", 0.1), "unknown optimizer 'rmsprop'"),
        (lambda: make_optimizer("sgd", -1), "learning rate must be a finite number > 0"),
        (lambda: TrainConfig.from_dict({"lrate": 1}), "unknown training options: lrate"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()
    pre = make_preprocessing("standardize").fit(np.zeros((5, 8, 8, 1), np.uint8))
    with pytest.raises(DatasetError, match="fitted on 1 channels; got 3"):
        pre.transform(np.zeros((5, 8, 8, 3), np.uint8))


ESTIMATOR_ARGS = [
    ({"hidden_sizes": (0,)}, "hidden_sizes must be positive integers"),
    ({"lr": -1}, "lr must be a finite number > 0"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"max_epochs": 0}, "max_epochs must be an integer >= 1; got 0"),
    ({"max_epochs": 2.0}, "max_epochs must be an integer >= 1; got 2.0"),
    ({"dropout": 1.0}, "dropout must be a number in"),
    ({"reg": -1}, "reg must be a finite number >= 0"),
    ({"tol": -1}, "tol must be a finite number >= 0"),
    ({"n_iter_no_change": 0}, "n_iter_no_change must be an integer >= 1; got 0"),
    ({"activation": "swish"}, "unknown activation 'swish'; choose one of relu, leaky_relu"),
    ({"early_stopping": True, "validation_fraction": 1.0},
     r"validation_fraction must be a number in \(0, 1\); got 1.0"),
]


@pytest.mark.parametrize("kwargs,message", ESTIMATOR_ARGS)
def test_scikit_learn_estimator(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLPClassifier(**{"max_epochs": 1, **kwargs}).fit(X, Y)


def test_pytorch_entry_points():
    pytest.importorskip("torch")  # mlplab.torch_mlp without it raises an ImportError that says so
    import mlplab.torch_mlp as tm

    for call, message in [
        (lambda: tm.MultiLayerPerceptron(2.5, [5], 3), "input_size must be an integer >= 1"),
        (lambda: tm.MultiLayerPerceptron(4, "5", 3), "every hidden size must be a positive"),
        (lambda: tm.MultiLayerPerceptron(4, [0], 3),
         r"every hidden size must be a positive integer \(hidden_layers: .*; got \[0\]"),
        (lambda: tm.build_model(4, 0, 3), r"positive integer \(hidden_layers: .*; got 0\.$"),
        (lambda: tm.MultiLayerPerceptron(4, [5], 1), "num_classes must be an integer >= 2"),
        (lambda: tm.MultiLayerPerceptron(4, [5], 3, dropout=1), r"dropout must be in \[0, 1\)"),
        (lambda: tm.TorchTrainConfig(epochs=1.5).validate(), "epochs must be an integer >= 1"),
        (lambda: tm.TorchTrainConfig(batch_size=0).validate(), "batch_size must be an integer"),
        (lambda: tm.TorchTrainConfig(lr=-1).validate(), "lr must be a finite number > 0"),
        (lambda: tm.TorchTrainConfig(lr_decay=2).validate(), r"lr_decay must be in \(0, 1\]"),
        (lambda: tm.TorchTrainConfig(seed=-1).validate(), "seed must be None or an integer"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()
    model = tm.MultiLayerPerceptron(4, [5], 3)
    with pytest.raises(ValueError, match="empty training set"):
        tm.fit(model, X[:0], Y[:0], epochs=1)
    with pytest.raises(ValueError, match="X contains NaN"):
        tm.fit(model, np.full_like(X, np.nan), Y, epochs=1)
    with pytest.raises(ValueError, match="y has labels out of range"):
        tm.fit(model, X, Y + 5, epochs=1)
    with pytest.raises(ValueError, match="X has 3 features but the model expects 4"):
        tm.predict(model, X[:, :3])
    with pytest.raises(ValueError, match=r"y has labels out of range \[0, 2\]: min 0, max 5"):
        tm.accuracy(model, X, Y + 3 * (Y == 2))
    with pytest.raises(ValueError, match="X has values beyond float32's range"):
        tm.predict(model, np.where(X > 1, -1e39, X.astype(np.float64)))


def test_tuning_entry_point(tmp_path):
    from mlplab.tuning import tune

    for kwargs, message in [
        ({"trials": 0}, "trials must be an integer >= 1; got 0"),
        ({"trials": 2.5}, "trials must be an integer >= 1; got 2.5"),
        ({"workers": 0}, "workers must be an integer >= 1; got 0"),
        ({"workers": "2"}, "workers must be an integer >= 1; got '2'"),
        ({"timeout": -1}, r"timeout \(seconds\) must be a finite number > 0; got -1"),
        ({"timeout": float("nan")}, r"timeout \(seconds\) must be a finite number > 0"),
        ({"sampler": "cmaes"}, "unknown sampler 'cmaes'"),
        ({"prune": "never"}, "unknown pruner 'never'"),
        ({"search_space": {"lr": {"type": "float", "low": -1, "high": 1}}}, "lr must satisfy"),
        ({"search_space": {"hidden_size": [0, 5]}}, "hidden_size must satisfy 1 <="),
        ({"search_space": {"batch_size": 0}}, "batch_size must satisfy 1 <="),
        ({"search_space": {"momentum_typo": 1}}, "unknown knob 'momentum_typo'"),
    ]:
        with pytest.raises(ValueError, match=message):
            tune("digits", progress=False, out=tmp_path / "t", **{"trials": 1, **kwargs})


# --------------------------------------------------------------------------- any array at all
@settings(max_examples=150, deadline=timedelta(seconds=10), derandomize=True)
@given(hnp.arrays(dtype=st.one_of(hnp.floating_dtypes(), hnp.integer_dtypes(),
                                  hnp.boolean_dtypes(), hnp.complex_number_dtypes(),
                                  hnp.unicode_string_dtypes(max_len=3)),
                  shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=5)),
       hnp.arrays(dtype=st.one_of(hnp.integer_dtypes(), hnp.floating_dtypes()),
                  shape=hnp.array_shapes(min_dims=0, max_dims=2, max_side=5)))
def test_any_array_gives_a_prediction_or_a_value_error(Xa, ya):
    """Whatever arrays arrive at predict, loss and fit: a valid result or a ValueError."""
    net = MLP(4, [3], 3, seed=0, dtype=np.float64)
    for call in (lambda: net.predict_proba(Xa), lambda: net.loss(Xa, ya),
                 lambda: Trainer(epochs=1, batch_size=2).fit(net, Xa, ya)):
        try:
            with np.errstate(all="ignore"):
                out = call()
        except ValueError as exc:
            assert str(exc) and "\n" not in str(exc)
            continue
        if isinstance(out, np.ndarray):
            assert out.shape == (len(Xa), 3) and np.isfinite(out).all()


def test_command_line_wording_survives_commands_that_overlap_in_threads():
    """Two ``main()`` calls in threads of one process, the first ending while the second runs:
    the flag was saved and restored per block, so the first set it back to "Python" under the
    running second, and the second then restored the first's "command line", which stayed set
    for every later Python call of the process."""
    import threading

    from mlplab._validation import command_line, setting

    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    said = {}

    def first() -> None:
        with command_line():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second() -> None:
        first_in.wait(10)
        with command_line():
            second_in.set()
            first_out.wait(10)
            said["while the second runs"] = setting("--out", "out")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert said == {"while the second runs": "--out"}
    assert setting("--out", "out") == "out"  # and Python's wording once both have ended
