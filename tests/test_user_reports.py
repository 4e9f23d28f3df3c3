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


# ---------------------------------------------------------------- the command line
def cli(*args, cwd=None):
    """numbamlp in click's runner: (exit code, output)."""
    from click.testing import CliRunner

    from numbamlp.cli.main import main

    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def write_csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "".join(",".join(str(v) for v in row) + "\n" for row in rows))
    return path


FEW = ["--epochs", "1", "--hidden", "8", "--quiet"]


def labelled_in_the_middle(tmp_path):
    """A CSV of 60 rows: features a, b, c with the label column between a and b."""
    values = np.random.default_rng(7).normal(size=(60, 3))  # (its own generator: the same file in any test order)
    return write_csv(tmp_path / "mid.csv", ["a", "label", "b", "c"],
                     [[f"{p:.4f}", int(p > 0), f"{q:.4f}", f"{r:.4f}"] for p, q, r in values])


def test_predict_skips_the_label_column_the_model_was_trained_with(tmp_path):
    data = labelled_in_the_middle(tmp_path)
    assert cli("train", "--data", data, "--label-column", "label", "--out", tmp_path / "run", *FEW)[0] == 0
    code, default = cli("predict", tmp_path / "run", "--data", data)
    assert code == 0, default
    assert default == cli("predict", tmp_path / "run", "--data", data, "--label-column", "label")[1]
    # a file of two features and that label column is one feature short, not three features:
    # the model knows its features by name, and says which one the file lacks
    short = write_csv(tmp_path / "short.csv", ["a", "b", "label"], [[0.1, 0.2, 0], [0.3, 0.4, 1]])
    code, output = cli("predict", tmp_path / "run", "--data", short)
    assert code == 2 and "has no column 'c', which the model was trained with" in output, output


def test_too_few_rows_for_the_held_out_splits_is_said_before_training(tmp_path):
    two = write_csv(tmp_path / "two.csv", ["a", "label"], [[1, 0], [2, 1]])
    code, output = cli("train", "--data", two, "--out", tmp_path / "run", *FEW)
    assert code == 2 and "too few to hold out a test split" in output
    four = write_csv(tmp_path / "four.csv", ["a", "label"], [[1, 0], [2, 1], [3, 0], [4, 1]])
    code, output = cli("train", "--data", four, "--val-fraction", "0.1", "--out", tmp_path / "run", *FEW)
    assert code == 2 and "too few to hold out a validation split" in output
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="too few to hold out a validation split for early stopping"):
        Trainer({"epochs": 1, "early_stopping": {"patience": 2}}).fit(X[:2], [0, 1])


def test_a_run_names_its_data_by_absolute_path_and_notices_when_it_changed(tmp_path, monkeypatch):
    data = labelled_in_the_middle(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert cli("train", "--data", "mid.csv", "--label-column", "label", "--out", "run", *FEW)[0] == 0
    monkeypatch.chdir("/")
    code, output = cli("eval", tmp_path / "run")
    assert code == 0 and "rows: the test rows" in output, output
    data.write_text("".join(data.read_text().splitlines(keepends=True)[:31]))  # the file cut to 30 rows
    code, output = cli("eval", tmp_path / "run")
    assert code == 2 and "changed since it ran" in output and "give --data" in output
    code, output = cli("train", "--resume", tmp_path / "run", "--epochs", "2")
    assert code == 2 and "resuming would train on other rows" in output


def test_overwrite_replaces_the_old_run_rather_than_mixing_with_it(tmp_path):
    run = tmp_path / "run"
    assert cli("train", "--data", "builtin:iris", "--out", run, *FEW)[0] == 0
    assert (run / "summary.json").exists()
    code, output = cli("train", "--data", "builtin:iris", "--lr", "1e30", "--out", run, "--overwrite", *FEW)
    assert code == 1 and "diverged" in output
    assert not any((run / name).exists() for name in ("summary.json", "model.safetensors", "metrics.jsonl"))


def test_infinite_settings_are_bad_input():
    code, output = cli("train", "--data", "builtin:iris", "--lr", "inf", *FEW)
    assert code == 2 and "--lr (optimizer.lr): Input should be a finite number" in output


def test_a_sweep_does_not_write_over_files_in_its_directory(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.csv").write_text("my,results\n")
    code, output = cli("sweep", "--data", "builtin:iris", "--grid", "lr=0.1,0.2", "--out", out, *FEW)
    assert code == 2 and "already holds results.csv" in output
    assert (out / "results.csv").read_text() == "my,results\n"
    assert cli("train", "--data", "builtin:iris", "--out", tmp_path / "run", *FEW)[0] == 0
    code, output = cli("sweep", "--data", "builtin:iris", "--grid", "lr=0.1,0.2", "--out", tmp_path / "run", *FEW)
    assert code == 2 and "already holds summary.json, config.json" in output


def test_a_sweep_without_a_finished_member_exits_1(tmp_path):
    code, output = cli("sweep", "--data", "builtin:iris", "--grid", "lr=1e30", "--out", tmp_path / "s", *FEW)
    assert code == 1 and "no member finished" in output


def test_plot_keeps_an_existing_default_image(tmp_path):
    pytest.importorskip("matplotlib")
    assert cli("train", "--data", "builtin:iris", "--out", tmp_path / "run", *FEW)[0] == 0
    (tmp_path / "run" / "curves.png").write_text("mine")
    code, output = cli("plot", tmp_path / "run")
    assert code == 2 and "exists; choose another name or pass --overwrite" in output
    assert (tmp_path / "run" / "curves.png").read_text() == "mine"
    assert cli("plot", tmp_path / "run", "--overwrite")[0] == 0


@pytest.mark.parametrize("args, phrase", [
    (["gradcheck", "--seed", "-1"], "--seed"),
    (["train", "--class-weight", "often", "--quiet"], "'--class-weight': expected 'balanced', label=weight pairs"),
    (["serve", "--port", "99999"], "--port"),
    (["serve", "--max-request-mb", "-1"], "--max-request-mb"),
    (["jobs", "--url", "notaurl", "list"], "--url: 'notaurl' is not an http:// or https:// address"),
    (["train", "--hidden", "4,,4", "--quiet"], "--hidden"),
    (["sweep", "--grid", "lr=0.1,", "--quiet"], "has an empty value"),
])
def test_bad_options_name_themselves(args, phrase):
    code, output = cli(*args)
    assert code == 2 and phrase in output, output


# ---------------------------------------------------------------- the estimator's default
def test_the_estimators_default_trains_on_unscaled_features():
    """Digits' raw pixels (0-16): SGD with momentum at 0.05, the old default, scored 0.19;
    the default is now scikit-learn's Adam at 1e-3."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from numbamlp import MLPClassifier

    X_digits, y_digits = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X_digits, y_digits, stratify=y_digits, random_state=0)
    assert MLPClassifier(random_state=0).fit(X_train, y_train).score(X_test, y_test) > 0.95


def test_a_reader_that_leaves_early_does_not_stop_the_run(tmp_path):
    """`numbamlp train | head -1`: the pipe closes after the first line; the run goes on to
    its end, writes its directory and exits 0, with nothing on stderr."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "numbamlp.cli.main", "train", "--data", "builtin:iris",
                                "--epochs", "5", "--hidden", "8", "--out", str(tmp_path / "run")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().startswith("epoch 1/5")
    process.stdout.close()  # as head does
    stderr = process.stderr.read()
    assert process.wait(timeout=300) == 0, stderr
    assert stderr == ""
    assert (tmp_path / "run" / "summary.json").exists() and (tmp_path / "run" / "model.safetensors").exists()


# ---------------------------------------------------------------- sweeps, regression, exports (the second look)
def test_a_sweep_resumed_on_changed_data_is_refused_and_its_members_know_their_data(tmp_path, monkeypatch):
    import json

    data = labelled_in_the_middle(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, output = cli("sweep", "--data", "mid.csv", "--label-column", "label", "--grid", "seed=0,1",
                       "--out", "s", *FEW)
    assert code == 0, output
    plan = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert plan["base"]["data"]["train"] == str(data)  # absolute: a resume from elsewhere reads this file
    (tmp_path / "s" / "results.jsonl").write_text("")  # as if interrupted before any member finished
    data.write_text("".join(data.read_text().splitlines(keepends=True)[:41]))
    code, output = cli("sweep", "--resume", "s")
    assert code == 2 and "changed since the sweep started" in output
    code, output = cli("eval", tmp_path / "s" / "members" / "0")
    assert code == 2 and "changed since it ran" in output


def test_ctrl_c_stops_a_sweep_on_dask_even_where_sigint_was_ignored(tmp_path):
    """A sweep started in the background by a shell inherits SIGINT ignored: on Dask it
    waited out every member.  The sweep sets its own handlers while it waits."""
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("distributed")
    process = subprocess.Popen(
        [sys.executable, "-m", "numbamlp.cli.main", "sweep", "--data", "builtin:digits", "--epochs", "400",
         "--hidden", "256,256", "--grid", "seed=0,1,2,3", "--stack-size", "1", "--workers", "2", "--quiet",
         "--out", str(tmp_path / "s")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 120
    while not (tmp_path / "s" / "sweep.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    for _ in range(20):  # (a signal before the wait has set its handlers is ignored, as inherited: again)
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            continue
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "sweep interrupted" in err and "Traceback" not in err and "WARNING" not in err


def test_a_diverged_sweep_member_leaves_no_model(tmp_path):
    code, output = cli("sweep", "--data", "builtin:iris", "--grid", "lr=0.05,1e30", "--out", tmp_path / "s", *FEW)
    assert code == 0, output
    import json

    rows = [json.loads(line) for line in (tmp_path / "s" / "results.jsonl").read_text().splitlines()]
    diverged = next(row for row in rows if row["status"] == "diverged")
    assert diverged["model_path"] is None
    assert not (tmp_path / "s" / "members" / str(diverged["member"]) / "model.safetensors").exists()


def test_predict_and_eval_refuse_a_model_whose_outputs_are_not_finite(tmp_path):
    model = MLP([4, 8, 3], dtype="float32")
    model.flat_params[:] = 3e38  # finite weights whose products overflow
    model.classes = np.array([0, 1, 2])
    model.save(tmp_path / "blown.safetensors")
    for command in (["predict", tmp_path / "blown.safetensors", "--data", "builtin:iris"],
                    ["eval", tmp_path / "blown.safetensors", "--data", "builtin:iris"]):
        code, output = cli(*command)
        assert code == 2 and "outputs are not finite for 150 of 150 rows" in output, output


@pytest.mark.parametrize("grid, phrase", [("5", "grid must be a table"), ('"seed=0,1"', "grid must be a table")])
def test_a_grid_that_is_not_a_table_is_bad_input(tmp_path, grid, phrase):
    (tmp_path / "g.toml").write_text(f"epochs = 1\ngrid = {grid}\n")
    code, output = cli("sweep", "--config", tmp_path / "g.toml", "--out", tmp_path / "s")
    assert code == 2 and phrase in output
    with pytest.raises(ValueError, match="grid must be a mapping"):
        sweep(ONE_EPOCH, [("seed", [0, 1])], data=(X, y))


@pytest.mark.parametrize("text", ["uniform:0:inf", "loguniform:1e-3:inf", "uniform:-inf:0", "uniform:0:nan",
                                  "int:0:1e30"])
def test_ranges_need_finite_bounds(text):
    code, output = cli("sweep", "--data", "builtin:iris", "--random", "2", "--grid", f"lr={text}", *FEW)
    assert code == 2 and ("finite bounds" in output or "within ±2**62" in output), output


def test_a_regression_target_that_is_not_a_number_is_named(tmp_path):
    rows = [["x", "t"], *[[i, i * 0.5] for i in range(40)]]
    rows[6][1] = "abc"
    path = write_csv(tmp_path / "t.csv", rows[0], rows[1:])
    code, output = cli("train", "--task", "regression", "--data", path, *FEW)
    assert code == 2 and "row 7, column 2 ('t'): 'abc' is not a number" in output
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    for cells, phrase in (([str(i * 0.5) for i in range(39)] + ["abc"], "row 40, column 2 ('t'): 'abc' is not a number"),
                          ([str(i * 0.5) for i in range(40)], "holds numbers as text")):
        pq.write_table(pa.table({"x": [float(i) for i in range(40)], "t": cells}), tmp_path / "t.parquet")
        code, output = cli("train", "--task", "regression", "--data", tmp_path / "t.parquet", *FEW)
        assert code == 2 and phrase in output, output


def test_several_regression_targets_from_an_npz_and_eval_counts_them(tmp_path):
    targets = np.column_stack([X[:, 0] * 2, X[:, 1] - X[:, 2]])
    np.savez(tmp_path / "two.npz", X=X, y=targets)
    np.savez(tmp_path / "one.npz", X=X, y=targets[:, 0])
    assert cli("train", "--task", "regression", "--data", tmp_path / "two.npz", "--out", tmp_path / "run", *FEW)[0] == 0
    assert load_model(tmp_path / "run").layers[-1] == 2
    code, output = cli("predict", tmp_path / "run", "--data", tmp_path / "two.npz")
    assert code == 0 and output.splitlines()[0] == "prediction_0,prediction_1"
    code, output = cli("eval", tmp_path / "run", "--data", tmp_path / "one.npz")
    assert code == 2 and "has 1 target column but the model has 2 outputs" in output


def test_number_settings_refuse_booleans_and_text_but_take_numpy_numbers(tmp_path):
    (tmp_path / "c.toml").write_text("epochs = true\n")
    code, output = cli("train", "--config", tmp_path / "c.toml", "--quiet")
    assert code == 2 and "epochs must be a number, not True" in output
    for document, phrase in (({"batch_size": "8"}, "batch_size must be a number, not '8'"),
                             ({"model": {"hidden": [64, "8"]}}, "hidden must be a number"),
                             ({"optimizer": {"lr": False}}, "lr must be a number")):
        with pytest.raises(ValueError, match=phrase):
            TrainConfig.model_validate(document)
    config = TrainConfig.model_validate({"epochs": np.int64(3), "optimizer": {"lr": np.float32(0.5)}})
    assert config.epochs == 3 and config.optimizer.lr == 0.5


# ---------------------------------------------------------------- estimators and stacks (the third look)
def _blowing_up():
    return np.random.default_rng(0).normal(size=(60, 4)) * 100  # unscaled: learning rates that blow weights up


def test_a_fit_whose_weights_blow_up_raises_instead_of_predicting_nan():
    from numbamlp import MLPClassifier, MLPRegressor

    X_big = _blowing_up()
    with pytest.raises(ValueError, match="diverged"):
        MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=10.0, max_iter=2,
                     random_state=0).fit(X_big, X_big[:, 0])
    with pytest.raises(ValueError, match="diverged"):
        MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=1000.0, max_iter=2, random_state=0,
                      dtype="float32").fit(X_big, (X_big[:, 0] > 0).astype(int) + (X_big[:, 1] > 0))


def test_a_refused_fit_or_first_partial_fit_leaves_the_estimator_as_it_was():
    from sklearn.exceptions import NotFittedError

    from numbamlp import MLPClassifier, MLPRegressor

    labels = np.arange(40) % 3
    first = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="not seen in training: 2"):
        first.partial_fit(X, labels, classes=[0, 1])
    with pytest.raises(NotFittedError):
        first.predict(X)
    first.partial_fit(X, labels, classes=[0, 1, 2])  # the corrected call
    with pytest.raises(ValueError, match=r"classes=\[0, 1, 2, 3\] is not the same as on the first call"):
        first.partial_fit(X, labels, classes=[0, 1, 2, 3])
    for estimator, target in ((MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0), labels),
                              (MLPRegressor(hidden_layer_sizes=(8,), max_iter=2, random_state=0), X[:, 0])):
        estimator.fit(X, target)
        before = estimator.predict(X)
        with pytest.raises(ValueError, match="sample_weight"):
            estimator.fit(X, target, sample_weight=np.ones(3))
        assert np.array_equal(estimator.predict(X), before)  # the fitted model stays


def test_a_refused_fit_keeps_a_trainers_model():
    trainer = Trainer(ONE_EPOCH)
    trainer.fit(X, y)
    before = trainer.predict(X)
    with pytest.raises(ValueError, match="sample_weight"):
        trainer.fit(X, y, sample_weight=np.ones(3))
    assert np.array_equal(trainer.predict(X), before) and trainer.epoch == 1


def test_class_weight_keys_match_float_labels_and_all_zero_weights_are_named():
    from numbamlp import MLPClassifier

    labels = np.arange(40) % 2
    by_int = MLPClassifier(max_iter=2, random_state=0, class_weight={1: 3.0}).fit(X, labels)
    by_float = MLPClassifier(max_iter=2, random_state=0, class_weight={1: 3.0}).fit(X, labels.astype(float))
    assert np.array_equal(by_int.predict_proba(X), by_float.predict_proba(X))
    with pytest.raises(ValueError, match="every class weight 0"):
        MLPClassifier(max_iter=2, class_weight={0: 0, 1: 0}).fit(X, labels)


def test_stack_cancels_are_checked_and_belong_to_one_fit():
    stack = StackTrainer([{**ONE_EPOCH, "seed": s} for s in range(3)])
    for bad in (3, -1, "1", 1.5, True):
        with pytest.raises(ValueError, match=r"member must be a member's index, 0..2"):
            stack.cancel_member(bad)
    stack.cancel_member(1)
    stack.fit(X, y)
    assert [r["status"] for r in stack.results] == ["done", "cancelled", "done"]
    stack.fit(X, y)  # from scratch: every member trains again
    assert [r["status"] for r in stack.results] == ["done", "done", "done"]


def test_a_stack_checkpoint_before_fit_is_refused_and_a_fitted_stack_pickles(tmp_path):
    import pickle

    stack = StackTrainer([{**ONE_EPOCH, "seed": s} for s in range(2)])
    with pytest.raises(ValueError, match="nothing to checkpoint yet"):
        stack.save_checkpoint(tmp_path / "c")
    assert not (tmp_path / "c").exists()
    stack.fit(X, y)
    copy = pickle.loads(pickle.dumps(stack))
    assert np.array_equal(copy.step(X[:8], y[:8]), stack.step(X[:8], y[:8]))
    assert all(np.array_equal(a.flat_params, b.flat_params) for a, b in zip(copy.models, stack.models))


def test_continue_with_keeps_the_network_and_takes_a_dict():
    trainer = Trainer(ONE_EPOCH)
    trainer.fit(X, y)
    with pytest.raises(ValueError, match="optimizer.name is 'momentum' here, the new config has 'adam'"):
        trainer.continue_with({**ONE_EPOCH, "epochs": 3, "optimizer": {"name": "adam"}})
    with pytest.raises(ValueError, match="model is"):
        trainer.continue_with({**ONE_EPOCH, "epochs": 3, "model": {"hidden": [32]}})
    trainer.continue_with({**ONE_EPOCH, "epochs": 3})
    trainer.fit(X, y, warm_start=True)
    assert trainer.epoch == 3


def test_the_regressor_prints_its_validation_score(capsys):
    from numbamlp import MLPRegressor

    MLPRegressor(hidden_layer_sizes=(8,), max_iter=2, early_stopping=True, verbose=True, random_state=0).fit(X, X[:, 0])
    assert "Validation score:" in capsys.readouterr().out


# ---------------------------------------------------------------- data formats (the third look)
def iris_rows():
    from sklearn.datasets import load_iris

    X_iris, y_iris = load_iris(return_X_y=True)
    return X_iris, y_iris


def test_csv_class_names_that_look_like_numbers_stay_distinct_and_as_written(tmp_path):
    X_iris, y_iris = iris_rows()
    for names in (["01", "1", "2"], ["12345678901234567", "12345678901234568", "3"], ["001", "002", "003"]):
        path = write_csv(tmp_path / "c.csv", ["a", "b", "c", "d", "kind"],
                         [[*row, names[label]] for row, label in zip(X_iris, y_iris)])
        code, output = cli("train", "--data", path, "--out", tmp_path / names[0], *FEW)
        assert code == 0 and "layers [4, 8, 3]" in output, output
        assert sorted(map(str, load_model(tmp_path / names[0]).classes.tolist())) == sorted(names)
    path = write_csv(tmp_path / "int.csv", ["a", "b", "c", "d", "kind"],
                     [[*row, label] for row, label in zip(X_iris, y_iris)])
    assert cli("train", "--data", path, "--out", tmp_path / "ints", *FEW)[0] == 0
    assert load_model(tmp_path / "ints").classes.dtype.kind == "i"  # plain integers stay numbers


def test_a_utf8_bom_and_a_label_column_by_index_keep_every_row(tmp_path):
    X_iris, y_iris = iris_rows()
    body = "".join(",".join([*(f"{v:g}" for v in row), str(label)]) + "\n" for row, label in zip(X_iris, y_iris))
    (tmp_path / "bom.csv").write_text("\ufeff" + body, encoding="utf-8")
    assert cli("train", "--data", tmp_path / "bom.csv", "--out", tmp_path / "bom", *FEW)[0] == 0
    code, output = cli("predict", tmp_path / "bom", "--data", tmp_path / "bom.csv", "--label-column", "4")
    assert code == 0 and len(output.splitlines()) == 1 + 150  # every row, not the first taken for a header
    (tmp_path / "bomhead.csv").write_text("\ufeffa,b,c,d,kind\n" + body, encoding="utf-8")
    assert cli("train", "--data", tmp_path / "bomhead.csv", "--label-column", "kind", "--out", tmp_path / "bh",
               *FEW)[0] == 0
    first = "".join(",".join([str(label), *(f"{v:g}" for v in row)]) + "\n" for row, label in zip(X_iris, y_iris))
    (tmp_path / "first.csv").write_text(first)
    assert cli("train", "--data", tmp_path / "first.csv", "--label-column", "0", "--out", tmp_path / "lf", *FEW)[0] == 0
    code, output = cli("eval", tmp_path / "lf", "--data", tmp_path / "first.csv", "--label-column", "0")
    assert code == 0 and "(150 rows:" in output, output


def test_empty_label_cells_are_refused_and_byte_labels_are_text(tmp_path):
    X_iris, y_iris = iris_rows()
    rows = [[*row, label] for row, label in zip(X_iris, y_iris)]
    rows[9][-1] = ""
    code, output = cli("train", "--data", write_csv(tmp_path / "m.csv", list("abcde"), rows), *FEW)
    assert code == 2 and "the label column has an empty cell (first in data row 9" in output
    np.savez(tmp_path / "bytes.npz", X=X_iris, y=np.array([b"a", b"b", b"c"])[y_iris])
    assert cli("train", "--data", tmp_path / "bytes.npz", "--out", tmp_path / "b", *FEW)[0] == 0
    assert load_model(tmp_path / "b").classes.tolist() == ["a", "b", "c"]


def test_values_beyond_float32_are_said_to_be_and_data_errors_say_what_went_wrong(tmp_path):
    X_iris, y_iris = iris_rows()
    rows = [[*row, label] for row, label in zip(X_iris, y_iris)]
    rows[5][0] = "1e39"
    path = write_csv(tmp_path / "big.csv", list("abcde"), rows)
    code, output = cli("train", "--data", path, *FEW)
    assert code == 2 and "beyond float32's range" in output and "RuntimeWarning" not in output, output
    assert cli("train", "--data", path, "--dtype", "float64", "--out", tmp_path / "f64", *FEW)[0] == 0
    ids = write_csv(tmp_path / "ids.csv", list("abcde"), [[*row, i] for i, row in enumerate(X_iris)])
    code, output = cli("train", "--data", ids, *FEW)
    assert code == 2 and "150 distinct values in 150 rows" in output and "an ID or a feature" in output, output
    code, output = cli("train", "--data", ids, "--task", "classification", *FEW)  # (insisted: the split's word)
    assert code == 2 and "150 classes among 150 rows: is its label column an ID" in output
    code, output = cli("train", "--data", "builtin:iris", "--label-column", "2", *FEW)
    assert code == 2 and "names a column of a CSV or Parquet file" in output


def test_a_stack_member_whose_weights_blow_up_is_diverged_as_a_trainer_raises():
    from numbamlp.trainer import TrainingDiverged

    X_big = _blowing_up()
    bad = {"task": "regression", "epochs": 2, "batch_size": 32, "dtype": "float64", "model": {"hidden": [8]},
           "optimizer": {"name": "sgd", "lr": 10.0}}
    good = {**bad, "optimizer": {"name": "sgd", "lr": 1e-4}}
    with pytest.raises(TrainingDiverged, match="scores that are not finite"):
        Trainer(bad).fit(X_big, X_big[:, 0])
    stack = StackTrainer([good, bad])
    stack.fit(X_big, X_big[:, 0])
    assert [r["status"] for r in stack.results] == ["done", "diverged"]


# ---------------------------------------------------------------- the command line, second look
def test_resume_refuses_fewer_epochs_than_the_run_has_had(tmp_path):
    run = tmp_path / "run"
    assert cli("train", "--data", "builtin:iris", "--epochs", "4", "--out", run, *FEW[2:])[0] == 0
    config = (run / "config.json").read_text()
    code, output = cli("train", "--resume", run, "--epochs", "1")
    assert code == 2 and "has trained 4 epochs: --epochs must be at least 4" in output
    assert (run / "config.json").read_text() == config  # not rewritten to 1 epoch


def test_a_run_being_trained_is_not_resumed_a_second_time(tmp_path):
    from numbamlp.run import _run_lock

    run = tmp_path / "run"
    assert cli("train", "--data", "builtin:iris", "--out", run, *FEW)[0] == 0
    with _run_lock(run):  # (as a first --resume holds it while it trains)
        code, output = cli("train", "--resume", run, "--epochs", "3")
    assert code == 2 and "is in use: another numbamlp run is training in it now" in output
    assert cli("train", "--resume", run, "--epochs", "3", "--quiet")[0] == 0


def test_files_say_null_where_a_value_is_not_finite_and_stderr_stays_one_line(tmp_path):
    import json

    def strict(text):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))

    code, output = cli("train", "--data", "builtin:iris", "--lr", "1e7", "--val-fraction", "0.2", "--epochs", "1",
                       "--out", tmp_path / "run", "--quiet")
    assert code == 1 and "diverged" in output and "Warning" not in output, output
    assert [strict(line)["val_loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [None]
    code, output = cli("sweep", "--data", "builtin:iris", "--grid", "lr=0.05,100000", "--out", tmp_path / "s",
                       "--json", *FEW[:4])
    assert "Warning" not in output
    rows = [strict(line) for line in (tmp_path / "s" / "results.jsonl").read_text().splitlines()]
    strict(output.strip().splitlines()[-1])
    assert any(row["status"] == "diverged" for row in rows)


def test_eval_of_data_lacking_a_class_prints_no_warning(tmp_path):
    assert cli("train", "--data", "builtin:iris", "--out", tmp_path / "run", *FEW)[0] == 0
    np.savez(tmp_path / "one.npz", X=np.random.default_rng(0).normal(size=(6, 4)), y=np.zeros(6, int))
    code, output = cli("eval", tmp_path / "run", "--data", tmp_path / "one.npz", "--json")
    assert code == 0 and "Warning" not in output and len(output.strip().splitlines()) == 1


def test_a_moved_sweep_resumes_with_paths_where_it_is_now(tmp_path):
    import json
    import shutil

    assert cli("sweep", "--data", "builtin:iris", "--grid", "lr=0.05,0.1", "--out", tmp_path / "a", *FEW)[0] == 0
    rows = (tmp_path / "a" / "results.jsonl").read_text().splitlines()
    (tmp_path / "a" / "results.jsonl").write_text(rows[0] + "\n")  # as if interrupted after one member
    shutil.move(tmp_path / "a", tmp_path / "b")
    code, output = cli("sweep", "--resume", tmp_path / "b", "--json")
    assert code == 0, output
    for row in ((tmp_path / "b") / "results.jsonl").read_text().splitlines():
        assert json.loads(row)["model_path"].startswith(str(tmp_path / "b"))


def test_train_refuses_a_sweep_directory_even_with_overwrite(tmp_path):
    assert cli("sweep", "--data", "builtin:iris", "--grid", "lr=0.1", "--out", tmp_path / "s", *FEW)[0] == 0
    code, output = cli("train", "--data", "builtin:iris", "--out", tmp_path / "s", "--overwrite", *FEW)
    assert code == 2 and "holds a sweep, not a run" in output
    assert (tmp_path / "s" / "results.csv").exists() and not (tmp_path / "s" / "model.safetensors").exists()


def test_a_terminal_that_cannot_redraw_gets_plain_epoch_lines(monkeypatch):
    import sys

    from numbamlp.cli import main as cli_main

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("TERM", "xterm")
    assert type(cli_main._progress(3)).__name__ == "_ProgressBar"
    monkeypatch.setenv("TERM", "dumb")
    assert type(cli_main._progress(3)).__name__ == "_EpochLines"


# ---------------------------------------------------------------- sweeps (the third look, 2026-11-30 afternoon)
def read_rows(directory):
    import json

    return [json.loads(line) for line in (directory / "results.jsonl").read_text().splitlines()]


def test_a_grid_over_data_settings_trains_each_member_on_its_own_data(tmp_path):
    """Every member trained on member 0's splits: a grid over data.train, data.val_fraction,
    data.standardize... gave identical rows, and a member's model did not fit its own data."""
    code, output = cli("sweep", "--data", "builtin:iris", "--grid", "data.train=builtin:iris,builtin:digits",
                       "--grid", "data.val_fraction=0.1,0.3", "--out", tmp_path / "s", *FEW)
    assert code == 0, output
    rows = read_rows(tmp_path / "s")
    assert [(row["data.train"], row["data.val_fraction"]) for row in rows] == [
        ("builtin:iris", 0.1), ("builtin:iris", 0.3), ("builtin:digits", 0.1), ("builtin:digits", 0.3)]
    assert len({row["val_loss"] for row in rows}) == 4
    assert load_model(tmp_path / "s" / "members" / "2" / "model.safetensors").layers[0] == 64
    code, output = cli("eval", tmp_path / "s" / "members" / "2")
    assert code == 0, output
    # member 1 is what train gives with its own config, bit for bit
    code, output = cli("train", "--config", tmp_path / "s" / "members" / "1" / "config.json", "--out", tmp_path / "t")
    assert code == 0, output
    import json

    alone = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert alone["val_loss"] == rows[1]["val_loss"] and alone["test_accuracy"] == rows[1]["test_accuracy"]


def test_a_grid_over_epochs_keeps_its_values_beside_the_epochs_trained(tmp_path):
    code, output = cli("sweep", "--data", "builtin:iris", "--grid", "epochs=1,2", "--hidden", "8",
                       "--out", tmp_path / "s")
    assert code == 0, output
    rows = read_rows(tmp_path / "s")
    assert [(row["grid.epochs"], row["epochs"]) for row in rows] == [(1, 1), (2, 2)]
    assert "grid.epochs=" in output.splitlines()[-3]  # the best line names the member's value
    assert (tmp_path / "s" / "results.csv").read_text().splitlines()[0].startswith("member,grid.epochs,")


def test_resume_refuses_every_setting_it_would_ignore_and_names_the_flags_typed(tmp_path):
    assert cli("sweep", "--data", "builtin:iris", "--grid", "lr=0.05,0.1", "--out", tmp_path / "s", *FEW)[0] == 0
    for args, named in ((["--metric", "val_loss"], "--metric"), (["--stack-size", "1"], "--stack-size"),
                        (["--max-members", "1"], "--max-members"), (["--data", "builtin:digits"], "--data"),
                        (["--optimizer", "adam"], "--optimizer")):
        code, output = cli("sweep", "--resume", tmp_path / "s", *args)
        assert code == 2 and f"(got {named})" in output, output


def test_a_config_grid_that_sets_one_setting_twice_is_refused(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('epochs = 1\n[data]\ntrain = "builtin:iris"\n[grid]\nlr = [0.01, 0.1]\n'
                      '[grid.optimizer]\nlr = [0.5]\n')
    code, output = cli("sweep", "--config", config, "--out", tmp_path / "s")
    assert code == 2 and "grid sets optimizer.lr twice" in output
    assert not (tmp_path / "s").exists()


def test_an_array_sweep_resumes_only_with_the_same_arrays(tmp_path):
    sweep(ONE_EPOCH, {"seed": [0, 1]}, data=(X, y), out=tmp_path / "s")
    rows = (tmp_path / "s" / "results.jsonl").read_text().splitlines()
    (tmp_path / "s" / "results.jsonl").write_text(rows[0] + "\n")  # as if interrupted after one member
    with pytest.raises(ValueError, match=r"was trained on arrays given as sweep\(data=\(X, y\)\)"):
        sweep(resume=tmp_path / "s")
    code, output = cli("sweep", "--resume", tmp_path / "s")
    assert code == 2 and "resume it from Python with the same arrays" in output
    other = X.copy()
    other[0, 0] += 1.0
    with pytest.raises(ValueError, match="the arrays given differ"):
        sweep(resume=tmp_path / "s", data=(other, y))
    result = sweep(resume=tmp_path / "s", data=(X, y))
    assert [row["status"] for row in result.table] == ["done", "done"]
    with pytest.raises(ValueError, match="resume it without data"):  # a sweep of data files
        assert cli("sweep", "--data", "builtin:iris", "--grid", "seed=0", "--out", tmp_path / "f", *FEW)[0] == 0
        sweep(resume=tmp_path / "f", data=(X, y))


def test_results_csv_leaves_a_loss_that_is_not_a_number_empty_as_results_jsonl_has_null(tmp_path):
    code, output = cli("sweep", "--data", "builtin:iris", "--grid", "lr=1e6", "--epochs", "2", "--hidden", "8",
                       "--out", tmp_path / "s", "--quiet")
    import csv

    with open(tmp_path / "s" / "results.csv", newline="") as file:
        (cells,) = list(csv.DictReader(file))
    assert read_rows(tmp_path / "s")[0]["val_loss"] is None and cells["val_loss"] == ""
    assert not [name for name, cell in cells.items() if cell.lower() in ("nan", "inf", "-inf")]


def test_a_sweep_of_zero_epochs_says_why_it_has_no_best(tmp_path):
    code, output = cli("sweep", "--data", "builtin:iris", "--grid", "lr=0.1,0.2", "--epochs", "0", "--hidden", "8",
                       "--out", tmp_path / "s", "--quiet")
    assert code == 0 and "no member has a val_accuracy to rank them by (2 done)" in output, output
    assert "no member finished" not in output


def test_a_python_sweep_takes_progress_false_and_refuses_what_it_cannot_call():
    assert len(sweep(ONE_EPOCH, {"seed": [0]}, data=(X, y), progress=False).table) == 1
    with pytest.raises(ValueError, match="progress must be a function"):
        sweep(ONE_EPOCH, {"seed": [0]}, data=(X, y), progress=5)


def test_a_random_sweep_over_lists_draws_different_members():
    """--random 2 over four activations drew tanh twice (with replacement)."""
    result = sweep(ONE_EPOCH, {"model.activation": ["relu", "tanh", "gelu", "elu"], "optimizer.lr": [0.01, 0.1]},
                   data=(X, y), random=5, progress=False)
    drawn = [(row["model.activation"], row["optimizer.lr"]) for row in result.table]
    assert len(set(drawn)) == 5
    everything = sweep(ONE_EPOCH, {"seed": [0, 1, 2]}, data=(X, y), random=10)  # fewer than asked: each once
    assert [row["seed"] for row in everything.table] == [0, 1, 2]


def test_a_resumed_sweep_gives_every_finished_members_model(tmp_path):
    sweep(ONE_EPOCH, {"seed": [0, 1]}, data=(X, y), out=tmp_path / "s")
    rows = (tmp_path / "s" / "results.jsonl").read_text().splitlines()
    (tmp_path / "s" / "results.jsonl").write_text(rows[0] + "\n")
    result = sweep(resume=tmp_path / "s", data=(X, y))
    assert all(model is not None for model in result.models)
    np.testing.assert_array_equal(result.models[0].flat_params,
                                  load_model(tmp_path / "s" / "members" / "0" / "model.safetensors").flat_params)


# ---------------------------------------------------------------- the estimators against scikit-learn's habits
def test_predict_log_proba_is_the_log_of_predict_proba():
    from numbamlp import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(6,), max_iter=3, random_state=0).fit(X, y)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), clf.predict_proba(X), rtol=1e-12)


def test_partial_fit_takes_scikit_learns_argument_order():
    from sklearn.neural_network import MLPClassifier as Theirs

    from numbamlp import MLPClassifier

    assert list(__import__("inspect").signature(MLPClassifier.partial_fit).parameters) == \
        list(__import__("inspect").signature(Theirs.partial_fit).parameters)
    clf = MLPClassifier(hidden_layer_sizes=(6,), random_state=0)
    clf.partial_fit(X, y, np.ones(len(X)), classes=[0, 1, 2])
    assert list(clf.classes_) == [0, 1, 2]


@pytest.mark.parametrize("masking", ["sample_weight", "class_weight"])
def test_a_minibatch_whose_rows_all_weigh_nothing_is_skipped_not_called_a_divergence(masking):
    """A masking sample_weight (or a class weight of 0) left minibatches of weight 0: the
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
    """Weight 3 means 'this row three times' with class_weight='balanced' too, as in
    scikit-learn's compute_class_weight."""
    from sklearn.utils.class_weight import compute_class_weight

    weights = np.where(y == 1, 3.0, 1.0)
    trainer = Trainer({"epochs": 1, "class_weight": "balanced"})
    trainer.classes_ = np.unique(y)
    trainer.model = MLP([3, 4, 3])
    ours = trainer.row_weights(y, weights)
    theirs = compute_class_weight("balanced", classes=np.unique(y), y=y, sample_weight=weights)[y] * weights
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)  # (the model's float32)


def test_partial_fit_refuses_a_cosine_schedule():
    from numbamlp import MLPClassifier

    with pytest.raises(ValueError, match="partial_fit does not support 'cosine'"):
        MLPClassifier(learning_rate="cosine").partial_fit(X, y, classes=[0, 1, 2])


def test_a_diverged_estimator_gives_its_advice_once():
    from numbamlp import MLPClassifier

    with pytest.raises(ValueError) as raised:
        MLPClassifier(solver="sgd", learning_rate_init=1e200, max_iter=2).fit(X * 1e3, y)
    assert str(raised.value).count("lower") == 1 and "learning_rate_init" in str(raised.value)


# ---------------------------------------------------------------- the other commands (the third look)
def test_eval_scores_by_the_label_column_the_model_was_trained_with(tmp_path, monkeypatch):
    """eval --data took the last column as the labels, though the model was trained with a
    named one in the middle: a regressor's R² came out as -9e11, exit 0."""
    labelled_in_the_middle(tmp_path)
    monkeypatch.chdir(tmp_path)
    for task in ("regression", "classification"):
        run = tmp_path / task
        assert cli("train", "--task", task, "--data", "mid.csv", "--label-column", "label", "--out", run, *FEW)[0] == 0
        code, default = cli("eval", run, "--data", "mid.csv")
        assert code == 0, default
        assert default == cli("eval", run, "--data", "mid.csv", "--label-column", "label")[1]


def test_eval_and_predict_refuse_a_label_column_their_data_cannot_have(tmp_path):
    assert cli("train", "--data", "builtin:iris", "--out", tmp_path / "run", *FEW)[0] == 0
    for command in ("eval", "predict"):
        code, output = cli(command, tmp_path / "run", "--data", "builtin:iris", "--label-column", "3")
        assert code == 2 and "label_column names a column of a CSV or Parquet file" in output, output


def test_plot_draws_a_regressors_validation_r2(tmp_path):
    pytest.importorskip("matplotlib")
    assert cli("train", "--task", "regression", "--data", "builtin:diabetes", "--val-fraction", "0.1",
               "--out", tmp_path / "run", *FEW)[0] == 0
    code, output = cli("plot", tmp_path / "run")
    assert code == 0, output
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0


def test_numbas_debugging_switch_gets_one_line_naming_the_numpy_backend(tmp_path):
    import os
    import subprocess
    import sys

    environment = dict(os.environ, NUMBA_DISABLE_JIT="1")
    for args in (["train", "--data", "builtin:iris", "--epochs", "1", "--hidden", "8", "--quiet"], ["gradcheck"]):
        done = subprocess.run([sys.executable, "-m", "numbamlp.cli.main", *args], env=environment, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert "NUMBA_DISABLE_JIT" in done.stderr and "backend 'numpy'" in done.stderr
    done = subprocess.run([sys.executable, "-m", "numbamlp.cli.main", "train", "--data", "builtin:iris", "--epochs",
                           "1", "--hidden", "8", "--quiet", "--backend", "numpy", "--out", "run"], env=environment,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_predict_out_dash_is_standard_output(tmp_path, monkeypatch):
    assert cli("train", "--data", "builtin:iris", "--out", tmp_path / "run", *FEW)[0] == 0
    monkeypatch.chdir(tmp_path)
    code, output = cli("predict", tmp_path / "run", "--data", "builtin:iris", "--out", "-")
    assert code == 0 and output.splitlines()[0] == "prediction" and len(output.splitlines()) == 151
    assert not (tmp_path / "-").exists()


def test_a_label_column_the_header_lacks_is_named_with_the_columns_it_has(tmp_path):
    data = labelled_in_the_middle(tmp_path)
    code, output = cli("train", "--data", data, "--label-column", "lable", "--out", tmp_path / "run", *FEW)
    assert code == 2 and "no column named 'lable'; its columns are 'a', 'label', 'b', 'c'" in output, output


def test_a_named_label_column_of_fractions_is_refused_as_labels_not_taken_for_a_feature(tmp_path):
    """The message told the user to pass --label-column, which they had passed."""
    rows = [[f"{i * 0.1:.1f}", f"{(i % 3) + 0.5}"] for i in range(30)]
    data = write_csv(tmp_path / "f.csv", ["a", "label"], rows)
    code, output = cli("train", "--data", data, "--label-column", "label", "--out", tmp_path / "run", *FEW)
    assert code == 2 and "non-integral numeric labels" in output and "choose the label column" not in output
    code, output = cli("train", "--data", data, "--out", tmp_path / "run", *FEW)  # guessed: said to be a feature
    assert code == 2 and "looks like a feature; choose the label column" in output


def test_info_counts_the_cores_this_process_may_use():
    import json
    import os
    import subprocess
    import sys

    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this OS")
    one = sorted(os.sched_getaffinity(0))[:1]
    done = subprocess.run([sys.executable, "-m", "numbamlp.cli.main", "info", "--json"], capture_output=True,
                          text=True, timeout=300, preexec_fn=lambda: os.sched_setaffinity(0, one))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["cores"] == 1


@pytest.mark.parametrize("args, phrase", [
    (["--configs", "Small"], "--configs: unknown 'Small'; choose from small, mnist, deep, large"),
    (["--configs", "small", "--rounds", "0"], "--rounds must be at least 1, got 0"),
])
def test_bench_says_what_is_wrong_with_its_arguments(args, phrase):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "numbamlp.cli.main", "bench", *args], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.strip() == f"Error: {phrase}", done.stderr


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_named_label_column_of_class_names_trains_and_evaluates(tmp_path, suffix):
    """A fix for named label columns (83b266c) sent every named column of class names
    through the regression targets' check: 'setosa' is not a number."""
    names = np.array(["setosa", "versicolor", "virginica"])[np.arange(60) % 3]
    values = np.random.default_rng(3).normal(size=(60, 2))
    path = tmp_path / f"named{suffix}"
    if suffix == ".csv":
        write_csv(path, ["species", "a", "b"], [[n, f"{p:.3f}", f"{q:.3f}"] for n, (p, q) in zip(names, values)])
    else:
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"species": names, "a": values[:, 0], "b": values[:, 1]}), path)
    code, output = cli("train", "--data", path, "--label-column", "species", "--out", tmp_path / "run", *FEW)
    assert code == 0, output
    code, output = cli("eval", tmp_path / "run", "--data", path)
    assert code == 0 and "setosa" in output, output


# ---------------------------------------------------------------- the Python API (the third look)
def test_an_optimizers_name_cannot_be_assigned_after_its_defaults_were_filled():
    """cfg.optimizer.name = 'adam' kept SGD's lr 0.05 and momentum 0.9: refused; a config
    made with the name gets the optimizer's own defaults."""
    config = TrainConfig()
    with pytest.raises(ValueError, match="frozen"):
        config.optimizer.name = "adam"
    adam = TrainConfig.model_validate({"optimizer": {"name": "adam"}}).optimizer
    assert adam.lr == 0.001 and adam.momentum is None


def test_a_warm_fit_after_a_requested_stop_goes_on():
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


def test_a_stack_whose_new_data_is_refused_keeps_what_it_learned():
    stack = StackTrainer([{"epochs": 3, "batch_size": 8, "model": {"hidden": [6]}}])
    stack.fit(X, y)
    before = stack.trainers[0].model.flat_params.copy()
    with pytest.raises(ValueError, match="X_val has 2 features"):
        stack.fit(X, y, X_val=X[:, :2], y_val=y)
    assert stack.trainers[0].epoch == 3
    np.testing.assert_array_equal(stack.trainers[0].model.flat_params, before)
    stack.fit(X, y, warm_start=False)  # (and it still trains)
    assert stack.trainers[0].epoch == 3


def test_a_trainers_threads_hold_while_it_fits_and_not_after():
    import numba

    before = numba.get_num_threads()
    trainer = Trainer({"epochs": 1, "threads": 1, "model": {"hidden": [6]}})
    assert numba.get_num_threads() == before  # (making a Trainer changes nothing)

    class Seen:
        def on_epoch_end(self, epoch, metrics):
            self.threads = numba.get_num_threads()

    seen = Seen()
    trainer.fit(X, y, callbacks=[seen])
    assert seen.threads == 1 and numba.get_num_threads() == before


def test_state_before_any_fit_says_so():
    with pytest.raises(ValueError, match="nothing to checkpoint yet"):
        Trainer().state()


def test_a_random_draw_from_a_grid_of_more_combinations_than_int64_holds():
    from numbamlp.sweeps import member_settings

    drawn = member_settings({f"k{i}": list(range(10)) for i in range(20)}, 5, 0)  # 10²⁰ combinations
    assert len({tuple(member.values()) for member in drawn}) == 5


# ---------------------------------------------------------------- CSV headers (data at scale, the third look)
def _rows(values, labels):
    return "".join(",".join(f"{v:.4f}" for v in row) + f",{label}\n" for row, label in zip(values, labels))


def test_a_header_of_numbers_over_a_label_column_of_numbers_is_a_header(tmp_path):
    """Columns named 2019, 2020, 2021 and 'label': the names were read as a data row and
    'label' became a class of one row."""
    from numbamlp.data import load_dataset

    values = np.random.default_rng(2).normal(size=(40, 3))
    labels = (values[:, 0] > 0).astype(int)
    (tmp_path / "years.csv").write_text("2019,2020,2021,label\n" + _rows(values, labels))
    data = load_dataset(str(tmp_path / "years.csv"))
    assert data.X.shape == (40, 3) and set(data.y.tolist()) == {0, 1}
    (tmp_path / "names.csv").write_text(_rows(values, np.array(["a", "b"])[labels]))  # no header: class names
    assert load_dataset(str(tmp_path / "names.csv")).X.shape == (40, 3)


@pytest.mark.parametrize("head", [",f0,f1,f2,label\n", "\n\nf0,f1,f2,label\n"], ids=["empty-name", "blank-lines"])
def test_csvs_with_an_unnamed_column_or_leading_blank_lines_take_the_fast_reader(tmp_path, head):
    """pandas' to_csv writes an unnamed index column; such files (and leading blank lines)
    went to the csv module's reader, ~20x the data in memory on a 250 MB file."""
    from pathlib import Path

    from numbamlp.data import _read_csv_arrow, load_dataset

    values = np.random.default_rng(3).normal(size=(30, 3))
    labels = np.arange(30) % 2
    rows = _rows(np.column_stack([np.arange(30), values]), labels) if head.startswith(",") else _rows(values, labels)
    path = tmp_path / "f.csv"
    path.write_text(head + rows)
    assert _read_csv_arrow(Path(path), None, np.float32) is not None  # (pyarrow's streaming reader took it)
    data = load_dataset(str(path))
    assert data.X.shape == (30, 4 if head.startswith(",") else 3) and data.y.tolist() == labels.tolist()
