"""Reading data for a trained model: its features (read_features: the model's columns, by
name when it knows them, labels not read), whether a CSV file's first row is a header for
it (header_for_model), the label column to score it by (evaluation_label), and the columns
to copy beside its predictions (read_columns).

Symbols: N rows, D features.  X (N, D).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from numbamlp.arrays import DataError, check_finite
from numbamlp.data.checks import check_arrays, check_feature_count
from numbamlp.data.columns import _is_number, _label_index, _prediction_label, feature_columns
from numbamlp.data.csv_files import (_csv_features, _csv_header, _csv_rows, _first_csv_row, _first_csv_rows,
                                     _open_csv_text, _read_csv_arrow, csv_dialect)
from numbamlp.data.dataset import _quiet_overflow
from numbamlp.data.formats import file_kind
from numbamlp.data.loading import _column_names, load_dataset
from numbamlp.data.numpy_files import _read_npy_folder, _read_npz
from numbamlp.data.parquet import _read_parquet
from numbamlp.data.tables import ColumnRoles, read_table


@_quiet_overflow
def read_features(source: str, n_features: int, label_column=None, seed: int = 0,
                  task: str = "classification", trained_label=None, names: list[str] | None = None,
                  header: bool | None = None, dtypes: list[str] | None = None, table=None):
    """Features (N, n_features) for prediction.

    builtin and .npz: the X array.  CSV and Parquet with a model that knows its features'
    ``names``: the columns of those names, in the model's order, whatever else the file
    holds and in whatever order (a name it lacks: refused); a CSV without a header must then
    have exactly the model's columns.  Otherwise every column, or every column but the
    label column when the file has n_features + 1 columns (``label_column``, else the one
    the model was trained with, ``trained_label``, when the file has it, else the last).
    ``header``: whether a CSV file's first row is a header (None: header_for_model decides);
    ``dtypes``: the model's features' dtypes, which a Parquet file's columns must be of the
    kind of (check_feature_dtypes; None: any numbers).  A model of a table (``table``, its
    numbamlp.encoding.TableEncoder): its raw columns by name, {name: column}, which the
    model encodes itself (read_table; a CSV or Parquet file only).
    """
    if table is not None:
        return read_table_for_model(source, table, label_column, header)
    if source.startswith("builtin:"):
        X = load_dataset(source, seed, label_column, task=task).X
    else:
        X = _read_features_file(Path(source), n_features, label_column, trained_label, names, header, dtypes)
        X, _ = check_arrays(X, np.zeros(len(X), dtype=np.int64), source, dtype=None)
        if X.dtype.kind != "f":
            X = X.astype(np.float64)
        if isinstance(X, np.memmap):  # (check_arrays leaves a map's values to their first read)
            check_finite(X, source)
    check_feature_count(X, n_features, source)
    return X


def read_table_for_model(source: str, table, label_column=None, header: bool | None = None, with_label=False,
                         task: str = "classification"):
    """The raw columns a model of a table takes, {name: column}, from a CSV or Parquet file
    (read_table: its columns by name, whatever else the file holds); with_label: (columns,
    labels (N,)) of ``label_column`` (None: the last column)."""
    if file_kind(source) not in ("csv", "parquet") or source.startswith("builtin:"):
        raise DataError(f"{source}: this model takes a table's columns by name ({', '.join(table.columns[:6])}"
                        f"{', ...' if len(table.columns) > 6 else ''}): give a CSV or Parquet file")
    raw = read_table(source, label_column, ColumnRoles(), task=task, header=header, with_label=with_label,
                     columns=table.columns, categorical=table.categorical)
    return (raw.columns, raw.y) if with_label else raw.columns


def _read_features_file(path: Path, n_features: int, label_column, trained_label=None, names=None, header=None,
                        dtypes=None) -> np.ndarray:
    """The features of a data file or .npy folder for prediction, its labels not read (a file
    without labels will do): X.npy mapped, .npz's X, every Parquet or CSV column but a label
    column (one more column than the model's features, or ``label_column``)."""
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if path.is_dir():
        if not (path / "X.npy").exists():
            raise DataError(f"{path} is a directory without X.npy; expected a data file or a folder holding X.npy")
        return _read_npy_folder(path, labels=False).X
    if file_kind(path) == "csv":
        return _read_csv_features(path, n_features, label_column, trained_label, names, header)
    if file_kind(path) == "npz":
        return _read_npz(path, np.float64, labels=False).X
    if file_kind(path) == "parquet":
        return _read_parquet(path, label_column, np.float64, predict_features=n_features,
                             trained_label=trained_label, names=names, dtypes=dtypes).X
    raise DataError(f"unsupported data file {path}: expected builtin:NAME, a .csv, .parquet or .npz file, "
                    "or a folder holding X.npy")


def _read_csv_features(path: Path, n_features: int, label_column, trained_label=None, names=None,
                       header: bool | None = None) -> np.ndarray:
    """A CSV file's features (N, D) float64 for prediction: the columns of the model's
    feature ``names`` when the file has a header and the model has names; else every column,
    or every column but the label column when there is one more than the model's features
    (or ``label_column`` names it).  pyarrow's reader, else the csv module's (which names
    what is wrong in a file pyarrow refuses).  ``header``: whether the first row is one
    (None: header_for_model decides)."""
    if names is not None:
        return _read_csv_named_features(path, names, label_column, header)
    first = _first_csv_row(path)
    if first is not None:
        named = first if header is not False else []  # (the first row's names, when it may have them)
        with_label, column = _prediction_label(len(first), n_features, label_column, trained_label, named, path)
        data = _read_csv_arrow(path, column, np.float64, with_label, header=header)
        if data is not None:
            return data.X
    header, rows = _csv_rows(path, label_column, header)
    width = len(rows[0][1])
    with_label, column = _prediction_label(width, n_features, label_column, trained_label, header or [], path)
    label = _label_index(column, header, width, path) if with_label else None
    return _csv_features(path, header, rows, label)


def _read_csv_named_features(path: Path, names: list[str], label_column, header: bool | None = None) -> np.ndarray:
    """The columns of a model's feature ``names`` (its order) from a CSV file with a header
    (header_for_model says whether the first row is one); without a header, the file must
    have exactly the model's columns, in its order."""
    first, second = _first_csv_rows(path)
    if first is None:
        raise DataError(f"{path} has no rows")
    header = header_for_model(path, names, header)
    if header is None:
        header = _csv_header(first, label_column, path, second) is not None
    if not header:
        if len(first) != len(names):
            raise DataError(f"{path} has no header row and {len(first)} columns; the model expects {len(names)} "
                            f"features, named {', '.join(map(repr, names[:8]))}{', ...' if len(names) > 8 else ''}: "
                            "add the header, and the columns are matched by name")
        columns = list(range(len(names)))
    else:
        columns = feature_columns([c.strip() for c in first], names, path)
    data = _read_csv_arrow(path, None, np.float64, with_label=False, columns=columns, header=header)
    if data is not None:
        return data.X
    header_rows, rows = _csv_rows(path, label_column, header=header)
    return _csv_features(path, header_rows, rows, None, columns)


def header_for_model(source, names: list[str] | None, header: bool | None = None) -> bool | None:
    """Whether a CSV file's first row is a header, for a model whose features are ``names``
    (None: it knows none): ``header`` when given (--header, --no-header); else True when the
    row holds every name (in any order, beside other columns: a label, an id); DataError
    when it cannot be told: the names are numbers (wavelengths, years; not pandas' 0, 1, ...
    for unnamed columns, which say only the order) and so is every cell of the row, but it
    does not hold them all (a header of other names, or a data row?); else None
    (_csv_header decides, as it does for training).  Not a CSV file: ``header``."""
    if header is not None or names is None or file_kind(source) != "csv":
        return header
    first, _ = _first_csv_rows(source)
    cells = [c.strip() for c in first or []]
    if cells and set(names) <= set(cells):
        return True
    numbered = all(_is_number(n) for n in names) and names != [str(i) for i in range(len(names))]
    if cells and numbered and all(_is_number(c) for c in cells):
        shown = ",".join(cells[:4]) + (",..." if len(cells) > 4 else "")
        raise DataError(f"{source}: cannot tell whether the first row ({shown}) is a header: the model's features "
                        f"are named by numbers ({','.join(names[:4])}{',...' if len(names) > 4 else ''}) and the row "
                        "is numbers but not those names; say which with --header or --no-header")
    return None


def evaluation_label(source: str, label_column, trained_label):
    """The label column to score a model on ``source`` by: ``label_column`` when given, else
    the one the model was trained with (``trained_label``) when ``source`` is a CSV or
    Parquet file that has it (a name its first row holds, or an index), else None (the last
    column), as predict chooses the column it leaves out."""
    if label_column is not None or trained_label is None or file_kind(source) not in ("csv", "parquet"):
        return label_column
    if isinstance(trained_label, int):
        return trained_label
    if file_kind(source) == "csv":
        names = _first_csv_row(source) or []
    else:
        try:
            import pyarrow.parquet as pq

            names = pq.ParquetFile(source).schema_arrow.names
        except Exception:  # noqa: BLE001 — an unreadable file (or no pyarrow) is load_dataset's to report
            return None
    return trained_label if trained_label in names else None


def read_columns(source: str, names: list[str], header: bool | None = None) -> dict[str, list[str]]:
    """The columns ``names`` of a CSV file with a header, or of a Parquet file, as text (a
    CSV's cells as written; Parquet values as Python writes them, null empty): for copying
    an id column beside predictions.  DataError naming a column the file lacks.
    ``header``: whether a CSV file's first row is a header (None: _csv_header decides)."""
    kind = file_kind(source)
    if kind not in ("csv", "parquet"):
        raise DataError(f"--keep names columns of a CSV or Parquet file; {source} has no column names")
    path = Path(source)
    header = _column_names(path, header=header)
    if header is None:
        raise DataError(f"--keep names columns by the file's header; {source} has none")
    columns = feature_columns(header, names, source, "named by --keep")
    if kind == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=list(names))
        return {name: ["" if v is None else str(v) for v in table.column(name).to_pylist()] for name in names}
    kept = {name: [] for name in names}
    with _open_csv_text(path) as f:
        rows = (row for row in csv.reader(f, delimiter=csv_dialect(path).delimiter) if any(c.strip() for c in row))
        next(rows)  # (the header)
        for row in rows:
            for name, column in zip(names, columns):
                kept[name].append(row[column])
    return kept
