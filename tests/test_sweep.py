"""Sweeps (numbamlp.sweeps, `numbamlp sweep`): grid parsing, member-equals-train, resume,
Ctrl-C, bad input, and a real Dask LocalCluster — with a worker killed mid-sweep."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from naive import FEW, ONE_EPOCH, labelled_in_the_middle, signalled_once_written
from naive import REPORTS_X as X
from naive import REPORTS_Y as y

from numbamlp.config import TrainConfig
from numbamlp.io import load_model
from numbamlp.run import read_run_config, train_run
from numbamlp.sweeps import (
    METRICS,
    Range,
    SweepError,
    best_row,
    grid_from_table,
    member_configs,
    member_settings,
    parse_grid_option,
    parse_value,
    ranked,
    resolve_key,
    stack_groups,
    sweep,
)

NUMBAMLP = [sys.executable, "-m", "numbamlp.cli.main"]
IRIS = {"epochs": 4, "data": {"train": "builtin:iris"}, "model": {"hidden": [8]}}
# the parts of a row that depend on the run, not on the member
TIMING = ("seconds", "model_path")


def _without_timing(table):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in table]


def read_rows(directory):
    """A sweep directory's results.jsonl, one dict a member."""
    return [json.loads(line) for line in (directory / "results.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- the grid
def test_grid_options_parse_values_lists_and_ranges():
    assert parse_grid_option("optimizer.lr=0.01,.1,1e-3") == ("optimizer.lr", [0.01, 0.1, 0.001])
    assert parse_grid_option("model.hidden=[64],[128,64]") == ("model.hidden", [[64], [128, 64]])
    assert parse_grid_option("model.activation=relu,tanh") == ("model.activation", ["relu", "tanh"])
    assert parse_grid_option("lr=loguniform:1e-4:1e-1") == ("optimizer.lr", [Range("loguniform", 1e-4, 1e-1)])
    assert parse_grid_option("early_stopping.patience=null,3") == ("early_stopping.patience", [None, 3])
    assert parse_value("int:2:5") == Range("int", 2, 5)


@pytest.mark.parametrize("text, message", [
    ("optimizer.lrr=0.1", "not a setting; did you mean optimizer.lr"),
    ("name=adam", "ambiguous: write optimizer.name or schedule.name"),
    ("lr", "must be KEY=V1,V2"),
    ("lr=", "gives no values"),
    ("model.hidden=[64", "unbalanced '['"),
    ("lr=loguniform:0:1", "loguniform needs LOW > 0"),
    ("lr=uniform:2:1", "LOW above HIGH"),
    ("seed=int:1.5:3", "whole numbers"),
])
def test_malformed_grid_options_are_named(text, message):
    with pytest.raises(SweepError) as error:
        parse_grid_option(text)
    assert message in str(error.value)


def test_a_config_files_grid_table_names_settings_by_path_or_unique_leaf():
    table = {"optimizer": {"lr": [0.01, 0.1]}, "seed": [0, 1], "hidden": [[8], [4, 4]]}
    assert grid_from_table(table) == {"optimizer.lr": [0.01, 0.1], "seed": [0, 1], "model.hidden": [[8], [4, 4]]}
    with pytest.raises(SweepError, match="grid.seed must be a non-empty list"):
        grid_from_table({"seed": 3})


def test_members_are_the_cartesian_product_or_seeded_random_draws():
    grid = {"optimizer.lr": [0.1, 0.2], "seed": [0, 1, 2]}
    members = member_settings(grid, None, 0)
    assert len(members) == 6 and members[0] == {"optimizer.lr": 0.1, "seed": 0}
    assert members[-1] == {"optimizer.lr": 0.2, "seed": 2}
    ranges = {"optimizer.lr": [Range("loguniform", 1e-3, 1e-1)], "seed": [Range("int", 0, 9)],
              "model.activation": ["relu", "tanh"]}
    drawn = member_settings(ranges, 50, 7)
    assert drawn == member_settings(ranges, 50, 7) and drawn != member_settings(ranges, 50, 8)
    lrs = [m["optimizer.lr"] for m in drawn]
    assert 1e-3 <= min(lrs) and max(lrs) <= 1e-1 and len(set(lrs)) == 50
    assert {m["seed"] for m in drawn} <= set(range(10)) and {m["model.activation"] for m in drawn} == {"relu", "tanh"}
    with pytest.raises(SweepError, match="ranges need a random sweep"):
        member_settings(ranges, None, 0)


def test_member_configs_share_one_data_split_and_a_validation_set():
    configs = member_configs({"seed": 5}, [{"seed": 0}, {"seed": 1, "optimizer.name": "adam"}])
    assert [c.seed for c in configs] == [0, 1]
    assert all(c.data.seed == 5 and c.data.val_fraction == 0.1 for c in configs)
    assert configs[1].optimizer.lr == 1e-3 and configs[1].optimizer.momentum is None  # adam's own defaults
    with pytest.raises(SweepError, match="the member optimizer.lr=-1 is not a valid configuration"):
        member_configs({}, [{"optimizer.lr": -1}])


def test_members_that_cannot_share_a_step_go_to_different_stacks_and_big_groups_are_cut():
    settings = [{"model.hidden": h, "seed": s} for h in ([8], [4]) for s in range(5)]
    configs = member_configs({}, settings)
    assert stack_groups(configs, 32) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert stack_groups(configs, 2) == [[0, 1], [2, 3], [4], [5, 6], [7, 8], [9]]
    # at least one task per worker where a group has the members for it
    assert stack_groups(configs, 32, parallel=2) == [[0, 1, 2], [3, 4], [5, 6, 7], [8, 9]]


# ---------------------------------------------------------------- results
def test_each_member_equals_numbamlp_train_with_its_config_bit_for_bit(tmp_path):
    grid = {"optimizer.lr": [0.02, 0.2], "seed": [0, 3], "model.activation": ["relu", "tanh"]}
    base = {**IRIS, "early_stopping": {"patience": 2}, "epochs": 6}
    result = sweep(base, grid, out=tmp_path / "sweep")
    assert len(result.table) == 8 and all(row["status"] in ("done", "stopped early") for row in result.table)
    for member in (1, 6):  # a relu and a tanh member, different stacks
        row = result.table[member]
        config = read_run_config(tmp_path / "sweep" / "members" / str(member))
        assert config.data.seed == 0 and config.seed == row["seed"]
        alone = train_run(config, out=tmp_path / f"alone{member}")
        np.testing.assert_array_equal(load_model(row["model_path"]).flat_params,
                                      load_model(alone["model_path"]).flat_params)
        for key in ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "best_epoch"):
            assert row[key] == alone[key], key
        np.testing.assert_array_equal(result.models[member].flat_params, load_model(alone["model_path"]).flat_params)


def test_the_directory_holds_the_results_table_members_and_summary(tmp_path):
    result = sweep(IRIS, {"lr": [0.01, 0.1], "seed": [0, 1]}, out=tmp_path / "s")
    rows = [json.loads(line) for line in (tmp_path / "s" / "results.jsonl").read_text().splitlines()]
    assert _without_timing(rows) == _without_timing(result.table)
    header = (tmp_path / "s" / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["member", "optimizer.lr", "seed"]
    assert {"val_accuracy", "val_loss", "test_accuracy", "test_loss", "epochs", "best_epoch", "status",
            "seconds", "model_path"} <= set(header)
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["best"]["row"]["member"] == result.best["member"] and summary["statuses"] == {"done": 4}
    assert summary["best"]["config"]["optimizer"]["lr"] == result.best["optimizer.lr"]
    for k in range(4):
        assert {"config.json", "metrics.jsonl", "model.safetensors", "summary.json"} <= {
            p.name for p in (tmp_path / "s" / "members" / str(k)).iterdir()}
    # the best is the highest validation accuracy (ties: lower validation loss), not the test's
    best = max(result.table, key=lambda r: (r["val_accuracy"], -r["val_loss"]))
    assert result.best["member"] == best["member"]
    assert result.best_model.predict(np.zeros((1, 4))).shape == (1,)  # standardises raw features itself
    # a sweep directory given where a run's is due names its best member's run instead
    from numbamlp.layout import ModelFileError, load_model
    from numbamlp.plots import PlotError, read_metrics

    best_run = tmp_path / "s" / "members" / str(result.best["member"])
    note = f"{tmp_path / 's'} is a sweep directory: give one of its members' run directories, e.g. its best, {best_run}"
    with pytest.raises(ModelFileError) as error:
        load_model(tmp_path / "s")
    assert str(error.value) == note
    with pytest.raises(PlotError) as error:
        read_metrics(tmp_path / "s")
    assert str(error.value) == note
    np.testing.assert_array_equal(load_model(best_run).flat_params, result.best_model.flat_params)


def test_a_diverging_member_is_a_row_not_a_failed_sweep():
    result = sweep({**IRIS, "optimizer": {"name": "sgd"}}, {"lr": [0.05, 1e12]})
    assert [row["status"] for row in result.table] == ["done", "diverged"]
    assert "diverged" in result.table[1]["error"] and result.table[1]["test_accuracy"] is None
    assert result.best["member"] == 0


def test_sweep_on_arrays_and_to_csv(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    y = (X[:, 0] > 0).astype(int)
    result = sweep({"epochs": 3}, {"seed": [0, 1]}, data=(X, y))
    assert [row["status"] for row in result.table] == ["done", "done"] and result.best is not None
    result.to_csv(tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text().splitlines()[0].startswith("member,seed,val_accuracy")
    # arrays are checked as a data file's are, before anything trains
    from numbamlp.data import DataError

    bad_X = X.copy()
    bad_X[5, 1] = np.nan
    for arrays, message in [((X, y[:-1]), "data: X has 120 rows but y has 119 labels"),
                            ((bad_X, y), "data: X has 1 NaN or infinite values (first at X[5, 1], counting from 0)"),
                            ((X[:, :, None], y), "data: X must be 2-D (rows, features), got shape (120, 3, 1)")]:
        with pytest.raises(DataError) as error:
            sweep({"epochs": 3}, {"seed": [0]}, data=arrays, out=tmp_path / "never")
        assert str(error.value) == message
    assert not (tmp_path / "never").exists()


def test_resume_trains_only_the_members_without_results(tmp_path):
    full = sweep(IRIS, {"lr": [0.01, 0.1], "seed": [0, 1, 2]}, stack_size=2, out=tmp_path / "full")
    # a sweep that stopped after its first stack: keep that stack's rows only
    partial = tmp_path / "partial"
    sweep(IRIS, {"lr": [0.01, 0.1], "seed": [0, 1, 2]}, stack_size=2, out=partial)
    lines = (partial / "results.jsonl").read_text().splitlines()
    kept = [json.loads(line) for line in lines[:2]]
    (partial / "results.jsonl").write_text("".join(line + "\n" for line in lines[:2]))
    (partial / "summary.json").unlink()
    calls = []
    resumed = sweep(resume=partial, progress=lambda done, total, best: calls.append(done))
    assert calls == [4, 6]  # two stacks were left
    assert _without_timing(resumed.table) == _without_timing(full.table)
    assert resumed.table[:2] == kept  # untouched
    assert (partial / "summary.json").exists()


# ---------------------------------------------------------------- the command
def _sweep_command(*args, cwd=None, **kwargs):
    return subprocess.run([*NUMBAMLP, "sweep", *args], capture_output=True, text=True, timeout=300, cwd=cwd, **kwargs)


@pytest.mark.parametrize("args, message", [
    (["--grid", "optimizer.lrr=0.1"], "grid key 'optimizer.lrr' is not a setting; did you mean optimizer.lr"),
    (["--grid", "lr=abc"], "the member optimizer.lr='abc' is not a valid configuration"),
    (["--grid", "lr=0.1", "--lr", "-1"], "--lr (optimizer.lr): Input should be greater than 0"),
    (["--grid", "lr=0.1,0.2", "--grid", "seed=0,1,2", "--max-members", "5"], "6 members, more than the limit of 5"),
    ([], "the grid is empty"),
    (["--grid", "lr=0.1", "--grid", "optimizer.lr=0.2"], "--grid sets optimizer.lr twice; give all its values in one"),
    (["--grid", "lr=loguniform:0.01:0.1"], "ranges need a random sweep"),
    (["--grid", "lr=0.1", "--scheduler", "tcp://127.0.0.1:9"], "cannot reach the Dask scheduler at tcp://127.0.0.1:9"),
    (["--grid", "lr=0.1", "--workers", "2", "--scheduler", "tcp://127.0.0.1:9"], "give one of workers (--workers), scheduler (--scheduler)"),
])
def test_bad_sweeps_are_one_line_exit_2_and_write_nothing(tmp_path, args, message):
    run = _sweep_command("--data", "builtin:iris", *args, "--out", str(tmp_path / "s"), cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not (tmp_path / "s").exists() and not (tmp_path / "sweeps").exists()


def test_a_sweep_directory_is_not_reused_and_resume_takes_no_new_settings(tmp_path):
    sweep(IRIS, {"seed": [0]}, out=tmp_path / "s")
    again = _sweep_command("--data", "builtin:iris", "--grid", "seed=1", "--out", str(tmp_path / "s"))
    assert again.returncode == 2 and "already holds a sweep" in again.stderr
    mixed = _sweep_command("--resume", str(tmp_path / "s"), "--lr", "0.1")
    assert mixed.returncode == 2 and "only --workers, --scheduler" in mixed.stderr and "--lr" in mixed.stderr


def test_the_command_reports_progress_the_top_rows_and_json(tmp_path):
    run = _sweep_command("--data", "builtin:iris", "--epochs", "3", "--hidden", "8", "--grid", "lr=0.01,0.1",
                         "--grid", "model.hidden=[8],[4,4]", "--out", str(tmp_path / "s"))
    assert run.returncode == 0, run.stderr
    assert "[4/4] members done; best so far: member" in run.stdout
    assert "top 4 of 4 by val_accuracy:" in run.stdout and "best model: " in run.stdout
    header = next(line for line in run.stdout.splitlines() if line.lstrip().startswith("member "))
    assert header.split()[:3] == ["member", "optimizer.lr", "model.hidden"]
    as_json = _sweep_command("--data", "builtin:iris", "--epochs", "2", "--grid", "seed=0,1", "--json", cwd=tmp_path)
    summary = json.loads(as_json.stdout.strip().splitlines()[-1])
    assert summary["members"] == 2 and Path(tmp_path, summary["results_path"]).is_file()
    assert summary["sweep_dir"].startswith("sweeps/")  # the default directory
    config = tmp_path / "base.toml"
    config.write_text('epochs = 2\n[data]\ntrain = "builtin:iris"\n[grid]\nseed = [0, 1]\n[grid.optimizer]\nlr = [0.01, 0.1]\n')
    from_file = _sweep_command("--config", str(config), "--json", cwd=tmp_path)
    assert json.loads(from_file.stdout.strip().splitlines()[-1])["members"] == 4, from_file.stderr


def test_ctrl_c_keeps_the_finished_members_and_resume_completes_the_sweep(tmp_path):
    """A real SIGINT to `numbamlp sweep` once its first stack is written: exit 130, the
    finished rows kept; --resume trains the rest and gives what an uninterrupted sweep gives."""
    args = ["--epochs", "40", "--hidden", "256", "--grid", "seed=0,1,2,3,4,5", "--stack-size", "1",
            "--data", "builtin:digits"]
    results = tmp_path / "s" / "results.jsonl"
    code, err = signalled_once_written(["sweep", *args, "--out", str(tmp_path / "s")], results, signal.SIGINT)
    assert code == 130, err
    assert "continue with: numbamlp sweep --resume" in err
    done = len(results.read_text().splitlines())
    assert 1 <= done < 6
    resumed = _sweep_command("--resume", str(tmp_path / "s"), "--json")
    assert resumed.returncode == 0, resumed.stderr
    whole = sweep({"epochs": 40, "model": {"hidden": [256]}}, {"seed": [0, 1, 2, 3, 4, 5]}, stack_size=1)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert _without_timing(sorted(rows, key=lambda r: r["member"])) == _without_timing(whole.table)


# ---------------------------------------------------------------- on Dask
dask_distributed = pytest.importorskip("distributed")


def test_a_sweep_on_a_local_cluster_gives_the_in_process_results(cluster, tmp_path):
    grid = {"lr": [0.01, 0.1], "seed": [0, 1], "model.hidden": [[8], [4, 4]]}
    on_dask = sweep(IRIS, grid, client=cluster, out=tmp_path / "d")
    here = sweep(IRIS, grid)
    assert _without_timing(on_dask.table) == _without_timing(here.table)
    for a, b in zip(on_dask.models, here.models):
        np.testing.assert_array_equal(a.flat_params, b.flat_params)
    # the same data again on the same client: its own scatter (one keyed by the data's hash
    # was lost while the first sweep's copy was being released)
    again = sweep(IRIS, grid, client=cluster)
    assert _without_timing(again.table) == _without_timing(here.table)


def test_a_worker_killed_mid_sweep_is_rerun_elsewhere_with_the_same_results(cluster):
    """SIGKILL one worker process while it trains a stack: Dask reruns the task on a worker
    that lives, and every member's result is the same as in-process."""
    base = {"epochs": 20, "model": {"hidden": [512, 512]}}  # ~1 s a member on one thread
    grid = {"seed": [0, 1, 2, 3]}
    pids = cluster.run(os.getpid)
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(result=sweep(base, grid, stack_size=1, client=cluster)))
    runner.start()
    victim = None
    deadline = time.monotonic() + 60
    while victim is None and time.monotonic() < deadline:
        busy = [address for address, keys in cluster.processing().items() if keys]
        victim = busy[0] if busy else None
        time.sleep(0.02)
    assert victim is not None, "no task started"
    time.sleep(0.3)  # into the task's training
    assert cluster.processing()[victim], "the task ended before the kill"
    os.kill(pids[victim], signal.SIGKILL)
    runner.join(timeout=240)
    assert not runner.is_alive()
    here = sweep(base, grid, stack_size=1)
    assert _without_timing(outcome["result"].table) == _without_timing(here.table)
    assert all(row["status"] == "done" for row in here.table)
    assert pids[victim] not in cluster.run(os.getpid).values()  # that process did die


def test_the_command_runs_on_its_own_local_cluster(tmp_path):
    run = _sweep_command("--data", "builtin:iris", "--epochs", "3", "--grid", "seed=0,1,2", "--workers", "2",
                         "--out", str(tmp_path / "d"), "--json")
    assert run.returncode == 0, run.stderr
    here = sweep({"epochs": 3, "data": {"train": "builtin:iris"}}, {"seed": [0, 1, 2]})
    rows = [json.loads(line) for line in (tmp_path / "d" / "results.jsonl").read_text().splitlines()]
    assert _without_timing(sorted(rows, key=lambda r: r["member"])) == _without_timing(here.table)


def test_only_the_sweeps_own_cluster_freezes_its_workers_objects_at_exit(cluster):
    """The sweep's own LocalCluster registers the plugin whose teardown freezes a closing
    worker's objects (its exit then skips the last full garbage collection); a cluster the
    user brings is left as it is."""
    from numbamlp.sweeps import DaskRunner

    def has_plugin(dask_worker):
        return "numbamlp-freeze-at-exit" in dask_worker.plugins

    own = DaskRunner(1, None, None)
    try:
        assert list(own.client.run(has_plugin).values()) == [True]
    finally:
        own.close()
    theirs = DaskRunner(None, None, cluster)
    theirs.close()
    assert list(cluster.run(has_plugin).values()) == [False, False]


def test_without_dask_asking_for_workers_names_the_extra(tmp_path):
    """A Python without distributed (blocked by a meta-path finder) gets the install line."""
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('distributed', 'dask'):\n"
            "            raise ImportError('blocked')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from numbamlp.cli.main import command_line\n"
            "sys.argv = ['numbamlp', 'sweep', '--data', 'builtin:iris', '--grid', 'seed=0', '--workers', '2',"
            f" '--out', {str(tmp_path / 's')!r}]\n"
            "command_line()\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "needs the dask extra: pip install 'numbamlp[dask]'" in run.stderr and not (tmp_path / "s").exists()


def test_a_regression_sweep_ranks_by_validation_r2_and_members_equal_train(tmp_path):
    base = {"task": "regression", "epochs": 6, "data": {"train": "builtin:diabetes"}, "model": {"hidden": [16]},
            "optimizer": {"name": "adam"}}
    result = sweep(base, {"lr": [0.001, 0.01], "seed": [0, 1]}, out=tmp_path / "r")
    assert result.metric == "val_r2"
    assert {"val_r2", "val_mse", "test_r2", "test_mse", "test_mae"} <= set(result.table[0])
    assert "val_accuracy" not in result.table[0]
    assert result.best["val_r2"] == max(row["val_r2"] for row in result.table)
    member = 3
    alone = train_run(read_run_config(tmp_path / "r" / "members" / str(member)), out=tmp_path / "alone")
    np.testing.assert_array_equal(load_model(result.table[member]["model_path"]).flat_params,
                                  load_model(alone["model_path"]).flat_params)
    by_mse = sweep(base, {"lr": [0.001, 0.01]}, metric="val_mse")
    assert by_mse.best["val_mse"] == min(row["val_mse"] for row in by_mse.table)
    with pytest.raises(SweepError, match="metric val_accuracy does not apply to regression"):
        sweep(base, {"seed": [0]}, metric="val_accuracy")
    with pytest.raises(SweepError, match="task cannot vary"):
        sweep(base, {"task": ["regression", "classification"]})


def test_each_data_set_goes_to_the_workers_once(cluster, monkeypatch):
    """The data is scattered once per data set, not once per task (a regression that doubled
    the per-task overhead on a cluster), and a grid over data settings sends each of its sets."""
    scattered = []
    real_scatter = type(cluster).scatter

    def counting_scatter(self, data, *args, **kwargs):
        scattered.append(data)
        return real_scatter(self, data, *args, **kwargs)

    monkeypatch.setattr(type(cluster), "scatter", counting_scatter)
    sweep(IRIS, {"seed": [0, 1, 2, 3]}, stack_size=1, client=cluster)
    assert len(scattered) == 1
    scattered.clear()
    result = sweep(IRIS, {"seed": [0, 1], "data.val_fraction": [0.1, 0.2]}, stack_size=1, client=cluster)
    assert len(scattered) == 2 and len({row["val_loss"] for row in result.table}) == 4


# ---------------------------------------------------------------- from Python: ranges as text, data, progress, resume
def test_a_python_sweep_takes_ranges_written_as_text():
    """Reported 2026-11-30 by a new user (first look); fixed in 32f489a."""
    result = sweep(ONE_EPOCH, {"optimizer.lr": "loguniform:0.001:0.1"}, data=(X, y), random=3)
    lrs = [row["optimizer.lr"] for row in result.table]
    assert len(set(lrs)) == 3 and all(0.001 <= lr <= 0.1 for lr in lrs)
    with pytest.raises(ValueError, match="loguniform needs LOW > 0"):
        sweep(ONE_EPOCH, {"optimizer.lr": "loguniform:0:0.1"}, data=(X, y), random=3)


def test_a_python_sweep_says_data_is_a_pair():
    """Reported 2026-11-30 by a new user (first look); fixed in 32f489a."""
    with pytest.raises(ValueError, match=r"data must be a pair \(X, y\)"):
        sweep(ONE_EPOCH, {"seed": [0, 1]}, data=X)


def test_an_array_sweep_resumes_only_with_the_same_arrays(tmp_path, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 65e250d."""
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


def test_a_python_sweep_takes_progress_false_and_refuses_what_it_cannot_call():
    """Reported 2026-11-30 by a new user (third look); fixed in 65e250d."""
    assert len(sweep(ONE_EPOCH, {"seed": [0]}, data=(X, y), progress=False).table) == 1
    with pytest.raises(ValueError, match="progress must be a function"):
        sweep(ONE_EPOCH, {"seed": [0]}, data=(X, y), progress=5)


def test_a_random_sweep_over_lists_draws_different_members():
    """Reported 2026-11-30 by a new user (third look); fixed in dd1d9ce.

    --random 2 over four activations drew tanh twice (with replacement)."""
    result = sweep(ONE_EPOCH, {"model.activation": ["relu", "tanh", "gelu", "elu"], "optimizer.lr": [0.01, 0.1]},
                   data=(X, y), random=5, progress=False)
    drawn = [(row["model.activation"], row["optimizer.lr"]) for row in result.table]
    assert len(set(drawn)) == 5
    everything = sweep(ONE_EPOCH, {"seed": [0, 1, 2]}, data=(X, y), random=10)  # fewer than asked: each once
    assert [row["seed"] for row in everything.table] == [0, 1, 2]


def test_a_resumed_sweep_gives_every_finished_members_model(tmp_path):
    """Reported 2026-11-30 by a new user (third look); fixed in dd1d9ce."""
    sweep(ONE_EPOCH, {"seed": [0, 1]}, data=(X, y), out=tmp_path / "s")
    rows = (tmp_path / "s" / "results.jsonl").read_text().splitlines()
    (tmp_path / "s" / "results.jsonl").write_text(rows[0] + "\n")
    result = sweep(resume=tmp_path / "s", data=(X, y))
    assert all(model is not None for model in result.models)
    np.testing.assert_array_equal(result.models[0].flat_params,
                                  load_model(tmp_path / "s" / "members" / "0" / "model.safetensors").flat_params)


def test_a_random_draw_from_a_grid_of_more_combinations_than_int64_holds():
    """Reported 2026-11-30 by a new user (third look); fixed in c82e6ce."""
    from numbamlp.sweeps import member_settings

    drawn = member_settings({f"k{i}": list(range(10)) for i in range(20)}, 5, 0)  # 10²⁰ combinations
    assert len({tuple(member.values()) for member in drawn}) == 5


# ---------------------------------------------------------------- the command: its directory, bad grids, failed members
def test_a_sweep_does_not_write_over_files_in_its_directory(tmp_path, cli):
    """Reported 2026-11-30 by a new user (first look); fixed in 207580e."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.csv").write_text("my,results\n")
    code, output = cli("sweep", "--data", "builtin:iris", "--grid", "lr=0.1,0.2", "--out", out, *FEW)
    assert code == 2 and "already holds results.csv" in output
    assert (out / "results.csv").read_text() == "my,results\n"
    assert cli("train", "--data", "builtin:iris", "--out", tmp_path / "run", *FEW)[0] == 0
    code, output = cli("sweep", "--data", "builtin:iris", "--grid", "lr=0.1,0.2", "--out", tmp_path / "run", *FEW)
    assert code == 2 and "already holds summary.json, config.json" in output


def test_a_sweep_without_a_finished_member_exits_1(tmp_path, cli):
    """Reported 2026-11-30 by a new user (first look); fixed in 207580e."""
    code, output = cli("sweep", "--data", "builtin:iris", "--grid", "lr=1e30", "--out", tmp_path / "s", *FEW)
    assert code == 1 and "no member finished" in output


def test_a_diverged_sweep_member_leaves_no_model(tmp_path, cli):
    """Reported 2026-11-30 by a new user (second look); fixed in 572c187."""
    code, output = cli("sweep", "--data", "builtin:iris", "--grid", "lr=0.05,1e30", "--out", tmp_path / "s", *FEW)
    assert code == 0, output
    import json

    rows = [json.loads(line) for line in (tmp_path / "s" / "results.jsonl").read_text().splitlines()]
    diverged = next(row for row in rows if row["status"] == "diverged")
    assert diverged["model_path"] is None
    assert not (tmp_path / "s" / "members" / str(diverged["member"]) / "model.safetensors").exists()


@pytest.mark.parametrize("grid, phrase", [("5", "grid must be a table"), ('"seed=0,1"', "grid must be a table")])
def test_a_grid_that_is_not_a_table_is_bad_input(tmp_path, grid, phrase, cli):
    """Reported 2026-11-30 by a new user (second look); fixed in 572c187."""
    (tmp_path / "g.toml").write_text(f"epochs = 1\ngrid = {grid}\n")
    code, output = cli("sweep", "--config", tmp_path / "g.toml", "--out", tmp_path / "s")
    assert code == 2 and phrase in output
    with pytest.raises(ValueError, match="grid must be a mapping"):
        sweep(ONE_EPOCH, [("seed", [0, 1])], data=(X, y))


@pytest.mark.parametrize("text", ["uniform:0:inf", "loguniform:1e-3:inf", "uniform:-inf:0", "uniform:0:nan",
                                  "int:0:1e30"])
def test_ranges_need_finite_bounds(text, cli):
    """Reported 2026-11-30 by a new user (second look); fixed in 572c187."""
    code, output = cli("sweep", "--data", "builtin:iris", "--random", "2", "--grid", f"lr={text}", *FEW)
    assert code == 2 and ("finite bounds" in output or "within ±2**62" in output), output


def test_a_config_grid_that_sets_one_setting_twice_is_refused(tmp_path, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 65e250d."""
    config = tmp_path / "c.toml"
    config.write_text('epochs = 1\n[data]\ntrain = "builtin:iris"\n[grid]\nlr = [0.01, 0.1]\n'
                      '[grid.optimizer]\nlr = [0.5]\n')
    code, output = cli("sweep", "--config", config, "--out", tmp_path / "s")
    assert code == 2 and "grid sets optimizer.lr twice" in output
    assert not (tmp_path / "s").exists()


def test_results_csv_leaves_a_loss_that_is_not_a_number_empty_as_results_jsonl_has_null(tmp_path, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 65e250d."""
    code, output = cli("sweep", "--data", "builtin:iris", "--grid", "lr=1e6", "--epochs", "2", "--hidden", "8",
                       "--out", tmp_path / "s", "--quiet")
    import csv

    with open(tmp_path / "s" / "results.csv", newline="") as file:
        (cells,) = list(csv.DictReader(file))
    assert read_rows(tmp_path / "s")[0]["val_loss"] is None and cells["val_loss"] == ""
    assert not [name for name, cell in cells.items() if cell.lower() in ("nan", "inf", "-inf")]


def test_a_sweep_of_zero_epochs_says_why_it_has_no_best(tmp_path, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 65e250d."""
    code, output = cli("sweep", "--data", "builtin:iris", "--grid", "lr=0.1,0.2", "--epochs", "0", "--hidden", "8",
                       "--out", tmp_path / "s", "--quiet")
    assert code == 0 and "no member has a val_accuracy to rank them by (2 done)" in output, output
    assert "no member finished" not in output


# ---------------------------------------------------------------- members on their own data settings; resume
def test_a_sweep_resumed_on_changed_data_is_refused_and_its_members_know_their_data(tmp_path, monkeypatch, cli):
    """Reported 2026-11-30 by a new user (second look); fixed in 572c187."""
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
    """Reported 2026-11-30 by a new user (second look); fixed in 572c187.

    A sweep started in the background by a shell inherits SIGINT ignored: on Dask it
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


def test_a_moved_sweep_resumes_with_paths_where_it_is_now(tmp_path, cli):
    """Reported 2026-11-30 by a new user (second look); fixed in d82d464."""
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


def test_a_grid_over_data_settings_trains_each_member_on_its_own_data(tmp_path, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 65e250d.

    Every member trained on member 0's splits: a grid over data.train, data.val_fraction,
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


def test_a_grid_over_epochs_keeps_its_values_beside_the_epochs_trained(tmp_path, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 65e250d."""
    code, output = cli("sweep", "--data", "builtin:iris", "--grid", "epochs=1,2", "--hidden", "8",
                       "--out", tmp_path / "s")
    assert code == 0, output
    rows = read_rows(tmp_path / "s")
    assert [(row["grid.epochs"], row["epochs"]) for row in rows] == [(1, 1), (2, 2)]
    assert "grid.epochs=" in output.splitlines()[-3]  # the best line names the member's value
    assert (tmp_path / "s" / "results.csv").read_text().splitlines()[0].startswith("member,grid.epochs,")


def test_resume_refuses_every_setting_it_would_ignore_and_names_the_flags_typed(tmp_path, cli):
    """Reported 2026-11-30 by a new user (third look); fixed in 65e250d."""
    assert cli("sweep", "--data", "builtin:iris", "--grid", "lr=0.05,0.1", "--out", tmp_path / "s", *FEW)[0] == 0
    for args, named in ((["--metric", "val_loss"], "--metric"), (["--stack-size", "1"], "--stack-size"),
                        (["--max-members", "1"], "--max-members"), (["--data", "builtin:digits"], "--data"),
                        (["--optimizer", "adam"], "--optimizer")):
        code, output = cli("sweep", "--resume", tmp_path / "s", *args)
        assert code == 2 and f"(got {named})" in output, output


# ---------------------------------------------------------------- which member is best
# Each metric's direction, written out here rather than read from numbamlp.sweeps: a sweep
# that took the member with the highest val_loss for the best passed every test while only
# val_accuracy and val_mse were ranked by.
BETTER = {"val_accuracy": max, "val_r2": max, "val_loss": min, "val_mse": min, "val_roc_auc": max,
          "val_average_precision": max, "val_f1": max, "val_macro_f1": max, "val_balanced_accuracy": max}


@pytest.mark.parametrize("metric", METRICS)
def test_the_best_member_has_the_highest_accuracy_or_r2_and_the_lowest_loss_or_mse(metric):
    """ranked() and best_row() for each metric a sweep ranks by (one missing from BETTER
    fails here until its direction is written down); a member without a score comes last
    and is never the best."""
    scores = {0: 0.4, 1: 0.9, 2: 0.1, 3: 0.6}
    table = [{"member": 4, "status": "diverged", metric: None, "val_loss": None}]
    table += [{"val_loss": 1.0 + member, "member": member, "status": "done", metric: score}
              for member, score in scores.items()]  # (val_loss, for the other metrics: no ties to break)
    best_first = sorted(scores, key=scores.get, reverse=BETTER[metric] is max)
    assert [row["member"] for row in ranked(table, metric)] == [*best_first, 4]
    assert best_row(table, metric)["member"] == BETTER[metric](scores, key=scores.get)


@pytest.mark.parametrize("metric", ["val_accuracy", "val_r2", "val_mse"])
def test_members_tied_on_the_metric_go_to_the_lower_val_loss_then_the_lower_member_number(metric):
    """The tie-breaks: the lower validation loss (a member without one after those with
    one), then the lower member number, whatever order the table lists them in."""
    tie = 0.5
    worse = tie - 0.1 if BETTER[metric] is max else tie + 0.1
    table = [
        {"member": 4, "status": "done", metric: tie, "val_loss": 0.30},
        {"member": 3, "status": "done", metric: tie, "val_loss": 0.30},
        {"member": 2, "status": "stopped early", metric: tie, "val_loss": 0.20},
        {"member": 1, "status": "done", metric: tie, "val_loss": None},
        {"member": 0, "status": "done", metric: worse, "val_loss": 0.10},
        {"member": 5, "status": "failed", metric: None, "val_loss": None},
    ]
    assert [row["member"] for row in ranked(table, metric)] == [2, 3, 4, 1, 0, 5]
    assert best_row(table, metric)["member"] == 2
    assert best_row(table[:2], metric)["member"] == 3  # (tied on both: the lower member, listed second)


def test_a_sweep_ranked_by_val_loss_picks_the_member_with_the_lowest():
    result = sweep({**ONE_EPOCH, "epochs": 3}, {"optimizer.lr": [0.001, 0.05, 0.5]}, data=(X, y),
                   metric="val_loss", progress=False)
    losses = {row["member"]: row["val_loss"] for row in result.table}
    assert len(set(losses.values())) == 3, losses
    assert result.metric == "val_loss" and result.best["member"] == min(losses, key=losses.get)


def test_a_sweep_ranked_by_roc_auc_picks_the_highest_and_its_members_stop_by_it(tmp_path, cli):
    """One --metric (early_stopping.metric): the sweep ranks its members by it, and each member
    early-stops by it, keeping the epoch of its best validation ROC AUC."""
    code, output = cli("sweep", "--data", "builtin:breast_cancer", "--grid", "lr=0.003,0.03,0.3", "--epochs", "6",
                       "--hidden", "8", "--patience", "2", "--metric", "val_roc_auc", "--out", tmp_path / "s")
    assert code == 0, output
    assert "top 3 of 3 by val_roc_auc:" in output and "test_roc_auc" in output
    rows = read_rows(tmp_path / "s")
    highest = max(row["val_roc_auc"] for row in rows)
    best = min((row for row in rows if row["val_roc_auc"] == highest), key=lambda row: row["val_loss"])  # (ties)
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["metric"] == "val_roc_auc" and summary["best"]["row"]["member"] == best["member"]
    for row in rows:
        folder = tmp_path / "s" / "members" / str(row["member"])
        assert read_run_config(folder).early_stopping.metric == "val_roc_auc"
        history = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        by_auc = [epoch["val_roc_auc"] for epoch in history]
        assert row["best_epoch"] == 1 + by_auc.index(max(by_auc)) and row["val_roc_auc"] == max(by_auc)
        member_summary = json.loads((folder / "summary.json").read_text())
        for name in ("val_roc_auc", "test_roc_auc", "test_average_precision", "test_f1", "test_log_loss",
                     "test_balanced_accuracy"):
            assert member_summary[name] == row[name] is not None, name
        assert member_summary["test_macro_f1"] is None  # (two classes: the F1 of the positive class)


def test_the_sweep_metric_is_the_base_configs_early_stopping_metric():
    base = {**ONE_EPOCH, "early_stopping": {"metric": "val_balanced_accuracy"}}
    result = sweep(base, {"seed": [0, 1]}, data=(X, y), progress=False)
    assert result.metric == "val_balanced_accuracy" and {"val_balanced_accuracy", "val_macro_f1"} <= set(result.table[0])
    with pytest.raises(SweepError, match="metric val_loss and the base config's early_stopping.metric "
                                         "val_balanced_accuracy differ"):
        sweep(base, {"seed": [0]}, data=(X, y), metric="val_loss", progress=False)
    with pytest.raises(SweepError, match="metric val_f1 does not apply to 3 classes: use val_macro_f1"):
        sweep(ONE_EPOCH, {"seed": [0]}, data=(X, y), metric="val_f1", progress=False)
