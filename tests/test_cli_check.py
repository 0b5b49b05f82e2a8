import json
import re

import numpy as np
import pytest

from mlplab.cli import main


def test_check_prints_each_exercise_number_beside_its_measure_and_difference(capsys):
    """A student compares with the exercise: every number it gives (each probability, the loss,
    the data term, the toy training's loss) is printed with mlplab's and their difference, and
    every check with the comparison it made against its bound. Before, a table of bare
    differences ("value 2.917e-08 bound 1e-07") showed none of the numbers, nor the data term."""
    from mlplab.exercise import CORRECT_DATA_LOSS, CORRECT_LOSS, CORRECT_PROBS, toy_data, toy_model

    assert main(["check"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    probs = toy_model().loss(toy_data()[0])
    for i, (row, want) in enumerate(zip(probs, CORRECT_PROBS)):
        line = next(x for x in lines if x.split()[:1] == [str(i)])
        assert " ".join(f"{v:12.10f}" for v in row) in line  # mlplab's, to 10 decimals
        assert " ".join(f"{v:10.8f}" for v in want) in line  # the exercise's
        assert line.endswith(f"{np.abs(row - want).sum():.3e}")
    total = np.abs(probs - CORRECT_PROBS).sum()
    assert f"sum of |p - expected| over all entries: {total:.3e} < 1e-07  PASS" in out
    X, y = toy_data()
    for reg, want in ((0.05, CORRECT_LOSS), (0.0, CORRECT_DATA_LOSS)):
        loss = toy_model().loss(X, y, reg=reg)[0]
        line = next(x for x in lines if f"expected {want!r} " in x)
        assert f" {loss!r} " in line and f"|diff| {abs(loss - want):.3e} < 1e-10  PASS" in line
    for param in ("W1 (4, 10)", "b1 (10,)", "W2 (10, 3)", "b2 (3,)"):
        assert re.search(rf"^  {re.escape(param)} +error \S+ < 1e-08  PASS$", out, re.M), param
    assert re.search(r"final loss 0\.0171\d{3} \(the exercise's: about 0\.0171\) < 0\.02  PASS",
                     out)
    assert lines[-1] == "all 8 checks passed" and "FAIL" not in out
    assert max(map(len, lines)) <= 100


def test_check_json(capsys):
    from mlplab.exercise import CORRECT_DATA_LOSS, CORRECT_LOSS, CORRECT_PROBS

    assert main(["check", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] and len(data["checks"]) == 8
    assert all({"name", "value", "bound", "passed", "measured", "expected"} <= set(c)
               for c in data["checks"])
    rows = {c["name"]: c for c in data["checks"]}
    assert rows["Q1 probabilities"]["expected"] == CORRECT_PROBS.tolist()
    assert np.abs(np.array(rows["Q1 probabilities"]["measured"]) - CORRECT_PROBS).sum() == \
        pytest.approx(rows["Q1 probabilities"]["value"], rel=1e-12)
    assert rows["Q1 loss"]["expected"] == CORRECT_LOSS
    assert rows["Q1 data term"]["expected"] == CORRECT_DATA_LOSS
    assert abs(rows["Q1 loss"]["measured"] - CORRECT_LOSS) == rows["Q1 loss"]["value"]
    assert rows["Q3 toy SGD loss"]["measured"] == rows["Q3 toy SGD loss"]["value"]


@pytest.mark.parametrize("json_output", [False, True])
def test_check_exits_1_when_a_check_fails(json_output, monkeypatch, capsys):
    """A script or CI job reads the exit status: a failing check must not exit 0. Here the
    exercise's expected probabilities are moved so that the Q1 check really fails."""
    import mlplab.exercise

    monkeypatch.setattr(mlplab.exercise, "CORRECT_PROBS", mlplab.exercise.CORRECT_PROBS + 0.1)
    assert main(["check", *(["--json"] if json_output else [])]) == 1
    out = capsys.readouterr().out
    if json_output:
        data = json.loads(out)
        assert not data["passed"]
        assert [c["name"] for c in data["checks"] if not c["passed"]] == ["Q1 probabilities"]
    else:
        assert "SOME CHECKS FAILED: 1 of 8" in out and out.count("FAIL") == 2  # its line, verdict
        assert re.search(r"over all entries: \S+ >= 1e-07  FAIL", out)


@pytest.mark.parametrize("extra", [[], ["--batchnorm", "--dropout", "0.3"],
                                   ["--activation", "tanh", "--metric", "max", "--tol", "1e-5"],
                                   ["--activation", "prelu", "--batchnorm"]])
def test_gradcheck_cli(extra, capsys):
    assert main(["gradcheck", "--hidden", "8,6", "--json", *extra]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] and "W3" in data["errors"]
    assert ("alpha2" in data["errors"]) == ("prelu" in extra)  # PReLU's slopes are checked
    # the settings the text output prints, so that a saved result says what it checked
    assert data["settings"]["hidden"] == [8, 6] and data["shapes"]["W3"] == [6, 5]
    assert data["settings"]["batchnorm"] == ("--batchnorm" in extra)


def test_gradcheck_passes_correct_nets_with_dead_units(capsys):
    """One-unit hidden layers on few samples: a unit dead for every sample leaves the next
    layer's pre-activation at exactly its bias, on the ReLU kink if the bias were 0 (analytic
    slope 0, centred difference 1/2). The command offsets the biases first; without that 22
    of these 30 seeds failed a correct backward pass."""
    for seed in range(30):
        argv = ["gradcheck", "--inputs", "2", "--hidden", "1,1", "--samples", "3", "--seed",
                str(seed), "--json"]
        assert main(argv) == 0, (seed, capsys.readouterr().out)
        assert json.loads(capsys.readouterr().out)["passed"]


def test_a_backward_pass_that_gives_nan_is_named_not_reg(capsys, monkeypatch):
    """A NaN from a layer's backward (a plugin's bug) was put down to --reg being too large,
    at reg 0.05 and a loss of 1.6."""
    from mlplab.layers import SoftmaxCrossEntropy

    backward = SoftmaxCrossEntropy.backward
    monkeypatch.setattr(SoftmaxCrossEntropy, "backward",
                        lambda self, *a, **k: backward(self, *a, **k) * np.nan)
    assert main(["gradcheck"]) == 1
    out = capsys.readouterr().out
    assert "note: the backward pass gave NaN or infinite gradients for W1, b1, W2, b2, W3, b3: a " \
           "layer's backward (or the cache its forward keeps) is wrong." in out
    assert "--reg" not in out.split("note:")[1]


def test_gradcheck_fails_above_tolerance(capsys):
    assert main(["gradcheck", "--hidden", "8", "--tol", "1e-30"]) == 1


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's overflow, which is the point
def test_gradcheck_counts_a_nan_error_as_failed_and_writes_strict_json(capsys):
    """--reg 1e300: the weights' rows were NaN and FAIL, but "2 of 4 parameters above --tol"
    (NaN >= tol is False), and --json wrote NaN, which strict JSON readers refuse."""
    assert main(["gradcheck", "--hidden", "8", "--reg", "1e300"]) == 1
    out = capsys.readouterr().out
    assert "4 of 4 parameters above --tol" in out
    assert "note: a numerical gradient is NaN: the loss (with reg x the squared weights) is " \
           "too large for float64's centred differences; lower --reg." in out
    assert main(["gradcheck", "--hidden", "8", "--reg", "1e300", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(c))
    assert doc["passed"] is False and doc["errors"]["W1"] is None
    # from Python, the argument: not the command's flag
    from mlplab.gradcheck import nan_cause
    from mlplab.models import MLP

    rng = np.random.default_rng(0)
    model = MLP(4, [3], 2, dtype=np.float64, seed=0)
    cause = nan_cause(model, rng.normal(size=(5, 4)), np.array([0, 1, 0, 1, 1]), reg=1e300)
    assert cause.endswith("; lower reg") and "--reg" not in cause


@pytest.mark.parametrize("tol", ["inf", "nan", "0", "-1e-07"])
def test_gradcheck_refuses_a_tolerance_that_checks_nothing(tol, capsys):
    # --tol inf passed every gradient, NaN ones aside ("all gradients match within --tol")
    assert main(["gradcheck", "--hidden", "8", f"--tol={tol}"]) == 2  # a usage error
    assert f"--tol must be a finite number > 0; got {float(tol)}." in capsys.readouterr().err


def test_gradcheck_max_metric_default_tolerance(capsys):
    """On the default net the element-wise figure of correct code exceeds 1e-7 from float64
    rounding (a W2 entry near zero); --metric max alone must still pass it, with its own bound."""
    assert main(["gradcheck", "--metric", "max", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] and data["tol"] == 1e-5 and max(data["errors"].values()) > 1e-7
    assert main(["gradcheck", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tol"] == 1e-7


def test_gradcheck_max_metric_catches_a_wrong_gradient(capsys, monkeypatch):
    """The looser default of --metric max still fails a backward pass with a real mistake."""
    from mlplab.layers import ReLU

    backward = ReLU.backward
    monkeypatch.setattr(ReLU, "backward", lambda self, dout: 1.01 * backward(self, dout))
    assert main(["gradcheck", "--metric", "max"]) == 1
    assert main(["gradcheck"]) == 1


def test_nearest_kink_is_the_smallest_input_of_a_relu_and_leaves_the_model_alone():
    from mlplab import MLP
    from mlplab.gradcheck import nearest_kink

    rng = np.random.RandomState(0)
    model = MLP(5, [4, 3], 2, seed=0, dtype=np.float64)
    X = rng.randn(6, 5)
    before = model.predict_proba(X)
    W1, b1, W2, b2 = (model.params[k] for k in ("W1", "b1", "W2", "b2"))
    z1 = X @ W1 + b1
    z2 = np.maximum(z1, 0) @ W2 + b2
    assert nearest_kink(model, X) == min(np.abs(z1).min(), np.abs(z2).min())
    np.testing.assert_array_equal(model.predict_proba(X), before)
    assert nearest_kink(MLP(5, [4], 2, activation="tanh", dtype=np.float64), X) is None
    # with batch norm, the training-mode pass the check differentiates: the batch's own mean
    # and variance, not the running statistics (whose evaluation-mode inputs lie elsewhere)
    bn = MLP(5, [4, 3], 2, batchnorm=True, seed=0, dtype=np.float64)
    bn.params["beta1"][:] = [0.3, -0.2, 0.1, 0.05]  # off 0, so that the two modes differ

    def normed(a, k):
        return bn.params[f"gamma{k}"] * (a - a.mean(0)) / np.sqrt(a.var(0) + 1e-5) + \
            bn.params[f"beta{k}"]

    z1 = normed(X @ bn.params["W1"], 1)
    z2 = normed(np.maximum(z1, 0) @ bn.params["W2"], 2)
    assert nearest_kink(bn, X) == pytest.approx(min(np.abs(z1).min(), np.abs(z2).min()),
                                                rel=1e-12)


def test_gradcheck_explains_a_failure_at_a_relu_kink(capsys, monkeypatch):
    """Seed 11 of a 10-unit net puts a hidden unit 2.5e-5 from the ReLU's kink: the centred
    differences straddle it and a correct backward pass failed with no word of why. The output
    now says so (and the seeds around it pass: the code is right); a wrong backward pass on a
    seed with no unit near the kink fails without that note."""
    assert main(["gradcheck", "--hidden", "10", "--seed", "11"]) == 1
    out = capsys.readouterr().out
    assert "parameters above --tol 1e-07" in out
    assert "note: a hidden unit's input is 2.5e-05 from the activation's kink at 0" in out
    assert "Rerun with another --seed" in out
    for seed in ("10", "12"):
        assert main(["gradcheck", "--hidden", "10", "--seed", seed, "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["passed"] and data["notes"] == []
    from mlplab.layers import ReLU

    backward = ReLU.backward
    monkeypatch.setattr(ReLU, "backward", lambda self, dout: 1.01 * backward(self, dout))
    assert main(["gradcheck", "--hidden", "10", "--seed", "12", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["notes"] == []


def test_gradcheck_max_failure_points_to_the_norm_metric(capsys):
    # a correct 4-hidden-layer net: the element-wise figure of a near-zero W3 entry is above 1e-5
    assert main(["gradcheck", "--hidden", "50,40,30,20", "--metric", "max"]) == 1
    out = capsys.readouterr().out
    assert "note: the element-wise figure of a correct net can exceed --tol" in out
    assert main(["gradcheck", "--hidden", "50,40,30,20"]) == 0
    assert "all 10 gradients match: every relative error is below --tol" in capsys.readouterr().out


def test_bad_hidden_is_one_line_error(capsys):
    assert main(["gradcheck", "--hidden", "8,x"]) == 2  # a usage error
    err = capsys.readouterr().err
    assert "comma-separated" in err and "Traceback" not in err


def test_version_and_help(capsys):
    # answered before the plugins load (and the parser is built): a status, not argparse's exit
    assert main(["--version"]) == 0 and "mlplab" in capsys.readouterr().out
    for cmd in (["--help"], ["check", "--help"], ["gradcheck", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(cmd)
        assert e.value.code == 0


def test_gradcheck_hidden_none_is_in_its_help_and_checks_softmax_regression(capsys):
    """``--hidden none`` (no hidden layer) was accepted but not in the help."""
    with pytest.raises(SystemExit):
        main(["gradcheck", "--help"])
    assert "'none' for no hidden layer" in " ".join(capsys.readouterr().out.split())
    assert main(["gradcheck", "--hidden", "none", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["settings"]["hidden"] == [] and sorted(out["errors"]) == ["W1", "b1"]
    # its heading names no activation, dropout or batch norm: it has none ("activation relu,
    # dropout 0.0, batchnorm False" read as checked)
    assert main(["gradcheck", "--hidden", "none"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "MLP 12 -> [] -> 5, reg 0.05"


@pytest.mark.parametrize("extra,heading", [
    ([], "MLP 12 -> [32, 16] -> 5, activation relu, no dropout, no batch norm, reg 0.05"),
    (["--dropout", "0.25", "--batchnorm", "--activation", "tanh", "--label-smoothing", "0.1"],
     "MLP 12 -> [32, 16] -> 5, activation tanh, dropout 0.25, batch norm, reg 0.05, "
     "label smoothing 0.1"),
])
def test_gradcheck_heading_names_the_layers_in_words(extra, heading, capsys):
    """The heading said "dropout 0.0, batchnorm False" (Python's words, 101 columns wide)."""
    assert main(["gradcheck", *extra]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == heading and len(first) <= 100


@pytest.mark.parametrize("extra,named", [
    (["--dropout", "0.3"], "--dropout has"),
    (["--batchnorm", "--activation", "prelu"], "--activation, --batchnorm have"),
])
def test_gradcheck_hidden_none_refuses_hidden_layer_options(extra, named, capsys):
    """With no hidden layer there is no dropout, batch norm or activation to check: the check
    passed and printed them as checked."""
    assert main(["gradcheck", "--hidden", "none", *extra]) == 2
    assert f"{named} no effect with --hidden none" in capsys.readouterr().err
    assert main(["gradcheck", "--hidden", "none", "--dropout", "0"]) == 0  # a no-op is fine


def test_check_with_nan_gradients_still_prints_every_row(capsys, monkeypatch):
    """NaN gradients made the toy training diverge, and mlplab check printed only the trainer's
    error (advice to lower a --lr it does not have), without the Q1 and Q2 rows; --json printed
    no JSON."""
    from mlplab.layers import SoftmaxCrossEntropy

    backward = SoftmaxCrossEntropy.backward
    monkeypatch.setattr(SoftmaxCrossEntropy, "backward",
                        lambda self, *a, **k: backward(self, *a, **k) * np.nan)
    assert main(["check", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(c))
    rows = {c["name"]: c for c in doc["checks"]}
    assert rows["Q1 loss"]["passed"] and not rows["Q2 gradient W1"]["passed"]
    assert rows["Q3 toy SGD loss"]["value"] is None
    assert rows["Q3 toy SGD loss"]["description"].startswith("the toy training diverged")
    assert "--lr" not in rows["Q3 toy SGD loss"]["description"]  # (mlplab train's advice)
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "Q1 forward pass" in out and "SOME CHECKS FAILED: 5 of 8" in out
    assert re.search(r"^  W1 \(4, 10\) +error nan is NaN  FAIL$", out, re.M)
    assert "  the toy training diverged: " in out


def test_a_correct_net_failed_by_rounding_at_a_large_reg_is_said_so(capsys):
    """--reg 100: the loss is about 4,700, and float64's rounding in the centred differences
    alone carries the unpenalised biases' small gradients over 1e-7, with no note."""
    from mlplab import MLP
    from mlplab.gradcheck import check_model, norm_rel_error, offset_biases, rounding_floor

    assert main(["gradcheck", "--reg", "100", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    failed = sorted(k for k, e in doc["errors"].items() if not e < doc["tol"])
    assert failed == ["b1", "b2"]
    assert any(n.startswith("rounding alone can give b1, b2 a relative error") for n in
               doc["notes"])
    # a wrong backward at the same reg is not put down to rounding
    from mlplab.layers import ReLU

    backward = ReLU.backward
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(ReLU, "backward", lambda self, d: 1.01 * backward(self, d))
        assert main(["gradcheck", "--reg", "100", "--json"]) == 1
    assert not any("rounding alone" in n for n in json.loads(capsys.readouterr().out)["notes"])
    # the estimate bounds what rounding gave, and a wrong gradient is far above it
    # (an upper estimate, within a few times of what rounding gave: 1.5 to 4.5 times on these
    # four draws, where rounding is all of the error)
    for seed in range(4):
        m = MLP(4, [6], 3, init="xavier", seed=seed, dtype=np.float64)
        rng = np.random.RandomState(seed)
        X, y = rng.randn(8, 4), rng.randint(3, size=8)
        offset_biases(m, rng)
        floor, errors = rounding_floor(m, X, y, 100.0), check_model(m, X, y, reg=100.0,
                                                                     metric="norm")
        assert all(errors[k] <= floor[k] <= 6 * errors[k] for k in errors), (errors, floor)
        _, grads = m.loss(X, y, reg=100.0)
        assert norm_rel_error(grads["b1"] * 1.01, grads["b1"]) > 10 * floor["b1"]


@pytest.mark.parametrize("activation, slope", [("leaky_relu", 0.01), ("prelu", 0.25)])
def test_nearest_kink_counts_the_leaky_and_parametric_relus(activation, slope):
    """LeakyReLU's and PReLU's slopes jump at 0 as ReLU's does: the nearest kink is the smallest
    input of theirs too (here of both hidden layers, by hand: the slope below 0 is LeakyReLU's
    default 0.01, PReLU's initial 0.25), not None as for a smooth activation."""
    from mlplab import MLP
    from mlplab.gradcheck import nearest_kink

    rng = np.random.RandomState(1)
    model = MLP(5, [4, 3], 2, activation=activation, seed=0, dtype=np.float64)
    X = rng.randn(6, 5)
    W1, b1, W2, b2 = (model.params[k] for k in ("W1", "b1", "W2", "b2"))
    z1 = X @ W1 + b1
    z2 = np.where(z1 > 0, z1, slope * z1) @ W2 + b2
    assert nearest_kink(model, X) == pytest.approx(min(np.abs(z1).min(), np.abs(z2).min()),
                                                   rel=1e-12)


def test_gradcheck_says_what_a_row_measures_and_what_its_bound_means(capsys):
    """A student reading the output learns which two gradients are compared, the formula of the
    error, that it has no unit, what correct and wrong code give and that a row passes below
    --tol; the rows are the JSON's errors (the columns were "check value bound")."""
    assert main(["gradcheck", "--hidden", "8", "--json"]) == 0
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert main(["gradcheck", "--hidden", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == ("8 random samples (seed 0); a: the backward pass's gradient, n: centred "
                        "differences, h = 1e-5")
    assert lines[2].startswith("rel. error: ||a - n|| / (||a|| + ||n||)")
    assert lines[3].endswith("a parameter passes below --tol 1e-07")
    assert lines[4].split() == ["parameter", "rel.", "error", "--tol", "result"]
    shapes = {"W1": "(12, 8)", "b1": "(8,)", "W2": "(8, 5)", "b2": "(5,)"}
    for line, (name, error) in zip(lines[5:9], errors.items()):
        assert line.split() == [name, *shapes[name].split(), f"{error:.3e}", "1e-07", "PASS"]
    assert lines[9] == "all 4 gradients match: every relative error is below --tol 1e-07"
    assert not any("dropout masks" in x for x in lines) and max(map(len, lines)) <= 100
    assert main(["gradcheck", "--hidden", "8", "--dropout", "0.3", "--metric", "max"]) == 0
    out = capsys.readouterr().out
    assert "rel. error: max over the parameter's entries of |a - n| / max(1e-8, |a| + |n|)" \
        in out and "below --tol 1e-05" in out
    assert "dropout masks are held fixed, so that the loss is a function of the weights alone" \
        in out


def test_gradcheck_checks_the_label_smoothed_loss(capsys, monkeypatch):
    """--label-smoothing EPS checks the loss mlplab train --label-smoothing trains with: a
    backward pass that ignores the smoothing (the one-hot gradient p - onehot(y)) passes the
    plain check and fails this one, so the option reaches the loss that is differentiated."""
    from mlplab.layers import SoftmaxCrossEntropy

    assert main(["gradcheck", "--label-smoothing", "0.1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] and doc["settings"]["label_smoothing"] == 0.1
    backward = SoftmaxCrossEntropy.backward

    def one_hot_backward(self, *args, **kwargs):
        eps, self.label_smoothing = self.label_smoothing, 0.0
        try:
            return backward(self, *args, **kwargs)
        finally:
            self.label_smoothing = eps

    monkeypatch.setattr(SoftmaxCrossEntropy, "backward", one_hot_backward)
    assert main(["gradcheck", "--json"]) == 0
    capsys.readouterr()
    assert main(["gradcheck", "--label-smoothing", "0.1", "--json"]) == 1
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert min(errors.values()) > 1e-3  # every gradient flows from the loss's


@pytest.mark.parametrize("eps", ["1", "-0.1", "nan"])
def test_gradcheck_refuses_a_label_smoothing_outside_0_1_in_one_line(eps, capsys):
    assert main(["gradcheck", f"--label-smoothing={eps}"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"mlplab gradcheck: error: --label-smoothing must be a number in [0, 1); got "
        f"{float(eps)}."]
