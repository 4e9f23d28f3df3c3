"""Numba's threads as numbamlp uses them (kernels/pool.py): on the default settings, a
training thread runs on its share of the cores other processes leave free."""

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from naive import REPORTS_X as X
from naive import REPORTS_Y as y

from numbamlp.kernels import pool, usable_cores
from numbamlp.trainer import Trainer


def test_free_cores_are_the_usable_ones_less_what_other_processes_kept_busy(monkeypatch):
    """Readings (monotonic s, busy s of our CPUs, this process's CPU s) compared over their
    window: other processes' work is the busy time less this process's own."""
    load = pool._Load()
    load.cpus = [0, 1, 2, 3]
    readings = iter([(0.0, 0.0, 0.0), (1.0, 3.0, 2.0), (2.0, 6.2, 3.0), (3.0, 6.7, 3.1), (3.1, 9.9, 3.2),
                     (4.0, 8.6, 3.3)])
    monkeypatch.setattr(load, "reading", lambda: next(readings))
    assert load.free_cores() is None  # (the first reading: nothing to compare yet)
    assert load.free_cores() == 3  # 3 busy-seconds in 1 s, 2 of them ours: 1 core taken
    assert load.free_cores() == 2  # 3.2 busy, 1 ours: 2.2 cores' work, 2 cores taken
    assert load.free_cores() == 4  # 0.5 busy, 0.1 ours: 0.4 of a core (under 0.6), none taken
    assert load.free_cores() == 4  # (a window under _MIN_WINDOW_S: the last answer)
    assert load.free_cores() == 2  # 1 s since the last reading used: 1.9 busy, 0.2 ours, 1.7 taken


def test_threads_training_at_once_share_the_free_cores(monkeypatch):
    load = pool._Load()
    load.cpus = list(range(8))
    monkeypatch.setattr(load, "_free_cores", lambda: 6)
    assert load.share(10.0) == 6
    shares = []
    other = threading.Thread(target=lambda: shares.append(load.share(10.1)))
    other.start()
    other.join()
    assert shares == [3] and load.share(10.2) == 3  # two threads training: half each
    assert load.share(10.2 + 2 * pool.SAMPLE_EVERY_S + 0.1) == 6  # the other stopped asking


def test_an_unreadable_system_keeps_the_threads_as_they_are(monkeypatch):
    load = pool._Load()
    load.cpus = None
    assert load.reading() is None and load.free_cores() is None


@pytest.mark.skipif(not os.path.exists("/proc/stat") or usable_cores() < 2, reason="needs Linux's /proc/stat and 2 cores")
def test_default_threads_drop_to_one_when_every_core_is_busy_with_the_same_bits():
    """With a busy process on every usable core, a fit and Trainer.step on the default
    threads run on one thread once they have looked at the load (no OpenMP thread left
    spinning at a barrier for a descheduled one: 5-25x slower fits, bench/contention.py),
    with the same bits as on two threads, and the fit leaves the calling thread's threads
    as they were.  Each trains until past its first looks, however fast the machine, counted
    from its first epoch or step (which may compile for seconds without a look)."""
    import numba

    from numbamlp.data import load_dataset
    from numbamlp.trainer import Trainer, TrainingInterrupted

    digits = load_dataset("builtin:digits")
    X, y = digits.X[:600] / 16.0, digits.y[:600]
    config = {"batch_size": 16, "seed": 0, "model": {"hidden": [512]}}
    looked = 2 * pool._MIN_WINDOW_S + pool.SAMPLE_EVERY_S  # (by then a window of the busy cores was read)
    fit_threads, step_threads = [], []  # (seconds in, the training thread's Numba threads)
    before = numba.get_num_threads()
    busy = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(usable_cores())]
    try:
        time.sleep(pool.SAMPLE_EVERY_S)
        fitting = Trainer({**config, "epochs": 100_000})

        class Threads:  # (seconds counted from the first epoch's end: a first call may compile)
            def on_epoch_end(self, epoch, metrics):
                now = time.perf_counter()
                fit_threads.append((now - (first or [now])[0], numba.get_num_threads()))
                first.append(now)
                if fit_threads[-1][0] > looked + 0.2:
                    fitting.request_stop("seen enough")

        first = []
        with pytest.raises(TrainingInterrupted):
            fitting.fit(X, y, callbacks=[Threads()])
        assert numba.get_num_threads() == before
        stepping, batches = Trainer(config), []
        while not step_threads or step_threads[-1][0] <= looked + 0.2:
            rows = slice(16 * (len(batches) % 37), 16 * (len(batches) % 37) + 16)
            batches.append((X[rows], y[rows]))
            stepping.step(*batches[-1])
            now = time.perf_counter()
            start = now if len(batches) == 1 else start  # (from the first step's end)
            step_threads.append((now - start, numba.get_num_threads()))
    finally:
        for process in busy:
            process.kill()
            process.wait()
    for seen in (fit_threads, step_threads):
        assert {threads for at, threads in seen if at > looked} == {1}, seen
    alone = Trainer({**config, "threads": 2})
    for batch in batches:
        alone.step(*batch)
    np.testing.assert_array_equal(stepping.model.flat_params, alone.model.flat_params)


def test_info_names_the_threading_layer_wait_policy_and_default_threads(cli):
    result = cli.invoke("info", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["threading_layer"] in ("omp", "tbb", "workqueue")
    assert report["thread_wait_policy"] and report["default_threads"]


# ---------------------------------------------------------------- a Trainer's threads
def test_a_trainers_threads_hold_while_it_fits_and_not_after():
    """Reported 2026-11-30 by a new user (third look); fixed in 1b210a4."""
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
