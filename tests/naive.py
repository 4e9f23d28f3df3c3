"""Shared test helpers: tolerances and a comparison that shows the worst element."""

from __future__ import annotations

import numpy as np

# Relative tolerance of a batched kernel against the float64 reference, per dtype.
RTOL = {np.dtype("float64"): 1e-10, np.dtype("float32"): 1e-4}
DTYPES = (np.float64, np.float32)
BACKENDS = ("cpu", "numpy")


def assert_close(actual, expected, dtype, what: str = "", scale: float | None = None) -> None:
    """|actual − expected| ≤ atol + rtol·|expected| elementwise, atol = rtol·scale.

    ``scale`` defaults to max|expected|: entries that cancel to ~0 are judged against the
    array's magnitude, not their own.  Pass the operands' magnitude when the whole array
    is the result of a cancellation (e.g. p − onehot with p ≈ 1).
    """
    rtol = RTOL[np.dtype(dtype)]
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if scale is None:
        scale = np.abs(expected).max(initial=0.0)
    atol = rtol * max(scale, 1e-30)
    excess = np.abs(actual - expected) - (atol + rtol * np.abs(expected))
    if excess.size and excess.max() > 0:
        worst = np.unravel_index(np.argmax(excess), excess.shape)
        raise AssertionError(
            f"{what}: worst element {worst}: got {actual[worst]!r}, expected {expected[worst]!r} "
            f"(rtol {rtol:g}, atol {atol:.3g})"
        )


def col(v):
    """A row of a batch as the reference path's column vector (n, 1), float64."""
    return np.asarray(v, dtype=np.float64).reshape(-1, 1)


def answers_differ_in_threads(answer, batches, threads: int, calls: int) -> list[int]:
    """The batches (indices) for which ``answer(batch)``, called ``calls`` times in each of
    ``threads`` threads started together, differed from its answer alone: [] when calls that
    overlap in time do not disturb one another (a shared workspace would)."""
    import threading

    expected = [answer(batch) for batch in batches]
    failures, start = [], threading.Barrier(threads)

    def work(offset):
        start.wait()
        for i in range(calls):
            k = (i + offset) % len(batches)
            if not np.array_equal(answer(batches[k]), expected[k]):
                failures.append(k)

    workers = [threading.Thread(target=work, args=(offset,)) for offset in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return failures
