"""Memory: the one (N, D) array a reader fills, allocated only when the machine has the
memory for it (else a DataError saying what to do), and grown when a streaming reader's
estimate of the rows fell short.
"""

from __future__ import annotations

import numpy as np

from numbamlp.arrays import DataError


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


def _grown(X: np.ndarray, used: int, rows: int, source: str) -> np.ndarray:
    """A bigger (rows, D) array holding X's first ``used`` rows."""
    bigger = allocate_features(rows, X.shape[1], X.dtype, source)
    bigger[:used] = X[:used]
    return bigger
