"""``mlplab.estimator.MLPClassifier`` against scikit-learn's own estimator checks and tools.

Skipped by scikit-learn itself (reported as skips, not failures):
* ``check_array_api_input`` runs only with ``SCIPY_ARRAY_API=1`` and an array-API library; the
  engine is NumPy-only by design (hand-written NumPy backpropagation).
* ``check_classifier_data_not_an_array`` runs only when pandas is installed; pandas is not an
  mlplab dependency. (The same check's NumPy-array-like part is covered by the other checks.)
  ``test_a_dataframe_is_taken_as_scikit_learn_takes_it`` skips without pandas for that reason.
"""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from mlplab.estimator import MLPClassifier


def _listed(mark: pytest.MarkDecorator) -> pytest.MarkDecorator:
    """scikit-learn 1.2's ``parametrize_with_checks`` hands pytest a generator, which pytest 9
    deprecates and a later pytest refuses; the same checks as a list."""
    names, values = mark.args
    return pytest.mark.parametrize(names, list(values), **mark.kwargs)


@_listed(parametrize_with_checks([MLPClassifier()]))
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_early_stopping_fails_only_the_checks_that_call_partial_fit():
    """partial_fit refuses early_stopping=True, as scikit-learn's does, so the checks that call
    partial_fit fail with that refusal, as they do for scikit-learn's own
    MLPClassifier(early_stopping=True); every other check passes."""
    import inspect

    from sklearn.utils.estimator_checks import check_estimator

    if "on_fail" not in inspect.signature(check_estimator).parameters:
        pytest.skip("check_estimator(on_fail=None) needs scikit-learn >= 1.6")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(MLPClassifier(early_stopping=True), on_fail=None)
    failed = {r["check_name"]: str(r["exception"]) for r in results if r["status"] == "failed"}
    assert set(failed) == {"check_fit_score_takes_y", "check_n_features_in_after_fitting",
                           "check_estimators_partial_fit_n_features"}
    assert all(why.startswith("partial_fit does not support early_stopping=True")
               for why in failed.values())


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def test_pipeline_learns_digits_and_is_reproducible(digits):
    X_tr, X_te, y_tr, y_te = digits
    make = lambda: make_pipeline(StandardScaler(),  # noqa: E731
                                 MLPClassifier(hidden_sizes=(64,), lr=1e-2, max_epochs=30,
                                               random_state=0))
    a, b = make().fit(X_tr, y_tr), make().fit(X_tr, y_tr)
    assert a.score(X_te, y_te) > 0.95
    np.testing.assert_array_equal(a.predict_proba(X_te), b.predict_proba(X_te))
    clf = a[-1]
    assert clf.n_features_in_ == 64 and list(clf.classes_) == list(range(10))
    assert len(clf.loss_curve_) == clf.n_iter_ <= 30 and clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.t_ == clf.n_iter_ * len(X_tr)  # samples seen, every row an epoch, as scikit-learn


def test_grid_search_over_the_engine(digits):
    X_tr, _, y_tr, _ = digits
    grid = GridSearchCV(make_pipeline(StandardScaler(),
                                      MLPClassifier(max_epochs=8, random_state=0)),
                        {"mlpclassifier__hidden_sizes": [(8,), (64,)],
                         "mlpclassifier__lr": [1e-3, 1e-2]}, cv=2)
    grid.fit(X_tr[:600], y_tr[:600])
    assert grid.best_params_ == {"mlpclassifier__hidden_sizes": (64,), "mlpclassifier__lr": 1e-2}
    assert len(grid.cv_results_["mean_test_score"]) == 4


def test_string_labels_float32_and_early_stopping(digits):
    X_tr, X_te, y_tr, y_te = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])
    scaler = StandardScaler().fit(X_tr)
    clf = MLPClassifier(hidden_sizes=(32,), early_stopping=True, n_iter_no_change=3,
                        max_epochs=200, lr=1e-2, random_state=1)
    clf.fit(scaler.transform(X_tr).astype(np.float32), names[y_tr])
    assert clf.model_.dtype == np.float32  # float32 input trains in float32
    assert set(clf.predict(scaler.transform(X_te))) <= set(names)
    assert clf.score(scaler.transform(X_te), names[y_te]) > 0.9
    assert clf.n_iter_ < 200 and clf.best_validation_score_ == max(clf.validation_scores_)
    # stopped as scikit-learn counts: more than n_iter_no_change epochs after the best one
    assert clf.n_iter_ - (int(np.argmax(clf.validation_scores_)) + 1) == 3 + 1
    # refitted without early stopping: no scores left over from the first fit (as scikit-learn)
    clf.set_params(early_stopping=False, max_epochs=2).fit(X_tr, y_tr)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None


@pytest.mark.parametrize("values", [[3, 7, 9], [5, -1, 2], [1.0, 2.0, 4.0], ["b", "a", "c"],
                                    np.array(["b", "a", "c"], dtype=object), [True, False]],
                         ids=["ints", "unsorted-ints", "integral-floats", "str", "object", "bool"])
def test_labels_round_trip_as_in_scikit_learn(digits, values):
    """Any label values come back from predict as given, with classes_ (values and dtype) and
    predict_proba's columns as scikit-learn's own MLPClassifier has them, from fit and from a
    partial_fit whose classes are given in another order."""
    from sklearn.metrics import accuracy_score
    from sklearn.neural_network import MLPClassifier as SkMLP

    X_tr, _, y_tr, _ = digits
    values = np.asarray(values)
    X, y = X_tr[:300] / 16, values[y_tr[:300] % len(values)]
    theirs = SkMLP(max_iter=2).fit(X, y)
    for ours in (MLPClassifier(hidden_sizes=(8,), max_epochs=2, tol=None, random_state=0)
                 .fit(X, y),
                 MLPClassifier(hidden_sizes=(8,), random_state=0)
                 .partial_fit(X, y, classes=values[::-1])):
        assert ours.classes_.tolist() == theirs.classes_.tolist()
        predicted, proba = ours.predict(X), ours.predict_proba(X)
        # (object labels of str too: fit and partial_fit both give str, as scikit-learn's does)
        assert ours.classes_.dtype == theirs.classes_.dtype
        assert predicted.dtype == theirs.predict(X).dtype
        assert set(predicted) <= set(values)
        assert proba.shape == (len(X), len(values))
        np.testing.assert_allclose(proba.sum(axis=1), 1)
        np.testing.assert_array_equal(predicted, ours.classes_[proba.argmax(axis=1)])
        assert ours.score(X, y) == accuracy_score(y, predicted)


def test_a_dataframe_is_taken_as_scikit_learn_takes_it(digits):
    """Column names are kept and checked at predict (scikit-learn's feature_names_in_), and
    label Series (strings, categorical) give scikit-learn's classes_."""
    pd = pytest.importorskip("pandas")
    from sklearn.neural_network import MLPClassifier as SkMLP

    X_tr, _, y_tr, _ = digits
    X = pd.DataFrame(X_tr[:300] / 16, columns=[f"px{i}" for i in range(64)])
    y = pd.Series(np.array(["odd", "even"])[y_tr[:300] % 2])
    ours = MLPClassifier(hidden_sizes=(8,), max_epochs=2, tol=None, random_state=0).fit(X, y)
    theirs = SkMLP(max_iter=2).fit(X, y)
    assert ours.feature_names_in_.tolist() == theirs.feature_names_in_.tolist()
    assert ours.classes_.tolist() == theirs.classes_.tolist() == ["even", "odd"]
    np.testing.assert_array_equal(ours.predict(X.iloc[:5]), ours.predict(X.to_numpy()[:5]))
    with pytest.raises(ValueError, match="feature names should match"):
        ours.predict(X.rename(columns={"px0": "other"}))
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        ours.predict(X.to_numpy())
    categorical = MLPClassifier(hidden_sizes=(8,), max_epochs=2, tol=None).fit(
        X, y.astype("category"))
    assert categorical.classes_.tolist() == ["even", "odd"]
    # a refit on an array forgets the names, as scikit-learn's does
    assert not hasattr(ours.fit(X.to_numpy(), y), "feature_names_in_")


def test_cross_val_score_is_its_folds_fitted_by_hand(digits):
    """cross_val_score (n_jobs=1) clones the estimator for each fold: the scores are those of a
    clone of it fitted and scored on each of the same folds by hand, so nothing of one fold's
    fit reaches another's."""
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    X_tr, _, y_tr, _ = digits
    X, y = X_tr[:400] / 16, y_tr[:400]
    clf = MLPClassifier(hidden_sizes=(16,), max_epochs=3, tol=None, random_state=0)
    folds = list(StratifiedKFold(3).split(X, y))
    scores = cross_val_score(clf, X, y, cv=folds, n_jobs=1)
    by_hand = [clone(clf).fit(X[tr], y[tr]).score(X[te], y[te]) for tr, te in folds]
    np.testing.assert_array_equal(scores, by_hand)
    assert not hasattr(clf, "model_")  # the estimator given is left unfitted


def test_a_pickled_partial_fit_goes_on_as_if_never_pickled(digits):
    """A stream's estimator saved between chunks carries its optimiser's state and random
    streams: continued after unpickling, it trains exactly as the one never pickled."""
    import pickle

    X_tr, _, y_tr, _ = digits
    X = X_tr / 16
    chunks = [slice(0, 500), slice(500, 1000), slice(1000, None)]
    kept = MLPClassifier(hidden_sizes=(16,), dropout=0.2, optimizer="momentum", lr=0.05,
                         random_state=0).partial_fit(X[chunks[0]], y_tr[chunks[0]],
                                                     classes=np.arange(10))
    saved = pickle.loads(pickle.dumps(kept))
    np.testing.assert_array_equal(saved.predict_proba(X), kept.predict_proba(X))
    for chunk in chunks[1:]:
        kept.partial_fit(X[chunk], y_tr[chunk])
        saved.partial_fit(X[chunk], y_tr[chunk])
    for name, value in kept.model_.state_dict().items():
        np.testing.assert_array_equal(saved.model_.state_dict()[name], value, err_msg=name)
    assert saved.loss_curve_ == kept.loss_curve_ and saved.t_ == kept.t_ == len(X)


def test_early_stopping_on_fewer_validation_samples_than_classes(digits):
    X_tr, _, y_tr, _ = digits
    # 3 samples of each of 10 classes: 10% is 3 validation samples, too few to stratify
    rows = np.concatenate([np.flatnonzero(y_tr == k)[:3] for k in range(10)])
    clf = MLPClassifier(hidden_sizes=(8,), early_stopping=True, max_epochs=3, random_state=0)
    clf.fit(X_tr[rows], y_tr[rows])
    assert len(clf.classes_) == 10 and len(clf.validation_scores_) == clf.n_iter_


def test_a_validation_fraction_of_any_float_type(digits):
    """A fraction in NumPy's float32 (a grid of np.linspace(..., dtype=np.float32), say) holds
    out the same rows as the Python float: it was refused by train_test_split, in a message
    about "the 'test_size' parameter", which the user never set."""
    X_tr, _, y_tr, _ = digits
    fits = [MLPClassifier(hidden_sizes=(8,), early_stopping=True, validation_fraction=fraction,
                          max_epochs=2, tol=None, random_state=0).fit(X_tr / 16, y_tr)
            for fraction in (0.25, np.float32(0.25))]
    assert fits[0].validation_scores_ == fits[1].validation_scores_
    np.testing.assert_array_equal(fits[0].model_.params["W1"], fits[1].model_.params["W1"])


def test_early_stopping_with_a_class_of_one_sample(digits):
    """A class with a single sample cannot be in both parts of a stratified split (scikit-learn
    refuses it: "The least populated class in y has only 1 member"): the held-out part is drawn
    unstratified instead, and the fit goes on."""
    X_tr, _, y_tr, _ = digits
    rows = np.concatenate([np.flatnonzero(y_tr == 0)[:1],
                           *(np.flatnonzero(y_tr == k)[:20] for k in range(1, 10))])
    clf = MLPClassifier(hidden_sizes=(8,), early_stopping=True, max_epochs=2, random_state=0)
    clf.fit(X_tr[rows], y_tr[rows])
    assert len(clf.classes_) == 10 and len(clf.validation_scores_) == clf.n_iter_ == 2


def test_bad_hyperparameters_are_reported_at_fit(digits):
    X_tr, _, y_tr, _ = digits
    # a bool is not a width; neither is a lone True or 2.5 (it was "not iterable", a TypeError)
    for hidden in [(0,), (True,), (8.0,), True, 2.5, None]:
        with pytest.raises(ValueError, match="hidden_sizes"):
            MLPClassifier(hidden_sizes=hidden).fit(X_tr, y_tr)
    with pytest.raises(ValueError, match="max_epochs"):
        MLPClassifier(max_epochs=True).fit(X_tr, y_tr)
    for batch in (2.5, 0, "64"):  # not silently truncated to 2
        with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
            MLPClassifier(batch_size=batch).fit(X_tr, y_tr)
    with pytest.raises(ValueError, match="unknown optimizer"):
        MLPClassifier(optimizer="rmsprop").fit(X_tr, y_tr)
    with pytest.raises(ValueError, match=r"2 classes in y; got 1 class \(0\)\.$"):
        MLPClassifier().fit(X_tr[:5], np.zeros(5, int))
    with pytest.raises(ValueError, match=r"got 1 class \('cat'\)\.$"):
        MLPClassifier().fit(X_tr[:5], ["cat"] * 5)
    # switches were read by their truth: batchnorm="False" trained with batch norm
    for name in ("batchnorm", "early_stopping", "warm_start"):
        with pytest.raises(ValueError, match=rf"^{name} must be True or False; got 'no'.$"):
            MLPClassifier(**{name: "no"}).fit(X_tr, y_tr)


def test_verbose_takes_scikit_learns_levels(digits, capsys):
    """scikit-learn's verbose is a level (its MLPClassifier takes verbose=2): any level above 0
    prints each epoch, as True does, 0 prints nothing; mlplab refused 2 as no True or False."""
    from sklearn.neural_network import MLPClassifier as SkMLP

    X_tr, _, y_tr, _ = digits
    X, y = X_tr[:200], y_tr[:200]
    SkMLP(max_iter=1, verbose=2).fit(X, y)  # the reference: a level it takes
    capsys.readouterr()
    printed = {}
    levels = {"True": True, "2": 2, "np.int64(1)": np.int64(1), "0": 0, "False": False}
    for name, level in levels.items():  # named here: NumPy < 2 writes np.int64(1) as "1"
        MLPClassifier(hidden_sizes=(8,), max_epochs=2, tol=None, random_state=0,
                      verbose=level).fit(X, y)
        printed[name] = capsys.readouterr().out
    assert printed["True"].count("\n") == 2 and "loss" in printed["True"]
    assert printed["2"] == printed["np.int64(1)"] == printed["True"]
    assert printed["0"] == printed["False"] == ""
    for bad in (-1, 1.5, "yes"):
        with pytest.raises(ValueError, match=r"^verbose must be True, False or an integer >= 0; "
                                             r"got .*\.$"):
            MLPClassifier(verbose=bad).fit(X, y)


def test_a_loss_that_blows_up_warns_that_the_fit_diverged(digits):
    """A loss that rose to 4e91 is finite, so no divergence was caught, and its rises met the
    no-improvement rule, which ended the fit as if converged, without a word."""
    from sklearn.exceptions import ConvergenceWarning

    X_tr, _, y_tr, _ = digits
    with pytest.warns(ConvergenceWarning, match=r"the training loss rose from \S+ to \S+ "
                                                r"over \d+ epochs: the training diverged, and "
                                                r"the network fits nothing; lower lr \(1e\+06\)"):
        m = MLPClassifier(hidden_sizes=(8,), random_state=0, max_epochs=20, lr=1e6,
                          optimizer="sgd").fit(X_tr[:300] / 16, y_tr[:300])
    assert m.loss_curve_[-1] > 1e10 * m.loss_curve_[0]


def test_running_out_of_epochs_warns_as_scikit_learns_does(digits):
    """scikit-learn's MLPClassifier warns (ConvergenceWarning) when max_iter ends a fit before
    its stopping rule; mlplab's said nothing, so a grid search compared half-trained networks
    unawares. No warning when the rule stopped it, nor with tol=None (every epoch asked for)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkMLP

    X_tr, _, y_tr, _ = digits
    kw = dict(hidden_sizes=(8,), max_epochs=3, random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"max_epochs \(3\) reached .* tol \(0\.0001\)"):
        MLPClassifier(**kw).fit(X_tr, y_tr)
    with pytest.warns(ConvergenceWarning):  # the reference: scikit-learn on the same work
        SkMLP(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X_tr, y_tr)
    with pytest.warns(ConvergenceWarning, match="validation accuracy"):
        MLPClassifier(early_stopping=True, n_iter_no_change=50, **kw).fit(X_tr, y_tr)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        MLPClassifier(tol=None, **kw).fit(X_tr, y_tr)
        stopped = MLPClassifier(hidden_sizes=(8,), max_epochs=50, tol=1e3, n_iter_no_change=1,
                                random_state=0).fit(X_tr, y_tr)
    assert stopped.n_iter_ < 50


def test_tol_none_trains_every_epoch(digits):
    X_tr, _, y_tr, _ = digits
    kw = dict(hidden_sizes=(8,), max_epochs=6, n_iter_no_change=1, random_state=0)
    assert MLPClassifier(tol=None, **kw).fit(X_tr, y_tr).n_iter_ == 6
    # the same net stops early on its loss with a tolerance it cannot meet every epoch
    # the first sets the best; scikit-learn stops when more than n_iter_no_change epochs fail
    assert MLPClassifier(tol=1e3, **kw).fit(X_tr, y_tr).n_iter_ == 3


def _sklearn_stopping_epoch(curve, tol, n_iter_no_change):
    """The epoch at which scikit-learn's MLPClassifier stops on ``curve`` (its epoch losses):
    an epoch that does not beat the best loss *so far* by ``tol`` counts as no improvement, and
    it stops once *more than* ``n_iter_no_change`` epochs in a row did not (``_fit_stochastic``:
    ``if self._no_improvement_count > self.n_iter_no_change``; mlplab stopped one epoch early)."""
    best, bad = np.inf, 0
    for epoch, loss in enumerate(curve, start=1):
        bad = bad + 1 if loss > best - tol else 0
        best = min(best, loss)
        if bad > n_iter_no_change:
            return epoch
    return len(curve)


def test_the_loss_based_stop_is_scikit_learns_rule(digits):
    """On a loss curve that goes up and down (a large learning rate) the stop comes where
    scikit-learn's rule puts it: improvement is measured against the best epoch so far, not
    the last one. Stopping does not change the epochs before it, so the run without a stop
    gives the curve the rule is applied to."""
    X_tr, _, y_tr, _ = digits
    kw = dict(hidden_sizes=(16,), optimizer="sgd", lr=0.1, batch_size=100, max_epochs=30,
              random_state=0)
    curve = MLPClassifier(tol=None, **kw).fit(X_tr[:500], y_tr[:500]).loss_curve_
    stop = _sklearn_stopping_epoch(curve, 0.01, 3)
    assert stop < 30  # the rule does stop this run
    clf = MLPClassifier(tol=0.01, n_iter_no_change=3, **kw).fit(X_tr[:500], y_tr[:500])
    assert clf.n_iter_ == stop and clf.loss_curve_ == curve[:stop]


def test_a_warm_start_goes_on_counting_as_scikit_learns_does(digits):
    """scikit-learn keeps its best loss and no-improvement count across warm-started fits: a
    fit after one that stopped on the rule stops after its first epoch. mlplab counted afresh
    (three more epochs). A tolerance no epoch meets makes the two stop on the same epochs."""
    from sklearn.neural_network import MLPClassifier as SkMLP

    X_tr, _, y_tr, _ = digits
    kw = dict(tol=1e3, n_iter_no_change=1, warm_start=True, random_state=0, max_iter=50)
    ours = MLPClassifier(hidden_sizes=(8,), **{k: v for k, v in kw.items() if k != "max_iter"},
                         max_epochs=50)
    theirs = SkMLP(hidden_layer_sizes=(8,), **kw)
    for _ in range(2):
        ours.fit(X_tr, y_tr)
        theirs.fit(X_tr, y_tr)
        assert len(ours.loss_curve_) == len(theirs.loss_curve_)
    assert ours.best_loss_ == min(ours.loss_curve_)
    assert MLPClassifier(hidden_sizes=(8,), early_stopping=True, max_epochs=2,
                         random_state=0).fit(X_tr, y_tr).best_loss_ is None
    # partial_fit counts its epochs for the rule too (without stopping), and a warm fit after
    # it goes on from there; best_loss_ follows every epoch
    classes = np.unique(y_tr)
    ours = MLPClassifier(hidden_sizes=(8,), max_epochs=50, tol=1e3, n_iter_no_change=1,
                         random_state=0)
    theirs = SkMLP(hidden_layer_sizes=(8,), max_iter=50, tol=1e3, n_iter_no_change=1,
                   random_state=0)
    for _ in range(3):
        ours.partial_fit(X_tr, y_tr, classes=classes)
        theirs.partial_fit(X_tr, y_tr, classes=classes)
    assert ours._no_improvement_count == theirs._no_improvement_count == 2
    assert ours.best_loss_ == min(ours.loss_curve_)
    ours.set_params(warm_start=True).fit(X_tr, y_tr)
    theirs.set_params(warm_start=True).fit(X_tr, y_tr)
    assert len(ours.loss_curve_) == len(theirs.loss_curve_) == 4
    # without a loss-based stop (tol=None) best_loss_ still follows the epochs of a warm fit
    ours.set_params(tol=None, max_epochs=3).fit(X_tr, y_tr)
    assert ours.best_loss_ == min(ours.loss_curve_)


def test_samples_seen_count_a_batch_capped_at_the_training_set(digits):
    """``batch_size`` above the number of samples trains on batches of all of them (as
    scikit-learn does): each epoch sees 60 samples, not 500."""
    X_tr, _, y_tr, _ = digits
    clf = MLPClassifier(hidden_sizes=(4,), batch_size=500, max_epochs=3, tol=None,
                        random_state=0).fit(X_tr[:60], y_tr[:60])
    assert clf.n_iter_ == 3 and clf.t_ == 3 * 60


def test_warm_start_continues_the_fitted_network(digits):
    from mlplab.models import MLP
    from mlplab.trainer import Trainer

    X_tr, _, y_tr, _ = digits
    X_tr = (X_tr / 16).astype(np.float32)
    params = dict(hidden_sizes=(32,), max_epochs=3, tol=None, random_state=0)
    clf = MLPClassifier(warm_start=True, **params).fit(X_tr, y_tr)
    model, seen = clf.model_, clf.t_
    clf.fit(X_tr, y_tr)
    assert clf.model_ is model and clf.n_iter_ == 6 and len(clf.loss_curve_) == 6
    assert clf.t_ == 2 * seen
    # the same as training one network twice by hand: same seed, a new optimiser each time
    seed = int(np.random.RandomState(0).randint(np.iinfo(np.int32).max))
    ref = MLP(64, [32], 10, seed=seed, dtype=np.float32)
    for _ in range(2):
        by_hand = Trainer(optimizer="adam", lr=1e-3, schedule="constant", lr_decay=1.0,
                          reg=1e-4, batch_size=200, epochs=3, train_acc="subset", seed=seed)
        by_hand._last_batch = True  # the estimator's epochs train the rows left over too
        by_hand.fit(ref, X_tr, y_tr)
    for name, p in ref.params.items():
        np.testing.assert_array_equal(clf.model_.params[name], p, err_msg=name)
    # without warm_start a second fit starts again, as scikit-learn's does
    cold = MLPClassifier(**params).fit(X_tr, y_tr)
    first = cold.model_.params["W1"].copy()
    cold.fit(X_tr, y_tr)
    np.testing.assert_array_equal(cold.model_.params["W1"], first)
    assert cold.n_iter_ == 3 and len(cold.loss_curve_) == 3
    # float64 data continue in the network's float32
    clf.fit(X_tr.astype(np.float64), y_tr)
    assert clf.model_.dtype == np.float32 and clf.n_iter_ == 9


@pytest.mark.parametrize("settings, rows", [
    ({"optimizer": "sgd", "lr": 0.05}, 1200),
    ({"optimizer": "momentum", "lr": 0.05, "dropout": 0.2}, 1200),  # velocities, dropout's rng
    ({"optimizer": "adam", "schedule": "exp", "lr_decay": 0.9, "batchnorm": True}, 1200),
    # rows left over, which fit's epochs once left untrained (partial_fit's did not)
    ({"optimizer": "momentum", "lr": 0.05, "dropout": 0.2}, 1130),
    ({"optimizer": "adam", "batchnorm": True}, 1001),  # one row left over joins a batch
])
def test_partial_fit_epochs_train_as_fit(digits, settings, rows):
    """n partial_fit calls on the same data are one run of n epochs: the optimiser's state, the
    batch order's generator and dropout's carry over, bit for bit; a fit before them is
    continued the same way."""
    X_tr, _, y_tr, _ = digits
    X_tr, y_tr = (X_tr[:rows] / 16).astype(np.float32), y_tr[:rows]
    params = dict(hidden_sizes=(32,), tol=None, random_state=3, **settings)
    ref = MLPClassifier(max_epochs=4, **params).fit(X_tr, y_tr)
    streamed = MLPClassifier(**params)
    for i in range(4):
        streamed.partial_fit(X_tr, y_tr, classes=np.arange(10) if i == 0 else None)
    after_fit = MLPClassifier(max_epochs=2, **params).fit(X_tr, y_tr)
    for _ in range(2):
        after_fit.partial_fit(X_tr, y_tr)
    for clf in (streamed, after_fit):
        for name, p in ref.model_.params.items():
            np.testing.assert_array_equal(clf.model_.params[name], p, err_msg=name)
        assert clf.loss_curve_ == ref.loss_curve_
        assert clf.n_iter_ == 4 and clf.t_ == ref.t_ == 4 * rows


@pytest.mark.parametrize("settings", [
    {"optimizer": "sgd", "lr": 0.05},
    {"optimizer": "momentum", "lr": 0.05, "dropout": 0.2, "reg": 1e-3},  # L2 folded in epochs
    {"optimizer": "adam", "schedule": "exp", "lr_decay": 0.9},
])
def test_partial_fit_chunks_train_as_the_plain_trainer(digits, settings):
    """A stream of other chunks each call (two minibatches each) gives, bit for bit, the
    weights and losses of mlplab's own MLP and Trainer resumed from call to call through the
    public state_dict / resume / fit: the estimator hands the optimiser's slots on without
    copying them and skips fit's second scan of the data, which must change no number."""
    from mlplab.models import MLP
    from mlplab.trainer import Trainer

    X_tr, _, y_tr, _ = digits
    X = (X_tr / 16).astype(np.float32)
    chunks = [slice(start, start + 400) for start in (0, 400, 800)] * 2
    clf = MLPClassifier(hidden_sizes=(32,), random_state=3, **settings)
    for i, rows in enumerate(chunks):
        clf.partial_fit(X[rows], y_tr[rows], classes=np.arange(10) if i == 0 else None)

    seed = int(np.random.RandomState(3).randint(np.iinfo(np.int32).max))
    model = MLP(64, [32], 10, dropout=settings.get("dropout", 0.0), seed=seed, dtype=np.float32)
    decay = settings.get("lr_decay", 1.0)
    carried: dict = {}
    losses = []
    for n, rows in enumerate(chunks):
        trainer = Trainer(optimizer=settings["optimizer"],
                          lr=settings.get("lr", 1e-3) * decay ** n, schedule="constant",
                          reg=settings.get("reg", 1e-4), batch_size=200, epochs=1, seed=seed,
                          train_acc="subset")
        if carried:
            trainer.resume({"iteration": 0, "epoch": 0, "history": {}, "best_state": None,
                            "order": None, **carried})
        losses.append(float(np.mean(trainer.fit(model, X[rows], y_tr[rows]).loss)))
        state = trainer.state_dict()
        carried = {k: state[k] for k in ("rng", "dropout_rngs", "optimizer")}
    for name, p in model.params.items():
        np.testing.assert_array_equal(clf.model_.params[name], p, err_msg=name)
    assert clf.loss_curve_ == losses


@pytest.mark.parametrize("rows, batchnorm", [(399, False), (250, False), (401, True)])
def test_partial_fit_trains_on_every_row_given(digits, rows, batchnorm):
    """One call is one pass over every row given: minibatches of ``batch_size`` and a last,
    smaller one (scikit-learn's partial_fit). The ``len(X) % batch_size`` rows an epoch's shuffle
    left over were not trained on, so a stream of 399-row chunks trained on 200 rows of each.
    With batch norm a single row left over joins the batch before it (one row is its own mean).
    The reference is plain SGD by hand over the same shuffled order."""
    from mlplab.models import MLP

    X_tr, _, y_tr, _ = digits
    X, y = X_tr[:rows] / 16, y_tr[:rows]
    clf = MLPClassifier(hidden_sizes=(16,), optimizer="sgd", lr=0.1, reg=0.0,
                        batchnorm=batchnorm, random_state=5)
    clf.partial_fit(X, y, classes=np.arange(10))

    seed = int(np.random.RandomState(5).randint(np.iinfo(np.int32).max))
    model = MLP(64, [16], 10, batchnorm=batchnorm, seed=seed, dtype=np.float64)
    order = np.random.RandomState(seed).permutation(rows)
    starts = list(range(0, rows, 200))
    if batchnorm and rows % 200 == 1:
        starts.pop()
    bounds = [*starts[1:], rows]
    losses = []
    for start, end in zip(starts, bounds):
        idx = order[start:end]
        loss, grads = model.loss(X[idx], y[idx])
        losses.append((loss, end - start))
        for name, p in model.params.items():
            p -= 0.1 * grads[name]
    for name, p in model.params.items():
        np.testing.assert_allclose(clf.model_.params[name], p, rtol=1e-10, atol=1e-12,
                                   err_msg=name)
    assert clf.t_ == rows and clf.n_iter_ == 1
    # the epoch's loss is the mean over its rows, the last batch weighted by its size
    mean = sum(loss * n for loss, n in losses) / rows
    assert clf.loss_curve_ == [pytest.approx(mean, rel=1e-12)]


def test_partial_fit_continues_in_the_networks_dtype(digits):
    """A float32 network given a float64 chunk goes on in float32, as fit's warm start does:
    the same weights as the caller casting the chunk, and the parameters stay float32."""
    X_tr, _, y_tr, _ = digits
    X32 = (X_tr / 16).astype(np.float32)
    runs = []
    for second in (X32.astype(np.float64), X32):
        clf = MLPClassifier(hidden_sizes=(16,), optimizer="adam", random_state=0)
        clf.partial_fit(X32, y_tr, classes=np.arange(10))
        clf.partial_fit(second, y_tr)
        assert clf.model_.dtype == np.float32
        assert all(p.dtype == np.float32 for p in clf.model_.params.values())
        runs.append(clf)
    for name, p in runs[1].model_.params.items():
        np.testing.assert_array_equal(runs[0].model_.params[name], p, err_msg=name)
    assert runs[0].loss_curve_ == runs[1].loss_curve_


def test_partial_fit_learns_from_a_stream(digits):
    """Chunks of 150 rows, some missing classes, as a stream delivers them."""
    X_tr, X_te, y_tr, y_te = digits
    scaler = StandardScaler().fit(X_tr)
    labels = np.array([f"digit {d}" for d in range(10)])
    clf = MLPClassifier(hidden_sizes=(64,), lr=1e-2, random_state=0)
    order = np.argsort(y_tr[:450], kind="stable")  # the first chunks hold few classes each
    X_stream = np.concatenate([X_tr[:450][order], X_tr[450:]])
    y_stream = np.concatenate([y_tr[:450][order], y_tr[450:]])
    for _ in range(10):
        for start in range(0, len(X_stream), 150):
            chunk = slice(start, start + 150)
            clf.partial_fit(scaler.transform(X_stream[chunk]), labels[y_stream[chunk]],
                            classes=labels)
    assert clf.n_iter_ == 10 * int(np.ceil(len(X_stream) / 150))
    assert list(clf.classes_) == list(labels)
    assert clf.score(scaler.transform(X_te), labels[y_te]) > 0.9


def test_partial_fit_continues_an_estimator_fitted_before_it_existed(digits):
    """An estimator fitted (and pickled) by an mlplab without partial_fit has no carried state:
    the next call starts a new optimiser on the fitted weights, as a warm start does."""
    X_tr, _, y_tr, _ = digits
    clf = MLPClassifier(hidden_sizes=(8,), max_epochs=2, tol=None, random_state=0).fit(X_tr, y_tr)
    del clf._continue
    weights = clf.model_.params["W1"].copy()
    clf.partial_fit(X_tr, y_tr)
    assert clf.n_iter_ == 3 and not np.array_equal(clf.model_.params["W1"], weights)


def test_partial_fit_refusals(digits):
    X_tr, _, y_tr, _ = digits
    clf = MLPClassifier(hidden_sizes=(8,))
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X_tr, y_tr)
    with pytest.raises(ValueError, match=r"y has labels \[9\] that are not among the classes"):
        MLPClassifier().partial_fit(X_tr, y_tr, classes=np.arange(9))
    # as scikit-learn's: a call holds nothing out and never stops, and the setting was ignored;
    # also after a fit with early stopping, which leaves it as it was
    fitted = MLPClassifier(hidden_sizes=(8,), early_stopping=True, max_epochs=2, tol=None,
                           random_state=0).fit(X_tr, y_tr)
    weights, epochs = fitted.model_.state_dict(), fitted.n_iter_
    fresh = MLPClassifier(early_stopping=True)
    for est, given in ((fresh, np.arange(10)), (fitted, None)):
        with pytest.raises(ValueError, match=r"^partial_fit does not support early_stopping=True "
                                             r"\(.*\); set early_stopping=False to train with "
                                             r"partial_fit\.$"):
            est.partial_fit(X_tr, y_tr, classes=given)
    assert not hasattr(fresh, "n_features_in_") and not hasattr(fresh, "classes_")
    assert fitted.n_iter_ == epochs
    for name, value in fitted.model_.state_dict().items():
        np.testing.assert_array_equal(value, weights[name])
    assert fitted.set_params(early_stopping=False).partial_fit(X_tr, y_tr).n_iter_ == epochs + 1
    for schedule in ("cosine", "step"):  # known schedules, which partial_fit cannot follow
        with pytest.raises(ValueError, match=f"^schedule '{schedule}' needs a run length, which "
                                             "partial_fit has not"):
            MLPClassifier(schedule=schedule).partial_fit(X_tr, y_tr, classes=np.arange(10))
    clf.partial_fit(X_tr, y_tr, classes=np.arange(10))
    with pytest.raises(ValueError, match="X has 10 features, but MLPClassifier is expecting 64"):
        clf.partial_fit(X_tr[:, :10], y_tr)
    with pytest.raises(ValueError, match=r"^partial_fit: classes \[0, .*\(11 in all\) are not"):
        clf.partial_fit(X_tr, y_tr, classes=np.arange(11))
    with pytest.raises(ValueError, match=r"partial_fit: hidden_sizes is \[16\], but the fitted "
                                         r"network has \[8\]; call fit to start again"):
        clf.set_params(hidden_sizes=(16,)).partial_fit(X_tr, y_tr)


def test_partial_fit_label_refusals_are_one_line_saying_what_to_do(digits):
    """scikit-learn's own check of classes given again said "`classes=array([...])` is not the
    same as on last call to partial_fit, was: array([...])": NumPy's repr, over several lines
    for 17 classes or more, of "the last call to partial_fit" after a fit, and no way on; a
    label outside the classes on a later call was to be passed "in `classes` then", at a first
    call long past."""
    X_tr, _, y_tr, _ = digits
    X, y = X_tr / 16, y_tr

    def refusal(clf, *args, **kwargs):
        with pytest.raises(ValueError) as refused:
            clf.partial_fit(*args, **kwargs)
        return str(refused.value)

    new = MLPClassifier(hidden_sizes=(4,), random_state=0)
    assert refusal(new, X, y) == (
        "classes must be passed on the first call to partial_fit: every label there will be "
        "(later calls may hold any subset of them).")
    assert refusal(new, X, y, classes=np.arange(9)) == (
        "y has labels [9] that are not among the classes [0, 1, 2, 3, 4, 5, 6, 7, 8]; pass "
        "every label there will be in `classes` on the first call.")
    assert refusal(new, X[y == 0], y[y == 0], classes=[0]) == (
        "MLPClassifier needs at least 2 classes; got [0] in `classes`, which must hold every "
        "label there will be.")
    streamed = MLPClassifier(hidden_sizes=(4,), random_state=0)
    streamed.partial_fit(X, y, classes=np.arange(10))
    fitted = MLPClassifier(hidden_sizes=(4,), max_epochs=1, random_state=0).fit(X, y)
    for clf in (streamed, fitted):
        assert refusal(clf, X, y, classes=np.arange(30)) == (
            "partial_fit: classes [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...] (30 in all) are not the "
            "fitted network's [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]; pass the same classes (or none) "
            "after the first call, or start again with fit or a new estimator.")
        assert refusal(clf, X, y + 100) == (
            "y has labels [100, 101, 102, 103, 104, ...] (10 in all) that are not among the "
            "classes [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] of the fitted network; drop those rows, or "
            "start again with fit or a new estimator whose first partial_fit has every label "
            "in `classes`.")
        assert clf.n_iter_ == 1
        # the same classes again, in any order, or none: accepted
        clf.partial_fit(X, y, classes=np.arange(10)[::-1]).partial_fit(X[y < 3], y[y < 3])
        assert clf.n_iter_ == 3


def test_partial_fit_refuses_an_exp_schedule_decayed_to_zero(digits):
    """The learning rate of a call, lr * lr_decay ** n_iter_, is checked as it is: the other
    training settings are validated once per call, before the data, and this one may underflow
    to 0 later. The message says that the schedule did it, and what to do: it said "lr must be
    a finite number > 0; got 0.0" of an lr of 0.001."""
    X_tr, _, y_tr, _ = digits
    clf = MLPClassifier(hidden_sizes=(8,), schedule="exp", lr_decay=1e-200, random_state=0)
    clf.partial_fit(X_tr / 16, y_tr, classes=np.arange(10))
    clf.partial_fit(X_tr / 16, y_tr)  # lr 1e-203
    with pytest.raises(ValueError) as refused:
        clf.partial_fit(X_tr / 16, y_tr)
    assert str(refused.value) == (
        "partial_fit: the exp schedule has decayed the learning rate to 0 after 2 epochs (lr * "
        "lr_decay ** n_iter_ = 0.001 * 1e-200 ** 2), which trains nothing; set a larger lr_decay "
        "or schedule='constant' to go on, or call fit to start again.")
    assert clf.n_iter_ == 2


@pytest.mark.parametrize("first, then", [("momentum", "adam"), ("adam", "sgd")])
def test_partial_fit_after_changing_the_optimizer(digits, first, then):
    """Another optimiser's slots are not carried into the new one: momentum's velocities read as
    Adam's second moments made the weights NaN (sqrt of negatives), and Adam's moments were
    refused by SGD as a damaged resume state."""
    X_tr, _, y_tr, _ = digits
    clf = MLPClassifier(hidden_sizes=(16,), max_epochs=2, optimizer=first, random_state=0)
    clf.fit(X_tr / 16, y_tr)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        clf.set_params(optimizer=then).partial_fit(X_tr / 16, y_tr)
    assert all(np.isfinite(p).all() for p in clf.model_.params.values())
    assert clf.n_iter_ == 3


def test_warm_start_refuses_another_network(digits):
    X_tr, _, y_tr, _ = digits
    clf = MLPClassifier(hidden_sizes=(8,), max_epochs=1, warm_start=True, random_state=0)
    clf.fit(X_tr, y_tr)
    with pytest.raises(ValueError, match="warm_start: y has classes"):
        clf.fit(X_tr[y_tr < 5], y_tr[y_tr < 5])
    with pytest.raises(ValueError, match="X has 10 features, but MLPClassifier is expecting 64"):
        clf.fit(X_tr[:, :10], y_tr)
    with pytest.raises(ValueError, match=r"warm_start: hidden_sizes is \[16\]"):
        clf.set_params(hidden_sizes=(16,)).fit(X_tr, y_tr)
    clf.set_params(hidden_sizes=(8,))
    # settings built into the layers would otherwise silently not apply
    for name, value in (("activation", "tanh"), ("dropout", 0.5), ("batchnorm", True)):
        default = clf.get_params()[name]
        with pytest.raises(ValueError, match=f"warm_start: {name} is {value!r}, but the fitted "
                                             f"network was built with {default!r}"):
            clf.set_params(**{name: value}).fit(X_tr, y_tr)
        clf.set_params(**{name: default})
    weights = clf.model_.params["W1"].copy()
    clf.set_params(init="xavier", std=0.5).fit(X_tr, y_tr)  # first-weight settings: unused
    assert clf.n_iter_ == 2 and not np.array_equal(clf.model_.params["W1"], weights)


@pytest.fixture
def ctrl_c_at(monkeypatch):
    """Every Trainer the estimator makes gets a real Ctrl-C (SIGINT, as a notebook's interrupt
    sends the kernel) after its iteration ``k``; returns the list of trainers made."""
    import os
    import signal

    import mlplab.estimator as est
    from mlplab.trainer import Callback

    made, real = [], est.Trainer

    def arm(k):
        class CtrlC(Callback):
            def on_iteration_end(self, trainer, iteration, loss):
                if iteration == k:
                    os.kill(os.getpid(), signal.SIGINT)

        class Armed(real):
            @classmethod
            def _checked(cls, config, callbacks=()):  # how the estimator makes its trainers
                made.append(super()._checked(config, [*callbacks, CtrlC()]))
                return made[-1]

        monkeypatch.setattr(est, "Trainer", Armed)
        return made

    return arm


def test_ctrl_c_stops_a_grid_search_not_only_its_current_fit(digits, ctrl_c_at):
    """The trainer's graceful stop made fit return a half-trained network as fitted: a grid
    search then went on to its next fit, and the interrupt (pressed once) never stopped it."""
    import signal

    X_tr, _, y_tr, _ = digits
    made = ctrl_c_at(5)
    grid = GridSearchCV(MLPClassifier(hidden_sizes=(8,), max_epochs=20, random_state=0),
                        {"lr": [1e-3, 1e-2]}, cv=2)
    with pytest.raises(KeyboardInterrupt):
        grid.fit(X_tr[:600], y_tr[:600])
    assert len(made) == 1 and made[0].iteration == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_interrupted_fit_keeps_its_epochs_for_a_warm_start(digits, ctrl_c_at):
    X_tr, _, y_tr, _ = digits
    X_tr = X_tr / 16
    clf = MLPClassifier(hidden_sizes=(8,), batch_size=100, max_epochs=5, tol=None,
                        random_state=0)
    assert 1300 < len(X_tr) < 1400
    ctrl_c_at(31)  # 14 iterations an epoch (13 full and the rows left over): in the third
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X_tr, y_tr)
    # every row of two epochs, then three full batches
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2
    assert clf.t_ == 2 * len(X_tr) + 3 * 100
    assert clf.history_.interrupted
    ctrl_c_at(6)
    with pytest.raises(KeyboardInterrupt):  # partial_fit alike
        clf.partial_fit(X_tr, y_tr)
    assert clf.n_iter_ == 2 and clf.t_ == 2 * len(X_tr) + 9 * 100
    ctrl_c_at(10 ** 6)  # no more interrupts
    clf.set_params(warm_start=True).fit(X_tr, y_tr)
    assert clf.n_iter_ == 7 and clf.loss_curve_[-1] < clf.loss_curve_[0]


@pytest.mark.parametrize("early_stopping", [False, True])
def test_an_estimator_pickled_by_an_older_mlplab_is_usable(early_stopping):
    """An MLPClassifier pickled before warm_start (29 Nov 2026) and the validation scores
    existed: its repr, get_params, clone and fit raised AttributeError: 'warm_start'; it now
    takes the values that behave as it did."""
    import pickle

    from sklearn.base import clone

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32) / 16
    clf = MLPClassifier(hidden_sizes=[16], max_epochs=3, random_state=0,
                        early_stopping=early_stopping).fit(X[:1500], y[:1500])
    proba, shown, score = clf.predict_proba(X[1500:]), repr(clf), clf.score(X[1500:], y[1500:])
    for name in ("warm_start", "validation_scores_", "best_validation_score_", "_continue"):
        delattr(clf, name)  # what the older mlplab's estimator did not have
    old = pickle.loads(pickle.dumps(clf))
    assert repr(old) == shown
    assert old.get_params()["warm_start"] is False
    np.testing.assert_array_equal(old.predict_proba(X[1500:]), proba)
    if early_stopping:
        assert old.validation_scores_ == list(old.history_.val_acc)
        assert old.best_validation_score_ == old.history_.best_val_acc
    else:
        assert old.validation_scores_ is None and old.best_validation_score_ is None
    assert clone(old).fit(X[:1500], y[:1500]).score(X[1500:], y[1500:]) == score
    # (early stopping's setting set aside: partial_fit refuses it, as scikit-learn's does)
    old.set_params(early_stopping=False)
    assert old.partial_fit(X[:1500], y[:1500]).n_iter_ == clf.n_iter_ + 1


@pytest.mark.parametrize("bad", [{"lr": -1}, {"optimizer": "rmsprop"}, {"momentum": 1.5},
                                 {"reg": -1}, {"init": "orthogonal"}, {"dropout": 2},
                                 {"batchnorm": True, "batch_size": 1}])
def test_a_refused_fit_leaves_the_estimator_as_it_was(bad):
    # refused after the network was built (the trainer's options, batch norm on one-row
    # batches), a fit left a new, untrained network in place: a refit estimator predicted with
    # it, without a word, and a first fit looked fitted
    from sklearn.exceptions import NotFittedError

    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 4), np.array(["a", "b", "c"] * 20)
    fitted = MLPClassifier(hidden_sizes=(5,), max_epochs=5, random_state=0).fit(X, y)
    probs = fitted.predict_proba(X)
    with pytest.raises(ValueError):
        fitted.set_params(**bad).fit(X, y)
    np.testing.assert_array_equal(fitted.predict_proba(X), probs)
    assert fitted.n_iter_ == 5
    fresh = MLPClassifier(hidden_sizes=(5,), max_epochs=5, **bad)
    for fit in (lambda: fresh.fit(X, y), lambda: fresh.partial_fit(X, y, classes=["a", "b", "c"])):
        with pytest.raises(ValueError):
            fit()
        with pytest.raises(NotFittedError):
            fresh.predict(X)


def test_a_first_partial_fit_refused_by_the_trainer_is_no_first_call():
    from sklearn.exceptions import NotFittedError

    rng = np.random.RandomState(0)
    X, y = rng.randn(10, 4), np.arange(10) % 2
    clf = MLPClassifier(hidden_sizes=(5,), batchnorm=True, random_state=0)
    with pytest.raises(ValueError, match="batch norm needs batches of at least 2 rows"):
        clf.partial_fit(X[:1], y[:1], classes=[0, 1, 2])  # one row: batch norm cannot train
    with pytest.raises(NotFittedError):
        clf.predict(X)
    clf.partial_fit(X, y, classes=[0, 1])  # other classes: this is the first call
    assert clf.classes_.tolist() == [0, 1] and clf.n_iter_ == 1


def _fitted_state(clf):
    """The fitted attributes (``..._``) and the network's weights, as comparable values."""
    state = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(clf).items()
             if k.endswith("_") and k not in ("model_", "history_")}
    state["weights"] = {k: v.tolist() for k, v in clf.model_.state_dict().items()}
    return state


@pytest.mark.filterwarnings("ignore:X does not have valid feature names")
@pytest.mark.parametrize("refit", [
    lambda clf, X, y: clf.fit(X, np.zeros(len(y), int)),  # one class
    lambda clf, X, y: clf.fit(np.where(X > 1, np.nan, X), y),  # NaN, refused by scikit-learn
    lambda clf, X, y: clf.set_params(batchnorm=True, batch_size=1).fit(X, y),  # by the trainer
    lambda clf, X, y: clf.set_params(warm_start=True).fit(X, y),  # other features, continued
    lambda clf, X, y: clf.partial_fit(X, y),  # the same
])
def test_a_refused_refit_on_other_features_keeps_the_fitted_inputs(refit):
    """scikit-learn's validate_data(reset=True) recorded the new data's features before the rest
    was checked: a refit refused after it left an estimator whose network takes 4 features
    expecting 5, refusing the data it was fitted on (and its feature names dropped)."""
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 4), np.arange(60) % 3
    clf = MLPClassifier(hidden_sizes=(5,), max_epochs=2, random_state=0).fit(X, y)
    clf.feature_names_in_ = np.array(list("abcd"), dtype=object)  # as fitted on a DataFrame
    before, probs = _fitted_state(clf), clf.predict_proba(X)
    with pytest.raises(ValueError):
        refit(clf, rng.randn(60, 5), y)
    assert _fitted_state(clf) == before
    np.testing.assert_array_equal(clf.predict_proba(X), probs)
    clf.set_params(batchnorm=False, batch_size=200, warm_start=False).fit(rng.randn(60, 5), y)
    assert clf.n_features_in_ == 5 and not hasattr(clf, "feature_names_in_")  # no names now


def test_a_refused_first_partial_fit_records_nothing():
    """Refused before training, a first call kept its classes: the next call, without
    ``classes``, was taken for a later one and refused its labels as unknown."""
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 4), np.arange(60) % 2
    clf = MLPClassifier(hidden_sizes=(5,), random_state=0)
    for classes, labels, message in (([0], y * 0, "needs at least 2 classes"),
                                     ([0, 2], y, r"y has labels \[1\] that are not among")):
        with pytest.raises(ValueError, match=message):
            clf.partial_fit(X, labels, classes=classes)
        assert not hasattr(clf, "classes_") and not hasattr(clf, "n_features_in_")
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    assert clf.partial_fit(X[:, :3], y, classes=[0, 1]).n_features_in_ == 3


def test_a_partial_fit_whose_last_step_makes_the_weights_infinite_is_undone():
    """One minibatch per call, its step beyond float32 (lr * g): no later loss in the call
    found the NaN weights, and the estimator kept them, predicting NaN probabilities."""
    from mlplab.trainer import TrainingDivergedError

    rng = np.random.RandomState(0)
    X, y = rng.randn(40, 4).astype(np.float32), np.arange(40) % 2
    clf = MLPClassifier(hidden_sizes=(8,), batch_size=40, optimizer="sgd", lr=0.1,
                        random_state=0)
    clf.partial_fit(X, y, classes=[0, 1])
    before = _fitted_state(clf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # (the step's own overflow)
        with pytest.raises(TrainingDivergedError, match="the weights became NaN or infinite"):
            clf.set_params(lr=1e39).partial_fit(X, y)
    assert _fitted_state(clf) == before
    assert np.isfinite(clf.predict_proba(X)).all()


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("go_on", [
    lambda clf, X, y: clf.set_params(warm_start=True).fit(X, y),
    lambda clf, X, y: clf.partial_fit(X, y),
])
def test_a_continued_fit_that_diverges_leaves_the_network_as_it_was(go_on, optimizer):
    """A warm start or partial_fit trains the fitted network in place: one that diverged left
    its weights (and dropout streams) part-way, beside the counts and optimiser state of
    before. The optimiser's slots carried to the next partial_fit are the last call's own
    arrays, which a failed call must not have changed (it steps copies of them) either."""
    from mlplab.trainer import TrainingDivergedError

    rng = np.random.RandomState(0)
    X, y = rng.randn(80, 4).astype(np.float32), np.arange(80) % 2
    clf = MLPClassifier(hidden_sizes=(16,), dropout=0.2, max_epochs=2, batch_size=20, tol=None,
                        optimizer=optimizer, lr=0.1, random_state=0).fit(X, y)
    clf.partial_fit(X, y)  # slots carried from a partial_fit, not only from a fit
    before = _fitted_state(clf)
    slots = {k: v.copy() for k, v in clf._continue["optimizer"].items()}
    streams = [layer.rng.bit_generator.state for layer in clf.model_.layers
               if hasattr(layer, "rng")]
    with pytest.raises(TrainingDivergedError):
        go_on(clf.set_params(lr=1e30), X, y)
    assert _fitted_state(clf) == before
    assert clf._continue["optimizer"].keys() == slots.keys()
    for key, value in slots.items():
        np.testing.assert_array_equal(clf._continue["optimizer"][key], value, err_msg=key)
    assert [layer.rng.bit_generator.state for layer in clf.model_.layers
            if hasattr(layer, "rng")] == streams
    # and it continues as the estimator that never tried
    again = MLPClassifier(**{**clf.get_params(), "lr": 0.1, "warm_start": False}).fit(X, y)
    again.partial_fit(X, y)
    clf.set_params(lr=0.1).partial_fit(X, y)
    again.partial_fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), again.predict_proba(X))


def test_class_scores_that_overflow_a_float32_network_say_the_estimators_way_to_float64():
    """Inputs within float32's range can still overflow its class scores: the model's message
    said to use a float64 model (dtype=np.float64), a parameter MLPClassifier has not."""
    from mlplab.models import ScoresOverflowError

    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 4).astype(np.float32), np.arange(60) % 2
    clf = MLPClassifier(hidden_sizes=(5,), max_epochs=2, random_state=0).fit(X, y)
    big = np.full((3, 4), 3e38, np.float32)
    for predict in (clf.predict, clf.predict_proba, clf.score):
        with pytest.raises(ScoresOverflowError) as refused:
            predict(big, np.zeros(3, dtype=int)) if predict == clf.score else predict(big)
        message = str(refused.value)
        assert message.startswith("the network's class scores overflowed float32 for row 0 of X")
        assert "or train a new float64 network: fit on float64 data with warm_start=False. (If " \
            "the inputs are standardised, the weights have diverged.)" in message
        assert "dtype=" not in message


@pytest.mark.parametrize("fit_dtype, predict_dtype", [(np.float32, np.float64),
                                                       (np.float64, np.float32)])
def test_predict_hands_data_of_another_dtype_to_the_network_uncopied(fit_dtype, predict_dtype,
                                                                   monkeypatch):
    """The network casts a chunk at a time: a cast of the whole of X first (to check its range
    for the estimator's message) held a second copy of it, twice its size for float32 data and
    a float64 network."""
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 4), np.arange(60) % 2
    clf = MLPClassifier(hidden_sizes=(5,), max_epochs=2, random_state=0)
    clf.fit(X.astype(fit_dtype), y)
    given = []
    monkeypatch.setattr(clf.model_, "predict_proba", lambda data: given.append(data) or data)
    data = X.astype(predict_dtype)
    clf.predict_proba(data)
    assert given[0] is data


@pytest.mark.parametrize("go_on", ["warm_start", "partial_fit"])
def test_float64_data_beyond_a_float32_networks_range_is_named_as_such(go_on):
    """Cast first, 1e39 became an infinity (with NumPy's overflow warning) and was refused as
    data holding NaN or infinite values, to be cleaned or imputed. What to do is the
    estimator's: it has no dtype parameter, which the model's message named."""
    rng = np.random.RandomState(0)
    X, y = rng.randn(60, 4).astype(np.float32), np.arange(60) % 2
    clf = MLPClassifier(hidden_sizes=(5,), max_epochs=2, random_state=0, warm_start=True)
    clf.fit(X, y)
    wide = X.astype(np.float64)
    wide[3, 1] = 1e39
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"X has values beyond float32's range .* first at "
                                             r"row 3, column 1: 1e\+39") as refused:
            clf.fit(wide, y) if go_on == "warm_start" else clf.partial_fit(wide, y)
    assert str(refused.value).endswith(
        "which the model computes in; scale the data first, or train a new float64 network: fit "
        "on float64 data with warm_start=False.")
    assert "dtype=" not in str(refused.value)
    for predict in (clf.predict, clf.predict_proba, clf.predict_log_proba):
        with pytest.raises(ValueError) as refused_too:
            predict(wide)
        assert str(refused_too.value) == str(refused.value)


def test_early_stopping_on_few_rows_trains_every_row_each_epoch():
    """270 training rows in batches of 200: fit's epochs were one full batch (the exercise's
    N // B), so early stopping's patience of 10 epochs was 11 steps of Adam, and the restored
    best weights were near the initial ones (5% training accuracy on 3 blobs for one seed, 69%
    over ten; scikit-learn's MLPClassifier 90%)."""
    from sklearn.datasets import make_blobs
    from sklearn.neural_network import MLPClassifier as SkMLP
    from sklearn.preprocessing import StandardScaler

    X, y = make_blobs(n_samples=300, random_state=0)
    X = StandardScaler().fit_transform(X)
    ours = [MLPClassifier(random_state=s, early_stopping=True).fit(X, y) for s in range(6)]
    theirs = [SkMLP(random_state=s, early_stopping=True).fit(X, y) for s in range(6)]
    assert all(m.t_ == m.n_iter_ * 270 for m in ours)
    mean = np.mean([m.score(X, y) for m in ours])
    assert mean > np.mean([m.score(X, y) for m in theirs]) - 0.1, mean


def test_a_validation_fraction_that_leaves_no_training_row_names_itself():
    """scikit-learn's refusal spoke of a test_size the user never set."""
    with pytest.raises(ValueError, match=r"validation_fraction=0\.95 of 10 samples sets 10 "
                                         r"aside for validation, which leaves none to train"):
        MLPClassifier(early_stopping=True, validation_fraction=0.95).fit(
            np.random.RandomState(0).rand(10, 3), [0, 1] * 5)


def test_early_stopping_holds_out_a_stratified_split(digits, monkeypatch):
    """As scikit-learn's MLPClassifier: every class keeps its share in the held-out part when
    each has at least 2 samples (only the fallback for a class of one sample was tested)."""
    import sklearn.model_selection
    from sklearn.preprocessing import LabelEncoder

    X_tr, _, y_tr, _ = digits
    seen = []
    real = sklearn.model_selection.train_test_split

    def spy(*arrays, **kw):
        seen.append(kw.get("stratify"))
        return real(*arrays, **kw)

    monkeypatch.setattr(sklearn.model_selection, "train_test_split", spy)
    labels = np.array([f"c{v}" for v in y_tr[:400]])  # encoded in the fit, as 0..9
    MLPClassifier(hidden_sizes=(8,), max_epochs=2, early_stopping=True,
                  random_state=0).fit(X_tr[:400] / 16, labels)
    (stratify,) = seen
    np.testing.assert_array_equal(stratify, LabelEncoder().fit_transform(labels))


@pytest.mark.parametrize("last, warned", [(9.9, False), (10.1, True)])
def test_the_divergence_warning_is_for_a_loss_ten_times_its_first(digits, monkeypatch, last,
                                                                    warned):
    """The warning's threshold, pinned: a rise to 4e91 left it free (100 times passed too)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from mlplab import estimator

    X_tr, _, y_tr, _ = digits
    curve = iter([1.0, last])

    def on_epoch_end(self, trainer, epoch, logs):  # the epochs' mean losses, as given
        self.start = len(trainer.history.loss)
        self.epoch_loss.append(next(curve))

    monkeypatch.setattr(estimator._Convergence, "on_epoch_end", on_epoch_end)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MLPClassifier(hidden_sizes=(4,), max_epochs=2, tol=None, random_state=0).fit(
            X_tr[:200] / 16, y_tr[:200])
    said = [w for w in caught if issubclass(w.category, ConvergenceWarning)
            and "the training diverged" in str(w.message)]
    assert bool(said) is warned


def test_loss_is_the_last_epochs_loss_as_in_scikit_learn(digits):
    """scikit-learn's fitted MLPClassifier has ``loss_``, the last epoch's loss
    (``loss_curve_[-1]``), after ``fit``, a warm ``fit`` and ``partial_fit``; mlplab's had no
    ``loss_`` (AttributeError). Unfitted: no ``loss_``, as scikit-learn's."""
    from sklearn.base import clone
    from sklearn.neural_network import MLPClassifier as SkMLP

    X_tr, _, y_tr, _ = digits
    assert not hasattr(MLPClassifier(), "loss_") and not hasattr(SkMLP(), "loss_")
    clf = MLPClassifier(hidden_sizes=(8,), max_epochs=3, tol=None, random_state=0)
    assert clf.fit(X_tr, y_tr).loss_ == clf.loss_curve_[-1]
    assert clf.partial_fit(X_tr, y_tr).loss_ == clf.loss_curve_[-1]
    clf.set_params(warm_start=True, early_stopping=True, max_epochs=2).fit(X_tr, y_tr)
    assert clf.loss_ == clf.loss_curve_[-1] and isinstance(clf.loss_, float)
    assert not hasattr(clone(clf), "loss_")


def test_early_stopping_on_too_few_samples_warns_of_a_class_left_out_of_training():
    """With too few samples for a stratified split, the random one could leave a class out of
    the training part: the network never saw it, and nothing said so (scikit-learn refuses)."""
    X, y = np.eye(3), np.array(["a", "b", "c"])
    with pytest.warns(ConvergenceWarning), \
            pytest.warns(UserWarning, match=r"^early_stopping: 3 samples are too few for a "
                                         r"stratified validation split of "
                                         r"validation_fraction=0\.1, and the random one left no "
                                         r"sample of class c to train on; give more samples, or "
                                         r"set early_stopping=False\.$"):
        MLPClassifier(early_stopping=True, random_state=0, max_epochs=2, tol=None).fit(X, y)
    with warnings.catch_warnings():  # a split that holds every class: no such warning
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(early_stopping=True, random_state=0, max_epochs=2, tol=None).fit(
            np.tile(X, (10, 1)), np.tile(y, 10))


def test_early_stoppings_convergence_warning_does_not_advise_tol_none():
    """With early_stopping, the warning of a fit out of epochs advised tol=None to silence it,
    which does not: tol is the training loss's rule."""
    X, y = load_digits(return_X_y=True)
    with pytest.warns(ConvergenceWarning, match=r"validation accuracy stopped improving; raise "
                                                r"max_epochs \(or lr\) to train until it "
                                                r"does\.$") as caught:
        MLPClassifier(early_stopping=True, random_state=0, max_epochs=2, tol=None).fit(X, y)
    assert all("tol" not in str(w.message) for w in caught)


def test_early_stopping_names_a_class_of_one_sample_as_why_the_split_is_not_stratified():
    """1,000 samples with one class of a single sample: the warning said "1000 samples are too
    few for a stratified validation split", where the class of one is why."""
    rng = np.random.RandomState(0)
    X, y = rng.randn(1000, 5), np.r_[np.zeros(500, int), np.ones(499, int), [2]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.warns(UserWarning, match=r"^early_stopping: class 2 has a single sample, "
                                             r"too few for a stratified validation split"):
            MLPClassifier(early_stopping=True, random_state=2, max_epochs=2).fit(X, y)
