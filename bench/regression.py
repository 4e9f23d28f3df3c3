"""numbamlp.MLPRegressor against scikit-learn's MLPRegressor, both with their defaults, both
behind a StandardScaler: R² by 5-fold cross-validation (shuffled KFold, seed 0) on
load_diabetes (442 × 10, bundled with scikit-learn) and make_friedman1 (1000 × 10, noise 1,
seed 0).  The same folds for both; each fold's estimator seeded with random_state=0.

    .venv/bin/python bench/regression.py

Prints the machine and thread settings, then one row per (data set, estimator): mean R²,
its standard deviation over the folds, each fold's R², and the median fit seconds per fold
(the first fit's compile time excluded: a warm-up fit runs before anything is timed).
scikit-learn's ConvergenceWarning (its defaults stop at max_iter=200) is counted, not shown.
"""

from __future__ import annotations

import os
import platform
import time
import warnings

import numpy as np


def datasets():
    from sklearn.datasets import load_diabetes, make_friedman1

    X, y = load_diabetes(return_X_y=True)
    yield "load_diabetes", X, y
    X, y = make_friedman1(n_samples=1000, n_features=10, noise=1.0, random_state=0)
    yield "make_friedman1", X, y


def estimators():
    from sklearn.neural_network import MLPRegressor as SklearnMLPRegressor

    from numbamlp import MLPRegressor

    return {"numbamlp.MLPRegressor()": lambda: MLPRegressor(random_state=0),
            "sklearn MLPRegressor()": lambda: SklearnMLPRegressor(random_state=0)}


def main() -> None:
    import numba
    import sklearn
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import numbamlp

    print(f"# {time.strftime('%Y-%m-%d')}  {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"numba threads {numba.get_num_threads()}; numbamlp {numbamlp.__version__}, scikit-learn {sklearn.__version__}")
    folds = KFold(n_splits=5, shuffle=True, random_state=0)
    makers = estimators()
    X, y = next(iter(datasets()))[1:]
    make_pipeline(StandardScaler(), makers["numbamlp.MLPRegressor()"]()).fit(X, y)  # warm-up: compile
    print("| data | estimator | R² mean | R² std | R² per fold | fit s (median) | warnings |")
    print("|---|---|---|---|---|---|---|")
    for name, X, y in datasets():
        scores = {label: [] for label in makers}
        seconds = {label: [] for label in makers}
        warned = {label: 0 for label in makers}
        for train, test in folds.split(X):
            for label, make in makers.items():  # interleaved, fold by fold
                pipeline = make_pipeline(StandardScaler(), make())
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", ConvergenceWarning)
                    start = time.perf_counter()
                    pipeline.fit(X[train], y[train])
                    seconds[label].append(time.perf_counter() - start)
                warned[label] += sum(issubclass(w.category, ConvergenceWarning) for w in caught)
                scores[label].append(pipeline.score(X[test], y[test]))
        for label in makers:
            r2 = np.array(scores[label])
            print(f"| {name} | {label} | {r2.mean():.3f} | {r2.std():.3f} | {' '.join(f'{v:.3f}' for v in r2)} "
                  f"| {np.median(seconds[label]):.3f} | {warned[label]} ConvergenceWarning |")


if __name__ == "__main__":
    main()
