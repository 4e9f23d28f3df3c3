"""Numba's thread pool as numbamlp starts it (kernels/pool.py): idle threads that sleep
instead of spinning, unless the user chose otherwise, and an environment left as it was."""

import json
import os
import subprocess
import sys

import pytest

# A child process: the pool started by numbamlp, then 200 tiny parallel loops, each followed
# by a 2 ms pause in which the pool's threads are idle.  Prints the process's CPU seconds
# over the loops, the wait policy numbamlp reports, and the OpenMP variables left set.
IDLE_POOL = """
import json, os, time
import numpy as np
from numba import njit, prange
from numbamlp.kernels import get_backend
from numbamlp.kernels.pool import wait_policy
get_backend("cpu")

@njit(parallel=True)
def touch(a):
    for i in prange(a.size):
        a[i] += 1.0

a = np.zeros(64)
touch(a)
before = time.process_time()
for _ in range(200):
    touch(a)
    time.sleep(0.002)
print(json.dumps({"cpu_seconds": time.process_time() - before, "policy": wait_policy(),
                  "left_set": {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ}}))
"""


def run_idle_pool(**settings) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    env.update(settings)
    run = subprocess.run([sys.executable, "-c", IDLE_POOL], env=env, capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def numba_layer() -> str:
    from numbamlp.kernels import get_backend

    get_backend("cpu")
    import numba

    return numba.threading_layer()


@pytest.mark.skipif(os.cpu_count() < 2, reason="needs 2 CPU threads")
def test_idle_threads_sleep_rather_than_spin():
    """GNU OpenMP's threads spun ~300,000 turns at every wait: beside another busy process
    that made fits 5-25x slower (bench/contention.py).  numbamlp's pool burns next to no CPU
    while idle, against the same loops with OpenMP's own default (GOMP_SPINCOUNT=300000)."""
    if numba_layer() != "omp":
        pytest.skip("the wait policy is OpenMP's; Numba runs another threading layer here")
    ours = run_idle_pool()
    spinning = run_idle_pool(GOMP_SPINCOUNT="300000")
    assert ours["policy"] == "passive (set by numbamlp)"
    assert ours["left_set"] == {}  # (set only while the pool started: children see the user's environment)
    assert ours["cpu_seconds"] < 0.25 * spinning["cpu_seconds"], (ours, spinning)


def test_a_wait_policy_the_user_set_is_kept_and_reported():
    if numba_layer() != "omp":
        pytest.skip("the wait policy is OpenMP's; Numba runs another threading layer here")
    report = run_idle_pool(OMP_WAIT_POLICY="ACTIVE")
    assert report["policy"] == "OMP_WAIT_POLICY=ACTIVE (from the environment)"
    assert report["left_set"] == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_info_names_the_threading_layer_and_wait_policy():
    from click.testing import CliRunner

    from numbamlp.cli.main import main

    result = CliRunner().invoke(main, ["info", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["threading_layer"] in ("omp", "tbb", "workqueue")
    assert report["thread_wait_policy"]
