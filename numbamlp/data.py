"""Data sources, splits and standardisation.

Symbols: N rows, D features.  X (N, D) float, y (N,) labels.

Sources: ``builtin:digits`` (default), ``builtin:iris``, ``builtin:wine``,
``builtin:breast_cancer`` (scikit-learn's bundled copies, no network), ``builtin:spiral``
(the classic 3-class spiral, generated from the seed), and ``.npz`` files with arrays
``X``, ``y`` and optionally ``X_test``, ``y_test`` (loaded without pickle).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUILTIN_SETS = ("digits", "iris", "wine", "breast_cancer", "spiral")


class DataError(ValueError):
    """Data that cannot be used, with a message meant for the user."""


@dataclass
class Dataset:
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    name: str = ""


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


def load_dataset(source: str, seed: int = 0) -> Dataset:
    """Load ``builtin:NAME`` or an ``.npz`` path; DataError with a clear message otherwise."""
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        if name not in BUILTIN_SETS:
            raise DataError(f"unknown built-in data set {name!r}; choose one of {', '.join(BUILTIN_SETS)}")
        if name == "spiral":
            X, y = spiral(seed=seed)
        else:
            from sklearn import datasets  # imported here: scikit-learn is slow to import

            X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
        return Dataset(np.asarray(X, dtype=np.float64), np.asarray(y), name=source)
    path = Path(source)
    if not path.exists():
        raise DataError(f"data file not found: {source}")
    if path.suffix != ".npz":
        raise DataError(f"unsupported data file {source}: expected builtin:NAME or a .npz file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as err:  # a corrupt or non-npz file: say so in one line
        raise DataError(f"cannot read {source} as .npz: {err}") from None
    for key in ("X", "y"):
        if key not in arrays:
            raise DataError(f"{source} has no array {key!r} (found: {', '.join(arrays) or 'none'})")
    return Dataset(arrays["X"], arrays["y"], arrays.get("X_test"), arrays.get("y_test"), name=source)


def stratified_split(X, y, fraction: float, seed: int):
    """Split rows into (X_a, X_b, y_a, y_b) with ``fraction`` of each class in the b part."""
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=fraction, stratify=y, random_state=seed)


@dataclass
class Standardizer:
    """x ↦ (x − mean) / scale, statistics fitted on training rows only (scale 1 for constant features)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X) -> "Standardizer":
        X = np.asarray(X, dtype=np.float64)
        scale = X.std(axis=0)
        scale[scale == 0] = 1.0
        return cls(X.mean(axis=0), scale)

    def transform(self, X) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.scale


@dataclass
class Splits:
    """Train / validation / test arrays ready for a model (standardised when asked)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray | None
    y_val: np.ndarray | None
    X_test: np.ndarray
    y_test: np.ndarray
    standardizer: Standardizer | None


def prepare(data_config, seed: int) -> Splits:
    """Load ``data_config.train`` (and ``.test``), split and standardise as configured.

    Without a separate test set, a stratified ``test_fraction`` of the rows is held out
    with ``seed``; the validation split comes out of the training rows; standardisation
    statistics are fitted on the training rows only.
    """
    data = load_dataset(data_config.train, seed)
    X, y = data.X, data.y
    if data_config.test is not None:
        test = load_dataset(data_config.test, seed)
        X_test, y_test = test.X, test.y
    elif data.X_test is not None and data.y_test is not None:
        X_test, y_test = data.X_test, data.y_test
    else:
        X, X_test, y, y_test = stratified_split(X, y, data_config.test_fraction, seed)
    X_val = y_val = None
    if data_config.val_fraction > 0:
        X, X_val, y, y_val = stratified_split(X, y, data_config.val_fraction, seed)
    scaler = Standardizer.fit(X) if data_config.standardize else None
    if scaler is not None:
        X, X_test = scaler.transform(X), scaler.transform(X_test)
        X_val = scaler.transform(X_val) if X_val is not None else None
    return Splits(X, y, X_val, y_val, X_test, y_test, scaler)
