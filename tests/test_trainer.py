"""Trainer features: optimizers, schedules, early stopping, weights, validation, pickling."""

import os
import pickle

import numpy as np
import pytest
from naive import ONE_EPOCH
from naive import REPORTS_RNG as rng
from naive import REPORTS_X as X
from naive import REPORTS_Y as y

from numbamlp import MLP, StackTrainer
from numbamlp.config import ScheduleConfig, TrainConfig
from numbamlp.data import spiral
from numbamlp.optim import learning_rate
from numbamlp.trainer import GradientMismatch, Trainer

OPTIMIZERS = {"sgd": 0.1, "momentum": 0.05, "nesterov": 0.05, "adam": 0.01, "adamw": 0.01}


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_decreases_the_loss(name, backend):
    X, y = spiral()
    trainer = Trainer({"backend": backend, "epochs": 25, "batch_size": 32, "model": {"hidden": [32]},
                       "optimizer": {"name": name, "lr": OPTIMIZERS[name], "weight_decay": 1e-4}})
    trainer.build(2, 3)
    initial = trainer.evaluate(X, y)["loss"]
    trainer.fit(X, y)
    assert trainer.evaluate(X, y)["loss"] < 0.6 * initial


def test_schedules():
    constant = ScheduleConfig()
    assert [learning_rate(constant, 0.1, e, 5) for e in range(5)] == [0.1] * 5
    step = ScheduleConfig(name="step", step_size=2, gamma=0.5)
    assert [learning_rate(step, 0.1, e, 6) for e in range(6)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    cosine = ScheduleConfig(name="cosine", min_lr=0.0)
    rates = [learning_rate(cosine, 0.1, e, 4) for e in range(4)]
    assert rates[0] == 0.1 and rates == sorted(rates, reverse=True) and rates[2] == pytest.approx(0.05)
    warm = ScheduleConfig(warmup_epochs=3)
    assert [learning_rate(warm, 0.1, e, 6) for e in range(5)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])


def test_epoch_metrics_record_the_scheduled_rate():
    X, y = spiral(n_per_class=20)
    trainer = Trainer({"epochs": 4, "schedule": {"name": "step", "step_size": 2, "gamma": 0.5},
                       "optimizer": {"lr": 0.08}})
    history = trainer.fit(X, y)
    assert [m["lr"] for m in history] == pytest.approx([0.08, 0.08, 0.04, 0.04])


def test_early_stopping_restores_the_best_weights():
    X, y = spiral(n_per_class=60, noise=0.6)
    rng = np.random.default_rng(0)
    X_val, y_val = X[::3] + rng.normal(0, 0.3, size=X[::3].shape), y[::3]
    snapshots = {}

    class Snapshot:
        def on_epoch_end(self, epoch, metrics):
            snapshots[epoch] = (metrics["val_loss"], trainer.model.flat_params.copy())

    trainer = Trainer({"epochs": 300, "batch_size": 8, "model": {"hidden": [64, 64]},
                       "optimizer": {"lr": 0.1, "weight_decay": 0.0}, "early_stopping": {"patience": 5}})
    trainer.fit(X, y, X_val, y_val, callbacks=[Snapshot()])
    assert trainer.stopped_early and trainer.epoch < 300
    best_epoch = min(snapshots, key=lambda e: snapshots[e][0])
    assert trainer.epoch == best_epoch + 5
    np.testing.assert_array_equal(trainer.model.flat_params, snapshots[best_epoch][1])
    assert trainer.evaluate(X_val, y_val)["loss"] == pytest.approx(snapshots[best_epoch][0], rel=1e-6)


def test_early_stopping_by_roc_auc_keeps_the_epoch_of_the_best_auc():
    """early_stopping.metric val_roc_auc: the best epoch is the one of the highest validation
    ROC AUC (here not the one of the lowest loss), its weights are restored, and their AUC
    is scikit-learn's of the model's probabilities."""
    from sklearn.metrics import roc_auc_score

    X, y = spiral(n_per_class=60, n_classes=2, noise=0.6, seed=3)
    X_val, y_val = X[::3] + np.random.default_rng(0).normal(0, 0.3, size=X[::3].shape), y[::3]
    snapshots = {}

    class Snapshot:
        def on_epoch_end(self, epoch, metrics):
            snapshots[epoch] = (metrics["val_roc_auc"], metrics["val_loss"], trainer.model.flat_params.copy())

    trainer = Trainer({"epochs": 300, "batch_size": 8, "model": {"hidden": [64, 64]},
                       "optimizer": {"lr": 0.1, "weight_decay": 0.0},
                       "early_stopping": {"patience": 5, "metric": "val_roc_auc"}})
    trainer.fit(X, y, X_val, y_val, callbacks=[Snapshot()])
    best_auc = max(snapshots, key=lambda e: snapshots[e][0])  # (the first of equals: a tie is no improvement)
    assert best_auc != min(snapshots, key=lambda e: snapshots[e][1])  # (val_loss would keep another epoch)
    assert trainer.stopped_early and trainer.best_epoch == best_auc and trainer.epoch == best_auc + 5
    np.testing.assert_array_equal(trainer.model.flat_params, snapshots[best_auc][2])
    probabilities = trainer.model.predict_proba(X_val)
    assert roc_auc_score(y_val, probabilities[:, 1]) == pytest.approx(snapshots[best_auc][0], rel=1e-6)
    assert trainer.evaluate(X_val, y_val)["roc_auc"] == snapshots[best_auc][0]


def test_early_stopping_by_a_metric_the_data_lacks_is_refused_before_training():
    X, y = spiral(n_per_class=20)  # (three classes: val_macro_f1, not val_f1)
    with pytest.raises(ValueError, match="early_stopping.metric val_f1 does not apply to 3 classes: use val_macro_f1"):
        Trainer({"epochs": 2, "early_stopping": {"patience": 2, "metric": "val_f1"}}).fit(X, y)


def test_early_stopping_without_validation_data_holds_some_out():
    X, y = spiral(n_per_class=30)
    trainer = Trainer({"epochs": 5, "early_stopping": {"patience": 2}})
    history = trainer.fit(X, y)
    assert "val_loss" in history[0]


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_held_out_rows_are_left_in_place_and_the_rest_train_as_a_copy_of_them_would(task):
    """Early stopping's own hold-out trains on the other rows of X by index: the same bits as
    fitting on those rows copied out, with the held-out rows as validation data, and no copy
    of X made (tracemalloc: the fit's peak stays far below X's size)."""
    import tracemalloc

    from numbamlp.data import holdout_split

    rng = np.random.default_rng(0)
    X = rng.normal(size=(10000, 200)).astype(np.float32)
    y = np.arange(len(X)) % 3 if task == "classification" else X[:, :2].sum(axis=1)
    config = {"task": task, "epochs": 2, "batch_size": 256, "model": {"hidden": [4]}, "seed": 3,
              "early_stopping": {"patience": 5}, "data": {"val_fraction": 0.1}}
    trainer = Trainer(config)
    Trainer(config).fit(X[:600], y[:600])  # (compiled kernels and the plan's first allocations out of the way)
    tracemalloc.start()
    try:
        trainer.fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.3 * X.nbytes, f"fit allocated {peak / X.nbytes:.2f} x X"  # (X_val, 0.1 x, is a copy)
    rows, val_rows, _, _ = holdout_split(np.arange(len(y)), y, 0.1, 3, task)
    copied = Trainer(config)
    copied.fit(X[rows], y[rows], X[val_rows], y[val_rows])
    assert np.array_equal(trainer.model.flat_params, copied.model.flat_params)
    assert [epoch["val_loss"] for epoch in trainer.history] == [epoch["val_loss"] for epoch in copied.history]


def test_sample_weights_equal_repeated_rows_in_one_batch():
    """With one full batch per epoch, weight 2 on a row is that row twice."""
    X, y = spiral(n_per_class=10)
    weights = np.ones(len(y))
    weights[:5] = 2.0
    X_rep, y_rep = np.concatenate([X, X[:5]]), np.concatenate([y, y[:5]])
    common = {"dtype": "float64", "epochs": 5, "batch_size": 100, "model": {"hidden": [8]}}
    weighted, repeated = Trainer(common), Trainer(common)
    weighted.fit(X, y, sample_weight=weights)
    repeated.fit(X_rep, y_rep)
    np.testing.assert_allclose(weighted.model.flat_params, repeated.model.flat_params, rtol=1e-10, atol=1e-12)


def test_class_weights_balanced_and_explicit():
    X, y = spiral(n_per_class=30)
    keep = np.r_[0:30, 30:40, 60:90]  # class 1 is rare
    X, y = X[keep], y[keep]
    balanced = Trainer({"epochs": 1, "class_weight": "balanced"})
    balanced.fit(X, y)
    w = balanced.row_weights(y, None)
    assert w[y == 1][0] == pytest.approx(len(y) / (3 * 10)) and w[y == 0][0] == pytest.approx(len(y) / (3 * 30))
    explicit = Trainer({"epochs": 1, "class_weight": {"1": 5.0}})
    explicit.fit(X, y)
    assert set(explicit.row_weights(y, None)) == {1.0, 5.0}
    with pytest.raises(ValueError, match="unknown classes: 7"):
        Trainer({"epochs": 1, "class_weight": {"7": 2.0}}).fit(X, y)


def test_validate_passes_on_good_kernels_and_stops_on_bad(monkeypatch):
    X, y = spiral(n_per_class=20)
    good = Trainer({"epochs": 1, "validate": True, "model": {"hidden": [8]}})
    good.fit(X, y)
    assert 0 <= good.validation_error < 1e-4
    from numbamlp.kernels import get_backend

    monkeypatch.setattr(get_backend("numpy"), "relu_backward", lambda dA, dH, A, alpha: np.copyto(dA, dH))
    bad = Trainer({"epochs": 1, "validate": True, "backend": "numpy", "model": {"hidden": [8]}})
    with pytest.raises(GradientMismatch, match="differ from the reference path"):
        bad.fit(X, y)


def test_same_seed_same_weights_and_trainer_pickles():
    X, y = spiral(n_per_class=20)
    a, b = Trainer({"epochs": 3, "seed": 5}), Trainer({"epochs": 3, "seed": 5})
    a.fit(X, y)
    b.fit(X, y)
    np.testing.assert_array_equal(a.model.flat_params, b.model.flat_params)
    copy = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(copy.predict(X), a.predict(X))
    copy.model.params[0][0][0, 0] = 123.0  # views still share the flat buffer after unpickling
    assert 123.0 in copy.model.flat_params


def test_fit_rejects_a_single_class_and_mismatched_lengths():
    X, y = spiral(n_per_class=5)
    with pytest.raises(ValueError, match="1 class"):
        Trainer({"epochs": 1}).fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="rows but y has"):
        Trainer({"epochs": 1}).fit(X, y[:-1])


def test_config_object_is_the_source_of_truth():
    trainer = Trainer(TrainConfig(epochs=2), batch_size=7)
    assert trainer.config.batch_size == 7 and trainer.config.epochs == 2


@pytest.mark.skipif(os.cpu_count() < 2, reason="needs 2 CPU threads")
def test_scores_are_the_same_bits_whatever_numpys_blas_threads():
    """A sweep's member scored on a Dask worker (BLAS on one thread) got another test loss
    than in-process (two) where OpenBLAS's kernels round by thread count
    (OPENBLAS_CORETYPE=Haswell): scores run on one BLAS thread wherever they are computed."""
    from threadpoolctl import threadpool_limits

    from numbamlp.data import load_dataset

    digits = load_dataset("builtin:digits")
    trainer = Trainer({"epochs": 1, "model": {"hidden": [512, 512]}})
    trainer.fit(digits.X / 16.0, digits.y)
    scores = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            scores.append((trainer.scores(digits.X / 16.0), trainer.model.scores(digits.X / 16.0)))
    for one, two in zip(*scores):
        np.testing.assert_array_equal(one, two)


def test_one_blas_thread_holds_until_the_last_thread_inside_leaves():
    """threadpoolctl's limits are process-wide: a predict leaving its block restored two BLAS
    threads under a fit still scoring in another thread."""
    from threadpoolctl import threadpool_info

    from numbamlp.model import one_blas_thread

    def threads():
        return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}

    before = threads()
    first, second = one_blas_thread(), one_blas_thread()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert threads() == {1}
    second.__exit__(None, None, None)
    assert threads() == before


@pytest.mark.slow
@pytest.mark.skipif(os.cpu_count() < 2, reason="needs 2 CPU threads")
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_same_seed_gives_bit_identical_weights_across_runs_and_thread_counts(tmp_path, optimizer):
    """Fresh processes on 1 and 2 threads (and 2 again) end with the same bits.  The widths
    make the forward and backward GEMMs multi-block (tests/test_gemm.py), so Numba's threads
    really share the work on 2 threads."""
    import subprocess
    import sys

    from numbamlp.kernels.cpu_backend import gemm_blocks

    assert gemm_blocks(256, 512, 64) > 1  # dW of the second layer, (256, 64) @ (64, 512)
    code = (
        "import sys, numpy as np\n"
        "from numbamlp.trainer import Trainer\n"
        "from numbamlp.data import load_dataset\n"
        "d = load_dataset('builtin:digits')\n"
        "t = Trainer({'epochs': 2, 'threads': int(sys.argv[1]), 'batch_size': 64,\n"
        "             'model': {'hidden': [512, 256]}, 'optimizer': {'name': sys.argv[2]}})\n"
        "t.fit(d.X / 16.0, d.y)\n"
        "np.save(sys.argv[3], t.model.flat_params)\n"
    )
    results = []
    for run, threads in enumerate([1, 2, 2]):
        path = tmp_path / f"{run}.npy"
        subprocess.run([sys.executable, "-c", code, str(threads), optimizer, str(path)], check=True)
        results.append(np.load(path).tobytes())
    assert results[0] == results[1] == results[2]


def test_a_trainer_predicts_from_several_threads_at_once():
    """Trainer.scores scored into the training workspace, one for every thread: predictions
    asked from two threads at once could hold each other's rows."""
    from naive import answers_differ_in_threads

    X, y = spiral()
    trainer = Trainer({"epochs": 1, "model": {"hidden": [32]}, "seed": 0})
    trainer.fit(X, y)
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(rows, 2)) for rows in (1, 7, 64, 1, 200, 3)]
    assert answers_differ_in_threads(trainer.scores, batches, threads=4, calls=300) == []


# ---------------------------------------------------------------- labels, classes and validation data, checked first
def test_a_model_with_more_outputs_than_classes_is_refused_before_training():
    """Reported 2026-11-30 by a new user (first look); fixed in 32f489a."""
    trainer = Trainer({"epochs": 1, "model": {"layers": [3, 6, 5]}})
    with pytest.raises(ValueError, match="ends with 5 outputs but the data has 3 classes"):
        trainer.fit(X, y)
    assert trainer.epoch == 0


def test_step_before_fit_takes_class_indices_and_fit_keeps_them():
    """Reported 2026-11-30 by a new user (first look); fixed in 32f489a."""
    labels = np.array([3, 7, 9])[rng.integers(0, 3, 40)]
    trainer = Trainer(ONE_EPOCH)
    trainer.step(X[:8], labels[:8])  # builds one output per index 0..9
    assert list(trainer.classes_) == list(range(10))
    trainer.fit(X, labels)  # the same indices, not re-encoded as 0, 1, 2
    predictions = trainer.predict(X)
    assert set(predictions) <= set(range(10))
    assert trainer.evaluate(X, labels)["accuracy"] == np.mean(predictions == labels)


@pytest.mark.parametrize("labels, phrase", [
    (np.array(list("abcdefgh")), "integer class indices"),
    (np.array([0, 1, np.nan, 2, 0, 1, 2, 0]), "NaN or non-integral"),
    (np.array([-1] * 8), r"class indices must lie in \[0, 65536\)"),
    (np.array([0, 1, 2, 2_000_000_000, 0, 1, 2, 0]), "at most 65,536"),
])
def test_step_before_fit_says_what_is_wrong_with_its_labels(labels, phrase):
    """Reported 2026-11-30 by a new user (first look); fixed in 32f489a."""
    for make in (lambda: Trainer(), lambda: StackTrainer([{}, {"seed": 1}])):
        with pytest.raises(ValueError, match=phrase):
            make().step(X[:8], labels)


def test_predict_before_fit_says_to_fit_first():
    """Reported 2026-11-30 by a new user (first look); fixed in 32f489a."""
    for call in (lambda t: t.predict(X), lambda t: t.evaluate(X, y)):
        with pytest.raises(ValueError, match="no model yet: call fit"):
            call(Trainer())


def test_nan_labels_are_named_as_nan():
    """Reported 2026-11-30 by a new user (first look); fixed in 32f489a."""
    labels = y.astype(float)
    labels[5] = np.nan
    for trainer in (Trainer(ONE_EPOCH), StackTrainer([ONE_EPOCH, {**ONE_EPOCH, "seed": 1}])):
        with pytest.raises(ValueError, match="y contains NaN"):
            trainer.fit(X, labels)


def test_labels_that_cannot_be_ordered_are_named():
    """Reported 2026-11-30 by a new user (first look); fixed in 32f489a."""
    labels = np.array([1, "a"] * 20, dtype=object)
    with pytest.raises(ValueError, match="cannot be ordered together"):
        Trainer(ONE_EPOCH).fit(X, labels)


def test_a_column_of_labels_is_refused_by_fit_and_evaluate():
    """Reported 2026-11-30 by a new user (first look); fixed in 32f489a."""
    with pytest.raises(ValueError, match="y must be a vector of 40 labels, got shape"):
        StackTrainer([ONE_EPOCH, {**ONE_EPOCH, "seed": 1}]).fit(X, y[:, None])
    trainer = Trainer(ONE_EPOCH)
    trainer.fit(X, y)
    with pytest.raises(ValueError, match="y must be a vector of 40 labels"):
        trainer.evaluate(X, y[:, None])
    with pytest.raises(ValueError, match="X has 40 rows but y has 10 labels"):
        trainer.evaluate(X, y[:10])


def test_unseen_labels_are_listed_with_the_classes():
    """Reported 2026-11-30 by a new user (first look); fixed in 32f489a."""
    trainer = Trainer(ONE_EPOCH)
    trainer.fit(X, y)
    with pytest.raises(ValueError, match=r"not seen in training: 7 \(the classes: 0, 1, 2\)"):
        trainer.evaluate(X[:2], [0, 7])
    with pytest.raises(ValueError, match="not seen in training: 'cat'"):
        trainer.evaluate(X[:2], ["cat", "cat"])


@pytest.mark.parametrize("make", [lambda: Trainer(ONE_EPOCH),
                                  lambda: StackTrainer([ONE_EPOCH, {**ONE_EPOCH, "seed": 1}])])
@pytest.mark.parametrize("X_val, y_val, phrase", [
    (X[:10, :2], y[:10], "X_val has 2 features but the model expects 3"),
    (X[:10], y[:5], "X_val has 10 rows but y_val has 5 labels"),
    (X[:10], np.full(10, 9), "y_val holds labels that were not seen in training: 9"),
    (X[:10], None, "X_val and y_val go together"),
    (None, y[:10], "X_val and y_val go together"),
])
def test_validation_data_is_checked_before_the_first_epoch(make, X_val, y_val, phrase):
    """Reported 2026-11-30 by a new user (first look); fixed in 32f489a."""
    trainer = make()
    with pytest.raises(ValueError, match=phrase):
        trainer.fit(X, y, X_val=X_val, y_val=y_val)
    trainers = trainer.trainers if isinstance(trainer, StackTrainer) else [trainer]
    assert all(member.epoch == 0 for member in trainers)
    for member in trainers:  # nothing trained: each model as its seed made it
        assert np.array_equal(member.model.flat_params, MLP([3, 6, 3], seed=member.config.seed).flat_params)


def test_state_before_any_fit_says_so():
    """Reported 2026-11-30 by a new user (third look); fixed in 1b210a4."""
    with pytest.raises(ValueError, match="nothing to checkpoint yet"):
        Trainer().state()


# ---------------------------------------------------------------- refits, warm fits, refused fits and progress
def test_a_refused_fit_keeps_a_trainers_model():
    """Reported 2026-11-30 by a new user (third look); fixed in b418d6f."""
    trainer = Trainer(ONE_EPOCH)
    trainer.fit(X, y)
    before = trainer.predict(X)
    with pytest.raises(ValueError, match="sample_weight"):
        trainer.fit(X, y, sample_weight=np.ones(3))
    assert np.array_equal(trainer.predict(X), before) and trainer.epoch == 1


def test_continue_with_keeps_the_network_and_takes_a_dict():
    """Reported 2026-11-30 by a new user (third look); fixed in b418d6f."""
    trainer = Trainer(ONE_EPOCH)
    trainer.fit(X, y)
    with pytest.raises(ValueError, match="optimizer.name is 'momentum' here, the new config has 'adam'"):
        trainer.continue_with({**ONE_EPOCH, "epochs": 3, "optimizer": {"name": "adam"}})
    with pytest.raises(ValueError, match="model is"):
        trainer.continue_with({**ONE_EPOCH, "epochs": 3, "model": {"hidden": [32]}})
    trainer.continue_with({**ONE_EPOCH, "epochs": 3})
    trainer.fit(X, y, warm_start=True)
    assert trainer.epoch == 3


def test_a_warm_fit_after_a_requested_stop_goes_on():
    """Reported 2026-11-30 by a new user (third look); fixed in 1b210a4."""
    trainer = Trainer({"epochs": 4, "batch_size": 8, "model": {"hidden": [6]}})

    class StopAtTwo:
        def on_epoch_end(self, epoch, metrics):
            if epoch == 2:
                trainer.request_stop("asked")

    from numbamlp.trainer import TrainingInterrupted

    with pytest.raises(TrainingInterrupted):
        trainer.fit(X, y, callbacks=[StopAtTwo()])
    trainer.fit(X, y, warm_start=True)
    assert trainer.epoch == 4


def test_a_second_fit_trains_again_from_scratch():
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 4)), np.arange(50) % 2
    X2, y2 = rng.normal(size=(40, 4)), np.arange(40) % 2
    config = {"epochs": 3, "model": {"hidden": [8]}}
    trainer = Trainer(config)
    trainer.fit(X, y)
    history = trainer.fit(X2, y2)
    fresh = Trainer(config)
    fresh.fit(X2, y2)
    assert len(history) == 3 and [m["loss"] for m in history] == [m["loss"] for m in fresh.history]
    assert np.array_equal(trainer.model.flat_params, fresh.model.flat_params)
    # warm_start continues instead: three more epochs on top
    trainer.config = trainer.config.model_copy(update={"epochs": 6})
    assert len(trainer.fit(X2, y2, warm_start=True)) == 6 and trainer.epoch == 6


def test_the_trainer_reports_progress_within_an_epoch(monkeypatch):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    import numbamlp.stack

    monkeypatch.setattr(numbamlp.stack, "PROGRESS_INTERVAL_S", 0.0)
    reports = []

    class Watch:
        def on_progress(self, epoch, rows_done, rows_total, loss):
            reports.append((epoch, rows_done, rows_total))

        def on_epoch_end(self, epoch, metrics):
            reports.append(("end", epoch))

    rng = np.random.default_rng(0)
    Trainer({"epochs": 2, "batch_size": 10, "model": {"hidden": [4]}}).fit(
        rng.normal(size=(35, 3)), np.arange(35) % 2, callbacks=[Watch()])
    assert reports == [(1, 10, 35), (1, 20, 35), (1, 30, 35), (1, 35, 35), ("end", 1),
                       (2, 10, 35), (2, 20, 35), (2, 30, 35), (2, 35, 35), ("end", 2)]


# ---------------------------------------------------------------- optimizers and weights
@pytest.mark.parametrize("masking", ["sample_weight", "class_weight"])
def test_a_minibatch_whose_rows_all_weigh_nothing_is_skipped_not_called_a_divergence(masking):
    """Reported 2026-11-30 by a new user (third look); fixed in 78a21c1.

    A masking sample_weight (or a class weight of 0) left minibatches of weight 0: the
    mean's 0/0 was reported as 'training diverged, try a lower learning rate'."""
    from numbamlp import MLPClassifier

    features = np.random.default_rng(1).normal(size=(100, 3))
    labels = (features[:, 0] > 0).astype(int)
    if masking == "sample_weight":
        weights, class_weight = np.r_[np.zeros(90), np.ones(10)], None
        labels[90:] = np.arange(10) % 2  # (both classes among the weighed rows)
    else:
        weights, class_weight = None, {1: 0.0}
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, batch_size=8, class_weight=class_weight,
                        random_state=0).fit(features, labels, sample_weight=weights)
    assert np.isfinite(clf.predict_proba(features)).all() and clf.n_iter_ == 3
    trainers = StackTrainer([{"epochs": 2, "model": {"hidden": [8]}, "batch_size": 8, "data": {"val_fraction": 0}},
                             {"epochs": 2, "model": {"hidden": [8]}, "batch_size": 8, "data": {"val_fraction": 0},
                              "seed": 1}])
    trainers.fit(features, labels, sample_weight=np.r_[np.zeros(90), np.ones(10)])
    assert [status for status, _ in trainers.statuses] == ["done", "done"]


def test_balanced_class_weight_counts_the_classes_with_the_sample_weights():
    """Reported 2026-11-30 by a new user (third look); fixed in 78a21c1.

    Weight 3 means 'this row three times' with class_weight='balanced' too, as in
    scikit-learn's compute_class_weight."""
    from sklearn.utils.class_weight import compute_class_weight

    weights = np.where(y == 1, 3.0, 1.0)
    trainer = Trainer({"epochs": 1, "class_weight": "balanced"})
    trainer.classes_ = np.unique(y)
    trainer.model = MLP([3, 4, 3])
    ours = trainer.row_weights(y, weights)
    theirs = compute_class_weight("balanced", classes=np.unique(y), y=y, sample_weight=weights)[y] * weights
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)  # (the model's float32)


def test_sgd_is_plain_and_momentum_is_not():
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    sgd = TrainConfig.model_validate({"optimizer": {"name": "sgd"}})
    assert sgd.optimizer.momentum == 0.0
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 4)), np.arange(64) % 3
    weights = {}
    for name in ("sgd", "momentum"):
        trainer = Trainer({"epochs": 3, "model": {"hidden": [8]}, "optimizer": {"name": name}})
        trainer.fit(X, y)
        weights[name] = trainer.model.flat_params.copy()
    assert not np.array_equal(weights["sgd"], weights["momentum"])


def test_a_checkpoint_taken_as_early_stopping_ends_resumes_to_the_best_weights():
    """A checkpoint written at the end of the epoch where early stopping stops (before the
    best weights go back, as a run's checkpoint is) holds that epoch's weights beside the
    best: a warm fit from it, with nothing left to train, puts the best back, so a resumed
    run ends bit-identical to the uninterrupted one.  (Found in review, 2026-12-07.)"""
    import copy

    X, y = spiral(n_per_class=40)
    config = {"epochs": 60, "batch_size": 16, "dtype": "float64", "model": {"hidden": [16]},
              "optimizer": {"lr": 0.5, "momentum": 0.9}, "early_stopping": {"patience": 2}}
    straight, kept = Trainer(config), {}

    class KeepState:
        def on_epoch_end(self, epoch, metrics):
            arrays, meta = straight.state()
            kept.update(arrays={k: np.array(v) for k, v in arrays.items()}, meta=copy.deepcopy(meta))

    straight.fit(X, y, callbacks=[KeepState()])
    assert straight.stopped_early and straight.best_epoch < straight.epoch
    assert not np.array_equal(kept["arrays"]["params"], straight.model.flat_params)  # the last epoch's
    resumed = Trainer(config)
    resumed.build(X.shape[1], 3)
    resumed.restore(kept["arrays"], kept["meta"], straight.classes_)
    resumed.fit(X, y, warm_start=True)
    np.testing.assert_array_equal(resumed.model.flat_params, straight.model.flat_params)
