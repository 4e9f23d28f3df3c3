"""What a table's columns become before the first layer: TableEncoder, learned from the
training split's raw columns and stored in the model file, so that predict, eval, the
service, the estimators and the ONNX export all take the raw columns.

Symbols: N rows, D_in the encoded width (the first layer's inputs), C classes, K targets.

A raw table is a mapping {column name: column}: a **number column** is float64 (N,), NaN
where a cell is missing; a **text column** is a TextColumn (integer codes (N,) into its
distinct texts, -1 where a cell is missing).  Each feature column becomes, in the
columns' order:

- a number: its value, a missing cell the training split's median; and, when the training
  split had a missing cell in it, a was-missing feature (1.0 or 0.0) after it.
- a text (categorical) column: its **bucket** — one per category with at least
  ``min_category_rows`` training rows (a missing cell is a category of its own, the empty
  text, whenever training saw one), and one shared bucket for rarer categories and those
  training never saw — then a row of ``table`` (buckets, width) for that bucket:
  * up to ONEHOT_MAX_CATEGORIES buckets: one-hot (the identity; the shared bucket has a
    column only when training put rows in it, else its row is all zeros);
  * more: the target's smoothed mean in that bucket (binary: the rate of the second class,
    width 1; C > 2 classes: each class's rate, width C; regression: each target's mean,
    width K), so that a 1,000-category column is a few columns, never a dense one-hot of
    the data set.  Smoothing: (Σ target + PRIOR_ROWS · overall mean) / (rows + PRIOR_ROWS).
    The training rows themselves get cross-fitted values (each fold's from the other
    TARGET_FOLDS − 1 folds), so that a row's own label never leaks into its feature.

Which encoded features are standardised afterwards (``scaled``): the numbers and the target
means; one-hot and was-missing features stay 0/1.  ``numbamlp.reference.encode_row`` states
the same maths one row at a time, from the model file's description alone.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

# How a missing category is written: the empty text (a CSV's empty cell; an ONNX string input's).
MISSING_TEXT = ""
# The texts that mean a missing cell, in any case and with spaces around (a CSV's empty
# cell, NA, n/a, ...): every reader, every way into a model and the ONNX file read them so.
MISSING_CELLS = ("", "na", "n/a", "nan", "null", "none", "-", "?")


def usual_spellings(word: str) -> tuple[str, ...]:
    """A word as people write it (na, NA, Na): for the readers and graphs that match texts
    exactly (pyarrow's CSV null values, the ONNX LabelEncoder's keys), where category_text
    matches any case."""
    return tuple(dict.fromkeys((word, word.upper(), word.capitalize())))
# Buckets up to which a categorical column is one-hot (more: target means).
ONEHOT_MAX_CATEGORIES = 16
# Rows of the overall mean that smooth each bucket's target mean, and the folds that
# cross-fit the training rows' own values.
PRIOR_ROWS = 10.0
TARGET_FOLDS = 5
# How a number becomes a category's text (a --categorical column of numbers): an integral
# value as an integer (3, not 3.0), as a CSV file writes it.
def number_text(value: float) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


@dataclass
class TextColumn:
    """A categorical column: codes (N,) int64 into ``texts`` (each distinct once), -1 where a
    cell is missing."""

    codes: np.ndarray
    texts: list[str]

    def __len__(self) -> int:
        return len(self.codes)

    def take(self, rows: np.ndarray) -> "TextColumn":
        return TextColumn(self.codes[rows], self.texts)

    @classmethod
    def from_values(cls, values) -> "TextColumn":
        """From any 1-D values (a list, an object array, a pandas Series of text or numbers):
        None, NaN and pandas' NA are missing; numbers become their text (number_text)."""
        values = np.asarray(values, dtype=object).ravel()
        texts, codes, index = [], np.full(len(values), -1, dtype=np.int64), {}
        for i, value in enumerate(values):
            text = category_text(value)
            if text is None:
                continue
            code = index.get(text)
            if code is None:
                code = index[text] = len(texts)
                texts.append(text)
            codes[i] = code
        return cls(codes, texts)


def category_text(value) -> str | None:
    """A categorical cell as the one text every reader (CSV, Parquet, a DataFrame, the
    service's rows) and the model agree on; None when it is missing.  Missing: None, NaN,
    pandas' NA and the MISSING_CELLS texts.  Booleans, and the texts true and false in any
    case: "true" and "false".  Numbers, and texts that are numbers ("3.0", "03", "1e3"):
    number_text ("3", "3", "1000").  Any other text: itself, without spaces around."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):  # (pandas', without importing it)
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else number_text(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    text = str(value).strip()
    lowered = text.lower()
    if lowered in MISSING_CELLS:
        return None
    if lowered in ("true", "false"):
        return lowered
    try:
        number = float(text)
    except ValueError:
        return text
    return text if math.isnan(number) else number_text(number)


def category_texts(strings) -> list[str | None]:
    """[category_text(text) for text in strings] for a pyarrow array of texts (a block's
    distinct cells), with Python called only on the texts it may change (numbers, missing
    cells, true and false, spaces around, anything not ASCII): a column's thousand city
    names cost one pass of arrow's regex, not a thousand calls."""
    import pyarrow.compute as pc

    texts = strings.to_pylist()
    as_they_are = pc.and_(pc.string_is_ascii(strings), pc.invert(pc.match_substring_regex(strings, _CHANGED_TEXT)))
    as_they_are = as_they_are.fill_null(False).to_numpy(zero_copy_only=False)
    return [text if keep else category_text(text) for text, keep in zip(texts, as_they_are)]


# An arrow (RE2) pattern, for any case, of every ASCII text float() reads without spaces
# around, and of more (1..2): digits, a point, an exponent, underscores; inf, nan.
NUMBER_LIKE = r"[+-]?([0-9_.]*[0-9][0-9_.]*(e[+-]?[0-9_]+)?|inf|infinity|nan)"
# The ASCII texts category_text may change (a superset: those it keeps as they are may match
# too): spaces or other characters str.strip removes at either end, the empty text, numbers,
# true and false, the MISSING_CELLS, each in any case.
_CHANGED_TEXT = (rf"(?i)^[\s\x0b\x1c-\x1f]|[\s\x0b\x1c-\x1f]$|^$|^{NUMBER_LIKE}$"
                 rf"|^(true|false|{'|'.join(re.escape(cell) for cell in MISSING_CELLS if cell)})$")


@dataclass
class NumberCoding:
    """A number column: its value (missing: ``median``), then a was-missing feature when
    ``indicator``."""

    name: str
    median: float
    indicator: bool

    @property
    def width(self) -> int:
        return 1 + self.indicator

    def output_names(self) -> list[str]:
        return [self.name] + ([f"{self.name} (missing)"] if self.indicator else [])

    def scaled(self) -> list[bool]:
        return [True] + ([False] if self.indicator else [])


@dataclass
class CategoryCoding:
    """A categorical column: ``categories`` are the buckets of their own (in order; bucket
    len(categories) is the shared one), ``table`` (buckets, width) float64 each bucket's
    features; ``onehot`` says which kind they are (see the module docstring)."""

    name: str
    categories: list[str]
    table: np.ndarray
    onehot: bool
    outputs: list[str] = field(default_factory=list)  # the target coding's output names (class labels)

    @property
    def width(self) -> int:
        return self.table.shape[1]

    def output_names(self) -> list[str]:
        if self.onehot:
            names = [f"{self.name}={text if text != MISSING_TEXT else '(missing)'}" for text in self.categories]
            return names + [f"{self.name}=(other)"] * (self.width - len(self.categories))
        return [f"{self.name} (mean {output})" for output in self.outputs]

    def scaled(self) -> list[bool]:
        return [not self.onehot] * self.width

    def buckets(self, column: TextColumn) -> np.ndarray:
        """Each row's bucket (N,) int64: its category's position, else the shared bucket."""
        shared = len(self.categories)
        position = {text: k for k, text in enumerate(self.categories)}
        of_text = np.array([position.get(text, shared) for text in column.texts] + [position.get(MISSING_TEXT, shared)],
                           dtype=np.int64)
        return of_text[column.codes]  # (code -1, missing, picks the last entry)


class TableEncoder:
    """The raw feature columns → X (N, D_in), as learned from the training split (see the
    module docstring).  ``codings`` are in the table's column order."""

    def __init__(self, codings: list):
        self.codings = codings

    # ------------------------------------------------------------ facts
    @property
    def columns(self) -> list[str]:
        """The raw feature columns, in order."""
        return [coding.name for coding in self.codings]

    @property
    def categorical(self) -> list[str]:
        return [c.name for c in self.codings if isinstance(c, CategoryCoding)]

    @property
    def width(self) -> int:
        """D_in: the encoded features."""
        return sum(coding.width for coding in self.codings)

    def output_names(self) -> list[str]:
        return [name for coding in self.codings for name in coding.output_names()]

    def scaled(self) -> np.ndarray:
        """(D_in,) bool: the encoded features that are standardised (numbers, target means)."""
        return np.array([s for coding in self.codings for s in coding.scaled()], dtype=bool)

    # ------------------------------------------------------------ learning
    @classmethod
    def fit(cls, columns: dict, target: np.ndarray, min_category_rows: int, target_names: list[str],
            rows: np.ndarray | None = None) -> "TableEncoder":
        """Learn the codings from the training ``rows`` (None: all) of ``columns`` ({name:
        number column or TextColumn}, each (N,)) and their ``target`` (rows, T) float64: a
        classifier's one-hot labels (binary: the second class's column alone, T = 1), a
        regressor's targets; ``target_names`` (T,) name the target means' features.  (One
        column's training rows are taken at a time: never a copy of the whole table.)"""
        codings = []
        for name, column in columns.items():
            column = _rows_of(column, rows)
            if isinstance(column, TextColumn):
                codings.append(_fit_category(name, column, target, min_category_rows, target_names))
            else:
                missing = np.isnan(column)
                present = column[~missing]
                median = float(np.median(present)) if len(present) else 0.0
                codings.append(NumberCoding(name, median, bool(missing.any())))
        return cls(codings)

    def cross_fitted(self, columns: dict, target: np.ndarray, seed: int, rows: np.ndarray | None = None,
                     dtype=np.float64) -> list[tuple[int, np.ndarray]]:
        """The training rows' own target-mean features, cross-fitted: [(first feature, values
        (rows, width))] for each target-coded column, ``rows`` (None: all) of ``columns`` and
        their ``target``.  Rows are dealt into TARGET_FOLDS folds by a permutation of
        ``seed``; a row's values are its bucket's smoothed means over the other folds, so
        that its own target is never in its feature."""
        n = len(target)
        fold = np.empty(n, dtype=np.int64)
        fold[np.random.default_rng(seed).permutation(n)] = np.arange(n) % TARGET_FOLDS
        found, start = [], 0
        for coding in self.codings:
            if isinstance(coding, CategoryCoding) and not coding.onehot:
                buckets = coding.buckets(_rows_of(columns[coding.name], rows))
                values = np.empty((n, coding.width), dtype=dtype)  # (X's dtype: rounded once, as there)
                for k in range(TARGET_FOLDS):
                    held, rest = fold == k, fold != k
                    values[held] = _smoothed_means(buckets[rest], target[rest], len(coding.categories) + 1)[buckets[held]]
                found.append((start, values))
            start += coding.width
        return found

    # ------------------------------------------------------------ applying
    def transform(self, columns: dict, dtype=np.float64, out: np.ndarray | None = None,
                  encoded=None) -> np.ndarray:
        """X (N, D_in) of ``dtype`` (into ``out`` when given) from ``columns`` ({name: a
        number column or TextColumn}, the raw columns by name; extra ones are ignored), block
        by block of TRANSFORM_ROWS rows, so that temporaries stay a block's and X's pages are
        written in order; ``encoded(rows)`` after each block, with the rows encoded so far."""
        n = len(next(iter(columns.values()))) if columns else 0
        X = np.empty((n, self.width), dtype=dtype) if out is None else out
        tables = [None if isinstance(coding, NumberCoding) else coding.table.astype(X.dtype) for coding in self.codings]
        for lo in range(0, n, TRANSFORM_ROWS):
            hi = min(lo + TRANSFORM_ROWS, n)
            start = 0
            for coding, table in zip(self.codings, tables):
                column = _row_range(columns[coding.name], lo, hi)
                if isinstance(coding, NumberCoding):  # (written in place: no temporary of float64s)
                    missing = np.isnan(column)
                    X[lo:hi, start] = column
                    X[lo:hi, start][missing] = coding.median
                    if coding.indicator:
                        X[lo:hi, start + 1] = missing
                else:  # (each row's bucket's features, gathered straight into X)
                    np.take(table, coding.buckets(column), axis=0, mode="clip",
                            out=X[lo:hi, start : start + coding.width])
                start += coding.width
            if encoded is not None:
                encoded(hi)
        return X

    # ------------------------------------------------------------ the model file
    def to_json(self) -> list[dict]:
        """The codings as JSON (the model file's ``table`` metadata); floats as Python's repr,
        which round-trips float64 exactly."""
        document = []
        for coding in self.codings:
            if isinstance(coding, NumberCoding):
                document.append({"name": coding.name, "kind": "number", "median": coding.median,
                                 "indicator": coding.indicator})
            else:
                document.append({"name": coding.name, "kind": "category", "categories": coding.categories,
                                 "coding": "onehot" if coding.onehot else "target_mean",
                                 "table": coding.table.tolist(), "outputs": coding.outputs})
        return document

    @classmethod
    def from_json(cls, document: list[dict]) -> "TableEncoder":
        """The inverse of to_json; ValueError naming what a document lacks."""
        codings = []
        try:
            for entry in document:
                if entry["kind"] == "number":
                    codings.append(NumberCoding(str(entry["name"]), float(entry["median"]), bool(entry["indicator"])))
                elif entry["kind"] == "category":
                    table = np.asarray(entry["table"], dtype=np.float64)
                    categories = [str(text) for text in entry["categories"]]
                    if table.ndim != 2 or table.shape[0] != len(categories) + 1:
                        raise ValueError(f"column {entry['name']!r}: its table does not match its categories")
                    codings.append(CategoryCoding(str(entry["name"]), categories, table,
                                                  entry["coding"] == "onehot", list(entry.get("outputs", []))))
                else:
                    raise ValueError(f"column {entry.get('name')!r} is of unknown kind {entry['kind']!r}")
        except (KeyError, TypeError) as err:
            raise ValueError(f"the table encoding is malformed ({err})") from None
        return cls(codings)


def _fit_category(name: str, column: TextColumn, target: np.ndarray, min_rows: int,
                  target_names: list[str]) -> CategoryCoding:
    """A categorical column's coding from its training rows (see the module docstring)."""
    counts = np.bincount(column.codes + 1, minlength=len(column.texts) + 1)  # (index 0: missing)
    kept = [text for text, count in zip(column.texts, counts[1:]) if count >= min_rows]
    kept.sort()
    if counts[0]:
        kept.append(MISSING_TEXT)  # (a missing cell is a category of its own whenever training saw one)
    coding = CategoryCoding(name, kept, np.zeros((len(kept) + 1, 0)), onehot=True)
    buckets = coding.buckets(column)
    if len(kept) + 1 <= ONEHOT_MAX_CATEGORIES:
        shared_rows = bool((buckets == len(kept)).any())
        coding.table = np.eye(len(kept) + 1)[:, : len(kept) + shared_rows]
        return coding
    coding.onehot, coding.outputs = False, list(target_names)
    coding.table = _smoothed_means(buckets, target, len(kept) + 1)
    return coding


def _smoothed_means(buckets: np.ndarray, target: np.ndarray, n_buckets: int) -> np.ndarray:
    """(n_buckets, T): each bucket's mean of ``target`` (N, T), pulled towards the overall
    mean by PRIOR_ROWS rows of it: (Σ target + PRIOR_ROWS · mean) / (rows + PRIOR_ROWS)."""
    prior = target.mean(axis=0) if len(target) else np.zeros(target.shape[1])
    rows = np.bincount(buckets, minlength=n_buckets).astype(np.float64)
    sums = np.stack([np.bincount(buckets, weights=target[:, t], minlength=n_buckets)
                     for t in range(target.shape[1])], axis=1)
    return (sums + PRIOR_ROWS * prior) / (rows + PRIOR_ROWS)[:, None]


def training_target(y, task: str) -> tuple[np.ndarray, list[str]]:
    """(what the target means average (N, T), the names of those T means) for training
    labels or targets y (N,) or (N, K): a classifier's classes (sorted, as the model's) as
    one-hot columns — binary: the second class's alone — or a regressor's targets."""
    if task == "regression":
        target = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        return target, (["target"] if np.ndim(y) == 1 else [f"target {k}" for k in range(target.shape[1])])
    classes, y_idx = np.unique(y, return_inverse=True)
    onehot = np.zeros((len(y_idx), len(classes)))
    onehot[np.arange(len(y_idx)), y_idx] = 1.0
    if len(classes) == 2:
        return onehot[:, 1:], [str(classes[1])]
    return onehot, [str(c) for c in classes]


def fit_table(columns: dict, y, task: str, min_category_rows: int, seed: int, dtype=np.float64,
              rows: np.ndarray | None = None, encoded=None) -> tuple[TableEncoder, np.ndarray]:
    """(a TableEncoder learned from the training ``rows`` of ``columns`` (None: every row)
    and their labels or targets y[rows], every row encoded by it, X (N, D_in) of ``dtype``),
    the training rows' target means cross-fitted with ``seed`` (TableEncoder.cross_fitted).
    ``encoded``: as TableEncoder.transform's, after which the columns' rows encoded so far are
    not read again (the caller may free them)."""
    target, names = training_target(np.asarray(y) if rows is None else np.asarray(y)[rows], task)
    encoder = TableEncoder.fit(columns, target, min_category_rows, names, rows)
    cross_fitted = encoder.cross_fitted(columns, target, seed, rows, dtype)
    X = encoder.transform(columns, dtype, encoded=encoded)
    for start, values in cross_fitted:
        X[slice(None) if rows is None else rows, start : start + values.shape[1]] = values
    return encoder, X


# Rows TableEncoder.transform encodes at a time.
TRANSFORM_ROWS = 1 << 16


def _row_range(column, lo: int, hi: int):
    """A raw column's rows lo..hi-1 (a view)."""
    return TextColumn(column.codes[lo:hi], column.texts) if isinstance(column, TextColumn) else column[lo:hi]


def _rows_of(column, rows: np.ndarray | None):
    """A raw column's ``rows`` (None: the column itself)."""
    if rows is None:
        return column
    return column.take(rows) if isinstance(column, TextColumn) else column[rows]


def table_columns(X, names: list[str], categorical: list[str]) -> dict:
    """The raw columns ``names`` of a table, as TableEncoder.transform takes them: from a
    pandas DataFrame, a pyarrow Table or a mapping {name: values} by name (others ignored),
    or from a 2-D array by position (its columns in that order).  ``categorical`` ones
    become TextColumns, the others float64 (NaN where missing).  ValueError naming a column
    the table lacks, or a text value where the model was trained on numbers."""
    if isinstance(X, dict) or hasattr(X, "columns") or hasattr(X, "column_names"):
        available = list(X.column_names) if hasattr(X, "column_names") else [str(c) for c in (
            X.columns if hasattr(X, "columns") else X.keys())]
        absent = [name for name in names if name not in available]
        if absent:
            raise ValueError(f"X has no column {', '.join(map(repr, absent[:8]))}, which the model was trained with")
        keys = list(X.columns) if hasattr(X, "columns") and not isinstance(X, dict) else None
        def column(name):
            if hasattr(X, "column_names"):
                return X.column(name)
            return X[keys[[str(k) for k in keys].index(name)]] if keys is not None else X[name]
    else:
        array = np.asarray(X) if np.ndim(X) == 2 else None
        if array is not None and array.dtype.kind not in "biuf":
            array = array.astype(object)  # (text beside numbers: each cell as it is)
        if array is None or array.shape[1] != len(names):
            raise ValueError(f"X must be a table of the model's {len(names)} columns "
                             f"({', '.join(map(repr, names[:8]))}{', ...' if len(names) > 8 else ''}): a pandas "
                             "DataFrame, or a 2-D array of them in that order")
        def column(name):
            return array[:, names.index(name)]
    text = set(categorical)
    return {name: (_text_column(column(name)) if name in text else _number_column(column(name), name))
            for name in names}


def _text_column(values) -> TextColumn:
    """A TextColumn from a column's values: a pandas Series (factorized), a pyarrow column
    (dictionary-encoded) or any 1-D values."""
    if isinstance(values, TextColumn):
        return values
    if hasattr(values, "factorize"):  # (pandas: each distinct value once, then to text)
        codes, uniques = values.factorize()
        return _merged(np.asarray(codes, dtype=np.int64), [category_text(u) for u in np.asarray(uniques, dtype=object)])
    if hasattr(values, "dictionary_encode"):  # (pyarrow)
        encoded = values.dictionary_encode()
        if hasattr(encoded, "combine_chunks"):
            encoded = encoded.combine_chunks()
        codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
        return _merged(codes, category_texts(encoded.dictionary))
    return TextColumn.from_values(values)


def _merged(codes: np.ndarray, texts: list[str | None]) -> TextColumn:
    """A TextColumn from codes into texts that may repeat (3 and 3.0 are both "3") or be
    missing (None): each text once, missing codes -1."""
    index, distinct, remap = {}, [], np.empty(len(texts) + 1, dtype=np.int64)
    for k, text in enumerate(texts):
        if text is None:
            remap[k] = -1
        else:
            remap[k] = index.setdefault(text, len(distinct))
            if remap[k] == len(distinct):
                distinct.append(text)
    remap[-1] = -1
    return TextColumn(remap[codes], distinct)


def _number_column(values, name: str) -> np.ndarray:
    """A number column (N,) float64, NaN where missing, from a column's values; ValueError
    naming the column when a value is text."""
    if hasattr(values, "to_numpy") and hasattr(values, "dtype") and not hasattr(values, "dictionary_encode"):
        try:  # (pandas, its nullable types included: NA becomes NaN)
            return np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
        except (TypeError, ValueError):
            values = values.to_numpy(dtype=object)
    if hasattr(values, "to_numpy"):  # (pyarrow)
        values = values.to_numpy(zero_copy_only=False)
    array = np.asarray(values)
    if array.dtype.kind in "biuf":
        return array.astype(np.float64)
    numbers = np.empty(len(array))
    for i, value in enumerate(array.tolist()):
        if value is None or type(value).__name__ in ("NAType", "NaTType"):
            numbers[i] = np.nan
            continue
        try:
            numbers[i] = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"column {name!r} holds {value!r}, but the model was trained on numbers there") from None
    return numbers
