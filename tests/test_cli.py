"""The command line: precedence, run directories, eval, predict, info, plot, clean errors."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from naive import FEW, NUMBAMLP, QUICK, assert_one_line_error, labelled_in_the_middle, numbamlp, write_csv
from naive import REPORTS_X as X

from numbamlp import MLP, load_model
from numbamlp.config import TrainConfig
from numbamlp.data import prepare, spiral
from numbamlp.io import save_model
from numbamlp.trainer import Trainer

FAST = ["--epochs", "3", "--hidden", "16"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, cli):
    """A short real run on digits, shared by the read-only tests below."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    result = cli.invoke("train", "--out", out, "--val-fraction", "0.1", "--epochs", "8")
    assert result.exit_code == 0, result.output
    return out


def test_run_directory_contents(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {"config.json", "metrics.jsonl", "summary.json", "model.safetensors", "checkpoint"} <= names
    config = json.loads((trained_run / "config.json").read_text())
    assert config["epochs"] == 8 and config["data"]["val_fraction"] == 0.1
    metrics = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == list(range(1, 9))
    assert {"loss", "val_loss", "val_accuracy", "lr", "seconds"} <= set(metrics[0])
    summary = json.loads((trained_run / "summary.json").read_text())
    for key in ("test_accuracy", "test_loss", "val_accuracy", "epochs_run", "wall_s", "model_path"):
        assert key in summary
    assert summary["test_accuracy"] > 0.9 and summary["epochs_run"] == 8


def test_flags_override_the_config_file_and_only_passed_flags_do(tmp_path, cli):
    (tmp_path / "c.toml").write_text('epochs = 2\nbatch_size = 16\n[model]\nhidden = [8]\nactivation = "tanh"\n'
                                     '[optimizer]\nlr = 0.02\n')
    result = cli.invoke("train", "--config", tmp_path / "c.toml", "--activation", "gelu", "--out", tmp_path / "r",
                        "--quiet")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["model"]["activation"] == "gelu"  # flag beats file
    assert config["model"]["hidden"] == [8] and config["epochs"] == 2 and config["optimizer"]["lr"] == 0.02  # file beats default
    assert config["optimizer"]["momentum"] == 0.9  # default where neither says


def test_json_config_file_and_json_output(tmp_path, cli):
    (tmp_path / "c.json").write_text(json.dumps({"epochs": 2, "model": {"hidden": [8]}}))
    result = cli.invoke("train", "--config", tmp_path / "c.json", "--json", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["epochs_run"] == 2 and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "content,message",
    [('epochs = "many"', "epochs"), ("[optimizer]\nname = 'lbfgs'", "optimizer.name"),
     ("surprise = 1", "surprise"), ("epochs = ", "cannot parse config file"),
     ("epochs = 2\n[grid]\nlr = [0.01, 0.1]", "has a grid table, which `numbamlp sweep --config")],
)
def test_bad_config_files_are_one_line_errors(tmp_path, content, message, cli):
    (tmp_path / "c.toml").write_text(content)
    result = cli.invoke("train", "--config", tmp_path / "c.toml", "--out", tmp_path / "r")
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "r").exists()


def test_existing_run_is_not_overwritten_without_flag(trained_run, cli):
    before = (trained_run / "model.safetensors").read_bytes()
    result = cli.invoke("train", "--out", trained_run, *FAST)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (trained_run / "model.safetensors").read_bytes() == before


def test_resume_continues_to_the_same_weights(tmp_path, cli):
    common = ["--optimizer", "adam", "--lr", "0.003", "--hidden", "32", "--patience", "20", "--val-fraction", "0.1"]
    assert cli.invoke("train", *common, "--epochs", "5", "--out", tmp_path / "straight", "--quiet").exit_code == 0
    assert cli.invoke("train", *common, "--epochs", "2", "--out", tmp_path / "split", "--quiet").exit_code == 0
    result = cli.invoke("train", "--resume", tmp_path / "split", "--epochs", "5", "--quiet")
    assert result.exit_code == 0, result.output
    straight = load_model(tmp_path / "straight" / "model.safetensors")
    resumed = load_model(tmp_path / "split" / "model.safetensors")
    np.testing.assert_array_equal(straight.flat_params, resumed.flat_params)
    assert len((tmp_path / "split" / "metrics.jsonl").read_text().splitlines()) == 5


def test_resume_refuses_other_changes(trained_run, cli):
    result = cli.invoke("train", "--resume", trained_run, "--lr", "0.5")
    assert result.exit_code == 2 and "only --epochs may change" in result.output


def test_eval_reports_metrics_and_confusion_matrix(trained_run, cli):
    model = trained_run / "model.safetensors"
    human = cli.invoke("eval", model, "--data", "builtin:digits")
    assert human.exit_code == 0, human.output
    assert "confusion matrix" in human.output and "precision" in human.output
    report = json.loads(cli.invoke("eval", model, "--data", "builtin:digits", "--json").output)
    assert report["rows"] == 1797 and report["accuracy"] > 0.9
    assert np.array(report["confusion_matrix"]).sum() == 1797
    assert len(report["per_class"]) == 10


def test_predict_writes_csv_with_probabilities(trained_run, tmp_path, cli):
    model = load_model(trained_run / "model.safetensors")
    from sklearn.datasets import load_digits

    X = load_digits().data[:20]
    np.savez(tmp_path / "x.npz", X=X, y=np.zeros(20, dtype=int))
    out = tmp_path / "pred.csv"
    result = cli.invoke("predict", trained_run / "model.safetensors", "--data", tmp_path / "x.npz", "--proba",
                        "--out", out)
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0].split(",")[:2] == ["prediction", "p_0"] and len(lines) == 21
    predicted = [int(line.split(",")[0]) for line in lines[1:]]
    np.testing.assert_array_equal(predicted, model.predict(X))  # the model standardises raw X itself
    probabilities = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_predict_and_eval_reject_the_wrong_feature_count(trained_run, tmp_path, cli):
    np.savez(tmp_path / "bad.npz", X=np.ones((3, 5)), y=np.zeros(3, dtype=int))
    for command in ("predict", "eval"):
        result = cli.invoke(command, trained_run / "model.safetensors", "--data", tmp_path / "bad.npz")
        assert result.exit_code == 2 and "5 features but the model expects 64" in result.output


def test_csv_string_labels_train_eval_predict(tmp_path, cli):
    X, y = spiral(n_per_class=40)
    names = np.array(["red", "green", "blue"])[y]
    rows = ["x1,x2,colour"] + [f"{a:.6f},{b:.6f},{c}" for (a, b), c in zip(X, names)]
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    result = cli.invoke("train", "--data", tmp_path / "s.csv", "--epochs", "60", "--hidden", "32",
                        "--out", tmp_path / "r", "--quiet")
    assert result.exit_code == 0, result.output
    model_path = tmp_path / "r" / "model.safetensors"
    report = json.loads(cli.invoke("eval", model_path, "--data", tmp_path / "s.csv", "--json").output)
    assert {row["class"] for row in report["per_class"]} == {"red", "green", "blue"}
    predicted = cli.invoke("predict", model_path, "--data", tmp_path / "s.csv").output.split()
    assert predicted[0] == "prediction" and set(predicted[1:]) <= {"red", "green", "blue"}
    assert np.mean(np.array(predicted[1:]) == names) == pytest.approx(report["accuracy"])


def test_info_reports_backends_threads_and_blas(cli):
    result = cli.invoke("info", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["backends"][0].startswith("cpu: available")
    assert any(b.startswith("cuda: ") for b in report["backends"])
    assert report["numba_threads"] >= 1 and report["threading_layer"]
    assert report["blas"] and report["compile_cache"]


def test_plot_without_matplotlib_says_how_to_install(trained_run, tmp_path, monkeypatch, cli):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result = cli.invoke("plot", trained_run, "--out", tmp_path / "c.png")
    assert result.exit_code == 2 and "pip install 'numbamlp[plot]'" in result.output
    assert not (tmp_path / "c.png").exists()


def test_plot_writes_a_png(trained_run, tmp_path, cli):
    pytest.importorskip("matplotlib", reason="plot is an optional extra (pip install '.[plot]')")
    result = cli.invoke("plot", trained_run, "--out", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_a_directory_without_metrics(tmp_path, cli):
    result = cli.invoke("plot", tmp_path)
    assert result.exit_code == 2 and "no metrics.jsonl" in result.output


def test_validate_flag_reports_the_gradient_error(tmp_path, cli):
    result = cli.invoke("train", "--validate", *FAST, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("gradient check"))
    assert float(line.split()[-1]) < 1e-4


def test_help_documents_every_option():
    result = subprocess.run([*NUMBAMLP, "train", "--help"], capture_output=True, text=True)
    for flag in ("--config", "--data", "--hidden", "--activation", "--optimizer", "--lr", "--epochs",
                 "--batch-size", "--backend", "--dtype", "--seed", "--out", "--resume", "--validate",
                 "--json", "--quiet", "--test", "--label-column"):
        assert flag in result.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["eval", "missing.safetensors", "--data", "builtin:iris"], "file not found: missing.safetensors"),
        (["predict", "missing.safetensors", "--data", "builtin:iris"], "file not found"),
        (["train", "--config", "nope.toml"], "config file not found"),
        (["train", "--resume", "nowhere"], "nowhere is not a run directory"),
        (["plot", "nowhere"], "no metrics.jsonl"),
    ],
)
def test_subprocess_errors_are_one_line_without_traceback(args, message, tmp_path):
    run = subprocess.run([*NUMBAMLP, *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("command", [["train", *FAST, "--quiet"], ["info"]])
def test_the_console_script_collects_garbage_again_once_started(command, tmp_path):
    """command_line holds the garbage collector off through start-up (a speed-up); it must
    come back on, or a long run would never free a reference cycle."""
    code = ("import atexit, gc, sys\n"
            "atexit.register(lambda: print('collector on:', gc.isenabled(), 'frozen:', gc.get_freeze_count() > 0))\n"
            "from numbamlp.cli.main import command_line\n"
            "command_line()\n")
    run = subprocess.run([sys.executable, "-c", code, *command, *(["--out", tmp_path / "run"] if command[0] == "train" else [])],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "collector on: True frozen: True"


@pytest.mark.parametrize("args", [[], ["jobs"]])
def test_a_group_without_its_command_shows_its_help_not_an_error_line(args):
    """`numbamlp` (or `numbamlp jobs`) alone prints the help, as click does, without the
    "Error: " that a real usage error gets."""
    run = subprocess.run([*NUMBAMLP, *args], capture_output=True, text=True)
    assert run.returncode != 0 or "Usage:" in run.stdout  # (click 8.1 exits 0, 8.2 and later 2)
    shown = run.stdout + run.stderr
    assert shown.startswith("Usage: ") and f"{' '.join(args)} [OPTIONS] COMMAND [ARGS]".strip() in shown
    assert "Error" not in shown


def _churn_csv(path, labels=("churn", "stay")):
    rng = np.random.default_rng(0)
    rows = ["a,b,label"]
    for i in range(60):
        y = labels[0] if i % 4 == 0 else labels[1]
        rows.append(f"{rng.normal():.3f},{rng.normal() + (y == labels[0]):.3f},{y}")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("labels, value, expected", [
    (("churn", "stay"), "churn=5,stay=1", {"churn": 5.0, "stay": 1.0}),
    (("churn", "stay"), '{"churn": 5}', {"churn": 5.0}),
    (("churn", "stay"), " churn = 5 ", {"churn": 5.0}),
    ((1, 0), "1=5,0=0.5", {"1": 5.0, "0": 0.5}),  # integer labels: named by their text, as in a config file
    (("churn", "stay"), "balanced", "balanced"),
])
def test_class_weight_takes_a_mapping_on_the_command_line(tmp_path, labels, value, expected, cli):
    data = _churn_csv(tmp_path / "churn.csv", labels)
    result = cli.invoke("train", "--data", data, "--class-weight", value, "--epochs", "1", "--hidden", "8",
                        "--out", tmp_path / "r", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r" / "config.json").read_text())["class_weight"] == expected
    assert load_model(tmp_path / "r").metadata["config"]["class_weight"] == expected


def test_class_weight_mapping_changes_the_training(tmp_path, cli):
    data = _churn_csv(tmp_path / "churn.csv")
    losses = []
    for name, extra in (("plain", []), ("weighted", ["--class-weight", "churn=5,stay=1"]),
                        ("json", ["--class-weight", '{"churn": 5, "stay": 1}'])):
        result = cli.invoke("train", "--data", data, "--epochs", "2", "--hidden", "8", "--out", tmp_path / name,
                            "--json", *extra)
        assert result.exit_code == 0, result.output
        lines = (tmp_path / name / "metrics.jsonl").read_text().splitlines()
        losses.append([json.loads(line)["loss"] for line in lines])
    assert losses[1] != losses[0]  # the weights reach the loss
    assert losses[1] == losses[2]  # and both spellings are one mapping


@pytest.mark.parametrize("value, message", [
    ("churn:5", "expected 'balanced', label=weight pairs like churn=5,stay=1, or a JSON object"),
    ("churn=x", "label=weight pairs like churn=5,stay=1"),
    ("=5", "label=weight pairs like churn=5,stay=1"),
    ("churn=5,,stay=1", "label=weight pairs like churn=5,stay=1"),
    ("churn=5,churn=1", "class 'churn' is given two weights"),
    ("{churn: 5}", "is not valid JSON"),
    ('{"churn": "5"}', "the weight of class 'churn' must be a finite number >= 0"),
    ("churn=-1", "the weight of class 'churn' must be a finite number >= 0"),
    ("nope=2", "class_weight names unknown classes: nope"),
])
def test_a_bad_class_weight_is_one_line_naming_the_accepted_forms(tmp_path, value, message):
    data = _churn_csv(tmp_path / "churn.csv")
    result = subprocess.run([*NUMBAMLP, "train", "--data", str(data), "--class-weight", value, "--epochs", "1",
                             "--hidden", "8", "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_predict_keeps_the_columns_asked_for_beside_the_predictions(tmp_path, cli):
    """The model does not use an id column, and the user wants it beside each prediction."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    rows = ["a,b,label"] + [f"{a:.5f},{b:.5f},{int(a > 0)}" for a, b in X]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    assert cli.invoke("train", "--data", tmp_path / "train.csv", "--epochs", "2", "--out", tmp_path / "r",
                      "--quiet").exit_code == 0
    ids = ["id,b,a"] + [f"house-{i},{b:.5f},{a:.5f}" for i, (a, b) in enumerate(X)]
    (tmp_path / "new.csv").write_text("\n".join(ids) + "\n")
    alone = cli.invoke("predict", tmp_path / "r", "--data", tmp_path / "new.csv").output.splitlines()
    kept = cli.invoke("predict", tmp_path / "r", "--data", tmp_path / "new.csv", "--keep", "id").output.splitlines()
    assert kept[0] == "id,prediction" and len(kept) == 61
    assert kept[1:] == [f"house-{i},{label}" for i, label in enumerate(alone[1:])]
    refused = cli.invoke("predict", tmp_path / "r", "--data", tmp_path / "new.csv", "--keep", "nope")
    assert refused.exit_code == 2 and "has no column 'nope', named by --keep" in refused.output
    refused = cli.invoke("predict", tmp_path / "r", "--data", "builtin:iris", "--keep", "id")
    assert refused.exit_code == 2 and "--keep names columns of a CSV or Parquet file" in refused.output


# ---------------------------------------------------------------- --header / --no-header
def _spectra_files(folder):
    """A training file whose header names the features by wavelength (400, 410, 420) over text
    grades, which detection reads as a data row; a file of new rows without a header; the
    same rows under the names in another order, beside an id."""
    rng = np.random.default_rng(0)
    X = np.round(rng.normal(size=(80, 3)), 4)
    grades = np.where(X[:, 0] + X[:, 2] > 0, "high", "low")
    (folder / "train.csv").write_text("400,410,420,grade\n" + "".join(
        f"{a},{b},{c},{g}\n" for (a, b, c), g in zip(X, grades)))
    (folder / "bare.csv").write_text("".join(f"{a},{b},{c}\n" for a, b, c in X[:10]))
    (folder / "named.csv").write_text("id,420,400,410\n" + "".join(f"{i},{c},{a},{b}\n" for i, (a, b, c) in
                                                                 enumerate(X[:10])))
    (folder / "labelled.csv").write_text("".join(f"{a},{b},{c},{g}\n" for (a, b, c), g in zip(X[:10], grades)))
    return folder


def _one_line_refusal(args, cwd):
    run = subprocess.run([*NUMBAMLP, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""
    return run.stderr


@pytest.fixture(scope="module")
def spectra_run(tmp_path_factory, cli):
    folder = _spectra_files(tmp_path_factory.mktemp("spectra"))
    result = cli.invoke("train", "--data", folder / "train.csv", "--header", "--epochs", "2", "--hidden", "8",
                        "--out", folder / "run", "--quiet")
    assert result.exit_code == 0, result.output
    return folder


def test_train_header_flag_names_the_features_by_a_row_of_numbers(spectra_run):
    model = load_model(spectra_run / "run")
    assert model.feature_names == ["400", "410", "420"] and model.classes.tolist() == ["high", "low"]
    assert json.loads((spectra_run / "run" / "config.json").read_text())["data"]["header"] is True


@pytest.mark.parametrize("value", ["1", '"yes"'])
def test_the_header_setting_of_a_config_file_is_true_or_false(tmp_path, value, cli):
    """(A number or text would be read as a boolean, as pydantic reads them: 1 and "yes" mean true.)"""
    (tmp_path / "c.toml").write_text(f"[data]\nheader = {value}\n")
    result = cli.invoke("train", "--config", tmp_path / "c.toml", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "data.header: Input should be a valid boolean" in result.output, result.output
    assert not (tmp_path / "r").exists()


def test_predict_refuses_a_first_row_it_cannot_tell_and_takes_the_flags(spectra_run, cli):
    """Numbers over numbers, for a model named by numbers: a header lacking some names, or a
    data row? Refused, with the two ways to say; never guessed."""
    folder = spectra_run
    said = _one_line_refusal(["predict", folder / "run", "--data", folder / "bare.csv", "--out", folder / "p.csv"],
                             folder)
    assert f"{folder / 'bare.csv'}: " in said and "--header or --no-header" in said
    assert not (folder / "p.csv").exists()
    bare = cli.invoke("predict", folder / "run", "--data", folder / "bare.csv", "--no-header")
    named = cli.invoke("predict", folder / "run", "--data", folder / "named.csv")  # (the names: a header, untold)
    assert bare.exit_code == 0 and named.exit_code == 0, bare.output + named.output
    assert len(bare.output.splitlines()) == 11 and bare.output == named.output
    said = _one_line_refusal(["predict", folder / "run", "--data", folder / "bare.csv", "--header"], folder)
    assert "has no column '400'" in said


def test_eval_takes_the_header_flags(spectra_run, cli):
    folder = spectra_run
    told = cli.invoke("eval", folder / "run", "--data", folder / "labelled.csv", "--no-header", "--json")
    assert told.exit_code == 0, told.output
    assert json.loads(told.output)["rows"] == 10
    headed = cli.invoke("eval", folder / "run", "--data", folder / "train.csv", "--json")  # (its names: a header)
    assert headed.exit_code == 0 and json.loads(headed.output)["rows"] == 80, headed.output
    said = _one_line_refusal(["eval", folder / "run", "--data", folder / "train.csv", "--no-header"], folder)
    assert "labels the model does not know: grade" in said  # (the header read as a data row)
    said = _one_line_refusal(["eval", folder / "run", "--header"], folder)  # (its held-out rows: read as trained)
    assert "--header/--no-header are for --data" in said


def test_jobs_predict_takes_the_header_flags(spectra_run, monkeypatch, cli):
    from numbamlp.client import Client

    folder = spectra_run
    model = load_model(folder / "run")
    monkeypatch.setattr(Client, "model_metadata", lambda self, job: model.metadata)
    monkeypatch.setattr(Client, "predict", lambda self, job, X, proba=False, columns=None: {
        "labels": model.predict(np.asarray(X)).tolist(), "proba": None, "values": None})
    served = cli.invoke("jobs", "predict", "job-1", "--data", folder / "bare.csv", "--no-header")
    assert served.exit_code == 0 and served.output == cli.invoke("predict", folder / "run", "--data", folder / "named.csv").output
    refused = cli.invoke("jobs", "predict", "job-1", "--data", folder / "bare.csv")
    assert refused.exit_code == 2 and "--header or --no-header" in refused.output
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"400": ["0.5"], "410": [0.5], "420": [0.5]}), folder / "text.parquet")
    refused = cli.invoke("jobs", "predict", "job-1", "--data", folder / "text.parquet")
    assert refused.exit_code == 2 and "feature column '400' is string here but float64 in training" in refused.output


@pytest.mark.parametrize("args", [
    ["train", "--data", "builtin:iris", "--header", "--out", "r"],
    ["predict", "MODEL", "--data", "d.npz", "--no-header"],
    ["eval", "MODEL", "--data", "d.npz", "--header"],
])
def test_header_flags_on_data_that_is_not_csv_are_refused(spectra_run, tmp_path, args):
    np.savez(tmp_path / "d.npz", X=np.ones((4, 3)), y=np.arange(4) % 2)
    args = [str(spectra_run / "run") if a == "MODEL" else a for a in args]
    said = _one_line_refusal(args, tmp_path)
    assert "--header/--no-header say whether a CSV file's first row is a header" in said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


def test_predict_refuses_a_parquet_feature_whose_kind_changed(tmp_path, cli):
    """An age column trained as numbers and given as text: refused by name, both dtypes."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from numbamlp import MLP

    model = MLP([2, 4, 2], seed=0)
    model.feature_names, model.feature_dtypes = ["age", "income"], ["int64", "float64"]
    save_model(model, tmp_path / "m.safetensors")
    pq.write_table(pa.table({"age": ["30", "41"], "income": [2.5, 1.5]}), tmp_path / "new.parquet")
    said = _one_line_refusal(["predict", tmp_path / "m.safetensors", "--data", tmp_path / "new.parquet", "--out",
                              tmp_path / "p.csv"], tmp_path)
    assert "feature column 'age' is string here but int64 in training" in said
    assert not (tmp_path / "p.csv").exists()
    pq.write_table(pa.table({"age": [30.0, 41.0], "income": [2, 1]}), tmp_path / "floats.parquet")
    assert cli.invoke("predict", tmp_path / "m.safetensors", "--data", tmp_path / "floats.parquet").exit_code == 0


# ---------------------------------------------------------------- where a run writes: directories, --out, --overwrite
@pytest.fixture(scope="module")
def small_run(tmp_path_factory, cli):
    """A short run on digits with names for the read-only tests."""
    out = tmp_path_factory.mktemp("runs") / "small"
    result = cli.invoke("train", "--out", out, *QUICK)
    assert result.exit_code == 0, result.output
    return out


def test_overwrite_replaces_the_old_run_rather_than_mixing_with_it(tmp_path, cli):
    """Reported 2026-11-30 by a new user (first look); fixed in 207580e."""
    run = tmp_path / "run"
    assert cli("train", "--data", "builtin:iris", "--out", run, *FEW)[0] == 0
    assert (run / "summary.json").exists()
    code, output = cli("train", "--data", "builtin:iris", "--lr", "1e30", "--out", run, "--overwrite", *FEW)
    assert code == 1 and "diverged" in output
    assert not any((run / name).exists() for name in ("summary.json", "model.safetensors", "metrics.jsonl"))


def test_train_refuses_a_sweep_directory_even_with_overwrite(tmp_path, cli):
    """Reported 2026-11-30 by a new user (second look); fixed in f0b4213."""
    assert cli("sweep", "--data", "builtin:iris", "--grid", "lr=0.1", "--out", tmp_path / "s", *FEW)[0] == 0
    code, output = cli("train", "--data", "builtin:iris", "--out", tmp_path / "s", "--overwrite", *FEW)
    assert code == 2 and "holds a sweep, not a run" in output
    assert (tmp_path / "s" / "results.csv").exists() and not (tmp_path / "s" / "model.safetensors").exists()


def test_predict_out_dash_is_standard_output(tmp_path, monkeypatch, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 83b266c."""
    assert cli("train", "--data", "builtin:iris", "--out", tmp_path / "run", *FEW)[0] == 0
    monkeypatch.chdir(tmp_path)
    code, output = cli("predict", tmp_path / "run", "--data", "builtin:iris", "--out", "-")
    assert code == 0 and output.splitlines()[0] == "prediction" and len(output.splitlines()) == 151
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("args,phrase", [
    (["--out", "/proc/numbamlp-test/run"], "cannot create files in /proc"),
    (["--out", "afile/run"], "afile is a file, not a folder"),
    (["--out", "afile"], "Directory 'afile' is a file"),  # click.Path's own check
])
def test_train_refuses_an_unwritable_out_before_any_work(tmp_path, args, phrase):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    (tmp_path / "afile").write_text("precious")
    run = numbamlp("train", *QUICK, *args, cwd=tmp_path)
    assert_one_line_error(run, 2, phrase)
    assert (tmp_path / "afile").read_text() == "precious"
    assert not (tmp_path / "runs").exists()


def test_predict_and_plot_refuse_unwritable_outputs(small_run, tmp_path):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    run = numbamlp("predict", small_run, "--data", "builtin:digits", "--out", "/nonexistent/dir/p.csv", cwd=tmp_path)
    assert_one_line_error(run, 2, "folder /nonexistent/dir does not exist")
    run = numbamlp("plot", small_run, "--out", "/nonexistent/x.png", cwd=tmp_path)
    assert_one_line_error(run, 2, "folder /nonexistent does not exist")
    run = numbamlp("predict", small_run, "--data", "builtin:digits", "--out", tmp_path, cwd=tmp_path)
    assert_one_line_error(run, 2, "is a directory")


def test_predict_does_not_clobber_an_existing_file_without_overwrite(small_run, tmp_path, cli):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    target = tmp_path / "p.csv"
    target.write_text("keep me")
    result = cli.invoke("predict", small_run, "--data", "builtin:digits", "--out", target)
    assert result.exit_code == 2 and "exists; choose another name or pass --overwrite" in result.output
    assert target.read_text() == "keep me"
    result = cli.invoke("predict", small_run, "--data", "builtin:digits", "--out", target, "--overwrite")
    assert result.exit_code == 0, result.output
    assert target.read_text().startswith("prediction\n")


def test_default_run_directories_are_claimed_atomically(tmp_path, monkeypatch):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
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


# ---------------------------------------------------------------- a run's data, its summary and resume
def test_too_few_rows_for_the_held_out_splits_is_said_before_training(tmp_path, cli):
    """Reported 2026-11-30 by a new user (first look); fixed in 207580e."""
    two = write_csv(tmp_path / "two.csv", ["a", "label"], [[1, 0], [2, 1]])
    code, output = cli("train", "--data", two, "--out", tmp_path / "run", *FEW)
    assert code == 2 and "too few to hold out a test split" in output
    four = write_csv(tmp_path / "four.csv", ["a", "label"], [[1, 0], [2, 1], [3, 0], [4, 1]])
    code, output = cli("train", "--data", four, "--val-fraction", "0.1", "--out", tmp_path / "run", *FEW)
    assert code == 2 and "too few to hold out a validation split" in output
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="too few to hold out a validation split for early stopping"):
        Trainer({"epochs": 1, "early_stopping": {"patience": 2}}).fit(X[:2], [0, 1])


def test_a_run_names_its_data_by_absolute_path_and_notices_when_it_changed(tmp_path, monkeypatch, cli):
    """Reported 2026-11-30 by a new user (first look); fixed in 207580e."""
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


def test_resume_refuses_fewer_epochs_than_the_run_has_had(tmp_path, cli):
    """Reported 2026-11-30 by a new user (second look); fixed in d82d464."""
    run = tmp_path / "run"
    assert cli("train", "--data", "builtin:iris", "--epochs", "4", "--out", run, *FEW[2:])[0] == 0
    config = (run / "config.json").read_text()
    code, output = cli("train", "--resume", run, "--epochs", "1")
    assert code == 2 and "has trained 4 epochs: --epochs must be at least 4" in output
    assert (run / "config.json").read_text() == config  # not rewritten to 1 epoch


def test_a_run_being_trained_is_not_resumed_a_second_time(tmp_path, cli):
    """Reported 2026-11-30 by a new user (second look); fixed in d82d464."""
    from numbamlp.run import _run_lock

    run = tmp_path / "run"
    assert cli("train", "--data", "builtin:iris", "--out", run, *FEW)[0] == 0
    with _run_lock(run):  # (as a first --resume holds it while it trains)
        code, output = cli("train", "--resume", run, "--epochs", "3")
    assert code == 2 and "is in use: another numbamlp run is training in it now" in output
    assert cli("train", "--resume", run, "--epochs", "3", "--quiet")[0] == 0


def test_files_say_null_where_a_value_is_not_finite_and_stderr_stays_one_line(tmp_path, cli):
    """Reported 2026-11-30 by a new user (second look); fixed in d82d464."""
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


def test_summary_describes_the_saved_best_weights(tmp_path, cli):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    out = tmp_path / "es"
    args = ["train", "--patience", "4", "--val-fraction", "0.1", "--optimizer", "adam", "--lr", "0.01",
            "--seed", "1", "--hidden", "32", "--epochs", "40", "--out", str(out), "--quiet"]
    result = cli.invoke(*args)
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


# ---------------------------------------------------------------- predict and eval
def test_predict_skips_the_label_column_the_model_was_trained_with(tmp_path, cli):
    """Reported 2026-11-30 by a new user (first look); fixed in 207580e."""
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


def test_predict_and_eval_refuse_a_model_whose_outputs_are_not_finite(tmp_path, cli):
    """Reported 2026-11-30 by a new user (second look); fixed in 572c187."""
    model = MLP([4, 8, 3], dtype="float32")
    model.flat_params[:] = 3e38  # finite weights whose products overflow
    model.classes = np.array([0, 1, 2])
    save_model(model, tmp_path / "blown.safetensors")
    for command in (["predict", tmp_path / "blown.safetensors", "--data", "builtin:iris"],
                    ["eval", tmp_path / "blown.safetensors", "--data", "builtin:iris"]):
        code, output = cli(*command)
        assert code == 2 and "outputs are not finite for 150 of 150 rows" in output, output


def test_eval_of_data_lacking_a_class_prints_no_warning(tmp_path, cli):
    """Reported 2026-11-30 by a new user (second look); fixed in d82d464."""
    assert cli("train", "--data", "builtin:iris", "--out", tmp_path / "run", *FEW)[0] == 0
    np.savez(tmp_path / "one.npz", X=np.random.default_rng(0).normal(size=(6, 4)), y=np.zeros(6, int))
    code, output = cli("eval", tmp_path / "run", "--data", tmp_path / "one.npz", "--json")
    assert code == 0 and "Warning" not in output and len(output.strip().splitlines()) == 1


def test_eval_scores_by_the_label_column_the_model_was_trained_with(tmp_path, monkeypatch, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 6d94f9b.

    eval --data took the last column as the labels, though the model was trained with a
    named one in the middle: a regressor's R² came out as -9e11, exit 0."""
    labelled_in_the_middle(tmp_path)
    monkeypatch.chdir(tmp_path)
    for task in ("regression", "classification"):
        run = tmp_path / task
        assert cli("train", "--task", task, "--data", "mid.csv", "--label-column", "label", "--out", run, *FEW)[0] == 0
        code, default = cli("eval", run, "--data", "mid.csv")
        assert code == 0, default
        assert default == cli("eval", run, "--data", "mid.csv", "--label-column", "label")[1]


def test_eval_and_predict_refuse_a_label_column_their_data_cannot_have(tmp_path, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 6d94f9b."""
    assert cli("train", "--data", "builtin:iris", "--out", tmp_path / "run", *FEW)[0] == 0
    for command in ("eval", "predict"):
        code, output = cli(command, tmp_path / "run", "--data", "builtin:iris", "--label-column", "3")
        assert code == 2 and "label_column names a column of a CSV or Parquet file" in output, output


def test_class_names_that_need_quoting_survive_predict_proba(tmp_path, cli):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    rng = np.random.default_rng(0)
    names = np.array(["set,osa", 'versi"color', "virginica"])
    X, y = rng.normal(size=(45, 2)), np.arange(45) % 3
    with open(tmp_path / "d.csv", "w", newline="") as f:
        table = csv.writer(f)
        table.writerow(["a", "b", "species"])
        table.writerows([[*row, names[label]] for row, label in zip(X, y)])
    assert cli.invoke("train", "--data", tmp_path / "d.csv", "--out", tmp_path / "r", *QUICK).exit_code == 0
    result = cli.invoke("predict", tmp_path / "r", "--data", tmp_path / "d.csv", "--proba")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.output)))
    assert rows[0] == ["prediction", "p_set,osa", 'p_versi"color', "p_virginica"]
    assert all(len(row) == 4 and row[0] in names for row in rows[1:]) and len(rows) == 46


def test_eval_of_a_run_directory_scores_its_held_out_test_rows(small_run, cli):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    from sklearn.metrics import balanced_accuracy_score, f1_score

    result = cli.invoke("eval", small_run, "--json")
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


def test_eval_reports_the_metrics_for_imbalanced_classes_as_scikit_learn_computes_them(tmp_path, cli):
    """Issue 27: eval and summary.json carry ROC AUC, average precision, F1 (of the positive
    class, with two), log loss and balanced accuracy, scikit-learn's on the model's probabilities."""
    from sklearn import metrics

    from numbamlp.run import held_out_test_split

    assert cli("train", "--data", "builtin:breast_cancer", "--out", tmp_path / "run", *QUICK)[0] == 0
    report = json.loads(cli.invoke("eval", tmp_path / "run", "--json").output)
    X_test, y_test = held_out_test_split(tmp_path / "run")
    P = load_model(tmp_path / "run").predict_proba(X_test)
    expected = {"roc_auc": metrics.roc_auc_score(y_test, P[:, 1]),
                "average_precision": metrics.average_precision_score(y_test, P[:, 1]),
                "f1": metrics.f1_score(y_test, P.argmax(axis=1)), "log_loss": metrics.log_loss(y_test, P),
                "balanced_accuracy": metrics.balanced_accuracy_score(y_test, P.argmax(axis=1))}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert report["positive_class"] == 1 and {"macro_f1", "per_class", "confusion_matrix"} <= set(report)
    for name, value in expected.items():
        assert report[name] == pytest.approx(value, rel=1e-5), name
        assert summary[f"test_{name}"] == pytest.approx(value, rel=1e-5), name
    human = cli("eval", tmp_path / "run")[1].splitlines()
    assert human[1] == (f"log loss {report['log_loss']:.4f}  F1 {report['f1']:.4f}  ROC AUC {report['roc_auc']:.4f}  "
                        f"average precision {report['average_precision']:.4f}  (of class 1, the positive class)")


def test_eval_of_data_with_one_class_says_the_ranking_metrics_are_undefined(small_run, tmp_path, cli):
    np.savez(tmp_path / "one.npz", X=np.random.default_rng(0).normal(size=(6, 64)), y=np.full(6, 3))
    report = json.loads(cli.invoke("eval", small_run, "--data", tmp_path / "one.npz", "--json").output)
    assert report["roc_auc"] is None and report["average_precision"] is None and "f1" not in report
    code, output = cli("eval", small_run, "--data", tmp_path / "one.npz")
    assert code == 0 and "ROC AUC undefined  average precision undefined" in output, output


def test_eval_of_a_model_file_needs_data(small_run, cli):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    result = cli.invoke("eval", small_run / "model.safetensors")
    assert result.exit_code == 2 and "--data is needed with a model file" in result.output


# ---------------------------------------------------------------- plot
def test_plot_keeps_an_existing_default_image(tmp_path, cli):
    """Reported 2026-11-30 by a new user (first look); fixed in 207580e."""
    pytest.importorskip("matplotlib")
    assert cli("train", "--data", "builtin:iris", "--out", tmp_path / "run", *FEW)[0] == 0
    (tmp_path / "run" / "curves.png").write_text("mine")
    code, output = cli("plot", tmp_path / "run")
    assert code == 2 and "exists; choose another name or pass --overwrite" in output
    assert (tmp_path / "run" / "curves.png").read_text() == "mine"
    assert cli("plot", tmp_path / "run", "--overwrite")[0] == 0


def test_plot_draws_a_regressors_validation_r2(tmp_path, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 6d94f9b."""
    pytest.importorskip("matplotlib")
    assert cli("train", "--task", "regression", "--data", "builtin:diabetes", "--val-fraction", "0.1",
               "--out", tmp_path / "run", *FEW)[0] == 0
    code, output = cli("plot", tmp_path / "run")
    assert code == 0, output
    assert (tmp_path / "run" / "curves.png").stat().st_size > 0


def test_plot_writes_the_format_its_suffix_names(small_run, tmp_path, cli):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    pytest.importorskip("matplotlib")
    for name, magic in (("c.jpg", b"\xff\xd8\xff"), ("c.png", b"\x89PNG"), ("c.pdf", b"%PDF")):
        result = cli.invoke("plot", small_run, "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
        assert (tmp_path / name).read_bytes().startswith(magic)
    result = cli.invoke("plot", small_run, "--out", tmp_path / "c.xyz")
    assert result.exit_code == 2 and ".xyz is not an image format matplotlib writes" in result.output


# ---------------------------------------------------------------- messages, progress and help
def test_infinite_settings_are_bad_input(cli):
    """Reported 2026-11-30 by a new user (first look); fixed in 207580e."""
    code, output = cli("train", "--data", "builtin:iris", "--lr", "inf", *FEW)
    assert code == 2 and "--lr (optimizer.lr): Input should be a finite number" in output


@pytest.mark.parametrize("args, phrase", [
    (["gradcheck", "--seed", "-1"], "--seed"),
    (["train", "--class-weight", "often", "--quiet"], "'--class-weight': expected 'balanced', label=weight pairs"),
    (["serve", "--port", "99999"], "--port"),
    (["serve", "--max-request-mb", "-1"], "--max-request-mb"),
    (["jobs", "--url", "notaurl", "list"], "--url: 'notaurl' is not an http:// or https:// address"),
    (["train", "--hidden", "4,,4", "--quiet"], "--hidden"),
    (["sweep", "--grid", "lr=0.1,", "--quiet"], "has an empty value"),
])
def test_bad_options_name_themselves(args, phrase, cli):
    """Reported 2026-11-30 by a new user (first look); fixed in 207580e."""
    code, output = cli(*args)
    assert code == 2 and phrase in output, output


def test_a_reader_that_leaves_early_does_not_stop_the_run(tmp_path):
    """Reported 2026-11-30 by a new user (first look); fixed in 333230a.

    `numbamlp train | head -1`: the pipe closes after the first line; the run goes on to
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


def test_a_terminal_that_cannot_redraw_gets_plain_epoch_lines(monkeypatch):
    """Reported 2026-11-30 by a new user (second look); fixed in f0b4213."""
    import sys

    from numbamlp.cli.progress import progress_display

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("TERM", "xterm")
    assert type(progress_display(3)).__name__ == "ProgressBar"
    monkeypatch.setenv("TERM", "dumb")
    assert type(progress_display(3)).__name__ == "EpochLines"


def test_numbas_debugging_switch_gets_one_line_naming_the_numpy_backend(tmp_path):
    """Reported 2026-11-30 by a new user (third look); fixed in 6d94f9b."""
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


def test_info_counts_the_cores_this_process_may_use():
    """Reported 2026-11-30 by a new user (third look); fixed in 83b266c."""
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
    """Reported 2026-11-30 by a new user (third look); fixed in 83b266c."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "numbamlp.cli.main", "bench", *args], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.strip() == f"Error: {phrase}", done.stderr


def test_an_unexpected_exception_is_one_line_and_exit_1_unless_debugging(monkeypatch, tmp_path, cli):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    import numbamlp.run

    def broken(*args, **kwargs):
        raise RuntimeError("something inside broke\nsecond line")

    monkeypatch.setattr(numbamlp.run, "train_run", broken)
    monkeypatch.delenv("NUMBAMLP_DEBUG", raising=False)
    result = cli.invoke("train", "--out", tmp_path / "r")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: unexpected RuntimeError: something inside broke (run with --debug or NUMBAMLP_DEBUG=1 for the traceback)"
    ]
    debug = cli.invoke("--debug", "train", "--out", tmp_path / "r")
    assert isinstance(debug.exception, RuntimeError)  # raised through to the traceback
    monkeypatch.setenv("NUMBAMLP_DEBUG", "1")
    assert isinstance(cli.invoke("train", "--out", tmp_path / "r").exception, RuntimeError)
    monkeypatch.delenv("NUMBAMLP_DEBUG")
    again = cli.invoke("train", "--out", tmp_path / "r")  # --debug does not stick
    assert again.exit_code == 1 and not isinstance(again.exception, RuntimeError)


@pytest.mark.parametrize("args,phrase", [
    (["--seed", "-5"], "--seed: Input should be greater than or equal to 0"),
    (["--optimizer", "adam", "--momentum", "0.5"], "--momentum (optimizer.momentum): momentum does not apply to optimizer 'adam'"),
    (["--lr", "0"], "--lr (optimizer.lr): Input should be greater than 0"),
])
def test_validation_messages_name_the_option(args, phrase, cli):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    result = cli.invoke("train", *args)
    assert result.exit_code == 2
    assert phrase in result.output, result.output


def test_config_file_errors_name_the_key(tmp_path, cli):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    (tmp_path / "c.toml").write_text('[optimizer]\nname = "sgd"\nbeta1 = 0.8\n')
    result = cli.invoke("train", "--config", tmp_path / "c.toml")
    assert result.exit_code == 2
    assert "optimizer.beta1: beta1 does not apply to optimizer 'sgd' (only to adam, adamw)" in result.output


def test_the_progress_bar_of_a_resumed_run_starts_at_its_epoch(capsys):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    from numbamlp.cli.progress import ProgressBar

    bar = ProgressBar(45)
    bar.on_progress(41, 50, 100, 0.25)  # resumed at epoch 41 of 45
    bar.on_progress(41, 100, 100, 0.2)
    bar.on_epoch_end(41, {"loss": 0.2})
    bar.close()
    frames = capsys.readouterr().out.split("\r")
    assert frames[1].startswith("epoch 41/45 [") and " 90%" in frames[1] and "eta --:--" in frames[1]
    assert " 91%" in frames[2] and "loss 0.2000" in frames[2] and "eta 00:00" in frames[2]


def test_validate_prints_its_line_before_the_first_epoch(tmp_path):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    run = numbamlp("train", "--validate", "--epochs", "2", "--hidden", "8", "--out", "r", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    check = next(i for i, line in enumerate(lines) if line.startswith("gradient check: max relative error"))
    first_epoch = next(i for i, line in enumerate(lines) if line.startswith("epoch 1/2"))
    assert check < first_epoch


def test_one_epoch_is_singular(tmp_path, cli):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    result = cli.invoke("train", "--epochs", "1", "--hidden", "8", "--out", tmp_path / "r", "--quiet")
    assert ", 1 epoch)" in result.output
    from numbamlp.text import counted

    assert (counted(1, "thread"), counted(2, "thread"), counted(0, "epoch")) == ("1 thread", "2 threads", "0 epochs")


def test_train_help_shows_defaults(cli):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    help_text = " ".join(cli.invoke("train", "--help").output.split())
    for shown in ("[default: 30]", "[default: 32]", "[default: builtin:digits]", "[default: 128]",
                  "[default: relu]", "[default: momentum]", "[default: cpu]", "[default: float32]"):
        assert shown in help_text, shown
