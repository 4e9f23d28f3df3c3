"""Loading a training source into a checked Dataset (load_dataset: ``builtin:NAME``, a
.csv, .parquet or .npz file, or a folder of .npy files), and the names of its feature
columns (feature_names).

Symbols: N rows, D features.  X (N, D), y (N,).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from numbamlp.arrays import DataError
from numbamlp.data.builtin import read_builtin
from numbamlp.data.checks import check_arrays
from numbamlp.data.columns import _label_index
from numbamlp.data.csv_files import _first_csv_rows, _header_of, _read_csv
from numbamlp.data.dataset import Dataset, _quiet_overflow
from numbamlp.data.formats import file_kind
from numbamlp.data.numpy_files import _read_npy_folder, _read_npz
from numbamlp.data.parquet import _read_parquet


@_quiet_overflow
def load_dataset(source: str, seed: int = 0, label_column: str | int | None = None,
                 dtype=np.float64, task: str = "classification", header: bool | None = None) -> Dataset:
    """Load ``builtin:NAME``, a .csv, .parquet or .npz file, or a folder of .npy files,
    checked; DataError otherwise.

    X (N, D) is of ``dtype`` (a memory map of the file's own dtype for an .npy folder), y (N,)
    integers or class names, or, for task "regression", float64 targets.  ``Dataset.owned``
    says whether X may be overwritten in place; ``Dataset.feature_dtypes`` (D,) what each
    feature column holds in the source.  ``header``: whether a CSV file's first row is a
    header (None: _csv_header decides); other sources have none, and ignore it
    (check_header_applies refuses it where no source is a CSV file).
    """
    if source.startswith("builtin:"):
        return read_builtin(source, seed, dtype, task)
    path = Path(source)
    if not path.exists():
        raise DataError(f"data file not found: {source}")
    if path.is_dir():
        if not (path / "X.npy").exists() and not (path / "y.npy").exists():
            raise DataError(f"{source} is a directory without X.npy and y.npy; expected a data file "
                            "or a folder holding X.npy and y.npy")
        return _read_npy_folder(path, task)
    readers = {"npz": lambda: _read_npz(path, dtype),
               "csv": lambda: _read_csv(path, label_column, dtype, task, header),
               "parquet": lambda: _read_parquet(path, label_column, dtype, task=task)}
    if file_kind(path) not in readers:
        raise DataError(f"unsupported data file {source}: expected builtin:NAME, a .csv (or .tsv, either maybe "
                        ".gz, .bz2 or .zst), .parquet or .npz file, or a folder holding X.npy and y.npy")
    data = readers[file_kind(path)]()
    data.X, data.y = check_arrays(data.X, data.y, source, dtype, task)
    if data.X_test is not None:
        data.X_test, data.y_test = check_arrays(data.X_test, data.y_test, f"{source} (X_test, y_test)", dtype, task)
    return data


def feature_names(source: str | None, label_column=None, header: bool | None = None) -> list[str] | None:
    """The names of a training file's feature columns, in the order training reads them
    (every column but the label column): a CSV file's header, a Parquet file's schema; None
    for data without names (builtin sets, .npz, .npy folders, a CSV without a header).
    ``header``: whether a CSV file's first row is a header (None: _csv_header decides)."""
    if source is None or source.startswith("builtin:"):
        return None
    path = Path(source)
    header = _column_names(path, label_column, header) if file_kind(path) in ("csv", "parquet") else None
    if header is None:
        return None
    label = _label_index(label_column, header, len(header), path)
    return [name for j, name in enumerate(header) if j != label]


def _column_names(path: Path, label_column=None, header: bool | None = None) -> list[str] | None:
    """A CSV file's header (None without one; ``header`` as _header_of's) or a Parquet
    file's schema names."""
    if file_kind(path) == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).schema_arrow.names
    first, second = _first_csv_rows(path)
    return None if first is None else _header_of(first, second, header, label_column, path)
