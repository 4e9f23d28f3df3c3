"""Sweeps that learn (numbamlp.sweeps.search, `numbamlp sweep --search`): trials asked of a
real Optuna study, trained in stacks whose freed slots are refilled, pruned by Optuna's
pruners; each trial equal to `numbamlp train` with its config for the epochs it trained;
the study in its storage; resume; bad input."""

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
from naive import signalled_once_written

from numbamlp.io import load_model
from numbamlp.run import read_run_config, train_run
from numbamlp.sweeps import SweepError, SweepInterrupted, sweep
from numbamlp.sweeps.search import TrialWatch

optuna = pytest.importorskip("optuna")

NUMBAMLP = [sys.executable, "-m", "numbamlp.cli.main"]
BASE = {"epochs": 6, "data": {"train": "builtin:iris"}, "model": {"hidden": [8]}}
SPACE = {"optimizer.lr": ["loguniform:1e-3:0.5"], "seed": [0, 1, 2, 3]}


def metrics_lines(run_directory):
    return [json.loads(line) for line in (run_directory / "metrics.jsonl").read_text().splitlines()]


def study_of(directory):
    """The study a sweep directory's search kept (its default storage), as Optuna loads it."""
    name = json.loads((directory / "sweep.json").read_text())["search"]["study"]
    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(directory / "study.journal"))))


@pytest.fixture
def seats(monkeypatch):
    """The epochs a stack had run when each StackFit.seat happened (0: before its first)."""
    from numbamlp.stack import StackFit

    seen, real_seat, real_run_epoch = [], StackFit.seat, StackFit.run_epoch

    def run_epoch(fit):
        fit.epochs_run = getattr(fit, "epochs_run", 0) + 1
        return real_run_epoch(fit)

    def seat(fit, slot, config):
        seen.append(getattr(fit, "epochs_run", 0))
        return real_seat(fit, slot, config)

    monkeypatch.setattr(StackFit, "run_epoch", run_epoch)
    monkeypatch.setattr(StackFit, "seat", seat)
    return seen


def test_each_trial_equals_numbamlp_train_for_the_epochs_it_trained(tmp_path, seats):
    """TPE with ASHA over 10 trials, 3 slots: pruned trials leave, and later ones take their
    slots mid-stack; every finished trial's weights and scores equal `numbamlp train` with
    its config, bit for bit, and a pruned one's epochs equal the first epochs of it."""
    result = sweep(BASE, SPACE, search="tpe", trials=10, prune="asha", min_epochs=1, reduction_factor=2,
                   stack_size=3, out=tmp_path / "s")
    assert any(epochs > 0 for epochs in seats)  # (trials seated in slots freed mid-stack)
    table = result.table
    assert [row["member"] for row in table] == list(range(10))
    statuses = {row["status"] for row in table}
    assert "pruned" in statuses and statuses & {"done", "stopped early"}
    assert_each_trial_trains_as_alone(table, tmp_path / "s", tmp_path)
    states = {t.number: t.state.name for t in study_of(tmp_path / "s").trials}
    assert {n: ("PRUNED" if r["status"] == "pruned" else "COMPLETE") for n, r in enumerate(table)
            if r["status"] in ("pruned", "done", "stopped early")} == {n: s for n, s in states.items()
                                                                        if s in ("PRUNED", "COMPLETE")}
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["search"]["search"] == "tpe" and sum(summary["search"]["trials_by_state"].values()) == 10
    assert result.best is not None and result.best["status"] in ("done", "stopped early")


def assert_each_trial_trains_as_alone(table, directory, tmp_path):
    """Every finished trial's weights and scores equal `numbamlp train` with its config,
    bit for bit, and a pruned one's epochs the first epochs of it."""
    for row in table:
        member_dir = directory / "members" / str(row["member"])
        config = read_run_config(member_dir)
        assert config.optimizer.lr == row["optimizer.lr"] and config.seed == row["seed"]
        alone = train_run(config, out=tmp_path / f"alone{row['member']}")
        if row["status"] == "pruned":
            assert 1 <= row["pruned_epoch"] == row["epochs"] < BASE["epochs"]
            ours = metrics_lines(member_dir)
            assert len(ours) == row["pruned_epoch"]
            theirs = metrics_lines(tmp_path / f"alone{row['member']}")[: len(ours)]
            for mine, its in zip(ours, theirs):
                assert {k: v for k, v in mine.items() if k != "seconds"} == \
                       {k: v for k, v in its.items() if k != "seconds"}
            continue
        assert row["pruned_epoch"] is None
        np.testing.assert_array_equal(load_model(row["model_path"]).flat_params,
                                      load_model(alone["model_path"]).flat_params)
        for key in ("test_accuracy", "test_loss", "val_accuracy", "best_epoch"):
            assert row[key] == alone[key], key


def test_a_grid_search_trains_every_combination_once_and_sweeps_share_a_storage(tmp_path):
    """Two grid searches in one sqlite storage: each its own study, every combination once."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    grids = ({"optimizer.lr": [0.05, 0.2], "model.activation": ["relu", "tanh"]}, {"optimizer.lr": [0.1]})
    for n, grid in enumerate(grids):
        result = sweep(BASE, grid, search="grid", storage=storage, out=tmp_path / f"s{n}")
        assert len(result.table) == (4, 1)[n]
    combinations = {(row["optimizer.lr"], row["model.activation"]) for row in
                    sweep(resume=tmp_path / "s0").table}  # (resumed: nothing left to train)
    assert combinations == {(0.05, "relu"), (0.05, "tanh"), (0.2, "relu"), (0.2, "tanh")}
    names = [json.loads((tmp_path / f"s{n}" / "sweep.json").read_text())["search"]["study"] for n in (0, 1)]
    assert names[0] != names[1]
    trials = [optuna.load_study(study_name=name, storage=storage).trials for name in names]
    assert [len(t) for t in trials] == [4, 1] and all(t.state.name == "COMPLETE" for t in trials[0] + trials[1])


@pytest.mark.parametrize("search, space", [
    ("random", SPACE),
    ("tpe", {"optimizer.lr": ["loguniform:1e-3:0.5"], "model.hidden": [[8], [4]]}),  # (two shapes' stacks)
])
def test_without_refilling_a_stacks_freed_slots_stay_empty(tmp_path, seats, search, space):
    result = sweep(BASE, space, search=search, trials=8, prune="asha", reduction_factor=2, stack_size=3,
                   refill=False)
    assert len(result.table) == 8 and seats and all(epochs == 0 for epochs in seats)


def test_a_trial_that_diverges_is_a_row_of_its_own_and_its_stack_mates_go_on(tmp_path):
    """A learning rate of 1e12 diverges in the first epoch, beside trials that train: the
    watch hears only the epochs completed, and the others' rows are as alone."""
    watch = Recorder()
    result = sweep(BASE, {"optimizer.lr": [1e12, 0.05], "seed": [0, 1]}, search="grid", stack_size=4, watch=watch,
                   out=tmp_path / "s")
    statuses = [row["status"] for row in result.table]
    assert statuses.count("diverged") == 2 and statuses.count("done") == 2, statuses
    for row in result.table:
        assert watch.epochs.get(row["member"], []) == list(range(1, row["epochs"] + 1))
    assert_each_trial_trains_as_alone([row for row in result.table if row["status"] == "done"], tmp_path / "s",
                                      tmp_path)


def test_a_repeat_cancelled_while_it_waits_for_its_originals_outcome_ends_cancelled(tmp_path):
    """Three random trials of one setting: 1 and 2 wait for trial 0's outcome; 1 is
    cancelled meanwhile: its row and the study say cancelled, 2 takes 0's outcome."""

    class CancelTheFirstRepeat(Recorder):
        def epoch(self, member, metrics):
            super().epoch(member, metrics)
            self.to_cancel.add(1)

    result = sweep(BASE, {"seed": [0]}, search="random", trials=3, stack_size=3, watch=CancelTheFirstRepeat(),
                   out=tmp_path / "s")
    assert [(row["status"], row["repeat_of"]) for row in result.table] == \
        [("done", None), ("cancelled", None), ("done", 0)]
    assert [t.state.name for t in study_of(tmp_path / "s").trials] == ["COMPLETE", "FAIL", "COMPLETE"]


def test_a_cancelled_trials_outcome_is_not_taken_by_a_trial_with_its_settings(tmp_path):
    """Six random trials over two settings, trial 0 cancelled after its first epoch: the
    next trial with its settings trains in its place, and the later ones take that one's
    outcome."""
    watch = Recorder(cancel=0)
    result = sweep(BASE, {"seed": [0, 1]}, search="random", trials=6, stack_size=2, watch=watch)
    assert result.table[0]["status"] == "cancelled"
    assert [row["member"] for row in result.table if row["status"] == "cancelled"] == [0]
    same = [row for row in result.table[1:] if row["seed"] == result.table[0]["seed"]]
    assert same and same[0]["repeat_of"] is None and same[0]["status"] == "done"
    assert all(row["repeat_of"] == same[0]["member"] for row in same[1:])


def test_the_median_pruner_stops_no_trial_before_min_epochs(tmp_path):
    result = sweep(BASE, SPACE, search="random", trials=10, prune="median", min_epochs=3, reduction_factor=2,
                   stack_size=3)
    pruned = [row["pruned_epoch"] for row in result.table if row["status"] == "pruned"]
    assert pruned and min(pruned) >= 3


def test_an_interrupted_search_resumes_with_its_study(tmp_path):
    """Stopped (as Ctrl-C stops it) after 3 trials have rows; resume trains the rest — the
    trials interrupted mid-stack again, under their numbers — to the budget, none twice."""
    stop_after = 3

    def stop(done, total, best):
        if done >= stop_after:
            raise KeyboardInterrupt

    with pytest.raises(SweepInterrupted):
        sweep(BASE, SPACE, search="random", trials=8, prune="asha", reduction_factor=2, stack_size=3,
              out=tmp_path / "s", progress=stop)
    before = [json.loads(line) for line in (tmp_path / "s" / "results.jsonl").read_text().splitlines()]
    assert stop_after <= len(before) < 8  # (the rows of the trials that ended at one epoch together)
    in_flight = {t.number for t in study_of(tmp_path / "s").trials if t.state.name == "RUNNING"}
    assert in_flight - {row["member"] for row in before}  # (trials stopped mid-stack: trained again)
    result = sweep(resume=tmp_path / "s")
    assert [row["member"] for row in result.table] == list(range(8))
    assert all(row["status"] in ("done", "stopped early", "pruned") for row in result.table)
    for row in before:  # (kept as they were)
        again = result.table[row["member"]]
        assert {k: v for k, v in row.items() if k != "model_path"} == \
               {k: v for k, v in again.items() if k != "model_path"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(search="tpe"), "needs --trials"),
    (dict(search="tpe", trials=4, random=3), "not --random"),
    (dict(search="bayes", trials=4), "search must be one of"),
    (dict(search="tpe", trials=4, prune="sometimes"), "prune must be one of"),
    (dict(search="tpe", trials=0), "at least 1"),
    (dict(search="tpe", trials=4, reduction_factor=1), "reduction-factor"),
    (dict(search="tpe", trials=4, workers=0), "workers must be at least 1"),
    (dict(search="tpe", trials=4, workers=2, scheduler="tcp://127.0.0.1:1"), "give one of"),
    (dict(watch=TrialWatch()), "watch and written go with search"),
    (dict(prune="asha"), "go with --search"),
    (dict(trials=5), "go with --search"),
])
def test_bad_search_settings_are_refused_before_anything_trains(tmp_path, kwargs, message):
    with pytest.raises(SweepError, match=message):
        sweep(BASE, SPACE, out=tmp_path / "s", **kwargs)
    assert not (tmp_path / "s").exists()


def test_a_scheduler_that_cannot_be_reached_is_said_before_anything_is_written(tmp_path):
    pytest.importorskip("distributed")
    with pytest.raises(SweepError, match="cannot reach the Dask scheduler"):
        sweep(BASE, SPACE, search="tpe", trials=4, scheduler="tcp://127.0.0.1:9", out=tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_a_value_no_trial_could_train_with_is_refused_before_anything_trains(tmp_path):
    with pytest.raises(SweepError, match="early_stopping.patience"):
        sweep(BASE, {"early_stopping.patience": ["int:0:5"]}, search="tpe", trials=3, out=tmp_path / "a")
    with pytest.raises(SweepError, match="activation"):
        sweep(BASE, {"model.activation": ["relu", "bogus"]}, search="tpe", trials=3, out=tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_space_a_search_cannot_take_is_refused(tmp_path):
    with pytest.raises(SweepError, match="grid search takes lists"):
        sweep(BASE, SPACE, search="grid")
    with pytest.raises(SweepError, match="only value"):
        sweep(BASE, {"optimizer.lr": [0.1, "uniform:0.01:0.5"]}, search="tpe", trials=3)
    with pytest.raises(SweepError, match="not the data"):
        sweep(BASE, {"data.val_fraction": [0.1, 0.2]}, search="tpe", trials=3)
    with pytest.raises(SweepError, match="or the machine"):
        sweep(BASE, {"threads": [1, 2]}, search="tpe", trials=3)


def test_without_optuna_the_search_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(SweepError, match=r"pip install 'numbamlp\[search\]'"):
        sweep(BASE, SPACE, search="tpe", trials=3)


def test_the_command_line_searches_and_reports(tmp_path):
    done = subprocess.run(NUMBAMLP + ["sweep", "--data", "builtin:iris", "--epochs", "4", "--hidden", "8",
                                      "--grid", "lr=loguniform:1e-3:0.5", "--grid", "model.activation=relu,tanh",
                                      "--search", "tpe", "--trials", "6", "--prune", "median", "--stack-size", "2",
                                      "--out", str(tmp_path / "s"), "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["members"] == 6 and summary["search"]["prune"] == "median"
    refused = subprocess.run(NUMBAMLP + ["sweep", "--data", "builtin:iris", "--grid", "lr=0.1,0.2", "--prune", "asha"],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "go with --search" in refused.stderr and "Traceback" not in refused.stderr


def test_optuna_dashboard_opens_a_searchs_study_file(tmp_path):
    """`optuna-dashboard sweeps/DIR/study.journal` (a real server on a free 127.0.0.1 port)
    lists the sweep's study, its trials and every epoch's report."""
    import shutil
    import socket
    import time
    import urllib.request

    from pathlib import Path

    beside = Path(sys.executable).parent / "optuna-dashboard"  # (the environment's own, on PATH or not)
    dashboard = str(beside) if beside.exists() else shutil.which("optuna-dashboard")
    if dashboard is None:
        pytest.skip("needs optuna-dashboard (the dev extra)")
    result = sweep(BASE, SPACE, search="tpe", trials=4, prune="median", out=tmp_path / "s")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([dashboard, str(tmp_path / "s" / "study.journal"), "--port", str(port), "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, studies = time.monotonic() + 60, None
        while studies is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as answer:
                    studies = json.load(answer)["study_summaries"]
            except OSError:
                time.sleep(0.2)
        assert studies is not None, "optuna-dashboard did not answer"
        name = json.loads((tmp_path / "s" / "sweep.json").read_text())["search"]["study"]
        assert [s["study_name"] for s in studies] == [name]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}?after=0",
                                    timeout=10) as answer:
            trials = json.load(answer)["trials"]
        assert [t["number"] for t in trials] == [row["member"] for row in result.table]
        for trial, row in zip(trials, result.table):
            assert len(trial["intermediate_values"]) == row["epochs"]
    finally:
        server.kill()
        server.wait(timeout=30)


def test_a_trial_with_an_earlier_trials_settings_takes_its_outcome_without_training(tmp_path):
    """Six random trials over two settings: four repeat one of the first two, whose outcome
    (the same bits training would give) they take, with repeat_of, and are told as it was."""
    result = sweep(BASE, {"seed": [0, 1]}, search="random", trials=6, stack_size=2, out=tmp_path / "s")
    trained = {row["seed"]: row for row in result.table if row["repeat_of"] is None}
    repeats = [row for row in result.table if row["repeat_of"] is not None]
    assert sorted(trained) == [0, 1] and len(repeats) == 4
    for row in repeats:
        original = result.table[row["repeat_of"]]
        assert original["repeat_of"] is None and original["seed"] == row["seed"] and row["seconds"] == 0.0
        for key in ("val_accuracy", "val_loss", "test_accuracy", "epochs", "status"):
            assert row[key] == original[key], key
        np.testing.assert_array_equal(load_model(row["model_path"]).flat_params,
                                      load_model(original["model_path"]).flat_params)


@pytest.mark.parametrize("stop, where", [(signal.SIGINT, []), (signal.SIGTERM, []),
                                         pytest.param(signal.SIGINT, ["--workers", "2"], id="on-dask")])
def test_a_signal_stops_a_search_after_its_step_and_resume_completes_it(tmp_path, stop, where):
    """A real SIGINT or SIGTERM to `numbamlp sweep --search` once a trial's row is written:
    exit 130, the rows kept, the way on said; --resume trains the rest to the budget.  On
    Dask (its own LocalCluster) too."""
    if where:
        pytest.importorskip("distributed")
    args = ["--epochs", "30", "--hidden", "256", "--data", "builtin:digits", "--grid", "lr=0.001,0.01,0.1",
            "--grid", "seed=0,1,2,3", "--search", "random", "--trials", "8", "--stack-size", "2", *where]
    results = tmp_path / "s" / "results.jsonl"
    code, err = signalled_once_written(["sweep", *args, "--out", str(tmp_path / "s")], results, stop)
    assert code == 130, err
    assert "continue with: numbamlp sweep --resume" in err and "Traceback" not in err
    assert 1 <= len(results.read_text().splitlines()) < 8
    resumed = subprocess.run([*NUMBAMLP, "sweep", "--resume", str(tmp_path / "s"), *where, "--json"],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert [json.loads(line)["member"] for line in results.read_text().splitlines()] == list(range(8))


class Recorder(TrialWatch):
    """Hears of every trial; cancels trial ``cancel`` after its first epoch; stops the
    search once ``stop_after`` trials have ended."""

    def __init__(self, cancel=None, stop_after=None):
        self.cancel, self.stop_after = cancel, stop_after
        self.started_trials, self.epochs, self.rows, self.to_cancel = [], {}, {}, set()

    def attach(self, stop):
        self.stop = stop

    def started(self, member, settings):
        self.started_trials.append(member)

    def epoch(self, member, metrics):
        self.epochs.setdefault(member, []).append(metrics["epoch"])
        if member == self.cancel:
            self.to_cancel.add(member)

    def ended(self, member, row):
        self.rows[member] = row
        if self.stop_after is not None and len(self.rows) == self.stop_after:
            self.stop("enough")

    def cancelled(self):
        return self.to_cancel


def test_a_watch_hears_of_every_trial_and_may_cancel_one_or_stop_the_search(tmp_path):
    watch = Recorder(cancel=1)
    result = sweep(BASE, SPACE, search="random", trials=5, stack_size=2, watch=watch, out=tmp_path / "s")
    assert sorted(watch.started_trials) == list(range(5)) == sorted(watch.rows)
    for row in result.table:
        assert watch.rows[row["member"]] == row
        assert watch.epochs[row["member"]] == list(range(1, row["epochs"] + 1))  # (every epoch, in order)
    assert result.table[1]["status"] == "cancelled" and result.table[1]["epochs"] == 1
    assert study_of(tmp_path / "s").trials[1].state.name == "FAIL"
    stopper = Recorder(stop_after=2)
    with pytest.raises(SweepInterrupted):
        sweep(BASE, SPACE, search="random", trials=6, stack_size=2, watch=stopper, out=tmp_path / "t")
    assert 2 <= len(stopper.rows) < 6
    assert len(sweep(resume=tmp_path / "t").table) == 6


# ---------------------------------------------------------------- on Dask
def test_a_search_on_dask_trains_its_stacks_on_the_workers_as_here(cluster, tmp_path):
    """TPE with ASHA, its stacks actors on two workers: every trial equals `numbamlp train`
    alone, and a grid search's rows equal the same search in this process."""
    result = sweep(BASE, SPACE, search="tpe", trials=10, prune="asha", reduction_factor=2, stack_size=3,
                   client=cluster, out=tmp_path / "s")
    assert [row["member"] for row in result.table] == list(range(10))
    assert {row["status"] for row in result.table} & {"done", "stopped early"}
    assert_each_trial_trains_as_alone(result.table, tmp_path / "s", tmp_path)
    grid = {"epochs": [2, 6], "seed": [0, 1, 2]}
    on_dask = sweep(BASE, grid, search="grid", stack_size=2, client=cluster)
    here = sweep(BASE, grid, search="grid", stack_size=2)
    assert without_timing(on_dask.table) == without_timing(here.table)


@pytest.mark.parametrize("victim", [0, 1])
def test_a_lost_workers_trials_train_again_elsewhere(cluster, tmp_path, monkeypatch, victim):
    """A worker killed (SIGKILL) once both stacks (one a worker: Dask places actors on the
    worker with the fewest) have trained an epoch: the trials of the stack it held train
    again from their start on the worker left — whether that stack's epoch was in flight or
    had just been reported —, the watch hears each epoch once, and every row equals the
    search in this process."""
    import os
    import time

    from numbamlp.sweeps.search import TrialRunner

    grid = {"epochs": [4, 8], "seed": [0, 1, 2, 3]}
    cluster.wait_for_workers(2, timeout=60)  # (the nanny's new worker, after an earlier kill)
    pids = cluster.run(os.getpid)
    lost, real_lost_trials = [], TrialRunner._lost_trials

    def lost_trials(runner, trials, err, untrained=frozenset()):
        lost.extend(trial.trial.number for trial in trials)
        return real_lost_trials(runner, trials, err, untrained)

    monkeypatch.setattr(TrialRunner, "_lost_trials", lost_trials)

    class KillAWorker(TrialWatch):
        killed, epochs = None, []

        def epoch(self, member, metrics):
            self.epochs.append((member, metrics["epoch"]))
            if self.killed is None and len(self.epochs) == 4:  # (the first epoch of both stacks' members)
                self.killed = sorted(pids)[victim]
                os.kill(pids[self.killed], signal.SIGKILL)
                time.sleep(0.05)  # (dead before the next call to its stack)

    watch = KillAWorker()
    on_dask = sweep(BASE, grid, search="grid", stack_size=2, client=cluster, watch=watch)
    assert pids[watch.killed] not in cluster.run(os.getpid).values()
    assert lost  # (a stack was lost: its trials trained again)
    assert len(set(watch.epochs)) == len(watch.epochs) == sum(row["epochs"] for row in on_dask.table)
    here = sweep(BASE, grid, search="grid", stack_size=2)
    assert without_timing(on_dask.table) == without_timing(here.table)
    assert all(row["status"] in ("done", "stopped early") for row in here.table)


def without_timing(table):
    return [{k: v for k, v in row.items() if k not in ("seconds", "model_path")} for row in table]
