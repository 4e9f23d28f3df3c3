"""CSV files (.csv, .tsv, either maybe compressed): the dialect (delimiter, decimal mark)
sniffed from the first lines, whether the first row is a header, and the reading —
pyarrow's streaming reader, block by block into one preallocated (N, D) array; a file
pyarrow refuses (or any file, without pyarrow) by the csv module, whose messages name the
row, column and value of a bad cell.

Symbols: N rows, D features, W columns.  X (N, D), y (N,).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numbamlp.arrays import DataError, row_chunks
from numbamlp.data.columns import (FILL_OR_DROP, _arrow_labels, _check_label_column, _check_target_column,
                                   _is_number, _label_index, _labels_from_text)
from numbamlp.data.dataset import Dataset, NotNumbers, _reason
from numbamlp.data.formats import COMPRESSED, _table_suffix
from numbamlp.data.memory import _grown, allocate_features
from numbamlp.encoding import MISSING_CELLS

DELIMITERS = (",", ";", "\t", "|")
_DECIMAL_COMMA = re.compile(r"-?\d+,\d+")


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
                raise NotNumbers(f"{path}: row {line}, column {column + 1} ({names[column]!r}): "
                                f"{_not_a_number(row[column])}") from None
    return X




def _not_a_number(cell: str) -> str:
    """What to do about a feature cell that is not a number: a missing value, or text."""
    if cell.strip().lower() in MISSING_CELLS:
        return f"{cell!r} is a missing value; numbamlp needs every feature cell to be a number: {FILL_OR_DROP}"
    return (f"{cell!r} is text, so the column looks categorical, where numbers are read (a model trained on "
            "numbers takes numbers): drop the column, or train on the table as it is (its text columns become "
            "categories); if it is the label column, name it with --label-column")


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


def _number_dtypes(X) -> list[str]:
    """The kind of each column of X (N, D) read from text (a CSV file's), as a dtype's name:
    "int64" where every value is a whole number in int64's range, else "float64"."""
    whole = np.ones(X.shape[1], dtype=bool)
    for lo, hi in row_chunks(X.shape[0], X.shape[1]):
        chunk = X[lo:hi]
        whole &= ((chunk == np.round(chunk)) & (np.abs(chunk) < 2.0**63)).all(axis=0)
    return ["int64" if w else "float64" for w in whole]


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


def _estimated_rows(path: Path, first_rows: int, first_bytes: int = CSV_BLOCK_BYTES) -> int:
    """Rows of a CSV file, from its size and the rows of its first block (``first_bytes``
    long), 10 % over: X's pages beyond the rows read are never touched, so they cost address
    space, not memory."""
    blocks = path.stat().st_size / first_bytes
    return int(first_rows * max(blocks, 1.0) * 1.1) + first_rows
