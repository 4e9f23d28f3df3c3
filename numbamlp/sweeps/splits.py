"""The data a sweep's members train on: the splits of each distinct data setting, prepared
once, and what ``sweep.json`` records of the data (files' size and modification time, or
the arrays' hash) so that a resume trains on the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from numbamlp.config import TrainConfig
from numbamlp.sweeps.errors import SweepError


def data_file_stamps(configs: list[TrainConfig]) -> dict[str, list[int]]:
    """Every member's data files with their size and modification time (data.data_files),
    which a resumed sweep checks."""
    from numbamlp.data import data_files

    stamps: dict[str, list[int]] = {}
    for config in configs:
        stamps.update(data_files(config.data))
    return stamps


def data_sets(configs: list[TrainConfig]) -> dict[str, TrainConfig]:
    """{split key (numbamlp.data.split_key): its first member's config}: the splits a sweep
    prepares (a grid over a data.* setting, or over early stopping on a table, has several)."""
    from numbamlp.data import split_key

    first: dict[str, TrainConfig] = {}
    for config in configs:
        first.setdefault(split_key(config), config)
    return first


def checked_arrays(data, task: str) -> tuple[np.ndarray, np.ndarray]:
    """``sweep(data=(X, y))``'s arrays, checked."""
    from numbamlp.data import check_arrays

    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise SweepError(f"data must be a pair (X, y) of arrays, or None for the base config's data settings; "
                         f"got {type(data).__name__}")
    return check_arrays(np.asarray(data[0]), np.asarray(data[1]), "data", dtype=None, task=task)


def arrays_stamp(X: np.ndarray, y: np.ndarray) -> dict:
    """Shapes, dtypes and a SHA-256 of ``sweep(data=(X, y))``'s arrays, which sweep.json keeps
    so that a resume can tell the same arrays from others."""
    import hashlib

    digest = hashlib.sha256()
    for array in (X, y):
        if array.dtype.kind == "O":  # (labels as Python objects: their text)
            digest.update("\0".join(map(str, array.tolist())).encode())
        else:
            digest.update(np.ascontiguousarray(array).data)
    return {"X": [list(X.shape), str(X.dtype)], "y": [list(y.shape), str(y.dtype)], "sha256": digest.hexdigest()}


def other_arrays(directory: Path, recorded: dict | None, given: dict | None) -> str:
    """Why a resume is refused when its data is not the sweep's: arrays missing, extra or changed."""
    if given is None:
        return (f"{directory} was trained on arrays given as sweep(data=(X, y)): resume it from Python with the "
                f"same arrays, sweep(resume=..., data=(X, y))")
    if recorded is None:
        return f"{directory} trains on its configuration's data files: resume it without data"
    return (f"the arrays given differ from those {directory} was trained on (X {recorded['X'][0]} {recorded['X'][1]}, "
            f"y {recorded['y'][0]} {recorded['y'][1]}, or their values); resuming would train its other members "
            "on other rows")


def prepare_data(member: TrainConfig, arrays):
    """The splits members like ``member`` train on: of its data settings' files, or of
    ``arrays`` (X, y) split as its data settings say."""
    from numbamlp.data import prepare_for, split_arrays

    if arrays is None:
        return prepare_for(member)
    X, y = arrays
    return split_arrays(X, y, member.data, member.data.seed, source="data",
                        dtype=member.dtype, task=member.task)
