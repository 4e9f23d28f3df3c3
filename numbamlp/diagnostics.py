"""What `numbamlp info` reports: versions, backends, threads, BLAS and the compile cache."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

from numbamlp.kernels import usable_cores
from numbamlp.text import counted


@functools.lru_cache(maxsize=None)
def installed_version(package: str) -> str | None:
    """The installed version of ``package`` from its metadata, None when it is not installed;
    looked up once a process (~5 ms each time).  numbamlp's own is pyproject's ``version``,
    the one place it is written (an editable install and a wheel both carry it in their
    metadata): numbamlp.__version__, `numbamlp --version`, `numbamlp info`, model files and
    the service's API document all read it from here or from the same metadata."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


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


def _kernel_cache(cpu_backend) -> tuple[str, str] | None:
    """(directory, kind) of the cache Numba keeps the cpu backend's compiled kernels in, the
    kind being the name of Numba's cache locator that chose the directory; None when there is
    no cache (NUMBA_DISABLE_JIT=1) or Numba's internals moved.

    The one place numbamlp reads Numba's internals: Numba has no public API that says which
    locator it chose — beside the package (InTreeCacheLocator), a user-wide directory when
    the package's is read-only (UserWideCacheLocator), NUMBA_CACHE_DIR
    (UserProvidedCacheLocator) — only the directory (Cache.cache_path).  The locator is the
    cache's ``_impl.locator``; the cache is a compiled kernel's ``_cache`` (every function of
    the cpu backend is cached in the same place; none under NUMBA_DISABLE_JIT=1, where the
    kernels are plain Python and the public name's ``compiled`` is a function)."""
    cache = getattr(getattr(cpu_backend.affine_forward, "compiled", None), "_cache", None)
    locator = getattr(getattr(cache, "_impl", None), "locator", None)
    directory = getattr(cache, "cache_path", None)
    if locator is None or directory is None:
        return None
    return str(directory), type(locator).__name__


def compile_cache_location(cpu_backend) -> str:
    """Where Numba keeps the compiled kernels: beside the package, or, when that directory is
    read-only, a user-wide cache directory (Numba's own fallback), or NUMBA_CACHE_DIR."""
    found = _kernel_cache(cpu_backend)
    if found is None:  # (Numba internals moved: say what the configuration says)
        import numba

        return numba.config.CACHE_DIR or str(Path(cpu_backend.__file__).parent / "__pycache__")
    directory, locator = found
    kind = {"InTreeCacheLocator": "beside the package",
            "UserWideCacheLocator": "user cache: the package directory is not writable",
            "UserProvidedCacheLocator": "NUMBA_CACHE_DIR"}.get(locator, locator)
    return f"{directory} ({kind})"


def cache_notice() -> str | None:
    """A one-line notice when Numba could not cache beside the package (a read-only install)
    and fell back to a user-wide cache directory; None otherwise."""
    from numbamlp.kernels import BackendUnavailable, get_backend

    try:
        found = _kernel_cache(get_backend("cpu"))
    except BackendUnavailable:  # (no compiled kernels, no cache to speak of)
        return None
    if found is None or found[1] != "UserWideCacheLocator":
        return None
    return f"note: the package directory is read-only; compiled kernels are cached in {found[0]} instead"


def environment_info() -> dict:
    import numpy as np

    report = {
        "numbamlp": installed_version("numbamlp") or "not installed",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": installed_version("numba") or "not installed",
        "scipy": installed_version("scipy") or "not installed",
        "scikit-learn": installed_version("scikit-learn") or "not installed",
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
