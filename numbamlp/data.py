"""Data sources, splits and standardisation.

Symbols: N rows, D features.  X (N, D) float, y (N,) labels.

Sources: ``builtin:digits`` (default), ``builtin:iris``, ``builtin:wine``,
``builtin:breast_cancer`` (scikit-learn's bundled copies, no network), ``builtin:spiral``
(the classic 3-class spiral, generated from the seed), and files:

- ``.csv``: header optional; the label column is the last unless named or numbered.  Read
  by pyarrow's streaming CSV reader, block by block into one preallocated array; a file
  pyarrow refuses (or any file, without pyarrow) is read by the csv module, whose messages
  name the row, column and value of a bad cell.
- ``.parquet``: feature columns of numbers (or booleans); the label column as for CSV.
- ``.npz``: arrays ``X``, ``y`` and optionally ``X_test``, ``y_test`` (never unpickled);
  X is streamed out of the archive into the array it ends up in.
- a folder holding ``X.npy`` and ``y.npy`` (optionally ``X_test.npy``, ``y_test.npy``):
  X is memory-mapped, read through the map, never loaded whole.

Labels may be integers or class names (strings); features must be finite numbers.
Every problem is a DataError whose message names the file and, for CSV, the row and column.

Memory (what ``prepare`` costs above the arrays it returns): a reader fills one
preallocated (N, D) array of the training dtype, column by column or block by block;
``split_arrays`` partitions those rows in place into [train | validation | test] (copying
out only the held-out rows) and standardises them in place, chunk by chunk, so the splits
are views of one buffer.  Arrays it was given (or a memory map) are never written: they
are gathered by index into one new buffer instead.
"""

from __future__ import annotations

import concurrent.futures
import csv
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUILTIN_SETS = ("digits", "iris", "wine", "breast_cancer", "spiral", "diabetes")
REGRESSION_SETS = ("diabetes",)  # scikit-learn's bundled copy: float targets, for task regression


class DataNote(UserWarning):
    """What reading or splitting the data did that the user did not ask for (the command
    line prints it as a "note:" line)."""


class DataError(ValueError):
    """Data that cannot be used, with a message meant for the user."""


@dataclass
class Dataset:
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    name: str = ""
    owned: bool = False  # X and X_test are arrays the reader made, which prepare may overwrite
    feature_dtypes: list[str] | None = None  # (D,) what each feature column of the source holds (dtype_kind)


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


def _quiet_overflow(read):
    """A reader whose casts to float32 may overflow: no RuntimeWarning (the value becomes
    infinite, and the finiteness check says so, with the way out), only that one line."""

    @functools.wraps(read)
    def quiet(*args, **kwargs):
        with np.errstate(over="ignore"):
            return read(*args, **kwargs)

    return quiet


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


# Rows per chunk of the chunked passes (conversion, finiteness, statistics, gathers): a
# chunk of float64 temporaries stays near CHUNK_BYTES whatever the width.
CHUNK_BYTES = 1 << 22


def _chunks(n_rows: int, n_columns: int):
    """(lo, hi) row ranges covering n_rows, each about CHUNK_BYTES of float64."""
    step = max(1, CHUNK_BYTES // (8 * max(n_columns, 1)))
    for lo in range(0, n_rows, step):
        yield lo, min(lo + step, n_rows)


def allocate_features(n_rows: int, n_features: int, dtype, source: str) -> np.ndarray:
    """np.empty((n_rows, n_features), dtype), or a DataError saying what to do when that is more
    memory than the machine has available (a MemoryError would come later, or the OOM killer)."""
    need = n_rows * n_features * np.dtype(dtype).itemsize
    available = _available_memory()
    if available is not None and need > available:
        raise DataError(
            f"{source}: {n_rows} rows x {n_features} features need {need / 1e9:.1f} GB as "
            f"{np.dtype(dtype).name} but only {available / 1e9:.1f} GB of memory is available; train on a "
            "sample of the rows, or on a machine with more memory")
    return np.empty((n_rows, n_features), dtype=dtype)


def _available_memory() -> int | None:
    """Bytes the kernel says can be allocated without swapping (Linux MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _read_npz(path: Path, dtype, labels: bool = True) -> Dataset:
    """An .npz archive: X and X_test streamed into arrays of ``dtype``, y and y_test loaded.
    labels False (prediction): X alone is needed and read (y None)."""
    import zipfile

    # numpy reads a file that is not a zip archive as a pickle (and then says so): look first
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a valid .npz archive (not a zip file)")
    try:
        with zipfile.ZipFile(path) as archive, np.load(path, allow_pickle=False) as lazy:
            keys = lazy.files
            for key in ("X", "y") if labels else ("X",):
                if key not in keys:
                    raise DataError(f"{path} has no array {key!r} (found: {', '.join(keys) or 'none'})")
            if labels and ("X_test" in keys) != ("y_test" in keys):
                raise DataError(f"{path} has only one of X_test and y_test")
            arrays = {}
            for key in ("X", "y", "X_test", "y_test") if labels else ("X",):
                if key in keys:
                    streamed = _stream_npy(archive, f"{key}.npy", dtype, str(path)) if key.startswith("X") else None
                    arrays[key] = streamed if streamed is not None else lazy[key]
            file_dtypes = _npz_feature_dtypes(archive, arrays["X"]) if labels else None
    except DataError:
        raise
    except ValueError as err:
        if "pickle" in str(err):
            raise DataError(f"{path} holds object arrays (pickled data), which numbamlp never loads") from None
        raise DataError(f"cannot read {path} as .npz ({_reason(err)})") from None
    except Exception as err:  # a corrupt or truncated archive or member
        raise DataError(f"cannot read {path} as .npz ({_reason(err)})") from None
    return Dataset(arrays["X"], arrays.get("y"), arrays.get("X_test"), arrays.get("y_test"), name=str(path),
                   owned=True, feature_dtypes=file_dtypes)


def _npy_header(f) -> tuple | None:
    """(shape, fortran_order, dtype) of the .npy file ``f`` opens at its start, ``f`` then
    at its data; None for a format version numpy's readers here do not know."""
    from numpy.lib import format as npy

    version = npy.read_magic(f)
    readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    return readers[version](f) if version in readers else None


def _npz_feature_dtypes(archive, X: np.ndarray) -> list[str] | None:
    """The dtype of each column of an archive's X.npy as the file holds it (X, the array
    read from it, may be of the training dtype)."""
    with archive.open("X.npy") as f:
        header = _npy_header(f)
    if header is None or len(header[0]) != 2:
        return array_dtypes(X)
    return [header[2].name] * header[0][1]


def _stream_npy(archive, member: str, dtype, source: str) -> np.ndarray | None:
    """A 2-D numeric .npy member of a zip archive read in chunks into a new (N, D) array of
    ``dtype`` (never a whole copy in the file's dtype); None for anything else (the caller
    loads it as numpy would, and check_arrays says what is wrong with it)."""
    with archive.open(member) as f:
        header = _npy_header(f)
        if header is None:
            return None
        shape, fortran_order, file_dtype = header
        if len(shape) != 2 or 0 in shape or file_dtype.kind not in "biuf" or file_dtype.hasobject:
            return None
        n, d = shape
        X = allocate_features(n, d, dtype, source)
        if fortran_order:  # column after column
            for j in range(d):
                X[:, j] = _read_exactly(f, n, file_dtype, member)
        else:
            for lo, hi in _chunks(n, d):
                X[lo:hi] = _read_exactly(f, (hi - lo) * d, file_dtype, member).reshape(hi - lo, d)
    return X


def _read_exactly(f, count: int, dtype, member: str) -> np.ndarray:
    data = f.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise ValueError(f"{member} is truncated")
    return np.frombuffer(data, dtype=dtype)


NPY_FOLDER_FILES = ("X.npy", "y.npy", "X_test.npy", "y_test.npy")


def _read_npy_folder(path: Path, task: str = "classification", labels: bool = True) -> Dataset:
    """A folder holding X.npy and y.npy (optionally X_test.npy and y_test.npy): the X arrays
    memory-mapped read-only (their pages are read as they are used), the labels loaded.
    labels False (prediction): X.npy alone is needed and mapped (y None, X unchecked)."""
    present = {name[:-4]: path / name for name in NPY_FOLDER_FILES if (path / name).exists()}
    if not labels:
        present = {"X": present["X"]} if "X" in present else {}
    for key in ("X", "y") if labels else ("X",):
        if key not in present:
            raise DataError(f"{path} holds no {key}.npy (found: {', '.join(sorted(p.name for p in path.glob('*.npy'))) or 'no .npy files'})")
    if ("X_test" in present) != ("y_test" in present):
        raise DataError(f"{path} holds only one of X_test.npy and y_test.npy")
    arrays = {}
    for key, file in present.items():
        try:
            arrays[key] = np.load(file, mmap_mode="r" if key.startswith("X") else None, allow_pickle=False)
        except ValueError as err:
            if "pickle" in str(err):
                raise DataError(f"{file} holds object arrays (pickled data), which numbamlp never loads") from None
            raise DataError(f"cannot read {file} as .npy ({_reason(err)}; a file shorter than its header "
                            "says is truncated)") from None
        except OSError as err:  # e.g. mmap failing for lack of address space
            raise DataError(f"cannot map {file} into memory ({_reason(err)}); check `ulimit -v`, or "
                            "convert it to a smaller dtype (float32)") from None
    for X_key, y_key in (("X", "y"), ("X_test", "y_test")):
        if X_key in arrays and y_key in arrays and np.ndim(arrays[X_key]) >= 1 and np.ndim(arrays[y_key]) >= 1 \
                and len(arrays[X_key]) != len(arrays[y_key]):
            raise DataError(f"{path}: {X_key}.npy has {len(arrays[X_key])} rows but {y_key}.npy has "
                            f"{len(arrays[y_key])} labels")
    data = Dataset(arrays["X"], arrays.get("y"), arrays.get("X_test"), arrays.get("y_test"), name=str(path),
                   feature_dtypes=array_dtypes(arrays["X"]))
    if not labels:
        return data
    data.X, data.y = check_arrays(data.X, data.y, str(path), None, task)
    if data.X_test is not None:
        data.X_test, data.y_test = check_arrays(data.X_test, data.y_test, f"{path} (X_test, y_test)", None, task)
    return data


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- a CSV file's dialect
TABLE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".npz": "npz"}
COMPRESSED = (".gz", ".bz2", ".zst")  # what pyarrow decompresses by a file's name (.csv.gz, .tsv.zst, ...)
DELIMITERS = (",", ";", "\t", "|")
_DECIMAL_COMMA = re.compile(r"-?\d+,\d+")


def file_kind(path) -> str:
    """"csv" (.csv, .tsv, either compressed), "parquet", "npz", or the file's suffix."""
    suffix = _table_suffix(path)
    return TABLE_SUFFIXES.get(suffix, suffix)


def _table_suffix(path) -> str:
    """A file's suffix under its compression's (.csv for x.csv.gz; .gz for x.gz)."""
    suffixes = Path(path).suffixes
    if len(suffixes) > 1 and suffixes[-1] in COMPRESSED:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _open_csv_text(path: Path):
    """A CSV file as text (UTF-8, a BOM skipped), decompressed when its name says so."""
    if Path(path).suffix in COMPRESSED:
        import io

        import pyarrow as pa

        return io.TextIOWrapper(pa.input_stream(str(path), compression="detect"), encoding="utf-8-sig", newline="")
    return open(path, newline="", encoding="utf-8-sig")


@dataclass(frozen=True)
class CsvDialect:
    delimiter: str = ","
    decimal: str = "."  # "," where the delimiter is ";" and numbers are written 1,5


def csv_dialect(path: Path) -> CsvDialect:
    """A CSV file's delimiter (a .tsv's is a tab) and decimal mark, from its first lines: the
    delimiter that splits them into the same number of cells, more than one, most often
    (',' on a tie); decimal commas where ';' separates and cells look like 1,5."""
    path = Path(path)
    key = (str(path), *_stamp(path))
    if key not in _DIALECTS:
        if len(_DIALECTS) > 64:  # (a few files a process: this only bounds it)
            _DIALECTS.clear()
        _DIALECTS[key] = _sniff_dialect(path)
    return _DIALECTS[key]


_DIALECTS: dict[tuple, CsvDialect] = {}


def _stamp(path: Path) -> tuple:
    try:
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns
    except OSError:
        return (None, None)


def _sniff_dialect(path: Path) -> CsvDialect:
    if _table_suffix(path) == ".tsv":
        return CsvDialect("\t")
    try:
        with _open_csv_text(path) as f:
            lines = [line for line in (f.readline() for _ in range(50)) if line.strip()][:20]
    except (OSError, UnicodeDecodeError, ValueError):
        return CsvDialect()
    best, best_width = ",", 1
    for delimiter in DELIMITERS:
        try:
            widths = {len(row) for row in csv.reader(lines, delimiter=delimiter)}
        except csv.Error:
            continue
        if len(widths) == 1 and (width := widths.pop()) > best_width:
            best, best_width = delimiter, width
    if best == ";":
        cells = [cell.strip() for row in csv.reader(lines[1:], delimiter=";") for cell in row]
        if any(_DECIMAL_COMMA.fullmatch(cell) for cell in cells):
            return CsvDialect(";", ",")
    return CsvDialect(best)


def _csv_rows(path: Path, label_column, header: bool | None = None):
    """(header or None, [(line number, cells)]) of a CSV file, blank lines skipped.

    The first row is a header when ``header`` says so, or (None) when _csv_header finds it one.
    """
    dialect = csv_dialect(path)
    try:
        with _open_csv_text(path) as f:
            rows = [(n, row) for n, row in enumerate(csv.reader(f, delimiter=dialect.delimiter), start=1)
                    if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as err:
        raise DataError(f"cannot read {path} as CSV ({_reason(err)})") from None
    if not rows:
        raise DataError(f"{path} has no rows")
    width = len(rows[0][1])
    header = _header_of(rows[0][1], rows[1][1] if len(rows) > 1 else None, header, label_column, path)
    if header is not None:
        rows = rows[1:]
    if not rows:
        raise DataError(f"{path} has a header but no data rows")
    for line, row in rows:
        if len(row) != width:
            raise DataError(f"{path}: row {line} has {len(row)} columns, expected {width}")
    return header, rows


def _header_of(first_row: list[str], second_row, header: bool | None, label_column, path) -> list[str] | None:
    """The header a CSV file's first row is: as ``header`` says (True, False), or as
    _csv_header finds (None)."""
    if header is None:
        return _csv_header(first_row, label_column, path, second_row)
    return [c.strip() for c in first_row] if header else None


def _csv_header(first_row: list[str], label_column, path, second_row: list[str] | None = None) -> list[str] | None:
    """The first row's cells (stripped) when it is a header: when it is 0, 1, ..., W-1 (what
    pandas writes for unnamed columns: read as data, it shifted every prediction by a row),
    when it holds a non-number outside the label column, or (numbers for names: years,
    wavelengths) its label cell is text where the second row's is a number; else None."""
    if [c.strip() for c in first_row] == [str(i) for i in range(len(first_row))]:
        return [c.strip() for c in first_row]  # (pandas' to_csv of unnamed columns: 0, 1, ..., W-1)
    if all(_is_number(c) for c in first_row):
        return None
    named = isinstance(label_column, str) and not label_column.lstrip("-").isdigit()  # ("0" from a flag: an index)
    label_guess = None if named else _label_index(label_column, None, len(first_row), path)
    if all(_is_number(c) for i, c in enumerate(first_row) if i != label_guess):
        numbers_below = (label_guess is not None and second_row is not None and len(second_row) == len(first_row)
                         and _is_number(second_row[label_guess]))
        if not numbers_below:  # (a class name in the label column, as every row may have)
            return None
    return [c.strip() for c in first_row]


def _csv_features(path: Path, header, rows, label: int | None, columns: list[int] | None = None) -> np.ndarray:
    """The numeric cells of every column but ``label`` (or of ``columns``, in that order),
    (rows, features) float64."""
    width = len(rows[0][1])
    names = header or [str(i + 1) for i in range(width)]
    columns = [i for i in range(width) if i != label] if columns is None else columns
    comma = csv_dialect(path).decimal == ","
    X = allocate_features(len(rows), len(columns), np.float64, str(path))
    for r, (line, row) in enumerate(rows):
        for k, column in enumerate(columns):
            try:
                X[r, k] = float(row[column].replace(",", ".") if comma else row[column])
            except ValueError:
                raise DataError(f"{path}: row {line}, column {column + 1} ({names[column]!r}): "
                                f"{_not_a_number(row[column])}") from None
    return X


MISSING_CELLS = {"", "na", "n/a", "nan", "null", "none", "-", "?"}
FILL_OR_DROP = ("fill the missing cells (with the column's median, say) or drop those rows or the column before "
                "training")


def _not_a_number(cell: str) -> str:
    """What to do about a feature cell that is not a number: a missing value, or text."""
    if cell.strip().lower() in MISSING_CELLS:
        return f"{cell!r} is a missing value; numbamlp needs every feature cell to be a number: {FILL_OR_DROP}"
    return (f"{cell!r} is text, so the column looks categorical; numbamlp reads numeric features only: drop the "
            "column or encode it as numbers (one column per category) before training; if it is the label column, "
            "name it with --label-column")


def _read_csv(path: Path, label_column, dtype, task: str = "classification", header: bool | None = None) -> Dataset:
    """A CSV file: pyarrow's streaming reader when it is installed and takes the file, else
    the csv module, which also names the row, column and value of whatever pyarrow refused.
    ``header``: whether the first row is one (None: _csv_header decides)."""
    numbers = "floats" if task == "regression" else "integers"
    data = _read_csv_arrow(path, label_column, dtype, numbers=numbers, header=header)
    if data is None:
        data = _read_csv_python(path, label_column, numbers, header)
        data.X = data.X.astype(dtype, copy=False)
    data.feature_dtypes = _number_dtypes(data.X)
    if task == "regression":  # (a regressor's targets are non-integral numbers)
        _check_target_column(data.y, path, data.header, data.label, bool(data.header))
    elif label_column is None:  # (a named label column is what the user says it is)
        _check_label_column(data.y, path, data.header, data.label, data.width)
    return data


def _read_csv_python(path: Path, label_column, numbers: str = "integers", header: bool | None = None) -> Dataset:
    """The csv module's reading, row by row into Python lists (X float64): slow, but the
    one whose errors are the file's own rows, columns and values.  ``numbers``: how label
    text becomes numbers (_labels_from_text); ``header``: as _csv_rows's."""
    header, rows = _csv_rows(path, label_column, header)
    width = len(rows[0][1])
    if width < 2:
        raise DataError(f"{path} needs at least one feature column and a label column")
    label = _label_index(label_column, header, width, path)
    X = _csv_features(path, header, rows, label)
    classes, indices = np.unique(np.asarray([row[label].strip() for _, row in rows], dtype=str), return_inverse=True)
    y = _labels_from_text(classes.tolist(), indices, str(path), numbers)
    return _CsvData(X, y, name=str(path), owned=True, header=header, label=label, width=width)


@dataclass
class _CsvData(Dataset):
    """A Dataset read from CSV, with the layout the label check names."""

    header: list[str] | None = None
    label: int = 0
    width: int = 0


def _check_label_column(y, path, header, label: int, width: int) -> None:
    """A classifier's label column (CSV or Parquet) that holds non-integral numbers is most
    likely a feature (a file without labels, or another label column): say so, by name."""
    if y.dtype.kind == "f" and np.isfinite(y).all() and not np.array_equal(y, np.round(y)):
        name = f"{header[label]!r}" if header else f"{label + 1} of {width}"
        raise DataError(
            f"{path}: the label column (column {name}{', the last' if label == width - 1 else ''}) holds "
            "non-integral numbers, so it looks like a feature; choose the label column with "
            "--label-column NAME|INDEX (0-based)"
        )


def _check_target_column(y, path, names, label: int, header_rows: int) -> None:
    """A regressor's target column read as text holds a cell that is not a number: name it
    by row (1-based, after ``header_rows`` rows of header), column and value, as a bad
    feature cell is."""
    if y.dtype.kind in "biuf":
        return
    row = next((i for i, value in enumerate(y.tolist()) if not _is_number(str(value))), None)
    name = f" ({names[label]!r})" if names else ""
    if row is None:  # (a Parquet column of numbers stored as text)
        raise DataError(f"{path}: the target column {label + 1}{name} holds numbers as text; store them as numbers")
    raise DataError(f"{path}: row {row + 1 + header_rows}, column {label + 1}{name}: {str(y[row])!r} is not a number "
                    "(a regressor's targets must be numbers)")


def _read_csv_arrow(path: Path, label_column, dtype, with_label: bool = True,
                    numbers: str = "integers", columns: list[int] | None = None,
                    header: bool | None = None) -> _CsvData | None:
    """pyarrow's streaming CSV reader, block by block into one preallocated (N, D) array of
    ``dtype`` (features parsed as float64, as Python's float() parses them, then cast); None
    when pyarrow is missing or refuses the file (a bad cell, a ragged row, a blank-looking
    row, a leading blank line): the csv module then reads it and says what is wrong.
    with_label False: every column is a feature (y None), as in a file to predict on; or
    only ``columns``, in that order (the others are not parsed); ``header``: whether the
    first row is one (None: _csv_header decides)."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pa_csv
    except ImportError:
        return None
    dialect = csv_dialect(path)
    try:
        with _open_csv_text(path) as f:
            reader = csv.reader(f, delimiter=dialect.delimiter)
            first, blank = next(reader, None), 0
            while first == []:  # leading empty lines (which pyarrow's skip_rows counts)
                first, blank = next(reader, None), blank + 1
            second = next(reader, None)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError):
        return None
    if first is None or len(first) < 1 + with_label:
        return None
    header = _header_of(first, second, header, label_column, path)
    if header is None and not all(c.strip() for c in first):  # (a data row with an empty cell: the csv module names it)
        return None
    width = len(first)
    label = _label_index(label_column, header, width, path) if with_label else None
    features = [j for j in range(width) if j != label] if columns is None else columns
    names = [f"c{j}" for j in range(width)]
    types = {names[j]: pa.float64() for j in features} | ({} if label is None else {names[label]: pa.string()})
    read_options = pa_csv.ReadOptions(column_names=names, skip_rows=blank + (1 if header else 0),
                                      block_size=CSV_BLOCK_BYTES, use_threads=False)
    parse_options = pa_csv.ParseOptions(delimiter=dialect.delimiter)
    convert_options = pa_csv.ConvertOptions(column_types=types, null_values=[], strings_can_be_null=False,
                                            quoted_strings_can_be_null=False, decimal_point=dialect.decimal,
                                            include_columns=[names[j] for j in (*features, *([label] if label is not None else []))])
    X, labels, n = None, [], 0
    try:
        for batch in pa_csv.open_csv(path, read_options, parse_options=parse_options, convert_options=convert_options):
            m = batch.num_rows
            if X is None:  # sized from the first block's rows per byte, with room to spare
                X = allocate_features(_estimated_rows(path, m), len(features), dtype, str(path))
            elif n + m > len(X):  # (rows longer than the first block's: grow, a copy)
                X = _grown(X, n, n + m + len(X) // 4, str(path))
            for k, j in enumerate(features):
                X[n : n + m, k] = batch.column(names[j]).to_numpy()  # (by name: include_columns reorders)
            if label is not None:
                labels.append(batch.column(names[label]))
            n += m
    except DataError:
        raise
    except (pa.ArrowException, OSError, ValueError):
        return None
    if n == 0:
        return None
    y = None if label is None else _arrow_labels(pa.chunked_array(labels, type=pa.string()), str(path),
                                                 text_numbers=numbers)
    return _CsvData(X[:n], y, name=str(path), owned=True, header=header, label=label, width=width)


# pyarrow's streaming CSV reader, one thread, 1 MB blocks: measured faster here than 4 and
# 16 MB blocks or its threads, and its buffers stay ~30 MB (bench/README.md, bench/data.py).
CSV_BLOCK_BYTES = 1 << 20


def _estimated_rows(path: Path, first_rows: int) -> int:
    """Rows of a CSV file, from its size and the rows of its first block, 10 % over: X's pages
    beyond the rows read are never touched, so they cost address space, not memory."""
    blocks = path.stat().st_size / CSV_BLOCK_BYTES
    return int(first_rows * max(blocks, 1.0) * 1.1) + first_rows


def _grown(X: np.ndarray, used: int, rows: int, source: str) -> np.ndarray:
    """A bigger (rows, D) array holding X's first ``used`` rows."""
    bigger = allocate_features(rows, X.shape[1], X.dtype, source)
    bigger[:used] = X[:used]
    return bigger


def _arrow_labels(column, source: str, text_numbers: str | None) -> np.ndarray:
    """Labels (N,) from an arrow column: numbers (or booleans) as numpy numbers, text as
    class names (stripped), without a Python object per row.  ``text_numbers``: how text
    becomes numbers (a CSV's cells are all text; _labels_from_text), None: it does not."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        first = pc.index(pc.is_null(column), True).as_py()
        raise DataError(f"{source}: the label column has {column.null_count} missing labels (first in data row "
                        f"{first}, counting from 0)")
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column.to_numpy()
    column = pc.utf8_trim_whitespace(column)
    if text_numbers == "floats":  # (a regressor's targets: cast at C speed)
        try:
            return pc.cast(column, pa.float64()).to_numpy()
        except pa.ArrowInvalid:
            pass
    classes = pc.unique(column)
    indices = pc.index_in(column, value_set=classes).to_numpy()
    return _labels_from_text(classes.to_pylist(), indices, source, text_numbers)


_CANONICAL_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _labels_from_text(classes: list[str], indices: np.ndarray, source: str, numbers: str | None) -> np.ndarray:
    """Labels (N,) = classes[indices], from a label column's distinct texts: "floats" (a
    regressor's targets): numbers when every text is one; "integers" (a classifier's): int64
    when every text is an integer as Python writes it (0, 7, -3), so that no two names become
    one number ("01" and "1", or IDs past float64's 2**53) and none is rewritten ("001");
    other numbers (0.5, 1.0) as floats when no two become one; otherwise, and for None,
    the texts as written.  An empty cell is refused (it would be a
    class of its own)."""
    if "" in classes:
        first = int(np.argmax(indices == classes.index("")))
        raise DataError(f"{source}: the label column has an empty cell (first in data row {first}, counting from 0)")
    if numbers == "floats" and all(_is_number(text) for text in classes):
        return np.asarray([float(text) for text in classes])[indices]
    if numbers == "integers":
        if all(_CANONICAL_INTEGER.fullmatch(text) and abs(int(text)) < 2**63 for text in classes):
            return np.asarray([int(text) for text in classes], dtype=np.int64)[indices]
        # other numbers (0.5, 1.0) as floats, so that a feature taken for labels is said to be one
        # (_check_label_column), unless that would merge or rewrite names (01 and 1, 007)
        if all(_is_number(text) and (_CANONICAL_INTEGER.fullmatch(text) or not _INTEGER.fullmatch(text))
               for text in classes):
            values = [float(text) for text in classes]
            if len(set(values)) == len(values):
                return np.asarray(values)[indices]
    return np.asarray(classes, dtype=str)[indices]


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
            raise DataError(f"{path}: feature column {name!r} has a missing value in data row {at}, counting from 0; "
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
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
                or pa.types.is_decimal(kind)):
            raise DataError(f"{path}: feature column {names[j]!r} holds {kind}, not numbers; numbamlp reads numeric "
                            "features only: drop the column or encode it as numbers before training; if it is the "
                            "label column, name it with --label-column")
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


@_quiet_overflow
def read_features(source: str, n_features: int, label_column=None, seed: int = 0,
                  task: str = "classification", trained_label=None, names: list[str] | None = None,
                  header: bool | None = None, dtypes: list[str] | None = None) -> np.ndarray:
    """Features (N, n_features) for prediction.

    builtin and .npz: the X array.  CSV and Parquet with a model that knows its features'
    ``names``: the columns of those names, in the model's order, whatever else the file
    holds and in whatever order (a name it lacks: refused); a CSV without a header must then
    have exactly the model's columns.  Otherwise every column, or every column but the
    label column when the file has n_features + 1 columns (``label_column``, else the one
    the model was trained with, ``trained_label``, when the file has it, else the last).
    ``header``: whether a CSV file's first row is a header (None: header_for_model decides);
    ``dtypes``: the model's features' dtypes, which a Parquet file's columns must be of the
    kind of (check_feature_dtypes; None: any numbers).
    """
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


def _first_csv_row(path) -> list[str] | None:
    """The cells of a CSV file's first row that is not blank; None when there is none, or the
    file cannot be read as CSV (the reader that follows says why)."""
    return _first_csv_rows(path)[0]


def _first_csv_rows(path) -> tuple[list[str] | None, list[str] | None]:
    """The cells of a CSV file's first two rows that are not blank (None for each it lacks,
    or when the file cannot be read as CSV: the reader that follows says why)."""
    try:
        with _open_csv_text(path) as f:
            rows = (row for row in csv.reader(f, delimiter=csv_dialect(path).delimiter) if any(c.strip() for c in row))
            first = next(rows, None)
            return first, next(rows, None)
    except (OSError, UnicodeDecodeError, csv.Error, ValueError):
        return None, None


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


def _prediction_label(width: int, n_features: int, label_column, trained_label, first_row,
                      path) -> tuple[bool, object]:
    """(whether a file of ``width`` columns given for prediction holds a label column, the
    column for _label_index): the one ``label_column`` names; else, when the file has one
    column more than the model's features, the one the model was trained with
    (``trained_label``: a name that ``first_row``, the header, holds, or an index); nothing
    else tells which it is, so without those such a file is refused.  A file as wide as the
    model's features whose header names the trained label column lacks a feature: refused,
    not read with the labels as one."""
    if label_column is not None:
        return True, label_column
    named = isinstance(trained_label, str) and trained_label in first_row
    if width == n_features and named:
        raise DataError(f"{path}: column {trained_label!r} is the label column the model was trained with, which "
                        f"leaves {width - 1} feature columns; the model expects {n_features}")
    if width != n_features + 1:
        return False, None
    if named or isinstance(trained_label, int):
        return True, trained_label
    # one column too many and nothing to say which (the model knows no names, the file was
    # trained with the default, last, label column): taking the last would guess, silently
    raise DataError(f"{path} has {width} columns, one more than the model's {n_features} features, and nothing says "
                    "which one is not a feature: name it with --label-column NAME|INDEX (the last: -1)")


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


def feature_columns(names: list[str], wanted: list[str], source, why: str | None = None) -> list[int]:
    """The indices of a file's columns (``names``) named ``wanted`` (a model's features, by
    default), in that order; DataError naming those it lacks, and ``why`` they are wanted."""
    missing = [name for name in wanted if name not in names]
    if missing:
        shown = ", ".join(map(repr, missing[:8])) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        why = why or (f"which the model was trained with ({len(wanted)} features: "
                      f"{', '.join(map(repr, wanted[:8]))}{', ...' if len(wanted) > 8 else ''})")
        raise DataError(f"{source} has no column {shown}, {why}")
    return [names.index(name) for name in wanted]


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


def check_feature_count(X, n_features: int, source: str) -> None:
    """DataError unless X (N, D) has the model's ``n_features`` columns."""
    if X.shape[1] != n_features:
        raise DataError(f"{source} has {X.shape[1]} features but the model expects {n_features}")


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


def _number_dtypes(X) -> list[str]:
    """The kind of each column of X (N, D) read from text (a CSV file's), as a dtype's name:
    "int64" where every value is a whole number in int64's range, else "float64"."""
    whole = np.ones(X.shape[1], dtype=bool)
    for lo, hi in _chunks(X.shape[0], X.shape[1]):
        chunk = X[lo:hi]
        whole &= ((chunk == np.round(chunk)) & (np.abs(chunk) < 2.0**63)).all(axis=0)
    return ["int64" if w else "float64" for w in whole]


def _arrow_dtype_name(kind) -> str:
    """numpy's name for an arrow type of numbers or booleans (int64, float32, bool), arrow's
    own for the others (decimal128(10, 2), string, timestamp[ms])."""
    import pyarrow as pa

    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        return np.dtype(kind.to_pandas_dtype()).name
    return str(kind)


def _label_index(label_column, header, width: int, path) -> int:
    if label_column is None:
        return width - 1
    if isinstance(label_column, int) or str(label_column).lstrip("-").isdigit():
        index = int(label_column)
        if not -width <= index < width:
            raise DataError(f"{path}: label column {index} is out of range for {width} columns")
        return index % width
    if header is None:
        raise DataError(f"{path}: no column named {label_column!r}: the file has no header row (name the column by "
                        "its 0-based index)")
    if label_column not in header:
        shown = ", ".join(map(repr, header[:12])) + (", ..." if len(header) > 12 else "")
        raise DataError(f"{path}: no column named {label_column!r}; its columns are {shown}")
    return header.index(label_column)


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


def all_finite(X: np.ndarray) -> bool:
    """np.isfinite(X).all() for X (N, D), chunk by chunk (_chunks): its boolean temporary
    stays a chunk's, whatever X's size."""
    return all(np.isfinite(X[lo:hi]).all() for lo, hi in _chunks(X.shape[0], X.shape[1]))


def check_finite(X, source: str) -> None:
    """DataError unless every value of X (N, D) is finite; checked in row chunks."""
    if X.dtype.kind not in "fc":
        return
    count = _NonFinite(source)
    for lo, hi in _chunks(X.shape[0], X.shape[1]):
        count.add(X[lo:hi], np.arange(lo, hi))
    count.raise_if_any()


class _NonFinite:
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


@dataclass
class Standardizer:
    """x ↦ (x − mean) / scale, statistics fitted on training rows only (scale 1 for constant features).

    mean, scale: (D,) float64.  Statistics are accumulated in float64 over row chunks, so an
    X (N, D) of float32 is never copied whole.
    """

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X) -> "Standardizer":
        X = np.asarray(X)
        n, d = X.shape
        total = np.zeros(d)
        low, high = np.full(d, np.inf), np.full(d, -np.inf)
        for lo, hi in _chunks(n, d):
            chunk = X[lo:hi]
            total += chunk.sum(axis=0, dtype=np.float64)
            low, high = np.minimum(low, chunk.min(axis=0)), np.maximum(high, chunk.max(axis=0))
        mean = total / n
        squares = np.zeros(d)
        for lo, hi in _chunks(n, d):
            centred = X[lo:hi] - mean  # (rows, D) float64
            squares += np.einsum("ij,ij->j", centred, centred)
        scale = np.sqrt(squares / n)
        scale[(low == high) | (scale == 0)] = 1.0
        return cls(mean, scale)

    def transform(self, X) -> np.ndarray:
        """A new float64 array (N, D) of standardised rows."""
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.scale

    def inplace_transform(self, X: np.ndarray) -> None:
        """Standardise X (N, D) in place, row chunk by row chunk (computed in float64, stored
        in X's dtype: the same values as ``transform(X).astype(X.dtype)``)."""
        for lo, hi in _chunks(X.shape[0], X.shape[1]):
            X[lo:hi] = (X[lo:hi] - self.mean) / self.scale


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

    def attach_to(self, model) -> None:
        """Give a model trained on these splits what prediction needs from the data: the
        standardisation, and the names and dtypes of its features."""
        model.input_transform = self.standardizer
        model.feature_names = self.feature_names
        model.feature_dtypes = self.feature_dtypes


def prepare(data_config, seed: int, dtype=np.float64, task: str = "classification", task_given: bool = True) -> Splits:
    """Load ``data_config.train`` (and ``.test``, ``.val``), split and standardise as configured.

    Without a separate test set, a stratified ``test_fraction`` of the rows is held out;
    without a validation file, the validation split (``val_fraction``) comes out of the
    training rows; both are drawn with ``data_config.seed`` (the run's ``seed`` when unset);
    standardisation statistics are fitted on the training rows only.  Test and validation
    data are checked against the training data here, before any training: the same feature
    count, and no label that training never sees.  The splits' features are of ``dtype``
    (the training dtype): for float32, what the files hold costs at most about 2x its
    float32 size at the peak of reading (see the module docstring).  ``task_given`` False
    (the task is the default's): labels that look like a regression target are refused
    (check_classes_are_classes).
    """
    seed = data_seed(data_config, seed)
    sources = (data_config.train, data_config.test, data_config.val)
    check_label_column_applies(data_config.label_column, *sources)
    check_header_applies(data_config.header, *sources)
    read = dict(label_column=data_config.label_column, dtype=dtype, task=task, header=data_config.header)
    data = load_dataset(data_config.train, seed, **read)
    if task == "classification" and not task_given:
        check_classes_are_classes(data.y, data_config.train)
    test = val = None
    if data_config.test is not None:
        loaded = load_dataset(data_config.test, seed, **read)
        test = (loaded.X, loaded.y, data_config.test)
    elif data.X_test is not None and data.y_test is not None:
        test = (data.X_test, data.y_test, f"{data_config.train} (X_test, y_test)")
    if data_config.val is not None:
        loaded = load_dataset(data_config.val, seed, **read)
        val = (loaded.X, loaded.y, data_config.val)
    dtypes = data.feature_dtypes  # (before split_arrays, which may standardise data.X in place)
    splits = split_arrays(data.X, data.y, data_config, seed, test=test, val=val, dtype=dtype,
                          overwrite=data.owned, task=task)
    splits.feature_names = feature_names(data_config.train, data_config.label_column, data_config.header)
    splits.feature_dtypes = dtypes
    return splits


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


def data_seed(data_config, seed: int) -> int:
    """The seed of the data's splits: ``data.seed``, else the run's."""
    return seed if data_config.seed is None else data_config.seed


def data_files(data_config) -> dict[str, list[int]]:
    """{file: [bytes, modification time in ns]} of the data files a config names (train, val,
    test; a folder's .npy files), so that a run can tell later whether they changed; builtin:
    and dataset: sources name no file."""
    from numbamlp.config import names_a_file

    stamps = {}
    for source in (data_config.train, data_config.val, data_config.test):
        if not names_a_file(source):
            continue
        path = Path(source)
        for file in sorted(path.glob("*.npy")) if path.is_dir() else [path]:
            if file.is_file():
                stat = file.stat()
                stamps[os.path.abspath(file)] = [stat.st_size, stat.st_mtime_ns]  # (as config.json names it)
    return stamps


def changed_data_file(recorded: dict, current: dict) -> str | None:
    """The first file (by name) whose data_files entry differs between ``recorded`` and
    ``current`` (or is in one only); None when they agree."""
    return next((f for f in sorted(set(recorded) | set(current)) if recorded.get(f) != current.get(f)), None)


def prepare_for(config, data_config=None) -> Splits:
    """The splits a TrainConfig trains on: ``prepare`` with its data settings (or
    ``data_config``), seed, dtype and task — X is read straight into the training dtype."""
    return prepare(config.data if data_config is None else data_config, config.seed, dtype=config.dtype,
                   task=config.task, task_given="task" in config.model_fields_set)


@_quiet_overflow
def split_arrays(X, y, data_config, seed: int, test=None, val=None, source: str | None = None,
                 dtype=np.float64, overwrite: bool = False, task: str = "classification") -> Splits:
    """``prepare``'s splits and standardisation of arrays already loaded: ``test`` and ``val``
    are None or (X, y, where they came from); ``seed`` draws the held-out rows.

    The rows are split by index and laid out as [train | validation | test] in one (N, D)
    buffer of ``dtype``: X itself when ``overwrite`` (X is then reordered and standardised in
    place; only the held-out rows are copied out meanwhile), else a new buffer gathered from
    X by index chunk by chunk (X, which may be a memory map, is only read).  The splits are
    views of that buffer; given test and validation arrays are standardised in place when
    ``overwrite``, else copied.  Held-out rows are drawn stratified by class, or, for task
    "regression", by a plain seeded shuffle (holdout_split).
    """
    source = source or data_config.train
    y = np.asarray(y)
    regression = task == "regression"
    if not regression and len(np.unique(y)) < 2:
        raise DataError(f"{source}: y has a single class; classification needs at least 2")
    rows = np.arange(len(y))
    if test is None:
        rows, test_rows, _, _ = holdout_split(rows, y, data_config.test_fraction, seed, task)
    else:
        X_test, y_test, test_source = test
    val_rows = None
    if val is not None:
        X_val, y_val, val_source = val
        check_like_training(X_val, y_val, X, y[rows], val_source, source, regression)
    elif data_config.val_fraction > 0:
        rows, val_rows, _, _ = holdout_split(rows, y[rows], data_config.val_fraction, seed, task)
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
    for lo, hi in _chunks(len(rows), X.shape[1]):
        if rows[lo] != lo or rows[hi - 1] != hi - 1:  # (rows already in place stay)
            X[lo:hi] = X[rows[lo:hi]]


def _gather_rows(X, parts: list[np.ndarray], dtype, source: str) -> np.ndarray:
    """A new (Σ len(part), D) array of ``dtype``: the rows of each part in turn, gathered
    from X (which is only read; a memory map is read through the map, once) chunk by chunk,
    each chunk checked for NaN and infinite values as it arrives."""
    out = allocate_features(sum(len(part) for part in parts), X.shape[1], dtype, source)
    non_finite = _NonFinite(source)
    lo = 0
    for part in parts:
        for a, b in _chunks(len(part), X.shape[1]):
            out[lo + a : lo + b] = X[part[a:b]]
            non_finite.add(out[lo + a : lo + b], part[a:b])
        lo += len(part)
    non_finite.raise_if_any()
    return out


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
