"""From a config's data settings to the splits training uses: prepare and prepare_for
(load, check, split, standardise), the seed of the splits (data_seed), and the data files
a config names, stamped so that a run can tell later whether they changed (data_files,
changed_data_file).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from numbamlp.arrays import DataError
from numbamlp.data.checks import check_classes_are_classes, check_header_applies, check_label_column_applies
from numbamlp.data.columns import _holds_numbers, _is_number, _label_index
from numbamlp.data.csv_files import _first_csv_rows, _header_of
from numbamlp.data.dataset import NotNumbers
from numbamlp.data.formats import file_kind
from numbamlp.data.loading import feature_names, load_dataset
from numbamlp.data.memory import release_freed_memory
from numbamlp.data.splits import Splits, split_arrays, split_rows
from numbamlp.data.tables import ColumnRoles, read_table
from numbamlp.encoding import TextColumn


def prepare(data_config, seed: int, dtype=np.float64, task: str = "classification", task_given: bool = True,
            raw_test: bool = False, table_val_fraction: float = 0.0) -> Splits:
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
    (check_classes_are_classes).  A table (text, missing cells, column roles): read by
    numbamlp.data.tables and encoded by a TableEncoder learned from the training rows
    (_prepare_table); ``raw_test``: Splits.raw_test keeps the test rows' raw columns;
    ``table_val_fraction``: a table's validation fraction when data_config gives neither a
    validation file nor a fraction (training will hold rows out: they must not teach the
    encoding).
    """
    seed = data_seed(data_config, seed)
    sources = (data_config.train, data_config.test, data_config.val)
    check_label_column_applies(data_config.label_column, *sources)
    check_header_applies(data_config.header, *sources)
    roles = ColumnRoles.of(data_config)
    if roles.given or reads_as_table(data_config.train, data_config.label_column, data_config.header):
        return _prepare_table(_with_val_fraction(data_config, table_val_fraction), seed, dtype, task, task_given,
                              roles, raw_test)
    read = dict(label_column=data_config.label_column, dtype=dtype, task=task, header=data_config.header)
    try:
        data = load_dataset(data_config.train, seed, **read)
    except NotNumbers:  # (text or a missing cell past the rows reads_as_table looked at)
        return _prepare_table(_with_val_fraction(data_config, table_val_fraction), seed, dtype, task, task_given,
                              roles, raw_test)
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


def _with_val_fraction(data_config, fraction: float):
    """data_config with val_fraction ``fraction`` where it has no validation rows of its own."""
    if fraction and data_config.val is None and not data_config.val_fraction:
        return data_config.model_copy(update={"val_fraction": fraction})
    return data_config


def reads_as_table(source: str, label_column, header: bool | None) -> bool:
    """Whether a training file is a table for numbamlp.data.tables rather than numbers alone,
    as far as its start shows: a CSV file whose first data row has a feature cell that is
    text or missing, a Parquet file with a feature column of another type than numbers or
    booleans, or one with missing values (from its statistics).  (Text further down a CSV
    file: the reader of numbers says so, NotNumbers, and prepare reads it as a table then.)"""
    from numbamlp.config import names_a_file

    if not names_a_file(source) or not Path(source).is_file() or file_kind(source) not in ("csv", "parquet"):
        return False
    try:
        if file_kind(source) == "parquet":
            return _parquet_is_a_table(source, label_column)
        first, second = _first_csv_rows(source)
        if first is None:
            return False
        names = _header_of(first, second, header, label_column, source)
        row = second if names is not None else first
        if row is None or len(row) != len(first):
            return False
        label = _label_index(label_column, names, len(first), source)
    except (DataError, OSError, ValueError):
        return False  # (the reader that follows says what is wrong)
    return any(not _is_number(cell) for j, cell in enumerate(row) if j != label)


def _parquet_is_a_table(source: str, label_column) -> bool:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(source)
    schema = parquet.schema_arrow
    label = _label_index(label_column, schema.names, len(schema.names), source)
    features = [j for j in range(len(schema.names)) if j != label]
    for j in features:
        kind = schema.field(j).type
        if not _holds_numbers(kind):
            return True
    for group in range(parquet.metadata.num_row_groups):
        for j in features:
            statistics = parquet.metadata.row_group(group).column(j).statistics
            if statistics is not None and statistics.has_null_count and statistics.null_count:
                return True
    return False


def _prepare_table(data_config, seed: int, dtype, task: str, task_given: bool, roles: ColumnRoles,
                   raw_test: bool = False) -> Splits:
    """``prepare`` for a table (numbamlp.data.tables): the columns read by their roles, the
    rows split as split_arrays splits them, a TableEncoder learned from the training rows
    (their target means cross-fitted), every split encoded with it into one (N, D_in) array
    of ``dtype``, then split and standardised as a file of numbers is."""
    from numbamlp.encoding import fit_table

    read = dict(label_column=data_config.label_column, roles=roles, task=task, header=data_config.header,
                dtype=dtype)  # (numbers in the training dtype: a float32 run holds them in 4 bytes, not 8)
    table = read_table(data_config.train, **read)
    y = table.y
    if task == "classification" and not task_given:
        check_classes_are_classes(y, data_config.train)
    held_out = {}
    for kind in ("test", "val"):
        source = getattr(data_config, kind)
        if source is not None:
            held_out[kind] = read_table(source, **read, columns=list(table.columns),
                                        categorical=[name for name, column in table.columns.items()
                                                     if isinstance(column, TextColumn)])
    drawn = split_rows(y, data_config, seed, task, "test" in held_out, "val" in held_out)
    rows, test_rows = drawn[0], drawn[2]
    release_freed_memory()  # (what reading and splitting freed, kept by malloc: not under X's pages too)
    if task == "classification" and len(np.unique(y[rows])) < 2:
        raise DataError(f"{data_config.train}: y has a single class; classification needs at least 2")
    kept = None if not raw_test else held_out["test"].columns if "test" in held_out else table.take(test_rows)
    # (the raw columns' memory handed back block by block as X is filled: the two are not held whole together)
    encoder, X = fit_table(table.columns, y, task, data_config.min_category_rows, seed, dtype, rows,
                           encoded=table.forget_rows)
    test, val = ((encoder.transform(held_out[kind].columns, dtype), held_out[kind].y, getattr(data_config, kind))
                 if kind in held_out else None for kind in ("test", "val"))
    dtypes = table.dtypes
    del table, held_out  # (the raw columns: encoded now, and splitting X needs the room)
    release_freed_memory()
    splits = split_arrays(X, y, data_config, seed, test=test, val=val, dtype=dtype, overwrite=True, task=task,
                          unscaled=~encoder.scaled(), drawn=drawn)
    splits.table, splits.feature_names, splits.feature_dtypes, splits.raw_test = encoder, encoder.columns, dtypes, kept
    release_freed_memory()  # (what splitting freed: training's arrays follow)
    return splits


def prepare_for(config, data_config=None, raw_test: bool = False) -> Splits:
    """The splits a TrainConfig trains on: ``prepare`` with its data settings (or
    ``data_config``), seed, dtype and task — X is read straight into the training dtype.  A
    table whose training holds rows out (early stopping, a threshold chosen on validation
    rows) without validation data of its own holds them out here, before anything is
    learned from the training rows (what a Member would hold out, DEFAULT_VAL_FRACTION)."""
    data_config = config.data if data_config is None else data_config
    return prepare(data_config, config.seed, dtype=config.dtype, task=config.task,
                   task_given="task" in config.model_fields_set, raw_test=raw_test,
                   table_val_fraction=_table_val_fraction(config))


def _table_val_fraction(config) -> float:
    """prepare's ``table_val_fraction`` for a TrainConfig: the rows its training holds out
    (early stopping, a threshold chosen on validation rows)."""
    from numbamlp.config import DEFAULT_VAL_FRACTION

    holds_out = bool(config.early_stopping.patience) or isinstance(config.threshold, str)
    return DEFAULT_VAL_FRACTION if holds_out else 0.0


def split_key(config) -> str:
    """What prepare_for's splits of a TrainConfig depend on, as text: configs with equal
    keys train on the same splits (so a stack of them can share one copy, as each one's
    ``numbamlp train`` alone would read it).  The rows its training holds out count where
    the data may be a table (a built-in set never is) without validation rows of its own."""
    import json

    data = config.data
    if not data.train.startswith("builtin:"):
        data = _with_val_fraction(data, _table_val_fraction(config))
    return json.dumps([data.model_dump(mode="json"), data_seed(config.data, config.seed), config.dtype,
                       config.task, "task" in config.model_fields_set])


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
