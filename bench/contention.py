"""Speed on a busy machine: numbamlp's defaults against one thread and all cores, with 0, 1
and 2 other processes that keep a core busy (``python -c "while 1: pass"``).

    python bench/contention.py [--works small,mnist,m32,m8,sweep32] [--busy 0,1,2]
                               [--rounds 5] [--against REV] [--dask] [--epochs 3]

Works (bench/many.py's configurations, float32, ReLU, plain SGD):

    small, mnist   one model (64-128-10 batch 32; 784-512-10 batch 128): Trainer.step calls
    m32, m8        stacks (32 x 64-128-10 batch 32; 8 x 784-256-10 batch 128): StackTrainer.step
    sweep32        `numbamlp sweep` of 32 members on digits (lr x weight decay x seed, 128
                   hidden, --epochs), the whole command as a user runs it
    --dask         the same sweep with --workers 2 (a Dask LocalCluster of 2 processes)

Settings: ``defaults`` (no --threads / threads unset: what a user gets), ``threads=1`` and
``threads=N`` (N = the cores this process may use).  ``--layers`` adds the options that were
measured against numbamlp's choice (kernels/pool.py), each as the defaults of the --against
revision in an environment: OpenMP threads that sleep at once (OMP_WAIT_POLICY=PASSIVE),
shorter spins (GOMP_SPINCOUNT 3,000 and 10,000 against OpenMP's 300,000), Numba's
workqueue layer, and TBB (when the tbb package is installed).  ``--against REV`` adds the same three
for the library at git revision REV, so the change can be compared with what was there.

Method: for each number of busy processes (started before the rounds, killed after), rounds
in which every (revision, setting, work) is timed once in turn, the order rotated each
round, after one untimed pass over them all (a revision's first run compiles its kernels).
A step work is timed in a child process of its own (the revision's library; the
child imports the package from REV's tree), which loads Numba's cache, runs 20 untimed
steps and then times ``calls`` steps three times, reporting the median.  A sweep is one
whole command.  The table shows the median over the rounds, per setting, and per busy
level the ratio of the defaults to the better of threads=1 and threads=N (the goal: at most
1.2), and with --against, each setting's ratio to the same setting at REV with no busy
process (the goal: at most 1.03).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from many import CONFIGS, member_configs, tree_at  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STEP_WORKS = {"small": 3000, "mnist": 300, "m32": 300, "m8": 100}  # work: steps timed per block
SWEEP_WORKS = ("sweep32",)
# --layers: the other ways Numba's threads could have been kept from spinning, each as the
# defaults in an environment, on the --against revision (before numbamlp adapted its threads)
# when there is one.  (Numba's tbb layer finds libtbb, which the tbb package puts in the
# environment's lib/, only through the library path.)
LAYER_OPTIONS = {
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin 3000": {"GOMP_SPINCOUNT": "3000"},
    "spin 10000": {"GOMP_SPINCOUNT": "10000"},
    "workqueue": {"NUMBA_THREADING_LAYER": "workqueue"},
    "tbb": {"NUMBA_THREADING_LAYER": "tbb", "LD_LIBRARY_PATH": str(Path(sys.prefix, "lib"))},
}
GRID = ["--grid", "optimizer.lr=0.01,0.03,0.1,0.3", "--grid", "optimizer.weight_decay=0,0.001",
        "--grid", "seed=0,1,2,3"]


def child_steps(work: str, threads: int | None, calls: int) -> None:
    """(In a process of its own.)  ``calls`` steps of ``work``, timed three times: prints
    {"seconds": median block seconds, "layer", "numbamlp"} as JSON."""
    import numpy as np

    import numbamlp

    M, layers, batch = CONFIGS[work]
    configs = member_configs(M, layers, batch, "cpu", threads)
    if threads is None:
        for config in configs:
            config.pop("threads")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(M, batch, layers[0])).astype(np.float32)
    y = rng.integers(0, layers[-1], size=(M, batch))
    if M == 1:
        trainer = numbamlp.Trainer(configs[0])
        step = lambda: trainer.step(X[0], y[0])  # noqa: E731
    else:
        stack = numbamlp.StackTrainer(configs)
        step = lambda: stack.step(X, y)  # noqa: E731
    for _ in range(20):
        step()
    blocks = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            step()
        blocks.append(time.perf_counter() - start)
    import numba

    print(json.dumps({"seconds": statistics.median(blocks), "layer": numba.threading_layer(),
                      "numbamlp": str(Path(numbamlp.__file__).parent)}))


class Setting:
    """One (revision, threads, environment) to time: ``tree`` None is the working tree;
    ``variables`` are set in the child's environment."""

    def __init__(self, tree: Path | None, label: str, threads: int | None, variables: dict | None = None):
        self.tree, self.label, self.threads, self.variables = tree, label, threads, variables or {}

    def env(self) -> dict:
        env = {**os.environ, **self.variables}
        if self.tree is not None:
            env["PYTHONPATH"] = str(self.tree) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def time_steps(self, work: str) -> float:
        command = [sys.executable, __file__, "--child", work, "--calls", str(STEP_WORKS[work])]
        if self.threads is not None:
            command += ["--threads", str(self.threads)]
        run = subprocess.run(command, cwd=self.tree or ROOT, env=self.env(), capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"{self.label} {work}: the child failed:\n{run.stderr}")
        report = json.loads(run.stdout.strip().splitlines()[-1])
        if self.tree is not None and not report["numbamlp"].startswith(str(self.tree)):
            raise SystemExit(f"{self.label}: the child imported {report['numbamlp']}, not {self.tree}")
        return report["seconds"]

    def time_sweep(self, epochs: int, workers: int | None) -> float:
        folder = Path(tempfile.mkdtemp(prefix="contention-sweep-"))
        command = [sys.executable, "-m", "numbamlp.cli.main", "sweep", *GRID, "--epochs", str(epochs),
                   "--hidden", "128", "--out", str(folder / "out"), "--quiet"]
        if self.threads is not None:
            command += ["--threads", str(self.threads)]
        if workers:
            command += ["--workers", str(workers)]
        try:
            start = time.perf_counter()
            run = subprocess.run(command, cwd=self.tree or ROOT, env=self.env(), capture_output=True, text=True)
            seconds = time.perf_counter() - start
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        if run.returncode != 0:
            raise SystemExit(f"{self.label}: {' '.join(command)} failed:\n{run.stderr}")
        return seconds


def busy_processes(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(count)]


def time_once(setting: Setting, work: str, epochs: int) -> float:
    if work in STEP_WORKS:
        return setting.time_steps(work)
    return setting.time_sweep(epochs, 2 if work == "dask sweep32" else None)


def measure(settings, works, busy: int, rounds: int, epochs: int) -> dict:
    """{(setting label, work): [seconds per round]} with ``busy`` busy processes running."""
    times = {(s.label, w): [] for s in settings for w in works}
    pairs = [(s, w) for w in works for s in settings]
    hogs = busy_processes(busy)
    try:
        time.sleep(0.5)
        for round_ in range(rounds):
            shift = round_ % len(pairs)
            for setting, work in pairs[shift:] + pairs[:shift]:
                times[(setting.label, work)].append(time_once(setting, work, epochs))
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    return times


def main(argv=None) -> None:
    from numbamlp.kernels import usable_cores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--works", default=",".join([*STEP_WORKS, *SWEEP_WORKS]))
    parser.add_argument("--busy", default="0,1,2", help="numbers of busy processes, e.g. 0,1,2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3, help="the sweep's epochs")
    parser.add_argument("--against", metavar="REV", help="also time the library at this git revision")
    parser.add_argument("--dask", action="store_true", help="also the sweep on a Dask LocalCluster of 2 workers")
    parser.add_argument("--layers", action="store_true",
                        help="also the defaults with OpenMP spinning as it does by itself (GOMP_SPINCOUNT=300000), "
                             "on Numba's workqueue layer, and on TBB (when the tbb package is installed)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_steps(args.child, args.threads, args.calls)
        return

    cores = usable_cores()
    works = args.works.split(",") + (["dask sweep32"] if args.dask else [])
    trees = [(None, "")] + ([(tree_at(args.against), f"@{args.against} ")] if args.against else [])
    settings = [Setting(tree, f"{prefix}{name}", threads) for tree, prefix in trees
                for name, threads in (("defaults", None), ("threads=1", 1), (f"threads={cores}", cores))]
    if args.layers:
        tree, prefix = trees[-1]
        settings += [Setting(tree, f"{prefix}{name}", None, variables) for name, variables in LAYER_OPTIONS.items()
                     if name != "tbb" or Path(sys.prefix, "lib", "libtbb.so.12").exists()]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    print(f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {cores} cores, load {os.getloadavg()[0]:.2f} before, "
          f"working tree at {head.strip()}{' + changes' if dirty else ''}; rounds {args.rounds}; "
          f"steps per block {STEP_WORKS}; sweep --epochs {args.epochs}")
    for setting, work in [(s, w) for w in works for s in settings]:  # (untimed: a revision's first run compiles)
        time_once(setting, work, epochs=1)
    for busy in [int(b) for b in args.busy.split(",")]:
        times = measure(settings, works, busy, args.rounds, args.epochs)
        medians = {key: statistics.median(values) for key, values in times.items()}
        print(f"\n{busy} busy process{'es' if busy != 1 else ''}: median seconds over {args.rounds} rounds")
        labels = [s.label for s in settings]
        print(f"{'work':13s}" + "".join(f"{label:>18s}" for label in labels) + f"{'defaults/best':>15s}")
        for work in works:
            row = f"{work:13s}" + "".join(f"{medians[(label, work)]:18.3f}" for label in labels)
            for prefix in [p for _, p in trees]:
                best = min(medians[(f"{prefix}threads=1", work)], medians[(f"{prefix}threads={cores}", work)])
                row += f"  {prefix}{medians[(f'{prefix}defaults', work)] / best:.2f}"
            print(row)
        if args.against and busy == 0:
            print(f"quiet, each setting ÷ the same setting at {args.against}:")
            for work in works:
                ratios = [medians[(s.label, work)] / medians[(f"@{args.against} {s.label}", work)]
                          for s in settings if s.tree is None]
                print(f"  {work:13s}" + "".join(f"  {s.label} {r:.3f}" for s, r in zip(settings, ratios)))


if __name__ == "__main__":
    main()
