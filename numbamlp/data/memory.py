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
    check_room(n_rows * n_features * np.dtype(dtype).itemsize,
               f"{n_rows} rows x {n_features} features need {{gb}} as {np.dtype(dtype).name}", source)
    return np.empty((n_rows, n_features), dtype=dtype)


def check_room(need: int, what: str, source: str) -> None:
    """A DataError when ``need`` bytes are more memory than the machine has available: "{source}:
    {what} but only ... GB ...", ``what`` saying what needs them, "{gb}" where their GB go."""
    available = _available_memory()
    if available is not None and need > available:
        raise DataError(f"{source}: {what.format(gb=f'{need / 1e9:.1f} GB')} but only {available / 1e9:.1f} GB of "
                        "memory is available; train on a sample of the rows, or on a machine with more memory")


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
    """A bigger (rows, D) array, or (rows,) for a column, holding X's first ``used`` rows."""
    width = X.shape[1] if X.ndim == 2 else 1
    bigger = allocate_features(rows, width, X.dtype, source).reshape((rows, *X.shape[1:]))
    bigger[:used] = X[:used]
    return bigger


def release_freed_memory() -> None:
    """Hand the memory freed so far back to the system: arrow's pool's (release_unused) and
    the C library's (glibc's malloc_trim, which returns free pages from the middle of its heap
    too; elsewhere, nothing), so that what is allocated next does not stand on top of it."""
    import ctypes
    import sys

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):  # (a C library without it: musl)
            pass


def column_buffer(rows: int, dtype) -> np.ndarray:
    """np.empty(rows, dtype), in a memory map of its own, so that release_rows can hand the
    rows already used back to the system while the rest is still read."""
    import mmap

    size = max(rows, 1) * np.dtype(dtype).itemsize
    private = getattr(mmap, "MAP_PRIVATE", None)  # (private: pages handed back are freed, not kept as shared memory)
    buffer = mmap.mmap(-1, size) if private is None else mmap.mmap(-1, size, flags=private | mmap.MAP_ANONYMOUS)
    return np.frombuffer(buffer, dtype=dtype, count=max(rows, 1))


def release_rows(values: np.ndarray, stop: int) -> None:
    """Hand the memory pages of values[:stop] back to the system, for an array of
    column_buffer's (else, or without madvise, nothing): they read as zeros after, so
    values[:stop] must be done with."""
    import mmap

    base = values
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    buffer = getattr(base, "obj", None)
    if not isinstance(buffer, mmap.mmap) or not hasattr(buffer, "madvise"):
        return
    start = np.frombuffer(buffer, dtype=np.uint8, count=1).ctypes.data
    end = values.ctypes.data - start + stop * values.itemsize
    end -= end % mmap.PAGESIZE
    if end > 0:
        buffer.madvise(mmap.MADV_DONTNEED, 0, end)
