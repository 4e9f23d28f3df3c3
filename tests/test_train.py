"""Training: the Trainer's loop, and `numbamlp train` from the shell."""

import os
import subprocess
import sys

import numpy as np
import pytest

from numbamlp.config import TrainConfig
from numbamlp.data import Standardizer, load_dataset, prepare, spiral
from numbamlp.trainer import Trainer

NUMBAMLP = [sys.executable, "-m", "numbamlp.cli.main"]


def test_default_train_command_reaches_97_percent_on_digits(tmp_path):
    """The README's `make train`: defaults, real subprocess, real output."""
    run = subprocess.run([*NUMBAMLP, "train"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[0].startswith("epoch  1/30  loss")
    assert len([line for line in lines if line.startswith("epoch")]) == 30
    summary = lines[-2]
    accuracy = float(summary.split()[2])
    assert accuracy >= 0.97, summary
    assert "450 test rows" in summary
    assert lines[-1].startswith("run directory: runs/")
    assert len(list((tmp_path / "runs").iterdir())) == 1


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_reduced_budget_still_reaches_97_percent(backend, tmp_path, cli):
    result = cli.invoke("train", "--quiet", "--epochs", "15", "--backend", backend, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert float(result.output.split()[2]) >= 0.97


@pytest.mark.parametrize(
    "args,message",
    [
        (["--activation", "swish"], "--activation (model.activation)"),
        (["--epochs", "-1"], "epochs"),
        (["--lr", "0"], "--lr (optimizer.lr)"),
        (["--batch-size", "0"], "--batch-size"),
        (["--backend", "gpu"], "backend"),
        (["--data", "nope.npz"], "data file not found: nope.npz"),
        (["--data", "builtin:mnist"], "unknown built-in data set"),
        (["--hidden", "12,x"], "comma-separated integers"),
    ],
)
def test_bad_flags_give_one_clear_line_and_exit_2(args, message, tmp_path):
    run = subprocess.run([*NUMBAMLP, "train", *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert len([line for line in run.stderr.splitlines() if line.startswith("Error")]) == 1


def test_last_short_batch_is_trained_not_dropped():
    X, y = spiral(n_per_class=11)  # 33 rows, batch 10: batches of 10, 10, 10, 3
    trainer = Trainer({"epochs": 1, "batch_size": 10, "dtype": "float64"})
    seen = []
    step = trainer.train_step
    trainer.train_step = lambda Xb, yb, *rest: seen.append(len(yb)) or step(Xb, yb, *rest)
    trainer.fit(X, y)
    assert seen == [10, 10, 10, 3]


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_training_decreases_the_loss(activation):
    X, y = spiral()
    trainer = Trainer({"epochs": 40, "batch_size": 16, "model": {"hidden": [32], "activation": activation},
                       "optimizer": {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0}})
    history = trainer.fit(X, y)
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert trainer.evaluate(X, y)["accuracy"] > 0.8


def test_backends_train_to_the_same_weights():
    """float64: the cpu and numpy backends and the reference path agree after real steps."""
    X, y = spiral(n_per_class=20)
    weights = {}
    for backend in ("cpu", "numpy", "reference"):
        trainer = Trainer({"backend": backend, "dtype": "float64", "epochs": 3, "batch_size": 8,
                           "model": {"hidden": [6, 5], "activation": "silu"}})
        trainer.fit(X, y)
        weights[backend] = trainer.model.flat_params
    np.testing.assert_allclose(weights["cpu"], weights["reference"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(weights["numpy"], weights["reference"], rtol=1e-9, atol=1e-12)


def test_string_labels_come_back_as_given():
    X, y = spiral(n_per_class=30)
    names = np.array(["red", "green", "blue"])[y]
    trainer = Trainer({"epochs": 30, "model": {"hidden": [32]}})
    trainer.fit(X, names)
    assert set(trainer.predict(X)) <= {"red", "green", "blue"}
    assert trainer.evaluate(X, names)["accuracy"] > 0.7


def test_prepare_splits_stratified_and_standardises_on_train_only():
    splits = prepare(TrainConfig().data, seed=0)
    assert len(splits.y_test) == 450 and len(splits.y_train) == 1347
    np.testing.assert_allclose(splits.X_train.mean(axis=0), 0, atol=1e-12)
    raw = load_dataset("builtin:digits")
    assert raw.X.shape == (1797, 64)
    # stratified: every class keeps its share of the test rows, to within one row
    assert np.abs(np.bincount(splits.y_test) - 0.25 * np.bincount(raw.y)).max() <= 1


def test_standardizer_leaves_constant_features_finite():
    scaler = Standardizer.fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
    assert np.isfinite(scaler.transform([[2.0, 5.0]])).all()


def test_npz_data_is_read_without_pickle(tmp_path):
    X, y = spiral(n_per_class=20)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    assert load_dataset(str(tmp_path / "d.npz")).X.shape == (60, 2)
    np.savez(tmp_path / "obj.npz", X=np.array([object()] * 3, dtype=object), y=y[:3])
    with pytest.raises(ValueError, match="holds object arrays"):
        load_dataset(str(tmp_path / "obj.npz"))


def test_help_is_fast_because_numba_is_not_imported():
    code = "import sys; from numbamlp.cli.main import main; import numbamlp; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert out.stdout.strip() == "False"
