"""Subnormal numbers in a confident model's step, before and after numbamlp.kernels.negligible_exp.

    python bench/subnormal.py [--rounds 3] [--epochs 30] COMMIT [COMMIT ...]

    e.g. python bench/subnormal.py 8981fc7 WORKTREE

1. What a subnormal input costs this CPU: the output layer's weight gradient dSᵀH
   (10 × 128, k 32, float32, numpy's BLAS on one thread) with none, a tenth and three
   tenths of dS's entries subnormal, µs per call (best of 5 × 5,000 calls).
2. What it costs a stack: the 32 members of bench/sweep.py's grid (optimizer.lr ∈ {0.01,
   0.03, 0.1, 0.3} × weight_decay ∈ {0, 0.001} × seed 0..3; 64-128-10, momentum SGD,
   batch 32, float32) fit on digits' training split with no validation rows (so the models
   grow confident), for each commit in a process of its own (cold_start.unpack; "WORKTREE"
   is the checkout), commits alternating round by round.  Printed: the fit's seconds, and
   the median stack step (StepPlan.step) over the first and the last five epochs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cold_start import unpack

CHILD = """
import itertools, json, statistics, sys, time
import numpy as np
from numbamlp import plan
from numbamlp.config import TrainConfig
from numbamlp.data import prepare
from numbamlp.stack import StackTrainer
epochs = int(sys.argv[1])
configs = [TrainConfig.model_validate({"epochs": epochs, "model": {"hidden": [128]}, "seed": seed,
                                       "optimizer": {"lr": lr, "weight_decay": wd}, "data": {"val_fraction": 0.0}})
           for lr, wd, seed in itertools.product((0.01, 0.03, 0.1, 0.3), (0.0, 0.001), range(4))]
splits = prepare(configs[0].data, 0)
steps, step = [], plan.StepPlan.step
def timed_step(*args, **kwargs):
    start = time.perf_counter()
    try:
        return step(*args, **kwargs)
    finally:
        steps.append(time.perf_counter() - start)
plan.StepPlan.step = timed_step
stack = StackTrainer(configs)
stack.fit(splits.X_train[:32], splits.y_train[:32])  # (the kernels loaded before the clock starts)
steps.clear()
start = time.perf_counter()
stack.fit(splits.X_train, splits.y_train)
seconds = time.perf_counter() - start
per_epoch = len(steps) // epochs
print(json.dumps({"fit": seconds, "first": statistics.median(steps[:5 * per_epoch]) * 1e6,
                  "last": statistics.median(steps[-5 * per_epoch:]) * 1e6}))
"""


def gemm_with_subnormal_inputs() -> None:
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    H = rng.random((32, 128)).astype(np.float32)
    out = np.empty((10, 128), np.float32)
    print("dSᵀH (10 × 128, k 32, float32, one thread), µs per call:")
    for fraction in (0.0, 0.1, 0.3):
        dS = (rng.random((32, 10)) * 0.1).astype(np.float32)
        dS[rng.random(dS.shape) < fraction] = np.float32(1e-39)  # subnormal (float32's smallest normal: 1.2e-38)
        best = float("inf")
        with threadpool_limits(1):
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(5000):
                    np.matmul(dS.T, H, out=out)
                best = min(best, (time.perf_counter() - start) / 5000)
        print(f"  {fraction:4.0%} of dS subnormal  {best * 1e6:6.2f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commits", nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args(argv)
    gemm_with_subnormal_inputs()
    with tempfile.TemporaryDirectory() as work:
        trees = {commit: unpack(commit, Path(work) / commit) for commit in args.commits}
        caches = {commit: Path(work) / f"cache-{commit}" for commit in args.commits}
        results: dict[str, list[dict]] = {commit: [] for commit in args.commits}
        for round_ in range(args.rounds + 1):  # round 0 fills each commit's compile cache
            order = args.commits if round_ % 2 else args.commits[::-1]
            for commit in order:
                env = dict(os.environ, NUMBA_CACHE_DIR=str(caches[commit]))
                if commit != "WORKTREE":
                    env["PYTHONPATH"] = str(trees[commit])
                # (cwd: a folder without numbamlp/, which `python -c` would import before PYTHONPATH's)
                run = subprocess.run([sys.executable, "-c", CHILD, str(args.epochs)], env=env, capture_output=True,
                                     text=True, check=True, cwd=work)
                if round_:
                    results[commit].append(json.loads(run.stdout.splitlines()[-1]))
    print(f"\n32-member stack, {args.epochs} epochs on digits without validation rows, medians of {args.rounds} "
          f"rounds (load {os.getloadavg()[0]:.2f}):")
    print(f"  {'commit':12s} {'fit s':>7s} {'step µs, epochs 1-5':>20s} {'step µs, last 5':>16s}")
    for commit, rows in results.items():
        print(f"  {commit:12s} {statistics.median(r['fit'] for r in rows):7.2f} "
              f"{statistics.median(r['first'] for r in rows):20.0f} {statistics.median(r['last'] for r in rows):16.0f}")


if __name__ == "__main__":
    main()
