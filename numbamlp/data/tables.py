"""Tables as they come: a CSV or Parquet file with text (categorical) columns, missing cells
or columns that are not features, read into raw columns for numbamlp.encoding's
TableEncoder (read_table), with each column's role: the label, the features (data.features,
else every column but the label, those in data.drop and identifier-like ones, left out
with a note), the categorical ones (text, or named in data.categorical).

Symbols: N rows.  y (N,) labels or targets.
"""

from __future__ import annotations

import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numbamlp.arrays import DataError
from numbamlp.data.columns import (_arrow_labels, _check_label_column, _check_target_column, _holds_numbers, _is_number,
                                   _label_index)
from numbamlp.data.csv_files import (CSV_BLOCK_BYTES, _estimated_rows, _first_csv_rows, _header_of, _open_csv_text,
                                     csv_dialect)
from numbamlp.data.dataset import DataNote, _reason
from numbamlp.data.formats import COMPRESSED, file_kind
from numbamlp.data.memory import _grown, check_room, column_buffer, release_freed_memory, release_rows
from numbamlp.data.parquet import _arrow_dtype_name
from numbamlp.encoding import MISSING_CELLS, NUMBER_LIKE, TextColumn, category_texts, number_text, usual_spellings


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

    def forget_rows(self, stop: int) -> None:
        """Hand the memory of every column's rows before ``stop`` back to the system, as an
        encoding that is done with them goes (release_rows: they read as zeros after)."""
        for column in self.columns.values():
            release_rows(column.codes if isinstance(column, TextColumn) else column, stop)


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

    Time and memory: the file is read once (a CSV's first CSV_SAMPLE_BYTES twice: parsed alone
    first, for the columns' types), text straight into arrow dictionaries (no string per
    cell), block by block (a CSV's 1 MB blocks — a small file's all at once, on pyarrow's
    threads — a Parquet file's record batches), each block's columns written into the raw
    columns, allocated once for the rows the file holds (a CSV's: estimated from its size) —
    numbers in ``dtype``, text as int32 codes.  What a column holds, and whether it is an
    identifier, is judged from the first block (a CSV's: its sample)."""
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
    with _SYSTEM_ALLOCATOR:  # (arrow's blocks freed as they go, not kept by its own allocator)
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
        rows = layout["rows"]
        check_room(rows * sum(4 if name in text else np.dtype(dtype).itemsize for name in features),
                   f"{rows} rows x {len(features)} columns need {{gb}}", source)
        collectors = {name: _TextCollector(rows, source) if name in text else _NumberCollector(dtype, rows, source)
                      for name in features}
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

    release_freed_memory()

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
        y = _arrow_labels(pa.chunked_array(labels), source, text_numbers=numbers)
        if task == "regression":
            _check_target_column(y, path, names, label, header_rows=1 if kind == "csv" else 0)
        elif label_column is None:
            _check_label_column(y, path, names, label, len(names))
    return RawTable(raw, y, dtypes, source)


class _SystemAllocator:
    """While a table is read (``with _SYSTEM_ALLOCATOR``; nested and threaded reads share it),
    pyarrow allocates with malloc, which hands freed blocks back to the system (with
    release_freed_memory): mimalloc, arrow's own, kept ~50 MB more of a 1,000,000-row Parquet
    file's freed blocks, and ~15 MB of a CSV file's (measured, bench/README.md, issue 27)."""

    def __init__(self):
        self.lock, self.readers, self.saved = threading.Lock(), 0, None

    def __enter__(self):
        import pyarrow as pa

        with self.lock:
            if self.readers == 0:
                self.saved = pa.default_memory_pool()
                pa.set_memory_pool(pa.system_memory_pool())
            self.readers += 1

    def __exit__(self, *exc):
        import pyarrow as pa

        with self.lock:
            self.readers -= 1
            if self.readers == 0:
                pa.set_memory_pool(self.saved)


_SYSTEM_ALLOCATOR = _SystemAllocator()


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
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"cannot read {path} as Parquet ({_reason(err)})") from None
    names = parquet.schema_arrow.names
    return {"names": names, "label": _label_index(label_column, names, len(names), path) if with_label else None,
            "schema": parquet.schema_arrow, "rows": parquet.metadata.num_rows}


# A CSV file's first bytes (whole lines of them) parsed alone, for its columns' types and
# identifiers, before the one read of the file; a file no longer than this is read once.
CSV_SAMPLE_BYTES = 1 << 18
# CSV files up to this size are read in one call, as one block; longer ones block by block on
# one thread, so that arrow holds a few blocks at a time, not the file (measured:
# bench/README.md, issue 27).
CSV_WHOLE_BYTES = 1 << 23


def _csv_options(layout: dict, include: list[str], types: dict, use_threads: bool = False, block_size=None):
    """pyarrow's CSV read, parse and convert options for the ``include`` columns, ``types``
    {name: arrow type} given (the others inferred)."""
    import pyarrow.csv as pa_csv

    return dict(read_options=pa_csv.ReadOptions(column_names=layout["names"], skip_rows=layout["skip"],
                                                 block_size=block_size or CSV_BLOCK_BYTES, use_threads=use_threads),
                parse_options=pa_csv.ParseOptions(delimiter=layout["dialect"].delimiter),
                convert_options=pa_csv.ConvertOptions(column_types=types, null_values=_missing_markers(),
                                                      strings_can_be_null=True, quoted_strings_can_be_null=True,
                                                      decimal_point=layout["dialect"].decimal,
                                                      include_columns=include))


def _first_block(path: Path, kind: str, layout: dict, wanted: list[str], text_columns: set):
    """The file's first block of the ``wanted`` columns (a pyarrow RecordBatch) and their
    types as the file's reader infers them: a CSV file's first CSV_SAMPLE_BYTES, whole
    lines, parsed alone (text_columns and the label read as text); a Parquet file's first
    record batch, its text read as dictionaries.  Sets layout["whole"] when the block is the
    file, and a CSV's layout["rows"], the rows the file holds as estimated from it."""
    import pyarrow as pa

    try:
        if kind == "parquet":
            batches = _parquet_batches(path, layout["schema"], wanted)
            first = next(batches, None)
            if first is None:
                first = pa.record_batch([pa.array([], layout["schema"].field(name).type) for name in wanted],
                                        names=wanted)
            layout["whole"], layout["rest"], layout["columns"] = first.num_rows == layout["rows"], batches, wanted
            return first
        sample, layout["whole"] = _csv_sample(path)
        label = layout["label"]
        types = {name: pa.string() for name in wanted if name in text_columns}
        if label is not None:
            types[layout["names"][label]] = pa.string()
        while True:
            first = _parsed_csv(sample, _csv_options(layout, wanted, types, block_size=len(sample) + 1))
            if first.num_rows or layout["whole"]:
                break
            sample, layout["whole"] = _csv_sample(path, 2 * len(sample))  # (no data row yet: the header is long)
        if not first.num_rows:
            raise StopIteration
        layout["rows"] = first.num_rows if layout["whole"] else _estimated_rows(path, first.num_rows, len(sample))
        return first.combine_chunks().to_batches()[0]
    except StopIteration:
        raise DataError(f"{path} has a header but no data rows") from None
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"cannot read {path} as {kind.upper() if kind == 'csv' else 'Parquet'} ({_reason(err)})") \
            from None


def _parquet_batches(path: Path, schema, columns: list[str]):
    """A Parquet file's record batches of ``columns``, text read as dictionaries (no string
    per row, no hashing of them)."""
    import pyarrow.parquet as pq

    text = [name for name in columns if _is_text(schema.field(name).type)]
    return pq.ParquetFile(path, read_dictionary=text).iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns)


def _parsed_csv(data: bytes, options: dict):
    """CSV bytes as pyarrow reads them (a Table)."""
    import io

    import pyarrow.csv as pa_csv

    return pa_csv.read_csv(io.BytesIO(data), **options)


def _csv_sample(path: Path, size: int = CSV_SAMPLE_BYTES) -> tuple[bytes, bool]:
    """A CSV file's first ``size`` bytes (decompressed), up to the end of their last whole
    line, and whether that is the whole file."""
    import pyarrow as pa

    with pa.input_stream(str(path), compression="detect") as stream:
        data = stream.read(size)
        more = stream.read(1)
    if not more:
        return data, True
    end = data.rfind(b"\n")
    return (data[: end + 1], False) if end >= 0 else _csv_sample(path, 2 * size)


def _blocks(path: Path, kind: str, layout: dict, include: list[str], text: set, first):
    """Every block of the ``include`` columns, as RecordBatches: the first block when it is
    the file; else a Parquet file's record batches (those of the first block's reader when it
    read these columns, its text as dictionaries); else the CSV file read with each column's
    type fixed — text (and the label) as dictionaries, every number as float64 (a first
    block of whole numbers says nothing of the rows below), booleans as booleans — so that a
    later block cannot change it; a cell that does not fit is refused by name."""
    import pyarrow as pa

    if layout.get("whole"):  # (the first block is the file; as read, the file cannot contradict it)
        yield first
        return
    if kind == "parquet":
        try:
            if layout["columns"] == include:
                yield first
                yield from layout["rest"]
            else:  # (fewer columns than the first block's: read again without them, from the start)
                layout.pop("rest").close()  # (the first reader's buffers: not held beside the second's)
                yield from _parquet_batches(path, layout["schema"], include)
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"cannot read {path} as Parquet ({_reason(err)})") from None
        return
    import pyarrow.csv as pa_csv

    label = None if layout["label"] is None else layout["names"][layout["label"]]
    dictionary = pa.dictionary(pa.int32(), pa.string())
    types = {}
    for name in include:
        kind_of = first.schema.field(name).type
        types[name] = (dictionary if name in text or name == label or pa.types.is_null(kind_of)
                       else pa.bool_() if pa.types.is_boolean(kind_of) else pa.float64())
    try:
        size = path.stat().st_size
        if size <= CSV_WHOLE_BYTES and path.suffix not in COMPRESSED:  # (one block: texts mapped once, not a MB)
            yield from pa_csv.read_csv(path, **_csv_options(layout, include, types, use_threads=True,
                                                            block_size=max(size + 1, CSV_BLOCK_BYTES))).to_batches()
            return
        with pa_csv.open_csv(path, **_csv_options(layout, include, types)) as stream:
            yield from stream
    except pa.ArrowInvalid as err:
        hint = (" (a column of numbers has a cell that is not one: fix or empty it, or name the column with "
                "--categorical to read its values as categories)" if "conversion error" in str(err).lower() else "")
        raise DataError(f"cannot read {path} as CSV ({_reason(err)}){hint}") from None
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"cannot read {path} as CSV ({_reason(err)})") from None


def _compact(column):
    """A label column's block as its own arrow array: text dictionary-encoded (a few distinct
    labels, int32 codes), numbers as they are."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.dictionary_encode(column) if _is_text(column.type) and not pa.types.is_dictionary(column.type) \
        else column


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


class _Filled:
    """A column's values as its blocks arrive, in one array allocated for ``rows`` rows (the
    file's, or an estimate: grown, a copy, when more come)."""

    def __init__(self, rows: int, dtype, source):
        self.values, self.used, self.source = column_buffer(rows, dtype), 0, source  # (read_table checked the room)

    def append(self, values: np.ndarray) -> None:
        end = self.used + len(values)
        if end > len(self.values):
            self.values = _grown(self.values, self.used, end + len(self.values) // 4, str(self.source))
        self.values[self.used : end] = values
        self.used = end

    def finish(self) -> np.ndarray:
        values, self.values = self.values[: self.used], None
        return values


class _NumberCollector:
    """A number column's blocks as ``dtype`` values; NaN where missing."""

    def __init__(self, dtype, rows: int, source):
        self.filled = _Filled(rows, dtype, source)

    def add(self, column, name: str, source, row: int) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if pa.types.is_integer(column.type):  # (missing cells: NaN; no cast, no infinity)
            self.filled.append(column.to_numpy(zero_copy_only=False))
            return
        values = (column if pa.types.is_floating(column.type) else pc.cast(column, pa.float64())).to_numpy(
            zero_copy_only=False)
        if np.isinf(values).any():
            at = int(np.argmax(np.isinf(values)))
            raise DataError(f"{source}: column {name!r} holds {values[at]} in data row {row + at} (counting from 0); "
                            "features must be finite numbers")
        self.filled.append(values)

    def finish(self) -> np.ndarray:
        return self.filled.finish()


class _TextCollector:
    """A text column's blocks as int32 codes into the texts met so far, each its
    category_text once (missing: -1).  A column of numbers or booleans named categorical (a
    Parquet file's) becomes their texts the same way."""

    def __init__(self, rows: int, source):
        self.index, self.texts, self.filled = {}, [], _Filled(rows, np.int32, source)
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
            remap = np.array([self._code(number_text(v)) for v in distinct.tolist()] + [-1], dtype=np.int32)
        else:
            if pa.types.is_null(column.type):
                column = column.cast(pa.string())
            encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
            codes = (encoded.indices.fill_null(-1) if encoded.null_count else encoded.indices).to_numpy(
                zero_copy_only=False)
            remap = self._remap(encoded.dictionary)
        self.filled.append(remap[codes])  # (code -1, missing, picks the last entry)

    def _remap(self, block_texts) -> np.ndarray:
        """The codes (len + 1,) int32 of a block's distinct texts (an arrow array), then -1:
        those met before, as they are, looked up by arrow (index_in: no Python per text); the
        others by their category_text (" x" is "x"), new ones added."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self.texts:  # (the first block: its texts, when they are category_texts already and distinct)
            texts = category_texts(block_texts)
            if None not in texts and len(set(texts)) == len(texts) and texts == block_texts.to_pylist():
                self.texts, self.index = texts, {text: code for code, text in enumerate(texts)}
                return np.append(np.arange(len(texts), dtype=np.int32), np.int32(-1))
        if self.known is None or len(self.known) != len(self.texts):
            self.known = pa.array(self.texts, pa.string())
        found = pc.index_in(block_texts, value_set=self.known)
        remap = found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
        new = np.flatnonzero(remap < 0)  # (new texts, texts with spaces around, and the empty one: missing)
        if len(new):
            remap[new] = [self._code(text) for text in category_texts(block_texts.take(new))]
        return np.append(remap, np.int32(-1))

    def _code(self, text: str | None) -> int:
        """The code of a category_text (-1 for None: missing), a new one for a text not met
        before."""
        if text is None:
            return -1
        code = self.index.get(text)
        if code is None:
            code = self.index[text] = len(self.texts)
            self.texts.append(text)
        return code

    def finish(self) -> TextColumn:
        return TextColumn(self.filled.finish(), self.texts)


def _numbers_in_text(column: TextColumn, name: str, source, dtype):
    """A column read as text (its first block held text, or no value at all) whose every
    value is a number: the number column it is.  Mostly numbers with a few texts: refused
    (_refuse_numbers_with_text).  Otherwise the TextColumn: categories."""
    numeric = _number_texts(column.texts)
    if numeric.any():
        _refuse_numbers_with_text(name, column.texts, numeric, column.codes, source)
    if not column.texts or not numeric.all():
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
    if pa.types.is_dictionary(column.type) and _is_text(column.type):  # (a Parquet file's text, read so)
        # A dictionary holds each text once (Parquet's and pandas' do): distinct codes are distinct texts.
        codes = column.indices.to_numpy(zero_copy_only=False)
        return len(column.dictionary) >= n and not (np.bincount(codes) > 1).any()
    if pa.types.is_dictionary(column.type):  # (a pandas category of numbers, say: its values, not its codes)
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


def _number_texts(texts: list[str]) -> np.ndarray:
    """(len(texts),) bool: which texts are numbers (_is_number), Python asked only of those
    that arrow finds number-like (NUMBER_LIKE) or that are not ASCII."""
    import pyarrow as pa
    import pyarrow.compute as pc

    strings = pa.array(texts, pa.string())
    candidates = pc.or_(pc.match_substring_regex(strings, rf"(?i)^\s*{NUMBER_LIKE}\s*$"),
                        pc.invert(pc.string_is_ascii(strings))).to_numpy(zero_copy_only=False)
    numeric = np.zeros(len(texts), dtype=bool)
    for k in np.flatnonzero(candidates).tolist():
        numeric[k] = _is_number(texts[k])
    return numeric


def _refuse_numbers_with_text(name: str, texts: list[str], numeric: np.ndarray, codes: np.ndarray, source) -> None:
    """A text column whose cells are mostly numbers (at least half of those present) but
    not all: numbers with a typo or an unusual missing marker, which as categories would
    mean something else.  DataError naming the first such cell, and the two ways on."""
    numeric = np.append(numeric, True)  # (last: missing)
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
