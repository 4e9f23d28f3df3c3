"""Interruption, crash safety, concurrent runs and hostile files, with real processes."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import QUICK, numbamlp

from numbamlp import load_model
from numbamlp.config import TrainConfig
from numbamlp.data import DataError, load_dataset
from numbamlp.io import ModelFileError, load_checkpoint, save_checkpoint
from numbamlp.trainer import Trainer, TrainingInterrupted

NUMBAMLP = [sys.executable, "-m", "numbamlp.cli.main"]
# slow enough per epoch (~0.1 s) that signals land mid-training, small enough for CI
RUN = ["train", "--hidden", "512,512", "--batch-size", "8", "--epochs", "12", "--quiet"]


def start(args, **kwargs):
    return subprocess.Popen([*NUMBAMLP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for_epochs(directory: Path, epochs: int, process, timeout=120):
    metrics = directory / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= epochs:
            return
        if process.poll() is not None:
            raise AssertionError(f"run ended before epoch {epochs}: {process.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError("timed out waiting for epochs")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    run = subprocess.run([*NUMBAMLP, *RUN, "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return load_model(out / "model.safetensors").flat_params


@pytest.mark.slow
@pytest.mark.parametrize("signal_number,exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_a_checkpoint_and_resume_is_bit_identical(tmp_path, uninterrupted, signal_number, exit_code):
    out = tmp_path / "run"
    process = start([*RUN, "--out", str(out)])
    wait_for_epochs(out, 2, process)
    # land somewhere inside the next epoch (seeded; where exactly still depends on timing,
    # the in-process tests below interrupt at chosen steps)
    time.sleep(random.Random(int(signal_number)).uniform(0.0, 0.08))
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_code, stderr
    assert "Traceback" not in stderr
    assert f"continue with: numbamlp train --resume {out}" in stderr
    _, meta = load_checkpoint(out / "checkpoint")
    assert meta["epoch"] < 12
    resumed = subprocess.run([*NUMBAMLP, "train", "--resume", str(out), "--quiet"], capture_output=True,
                             text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    final = load_model(out / "model.safetensors").flat_params
    assert final.tobytes() == uninterrupted.tobytes()


# ---------------------------------------------------------------- interrupts at chosen steps
# In process: request_stop at exactly the k-th step, checkpoint through the file as
# `numbamlp train` does, a new Trainer restores it and finishes; its weights must be the
# uninterrupted run's, bit for bit.
INTERRUPT_EPOCHS = 3
INTERRUPT_CONFIGS = {
    # 70 rows, batches of 16: 5 steps per epoch, the last one of 6 rows; lr falls every epoch
    "momentum, cosine, float32": {"optimizer": {"name": "momentum", "lr": 0.05}, "schedule": {"name": "cosine"}},
    # 63 training rows (7 held out for validation), 4 steps, the last of 15 rows; per-row
    # weights; Adam's moments and step count, the best weights so far and their loss
    "adam, early stopping, class weights, float64": {
        "dtype": "float64", "optimizer": {"name": "adam", "lr": 0.01}, "class_weight": "balanced",
        "early_stopping": {"patience": 10}},
}
STEPS_PER_EPOCH = {"momentum, cosine, float32": 5, "adam, early stopping, class weights, float64": 4}
# where to stop, given the steps per epoch: the first step, a middle one, the last of the
# first epoch (the epoch completes, then it stops at its end), the first of the second
# epoch, and the second to last of the whole run
STOPS = {"step 1": lambda n: 1, "middle of epoch 1": lambda n: n // 2 + 1, "last step of epoch 1": lambda n: n,
         "first step of epoch 2": lambda n: n + 1, "second to last step": lambda n: INTERRUPT_EPOCHS * n - 1}


def interrupt_problem():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(70, 6))
    y = rng.choice(3, size=70, p=[0.5, 0.3, 0.2])
    X[np.arange(70), y] += 1.0
    return X, y


def interrupt_config(name):
    return {"seed": 5, "epochs": INTERRUPT_EPOCHS, "batch_size": 16, "model": {"hidden": [12, 7]},
            **INTERRUPT_CONFIGS[name]}


def count_steps(trainer, stop_after=None):
    """Count ``trainer``'s optimizer steps (a list that grows by one per step); with
    ``stop_after`` = k, call request_stop right after the k-th, as a signal handler would."""
    steps, real_step = [], trainer.train_step

    def step(*args):
        loss = real_step(*args)
        steps.append(loss)
        if len(steps) == stop_after:
            trainer.request_stop("test")
        return loss

    trainer.train_step = step
    return steps


class StopAtEpochEnd:
    def __init__(self, trainer, epoch):
        self.trainer, self.epoch = trainer, epoch

    def on_epoch_end(self, epoch, metrics):
        if epoch == self.epoch:
            self.trainer.request_stop("test")


@pytest.fixture(scope="module")
def straight_runs():
    X, y = interrupt_problem()
    runs = {}
    for name in INTERRUPT_CONFIGS:
        trainer = Trainer(interrupt_config(name))
        steps = count_steps(trainer)
        trainer.fit(X, y)
        assert len(steps) == INTERRUPT_EPOCHS * STEPS_PER_EPOCH[name]
        runs[name] = trainer
    return runs


def resume_and_finish(tmp_path, trainer, config, X, y):
    """Checkpoint ``trainer`` to a file and finish the run in a new Trainer, as
    `numbamlp train --resume` does (numbamlp.run.train_run)."""
    save_checkpoint(tmp_path / "checkpoint", trainer, config)
    arrays, meta = load_checkpoint(tmp_path / "checkpoint")
    resumed = Trainer(config)
    classes = np.asarray(meta["classes"])
    resumed.build(X.shape[1], len(classes))
    resumed.restore(arrays, meta, classes)
    steps = count_steps(resumed)
    resumed.fit(X, y, warm_start=True)
    return resumed, steps


def assert_same_run(resumed, straight):
    assert resumed.epoch == straight.epoch == INTERRUPT_EPOCHS
    assert resumed.model.flat_params.tobytes() == straight.model.flat_params.tobytes()
    assert resumed.optimizer.step_count == straight.optimizer.step_count
    for key, buffer in straight.optimizer.state.items():
        assert resumed.optimizer.state[key].tobytes() == buffer.tobytes(), key
    same = ("epoch", "loss", "lr", "val_loss", "val_accuracy")  # all but the seconds
    assert [{k: m.get(k) for k in same} for m in resumed.history] == [{k: m.get(k) for k in same}
                                                                       for m in straight.history]


@pytest.mark.parametrize("stop", STOPS)
@pytest.mark.parametrize("name", INTERRUPT_CONFIGS)
def test_an_interrupt_at_a_chosen_step_resumes_bit_identically(tmp_path, straight_runs, name, stop):
    X, y = interrupt_problem()
    config, per_epoch = interrupt_config(name), STEPS_PER_EPOCH[name]
    k = STOPS[stop](per_epoch)
    trainer = Trainer(config)
    before = count_steps(trainer, stop_after=k)
    with pytest.raises(TrainingInterrupted) as stopped:
        trainer.fit(X, y)
    assert len(before) == k  # stopped right after the step it was asked in
    epoch, step_in_epoch = divmod(k - 1, per_epoch)
    if step_in_epoch == per_epoch - 1:  # the epoch's last step: the epoch is finished first
        assert (stopped.value.epoch, stopped.value.step) == (epoch + 1, "end")
    else:
        assert (stopped.value.epoch, stopped.value.step) == (epoch + 1, step_in_epoch + 1)
    resumed, after = resume_and_finish(tmp_path, trainer, config, X, y)
    assert len(before) + len(after) == INTERRUPT_EPOCHS * per_epoch  # no step repeated or skipped
    assert_same_run(resumed, straight_runs[name])


@pytest.mark.parametrize("name", INTERRUPT_CONFIGS)
def test_an_interrupt_between_epochs_resumes_bit_identically(tmp_path, straight_runs, name):
    """request_stop from an epoch-end callback (e.g. a signal while metrics are written)."""
    X, y = interrupt_problem()
    config = interrupt_config(name)
    trainer = Trainer(config)
    before = count_steps(trainer)
    with pytest.raises(TrainingInterrupted) as stopped:
        trainer.fit(X, y, callbacks=[StopAtEpochEnd(trainer, 2)])
    assert (stopped.value.epoch, stopped.value.step) == (2, "end")
    assert len(before) == 2 * STEPS_PER_EPOCH[name]
    resumed, after = resume_and_finish(tmp_path, trainer, config, X, y)
    assert len(after) == STEPS_PER_EPOCH[name]
    assert_same_run(resumed, straight_runs[name])


def test_two_interrupts_in_one_run_resume_bit_identically(tmp_path, straight_runs):
    """Interrupted, resumed, interrupted again mid-epoch, resumed again."""
    name = "adam, early stopping, class weights, float64"
    X, y = interrupt_problem()
    config = interrupt_config(name)
    trainer = Trainer(config)
    count_steps(trainer, stop_after=2)
    with pytest.raises(TrainingInterrupted):
        trainer.fit(X, y)
    save_checkpoint(tmp_path / "first", trainer, config)
    arrays, meta = load_checkpoint(tmp_path / "first")
    middle = Trainer(config)
    middle.build(X.shape[1], len(meta["classes"]))
    middle.restore(arrays, meta, np.asarray(meta["classes"]))
    count_steps(middle, stop_after=STEPS_PER_EPOCH[name] + 1)
    with pytest.raises(TrainingInterrupted) as stopped:
        middle.fit(X, y, warm_start=True)
    assert (stopped.value.epoch, stopped.value.step) == (2, 3)
    resumed, _ = resume_and_finish(tmp_path, middle, config, X, y)
    assert_same_run(resumed, straight_runs[name])


@pytest.mark.slow
def test_kill_9_at_random_moments_always_leaves_loadable_files(tmp_path):
    """Kill -9 while training and writing checkpoints, again and again, resuming each time:
    every file left behind loads, every time."""
    rng = random.Random(0)
    out = tmp_path / "run"
    kills = checked = 0
    for _ in range(12):
        if (out / "checkpoint" / "state.safetensors").exists():
            process = start(["train", "--resume", str(out), "--quiet"])
        else:
            process = start([*RUN, "--epochs", "400", "--out", str(out), "--overwrite"])  # outlives the kills
            # a first checkpoint before any kill: on a loaded machine, start-up alone can
            # outlast the random delays, and then no kill would land on a checkpoint write
            wait_for_epochs(out, 1, process)
        time.sleep(rng.uniform(0.3, 1.5))
        if process.poll() is None:
            process.kill()
            kills += 1
        process.communicate(timeout=120)
        if (out / "checkpoint" / "state.safetensors").exists():
            load_checkpoint(out / "checkpoint")
            checked += 1
        if (out / "model.safetensors").exists():
            load_model(out / "model.safetensors")
        if (out / "config.json").exists():
            json.loads((out / "config.json").read_text())
        if (out / "metrics.jsonl").exists():
            [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert kills >= 6 and checked >= 6, (kills, checked)


@pytest.mark.slow
def test_two_runs_sharing_an_empty_compile_cache_both_succeed(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    processes = [start(["train", "--epochs", "3", "--quiet", "--out", str(tmp_path / f"run{i}")], env=env)
                 for i in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    for i in range(2):
        assert json.loads((tmp_path / f"run{i}" / "summary.json").read_text())["test_accuracy"] > 0.9


fuzz = settings(max_examples=60, deadline=None)


@fuzz
@given(blob=st.binary(max_size=2048), suffix=st.sampled_from([".npz", ".csv"]))
def test_random_bytes_into_data_loaders_give_a_clean_error(tmp_path_factory, blob, suffix):
    path = tmp_path_factory.mktemp("fuzz") / f"data{suffix}"
    path.write_bytes(blob)
    try:
        data = load_dataset(str(path))
    except DataError:
        return
    assert data.X.ndim == 2 and np.isfinite(data.X).all() and len(data.X) == len(data.y)


@fuzz
@given(blob=st.binary(max_size=4096))
def test_random_bytes_into_the_model_loader_give_a_clean_error(tmp_path_factory, blob):
    path = tmp_path_factory.mktemp("fuzz") / "model.safetensors"
    path.write_bytes(blob)
    with pytest.raises(ModelFileError):
        load_model(path)


@fuzz
@given(
    X=st.lists(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5)),
                        min_size=0, max_size=4), max_size=5),
    y=st.lists(st.one_of(st.integers(-2, 3), st.floats(allow_nan=True), st.text(max_size=3)), max_size=6),
)
def test_malformed_arrays_into_npz_give_a_clean_error(tmp_path_factory, X, y):
    path = tmp_path_factory.mktemp("fuzz") / "d.npz"
    try:
        X_array, y_array = np.array(X), np.array(y)
    except ValueError:  # ragged lists: numpy itself refuses, nothing to save
        return
    np.savez(path, X=X_array, y=y_array)
    try:
        data = load_dataset(str(path))
    except DataError:
        return
    assert data.X.ndim == 2 and np.isfinite(data.X).all() and len(data.X) == len(data.y)


@pytest.mark.slow
def test_read_only_install_falls_back_to_a_user_cache_with_a_notice(tmp_path):
    """Install into a directory, bind-mount it read-only, and train from there."""
    root = Path(__file__).resolve().parents[1]
    target, mounted = tmp_path / "site", tmp_path / "ro"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(root)], check=True, capture_output=True, timeout=600)
    mounted.mkdir()
    mount = subprocess.run(["mount", "--bind", str(target), str(mounted)], capture_output=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mount.stderr.decode().strip()}")
    try:
        remount = subprocess.run(["mount", "-o", "remount,ro,bind", str(mounted)], capture_output=True)
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {remount.stderr.decode().strip()}")
        env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")}
        env.update(PYTHONPATH=str(mounted), HOME=str(tmp_path / "home"))
        run = subprocess.run([sys.executable, "-m", "numbamlp.cli.main", "train", "--epochs", "2", "--quiet",
                              "--out", str(tmp_path / "run")], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=600)
        assert run.returncode == 0, run.stderr
        notices = [line for line in run.stderr.splitlines() if line.startswith("note: ")]
        assert len(notices) == 1 and "read-only" in notices[0] and str(tmp_path / "home") in notices[0]
        imported = subprocess.run([sys.executable, "-c", "import numbamlp.kernels as k; print(k.__file__)"],
                                  capture_output=True, text=True, env=env, cwd=tmp_path).stdout.strip()
        assert imported.startswith(str(mounted)), imported  # the run used the read-only copy
    finally:
        subprocess.run(["umount", str(mounted)], capture_output=True)


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["workqueue", "omp"])
def test_trainers_in_two_threads_on_each_threading_layer(tmp_path, layer):
    """Numba's fallback threading layer (no OpenMP, no TBB installed) aborts the process
    when two threads launch parallel work at once; the cpu backend's calls take turns there.
    On OpenMP (where there is one) they run at once."""
    import numba

    import numbamlp.kernels.cpu_backend  # noqa: F401  (starts Numba's threads: the layer is known)

    if layer == "omp" and numba.threading_layer() != "omp":
        pytest.skip(f"Numba's OpenMP layer is not this machine's (it has {numba.threading_layer()})")
    code = (
        "import threading, numba, numpy as np\n"
        "from numbamlp.trainer import Trainer\n"
        "def work(seed):\n"
        "    rng = np.random.default_rng(seed)\n"
        "    t = Trainer({'epochs': 2, 'model': {'hidden': [512]}, 'batch_size': 128, 'seed': seed})\n"
        "    X = rng.normal(size=(1000, 784)).astype(np.float32)\n"
        "    t.fit(X, rng.integers(0, 10, 1000))\n"
        "    t.predict(X)\n"
        "threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "print(numba.threading_layer())\n"
    )
    env = {**os.environ, "NUMBA_THREADING_LAYER": layer}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [layer]


@pytest.mark.slow
def test_a_process_forked_after_training_trains_too_and_gets_the_same_bits():
    """GNU OpenMP does not survive fork(): a forked child runs numbamlp on one thread
    (the kernels' serial paths), and since the GEMM blocks depend on the shape alone, its
    weights equal the parent's for the same seed.  The default threads' looks at the load
    (kernels/pool.py) must not give the child its threads back: alone on a quiet machine, a
    child training longer than a look's interval was terminated by Numba ("fork() called
    from a process already using GNU OpenMP")."""
    code = (
        "import multiprocessing, time, numpy as np\n"
        "from numbamlp.kernels.pool import SAMPLE_EVERY_S\n"
        "from numbamlp.trainer import Trainer\n"
        "def weights(seed, wait=0.0):\n"
        "    time.sleep(wait)\n"
        "    rng = np.random.default_rng(seed)\n"
        "    t = Trainer({'epochs': 40, 'model': {'hidden': [512]}, 'batch_size': 128, 'seed': seed,\n"
        "                 'optimizer': {'name': 'adam'}})\n"
        "    t.fit(rng.normal(size=(600, 784)).astype(np.float32), rng.integers(0, 10, 600))\n"
        "    return t.model.flat_params.tobytes()\n"
        "if __name__ == '__main__':\n"
        "    parent = weights(0)\n"
        "    with multiprocessing.get_context('fork').Pool(1) as pool:  # (alone: all cores free)\n"
        "        children = pool.starmap(weights, [(0, SAMPLE_EVERY_S + 0.1)] * 2, chunksize=1)\n"
        "    assert children[0] == parent and children[1] == parent\n"
        "    print('same')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["same"]


def test_a_stop_asked_before_a_fit_starts_stops_it_and_is_forgotten_after():
    """A SIGINT that came while a sweep's stack was being set up (its handler installed, fit
    not yet begun) was cleared when fit started: the sweep trained on to its end and exited
    0.  Trainer.fit cleared it the same way (and the service's SIGTERM, before the fix of
    its step hook)."""
    from numbamlp.data import load_dataset
    from numbamlp.stack import StackTrainer
    from numbamlp.sweeps import StackStopped, SweepData, train_stack
    from numbamlp.trainer import Trainer, TrainingInterrupted

    iris = load_dataset("builtin:iris")
    config = {"epochs": 5, "batch_size": 16, "model": {"hidden": [4]}}
    trainer = Trainer(config)
    trainer.request_stop("asked before")
    with pytest.raises(TrainingInterrupted):
        trainer.fit(iris.X, iris.y)
    assert trainer.epoch == 0  # (stopped in its first epoch)
    trainer.fit(iris.X, iris.y, warm_start=True)  # (forgotten once that fit ended)
    assert trainer.epoch == 5
    stack = StackTrainer([config, {**config, "seed": 1}])
    stack.request_stop("asked before")
    with pytest.raises(TrainingInterrupted):
        stack.fit(iris.X, iris.y)
    stack.fit(iris.X, iris.y, warm_start=True)
    assert [t.epoch for t in stack.trainers] == [5, 5]
    data = SweepData(iris.X, iris.y, None, None, iris.X, iris.y)
    with pytest.raises(StackStopped):  # (a signal between train_stack's set-up and fit)
        train_stack([config, {**config, "seed": 1}], data, on_start=lambda s: s.request_stop("signal"))


# ---------------------------------------------------------------- a user's interrupts and runs started together
def test_two_runs_started_together_get_two_directories(tmp_path):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    processes = [subprocess.Popen([*NUMBAMLP, "train", *QUICK], cwd=tmp_path, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert load_model(run / "model.safetensors").layers == [64, 16, 10]
        assert json.loads((run / "summary.json").read_text())["run_dir"] == f"runs/{run.name}"


@pytest.mark.slow
def test_an_interrupted_run_leaves_a_model_that_eval_and_predict_use(tmp_path):
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    out = tmp_path / "run"
    process = subprocess.Popen([*NUMBAMLP, *RUN, "--out", str(out)], stdout=subprocess.PIPE,
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
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db.

    A KeyboardInterrupt (the second Ctrl-C) while a resumed run trains: the message says
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
