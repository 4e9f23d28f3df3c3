"""Numba's thread pool, started once, with threads that sleep while they wait.

Why: Numba's default threading layer on Linux is GNU OpenMP (libgomp), whose idle threads
spin for a while (GOMP_SPINCOUNT, 300,000 turns by default) before they sleep, at every
barrier and between parallel loops.  On a quiet machine that saves a wake-up; on a busy
one the spinning thread holds a core that the thread it waits for, descheduled by the
other process, needs.  With one other busy process on 2 cores, whole fits ran 5-25x
slower than on one thread (bench/contention.py; the table and the choice are in
bench/README.md, "A busy machine").  Waiting threads that sleep at once
(OMP_WAIT_POLICY=PASSIVE) took that away and cost nothing measurable on a quiet machine.

OpenMP reads its wait policy once, when its library loads: that is when Numba starts its
pool, so ``start`` sets the policy in this process's environment for that moment only
and puts the environment back as it was (child processes and other libraries loaded later
see the user's environment).  A policy the user set (OMP_WAIT_POLICY, GOMP_SPINCOUNT,
KMP_BLOCKTIME) is theirs: numbamlp then changes nothing.  ``wait_policy`` says which of
these is in force, for ``numbamlp info``.
"""

from __future__ import annotations

import os
import threading

# numbamlp's choice when the environment says nothing: OpenMP threads sleep as soon as
# they wait.  (OMP_WAIT_POLICY is read by GNU's libgomp and by LLVM's and Intel's libomp.)
PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE"}
# The environment variables through which a user chooses OpenMP's waiting themselves.
USERS_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")

_starting = threading.Lock()
_wait_policy: str | None = None  # (set once, by start)


def start() -> None:
    """Start Numba's thread pool (once per process; later calls return at once), with
    PASSIVE waiting unless the user chose otherwise, or the OpenMP library was already
    loaded (then its policy cannot change: ``wait_policy`` says so)."""
    global _wait_policy
    if _wait_policy is not None:
        return
    with _starting:
        if _wait_policy is not None:
            return
        import numba
        from numba.np.ufunc import parallel

        chosen = {name: os.environ[name] for name in USERS_SETTINGS if name in os.environ}
        started_before = parallel._is_initialized or _openmp_loaded()
        if chosen or started_before:
            numba.get_num_threads()  # (starts the pool)
            policy = (", ".join(f"{name}={value}" for name, value in chosen.items()) + " (from the environment)"
                      if chosen else "OpenMP's own (its library was loaded before numbamlp: threads may spin)")
        else:
            os.environ.update(PASSIVE)
            try:
                numba.get_num_threads()
            finally:
                for name in PASSIVE:
                    os.environ.pop(name, None)
            policy = "passive (set by numbamlp)"
        _wait_policy = policy if numba.threading_layer() == "omp" else f"{numba.threading_layer()}'s own"


def wait_policy() -> str:
    """How Numba's idle threads wait, in words: "passive (set by numbamlp)", the user's
    setting, or why neither holds (another threading layer; OpenMP loaded earlier)."""
    start()
    return _wait_policy


def _openmp_loaded() -> bool:
    """Whether an OpenMP runtime that Numba would share is already in this process
    (Linux: mapped in /proc/self/maps; elsewhere not known, so False).  scikit-learn's own
    copy (libgomp-<hash>.so) is a separate library and does not count."""
    try:
        with open("/proc/self/maps") as maps:
            return any(part in line for line in maps for part in ("/libgomp.so", "/libomp.so", "/libiomp5.so"))
    except OSError:
        return False
