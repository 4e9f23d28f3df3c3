"""What trying numbamlp as a new user found on 2026-11-30, from Python, the shell and the
service: each test reproduces one report and holds the fix.

Python's errors: a ValueError naming what is wrong, before any work, never an internal
IndexError or numpy's message.
"""

import numpy as np
import pytest

from numbamlp import MLP, StackTrainer, load_model, sweep
from numbamlp.config import TrainConfig
from numbamlp.io import ModelFileError, save_model
from numbamlp.trainer import Trainer

rng = np.random.default_rng(0)
X = rng.normal(size=(40, 3))
y = rng.integers(0, 3, 40)
ONE_EPOCH = {"epochs": 1, "model": {"hidden": [6]}}


# ---------------------------------------------------------------- outputs and classes
def test_a_model_with_more_outputs_than_classes_is_refused_before_training():
    trainer = Trainer({"epochs": 1, "model": {"layers": [3, 6, 5]}})
    with pytest.raises(ValueError, match="ends with 5 outputs but the data has 3 classes"):
        trainer.fit(X, y)
    assert trainer.epoch == 0


def test_a_model_file_with_fewer_labels_than_outputs_is_refused(tmp_path):
    model = MLP([3, 6, 5])
    model.classes = np.array(["a", "b", "c"])  # (as an earlier numbamlp could write it)
    save_model(model, tmp_path / "m.safetensors")
    with pytest.raises(ModelFileError, match="class labels do not match 5 outputs"):
        load_model(tmp_path / "m.safetensors")


def test_step_before_fit_takes_class_indices_and_fit_keeps_them():
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
    for make in (lambda: Trainer(), lambda: StackTrainer([{}, {"seed": 1}])):
        with pytest.raises(ValueError, match=phrase):
            make().step(X[:8], labels)


def test_predict_before_fit_says_to_fit_first():
    for call in (lambda t: t.predict(X), lambda t: t.evaluate(X, y)):
        with pytest.raises(ValueError, match="no model yet: call fit"):
            call(Trainer())


# ---------------------------------------------------------------- labels
def test_nan_labels_are_named_as_nan():
    labels = y.astype(float)
    labels[5] = np.nan
    for trainer in (Trainer(ONE_EPOCH), StackTrainer([ONE_EPOCH, {**ONE_EPOCH, "seed": 1}])):
        with pytest.raises(ValueError, match="y contains NaN"):
            trainer.fit(X, labels)


def test_labels_that_cannot_be_ordered_are_named():
    labels = np.array([1, "a"] * 20, dtype=object)
    with pytest.raises(ValueError, match="cannot be ordered together"):
        Trainer(ONE_EPOCH).fit(X, labels)


def test_a_column_of_labels_is_refused_by_fit_and_evaluate():
    with pytest.raises(ValueError, match="y must be a vector of 40 labels, got shape"):
        StackTrainer([ONE_EPOCH, {**ONE_EPOCH, "seed": 1}]).fit(X, y[:, None])
    trainer = Trainer(ONE_EPOCH)
    trainer.fit(X, y)
    with pytest.raises(ValueError, match="y must be a vector of 40 labels"):
        trainer.evaluate(X, y[:, None])
    with pytest.raises(ValueError, match="X has 40 rows but y has 10 labels"):
        trainer.evaluate(X, y[:10])


def test_unseen_labels_are_listed_with_the_classes():
    trainer = Trainer(ONE_EPOCH)
    trainer.fit(X, y)
    with pytest.raises(ValueError, match=r"not seen in training: 7 \(the classes: 0, 1, 2\)"):
        trainer.evaluate(X[:2], [0, 7])
    with pytest.raises(ValueError, match="not seen in training: 'cat'"):
        trainer.evaluate(X[:2], ["cat", "cat"])


def test_regression_says_how_many_targets_it_needs():
    trainer = Trainer({**ONE_EPOCH, "task": "regression"})
    trainer.fit(X, X[:, 0])
    with pytest.raises(ValueError, match="y must hold 40 targets"):
        trainer.evaluate(X, X[:10, 0])


# ---------------------------------------------------------------- validation data, before any epoch
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
    trainer = make()
    with pytest.raises(ValueError, match=phrase):
        trainer.fit(X, y, X_val=X_val, y_val=y_val)
    trainers = trainer.trainers if isinstance(trainer, StackTrainer) else [trainer]
    assert all(member.epoch == 0 for member in trainers)
    for member in trainers:  # nothing trained: each model as its seed made it
        assert np.array_equal(member.model.flat_params, MLP([3, 6, 3], seed=member.config.seed).flat_params)


def test_a_warm_stack_refuses_other_features_by_name():
    stack = StackTrainer([ONE_EPOCH, {**ONE_EPOCH, "seed": 1}])
    stack.fit(X, y)
    with pytest.raises(ValueError, match="X has 2 features but the model expects 3"):
        stack.fit(X[:, :2], y, warm_start=True)


# ---------------------------------------------------------------- settings
def test_class_weights_take_integer_labels_and_refuse_negative_weights():
    assert TrainConfig(class_weight={0: 2}).class_weight == {"0": 2.0}
    for bad, phrase in (({"0": -2.0}, "finite number >= 0"), ({"0": float("inf")}, "finite number >= 0"),
                        ("often", "must be 'balanced' or a mapping")):
        with pytest.raises(ValueError, match=phrase):
            TrainConfig(class_weight=bad)


def test_layer_sizes_and_seeds_must_be_whole_numbers():
    with pytest.raises(ValueError, match="whole numbers"):
        MLP([3, 4.5, 2])
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        MLP([3, 4, 2], seed=-1)


def test_saving_into_a_missing_folder_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no folder {tmp_path / 'nowhere'}"):
        MLP([3, 4, 2]).save(tmp_path / "nowhere" / "m.safetensors")
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        MLP([3, 4, 2]).save(tmp_path)


# ---------------------------------------------------------------- sweeps from Python
def test_a_python_sweep_takes_ranges_written_as_text():
    result = sweep(ONE_EPOCH, {"optimizer.lr": "loguniform:0.001:0.1"}, data=(X, y), random=3)
    lrs = [row["optimizer.lr"] for row in result.table]
    assert len(set(lrs)) == 3 and all(0.001 <= lr <= 0.1 for lr in lrs)
    with pytest.raises(ValueError, match="loguniform needs LOW > 0"):
        sweep(ONE_EPOCH, {"optimizer.lr": "loguniform:0:0.1"}, data=(X, y), random=3)


def test_a_python_sweep_says_data_is_a_pair():
    with pytest.raises(ValueError, match=r"data must be a pair \(X, y\)"):
        sweep(ONE_EPOCH, {"seed": [0, 1]}, data=X)
