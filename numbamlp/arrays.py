"""Array checks and dtype facts: what the model, the estimators and numbamlp.data check of
a feature array, and what a feature column's dtype means.

Symbols: N rows, D features.  X (N, D).

- DataError: what every check here (and every reader of numbamlp.data) raises.
- row_chunks: the row ranges of the chunked passes (finiteness, statistics, gathers), so
  that no pass makes a temporary of X's size.
- all_finite, check_finite, NonFiniteCount: NaN and infinite values.
- dtype_kind, check_feature_dtypes, array_dtypes, column_dtypes: each feature column's
  dtype, and whether prediction's are of the kind training's were.
- as_features, as_labels, as_targets, as_class_indices, step_class_indices, unique_labels,
  as_sample_weights, as_float_dtype: what a fit, a step or a prediction takes (X (N, D),
  labels (N,), targets (N, K), weights (N,)), checked and converted once, at the edge,
  before anything below them runs.

A layer under the model: numpy alone is imported here.
"""

from __future__ import annotations

import functools
import re

import numpy as np


class DataError(ValueError):
    """Data that cannot be used, with a message meant for the user."""


# Rows per chunk of the chunked passes (conversion, finiteness, statistics, gathers): a
# chunk of float64 temporaries stays near CHUNK_BYTES whatever the width.
CHUNK_BYTES = 1 << 22


def row_chunks(n_rows: int, n_columns: int):
    """(lo, hi) row ranges covering n_rows, each about CHUNK_BYTES of float64."""
    step = max(1, CHUNK_BYTES // (8 * max(n_columns, 1)))
    for lo in range(0, n_rows, step):
        yield lo, min(lo + step, n_rows)


def all_finite(X: np.ndarray) -> bool:
    """np.isfinite(X).all() for X (N, D), chunk by chunk (row_chunks): its boolean temporary
    stays a chunk's, whatever X's size."""
    return all(np.isfinite(X[lo:hi]).all() for lo, hi in row_chunks(X.shape[0], X.shape[1]))


def check_finite(X, source: str) -> None:
    """DataError unless every value of X (N, D) is finite; checked in row chunks."""
    if X.dtype.kind not in "fc":
        return
    count = NonFiniteCount(source)
    for lo, hi in row_chunks(X.shape[0], X.shape[1]):
        count.add(X[lo:hi], np.arange(lo, hi))
    count.raise_if_any()


class NonFiniteCount:
    """Counts the NaN and infinite values of X's rows chunk by chunk, whatever order the
    chunks come in, and raises check_finite's DataError naming the first (row, column)."""

    def __init__(self, source: str):
        self.source, self.count, self.first, self.float32 = source, 0, None, False

    def add(self, chunk: np.ndarray, rows: np.ndarray) -> None:
        """chunk (m, D): the rows ``rows`` (m,), ascending, of X."""
        bad = ~np.isfinite(chunk)
        if bad.any():
            # (an infinity in float32 may be a value beyond its range, which the message then says)
            self.float32 |= chunk.dtype == np.float32 and bool(np.isinf(chunk).any())
            self.count += int(bad.sum())
            r, column = np.argwhere(bad)[0]  # (rows ascend within a chunk)
            where = (int(rows[r]), int(column))
            self.first = where if self.first is None else min(self.first, where)

    def raise_if_any(self) -> None:
        if self.count:
            beyond = ("; a value beyond float32's range (3.4e38) becomes infinite too: --dtype float64 keeps it"
                      if self.float32 else "")
            raise DataError(f"{self.source}: X has {self.count} NaN or infinite values (first at X[{self.first[0]}, "
                            f"{self.first[1]}], counting from 0){beyond}")


# ---------------------------------------------------------------- each feature's dtype
# A dtype's name (numpy's, pandas' or arrow's) → what its values mean.  Between kinds a
# column's meaning changes (a number read as text, a date, a flag); within one (int64 and
# float64, int32 and double) it does not.
_DTYPE_KINDS = (
    ("bool", re.compile(r"bool(ean)?")),
    ("number", re.compile(r"u?int\d*|float\d*|double|halffloat|decimal\d*\(.*\)")),
    ("datetime", re.compile(r"(datetime|timestamp|date|time|timedelta|duration|period)\d*(\[.*\])?")),
    ("text", re.compile(r"object|str\d*|string(\[.*\])?|large_string|(large_)?utf8|category|bytes\d*|"
                        r"(large_)?binary|dictionary<.*>|[<>|=]?[us]\d+")),
)
_KIND_WORDS = {"bool": "booleans", "number": "numbers", "datetime": "dates or times", "text": "text"}


@functools.lru_cache(maxsize=1024)
def dtype_kind(name: str) -> str:
    """"bool", "number", "datetime", "text" or "other" for a dtype's name: numpy's (int64,
    float32, bool, datetime64[ns], object, str160), pandas' (Int64, boolean, string,
    category) or arrow's (double, timestamp[ms], large_string, decimal128(10, 2))."""
    lowered = str(name).strip().lower()
    return next((kind for kind, pattern in _DTYPE_KINDS if pattern.fullmatch(lowered)), "other")


def check_feature_dtypes(found: list[str] | None, trained: list[str] | None, names: list[str] | None,
                         source) -> None:
    """DataError naming the first feature whose dtype ``found`` (D,) is of another kind
    (dtype_kind) than the one the model was trained on, ``trained`` (D,), with both: a number
    given as text, a date or a boolean (or a boolean as a number) means something else to the
    model.  Integers for floats, or floats for integers, are the same kind.  Nothing to
    compare (either None, or other counts, which the feature count check refuses): nothing
    said.  ``names`` (D,): the features' names, None: their 0-based positions."""
    if found is None or trained is None or len(found) != len(trained):
        return
    changed = [j for j, (now, then) in enumerate(zip(found, trained)) if dtype_kind(now) != dtype_kind(then)]
    if not changed:
        return
    j = changed[0]
    name = repr(names[j]) if names is not None else str(j)
    back = _KIND_WORDS.get(dtype_kind(trained[j]), trained[j])
    more = f" ({len(changed) - 1} more column{'s' if len(changed) > 2 else ''} changed too)" if len(changed) > 1 else ""
    raise DataError(f"{source}: feature column {name} is {found[j]} here but {trained[j]} in training, which changes "
                    f"what its values mean to the model; convert it back to {back} before predicting{more}")


def array_dtypes(X) -> list[str] | None:
    """The dtype of each column of an array X (N, D), numpy's name for it; None unless X is 2-D."""
    return [X.dtype.name] * X.shape[1] if np.ndim(X) == 2 else None


def column_dtypes(table) -> list[str] | None:
    """The dtype of each column of a table (a pandas DataFrame: pandas' name for it); None
    for what has no per-column dtypes (an array)."""
    dtypes = getattr(table, "dtypes", None)
    return None if dtypes is None or np.ndim(dtypes) != 1 else [str(t) for t in dtypes]


# ---------------------------------------------------------------- what a fit or a prediction takes, checked at the edge
FLOAT_DTYPES = ("float32", "float64")


def as_float_dtype(dtype) -> np.dtype:
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(FLOAT_DTYPES)}, not {dtype!r}")
    return np.dtype(name)


def as_features(X, n_features: int | None, dtype, name: str = "X") -> np.ndarray:
    """X as a C-contiguous (B, D) array of ``dtype``; any real dtype and memory order accepted.
    ``name``: what the messages call it (e.g. "X_val")."""
    if hasattr(X, "toarray") and hasattr(X, "nnz"):  # (np.asarray would make a 0-d array of objects)
        raise ValueError(f"{name} is a sparse matrix ({type(X).__name__}, {X.shape[0]} × {X.shape[1]}); numbamlp "
                         f"trains on dense arrays: pass {name}.toarray() ({X.shape[0] * X.shape[1] * 4:,} "
                         "bytes as float32)")
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, not dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    if X.shape[1] == 0:
        raise ValueError(f"{name} has no features (0 columns): nothing to learn from")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features but the model expects {n_features}")
    with np.errstate(over="ignore"):  # (beyond float32's range: inf, said below)
        X = np.ascontiguousarray(X, dtype=dtype)
    if not X.flags.aligned:  # (e.g. unpickled from a message buffer, as Dask delivers arrays): numpy's
        X = X.copy()         # gathers of minibatch rows from an unaligned X took 65x longer (95 against 1.5 µs)
    if not all_finite(X):  # (in row chunks: a training set's boolean temporary was 1/4 of it as float32)
        beyond = " (or values beyond float32's range, 3.4e38)" if X.dtype == np.float32 else ""
        raise ValueError(f"{name} contains NaN or infinite values{beyond}")
    return X


def as_labels(y, n_rows: int, name: str = "y", rows_name: str = "X") -> np.ndarray:
    """A classifier's labels, of any sortable kind, as an array (n_rows,): one per row of
    ``rows_name``, none of them NaN.  ``name``: what the messages call y (e.g. "y_val")."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a vector of {n_rows} labels, got shape {y.shape}")
    if len(y) != n_rows:
        raise ValueError(f"{rows_name} has {n_rows} rows but {name} has {len(y)} labels")
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or infinite labels")
    return y


def unique_labels(y: np.ndarray) -> np.ndarray:
    """The sorted distinct labels of y (a classifier's classes)."""
    try:
        return np.unique(y)
    except TypeError:  # e.g. numbers and strings together
        kinds = sorted({type(value).__name__ for value in y.tolist()})
        raise ValueError(f"y mixes labels that cannot be ordered together ({', '.join(kinds)})") from None


def as_class_indices(y, n_rows: int, n_classes: int) -> np.ndarray:
    """y as a C-contiguous int64 vector of class indices in [0, n_classes)."""
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n_rows:
        raise ValueError(f"y must be a vector of {n_rows} labels, got shape {y.shape}")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or not np.array_equal(y, np.round(y)):
            raise ValueError("y must hold integer class indices (found NaN or non-integral values)")
    elif y.dtype.kind not in "biu":
        raise ValueError(f"y must hold integer class indices, not dtype {y.dtype}")
    y = np.ascontiguousarray(y, dtype=np.int64)
    # one reduction for both bounds: viewed as unsigned, a negative index is ≥ 2**63
    if y.size and y.view(np.uint64).max() >= n_classes:
        raise ValueError(f"class indices must lie in [0, {n_classes}), found {y.min()}..{y.max()}")
    return y


# Trainer.step and StackTrainer.step before any fit build one output per class index
# 0..max(y): a label such as an ID column would otherwise ask for gigabytes of weights.
STEP_MAX_CLASSES = 65536


def step_class_indices(y, n_rows: int) -> tuple[np.ndarray, int]:
    """(y as class indices (as_class_indices), the number of outputs they need) for a first
    step before any fit, which takes y as class indices 0..C−1 and builds C outputs."""
    try:
        y = as_class_indices(y, n_rows, STEP_MAX_CLASSES)
    except ValueError as err:
        raise ValueError(f"{err} (step before fit takes y as class indices 0..C-1 and builds C outputs, at most "
                         f"{STEP_MAX_CLASSES:,}; fit encodes labels of any kind)") from None
    return y, int(y.max()) + 1


def as_targets(y, n_rows: int, n_outputs: int | None, dtype) -> np.ndarray:
    """Regression targets as a C-contiguous (n_rows, K) array of ``dtype``: y (n_rows,) is one
    output, y (n_rows, K) K of them; numbers only, finite."""
    y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise ValueError(f"regression targets must be numbers, not dtype {y.dtype} (e.g. {y.flat[0]!r})"
                         if y.size else f"regression targets must be numbers, not dtype {y.dtype}")
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[0] != n_rows:
        raise ValueError(f"y must hold {n_rows} targets, (N,) or (N, K), got shape {y.shape}")
    if n_outputs is not None and y.shape[1] != n_outputs:
        raise ValueError(f"y has {y.shape[1]} outputs but the model has {n_outputs}")
    y = np.ascontiguousarray(y, dtype=dtype)
    if not np.isfinite(y).all():
        raise ValueError("y contains NaN or infinite values")
    return y


def as_sample_weights(sample_weight, n_rows: int, dtype) -> np.ndarray | None:
    """None, or a C-contiguous (n_rows,) vector of finite, non-negative weights with a positive sum."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "biuf" or w.shape != (n_rows,):
        raise ValueError(f"sample_weight must be {n_rows} real numbers, got shape {w.shape} dtype {w.dtype}")
    w = np.ascontiguousarray(w, dtype=dtype)
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("sample_weight must be finite and non-negative")
    if w.sum() <= 0:
        raise ValueError("sample_weight must not be all zero")
    return w
