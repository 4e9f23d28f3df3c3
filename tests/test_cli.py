"""The command line: precedence, run directories, eval, predict, info, plot, clean errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from numbamlp import load_model
from numbamlp.cli.main import main
from numbamlp.data import spiral

NUMBAMLP = [sys.executable, "-m", "numbamlp.cli.main"]
FAST = ["--epochs", "3", "--hidden", "16"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A short real run on digits, shared by the read-only tests below."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    result = CliRunner().invoke(main, ["train", "--out", str(out), "--val-fraction", "0.1", "--epochs", "8"])
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


def test_flags_override_the_config_file_and_only_passed_flags_do(tmp_path):
    (tmp_path / "c.toml").write_text('epochs = 2\nbatch_size = 16\n[model]\nhidden = [8]\nactivation = "tanh"\n'
                                     '[optimizer]\nlr = 0.02\n')
    result = invoke("train", "--config", tmp_path / "c.toml", "--activation", "gelu", "--out", tmp_path / "r", "--quiet")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["model"]["activation"] == "gelu"  # flag beats file
    assert config["model"]["hidden"] == [8] and config["epochs"] == 2 and config["optimizer"]["lr"] == 0.02  # file beats default
    assert config["optimizer"]["momentum"] == 0.9  # default where neither says


def test_json_config_file_and_json_output(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"epochs": 2, "model": {"hidden": [8]}}))
    result = invoke("train", "--config", tmp_path / "c.json", "--json", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["epochs_run"] == 2 and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "content,message",
    [('epochs = "many"', "epochs"), ("[optimizer]\nname = 'lbfgs'", "optimizer.name"),
     ("surprise = 1", "surprise"), ("epochs = ", "cannot parse config file"),
     ("epochs = 2\n[grid]\nlr = [0.01, 0.1]", "has a grid table, which `numbamlp sweep --config")],
)
def test_bad_config_files_are_one_line_errors(tmp_path, content, message):
    (tmp_path / "c.toml").write_text(content)
    result = invoke("train", "--config", tmp_path / "c.toml", "--out", tmp_path / "r")
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "r").exists()


def test_existing_run_is_not_overwritten_without_flag(trained_run):
    before = (trained_run / "model.safetensors").read_bytes()
    result = invoke("train", "--out", trained_run, *FAST)
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (trained_run / "model.safetensors").read_bytes() == before


def test_resume_continues_to_the_same_weights(tmp_path):
    common = ["--optimizer", "adam", "--lr", "0.003", "--hidden", "32", "--patience", "20", "--val-fraction", "0.1"]
    assert invoke("train", *common, "--epochs", "5", "--out", tmp_path / "straight", "--quiet").exit_code == 0
    assert invoke("train", *common, "--epochs", "2", "--out", tmp_path / "split", "--quiet").exit_code == 0
    result = invoke("train", "--resume", tmp_path / "split", "--epochs", "5", "--quiet")
    assert result.exit_code == 0, result.output
    straight = load_model(tmp_path / "straight" / "model.safetensors")
    resumed = load_model(tmp_path / "split" / "model.safetensors")
    np.testing.assert_array_equal(straight.flat_params, resumed.flat_params)
    assert len((tmp_path / "split" / "metrics.jsonl").read_text().splitlines()) == 5


def test_resume_refuses_other_changes(trained_run):
    result = invoke("train", "--resume", trained_run, "--lr", "0.5")
    assert result.exit_code == 2 and "only --epochs may change" in result.output


def test_eval_reports_metrics_and_confusion_matrix(trained_run):
    model = trained_run / "model.safetensors"
    human = invoke("eval", model, "--data", "builtin:digits")
    assert human.exit_code == 0, human.output
    assert "confusion matrix" in human.output and "precision" in human.output
    report = json.loads(invoke("eval", model, "--data", "builtin:digits", "--json").output)
    assert report["rows"] == 1797 and report["accuracy"] > 0.9
    assert np.array(report["confusion_matrix"]).sum() == 1797
    assert len(report["per_class"]) == 10


def test_predict_writes_csv_with_probabilities(trained_run, tmp_path):
    model = load_model(trained_run / "model.safetensors")
    from sklearn.datasets import load_digits

    X = load_digits().data[:20]
    np.savez(tmp_path / "x.npz", X=X, y=np.zeros(20, dtype=int))
    out = tmp_path / "pred.csv"
    result = invoke("predict", trained_run / "model.safetensors", "--data", tmp_path / "x.npz", "--proba", "--out", out)
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0].split(",")[:2] == ["prediction", "p_0"] and len(lines) == 21
    predicted = [int(line.split(",")[0]) for line in lines[1:]]
    np.testing.assert_array_equal(predicted, model.predict(X))  # the model standardises raw X itself
    probabilities = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_predict_and_eval_reject_the_wrong_feature_count(trained_run, tmp_path):
    np.savez(tmp_path / "bad.npz", X=np.ones((3, 5)), y=np.zeros(3, dtype=int))
    for command in ("predict", "eval"):
        result = invoke(command, trained_run / "model.safetensors", "--data", tmp_path / "bad.npz")
        assert result.exit_code == 2 and "5 features but the model expects 64" in result.output


def test_csv_string_labels_train_eval_predict(tmp_path):
    X, y = spiral(n_per_class=40)
    names = np.array(["red", "green", "blue"])[y]
    rows = ["x1,x2,colour"] + [f"{a:.6f},{b:.6f},{c}" for (a, b), c in zip(X, names)]
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    result = invoke("train", "--data", tmp_path / "s.csv", "--epochs", "60", "--hidden", "32",
                    "--out", tmp_path / "r", "--quiet")
    assert result.exit_code == 0, result.output
    model_path = tmp_path / "r" / "model.safetensors"
    report = json.loads(invoke("eval", model_path, "--data", tmp_path / "s.csv", "--json").output)
    assert {row["class"] for row in report["per_class"]} == {"red", "green", "blue"}
    predicted = invoke("predict", model_path, "--data", tmp_path / "s.csv").output.split()
    assert predicted[0] == "prediction" and set(predicted[1:]) <= {"red", "green", "blue"}
    assert np.mean(np.array(predicted[1:]) == names) == pytest.approx(report["accuracy"])


def test_info_reports_backends_threads_and_blas():
    result = invoke("info", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["backends"][0].startswith("cpu: available")
    assert any(b.startswith("cuda: ") for b in report["backends"])
    assert report["numba_threads"] >= 1 and report["threading_layer"]
    assert report["blas"] and report["compile_cache"]


def test_plot_without_matplotlib_says_how_to_install(trained_run, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result = invoke("plot", trained_run, "--out", tmp_path / "c.png")
    assert result.exit_code == 2 and "pip install 'numbamlp[plot]'" in result.output
    assert not (tmp_path / "c.png").exists()


def test_plot_writes_a_png(trained_run, tmp_path):
    pytest.importorskip("matplotlib", reason="plot is an optional extra (pip install '.[plot]')")
    result = invoke("plot", trained_run, "--out", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_a_directory_without_metrics(tmp_path):
    result = invoke("plot", tmp_path)
    assert result.exit_code == 2 and "no metrics.jsonl" in result.output


def test_validate_flag_reports_the_gradient_error(tmp_path):
    result = invoke("train", "--validate", *FAST, "--out", tmp_path / "r")
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
def test_class_weight_takes_a_mapping_on_the_command_line(tmp_path, labels, value, expected):
    data = _churn_csv(tmp_path / "churn.csv", labels)
    result = invoke("train", "--data", data, "--class-weight", value, "--epochs", "1", "--hidden", "8",
                    "--out", tmp_path / "r", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r" / "config.json").read_text())["class_weight"] == expected
    assert load_model(tmp_path / "r").metadata["config"]["class_weight"] == expected


def test_class_weight_mapping_changes_the_training(tmp_path):
    data = _churn_csv(tmp_path / "churn.csv")
    losses = []
    for name, extra in (("plain", []), ("weighted", ["--class-weight", "churn=5,stay=1"]),
                        ("json", ["--class-weight", '{"churn": 5, "stay": 1}'])):
        result = invoke("train", "--data", data, "--epochs", "2", "--hidden", "8", "--out", tmp_path / name,
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


def test_predict_keeps_the_columns_asked_for_beside_the_predictions(tmp_path):
    """The model does not use an id column, and the user wants it beside each prediction."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    rows = ["a,b,label"] + [f"{a:.5f},{b:.5f},{int(a > 0)}" for a, b in X]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    assert invoke("train", "--data", tmp_path / "train.csv", "--epochs", "2", "--out", tmp_path / "r",
                  "--quiet").exit_code == 0
    ids = ["id,b,a"] + [f"house-{i},{b:.5f},{a:.5f}" for i, (a, b) in enumerate(X)]
    (tmp_path / "new.csv").write_text("\n".join(ids) + "\n")
    alone = invoke("predict", tmp_path / "r", "--data", tmp_path / "new.csv").output.splitlines()
    kept = invoke("predict", tmp_path / "r", "--data", tmp_path / "new.csv", "--keep", "id").output.splitlines()
    assert kept[0] == "id,prediction" and len(kept) == 61
    assert kept[1:] == [f"house-{i},{label}" for i, label in enumerate(alone[1:])]
    refused = invoke("predict", tmp_path / "r", "--data", tmp_path / "new.csv", "--keep", "nope")
    assert refused.exit_code == 2 and "has no column 'nope', named by --keep" in refused.output
    refused = invoke("predict", tmp_path / "r", "--data", "builtin:iris", "--keep", "id")
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
def spectra_run(tmp_path_factory):
    folder = _spectra_files(tmp_path_factory.mktemp("spectra"))
    result = invoke("train", "--data", folder / "train.csv", "--header", "--epochs", "2", "--hidden", "8",
                    "--out", folder / "run", "--quiet")
    assert result.exit_code == 0, result.output
    return folder


def test_train_header_flag_names_the_features_by_a_row_of_numbers(spectra_run):
    model = load_model(spectra_run / "run")
    assert model.feature_names == ["400", "410", "420"] and model.classes.tolist() == ["high", "low"]
    assert json.loads((spectra_run / "run" / "config.json").read_text())["data"]["header"] is True


@pytest.mark.parametrize("value", ["1", '"yes"'])
def test_the_header_setting_of_a_config_file_is_true_or_false(tmp_path, value):
    """(A number or text would be read as a boolean, as pydantic reads them: 1 and "yes" mean true.)"""
    (tmp_path / "c.toml").write_text(f"[data]\nheader = {value}\n")
    result = invoke("train", "--config", tmp_path / "c.toml", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "data.header: Input should be a valid boolean" in result.output, result.output
    assert not (tmp_path / "r").exists()


def test_predict_refuses_a_first_row_it_cannot_tell_and_takes_the_flags(spectra_run):
    """Numbers over numbers, for a model named by numbers: a header lacking some names, or a
    data row? Refused, with the two ways to say; never guessed."""
    folder = spectra_run
    said = _one_line_refusal(["predict", folder / "run", "--data", folder / "bare.csv", "--out", folder / "p.csv"],
                             folder)
    assert f"{folder / 'bare.csv'}: " in said and "--header or --no-header" in said
    assert not (folder / "p.csv").exists()
    bare = invoke("predict", folder / "run", "--data", folder / "bare.csv", "--no-header")
    named = invoke("predict", folder / "run", "--data", folder / "named.csv")  # (the names: a header, untold)
    assert bare.exit_code == 0 and named.exit_code == 0, bare.output + named.output
    assert len(bare.output.splitlines()) == 11 and bare.output == named.output
    said = _one_line_refusal(["predict", folder / "run", "--data", folder / "bare.csv", "--header"], folder)
    assert "has no column '400'" in said


def test_eval_takes_the_header_flags(spectra_run):
    folder = spectra_run
    told = invoke("eval", folder / "run", "--data", folder / "labelled.csv", "--no-header", "--json")
    assert told.exit_code == 0, told.output
    assert json.loads(told.output)["rows"] == 10
    headed = invoke("eval", folder / "run", "--data", folder / "train.csv", "--json")  # (its names: a header)
    assert headed.exit_code == 0 and json.loads(headed.output)["rows"] == 80, headed.output
    said = _one_line_refusal(["eval", folder / "run", "--data", folder / "train.csv", "--no-header"], folder)
    assert "labels the model does not know: grade" in said  # (the header read as a data row)
    said = _one_line_refusal(["eval", folder / "run", "--header"], folder)  # (its held-out rows: read as trained)
    assert "--header/--no-header are for --data" in said


def test_jobs_predict_takes_the_header_flags(spectra_run, monkeypatch):
    from numbamlp.client import Client

    folder = spectra_run
    model = load_model(folder / "run")
    monkeypatch.setattr(Client, "model_metadata", lambda self, job: model.metadata)
    monkeypatch.setattr(Client, "predict", lambda self, job, X, proba=False, columns=None: {
        "labels": model.predict(np.asarray(X)).tolist(), "proba": None, "values": None})
    served = invoke("jobs", "predict", "job-1", "--data", folder / "bare.csv", "--no-header")
    assert served.exit_code == 0 and served.output == invoke("predict", folder / "run", "--data", folder / "named.csv").output
    refused = invoke("jobs", "predict", "job-1", "--data", folder / "bare.csv")
    assert refused.exit_code == 2 and "--header or --no-header" in refused.output
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"400": ["0.5"], "410": [0.5], "420": [0.5]}), folder / "text.parquet")
    refused = invoke("jobs", "predict", "job-1", "--data", folder / "text.parquet")
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


def test_predict_refuses_a_parquet_feature_whose_kind_changed(tmp_path):
    """An age column trained as numbers and given as text: refused by name, both dtypes."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from numbamlp import MLP

    model = MLP([2, 4, 2], seed=0)
    model.feature_names, model.feature_dtypes = ["age", "income"], ["int64", "float64"]
    model.save(tmp_path / "m.safetensors")
    pq.write_table(pa.table({"age": ["30", "41"], "income": [2.5, 1.5]}), tmp_path / "new.parquet")
    said = _one_line_refusal(["predict", tmp_path / "m.safetensors", "--data", tmp_path / "new.parquet", "--out",
                              tmp_path / "p.csv"], tmp_path)
    assert "feature column 'age' is string here but int64 in training" in said
    assert not (tmp_path / "p.csv").exists()
    pq.write_table(pa.table({"age": [30.0, 41.0], "income": [2, 1]}), tmp_path / "floats.parquet")
    assert invoke("predict", tmp_path / "m.safetensors", "--data", tmp_path / "floats.parquet").exit_code == 0
