"""The columns of a table (a CSV or Parquet file), as both readers take them: which one is
the label (_label_index; in a file given for prediction, _prediction_label), which are a
model's features by name (feature_columns), the labels' values from text or an arrow
column (_labels_from_text, _arrow_labels), the checks that a label column is what the
task needs (_check_label_column, _check_target_column), whether a cell's text is a number
(_is_number), and what to do about a missing feature value (FILL_OR_DROP).

Symbols: N rows.  y (N,) labels.
"""

from __future__ import annotations

import re

import numpy as np

from numbamlp.arrays import DataError


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _holds_numbers(kind) -> bool:
    """Whether an arrow type holds numbers or booleans (what a feature of numbers may hold)."""
    import pyarrow as pa

    return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_decimal(kind))


FILL_OR_DROP = ("fill the missing cells (with the column's median, say) or drop those rows or the column before "
                "training")


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
    codes = None  # (a dictionary column: the rows' codes into its texts, which are read instead of the rows')
    if pa.types.is_dictionary(column.type):
        if isinstance(column, pa.ChunkedArray):
            column = column.unify_dictionaries().combine_chunks()
        codes = column.indices.to_numpy(zero_copy_only=False)
        column = column.dictionary
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return column.to_numpy() if codes is None else column.to_numpy()[codes]
    column = pc.utf8_trim_whitespace(column)
    if text_numbers == "floats":  # (a regressor's targets: cast at C speed)
        try:
            values = pc.cast(column, pa.float64()).to_numpy()
            return values if codes is None else values[codes]
        except pa.ArrowInvalid:
            pass
    classes = pc.unique(column)
    indices = pc.index_in(column, value_set=classes).to_numpy()
    return _labels_from_text(classes.to_pylist(), indices if codes is None else indices[codes], source, text_numbers)


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
