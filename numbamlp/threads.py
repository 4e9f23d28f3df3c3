"""The threads a fit runs on: a config's ``threads`` for the fit's duration, and numpy's
BLAS kept quiet beside the cpu backend's step."""

from __future__ import annotations

import contextlib

from numbamlp.kernels.pool import look_at_the_next_step, set_numba_threads
from numbamlp.model import one_blas_thread


def set_threads(threads: int, backend: str) -> None:
    """Run ``backend``'s kernels on ``threads`` CPU threads (at most the cores Numba sees).

    cpu: Numba's thread pool (a per-thread setting of the calling thread; the GEMMs run in
    it, scipy's BLAS on one thread, see kernels/cpu_backend.py).  numpy and reference:
    numpy's BLAS, process-wide.  See threads_while for a setting that ends with a fit.
    """
    if backend == "cpu":
        set_numba_threads(threads)
    elif backend in ("numpy", "reference"):
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")


def set_config_threads(config) -> None:
    """A config's ``threads`` on its backend (set_threads) when it sets them; None, the
    default, leaves the threads to the steps (kernels/pool.py).  Trainer.step and
    StackTrainer.step call it once, at their first step (per step it would cost ~3 µs of a
    ~20 µs step); a fit holds them for its own duration instead (threads_while)."""
    if config.threads is not None:
        set_threads(config.threads, config.backend)


@contextlib.contextmanager
def threads_while(threads: int | None, backend: str):
    """A config's ``threads`` for the block (a fit), then the threads as they were: Numba's
    of the calling thread (cpu; None: as many as the steps choose, kernels/pool.py), numpy's
    BLAS (numpy, reference; None: no change)."""
    if (threads is None and backend != "cpu") or backend not in ("cpu", "numpy", "reference"):
        yield
        return
    if backend == "cpu":
        import numba

        before = numba.get_num_threads()
        if threads is not None:  # (None: the steps adapt the threads to the load, kernels/pool.py)
            set_threads(threads, backend)
        try:
            yield
        finally:
            set_numba_threads(before)
            if threads is None:
                look_at_the_next_step()
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def quiet_blas(backend: str):
    """While the cpu backend trains: numpy's BLAS on one thread.  Its GEMMs here are small
    (validation scores), and its idle threads spin long enough after each to take a core from
    the Numba step that follows: a 32-member fit with validation took 3.9 s, 1.3 s with this
    (bench/README.md).  Elsewhere (the numpy backend computes with that BLAS): no change."""
    if backend != "cpu":
        return contextlib.nullcontext()
    return one_blas_thread()  # (shared with scoring: a fit and a predict in two threads both hold it)
