"""The built-in data sets: ``builtin:digits`` (default), ``builtin:iris``, ``builtin:wine``,
``builtin:breast_cancer``, ``builtin:diabetes`` (regression) — scikit-learn's bundled
copies, no network — and ``builtin:spiral`` (the classic 3-class spiral, generated from
the seed).

Symbols: N rows, D features.  X (N, D), y (N,).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from numbamlp.arrays import DataError, array_dtypes
from numbamlp.data.dataset import Dataset

BUILTIN_SETS = ("digits", "iris", "wine", "breast_cancer", "spiral", "diabetes")
REGRESSION_SETS = ("diabetes",)  # scikit-learn's bundled copy: float targets, for task regression


def read_builtin(source: str, seed: int = 0, dtype=np.float64, task: str = "classification") -> Dataset:
    """``builtin:NAME``: X (N, D) of ``dtype`` (owned), y (N,) integers, or float targets for
    the regression sets; DataError for an unknown name, or a set of the other task."""
    name = source.split(":", 1)[1]
    if name not in BUILTIN_SETS:
        raise DataError(f"unknown built-in data set {name!r}; choose one of {', '.join(BUILTIN_SETS)}")
    if (name in REGRESSION_SETS) != (task == "regression"):
        kind = "regression" if name in REGRESSION_SETS else "classification"
        raise DataError(f"builtin:{name} is a {kind} data set; use it with --task {kind}")
    if name == "spiral":
        X, y = spiral(seed=seed)
    elif name == "digits" and _bundled_file("digits.csv.gz") is not None:
        X, y = _read_digits(_bundled_file("digits.csv.gz"))
    else:
        from sklearn import datasets  # imported here: scikit-learn is slow to import

        X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return Dataset(np.array(X, dtype=dtype), np.asarray(y), name=source, owned=True,
                   feature_dtypes=array_dtypes(np.asarray(X)))


def spiral(n_per_class: int = 100, n_classes: int = 3, noise: float = 0.2, seed: int = 0):
    """The cs231n toy spiral: n_classes arms in 2-D, X (n_per_class·n_classes, 2)."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for k in range(n_classes):
        r = np.linspace(0.0, 1.0, n_per_class)
        theta = np.linspace(k * 4.0, (k + 1) * 4.0, n_per_class) + rng.normal(0, noise, n_per_class)
        X.append(np.column_stack([r * np.sin(theta), r * np.cos(theta)]))
        y.append(np.full(n_per_class, k))
    return np.concatenate(X), np.concatenate(y)


def _bundled_file(name: str) -> Path | None:
    """A data file scikit-learn ships, found without importing scikit-learn (~0.5 s here)."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    return path if path.is_file() else None


def _read_digits(path: Path):
    """scikit-learn's digits.csv.gz: 1797 rows of 64 pixel values and the digit."""
    import gzip

    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64)
