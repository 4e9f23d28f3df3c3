"""What `numbamlp info` reports: versions, backends, threads, BLAS and the compile cache."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from numbamlp.kernels import usable_cores
from numbamlp.text import counted


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def cuda_status() -> str:
    """present / simulator / absent, without failing when numba.cuda is missing."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return "simulator (NUMBA_ENABLE_CUDASIM=1)"
    try:
        from numba import cuda
    except Exception as err:  # numba-cuda not installed or broken
        return f"absent ({type(err).__name__})"
    try:
        return "present" if cuda.is_available() else "absent (no GPU or driver)"
    except Exception as err:
        return f"absent ({type(err).__name__})"


def compile_cache_location(cpu_backend) -> str:
    """Where Numba keeps the compiled kernels: beside the package, or, when that directory is
    read-only, a user-wide cache directory (Numba's own fallback), or NUMBA_CACHE_DIR."""
    try:
        cache = cpu_backend.stack_step._cache
        locator = type(cache._impl.locator).__name__
        kind = {"InTreeCacheLocator": "beside the package",
                "UserWideCacheLocator": "user cache: the package directory is not writable",
                "UserProvidedCacheLocator": "NUMBA_CACHE_DIR"}.get(locator, locator)
        return f"{cache._cache_path} ({kind})"
    except AttributeError:  # Numba internals moved: say what the configuration says
        import numba

        return numba.config.CACHE_DIR or str(Path(cpu_backend.__file__).parent / "__pycache__")


def cache_notice() -> str | None:
    """A one-line notice when Numba could not cache beside the package (a read-only install)
    and fell back to a user-wide cache directory; None otherwise."""
    from numbamlp.kernels import BackendUnavailable, get_backend

    try:
        cache = getattr(get_backend("cpu").stack_step, "_cache", None)
    except BackendUnavailable:  # (no compiled kernels, no cache to speak of)
        return None
    locator = getattr(getattr(cache, "_impl", None), "locator", None)
    if type(locator).__name__ != "UserWideCacheLocator":
        return None
    return (f"note: the package directory is read-only; compiled kernels are cached in "
            f"{cache._cache_path} instead")


def environment_info() -> dict:
    import numpy as np

    report = {
        "numbamlp": _version("numbamlp"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": _version("numba"),
        "scipy": _version("scipy"),
        "scikit-learn": _version("scikit-learn"),
        "cores": usable_cores(),
    }
    backends = ["numpy: available", "reference: available"]
    try:
        import numba

        from numbamlp.kernels import get_backend
        from numbamlp.kernels.pool import thread_choice, wait_policy

        cpu = get_backend("cpu")
        probe = np.zeros((1, 1))
        cpu.relu_forward(probe, probe, 0.0)  # runs one parallel region so the layer is chosen
        backends.insert(0, "cpu: available (Numba)")
        report["numba_threads"] = numba.get_num_threads()
        report["threading_layer"] = numba.threading_layer()
        report["thread_wait_policy"] = wait_policy()
        report["default_threads"] = thread_choice()
        report["compile_cache"] = compile_cache_location(cpu)
    except Exception as err:
        backends.insert(0, f"cpu: unavailable ({err})")
    backends.append(f"cuda: {cuda_status()}")
    report["backends"] = backends
    try:
        from threadpoolctl import threadpool_info

        report["blas"] = [
            f"{pool.get('internal_api')} {pool.get('version')} ({counted(pool.get('num_threads'), 'thread')}, "
            f"{pool.get('threading_layer', 'n/a')})"
            for pool in threadpool_info() if pool.get("user_api") == "blas"
        ] or ["none found"]
    except ImportError:
        report["blas"] = ["unknown (threadpoolctl not installed)"]
    return report
