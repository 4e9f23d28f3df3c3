"""Model files and checkpoints: round trips, labels, and refusal of anything that is not ours."""

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from naive import assert_close
from numbamlp import MLP, load_model
from numbamlp.data import Standardizer, spiral
from numbamlp.io import ModelFileError, atomic_write_bytes, read_safetensors, save_model, write_safetensors
from numbamlp.trainer import Trainer


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh"])
def test_save_load_round_trip_gives_identical_predictions(tmp_path, dtype, activation):
    model = MLP([5, 7, 4, 3], activation=activation, dtype=dtype, seed=2)
    model.classes = np.array(["a", "b", "c"])
    model.input_transform = Standardizer(np.arange(5.0), np.full(5, 2.0))
    save_model(model, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    X = np.random.default_rng(0).normal(size=(9, 5))
    assert loaded.layers == model.layers and loaded.activation == activation and loaded.dtype == model.dtype
    np.testing.assert_array_equal(loaded.flat_params, model.flat_params)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert set(loaded.predict(X)) <= {"a", "b", "c"}
    assert loaded.metadata["versions"]["numba"] and loaded.metadata["activation_alpha"] == model_alpha(activation)


def test_load_model_takes_a_run_directory_as_the_commands_do(tmp_path):
    """load_model(DIR) reads DIR/model.safetensors; a directory without one says which file
    is missing (it said "file not found: DIR")."""
    model = MLP([4, 3, 2], seed=1)
    (tmp_path / "run").mkdir()
    save_model(model, tmp_path / "run" / "model.safetensors")
    np.testing.assert_array_equal(load_model(tmp_path / "run").flat_params, model.flat_params)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match=r"file not found: .*empty/model\.safetensors"):
        load_model(tmp_path / "empty")


def model_alpha(activation):
    return {"relu": 0.0, "leaky_relu": 0.1, "tanh": 0.0}[activation]


def test_io_writes_every_model_file_and_the_model_module_does_not_import_it(tmp_path):
    """numbamlp.io depends on numbamlp.model, not the reverse (a model is written with
    save_model, never by itself): save_model writes the same bytes each time, and importing
    the model leaves io unimported."""
    import subprocess
    import sys

    model = MLP([3, 4, 2], seed=1)
    save_model(model, tmp_path / "a.safetensors")
    save_model(model, tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    alone = subprocess.run([sys.executable, "-c", "import sys, numbamlp.model; print('numbamlp.io' in sys.modules)"],
                           capture_output=True, text=True, check=True)
    assert alone.stdout.strip() == "False"


def test_trained_string_labels_round_trip(tmp_path):
    X, y = spiral(n_per_class=30)
    names = np.array(["red", "green", "blue"])[y]
    trainer = Trainer({"epochs": 20, "model": {"hidden": [16]}})
    trainer.fit(X, names)
    save_model(trainer.model, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded.predict(X), trainer.predict(X))


def test_integer_labels_that_are_not_0_to_C_round_trip(tmp_path):
    X, y = spiral(n_per_class=30)
    labels = np.array([10, 20, 30])[y]
    trainer = Trainer({"epochs": 20, "model": {"hidden": [16]}})
    trainer.fit(X, labels)
    save_model(trainer.model, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    assert set(loaded.predict(X)) <= {10, 20, 30}
    np.testing.assert_array_equal(loaded.predict(X), trainer.predict(X))


def test_a_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for name in ("evil.safetensors", "evil.npz"):
        (tmp_path / name).write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ModelFileError, match="not a valid safetensors file"):
        load_model(tmp_path / "evil.safetensors")
    from numbamlp.data import DataError, load_dataset

    with pytest.raises(DataError, match="not a valid .npz archive"):
        load_dataset(str(tmp_path / "evil.npz"))
    assert not marker.exists()


def test_truncated_and_foreign_files_are_reported(tmp_path):
    save_model(MLP([3, 4, 2]), tmp_path / "m.safetensors")
    blob = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ModelFileError, match="not a valid safetensors"):
        load_model(tmp_path / "cut.safetensors")
    write_safetensors(tmp_path / "other.safetensors", {"x": np.zeros(2)}, {"format": "something-else"})
    with pytest.raises(ModelFileError, match="not a numbamlp-model file"):
        load_model(tmp_path / "other.safetensors")


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda meta, t: meta.update(activation="swish"), "unknown activation"),
        (lambda meta, t: meta.update(layers=[3, 5, 2]), "layers.0.W should be"),
        (lambda meta, t: meta.update(dtype="float16"), "unsupported dtype"),
        (lambda meta, t: meta.update(layers="3,4,2"), "invalid layer sizes"),
        (lambda meta, t: t.pop("layers.1.b"), "layers.1.b should be"),
        (lambda meta, t: meta.update(classes=["a", "b", "c"]), "class labels do not match"),
    ],
)
def test_tampered_metadata_is_caught_before_use(tmp_path, change, message):
    save_model(MLP([3, 4, 2]), tmp_path / "m.safetensors")
    tensors, meta = read_safetensors(tmp_path / "m.safetensors", "numbamlp-model")
    change(meta, tensors)
    write_safetensors(tmp_path / "t.safetensors", tensors, meta)
    with pytest.raises(ModelFileError, match=message):
        load_model(tmp_path / "t.safetensors")


def cast(tensors, names, dtype):
    for name in names:
        tensors[name] = tensors[name].astype(dtype)


LAYER_TENSORS = ["layers.0.W", "layers.0.b", "layers.1.W", "layers.1.b"]


@pytest.mark.parametrize(
    "dtype,change,message",
    [
        # tensors of the other float width under the metadata's dtype, every one or a single one
        ("float32", lambda t: cast(t, LAYER_TENSORS, np.float64),
         "tensor layers.0.W should be float32 (4, 3), found float64 (4, 3)"),
        ("float64", lambda t: cast(t, LAYER_TENSORS, np.float32),
         "tensor layers.0.W should be float64 (4, 3), found float32 (4, 3)"),
        ("float32", lambda t: cast(t, ["layers.1.b"], np.float64),
         "tensor layers.1.b should be float32 (2,), found float64 (2,)"),
        ("float64", lambda t: cast(t, ["layers.1.W"], np.float32),
         "tensor layers.1.W should be float64 (2, 4), found float32 (2, 4)"),
        # the input transform is float64 whatever the model's dtype
        ("float32", lambda t: cast(t, ["input_transform.mean"], np.float32),
         "tensor input_transform.mean should be float64 (3,), found float32 (3,)"),
        ("float64", lambda t: cast(t, ["input_transform.scale"], np.float32),
         "tensor input_transform.scale should be float64 (3,), found float32 (3,)"),
        ("float64", lambda t: t.update({"input_transform.scale": np.ones(4)}),
         "tensor input_transform.scale should be float64 (3,), found float64 (4,)"),
        ("float32", lambda t: t.pop("input_transform.mean"),
         "tensor input_transform.mean should be float64 (3,), found missing"),
        # tensors the format does not name
        ("float32", lambda t: t.update({"layers.2.W": np.zeros((2, 2), np.float32)}),
         "unexpected tensors layers.2.W for a model with layers [3, 4, 2]"),
        ("float64", lambda t: t.update({"x": np.zeros(1), "input_transform.bias": np.zeros(3)}),
         "unexpected tensors input_transform.bias, x for a model with layers [3, 4, 2]"),
    ],
)
def test_every_tensor_is_checked_against_the_metadata(tmp_path, dtype, change, message):
    model = MLP([3, 4, 2], dtype=dtype, seed=1)
    model.input_transform = Standardizer(np.arange(3.0), np.full(3, 2.0))
    save_model(model, tmp_path / "m.safetensors")
    tensors, meta = read_safetensors(tmp_path / "m.safetensors", "numbamlp-model")
    assert meta["dtype"] == dtype and tensors["layers.0.W"].dtype == dtype
    assert tensors["input_transform.mean"].dtype == np.float64
    change(tensors)
    write_safetensors(tmp_path / "t.safetensors", tensors, meta)
    with pytest.raises(ModelFileError, match=re.escape(message)):
        load_model(tmp_path / "t.safetensors")


def test_metadata_that_drops_layers_whose_weights_are_still_there_is_refused(tmp_path):
    """Cutting the last layer from the metadata would otherwise load a different, smaller model."""
    save_model(MLP([3, 4, 4, 2], seed=1), tmp_path / "m.safetensors")
    tensors, meta = read_safetensors(tmp_path / "m.safetensors", "numbamlp-model")
    meta["layers"] = [3, 4, 4]
    write_safetensors(tmp_path / "t.safetensors", tensors, meta)
    with pytest.raises(ModelFileError, match=re.escape("unexpected tensors layers.2.W, layers.2.b")):
        load_model(tmp_path / "t.safetensors")


def test_model_file_holds_json_metadata_and_no_pickle(tmp_path):
    save_model(MLP([3, 4, 2], activation="gelu"), tmp_path / "m.safetensors", config={"epochs": 3})
    blob = (tmp_path / "m.safetensors").read_bytes()
    header_len = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + header_len])
    meta = json.loads(header["__metadata__"]["numbamlp"])
    assert meta["activation"] == "gelu" and meta["config"] == {"epochs": 3} and meta["layers"] == [3, 4, 2]
    # atomic_write_bytes writes .NAME.tmp-PID and renames it: nothing of it may be left
    assert not (tmp_path / f".m.safetensors.tmp-{os.getpid()}").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_a_failed_rename_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    atomic_write_bytes(target, b"old")

    def refuse(src, dst):
        assert Path(src) == tmp_path / f".model.safetensors.tmp-{os.getpid()}"  # the name checked above
        assert Path(src).read_bytes() == b"new"
        raise OSError("disk said no")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk said no"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_temporaries_of_dead_writers_are_cleaned_and_live_ones_kept(tmp_path):
    """A kill -9 mid-write leaves `.NAME.tmp-PID`; the next write of NAME removes it, but
    never the temporary of a writer that is still running."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    target = tmp_path / "model.safetensors"
    stale = tmp_path / f".model.safetensors.tmp-{dead_pid}"
    live = tmp_path / f".model.safetensors.tmp-{os.getppid()}"
    other = tmp_path / f".summary.json.tmp-{dead_pid}"
    for path in (stale, live, other):
        path.write_bytes(b"half a file")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert not stale.exists()
    assert live.exists() and other.exists()  # a running writer's file; another target's


@pytest.mark.parametrize("tamper,message", [
    ({"layers.0.W": np.nan}, "tensor layers.0.W holds NaN or infinite values"),
    ({"layers.1.b": np.inf}, "tensor layers.1.b holds NaN or infinite values"),
    ({"input_transform.scale": 0.0}, "tensor input_transform.scale must be positive"),
])
def test_non_finite_weights_and_a_zero_scale_are_refused(tmp_path, tamper, message):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    model = MLP([3, 4, 2], seed=0)
    model.input_transform = Standardizer(np.zeros(3), np.ones(3))
    save_model(model, tmp_path / "m.safetensors")
    with safe_open(str(tmp_path / "m.safetensors"), framework="np") as f:
        metadata = f.metadata()
    tensors = load_file(tmp_path / "m.safetensors")
    for name, value in tamper.items():
        tensors[name] = tensors[name].copy()
        tensors[name].flat[0] = value
    save_file(tensors, tmp_path / "m.safetensors", metadata=metadata)
    with pytest.raises(ModelFileError, match=message):
        load_model(tmp_path / "m.safetensors")


# ---------------------------------------------------------------- model files: labels, and where they are written
def test_a_model_file_with_fewer_labels_than_outputs_is_refused(tmp_path):
    """Reported 2026-11-30 by a new user (first look); fixed in 32f489a."""
    model = MLP([3, 6, 5])
    model.classes = np.array(["a", "b", "c"])  # (as an earlier numbamlp could write it)
    save_model(model, tmp_path / "m.safetensors")
    with pytest.raises(ModelFileError, match="class labels do not match 5 outputs"):
        load_model(tmp_path / "m.safetensors")


def test_saving_into_a_missing_folder_names_the_folder(tmp_path):
    """Reported 2026-11-30 by a new user (first look); fixed in 32f489a."""
    with pytest.raises(FileNotFoundError, match=f"no folder {tmp_path / 'nowhere'}"):
        save_model(MLP([3, 4, 2]), tmp_path / "nowhere" / "m.safetensors")
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        save_model(MLP([3, 4, 2]), tmp_path)


# ---------------------------------------------------------------- a regressor's round trip
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("outputs", [1, 2])
def test_a_regressors_predictions_are_the_same_after_save_and_load(tmp_path, dtype, outputs):
    """A regressor's file carries its input and target standardisation (fitted on the
    training rows): load_model's predictions are the fitted model's, bit for bit, in the
    targets' own units.  The round trips above compare a classifier's outputs or weights;
    a target transform read back from the wrong tensors passed them."""
    rng = np.random.default_rng(3)
    X = rng.normal(5.0, 3.0, size=(80, 4))
    Y = X @ rng.normal(size=(4, outputs)) * 40.0 + np.arange(1, outputs + 1) * 1000.0  # (far from mean 0, scale 1)
    scaler = Standardizer.fit(X)
    trainer = Trainer({"task": "regression", "epochs": 3, "dtype": dtype, "model": {"hidden": [8]}})
    trainer.fit(scaler.transform(X), Y[:, 0] if outputs == 1 else Y)
    model = trainer.model
    model.input_transform = scaler  # (as numbamlp train gives a model its training split's: Splits.attach_to)
    assert model.target_transform is not None
    before = model.predict(X)
    assert before.shape == ((80,) if outputs == 1 else (80, outputs))
    save_model(model, tmp_path / "r.safetensors")
    loaded = load_model(tmp_path / "r.safetensors")
    np.testing.assert_array_equal(loaded.predict(X), before)
    assert_close(loaded.predict(X), trainer.predict(scaler.transform(X)), dtype, "the trainer's own predictions")
    assert loaded.task == "regression" and loaded.layers == [4, 8, outputs]
