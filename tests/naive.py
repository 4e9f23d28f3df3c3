"""Shared test helpers (plain functions and constants; fixtures are in conftest.py):
tolerances and a comparison that shows the worst element, a real ``numbamlp`` process and
its one-line errors, small files and data sets several test modules write."""

from __future__ import annotations

import subprocess
import sys

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


# ---------------------------------------------------------------- the command line, as a user runs it
NUMBAMLP = [sys.executable, "-m", "numbamlp.cli.main"]
# train flags for a run that only has to exist: one epoch (FEW) or two (QUICK) of a small network
FEW = ["--epochs", "1", "--hidden", "8", "--quiet"]
QUICK = ["--epochs", "2", "--hidden", "16", "--quiet"]


def numbamlp(*args, cwd, timeout=300, env=None) -> subprocess.CompletedProcess:
    """``numbamlp ARGS`` in a real process started in ``cwd`` (text output captured); the
    command line in this process is conftest's ``cli`` fixture."""
    return subprocess.run([*NUMBAMLP, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=env)


def signalled_once_written(args, written, signal_number, wait_s: float = 120) -> tuple[int, str]:
    """Start ``numbamlp ARGS``, send it ``signal_number`` once the file ``written`` exists
    (a sweep's first rows), and return its exit code and stderr."""
    import time

    process = subprocess.Popen([*NUMBAMLP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + wait_s
    while not written.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal_number)
    _, err = process.communicate(timeout=wait_s)
    return process.returncode, err


def assert_one_line_error(run, exit_code, *phrases) -> None:
    """``run`` (a CompletedProcess) exited ``exit_code`` with one "Error..." line on stderr,
    no traceback, the line holding every phrase."""
    assert run.returncode == exit_code, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, run.stderr
    for phrase in phrases:
        assert phrase in errors[0], errors[0]


def write_csv(path, header, rows):
    """``path`` holding a header line and ``rows``, comma-separated, each cell as str()."""
    path.write_text(",".join(header) + "\n" + "".join(",".join(str(v) for v in row) + "\n" for row in rows))
    return path


def labelled_in_the_middle(tmp_path):
    """A CSV of 60 rows: features a, b, c with the label column between a and b."""
    values = np.random.default_rng(7).normal(size=(60, 3))  # (its own generator: the same file in any test order)
    return write_csv(tmp_path / "mid.csv", ["a", "label", "b", "c"],
                     [[f"{p:.4f}", int(p > 0), f"{q:.4f}", f"{r:.4f}"] for p, q, r in values])


# ---------------------------------------------------------------- the user reports' small problem
# What the reports of 2026-11-30 were reproduced on: X (40, 3) standard normal and y (40,) in
# 3 classes, drawn from REPORTS_RNG (one test draws more labels from it), and a one-epoch
# config.  A module imports them as X, y (and rng) for the reports' tests as they were written.
REPORTS_RNG = np.random.default_rng(0)
REPORTS_X = REPORTS_RNG.normal(size=(40, 3))
REPORTS_Y = REPORTS_RNG.integers(0, 3, 40)
ONE_EPOCH = {"epochs": 1, "model": {"hidden": [6]}}


def blowing_up():
    """X (60, 4) of standard deviation 100: unscaled, so that learning rates blow weights up."""
    return np.random.default_rng(0).normal(size=(60, 4)) * 100


def wait_for(predicate, timeout: float = 120, what: str = "condition"):
    """``predicate()``'s first true value, asked every 50 ms; AssertionError naming ``what``
    after ``timeout`` seconds (a server's job, a page's element, a cluster's worker)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
