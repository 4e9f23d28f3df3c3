"""From a config's data settings to the splits training uses: prepare and prepare_for
(load, check, split, standardise), the seed of the splits (data_seed), and the data files
a config names, stamped so that a run can tell later whether they changed (data_files,
changed_data_file).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from numbamlp.data.checks import check_classes_are_classes, check_header_applies, check_label_column_applies
from numbamlp.data.loading import feature_names, load_dataset
from numbamlp.data.splits import Splits, split_arrays


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


def prepare_for(config, data_config=None) -> Splits:
    """The splits a TrainConfig trains on: ``prepare`` with its data settings (or
    ``data_config``), seed, dtype and task — X is read straight into the training dtype."""
    return prepare(config.data if data_config is None else data_config, config.seed, dtype=config.dtype,
                   task=config.task, task_given="task" in config.model_fields_set)


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
