"""What the readers share: the Dataset they return, the DataNote that reading or splitting
may warn with, the float32 casts they make without overflow warnings, and the one-line
reason of an error they report.

Symbols: N rows, D features.  X (N, D), y (N,).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from numbamlp.arrays import DataError


class DataNote(UserWarning):
    """What reading or splitting the data did that the user did not ask for (the command
    line prints it as a "note:" line)."""


class NotNumbers(DataError):
    """A feature cell that is not a number — text, or a missing value — met by a reader of
    numbers alone: training reads such a table with numbamlp.data.tables instead."""


@dataclass
class Dataset:
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    name: str = ""
    owned: bool = False  # X and X_test are arrays the reader made, which prepare may overwrite
    feature_dtypes: list[str] | None = None  # (D,) what each feature column of the source holds (dtype_kind)


def _quiet_overflow(read):
    """A reader whose casts to float32 may overflow: no RuntimeWarning (the value becomes
    infinite, and the finiteness check says so, with the way out), only that one line."""

    @functools.wraps(read)
    def quiet(*args, **kwargs):
        with np.errstate(over="ignore"):
            return read(*args, **kwargs)

    return quiet


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
