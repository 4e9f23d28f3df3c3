"""Every bad input through the real command line: exit 2, one clear line, no traceback, and
not one byte of the existing files changed (checksums before and after)."""

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
from naive import NUMBAMLP


def checksums(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A directory holding a finished run and a collection of bad data files."""
    root = tmp_path_factory.mktemp("bad")
    run = subprocess.run([*NUMBAMLP, "train", "--epochs", "2", "--hidden", "16", "--quiet", "--out", str(root / "run")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 64)), rng.integers(0, 3, 30)
    np.savez(root / "nan.npz", X=np.where(X > 2, np.nan, X), y=y)
    np.savez(root / "inf.npz", X=np.where(X > 2, np.inf, X), y=y)
    np.savez(root / "noy.npz", X=X)
    np.savez(root / "nanlabels.npz", X=X, y=np.where(y == 1, np.nan, y))
    np.savez(root / "fraclabels.npz", X=X, y=y + 0.5)
    np.savez(root / "mismatch.npz", X=X, y=y[:-1])
    np.savez(root / "empty.npz", X=np.empty((0, 64)), y=np.empty(0))
    np.savez(root / "oneclass.npz", X=X, y=np.zeros(30, dtype=int))
    np.savez(root / "narrow.npz", X=X[:, :5], y=y)
    np.savez(root / "rank3.npz", X=X.reshape(30, 8, 8), y=y)
    (root / "corrupt.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    (root / "cells.csv").write_text("a,b,label\n1,2,x\n3,four,y\n")
    (root / "unknown.toml").write_text("epochs = 3\nlearning_rate = 0.1\n")
    (root / "broken.toml").write_text("epochs = [\n")
    return root


class Starts(str):
    """An expected message pinned up to a tail that another library writes (tomllib's parse
    error, safetensors' header error), which is not numbamlp's to pin."""


# case: (arguments, the whole message after "Error: ")
CASES = {
    "missing data file": (["train", "--data", "missing.npz"], "data file not found: missing.npz"),
    "corrupt npz": (["train", "--data", "corrupt.npz"], "corrupt.npz is not a valid .npz archive (not a zip file)"),
    "npz without y": (["train", "--data", "noy.npz"], "noy.npz has no array 'y' (found: X)"),
    "NaN in X": (["train", "--data", "nan.npz"],
                 "nan.npz: X has 39 NaN or infinite values (first at X[1, 15], counting from 0)"),
    "Inf in X": (["train", "--data", "inf.npz"],
                 "inf.npz: X has 39 NaN or infinite values (first at X[1, 15], counting from 0); a value beyond float32's "
                 "range (3.4e38) becomes infinite too: --dtype float64 keeps it"),
    "NaN labels": (["train", "--data", "nanlabels.npz"], "nanlabels.npz: y contains NaN or infinite labels"),
    "non-integral labels": (["train", "--data", "fraclabels.npz"],
                            "fraclabels.npz: y has non-integral numeric labels: a classifier's labels are integers "
                            "or class names (numeric targets: task regression)"),
    "length mismatch": (["train", "--data", "mismatch.npz"], "mismatch.npz: X has 30 rows but y has 29 labels"),
    "no rows": (["train", "--data", "empty.npz"], "empty.npz: X is empty (shape (0, 64))"),
    "one class": (["train", "--data", "oneclass.npz"],
                  "oneclass.npz: y has a single class; classification needs at least 2"),
    "X of rank 3": (["train", "--data", "rank3.npz"], "rank3.npz: X must be 2-D (rows, features), got shape (30, 8, 8)"),
    "CSV cell": (["train", "--data", "cells.csv"], "cells.csv: column 'b' holds numbers, but 'four' in data row 1 "
                 "(counting from 0): fix or empty that cell (an empty cell is a missing value), or name the column "
                 "with --categorical b to read every value as a category"),
    "unknown config key": (["train", "--config", "unknown.toml"],
                           "invalid configuration: learning_rate: Extra inputs are not permitted"),
    "unparsable config": (["train", "--config", "broken.toml"], Starts("cannot parse config file broken.toml: ")),
    "lr 0": (["train", "--lr", "0"], "invalid configuration: --lr (optimizer.lr): Input should be greater than 0"),
    "negative lr": (["train", "--lr", "-1"],
                    "invalid configuration: --lr (optimizer.lr): Input should be greater than 0"),
    "batch size 0": (["train", "--batch-size", "0"],
                     "invalid configuration: --batch-size: Input should be greater than or equal to 1"),
    "unknown activation": (["train", "--activation", "swish"],
                           "invalid configuration: --activation (model.activation): unknown activation 'swish'; "
                           "valid activations: relu, leaky_relu, elu, sigmoid, gelu, silu, tanh"),
    "unknown optimizer": (["train", "--optimizer", "lbfgs"],
                          "invalid configuration: --optimizer (optimizer.name): "
                          "Input should be 'sgd', 'momentum', 'nesterov', 'adam' or 'adamw'"),
    "unknown backend": (["train", "--backend", "tpu"],
                        "invalid configuration: --backend: Input should be 'cpu', 'numpy', 'reference' or 'cuda'"),
    "unknown metric": (["train", "--metric", "val_auc"],
                       Starts("invalid configuration: --metric (early_stopping.metric): Input should be 'val_accuracy', ")),
    "metric of the other task": (["train", "--task", "regression", "--data", "builtin:diabetes", "--metric", "val_f1"],
                                 "invalid configuration: early_stopping: metric val_f1 does not apply to regression: "
                                 "use one of val_r2, val_mse, val_loss"),
    "F1 of two classes on ten": (["train", "--metric", "val_f1"],
                                 "early_stopping.metric val_f1 does not apply to 10 classes: use val_macro_f1"),
    "cuda without CUDA": (["train", "--backend", "cuda"],
                          "the cuda backend found no NVIDIA GPU here; use backend 'cpu'"),
    "existing run": (["train", "--out", "run"], "run already holds a run; choose another --out or pass --overwrite"),
    "eval: wrong feature count": (["eval", "run/model.safetensors", "--data", "narrow.npz"],
                                  "narrow.npz has 5 features but the model expects 64"),
    "predict: wrong feature count": (["predict", "run/model.safetensors", "--data", "narrow.npz"],
                                     "narrow.npz has 5 features but the model expects 64"),
    "eval: missing model": (["eval", "nothere.safetensors", "--data", "nan.npz"], "file not found: nothere.safetensors"),
    "predict: not a model": (["predict", "corrupt.npz", "--data", "narrow.npz"],
                             Starts("corrupt.npz is not a valid safetensors file (")),
    "predict --out onto a directory": (["predict", "run/model.safetensors", "--data", "builtin:digits", "--out", "run"],
                                       # then click's hint, which names the program as it was started
                                       Starts("Invalid value for '--out': File 'run' is a directory. (see '")),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_touches_nothing(workdir, case):
    args, message = CASES[case]
    before = checksums(workdir)
    run = subprocess.run([*NUMBAMLP, *args], capture_output=True, text=True, cwd=workdir, timeout=300)
    assert run.returncode == 2, (run.returncode, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    if isinstance(message, Starts):
        assert lines[0].startswith(f"Error: {message}"), lines[0]
    else:
        assert lines[0] == f"Error: {message}"
    assert "Traceback" not in run.stderr + run.stdout
    assert checksums(workdir) == before


def test_divergence_stops_at_the_step_and_exits_1(workdir, tmp_path):
    run = subprocess.run([*NUMBAMLP, "train", "--lr", "1e30", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert "epoch 1, step 2" in run.stderr and "lower learning rate" in run.stderr
    assert "Traceback" not in run.stderr
