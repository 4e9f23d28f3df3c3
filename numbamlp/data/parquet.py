"""Parquet files: feature columns of numbers (or booleans), the label column as for CSV;
read row group by row group into one preallocated (N, D) array (pyarrow, imported only
when a file is read).

Symbols: N rows, D features.  X (N, D), y (N,).
"""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import numpy as np

from numbamlp.arrays import DataError, check_feature_dtypes
from numbamlp.data.columns import (FILL_OR_DROP, _arrow_labels, _check_label_column, _check_target_column,
                                   _holds_numbers, _label_index, _prediction_label, feature_columns)
from numbamlp.data.dataset import Dataset, NotNumbers, _reason
from numbamlp.data.memory import allocate_features

# A Parquet file is read row group by row group, each in groups of columns of at most this
# many bytes as float64 and 1/4 of X (what pyarrow holds at once).  The columns go into X
# in blocks of PARQUET_BLOCK_ROWS rows (a block of X, ~1 MB at 50 float32 features, stays in
# cache while each column's slice goes in, one strided cast-copy each), the blocks shared out
# among threads: numpy releases the GIL in the copies.  Measured (bench/README.md, issue 16):
# column by column down all of X ~4x pyarrow's own read at 3M x 50 (a cache miss per value);
# np.stack per 16k-row block, one thread, ~2x; these blocks on 2 threads about half that copy's time.
PARQUET_GROUP_BYTES = 1 << 28
PARQUET_BLOCK_ROWS = 1 << 12


def _copy_threads() -> int:
    """Threads for copying columns into X: the cores this process may run on, at most 8."""
    from numbamlp.kernels import usable_cores

    return max(1, min(usable_cores(), 8))


def _copy_parquet_columns(table, X: np.ndarray, first: int, path: Path, row: int) -> None:
    """X[:, first : first + table.num_columns] = table's columns (as numbers), record batch by
    record batch (zero-copy views of what pyarrow decoded), block of rows by block on several
    threads; X (rows, D) are the file's rows from ``row`` on (for messages)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for k, name in enumerate(table.column_names):
        column = table.column(k)
        if column.null_count:
            at = row + pc.index(pc.is_null(column), True).as_py()
            raise NotNumbers(f"{path}: feature column {name!r} has a missing value in data row {at}, counting from 0; "
                            f"{FILL_OR_DROP}")
    blocks = []  # (columns, rows of X): every block of every record batch
    lo = 0
    for batch in table.to_batches():
        columns = [c.to_numpy() if pa.types.is_floating(c.type) else c.cast(pa.float64()).to_numpy()
                   for c in batch.columns]
        for a in range(0, batch.num_rows, PARQUET_BLOCK_ROWS):
            b = min(a + PARQUET_BLOCK_ROWS, batch.num_rows)
            blocks.append(([c[a:b] for c in columns], X[lo + a : lo + b, first : first + len(columns)]))
        lo += batch.num_rows

    def copy(share: int, threads: int) -> None:
        with np.errstate(over="ignore"):  # (beyond float32: inf, which the finiteness check names)
            for columns, rows in blocks[share::threads]:
                for j, column in enumerate(columns):
                    rows[:, j] = column

    threads = min(_copy_threads(), len(blocks))
    if threads == 1:
        copy(0, 1)
        return
    with concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="parquet") as pool:
        for done in [pool.submit(copy, share, threads) for share in range(threads)]:
            done.result()


def _read_parquet(path: Path, label_column, dtype, predict_features: int | None = None,
                  task: str = "classification", trained_label=None, names: list[str] | None = None,
                  dtypes: list[str] | None = None) -> Dataset:
    """A Parquet file, record batch by record batch into one preallocated (N, D) array of
    ``dtype``; the label column as for CSV (default the last), numbers or class names.
    predict_features (prediction): the model's feature count; the columns of the model's
    feature ``names`` when it has them, in its order (others are not read); else, as for a
    CSV file, the last column is a label column only when there is one more than that (or
    label_column names one); labels are never read (y None); trained_label: see
    _prediction_label; ``dtypes``: the model's features' dtypes, which those columns' must
    be of the kind of (check_feature_dtypes)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"reading {path} needs pyarrow: pip install pyarrow") from None
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"cannot read {path} as Parquet ({_reason(err)})") from None
    schema = parquet.schema_arrow
    model_names, names, width = names, schema.names, len(schema.names)
    if predict_features is None:
        with_label = True
    elif model_names is not None:
        with_label = False
    else:
        with_label, label_column = _prediction_label(width, predict_features, label_column, trained_label, names,
                                                     path)
    if width < 1 + with_label:
        raise DataError(f"{path} needs at least one feature column and a label column")
    label = _label_index(label_column, names, width, path) if with_label else None
    features = [j for j in range(width) if j != label] if model_names is None else \
        feature_columns(names, model_names, path)
    file_dtypes = [_arrow_dtype_name(schema.field(j).type) for j in features]
    if predict_features is not None:
        check_feature_dtypes(file_dtypes, dtypes, [names[j] for j in features], path)
    for j in features:
        kind = schema.field(j).type
        if not _holds_numbers(kind):
            raise NotNumbers(f"{path}: feature column {names[j]!r} holds {kind}, not numbers, where numbers are read "
                             "(a model trained on numbers takes numbers): drop the column, or train on the table as "
                             "it is (its text columns become categories); if it is the label column, name it with "
                             "--label-column")
    n = parquet.metadata.num_rows
    if n == 0:
        raise DataError(f"{path} has no rows")
    X = allocate_features(n, len(features), dtype, str(path))
    try:
        row = 0
        for index in range(parquet.metadata.num_row_groups):
            rows = parquet.metadata.row_group(index).num_rows
            per_group = max(1, min(PARQUET_GROUP_BYTES, X.nbytes // 4) // (8 * max(rows, 1)))
            for k in range(0, len(features), per_group):
                columns = parquet.read_row_group(index, columns=[names[j] for j in features[k : k + per_group]])
                _copy_parquet_columns(columns, X[row : row + rows], k, path, row)
                del columns
            row += rows
        y = None
        if predict_features is None:
            y = _arrow_labels(parquet.read(columns=[names[label]]).column(0), str(path), text_numbers=False)
    except pa.ArrowException as err:
        raise DataError(f"cannot read {path} as Parquet ({_reason(err)})") from None
    if y is not None and task == "regression":
        _check_target_column(y, path, names, label, header_rows=0)
    elif y is not None and label_column is None:  # (as _read_csv)
        _check_label_column(y, path, names, label, width)
    return Dataset(X, y, name=str(path), owned=True, feature_dtypes=file_dtypes)


def _arrow_dtype_name(kind) -> str:
    """numpy's name for an arrow type of numbers or booleans (int64, float32, bool), arrow's
    own for the others (decimal128(10, 2), string, timestamp[ms])."""
    import pyarrow as pa

    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return np.dtype(kind.to_pandas_dtype()).name
    return str(kind)
