"""Array checks and dtype facts: what the model, the estimators and numbamlp.data check of
a feature array, and what a feature column's dtype means.

Symbols: N rows, D features.  X (N, D).

- DataError: what every check here (and every reader of numbamlp.data) raises.
- row_chunks: the row ranges of the chunked passes (finiteness, statistics, gathers), so
  that no pass makes a temporary of X's size.
- all_finite, check_finite, NonFiniteCount: NaN and infinite values.
- dtype_kind, check_feature_dtypes, array_dtypes, column_dtypes: each feature column's
  dtype, and whether prediction's are of the kind training's were.

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
