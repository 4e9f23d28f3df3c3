"""Trainer.fit of one model at git revision REV and in the working tree, interleaved: the
seconds per epoch of each, and whether both train to the same bits.

Issue 26 made Trainer.fit run the stack's epoch loop as a stack of one (before it had a loop
of its own); this checks that nothing got slower and no bit changed.  Each fit runs in a
process of its own (the library of REV or of the working tree imported there, as
bench/many.py --against does): a warm-up fit (the compile), then FITS timed fits, whose
median counts; the rounds alternate REV and the tree, and the table gives the medians of
the rounds.

    python bench/fit_loop.py --against 4311978 --configs small,mnist --rounds 5
    python bench/fit_loop.py --against 49af8b3 --configs small --members 32   (a stack, validation rows shared)

Symbols: N rows, D features, C classes.  Data: N rows of standard normal features, labels
from a random linear map (the same in every process), float32, plain SGD.
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from many import CONFIGS, machine_info, tree_at  # noqa: E402  (bench/'s own helpers)

ROWS = {"small": 4096, "mnist": 4096}  # N per config: a few hundred steps an epoch
EPOCHS = 10
FITS = 5  # timed fits per process, after the warm-up one: the median is reported
SETTINGS = (  # each config also runs with early stopping and a validation hold-out, and Adam
    ("sgd", {"optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.0, "weight_decay": 0.0}}),
    ("adam + early stopping", {"optimizer": {"name": "adam", "lr": 0.001},
                               "early_stopping": {"patience": 5}}),
)


def data(name: str):
    _, layers, _ = CONFIGS[name]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(ROWS[name], layers[0])).astype(np.float32)
    y = np.argmax(X @ rng.normal(size=(layers[0], layers[-1])), axis=1)
    return X, y


def config(name: str, setting: dict, threads: int | None) -> dict:
    _, layers, batch = CONFIGS[name]
    return {"seed": 0, "dtype": "float32", "batch_size": batch, "epochs": EPOCHS, "threads": threads,
            "model": {"layers": layers, "activation": "relu"}, **setting}


def child(name: str, setting_index: int, threads: int | None, out: str, members: int = 1) -> None:
    """(In a process of its own.)  A warm-up fit, then FITS timed fits: their median seconds
    per epoch (the fit's set-up included) on stdout, the trained weights into ``out`` (.npy).
    ``members`` > 1: a StackTrainer of that many models (seeds 0, 1, ...) sharing VAL_ROWS
    validation rows, which it scores for all members at once every epoch."""
    from numbamlp import StackTrainer, Trainer

    X, y = data(name)
    cfg = config(name, SETTINGS[setting_index][1], threads)
    if members > 1:
        X, y, X_val, y_val = X[VAL_ROWS:], y[VAL_ROWS:], X[:VAL_ROWS], y[:VAL_ROWS]
        configs = [{**cfg, "seed": seed} for seed in range(members)]
        make, fit = (lambda: StackTrainer(configs)), (lambda model: model.fit(X, y, X_val, y_val))
    else:
        make, fit = (lambda: Trainer(cfg)), (lambda model: model.fit(X, y))
    fit(make())  # compiles, loads the cache
    per_epoch = []
    for _ in range(FITS):
        trainer = make()
        start = time.perf_counter()
        fit(trainer)
        epochs = max(len(h) for h in trainer.histories) if members > 1 else len(trainer.history)
        per_epoch.append((time.perf_counter() - start) / epochs)
    params = trainer.plan.host.params if members > 1 else trainer.model.flat_params
    np.save(out, params)
    trainer = trainer if members == 1 else trainer.trainers[0]
    print(json.dumps({"seconds_per_epoch": statistics.median(per_epoch), "epochs": len(trainer.history)}))


VAL_ROWS = 512  # (--members: the validation rows the stack shares, out of the data's first rows)


def run_child(tree: Path | None, name: str, setting_index: int, threads, out: Path, members: int = 1) -> dict:
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    args = [sys.executable, __file__, "--child", name, "--setting", str(setting_index), "--out", str(out),
            "--members", str(members)]
    if threads is not None:
        args += ["--threads", str(threads)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, cwd=tree or Path(__file__).parent.parent)
    if done.returncode:
        raise SystemExit(f"the child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", default="HEAD", help="the git revision to compare the working tree with")
    parser.add_argument("--configs", default="small,mnist")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="config.threads (default: unset, the pool's)")
    parser.add_argument("--child")
    parser.add_argument("--setting", type=int, default=0)
    parser.add_argument("--out")
    parser.add_argument("--members", type=int, default=1,
                        help="more than 1: a StackTrainer of that many models sharing validation rows")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.setting, args.threads, args.out, args.members)
        return 0
    old = tree_at(args.against)
    print(f"# bench/fit_loop.py --against {args.against} --configs {args.configs} --rounds {args.rounds} "
          f"--members {args.members}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.2f}")
    print("# " + json.dumps(machine_info(args.threads if args.threads else os.cpu_count())))
    print(f"{'config':8} {'setting':24} {args.against + ' s/epoch':>16} {'tree s/epoch':>14} {'tree ÷ rev':>11}  bits")
    with tempfile.TemporaryDirectory() as scratch:
        for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
            for index, (label, _) in enumerate(SETTINGS):
                times = {"rev": [], "tree": []}
                same = True
                for round_ in range(args.rounds):  # interleaved: rev, tree, rev, tree, ...
                    outs = {}
                    for side, tree in (("rev", old), ("tree", None)):
                        outs[side] = Path(scratch) / f"{side}-{round_}.npy"
                        times[side].append(run_child(tree, name, index, args.threads, outs[side],
                                                     args.members)["seconds_per_epoch"])
                    same &= bool(np.array_equal(np.load(outs["rev"]), np.load(outs["tree"])))
                rev, tree = statistics.median(times["rev"]), statistics.median(times["tree"])
                print(f"{name:8} {label:24} {rev:16.4f} {tree:14.4f} {tree / rev:11.3f}  "
                      f"{'identical' if same else 'DIFFER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
