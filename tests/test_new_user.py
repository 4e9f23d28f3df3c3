"""What a new user hit (issue 11): each test reproduces one report and holds the fix.

Real processes where the report came from the shell; click's runner where only the
command's own behaviour matters.
"""

import csv
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from numbamlp import load_model
from numbamlp.cli.main import main
from numbamlp.config import TrainConfig
from numbamlp.data import DataError, load_dataset, prepare
from numbamlp.trainer import Trainer

NUMBAMLP = [sys.executable, "-m", "numbamlp.cli.main"]
FAST = ["--epochs", "2", "--hidden", "16", "--quiet"]


def numbamlp(*args, cwd, timeout=300, env=None):
    return subprocess.run([*NUMBAMLP, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env)


def assert_one_line_error(run, exit_code, *phrases):
    assert run.returncode == exit_code, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, run.stderr
    for phrase in phrases:
        assert phrase in errors[0], errors[0]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A short run on digits with names for the read-only tests."""
    out = tmp_path_factory.mktemp("runs") / "small"
    result = CliRunner().invoke(main, ["train", "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    return out


# ---------------------------------------------------------------- paths for writing
@pytest.mark.parametrize("args,phrase", [
    (["--out", "/proc/numbamlp-test/run"], "cannot create files in /proc"),
    (["--out", "afile/run"], "afile is a file, not a folder"),
    (["--out", "afile"], "Directory 'afile' is a file"),  # click.Path's own check
])
def test_train_refuses_an_unwritable_out_before_any_work(tmp_path, args, phrase):
    (tmp_path / "afile").write_text("precious")
    run = numbamlp("train", *FAST, *args, cwd=tmp_path)
    assert_one_line_error(run, 2, phrase)
    assert (tmp_path / "afile").read_text() == "precious"
    assert not (tmp_path / "runs").exists()


def test_predict_and_plot_refuse_unwritable_outputs(small_run, tmp_path):
    run = numbamlp("predict", small_run, "--data", "builtin:digits", "--out", "/nonexistent/dir/p.csv", cwd=tmp_path)
    assert_one_line_error(run, 2, "folder /nonexistent/dir does not exist")
    run = numbamlp("plot", small_run, "--out", "/nonexistent/x.png", cwd=tmp_path)
    assert_one_line_error(run, 2, "folder /nonexistent does not exist")
    run = numbamlp("predict", small_run, "--data", "builtin:digits", "--out", tmp_path, cwd=tmp_path)
    assert_one_line_error(run, 2, "is a directory")


def test_predict_does_not_clobber_an_existing_file_without_overwrite(small_run, tmp_path):
    target = tmp_path / "p.csv"
    target.write_text("keep me")
    result = CliRunner().invoke(main, ["predict", str(small_run), "--data", "builtin:digits", "--out", str(target)])
    assert result.exit_code == 2 and "exists; choose another name or pass --overwrite" in result.output
    assert target.read_text() == "keep me"
    result = CliRunner().invoke(main, ["predict", str(small_run), "--data", "builtin:digits", "--out", str(target),
                                       "--overwrite"])
    assert result.exit_code == 0, result.output
    assert target.read_text().startswith("prediction\n")


def test_an_unexpected_exception_is_one_line_and_exit_1_unless_debugging(monkeypatch, tmp_path):
    import numbamlp.run

    def broken(*args, **kwargs):
        raise RuntimeError("something inside broke\nsecond line")

    monkeypatch.setattr(numbamlp.run, "train_run", broken)
    monkeypatch.delenv("NUMBAMLP_DEBUG", raising=False)
    result = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: unexpected RuntimeError: something inside broke (run with --debug or NUMBAMLP_DEBUG=1 for the traceback)"
    ]
    debug = CliRunner().invoke(main, ["--debug", "train", "--out", str(tmp_path / "r")])
    assert isinstance(debug.exception, RuntimeError)  # raised through to the traceback
    monkeypatch.setenv("NUMBAMLP_DEBUG", "1")
    assert isinstance(CliRunner().invoke(main, ["train", "--out", str(tmp_path / "r")]).exception, RuntimeError)
    monkeypatch.delenv("NUMBAMLP_DEBUG")
    again = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "r")])  # --debug does not stick
    assert again.exit_code == 1 and not isinstance(again.exception, RuntimeError)


# ---------------------------------------------------------------- run directories
def test_default_run_directories_are_claimed_atomically(tmp_path, monkeypatch):
    import numbamlp.paths as paths

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(paths, "default_run_name", lambda parent="runs": Path(parent) / "20261130-000000")
    first = paths.claim_run_directory(None, "config.json")
    second = paths.claim_run_directory(None, "config.json")
    assert (first.name, second.name) == ("20261130-000000", "20261130-000000-2")
    # a named directory is claimed by creating its config.json exclusively: the second run is refused
    paths.claim_run_directory(tmp_path / "named", "config.json")
    with pytest.raises(paths.RunDirectoryTaken, match="already holds a run"):
        paths.claim_run_directory(tmp_path / "named", "config.json")


def test_two_runs_started_together_get_two_directories(tmp_path):
    processes = [subprocess.Popen([*NUMBAMLP, "train", *FAST], cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert load_model(run / "model.safetensors").layers == [64, 16, 10]
        assert json.loads((run / "summary.json").read_text())["run_dir"] == f"runs/{run.name}"


# ---------------------------------------------------------------- the summary of early stopping
def test_summary_describes_the_saved_best_weights(tmp_path):
    out = tmp_path / "es"
    args = ["train", "--patience", "4", "--val-fraction", "0.1", "--optimizer", "adam", "--lr", "0.01",
            "--seed", "1", "--hidden", "32", "--epochs", "40", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = min(metrics, key=lambda m: m["val_loss"])
    assert summary["best_epoch"] == best["epoch"] and summary["stopped_early"]
    assert summary["val_accuracy"] == best["val_accuracy"] and summary["val_loss"] == best["val_loss"]
    assert summary["epochs_run"] == len(metrics) > summary["best_epoch"]
    assert f"weights of epoch {best['epoch']}" in result.output
    # the model file holds those weights: scored on the same validation rows, it gets the same accuracy
    config = TrainConfig.model_validate(json.loads((out / "config.json").read_text()))
    raw = prepare(config.data.model_copy(update={"standardize": False}), config.seed)
    model = load_model(out / "model.safetensors")
    assert np.mean(model.predict(raw.X_val) == raw.y_val) == pytest.approx(summary["val_accuracy"], abs=1e-12)


# ---------------------------------------------------------------- test and validation data checked first
def _write_npz(path, X, y):
    np.savez(path, X=X, y=y)
    return path


def test_test_data_is_checked_before_the_first_epoch(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), np.arange(60) % 3
    _write_npz(tmp_path / "train.npz", X, y)
    _write_npz(tmp_path / "unseen.npz", X[:10], np.r_[y[:8], 7, 9])
    run = numbamlp("train", "--data", "train.npz", "--test", "unseen.npz", "--out", "r1", *FAST, cwd=tmp_path)
    assert_one_line_error(run, 2, "unseen.npz has 2 labels that the training data never shows: 7, 9")
    run = numbamlp("train", "--test", "builtin:iris", "--out", "r2", *FAST, cwd=tmp_path)
    assert_one_line_error(run, 2, "builtin:iris has 4 features but the training data builtin:digits has 64")
    run = numbamlp("train", "--data", "train.npz", "--val", "unseen.npz", "--out", "r3", *FAST, cwd=tmp_path)
    assert_one_line_error(run, 2, "unseen.npz has 2 labels that the training data never shows")
    assert not any((tmp_path / name).exists() for name in ("r1", "r2", "r3", "runs"))


def test_a_validation_file_is_used_for_early_stopping(tmp_path):
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(90, 3)), np.arange(90) % 3
    X[:, 0] += y  # learnable
    _write_npz(tmp_path / "train.npz", X[:60], y[:60])
    _write_npz(tmp_path / "val.npz", X[60:], y[60:])
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "train.npz"), "--val", str(tmp_path / "val.npz"),
                                       "--patience", "3", "--epochs", "5", "--hidden", "8", "--out", str(tmp_path / "r"),
                                       "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert all("val_accuracy" in m for m in metrics)
    # validation rows came from the file (30 rows), none from training's 60 (45 trained on, 15 tested)
    assert all(abs(m["val_accuracy"] * 30 - round(m["val_accuracy"] * 30)) < 1e-9 for m in metrics)
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["test_rows"] == 15
    both = CliRunner().invoke(main, ["train", "--val", "x.npz", "--val-fraction", "0.1"])
    assert both.exit_code == 2 and "val and val_fraction are both set" in both.output


# ---------------------------------------------------------------- files that say the right thing
def test_class_names_that_need_quoting_survive_predict_proba(tmp_path):
    rng = np.random.default_rng(0)
    names = np.array(["set,osa", 'versi"color', "virginica"])
    X, y = rng.normal(size=(45, 2)), np.arange(45) % 3
    with open(tmp_path / "d.csv", "w", newline="") as f:
        table = csv.writer(f)
        table.writerow(["a", "b", "species"])
        table.writerows([[*row, names[label]] for row, label in zip(X, y)])
    assert CliRunner().invoke(main, ["train", "--data", str(tmp_path / "d.csv"), "--out", str(tmp_path / "r"),
                                     *FAST]).exit_code == 0
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "r"), "--data", str(tmp_path / "d.csv"), "--proba"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.output)))
    assert rows[0] == ["prediction", "p_set,osa", 'p_versi"color', "p_virginica"]
    assert all(len(row) == 4 and row[0] in names for row in rows[1:]) and len(rows) == 46


def test_random_bytes_npz_is_not_a_valid_archive(tmp_path):
    (tmp_path / "r.npz").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(DataError, match=r"r.npz is not a valid .npz archive \(not a zip file\)"):
        load_dataset(str(tmp_path / "r.npz"))


def test_a_csv_without_a_label_column_says_which_column_was_taken(tmp_path):
    rows = np.random.default_rng(0).normal(size=(10, 3))
    (tmp_path / "f.csv").write_text("x1,x2,x3\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    with pytest.raises(DataError) as err:
        load_dataset(str(tmp_path / "f.csv"))
    assert "the label column (column 'x3', the last) holds non-integral numbers" in str(err.value)
    assert "--label-column" in str(err.value)


@pytest.mark.parametrize("args,phrase", [
    (["--seed", "-5"], "--seed: Input should be greater than or equal to 0"),
    (["--optimizer", "adam", "--momentum", "0.5"], "--momentum (optimizer.momentum): momentum does not apply to optimizer 'adam'"),
    (["--lr", "0"], "--lr (optimizer.lr): Input should be greater than 0"),
])
def test_validation_messages_name_the_option(args, phrase):
    result = CliRunner().invoke(main, ["train", *args])
    assert result.exit_code == 2
    assert phrase in result.output, result.output


def test_config_file_errors_name_the_key(tmp_path):
    (tmp_path / "c.toml").write_text('[optimizer]\nname = "sgd"\nbeta1 = 0.8\n')
    result = CliRunner().invoke(main, ["train", "--config", str(tmp_path / "c.toml")])
    assert result.exit_code == 2
    assert "optimizer.beta1: beta1 does not apply to optimizer 'sgd' (only to adam, adamw)" in result.output


# ---------------------------------------------------------------- interrupts
RUN_SLOW = ["train", "--hidden", "512,512", "--batch-size", "8", "--epochs", "12", "--quiet"]


@pytest.mark.slow
def test_an_interrupted_run_leaves_a_model_that_eval_and_predict_use(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen([*NUMBAMLP, *RUN_SLOW, "--out", str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "checkpoint and model saved" in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["test_accuracy"] is None
    run = numbamlp("eval", out, "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["rows"] == 450
    assert numbamlp("predict", out, "--data", "builtin:iris", cwd=tmp_path).returncode == 2  # wrong features: refused
    assert numbamlp("predict", out, "--data", "builtin:digits", cwd=tmp_path).returncode == 0


def test_a_second_interrupt_says_what_is_on_disk(tmp_path):
    """A KeyboardInterrupt (the second Ctrl-C) while a resumed run trains: the message says
    the last checkpoint is kept, not that nothing was written."""
    from numbamlp.run import RunAborted, train_run

    config = TrainConfig.model_validate({"epochs": 2, "model": {"hidden": [8]}})
    train_run(config, out=tmp_path / "r")
    before = (tmp_path / "r" / "checkpoint" / "state.safetensors").read_bytes()

    class SecondCtrlC:
        def on_epoch_end(self, epoch, metrics):
            raise KeyboardInterrupt

    longer = config.model_copy(update={"epochs": 4})
    with pytest.raises(RunAborted) as err:
        train_run(longer, resume=tmp_path / "r", callbacks=[SecondCtrlC()])
    assert str(err.value) == f"interrupted; {tmp_path / 'r'} keeps its last complete checkpoint"
    assert err.value.directory == tmp_path / "r"
    # the interrupt came before epoch 3's checkpoint was written: epoch 2's is intact
    assert (tmp_path / "r" / "checkpoint" / "state.safetensors").read_bytes() == before
    with pytest.raises(RunAborted, match="nothing was written"):
        raise RunAborted(None, resumed=False)


# ---------------------------------------------------------------- optimizer defaults
def test_the_learning_rate_default_belongs_to_the_optimizer():
    lr = {name: TrainConfig.model_validate({"optimizer": {"name": name}}).optimizer.lr
          for name in ("sgd", "momentum", "nesterov", "adam", "adamw")}
    assert lr == {"sgd": 0.05, "momentum": 0.05, "nesterov": 0.05, "adam": 1e-3, "adamw": 1e-3}
    assert TrainConfig.model_validate({"optimizer": {"name": "adam", "lr": 0.01}}).optimizer.lr == 0.01
    assert TrainConfig().optimizer.name == "momentum" and TrainConfig().optimizer.momentum == 0.9


def test_sgd_is_plain_and_momentum_is_not():
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


def test_settings_the_optimizer_does_not_use_are_refused():
    from pydantic import ValidationError

    for optimizer, key in (("adam", "momentum"), ("adamw", "momentum"), ("sgd", "beta1"), ("nesterov", "eps")):
        with pytest.raises(ValidationError, match=f"{key} does not apply to optimizer '{optimizer}'"):
            TrainConfig.model_validate({"optimizer": {"name": optimizer, key: 0.5}})


# ---------------------------------------------------------------- a second fit
def test_a_second_fit_trains_again_from_scratch():
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


# ---------------------------------------------------------------- progress, --validate, plurals, help
def test_the_trainer_reports_progress_within_an_epoch(monkeypatch):
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


def test_the_progress_bar_of_a_resumed_run_starts_at_its_epoch(capsys):
    from numbamlp.cli.main import _ProgressBar

    bar = _ProgressBar(45)
    bar.on_progress(41, 50, 100, 0.25)  # resumed at epoch 41 of 45
    bar.on_progress(41, 100, 100, 0.2)
    bar.on_epoch_end(41, {"loss": 0.2})
    bar.close()
    frames = capsys.readouterr().out.split("\r")
    assert frames[1].startswith("epoch 41/45 [") and " 90%" in frames[1] and "eta --:--" in frames[1]
    assert " 91%" in frames[2] and "loss 0.2000" in frames[2] and "eta 00:00" in frames[2]


def test_validate_prints_its_line_before_the_first_epoch(tmp_path):
    run = numbamlp("train", "--validate", "--epochs", "2", "--hidden", "8", "--out", "r", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    check = next(i for i, line in enumerate(lines) if line.startswith("gradient check: max relative error"))
    first_epoch = next(i for i, line in enumerate(lines) if line.startswith("epoch 1/2"))
    assert check < first_epoch


def test_one_epoch_is_singular(tmp_path):
    result = CliRunner().invoke(main, ["train", "--epochs", "1", "--hidden", "8", "--out", str(tmp_path / "r"),
                                       "--quiet"])
    assert ", 1 epoch)" in result.output
    from numbamlp.text import counted

    assert (counted(1, "thread"), counted(2, "thread"), counted(0, "epoch")) == ("1 thread", "2 threads", "0 epochs")


def test_train_help_shows_defaults():
    help_text = " ".join(CliRunner().invoke(main, ["train", "--help"]).output.split())
    for shown in ("[default: 30]", "[default: 32]", "[default: builtin:digits]", "[default: 128]",
                  "[default: relu]", "[default: momentum]", "[default: cpu]", "[default: float32]"):
        assert shown in help_text, shown


def test_plot_writes_the_format_its_suffix_names(small_run, tmp_path):
    pytest.importorskip("matplotlib")
    for name, magic in (("c.jpg", b"\xff\xd8\xff"), ("c.png", b"\x89PNG"), ("c.pdf", b"%PDF")):
        result = CliRunner().invoke(main, ["plot", str(small_run), "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        assert (tmp_path / name).read_bytes().startswith(magic)
    result = CliRunner().invoke(main, ["plot", str(small_run), "--out", str(tmp_path / "c.xyz")])
    assert result.exit_code == 2 and ".xyz is not an image format matplotlib writes" in result.output


# ---------------------------------------------------------------- eval of a run directory
def test_eval_of_a_run_directory_scores_its_held_out_test_rows(small_run):
    from sklearn.metrics import balanced_accuracy_score, f1_score

    result = CliRunner().invoke(main, ["eval", str(small_run), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    summary = json.loads((small_run / "summary.json").read_text())
    assert report["rows"] == summary["test_rows"] == 450
    assert report["accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-12)
    assert report["loss"] == pytest.approx(summary["test_loss"], rel=1e-6)
    # macro F1 and balanced accuracy from the confusion matrix, by their definitions
    confusion = np.array(report["confusion_matrix"])
    recall = np.diag(confusion) / confusion.sum(axis=1)
    precision = np.diag(confusion) / np.maximum(confusion.sum(axis=0), 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0)
    assert report["balanced_accuracy"] == pytest.approx(recall.mean(), abs=1e-12)
    assert report["macro_f1"] == pytest.approx(f1.mean(), abs=1e-12)
    y_true = np.repeat(np.arange(10), confusion.sum(axis=1))
    y_pred = np.concatenate([np.repeat(np.arange(10), row) for row in confusion])
    assert report["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"), abs=1e-12)
    assert report["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=1e-12)


def test_eval_of_a_model_file_needs_data(small_run):
    result = CliRunner().invoke(main, ["eval", str(small_run / "model.safetensors")])
    assert result.exit_code == 2 and "--data is needed with a model file" in result.output


# ---------------------------------------------------------------- one place for each fact
def test_the_cuda_status_is_stated_once():
    from numbamlp.cli.main import _schema_field
    from numbamlp.kernels import CUDA_STATUS

    assert CUDA_STATUS in _schema_field("backend").description
    root = Path(__file__).resolve().parents[1]
    for path in [root / "README.md", *root.glob("numbamlp/*.py"), *root.glob("kernels/*.py"), *root.glob("cli/*.py")]:
        assert "not yet device-resident" not in path.read_text(), path
