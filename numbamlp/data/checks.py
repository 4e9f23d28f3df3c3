"""Checks at the boundary, each a DataError meant for the user: arrays of features and
labels (check_arrays), a classifier's labels that look like a regression target
(check_classes_are_classes), test and validation data against the training data
(check_like_training), prediction's feature count (check_feature_count), and settings
that apply to none of the sources given (check_label_column_applies, check_header_applies).

Symbols: N rows, D features.  X (N, D), y (N,).
"""

from __future__ import annotations

import numpy as np

from numbamlp.arrays import DataError, check_finite
from numbamlp.data.formats import file_kind


def check_arrays(X, y, source: str = "data", dtype=np.float64, task: str = "classification"):
    """Validate features and labels at the boundary; returns (X (N, D) of ``dtype``, y (N,)),
    or, for a regressor, y (N,) or (N, K) float64 targets.

    ``dtype`` None keeps X's own: a memory map stays one, and its values are checked as
    ``split_arrays`` reads them (one pass over the file, not two).  X is checked chunk by
    chunk, without a temporary of its size.  Labels: integers (integral floats are converted), or
    strings/bools as class names.
    """
    X = X if isinstance(X, np.memmap) else np.asarray(X)
    y = np.asarray(y)
    if X.dtype.kind not in "biuf":
        raise DataError(f"{source}: X must hold numbers, not {X.dtype}")
    if X.ndim != 2:
        raise DataError(f"{source}: X must be 2-D (rows, features), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{source}: X is empty (shape {X.shape})")
    if y.ndim != 1 and not (task == "regression" and y.ndim == 2 and y.shape[1] >= 1):
        shapes = "(N,) or (N, K) targets" if task == "regression" else "1-D"
        raise DataError(f"{source}: y must be {shapes}, got shape {y.shape}")
    if y.shape[0] != X.shape[0]:
        raise DataError(f"{source}: X has {X.shape[0]} rows but y has {y.shape[0]} labels")
    if dtype is not None:
        X = X.astype(dtype, copy=False)
    if not isinstance(X, np.memmap):  # (a map's values are checked as split_arrays reads them)
        check_finite(X, source)
    if task == "regression":
        if y.dtype.kind not in "biuf":
            raise DataError(f"{source}: regression targets must be numbers, not {y.dtype} (e.g. {y[0]!r})")
        if not np.isfinite(y).all():
            raise DataError(f"{source}: y contains NaN or infinite targets")
        return X, y.astype(np.float64)
    if y.dtype.kind == "S":  # bytes (numpy's S dtype): class names as text, which a model file can hold
        try:
            y = np.char.decode(y, "utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{source}: y holds bytes that are not UTF-8 text; store class names as text") from None
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise DataError(f"{source}: y contains NaN or infinite labels")
        if not np.array_equal(y, np.round(y)):
            raise DataError(f"{source}: y has non-integral numeric labels: a classifier's labels are integers or "
                            "class names (numeric targets: task regression)")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "biuUS":
        raise DataError(f"{source}: y must hold integers or class names, not {y.dtype}")
    return X, y


def check_feature_count(X, n_features: int, source: str) -> None:
    """DataError unless X (N, D) has the model's ``n_features`` columns."""
    if X.shape[1] != n_features:
        raise DataError(f"{source} has {X.shape[1]} features but the model expects {n_features}")


def check_like_training(X, y, X_train, y_train, source: str, train_source: str, regression: bool = False) -> None:
    """DataError unless (X, y) can be scored by a model trained on (X_train, y_train): the
    same number of features, and (classification) only labels that occur in training."""
    if X.shape[1] != X_train.shape[1]:
        raise DataError(f"{source} has {X.shape[1]} features but the training data {train_source} has {X_train.shape[1]}")
    if regression:
        return
    def kind(labels):
        return "class names" if labels.dtype.kind in "US" else "numeric labels"

    if kind(y) != kind(y_train):
        raise DataError(f"{source} has {kind(y)} but the training data {train_source} has {kind(y_train)}")
    unseen = np.setdiff1d(np.unique(y), np.unique(y_train))
    if unseen.size:
        shown = ", ".join(str(v) for v in unseen[:5].tolist()) + (", ..." if unseen.size > 5 else "")
        raise DataError(f"{source} has {unseen.size} label{'s' if unseen.size > 1 else ''} that the training "
                        f"data never shows: {shown}")


# Numeric labels with at least this many distinct values, each class averaging fewer than
# CLASS_ROWS_AT_LEAST rows, look like a regression target (prices: 19,360 classes of 20,000 rows).
MANY_CLASSES, CLASS_ROWS_AT_LEAST = 100, 2


def check_classes_are_classes(y, source: str) -> None:
    """DataError when a classifier's labels look like a regression target: numbers with
    MANY_CLASSES or more distinct values, fewer than CLASS_ROWS_AT_LEAST rows a class on
    average (scikit-learn's MLPClassifier trains them with a warning; numbamlp asks)."""
    y = np.asarray(y)
    if y.dtype.kind not in "iuf" or len(y) == 0:
        return
    distinct = len(np.unique(y))
    if distinct >= MANY_CLASSES and len(y) < CLASS_ROWS_AT_LEAST * distinct:
        raise DataError(f"{source}: the labels are numbers with {distinct} distinct values in {len(y)} rows, which "
                        "looks like a regression target, not classes: give --task regression (task = "
                        "\"regression\"); if the label column is an ID or a feature, choose another with "
                        "--label-column; --task classification trains it as classes all the same")


def check_label_column_applies(label_column, *sources) -> None:
    """DataError when a label column is named but no source (None: none) is a CSV or Parquet
    file: the others keep their labels apart, so it would be ignored."""
    _check_applies(label_column, sources, ("csv", "parquet"), "label_column names a column of a CSV or Parquet "
                   "file; {source} keeps its labels apart (builtin sets, .npz, a folder's y.npy): leave it unset")


def check_header_applies(header: bool | None, *sources) -> None:
    """DataError when the header setting (--header, --no-header) is given but no source
    (None: none) is a CSV file: the others have no first row to tell, so it would be ignored."""
    _check_applies(header, sources, ("csv",), "--header/--no-header say whether a CSV file's first row is a header "
                   "(data.header); {source} is not a CSV file (a Parquet file names its columns in its schema; "
                   "builtin sets, .npz and .npy have none): leave them out")


def _check_applies(setting, sources, kinds: tuple[str, ...], message: str) -> None:
    """DataError(``message`` naming the first source) when ``setting`` is given (not None)
    but no source (None: none) is a file of ``kinds`` (file_kind), the only ones it is for."""
    sources = [source for source in sources if source is not None]
    if setting is not None and sources and not any(file_kind(source) in kinds for source in sources):
        raise DataError(message.format(source=sources[0]))
