"""Splits: held-out rows drawn by class (stratified_split) or by a seeded shuffle
(shuffle_split), and split_arrays, which lays the rows out as [train | validation | test]
in one (N, D) buffer — X itself, reordered in place, when it may be overwritten; else a
new one gathered by index — and standardises them in place, chunk by chunk, so that the
splits are views of that buffer.

Symbols: N rows, D features.  X (N, D), y (N,).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from numbamlp.arrays import DataError, NonFiniteCount, check_finite, row_chunks
from numbamlp.data.checks import check_like_training
from numbamlp.data.dataset import DataNote, _quiet_overflow
from numbamlp.data.memory import allocate_features
from numbamlp.transforms import Standardizer


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


def shuffle_split(X, y, fraction: float, seed: int):
    """Split rows into (X_a, X_b, y_a, y_b) for regression targets: round(fraction × N) rows (at
    least one, at least one left in a), drawn with ``numpy.random.default_rng(seed)``, in the b
    part.  Rows keep their order within each part."""
    y = np.asarray(y)
    n = len(y)
    n_b = min(max(int(round(fraction * n)), 1), n - 1)
    in_b = np.zeros(n, dtype=bool)
    in_b[np.random.default_rng(seed).permutation(n)[:n_b]] = True
    return X[~in_b], X[in_b], y[~in_b], y[in_b]


def _note_a_short_split(held_out: int, fraction: float, y, what: str, source) -> None:
    """A DataNote when a stratified split holds out far fewer rows than asked: classes of
    one row stay in training whole (1,990 prices as classes left 5 test rows of 500)."""
    asked = int(round(fraction * len(y)))
    if 0 < held_out < asked // 2:
        import warnings

        _, counts = np.unique(y, return_counts=True)
        warnings.warn(f"{source}: the {what} split holds {held_out} rows, not the {asked} "
                      f"({fraction:g} of {len(y)}) asked: {int(np.sum(counts == 1))} of {len(counts)} classes have a "
                      "single row, which stays in training", DataNote, stacklevel=3)


def holdout_split(X, y, fraction: float, seed: int, task: str = "classification"):
    """stratified_split for a classification task, shuffle_split for regression."""
    split = shuffle_split if task == "regression" else stratified_split
    return split(X, y, fraction, seed)


def split_rows(y, data_config, seed: int, task: str, test_given: bool, val_given: bool):
    """(training rows, validation rows or None, test rows or None): indices into y (N,) of
    the rows each split takes — a ``data_config.test_fraction`` held out for testing unless a
    test set is given, then a ``val_fraction`` of the rest for validation unless a
    validation set is given or the fraction is 0 — drawn with ``seed`` (holdout_split)."""
    rows, val_rows, test_rows = np.arange(len(y)), None, None
    if not test_given:
        rows, test_rows, _, _ = holdout_split(rows, y, data_config.test_fraction, seed, task)
    if not val_given and data_config.val_fraction > 0:
        rows, val_rows, _, _ = holdout_split(rows, y[rows], data_config.val_fraction, seed, task)
    return rows, val_rows, test_rows


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
    feature_names: list[str] | None = None  # the training file's column names (feature_names)
    feature_dtypes: list[str] | None = None  # (D,) what each of them held there (Dataset.feature_dtypes)
    table: object | None = None  # a table's numbamlp.encoding.TableEncoder (feature_names: its raw columns)
    raw_test: dict | None = None  # a table's test rows as raw columns, when prepare was asked for them

    def attach_to(self, model) -> None:
        """Give a model trained on these splits what prediction needs from the data: the
        table's encoding, the standardisation, and the names and dtypes of its features."""
        model.table = self.table
        model.input_transform = self.standardizer
        model.feature_names = self.feature_names
        model.feature_dtypes = self.feature_dtypes


@_quiet_overflow
def split_arrays(X, y, data_config, seed: int, test=None, val=None, source: str | None = None,
                 dtype=np.float64, overwrite: bool = False, task: str = "classification",
                 unscaled: np.ndarray | None = None, drawn: tuple | None = None) -> Splits:
    """``prepare``'s splits and standardisation of arrays already loaded: ``test`` and ``val``
    are None or (X, y, where they came from); ``seed`` draws the held-out rows.

    The rows are split by index and laid out as [train | validation | test] in one (N, D)
    buffer of ``dtype``: X itself when ``overwrite`` (X is then reordered and standardised in
    place; only the held-out rows are copied out meanwhile), else a new buffer gathered from
    X by index chunk by chunk (X, which may be a memory map, is only read).  The splits are
    views of that buffer; given test and validation arrays are standardised in place when
    ``overwrite``, else copied.  Held-out rows are drawn stratified by class, or, for task
    "regression", by a plain seeded shuffle (holdout_split).  ``unscaled`` (D,) bool: features
    left as they are by the standardisation (a table's one-hot and was-missing features).
    ``drawn``: split_rows's rows for these arguments when the caller drew them already (a
    table's, before its encoding: not drawn twice).
    """
    source = source or data_config.train
    y = np.asarray(y)
    regression = task == "regression"
    if not regression and len(np.unique(y)) < 2:
        raise DataError(f"{source}: y has a single class; classification needs at least 2")
    rows, val_rows, test_rows = drawn or split_rows(y, data_config, seed, task, test is not None, val is not None)
    if test is not None:
        X_test, y_test, test_source = test
    if val is not None:
        X_val, y_val, val_source = val
        check_like_training(X_val, y_val, X, y[rows], val_source, source, regression)
    if test is not None:  # (against the rows that train)
        check_like_training(X_test, y_test, X, y[rows], test_source, source, regression)
    if not regression and test is None:
        _note_a_short_split(len(test_rows), data_config.test_fraction, y, "test", source)
    # too few rows for a split: said now, not after training (an empty split fails at its first use)
    for held_out, what, option in ((None if test is not None else test_rows, "a test split", "test_fraction"),
                                   (val_rows, "a validation split", "val_fraction")):
        if held_out is not None and len(held_out) == 0:
            classes = 0 if regression else len(np.unique(y))
            hint = (f"; y has {classes} classes among {len(y)} rows: is its label column an ID or a feature? "
                    "(--label-column)" if classes > len(y) // 2 else "")
            raise DataError(f"{source}: its {len(y)} rows are too few to hold out {what} "
                            f"({option} {getattr(data_config, option):g} of them is none){hint}")
    if len(rows) == 0:
        raise DataError(f"{source}: its {len(y)} rows leave none to train on after the held-out splits")
    parts = [part for part in (rows, val_rows, None if test is not None else test_rows) if part is not None]
    whole = len(rows) == len(y)  # every row trains, in order: nothing to reorder
    if whole and X.dtype == dtype and X.flags.c_contiguous and (overwrite or not data_config.standardize):
        buffer = X  # (a memory map or a caller's array is used as it is when nothing writes to it)
        if isinstance(X, np.memmap):
            check_finite(X, source)
    elif overwrite and X.dtype == dtype and X.flags.c_contiguous and X.flags.writeable:
        buffer = _partition_rows(X, parts)
    else:
        buffer = _gather_rows(X, parts, dtype, source)
    bounds = np.cumsum([0] + [len(part) for part in parts])
    X_train, y_train = buffer[: bounds[1]], y[rows]
    if val_rows is not None:
        X_val, y_val = buffer[bounds[1] : bounds[2]], y[val_rows]
    elif val is not None:
        X_val = _own_copy(X_val, dtype, overwrite, data_config.standardize, val_source)
    else:
        X_val = y_val = None
    if test is None:
        X_test, y_test = buffer[bounds[-2] : bounds[-1]], y[test_rows]
    else:
        X_test = _own_copy(X_test, dtype, overwrite, data_config.standardize, test_source)
    scaler = Standardizer.fit(X_train) if data_config.standardize else None
    if scaler is not None and unscaled is not None:
        scaler = scaler.leaving(unscaled)
    if scaler is not None:
        scaler.inplace_transform(buffer[: bounds[-1]])
        for extra in (X_val if val is not None else None, X_test if test is not None else None):
            if extra is not None:
                scaler.inplace_transform(extra)
    return Splits(X_train, y_train, X_val, y_val, X_test, y_test, scaler)


def _own_copy(X, dtype, overwrite: bool, writes: bool, source: str) -> np.ndarray:
    """X as a C-contiguous array of ``dtype`` that may be standardised in place: X itself
    when it may be overwritten (or nothing will write to it), else a copy.  (A memory map's
    values are checked here: check_arrays left them to this first read.)"""
    if (not writes or (overwrite and X.flags.writeable)) and X.dtype == dtype and X.flags.c_contiguous:
        own = X
    else:
        own = np.array(X, dtype=dtype, order="C")
    if isinstance(X, np.memmap):
        check_finite(own, source)
    return own


def _partition_rows(X: np.ndarray, parts: list[np.ndarray]) -> np.ndarray:
    """Reorder the rows of X (N, D) in place into parts[0] | parts[1] | ... (each part's
    rows ascending, as ``stratified_split`` gives them); returns X.  Only the rows of
    parts[1:] (the held-out ones) are copied out meanwhile."""
    if any(len(part) and (part[0] < 0 or np.any(np.diff(part) <= 0)) for part in parts):
        raise ValueError("_partition_rows needs each part's rows ascending")  # (else rows are lost)
    held = [X[part] for part in parts[1:]]
    _compact_rows(X, parts[0])
    lo = len(parts[0])
    for rows in held:
        X[lo : lo + len(rows)] = rows
        lo += len(rows)
    return X


def _compact_rows(X: np.ndarray, rows: np.ndarray) -> None:
    """X[:len(rows)] = X[rows] in place, for ascending rows (rows[i] ≥ i): chunk by chunk,
    each chunk gathered before it is written, and a chunk writes only rows that later
    chunks no longer read."""
    for lo, hi in row_chunks(len(rows), X.shape[1]):
        if rows[lo] != lo or rows[hi - 1] != hi - 1:  # (rows already in place stay)
            X[lo:hi] = X[rows[lo:hi]]


def _gather_rows(X, parts: list[np.ndarray], dtype, source: str) -> np.ndarray:
    """A new (Σ len(part), D) array of ``dtype``: the rows of each part in turn, gathered
    from X (which is only read; a memory map is read through the map, once) chunk by chunk,
    each chunk checked for NaN and infinite values as it arrives."""
    out = allocate_features(sum(len(part) for part in parts), X.shape[1], dtype, source)
    non_finite = NonFiniteCount(source)
    lo = 0
    for part in parts:
        for a, b in row_chunks(len(part), X.shape[1]):
            out[lo + a : lo + b] = X[part[a:b]]
            non_finite.add(out[lo + a : lo + b], part[a:b])
        lo += len(part)
    non_finite.raise_if_any()
    return out
