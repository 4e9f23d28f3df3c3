"""Tables as they come: a CSV or Parquet file with text (categorical) columns, missing cells
or columns that are not features, read into raw columns for numbamlp.encoding's
TableEncoder (read_table), with each column's role: the label, the features (data.features,
else every column but the label, those in data.drop and identifier-like ones, left out
with a note), the categorical ones (text, or named in data.categorical).

Symbols: N rows.  y (N,) labels or targets.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numbamlp.arrays import DataError
from numbamlp.data.columns import (_arrow_labels, _check_label_column, _check_target_column, _holds_numbers, _is_number,
                                   _label_index)
from numbamlp.data.csv_files import CSV_BLOCK_BYTES, _first_csv_rows, _header_of, _open_csv_text, csv_dialect
from numbamlp.data.dataset import DataNote, _reason
from numbamlp.data.formats import file_kind
from numbamlp.data.parquet import _arrow_dtype_name
from numbamlp.encoding import MISSING_CELLS, TextColumn, category_text, number_text, usual_spellings


@dataclass
class RawTable:
    """A table's feature columns by name, in order ({name: float64 (N,) with NaN where a cell
    is missing, or a TextColumn}), its labels y (N,) (None when not read), and what each
    feature held in the file (``dtypes``, as numbamlp.arrays.dtype_kind reads them)."""

    columns: dict
    y: np.ndarray | None
    dtypes: list[str]
    name: str

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def take(self, rows: np.ndarray) -> dict:
        """The feature columns of ``rows`` only."""
        return {name: column.take(rows) if isinstance(column, TextColumn) else column[rows]
                for name, column in self.columns.items()}


@dataclass(frozen=True)
class ColumnRoles:
    """What the user said of a table's columns (data.features, data.drop, data.categorical,
    data.missing)."""

    features: tuple[str, ...] | None = None
    drop: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    missing: str = "impute"

    @classmethod
    def of(cls, data_config) -> "ColumnRoles":
        features = data_config.features
        return cls(None if features is None else tuple(features), tuple(data_config.drop),
                   tuple(data_config.categorical), data_config.missing)

    @property
    def given(self) -> bool:
        """Whether any column's role was named (the table reader is then the one to use)."""
        return self.features is not None or bool(self.drop) or bool(self.categorical)


# A column whose every value differs and that looks like an identifier is not a feature
# unless named (data.features): text (an order number, an e-mail), or whole numbers named
# like an identifier or counting rows (1, 2, 3, ...).  Below ID_MIN_ROWS rows, nothing is.
ID_MIN_ROWS = 20
_ID_NAME = re.compile(r"(?i)(.*[_\s.-])?(id|uuid|guid|key)|index|row|rownum|row_?number|unnamed: ?0")


def read_table(source: str, label_column, roles: ColumnRoles, task: str = "classification",
               header: bool | None = None, with_label: bool = True, columns: list[str] | None = None,
               categorical: list[str] | None = None, dtype=np.float64) -> RawTable:
    """A CSV or Parquet file as a RawTable.  Training (``columns`` None): the features are
    chosen by ``roles`` (identifier-like columns left out with a DataNote); prediction and
    held-out files: exactly ``columns``, by name (a file without one is refused, naming it),
    of which ``categorical`` are text.  Missing feature cells are NaN or code -1, or, with
    roles.missing "error", refused by column and row.  Labels as load_dataset reads them.

    Memory: the file is read block by block (a CSV's 1 MB blocks, a Parquet file's record
    batches), each block's columns appended to the raw columns as they end up — numbers in
    ``dtype``, text as int32 codes — so that the whole table is never held as arrow strings;
    what a column holds, and whether it is an identifier, is judged from the first block."""
    path = Path(source)
    kind = file_kind(path)
    if kind not in ("csv", "parquet") or source.startswith("builtin:"):
        raise DataError(f"{source}: column roles (--features, --drop, --categorical) are for CSV and Parquet files, "
                        "whose columns have names; leave them out")
    if not path.exists():
        raise DataError(f"data file not found: {source}")
    text_columns = set(roles.categorical if categorical is None else categorical)
    layout = _csv_layout(path, label_column, header, with_label) if kind == "csv" else \
        _parquet_layout(path, label_column, with_label)
    names, label = layout["names"], layout["label"]
    label_name = None if label is None else names[label]
    wanted = names if columns is None else [*columns, *([label_name] if label_name is not None else [])]
    absent = [name for name in wanted if name not in names]
    if absent:
        raise DataError(f"{source} has no column {', '.join(map(repr, absent[:8]))}, which the model was trained with")
    first = _first_block(path, kind, layout, wanted, text_columns)
    if columns is None:
        features = _feature_names(names, label_name, roles, first, source)
    else:
        features = list(columns)
    if not features:
        raise DataError(f"{source}: no feature column is left (label {label_name!r}; dropped: "
                        f"{', '.join(map(repr, roles.drop)) or 'none'})")
    for name in features:
        _check_kind(first.schema.field(name).type, name, source)
    text = {name for name in features if name in text_columns or _is_text(first.schema.field(name).type)}
    collectors = {name: _TextCollector() if name in text else _NumberCollector(dtype) for name in features}
    labels, row = [], 0
    for block in _blocks(path, kind, layout, [*features, *([label_name] if label_name else [])], text, first):
        for name in features:
            column = block.column(name)
            collectors[name].add(column, name, source, row)
        if label_name is not None:  # (its own small copy: a CSV block's text shares the whole block's buffer)
            labels.append(_compact(block.column(label_name)))
        row += block.num_rows
    if row == 0:
        raise DataError(f"{path} has a header but no data rows" if kind == "csv" else f"{path} has no rows")
    import pyarrow as pa

    pa.default_memory_pool().release_unused()  # (the reader's blocks, kept by arrow's allocator: ~40 MB at
    # 1,000,000 rows that the encoding's arrays could not reuse — measured, bench/README.md, issue 27)
    raw, dtypes = {}, []
    for name in features:
        collector = collectors.pop(name)
        raw[name] = collector.finish()
        if roles.missing == "error":  # (after reading: a NaN, a text of spaces or NA are missing too)
            _refuse_missing(raw[name], name, source)
        if isinstance(raw[name], TextColumn) and name not in text_columns:
            raw[name] = _numbers_in_text(raw[name], name, source, dtype)
            if isinstance(raw[name], TextColumn) and columns is not None:
                raise DataError(f"{source}: column {name!r} holds text ({raw[name].texts[0]!r}), but the model was "
                                "trained on numbers there")
        read_as = first.schema.field(name).type
        dtypes.append("string" if isinstance(raw[name], TextColumn) else
                      "float64" if _is_text(read_as) else _arrow_dtype_name(read_as))
    y = None
    if label_name is not None:
        numbers = "floats" if task == "regression" else "integers"
        y = _arrow_labels(pa.chunked_array(labels).cast(labels[0].type.value_type if pa.types.is_dictionary(
            labels[0].type) else labels[0].type), source, text_numbers=numbers)
        if task == "regression":
            _check_target_column(y, path, names, label, header_rows=1 if kind == "csv" else 0)
        elif label_column is None:
            _check_label_column(y, path, names, label, len(names))
    return RawTable(raw, y, dtypes, source)


def _missing_markers() -> list[str]:
    """The cell texts read as missing (MISSING_CELLS in the cases people write them)."""
    return sorted({form for cell in MISSING_CELLS for form in usual_spellings(cell)})


def _csv_layout(path: Path, label_column, header, with_label: bool) -> dict:
    """A CSV file's column names (its header, else "0", "1", ...), label index, rows to skip
    before the data, and dialect."""
    first, second = _first_csv_rows(path)
    if first is None:
        raise DataError(f"{path} has no rows")
    header = _header_of(first, second, header, label_column, path)
    width = len(first)
    names = header if header is not None else [str(j) for j in range(width)]
    if len(set(names)) != len(names):
        repeated = next(name for name in names if names.count(name) > 1)
        raise DataError(f"{path}: two columns are named {repeated!r}; column names must differ")
    label = _label_index(label_column, header, width, path) if with_label else None
    with _open_csv_text(path) as f:
        blank = 0
        while (line := f.readline()) and not line.strip():
            blank += 1
    return {"names": names, "label": label, "skip": blank + (header is not None), "dialect": csv_dialect(path)}


def _parquet_layout(path: Path, label_column, with_label: bool) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        names = pq.ParquetFile(path).schema_arrow.names
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"cannot read {path} as Parquet ({_reason(err)})") from None
    return {"names": names, "label": _label_index(label_column, names, len(names), path) if with_label else None}


def _csv_stream(path: Path, layout: dict, include: list[str], types: dict):
    """pyarrow's streaming CSV reader of the ``include`` columns, ``types`` {name: arrow
    type} given (the others inferred from the first block)."""
    import pyarrow.csv as pa_csv

    return pa_csv.open_csv(
        path, read_options=pa_csv.ReadOptions(column_names=layout["names"], skip_rows=layout["skip"],
                                              block_size=CSV_BLOCK_BYTES, use_threads=False),
        parse_options=pa_csv.ParseOptions(delimiter=layout["dialect"].delimiter),
        convert_options=pa_csv.ConvertOptions(column_types=types, null_values=_missing_markers(),
                                              strings_can_be_null=True, quoted_strings_can_be_null=True,
                                              decimal_point=layout["dialect"].decimal, include_columns=include))


def _first_block(path: Path, kind: str, layout: dict, wanted: list[str], text_columns: set):
    """The file's first block of the ``wanted`` columns (a pyarrow RecordBatch), its types
    as the file's reader infers them (a CSV's: from this block; text_columns and the label
    read as text)."""
    import pyarrow as pa

    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            first = next(parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=wanted),
                         pa.record_batch([pa.array([], pa.string())] * len(wanted), names=wanted))
            layout["whole"] = first.num_rows == parquet.metadata.num_rows
            return first
        label = layout["label"]
        types = {name: pa.string() for name in wanted if name in text_columns}
        if label is not None:
            types[layout["names"][label]] = pa.string()
        with _csv_stream(path, layout, wanted, types) as stream:
            first = stream.read_next_batch()
            try:
                stream.read_next_batch()
                layout["whole"] = False
            except StopIteration:
                layout["whole"] = True  # (one block is the file: read once, not twice)
            return first.select(wanted)
    except StopIteration:
        raise DataError(f"{path} has a header but no data rows") from None
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"cannot read {path} as {kind.upper() if kind == 'csv' else 'Parquet'} ({_reason(err)})") \
            from None


def _blocks(path: Path, kind: str, layout: dict, include: list[str], text: set, first):
    """Every block of the ``include`` columns, as RecordBatches.  A CSV file is read again
    with each column's type fixed — text as text, every number as float64 (a first block of
    whole numbers says nothing of the rows below), booleans as booleans — so that a later
    block cannot change it; a cell that does not fit is refused by name."""
    import pyarrow as pa

    if layout.get("whole"):  # (the first block is the file; as read, the file cannot contradict it)
        yield first.select(include)
        return
    if kind == "parquet":
        import pyarrow.parquet as pq

        text_columns = [name for name in include if _is_text(first.schema.field(name).type)]
        try:  # (text decoded straight into dictionaries: no string per row, no hashing of them)
            yield from pq.ParquetFile(path, read_dictionary=text_columns).iter_batches(
                batch_size=PARQUET_BATCH_ROWS, columns=include)
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"cannot read {path} as Parquet ({_reason(err)})") from None
        return
    label = None if layout["label"] is None else layout["names"][layout["label"]]
    types = {}
    for name in include:
        kind_of = first.schema.field(name).type
        types[name] = (pa.string() if name in text or name == label or pa.types.is_null(kind_of)
                       else pa.bool_() if pa.types.is_boolean(kind_of) else pa.float64())
    try:
        with _csv_stream(path, layout, include, types) as stream:
            for block in stream:
                yield block
    except pa.ArrowInvalid as err:
        hint = (" (a column of numbers has a cell that is not one: fix or empty it, or name the column with "
                "--categorical to read its values as categories)" if "conversion error" in str(err).lower() else "")
        raise DataError(f"cannot read {path} as CSV ({_reason(err)}){hint}") from None
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"cannot read {path} as CSV ({_reason(err)})") from None


def _compact(column):
    """A label column's block as its own arrow array: text dictionary-encoded (a few distinct
    labels, int32 codes), numbers as they are."""
    import pyarrow.compute as pc

    return pc.dictionary_encode(column) if _is_text(column.type) else column


# Rows per record batch of a Parquet table read block by block (measured against decoding a
# row group one column at a time: 1.5x pyarrow's own read time at 1,000,000 rows, against
# 3.3x; bench/README.md, issue 27).
PARQUET_BATCH_ROWS = 65536


def _is_text(kind) -> bool:
    import pyarrow as pa

    kind = kind.value_type if pa.types.is_dictionary(kind) else kind
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)


def _check_kind(kind, name: str, source) -> None:
    """DataError naming a feature column of a kind numbamlp cannot use (dates, times, lists)."""
    import pyarrow as pa

    kind = kind.value_type if pa.types.is_dictionary(kind) else kind
    if not (_is_text(kind) or _holds_numbers(kind)):
        raise DataError(f"{source}: column {name!r} holds {kind}, which numbamlp cannot use as a feature: drop it "
                        f"(--drop {name}) or turn it into numbers first")


class _NumberCollector:
    """A number column's blocks appended as ``dtype`` arrays; NaN where missing."""

    def __init__(self, dtype):
        self.dtype, self.parts = dtype, []

    def add(self, column, name: str, source, row: int) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        if np.isinf(values).any():
            at = int(np.argmax(np.isinf(values)))
            raise DataError(f"{source}: column {name!r} holds {values[at]} in data row {row + at} (counting from 0); "
                            "features must be finite numbers")
        self.parts.append(values.astype(self.dtype))

    def finish(self) -> np.ndarray:
        values = np.concatenate(self.parts) if len(self.parts) != 1 else self.parts[0]
        self.parts = []
        return values


class _TextCollector:
    """A text column's blocks as int32 codes into the texts met so far, each its
    category_text once (missing: -1).  A column of numbers or booleans named categorical (a
    Parquet file's) becomes their texts the same way."""

    def __init__(self):
        self.index, self.texts, self.parts = {}, [], []
        self.known = None  # (the texts as an arrow array, for index_in)

    def add(self, column, name: str, source, row: int) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if pa.types.is_boolean(column.type):  # (booleans named categorical: "true" and "false", as category_text)
            column = pc.cast(column, pa.string())
        if not _is_text(column.type):  # (numbers named categorical)
            values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
            present = ~np.isnan(values)
            distinct, inverse = np.unique(values[present], return_inverse=True)
            codes = np.full(len(values), -1, dtype=np.int64)
            codes[present] = inverse
            block_texts = [number_text(v) for v in distinct.tolist()]
            remap = np.array([self._code(text) for text in block_texts] + [-1], dtype=np.int32)
        else:
            if pa.types.is_null(column.type):
                column = column.cast(pa.string())
            encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
            codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
            remap = self._remap(pc.utf8_trim_whitespace(encoded.dictionary))
        self.parts.append(remap[codes])  # (code -1, missing, picks the last entry)

    def _remap(self, block_texts) -> np.ndarray:
        """The codes (len + 1,) int32 of a block's distinct texts (an arrow array, trimmed),
        then -1: those met before looked up by arrow (index_in: no Python per text), the new
        ones added."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if self.known is None or len(self.known) != len(self.texts):
            self.known = pa.array(self.texts, pa.string())
        found = pc.index_in(block_texts, value_set=self.known)
        remap = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
        for k in np.flatnonzero(remap < 0):  # (new texts, and the empty one: missing)
            remap[k] = self._code(block_texts[int(k)].as_py())
        return np.append(remap, np.int32(-1))

    def _code(self, text) -> int:
        """The code of a cell's text (its category_text: the same text whichever reader or
        face it came through), -1 for a missing one."""
        text = category_text(text)
        if text is None:
            return -1
        code = self.index.get(text)
        if code is None:
            code = self.index[text] = len(self.texts)
            self.texts.append(text)
        return code

    def finish(self) -> TextColumn:
        codes = np.concatenate(self.parts) if len(self.parts) != 1 else self.parts[0]
        self.parts = []
        return TextColumn(codes, self.texts)


def _numbers_in_text(column: TextColumn, name: str, source, dtype):
    """A column read as text (its first block held text, or no value at all) whose every
    value is a number: the number column it is.  Mostly numbers with a few texts: refused
    (_refuse_numbers_with_text).  Otherwise the TextColumn: categories."""
    _refuse_numbers_with_text(name, column.texts, column.codes, source)
    if not column.texts or not all(_is_number(text) for text in column.texts):
        return column if column.texts else np.full(len(column), np.nan, dtype=dtype)
    values = np.array([float(text) for text in column.texts] + [np.nan])
    return values[column.codes].astype(dtype)


def _feature_names(names: list[str], label_name, roles: ColumnRoles, table, source) -> list[str]:
    """Training's feature columns: roles.features when given (each must exist, none the
    label), else every column but the label and roles.drop, identifier-like ones left out
    with a note saying how to keep them."""
    named = [*(roles.features or ()), *roles.drop, *roles.categorical]
    absent = [name for name in dict.fromkeys(named) if name not in names]
    if absent:
        shown = ", ".join(map(repr, names[:12])) + (", ..." if len(names) > 12 else "")
        raise DataError(f"{source} has no column {', '.join(map(repr, absent))}; its columns are {shown}")
    if label_name is not None and label_name in named:
        raise DataError(f"{source}: column {label_name!r} is the label column; it cannot also be a feature, dropped "
                        "or categorical")
    if roles.features is not None:
        outside = [name for name in roles.categorical if name not in roles.features]
        if outside:
            raise DataError(f"{source}: categorical column {outside[0]!r} is not among the features given")
        return list(roles.features)
    features = [name for name in names if name != label_name and name not in roles.drop]
    identifiers = [name for name in features
                   if name not in roles.categorical and _looks_like_identifier(name, table.column(name))]
    for name in identifiers:
        warnings.warn(f"{source}: column {name!r} holds a different value in every row, like an identifier, so it is "
                      f"not used as a feature (to use it, list the features with --features, {name!r} among them; "
                      f"--drop {name} leaves it out without this note)", DataNote, stacklevel=4)
    return [name for name in features if name not in identifiers]


def _looks_like_identifier(name: str, column) -> bool:
    """Whether a column's values all differ and it looks like an identifier (see ID_MIN_ROWS)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(column)
    if n < ID_MIN_ROWS or column.null_count:
        return False
    if pa.types.is_dictionary(column.type):  # (a pandas category column, say: its values, not its codes)
        column = column.dictionary_decode()
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        sample = column.slice(0, 1000)  # (a repeat among the first rows settles it without hashing them all)
        return pc.count_distinct(sample).as_py() == len(sample) and pc.count_distinct(column).as_py() == n
    if not pa.types.is_integer(kind):
        return False
    values = column.to_numpy()
    counting = bool(np.all(np.diff(values) == 1))
    return (counting or bool(_ID_NAME.fullmatch(name.strip()))) and len(np.unique(values)) == n


def _refuse_numbers_with_text(name: str, texts: list[str], codes: np.ndarray, source) -> None:
    """A text column whose cells are mostly numbers (at least half of those present) but
    not all: numbers with a typo or an unusual missing marker, which as categories would
    mean something else.  DataError naming the first such cell, and the two ways on."""
    numeric = np.array([_is_number(text) for text in texts] + [True], dtype=bool)  # (last: missing)
    present = codes >= 0
    others = present & ~numeric[codes]
    if others.any() and present.sum() - others.sum() >= others.sum():
        row = int(np.argmax(others))
        raise DataError(f"{source}: column {name!r} holds numbers, but {texts[codes[row]]!r} in data row {row} "
                        f"(counting from 0): fix or empty that cell (an empty cell is a missing value), or name the "
                        f"column with --categorical {name} to read every value as a category")


def _refuse_missing(column, name: str, source) -> None:
    """data.missing "error": DataError naming a raw column's first missing cell (NaN, or
    code -1 of a TextColumn)."""
    missing = column.codes < 0 if isinstance(column, TextColumn) else np.isnan(column)
    if missing.any():
        raise DataError(f"{source}: feature column {name!r} has a missing value in data row {int(np.argmax(missing))}, "
                        "counting from 0 (data.missing is 'error'; --missing impute fills it with the training "
                        "median, or a category of its own)")
