"""numbamlp's MLPClassifier / MLPRegressor against scikit-learn's, both with their defaults,
on every data set scikit-learn bundles (iris, wine, breast_cancer, digits, diabetes) and
make_friedman1 (1,000 rows × 10, seed 0, its default noise 0: the issue's set).

Protocol (issue 24, item 7): 5-fold cross-validation, shuffled (StratifiedKFold for the
classifiers, KFold for the regressors, random_state=0), the same folds for both libraries,
each fold's estimator seeded with random_state=0 (or 0..N-1 with --seeds N, averaged):

    make_pipeline(StandardScaler(), Estimator(random_state=0))                      # classifiers
    TransformedTargetRegressor(make_pipeline(StandardScaler(), Estimator(random_state=0)),
                               transformer=StandardScaler())                         # regressors

The regressors of BOTH libraries sit behind the target StandardScaler (numbamlp's also
standardises its targets itself, which then changes nothing).  Besides the cross-validated
mean, each set is also scored on held-out data: a shuffled 75/25 split (seed 1, stratified
for the classifiers), fitted on the 75 %, scored on the 25 % (once per random_state).  With
--splits M the held-out score is the mean over M such splits (seeds 1..M) × the random_states,
and the Δ row adds the paired held-out difference (the same split and random_state for both)
with its standard error over those M × N fits: wine's 25 % is 45 rows, so one row is 0.022
of one split's accuracy, and a one-split difference says little.

    .venv/bin/python bench/estimator_defaults.py                  # every set
    .venv/bin/python bench/estimator_defaults.py --sets iris friedman1
    .venv/bin/python bench/estimator_defaults.py --seeds 5             # random_state 0-4, averaged
    .venv/bin/python bench/estimator_defaults.py --params max_iter=200   # numbamlp's overridden
    .venv/bin/python bench/estimator_defaults.py --sets wine --seeds 5 --splits 20   # 100 held-out fits
    .venv/bin/python bench/estimator_defaults.py --params early_stopping=True --sklearn-params early_stopping=True

Prints the date, load, versions and threads, then one row per (set, library): the 5-fold mean
score (accuracy, or R²) ± its standard deviation, the held-out score, and the median fit
seconds per fold (Numba's compile time excluded: a warm-up fit runs first).  scikit-learn's
ConvergenceWarning (its defaults stop at max_iter=200) is counted, not printed.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import os
import platform
import time
import warnings

import numpy as np

SETS = ["iris", "wine", "breast_cancer", "digits", "diabetes", "friedman1"]
REGRESSION = {"diabetes", "friedman1"}


def load(name: str):
    from sklearn import datasets

    if name == "friedman1":
        return datasets.make_friedman1(n_samples=1000, random_state=0)  # noise 0, as in the issue
    return getattr(datasets, f"load_{name}")(return_X_y=True)


def make(library: str, regression: bool, params: dict, seed: int = 0, sklearn_params: dict | None = None):
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if library == "numbamlp":
        import numbamlp

        est = (numbamlp.MLPRegressor if regression else numbamlp.MLPClassifier)(**{"random_state": seed, **params})
    else:
        from sklearn import neural_network

        est = (neural_network.MLPRegressor if regression else neural_network.MLPClassifier)(
            **{"random_state": seed, **(sklearn_params or {})})
    pipe = make_pipeline(StandardScaler(), est)
    return TransformedTargetRegressor(pipe, transformer=StandardScaler()) if regression else pipe


def measure(name: str, library: str, params: dict, counter: list, seeds: int = 1, splits: int = 1,
            sklearn_params: dict | None = None) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    X, y = load(name)
    regression = name in REGRESSION
    folds = (KFold if regression else StratifiedKFold)(n_splits=5, shuffle=True, random_state=0)
    scores, seconds = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        held = []  # (split, seed) in the same order for both libraries: paired
        for seed in range(seeds):
            for train, test in folds.split(X, y):
                est = make(library, regression, params, seed, sklearn_params)
                start = time.perf_counter()
                est.fit(X[train], y[train])
                seconds.append(time.perf_counter() - start)
                scores.append(est.score(X[test], y[test]))
        for split in range(1, splits + 1):
            X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, shuffle=True, random_state=split,
                                                      stratify=None if regression else y)
            for seed in range(seeds):
                held.append(make(library, regression, params, seed, sklearn_params).fit(X_tr, y_tr).score(X_te, y_te))
        held_out = np.mean(held)
    counter[0] += sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "held_out": float(held_out),
            "fit_s": float(np.median(seconds)), "shape": X.shape, "held": np.array(held)}


def parse_params(items: list[str]) -> dict:
    params = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


def main() -> None:
    import numba
    import sklearn
    from sklearn.datasets import load_iris

    import numbamlp

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", choices=SETS, default=SETS)
    parser.add_argument("--seeds", type=int, default=1,
                        help="average over the estimators' random_state 0..N-1 (the folds stay seed 0)")
    parser.add_argument("--splits", type=int, default=1, metavar="M",
                        help="held-out score over M shuffled 75/25 splits (seeds 1..M; default 1: seed 1 alone)")
    parser.add_argument("--params", nargs="*", default=[], metavar="NAME=VALUE",
                        help="numbamlp parameters to set (scikit-learn's stay at their defaults)")
    parser.add_argument("--sklearn-params", nargs="*", default=[], metavar="NAME=VALUE",
                        help="scikit-learn parameters to set (e.g. early_stopping=True, to compare like with like)")
    args = parser.parse_args()
    params, sklearn_params = parse_params(args.params), parse_params(args.sklearn_params)

    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"{now:%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, "
          f"{platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
          f"numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads), "
          f"numbamlp {getattr(numbamlp, '__version__', '?')}")
    print(f"numbamlp parameters: {params or 'defaults'}; scikit-learn: {sklearn_params or 'defaults'}; "
          f"random_state 0..{args.seeds - 1} (means over them; std over folds × seeds); "
          f"held-out split seed{'s 1..' if args.splits > 1 else ' '}{args.splits}")
    X, y = load_iris(return_X_y=True)  # warm-up: Numba compiles here, not in the first timed fit
    for regression in (False, True):
        make("numbamlp", regression, {**params, "max_iter": 1}).fit(X, y.astype(float) if regression else y)

    counter = [0]
    header = (f"{'set':<14} {'rows×cols':>9} {'library':<9} {'5-fold mean':>11} {'± std':>6} "
              f"{'held-out':>8} {'fit s':>6}")
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    for name in args.sets:
        results = {lib: measure(name, lib, params, counter, args.seeds, args.splits, sklearn_params)
                   for lib in ("numbamlp", "sklearn")}
        for lib, r in results.items():
            metric = "R²" if name in REGRESSION else "acc"
            print(f"{name:<14} {r['shape'][0]:>4}×{r['shape'][1]:<4} {lib:<9} {r['mean']:>7.4f} {metric:<3} "
                  f"{r['std']:>6.4f} {r['held_out']:>8.4f} {r['fit_s']:>6.3f}")
        ours, theirs = results["numbamlp"], results["sklearn"]
        verdict = ("ok" if ours["mean"] >= theirs["mean"] - 1e-9 and ours["held_out"] >= theirs["held_out"] - 1e-9
                   else "BEHIND")
        d_mean, d_held = (round(ours[k] - theirs[k], 9) + 0.0 for k in ("mean", "held_out"))  # (no -0.0000)
        paired = ""
        if len(ours["held"]) > 1:  # the paired held-out difference's standard error over splits × seeds
            diff = ours["held"] - theirs["held"]
            paired = (f" (held-out Δ {diff.mean():+.4f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.4f} s.e., "
                      f"{len(diff)} paired fits)")
        print(f"{'':<14} {'':>9} {'Δ':<9} {d_mean:>+7.4f}     {'':>6} {d_held:>+8.4f} {verdict}{paired}")
    print(f"{time.perf_counter() - started:.0f} s; scikit-learn ConvergenceWarnings: {counter[0]} "
          f"(not shown); load now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
