"""A 32-member sweep on digits, four ways, wall-clock as a user sees it.

    python bench/sweep.py [--rounds 3] [--epochs 30] [--skip-loop] [--json FILE]

The grid (issue 13): optimizer.lr ∈ {0.01, 0.03, 0.1, 0.3} × optimizer.weight_decay ∈
{0, 0.001} × seed ∈ {0..3}, 30 epochs, 128 hidden units, momentum SGD, batch 32, float32,
the digits split of `numbamlp train` (25 % test, 10 % of the rest for validation).

    sweep              `numbamlp sweep --grid ...` in-process (one process, all cores)
    sweep --workers 2  the same on a Dask LocalCluster of 2 worker processes it starts
    sklearn joblib     the same 32 fits with scikit-learn's MLPClassifier (sgd, momentum 0.9,
                       batch 32, 30 epochs, no early stopping), joblib over all cores
    shell loop         32 `numbamlp train --config member.json` processes one after another,
                       each member's config as the sweep wrote it

Every timing is one whole command (process start-up and, for the sweep, writing its
directory), rounds interleaved; medians and ratios are printed.  Then the overhead per
task on a LocalCluster: 32 members of 0 epochs, one per task (--stack-size 1), on 2
workers against in-process, with the cluster already up (Python API, ``client=``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = ["--grid", "optimizer.lr=0.01,0.03,0.1,0.3", "--grid", "optimizer.weight_decay=0,0.001",
        "--grid", "seed=0,1,2,3"]
NUMBAMLP = [sys.executable, "-m", "numbamlp.cli.main"]


def timed(command: list[str], **kwargs) -> float:
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{run.stderr}")
    return seconds


def sweep_command(folder: Path, epochs: int, *extra: str) -> list[str]:
    return [*NUMBAMLP, "sweep", *GRID, "--epochs", str(epochs), "--hidden", "128", "--out", str(folder), "--quiet",
            *extra]


def sklearn_fits(epochs: int) -> float:
    """The 32 fits under joblib on all cores, in a child process (its own start-up, as the others)."""
    code = f"""
import itertools, warnings
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from numbamlp.config import TrainConfig
from numbamlp.data import prepare
config = TrainConfig.model_validate({{"data": {{"val_fraction": 0.1}}}})
splits = prepare(config.data, 0)
def fit(lr, wd, seed):
    warnings.simplefilter("ignore", ConvergenceWarning)
    model = MLPClassifier(hidden_layer_sizes=(128,), solver="sgd", momentum=0.9, nesterovs_momentum=False,
                          learning_rate_init=lr, alpha=wd, batch_size=32, max_iter={epochs}, tol=0.0,
                          n_iter_no_change={epochs + 1}, shuffle=True, random_state=seed)
    model.fit(splits.X_train, splits.y_train)
    return model.score(splits.X_val, splits.y_val)
grid = itertools.product((0.01, 0.03, 0.1, 0.3), (0.0, 0.001), range(4))
scores = Parallel(n_jobs=-1)(delayed(fit)(*member) for member in grid)
assert len(scores) == 32
"""
    return timed([sys.executable, "-c", code])


def shell_loop(sweep_folder: Path, work: Path) -> float:
    """32 `numbamlp train` processes, one after another, from the sweep's member configs."""
    script = work / "loop.sh"
    lines = [f"{' '.join(NUMBAMLP)} train --config {sweep_folder}/members/{k}/config.json "
             f"--out {work}/loop/{k} --quiet" for k in range(32)]
    script.write_text("set -e\n" + "\n".join(lines) + "\n")
    shutil.rmtree(work / "loop", ignore_errors=True)
    return timed(["bash", str(script)])


def task_overhead(members: int = 32) -> dict:
    """Seconds per task of 0-epoch members, one per task: in-process and on a running
    2-worker LocalCluster (the cluster's start-up is not counted)."""
    from distributed import Client, LocalCluster

    from numbamlp.sweeps import sweep

    base, grid = {"epochs": 0}, {"seed": list(range(members))}
    sweep(base, grid, stack_size=1)  # warm this process
    here = []
    on_dask = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      env={"NUMBA_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // 2))}) as cluster, \
            Client(cluster) as client:
        sweep(base, grid, stack_size=1, client=client)  # warm the workers
        for _ in range(3):
            start = time.perf_counter()
            sweep(base, grid, stack_size=1)
            here.append((time.perf_counter() - start) / members)
            start = time.perf_counter()
            sweep(base, grid, stack_size=1, client=client)
            on_dask.append((time.perf_counter() - start) / members)
    return {"in_process_s_per_task": statistics.median(here), "local_cluster_s_per_task": statistics.median(on_dask)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--skip-loop", action="store_true", help="leave out the (slow) shell loop")
    parser.add_argument("--json", dest="json_file")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"sweep": [], "sweep --workers 2": [], "sklearn joblib": [], "shell loop": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        timed(sweep_command(work / "warm", args.epochs))  # compile cache, page cache
        for r in range(args.rounds):
            times["sweep"].append(timed(sweep_command(work / f"s{r}", args.epochs)))
            times["sweep --workers 2"].append(timed(sweep_command(work / f"w{r}", args.epochs, "--workers", "2")))
            times["sklearn joblib"].append(sklearn_fits(args.epochs))
            if not args.skip_loop:
                times["shell loop"].append(shell_loop(work / f"s{r}", work))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items() if v), flush=True)
    medians = {k: statistics.median(v) for k, v in times.items() if v}
    print(f"\nmedian wall seconds over {args.rounds} rounds (load {os.getloadavg()[0]:.2f}):")
    for name, seconds in medians.items():
        print(f"  {name:<20} {seconds:8.2f} s   sweep ÷ this {medians['sweep'] / seconds:6.3f}")
    overhead = task_overhead()
    print(f"\nper task of a 0-epoch member: in-process {1000 * overhead['in_process_s_per_task']:.1f} ms, "
          f"on a running 2-worker LocalCluster {1000 * overhead['local_cluster_s_per_task']:.1f} ms")
    if args.json_file:
        Path(args.json_file).write_text(json.dumps({"times": times, "medians": medians, **overhead}, indent=1))


if __name__ == "__main__":
    main()
