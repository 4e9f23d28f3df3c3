"""End to end: `numbamlp train` (defaults, digits) against the equivalent scikit-learn script.

    python bench/e2e.py [--rounds 5]

Both run as fresh processes, interleaved round by round; medians of wall time.  numbamlp
runs twice per round: with its warm compile cache, and with an empty one (NUMBA_CACHE_DIR
pointed at a new directory: the very first run on a machine).  The scikit-learn script
imports, loads digits, holds out the same kind of stratified 25 % test split, standardises,
and fits MLPClassifier(hidden_layer_sizes=(128,)); both print their test accuracy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SKLEARN_SCRIPT = """
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
scaler = StandardScaler().fit(X_train)
clf = MLPClassifier(hidden_layer_sizes=(128,), random_state=0).fit(scaler.transform(X_train), y_train)
print(f"test accuracy {clf.score(scaler.transform(X_test), y_test):.4f}")
"""


def timed(command, env=None, cwd=None) -> tuple[float, str]:
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, check=True)
    return time.perf_counter() - start, run.stdout.strip().splitlines()[-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    numbamlp = [str(Path(sys.executable).with_name("numbamlp")), "train", "--quiet"]
    work = Path(tempfile.mkdtemp(prefix="numbamlp-e2e-"))
    samples = {"scikit-learn": [], "numbamlp (warm cache)": [], "numbamlp (empty cache)": []}
    outputs = {}
    try:
        timed(numbamlp + ["--out", str(work / "warmup")])  # make sure the cache is warm
        for r in range(args.rounds):
            seconds, outputs["scikit-learn"] = timed([sys.executable, "-c", SKLEARN_SCRIPT])
            samples["scikit-learn"].append(seconds)
            seconds, outputs["numbamlp (warm cache)"] = timed(numbamlp + ["--out", str(work / f"warm{r}")])
            samples["numbamlp (warm cache)"].append(seconds)
            env = {**os.environ, "NUMBA_CACHE_DIR": str(work / f"cache{r}")}
            seconds, outputs["numbamlp (empty cache)"] = timed(numbamlp + ["--out", str(work / f"cold{r}")], env=env)
            samples["numbamlp (empty cache)"].append(seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {k: statistics.median(v) for k, v in samples.items()}
    print(f"cores={os.cpu_count()}  median wall seconds of {args.rounds} interleaved rounds")
    for name, seconds in medians.items():
        ratio = seconds / medians["scikit-learn"]
        print(f"{name:<24} {seconds:6.2f} s  ({ratio:.2f}× scikit-learn)   {outputs[name]}")


if __name__ == "__main__":
    main()
