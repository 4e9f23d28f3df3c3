"""Data sources, splits and standardisation.

Symbols: N rows, D features.  X (N, D) float, y (N,) labels.

Sources: ``builtin:digits`` (default), ``builtin:iris``, ``builtin:wine``,
``builtin:breast_cancer`` (scikit-learn's bundled copies, no network), ``builtin:spiral``
(the classic 3-class spiral, generated from the seed), ``.npz`` files with arrays
``X``, ``y`` and optionally ``X_test``, ``y_test`` (loaded without pickle), and ``.csv``
files (header optional; the label column is the last unless named or numbered).

Labels may be integers or class names (strings); features must be finite numbers.
Every problem is a DataError whose message names the file and, for CSV, the row and column.
"""

from __future__ import annotations

import csv
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


def load_dataset(source: str, seed: int = 0, label_column: str | int | None = None) -> Dataset:
    """Load ``builtin:NAME``, a ``.npz`` or a ``.csv`` path, checked; DataError otherwise."""
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        if name not in BUILTIN_SETS:
            raise DataError(f"unknown built-in data set {name!r}; choose one of {', '.join(BUILTIN_SETS)}")
        if name == "spiral":
            X, y = spiral(seed=seed)
        elif name == "digits" and _bundled_file("digits.csv.gz") is not None:
            X, y = _read_digits(_bundled_file("digits.csv.gz"))
        else:
            from sklearn import datasets  # imported here: scikit-learn is slow to import

            X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
        return Dataset(np.asarray(X, dtype=np.float64), np.asarray(y), name=source)
    path = Path(source)
    if not path.exists():
        raise DataError(f"data file not found: {source}")
    if path.is_dir():
        raise DataError(f"{source} is a directory, not a data file")
    if path.suffix == ".npz":
        data = _read_npz(path)
    elif path.suffix == ".csv":
        data = _read_csv(path, label_column)
    else:
        raise DataError(f"unsupported data file {source}: expected builtin:NAME, a .npz or a .csv file")
    data.X, data.y = check_arrays(data.X, data.y, source)
    if data.X_test is not None:
        data.X_test, data.y_test = check_arrays(data.X_test, data.y_test, f"{source} (X_test, y_test)")
    return data


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


def _read_npz(path: Path) -> Dataset:
    import zipfile

    # numpy reads a file that is not a zip archive as a pickle (and then says so): look first
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a valid .npz archive (not a zip file)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except ValueError as err:
        if "pickle" in str(err):
            raise DataError(f"{path} holds object arrays (pickled data), which numbamlp never loads") from None
        raise DataError(f"cannot read {path} as .npz ({_reason(err)})") from None
    except Exception as err:  # a corrupt or truncated archive or member
        raise DataError(f"cannot read {path} as .npz ({_reason(err)})") from None
    for key in ("X", "y"):
        if key not in arrays:
            raise DataError(f"{path} has no array {key!r} (found: {', '.join(arrays) or 'none'})")
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path} has only one of X_test and y_test")
    return Dataset(arrays["X"], arrays["y"], arrays.get("X_test"), arrays.get("y_test"), name=str(path))


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _csv_rows(path: Path, label_column):
    """(header or None, [(line number, cells)]) of a CSV file, blank lines skipped.

    The first row is a header when it holds a non-number outside the label column.
    """
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [(n, row) for n, row in enumerate(csv.reader(f), start=1) if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot read {path} as CSV ({_reason(err)})") from None
    if not rows:
        raise DataError(f"{path} has no rows")
    width = len(rows[0][1])
    header = None
    if not all(_is_number(c) for c in rows[0][1]):
        label_guess = None if isinstance(label_column, str) else _label_index(label_column, None, width, path)
        cells = [c for i, c in enumerate(rows[0][1]) if i != label_guess]
        if not all(_is_number(c) for c in cells):
            header, rows = [c.strip() for c in rows[0][1]], rows[1:]
    if not rows:
        raise DataError(f"{path} has a header but no data rows")
    for line, row in rows:
        if len(row) != width:
            raise DataError(f"{path}: row {line} has {len(row)} columns, expected {width}")
    return header, rows


def _csv_features(path: Path, header, rows, label: int | None) -> np.ndarray:
    """The numeric cells of every column but ``label``, (rows, features) float64."""
    width = len(rows[0][1])
    names = header or [str(i + 1) for i in range(width)]
    columns = [i for i in range(width) if i != label]
    X = np.empty((len(rows), len(columns)))
    for r, (line, row) in enumerate(rows):
        for k, column in enumerate(columns):
            try:
                X[r, k] = float(row[column])
            except ValueError:
                raise DataError(
                    f"{path}: row {line}, column {column + 1} ({names[column]!r}): {row[column]!r} is not a number"
                ) from None
    return X


def _read_csv(path: Path, label_column) -> Dataset:
    header, rows = _csv_rows(path, label_column)
    width = len(rows[0][1])
    if width < 2:
        raise DataError(f"{path} needs at least one feature column and a label column")
    label = _label_index(label_column, header, width, path)
    X = _csv_features(path, header, rows, label)
    labels = [row[label].strip() for _, row in rows]
    y = np.asarray([float(v) for v in labels]) if all(_is_number(v) for v in labels) else np.asarray(labels)
    if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
        name = f"{header[label]!r}" if header else f"{label + 1} of {width}"
        raise DataError(
            f"{path}: the label column (column {name}{', the last' if label == width - 1 else ''}) holds "
            "non-integral numbers, so it looks like a feature; choose the label column with "
            "--label-column NAME|INDEX (0-based)"
        )
    return Dataset(X, y, name=str(path))


def read_features(source: str, n_features: int, label_column=None, seed: int = 0) -> np.ndarray:
    """Features (N, n_features) for prediction.

    builtin and .npz: the X array.  CSV: every column, or every column but the label
    column when the file has n_features + 1 columns (the last, or ``label_column``).
    """
    path = Path(source)
    if source.startswith("builtin:") or path.suffix != ".csv":
        X = load_dataset(source, seed, label_column).X
    else:
        if not path.is_file():
            raise DataError(f"data file not found: {source}")
        header, rows = _csv_rows(path, label_column)
        width = len(rows[0][1])
        if width == n_features + 1 or label_column is not None:
            X = _csv_features(path, header, rows, _label_index(label_column, header, width, path))
        else:
            X = _csv_features(path, header, rows, None)
        X, _ = check_arrays(X, np.zeros(len(X), dtype=np.int64), source)
    check_feature_count(X, n_features, source)
    return X


def check_feature_count(X, n_features: int, source: str) -> None:
    """DataError unless X (N, D) has the model's ``n_features`` columns."""
    if X.shape[1] != n_features:
        raise DataError(f"{source} has {X.shape[1]} features but the model expects {n_features}")


def _label_index(label_column, header, width: int, path) -> int:
    if label_column is None:
        return width - 1
    if isinstance(label_column, int) or str(label_column).lstrip("-").isdigit():
        index = int(label_column)
        if not -width <= index < width:
            raise DataError(f"{path}: label column {index} is out of range for {width} columns")
        return index % width
    if header is None or label_column not in header:
        raise DataError(f"{path}: no column named {label_column!r} (the file has no such header)")
    return header.index(label_column)


def check_arrays(X, y, source: str = "data"):
    """Validate features and labels at the boundary; returns (X float64 (N, D), y (N,)).

    Labels: integers (integral floats are converted), or strings/bools as class names.
    """
    X, y = np.asarray(X), np.asarray(y)
    if X.dtype.kind not in "biuf":
        raise DataError(f"{source}: X must hold numbers, not {X.dtype}")
    if X.ndim != 2:
        raise DataError(f"{source}: X must be 2-D (rows, features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{source}: X is empty (shape {X.shape})")
    if y.ndim != 1:
        raise DataError(f"{source}: y must be 1-D, got shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise DataError(f"{source}: X has {X.shape[0]} rows but y has {y.shape[0]} labels")
    X = X.astype(np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise DataError(f"{source}: X has {int(bad.sum())} NaN or infinite values (first at row {row}, column {column})")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise DataError(f"{source}: y contains NaN or infinite labels")
        if not np.array_equal(y, np.round(y)):
            raise DataError(f"{source}: y has non-integral numeric labels; use integers or class names")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "biuUS":
        raise DataError(f"{source}: y must hold integers or class names, not {y.dtype}")
    return X, y


def stratified_split(X, y, fraction: float, seed: int):
    """Split rows into (X_a, X_b, y_a, y_b): each class puts round(fraction × its count) rows,
    drawn with ``numpy.random.default_rng(seed)``, in the b part (at least one, and at least
    one left in a, for classes of two rows or more).  Rows keep their order within each part."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    _, y_idx = np.unique(y, return_inverse=True)
    in_b = np.zeros(len(y), dtype=bool)
    for c in range(y_idx.max() + 1):
        rows = np.flatnonzero(y_idx == c)
        if len(rows) < 2:
            continue
        n_b = min(max(int(round(fraction * len(rows))), 1), len(rows) - 1)
        in_b[rng.permutation(rows)[:n_b]] = True
    return X[~in_b], X[in_b], y[~in_b], y[in_b]


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
    """Load ``data_config.train`` (and ``.test``, ``.val``), split and standardise as configured.

    Without a separate test set, a stratified ``test_fraction`` of the rows is held out;
    without a validation file, the validation split (``val_fraction``) comes out of the
    training rows; both are drawn with ``data_config.seed`` (the run's ``seed`` when unset);
    standardisation statistics are fitted on the training rows only.  Test and validation
    data are checked against the training data here, before any training: the same feature
    count, and no label that training never sees.
    """
    seed = data_seed(data_config, seed)
    data = load_dataset(data_config.train, seed, data_config.label_column)
    test = val = None
    if data_config.test is not None:
        loaded = load_dataset(data_config.test, seed, data_config.label_column)
        test = (loaded.X, loaded.y, data_config.test)
    elif data.X_test is not None and data.y_test is not None:
        test = (data.X_test, data.y_test, f"{data_config.train} (X_test, y_test)")
    if data_config.val is not None:
        loaded = load_dataset(data_config.val, seed, data_config.label_column)
        val = (loaded.X, loaded.y, data_config.val)
    return split_arrays(data.X, data.y, data_config, seed, test=test, val=val)


def data_seed(data_config, seed: int) -> int:
    """The seed of the data's splits: ``data.seed``, else the run's."""
    return seed if data_config.seed is None else data_config.seed


def split_arrays(X, y, data_config, seed: int, test=None, val=None, source: str | None = None) -> Splits:
    """``prepare``'s splits and standardisation of arrays already loaded: ``test`` and ``val``
    are None or (X, y, where they came from); ``seed`` draws the held-out rows."""
    source = source or data_config.train
    if len(np.unique(y)) < 2:
        raise DataError(f"{source}: y has a single class; classification needs at least 2")
    if test is None:
        X, X_test, y, y_test = stratified_split(X, y, data_config.test_fraction, seed)
    else:
        X_test, y_test, test_source = test
    X_val = y_val = None
    if val is not None:
        X_val, y_val, val_source = val
        check_like_training(X_val, y_val, X, y, val_source, source)
    elif data_config.val_fraction > 0:
        X, X_val, y, y_val = stratified_split(X, y, data_config.val_fraction, seed)
    if test is not None:  # (against the rows that train)
        check_like_training(X_test, y_test, X, y, test_source, source)
    scaler = Standardizer.fit(X) if data_config.standardize else None
    if scaler is not None:
        X, X_test = scaler.transform(X), scaler.transform(X_test)
        X_val = scaler.transform(X_val) if X_val is not None else None
    return Splits(X, y, X_val, y_val, X_test, y_test, scaler)


def check_like_training(X, y, X_train, y_train, source: str, train_source: str) -> None:
    """DataError unless (X, y) can be scored by a model trained on (X_train, y_train): the
    same number of features, and only labels that occur in training."""
    if X.shape[1] != X_train.shape[1]:
        raise DataError(f"{source} has {X.shape[1]} features but the training data {train_source} has {X_train.shape[1]}")
    def kind(labels):
        return "class names" if labels.dtype.kind in "US" else "numeric labels"

    if kind(y) != kind(y_train):
        raise DataError(f"{source} has {kind(y)} but the training data {train_source} has {kind(y_train)}")
    unseen = np.setdiff1d(np.unique(y), np.unique(y_train))
    if unseen.size:
        shown = ", ".join(str(v) for v in unseen[:5].tolist()) + (", ..." if unseen.size > 5 else "")
        raise DataError(f"{source} has {unseen.size} label{'s' if unseen.size > 1 else ''} that the training "
                        f"data never shows: {shown}")
