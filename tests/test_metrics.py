"""numbamlp.metrics' classification metrics against scikit-learn's implementations (the
independent oracle), on random and tie-heavy data, two classes and more, and the edge cases:
a class absent, one class present, all scores equal, probabilities of 0 and 1."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as sk
from sklearn.exceptions import UndefinedMetricWarning

from numbamlp.metrics import (HIGHER_IS_BETTER, METRICS, TASK_METRICS, THRESHOLD_METRICS, average_precision,
                              best_threshold, binary_average_precision,
                              binary_roc_auc, check_metric_applies, classification_metrics, confusion_matrix,
                              cross_entropies_and_probabilities, log_loss, roc_auc, stacked_classification_metrics)

EXACT = dict(rel=1e-12, abs=1e-12)  # (the same sums in another order)


def probabilities(rng, rows: int, classes: int, ties: bool = False) -> np.ndarray:
    """Random probabilities (rows, classes), rows summing to 1; ``ties``: from scores on a
    coarse grid, so that many rows share a probability."""
    scores = rng.normal(size=(rows, classes))
    if ties:
        scores = np.round(scores)
    P = np.exp(scores)
    return P / P.sum(axis=1, keepdims=True)


def quietly(function, *args, **kwargs):
    """A scikit-learn metric with its warnings (a class absent) silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def ours(y, P, n_classes):
    """classification_metrics, refusing to print a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return classification_metrics(y, P, n_classes)


def sklearn_metrics(y, P, n_classes) -> dict:
    """What classification_metrics should give, from scikit-learn (the OvR metrics over the
    classes present, each a binary score of scikit-learn's)."""
    predicted = np.argmax(P, axis=1)
    present = np.unique(y)
    if n_classes == 2:
        auc, ap = sk.roc_auc_score(y, P[:, 1]), sk.average_precision_score(y, P[:, 1])
        f1 = {"f1": sk.f1_score(y, predicted, pos_label=1, zero_division=0)}
    else:
        auc = np.mean([sk.roc_auc_score(y == k, P[:, k]) for k in present])
        ap = np.mean([sk.average_precision_score(y == k, P[:, k]) for k in present])
        f1 = {"macro_f1": sk.f1_score(y, predicted, average="macro", zero_division=0)}
    return {"accuracy": sk.accuracy_score(y, predicted),
            "balanced_accuracy": quietly(sk.balanced_accuracy_score, y, predicted), **f1,
            "roc_auc": auc, "average_precision": ap,
            "log_loss": sk.log_loss(y, P, labels=np.arange(n_classes))}


@pytest.mark.parametrize("n_classes", [2, 3, 7])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "tie-heavy"])
@pytest.mark.parametrize("seed", range(4))
def test_every_metric_equals_scikit_learns(n_classes, ties, seed):
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(20, 300))
    y = rng.integers(0, n_classes, rows)
    y[:n_classes] = np.arange(n_classes)  # (every class present)
    P = probabilities(rng, rows, n_classes, ties)
    got, expected = ours(y, P, n_classes), sklearn_metrics(y, P, n_classes)
    assert list(got) == ["accuracy", "balanced_accuracy", "f1" if n_classes == 2 else "macro_f1", "roc_auc",
                         "average_precision", "log_loss"]
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, **EXACT), name
    if n_classes > 2:  # every class present: scikit-learn's own multi-class forms
        assert got["roc_auc"] == pytest.approx(sk.roc_auc_score(y, P, multi_class="ovr"), **EXACT)
        assert got["average_precision"] == pytest.approx(sk.average_precision_score(y, P), **EXACT)


@pytest.mark.parametrize("seed", range(6))
def test_binary_scores_with_many_ties_equal_scikit_learns(seed):
    rng = np.random.default_rng(seed)
    positive = rng.random(200) < rng.uniform(0.05, 0.5)
    positive[:2] = [True, False]
    scores = rng.integers(0, 5, 200) / 4.0  # five distinct values: every threshold a tie
    assert binary_roc_auc(positive, scores) == pytest.approx(sk.roc_auc_score(positive, scores), **EXACT)
    assert binary_average_precision(positive, scores) == pytest.approx(sk.average_precision_score(positive, scores),
                                                                       **EXACT)


def test_all_scores_equal():
    y = np.array([0, 1, 1, 0, 1])
    P = np.full((5, 2), 0.5)
    got = ours(y, P, 2)
    assert got["roc_auc"] == sk.roc_auc_score(y, P[:, 1]) == 0.5
    assert got["average_precision"] == pytest.approx(sk.average_precision_score(y, P[:, 1])) == pytest.approx(3 / 5)
    assert got["log_loss"] == pytest.approx(np.log(2))
    three = np.full((6, 3), 1 / 3)
    assert ours(np.array([0, 1, 2, 0, 1, 2]), three, 3)["roc_auc"] == 0.5


def test_a_class_absent_is_left_out_of_the_one_vs_rest_means():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 60)  # class 3 of 4 never appears
    P = probabilities(rng, 60, 4)
    got = ours(y, P, 4)
    expected = sklearn_metrics(y, P, 4)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, **EXACT), name
    assert got["roc_auc"] == pytest.approx(np.mean([sk.roc_auc_score(y == k, P[:, k]) for k in range(3)]), **EXACT)


def test_a_binary_class_absent_leaves_the_ranking_metrics_undefined():
    P = probabilities(np.random.default_rng(2), 8, 2)
    for label in (0, 1):
        got = ours(np.full(8, label), P, 2)
        assert got["roc_auc"] is None and got["average_precision"] is None
        assert got["accuracy"] == pytest.approx(np.mean(np.argmax(P, axis=1) == label))
        assert got["log_loss"] == pytest.approx(sk.log_loss(np.full(8, label), P, labels=[0, 1]), **EXACT)
        assert got["balanced_accuracy"] == pytest.approx(quietly(sk.balanced_accuracy_score, np.full(8, label),
                                                                 np.argmax(P, axis=1)), **EXACT)
        assert got["f1"] == pytest.approx(quietly(sk.f1_score, np.full(8, label), np.argmax(P, axis=1),
                                                  zero_division=0), **EXACT)
    with pytest.warns(UndefinedMetricWarning, match="Only one class"):  # (scikit-learn: undefined too)
        assert np.isnan(sk.roc_auc_score(np.zeros(8), P[:, 1]))


def test_one_class_of_many_present_and_no_rows():
    P = probabilities(np.random.default_rng(3), 5, 3)
    got = ours(np.full(5, 2), P, 3)
    assert got["roc_auc"] is None and got["average_precision"] is None and got["accuracy"] is not None
    empty = ours(np.zeros(0, int), np.zeros((0, 3)), 3)
    assert set(empty) == {"accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "average_precision", "log_loss"}
    assert all(value is None for value in empty.values())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_loss_clips_certain_probabilities_as_scikit_learn_does(dtype):
    y = np.array([0, 1, 2, 1])
    P = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5], [0.0, 1.0, 0.0]], dtype=dtype)
    assert np.isfinite(log_loss(y, P))
    assert log_loss(y, P) == pytest.approx(sk.log_loss(y, P, labels=[0, 1, 2]), rel=1e-6)


def test_the_confusion_matrix_is_scikit_learns():
    rng = np.random.default_rng(4)
    y, predicted = rng.integers(0, 4, 100), rng.integers(0, 4, 100)
    np.testing.assert_array_equal(confusion_matrix(y, predicted, 5), sk.confusion_matrix(y, predicted,
                                                                                         labels=range(5)))


def test_roc_auc_and_average_precision_of_more_classes_mean_the_classes_present():
    y = np.array([0, 0, 1, 1, 1])
    P = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.8, 0.1]])
    assert roc_auc(y, P) == pytest.approx(np.mean([sk.roc_auc_score(y == k, P[:, k]) for k in (0, 1)]))
    assert average_precision(y, P) == pytest.approx(
        np.mean([sk.average_precision_score(y == k, P[:, k]) for k in (0, 1)]))


@pytest.mark.parametrize("n_classes", [2, 4])
def test_a_stacks_metrics_are_each_models_alone_to_the_bit(n_classes):
    """A stack's validation rows are scored for all its members at once: each member's metrics
    are the very numbers it gets alone, and the loss the textbook's."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, n_classes, 150)
    S = np.round(rng.normal(size=(5, 150, n_classes)), 1).astype(np.float32)  # (ties too)
    losses, P = cross_entropies_and_probabilities(S, y)
    np.testing.assert_array_equal(losses, [cross_entropies_and_probabilities(S[m:m + 1], y)[0][0] for m in range(5)])
    shifted = S.astype(np.float64) - S.max(axis=2, keepdims=True)  # (the loss, as the textbook writes it)
    textbook = (np.log(np.exp(shifted).sum(axis=2)) - np.take_along_axis(shifted, y[None, :, None], 2)[..., 0]).mean(1)
    np.testing.assert_allclose(losses, textbook, rtol=1e-12)
    together = stacked_classification_metrics(y, P, n_classes)
    assert together == [classification_metrics(y, P[m], n_classes) for m in range(5)]
    assert together == [classification_metrics(y, cross_entropies_and_probabilities(S[m:m + 1], y)[1][0], n_classes)
                        for m in range(5)]


def test_the_probabilities_must_match_the_labels():
    with pytest.raises(ValueError, match=r"probabilities must be \(3, 2\)"):
        classification_metrics(np.array([0, 1, 0]), np.ones((3, 3)) / 3, 2)


def test_the_metric_table_and_which_metrics_apply():
    assert set(METRICS) == {m for metrics in TASK_METRICS.values() for m in metrics}
    assert not HIGHER_IS_BETTER["val_loss"] and HIGHER_IS_BETTER["val_roc_auc"]
    check_metric_applies("val_roc_auc", "classification", 5)
    check_metric_applies("val_f1", "classification", 2)
    with pytest.raises(ValueError, match="metric val_r2 does not apply to classification"):
        check_metric_applies("val_r2", "classification")
    with pytest.raises(ValueError, match="metric val_f1 does not apply to 3 classes: use val_macro_f1"):
        check_metric_applies("val_f1", "classification", 3)
    with pytest.raises(ValueError, match="use val_f1"):
        check_metric_applies("val_macro_f1", "classification", 2)


# ---------------------------------------------------------------- a binary classifier's decision threshold
@pytest.mark.parametrize("metric", THRESHOLD_METRICS)
def test_the_best_threshold_beats_every_other_cut(metric):
    """best_threshold against scikit-learn's score of every distinct probability as the cut."""
    rng = np.random.default_rng(8)
    y = (rng.random(300) < 0.1).astype(int)
    positive = np.round(np.clip(0.3 * y + rng.normal(0.3, 0.15, 300), 0, 1), 2)  # (ties)
    score = {"f1": lambda cut: sk.f1_score(y, positive >= cut),
             "balanced_accuracy": lambda cut: sk.balanced_accuracy_score(y, positive >= cut)}[metric]
    cuts = np.unique(positive)
    scores = {cut: score(cut) for cut in cuts}
    best = max(scores.values())
    chosen = best_threshold(y, positive, metric)
    highest = max(cut for cut, value in scores.items() if value >= best - 1e-12)  # (the highest of equals)
    lower = cuts[cuts < highest]
    assert chosen == (highest + (lower.max() if len(lower) else 0.0)) / 2  # (midway: no row sits on it)
    assert np.array_equal(positive >= chosen, positive >= highest) and not (positive == chosen).any()
    assert best_threshold(np.zeros(5, int), positive[:5], metric) == 0.5  # (one class: no cut to choose)


def test_a_trained_threshold_is_chosen_on_the_validation_rows_and_kept(tmp_path, cli):
    from numbamlp import Trainer, load_model, save_model

    rng = np.random.default_rng(2)
    X = rng.normal(size=(1200, 4))
    y = np.where(X[:, 0] + 0.8 * X[:, 1] + rng.normal(0, 1.0, 1200) > 2.0, "rare", "common")
    X_val, y_val = X[1000:], y[1000:]
    trainer = Trainer({"epochs": 4, "model": {"hidden": [8]}, "threshold": "f1"})
    trainer.fit(X[:1000], y[:1000], X_val, y_val)
    model = trainer.model
    positive = model.predict_proba(X_val)[:, 1]  # (classes sorted: "rare" is the second)
    assert model.threshold == best_threshold(y_val == "rare", positive, "f1") and model.threshold < 0.5
    assert not (positive == model.threshold).any()
    assert np.array_equal(model.predict(X_val), np.where(positive >= model.threshold, "rare", "common"))
    assert np.array_equal(trainer.predict(X_val), model.predict(X_val))  # (the Trainer's predict follows it too)
    save_model(model, tmp_path / "m.safetensors")
    assert load_model(tmp_path / "m.safetensors").threshold == model.threshold
    np.savetxt(tmp_path / "rows.csv", X_val, delimiter=",")
    code, output = cli("predict", tmp_path / "m.safetensors", "--data", tmp_path / "rows.csv")  # (and the CLI's)
    assert code == 0, output
    assert output.splitlines()[1:] == model.predict(X_val).tolist()
    fixed_warm = Trainer({"epochs": 1, "model": {"hidden": [8]}})  # (a fit without a threshold keeps no old one)
    fixed_warm.fit(X[:1000], y[:1000])
    fixed_warm.model.threshold = 0.9
    fixed_warm.fit(X[:1000], y[:1000], warm_start=True)
    assert fixed_warm.model.threshold is None
    fixed = Trainer({"epochs": 1, "model": {"hidden": [8]}, "threshold": 0.3})
    fixed.fit(X[:1000], y[:1000])
    assert fixed.model.threshold == 0.3
    with pytest.raises(ValueError, match="threshold is for binary classifiers; this one has 3 classes"):
        Trainer({"epochs": 1, "threshold": "f1"}).fit(X[:300], rng.integers(0, 3, 300))
