"""End to end: `numbamlp train` against scikit-learn's MLPClassifier on the same data and recipe.

    python bench/e2e.py [--rounds 5]

What is compared (every row a fresh process, the rows interleaved round by round; medians
of wall time, process start to exit):

  - The data: scikit-learn's digits (1797 × 64, 10 classes), one stratified 75/25 split
    (train_test_split, random_state=0) written once to an .npz (X, y, X_test, y_test) that
    every row reads: the same 1347 training and 450 test rows on both sides; each side
    standardises the inputs on the training rows.
  - numbamlp: `numbamlp train --data split.npz --quiet` with its defaults (what it ran is
    read back from the run's config.json and printed): 64-128-10 ReLU, float32, SGD with
    momentum 0.9 at lr 0.05, weight decay 1e-3, batch 32, 30 epochs.  Twice per round: with
    its warm compile cache, and with an empty one (NUMBA_CACHE_DIR a new directory: a
    user's very first run).
  - scikit-learn, same recipe: MLPClassifier with the same network, optimizer, learning
    rate, momentum (classic, not Nesterov), batch and epochs (n_iter_no_change = epochs, so
    that all 30 run).  Its L2 term is alpha·W/batch rows, so alpha = 1e-3 × 32 gives the
    same decay per full batch; unlike numbamlp it leaves the biases undecayed.  float64,
    its own (Glorot) initialisation.
  - scikit-learn, defaults: MLPClassifier(hidden_layer_sizes=(128,)) as a user would write
    it: Adam, lr 1e-3, batch 200, until the training loss stops improving (its epoch count
    is printed).  Not the same recipe; shown because it is what "the equivalent
    scikit-learn script" usually means.

Each row prints its test accuracy on the same 450 rows; the ratios are wall times ÷ the
same-recipe scikit-learn row.
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

EPOCHS, BATCH, LR, MOMENTUM, WEIGHT_DECAY = 30, 32, 0.05, 0.9, 1e-3  # numbamlp train's defaults

MAKE_SPLIT = """
import sys, numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
X, y = load_digits(return_X_y=True)
X, X_test, y, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
np.savez(sys.argv[1], X=X, y=y, X_test=X_test, y_test=y_test)
"""

SKLEARN_SCRIPT = """
import sys, warnings
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
data = np.load(sys.argv[1])
recipe = sys.argv[2]
scaler = StandardScaler().fit(data["X"])
if recipe == "same":
    clf = MLPClassifier(hidden_layer_sizes=(128,), activation="relu", solver="sgd", learning_rate="constant",
                        learning_rate_init={lr}, momentum={momentum}, nesterovs_momentum=False,
                        batch_size={batch}, max_iter={epochs}, n_iter_no_change={epochs}, alpha={alpha},
                        random_state=0)
else:
    clf = MLPClassifier(hidden_layer_sizes=(128,), random_state=0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)  # "max_iter reached": all epochs ran, as asked
    clf.fit(scaler.transform(data["X"]), data["y"])
accuracy = clf.score(scaler.transform(data["X_test"]), data["y_test"])
batch = min(200, len(data["y"])) if clf.batch_size == "auto" else clf.batch_size
print(f"test accuracy {{accuracy:.4f}}  ({{clf.solver}}, batch {{batch}}, {{clf.n_iter_}} epochs)")
""".format(lr=LR, momentum=MOMENTUM, batch=BATCH, epochs=EPOCHS, alpha=WEIGHT_DECAY * BATCH)


def timed(command, env=None) -> tuple[float, str]:
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - start, run.stdout.strip().splitlines()[-1]


def numbamlp_recipe(run_dir: Path) -> str:
    """What a numbamlp run did, from its config.json."""
    config = json.loads((run_dir / "config.json").read_text())
    opt = config["optimizer"]
    return (f"{config['model']['activation']} {config['dtype']}, optimizer {opt['name']} (lr {opt['lr']}, "
            f"momentum {opt.get('momentum')}, weight decay {opt['weight_decay']}), batch {config['batch_size']}, "
            f"{config['epochs']} epochs")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="numbamlp-e2e-"))
    split = work / "digits_split.npz"
    subprocess.run([sys.executable, "-c", MAKE_SPLIT, str(split)], check=True)
    numbamlp = [str(Path(sys.executable).with_name("numbamlp")), "train", "--data", str(split), "--quiet"]
    sklearn = [sys.executable, "-c", SKLEARN_SCRIPT, str(split)]
    rows = {
        "scikit-learn, same recipe": lambda r: timed(sklearn + ["same"]),
        "scikit-learn, defaults": lambda r: timed(sklearn + ["defaults"]),
        "numbamlp (warm cache)": lambda r: timed(numbamlp + ["--out", str(work / f"warm{r}")]),
        "numbamlp (empty cache)": lambda r: timed(
            numbamlp + ["--out", str(work / f"cold{r}")],
            env={**os.environ, "NUMBA_CACHE_DIR": str(work / f"cache{r}")}),
    }
    samples = {name: [] for name in rows}
    outputs = {}
    try:
        timed(numbamlp + ["--out", str(work / "warmup")])  # make sure the cache is warm
        recipe = numbamlp_recipe(work / "warmup")
        for r in range(args.rounds):
            order = list(rows) if r % 2 == 0 else list(rows)[::-1]
            for name in order:
                seconds, outputs[name] = rows[name](r)
                samples[name].append(seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {k: statistics.median(v) for k, v in samples.items()}
    base = medians["scikit-learn, same recipe"]
    print(f"cores={os.cpu_count()}  digits, one stratified split: 1347 training rows, 450 test rows; "
          f"median wall seconds of {args.rounds} interleaved rounds (every run in brackets)")
    print(f"numbamlp ran: 64-128-10 {recipe}")
    print(f"scikit-learn, same recipe: 64-128-10 relu float64, sgd lr {LR} momentum {MOMENTUM} (classic) "
          f"alpha {WEIGHT_DECAY * BATCH:g} (= weight decay {WEIGHT_DECAY:g} per batch of {BATCH}, weights only), "
          f"batch {BATCH}, {EPOCHS} epochs")
    print("scikit-learn, defaults: 64-128-10 relu float64, adam lr 0.001 alpha 0.0001, batch 200, "
          "until the training loss stops improving")
    for name, seconds in medians.items():
        runs = ", ".join(f"{s:.2f}" for s in samples[name])
        print(f"{name:<26} {seconds:6.2f} s  ({seconds / base:.2f}× same-recipe scikit-learn)  [{runs}]  "
              f"{outputs[name]}")


if __name__ == "__main__":
    main()
