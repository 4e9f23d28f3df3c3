"""scipy's BLAS for the cpu backend's GEMMs: loaded alone, and pinned to one thread.

numba_xxgemm (kernels/native.py) reaches BLAS through scipy.linalg.cython_blas; the cpu
backend's parallelism is Numba's (kernels/cpu_backend.py, _gemm), so that BLAS runs on one
thread, process-wide.  Nothing here is compiled by Numba.
"""

from __future__ import annotations

import os
import sys


def load_scipy_blas() -> str:
    """Load scipy.linalg.cython_blas, the module through which numba_xxgemm reaches scipy's
    BLAS (Numba looks it up by that name), and return the folder scipy is installed in.
    It is loaded alone from its file and registered under its name (a later ``import
    scipy.linalg`` reuses it): the usual import runs the whole scipy.linalg package first,
    ~0.15 s of a warm start (bench/README.md, "The warm start").
    """
    import importlib.machinery
    import importlib.util

    name = "scipy.linalg.cython_blas"
    scipy_home = importlib.util.find_spec("scipy").submodule_search_locations[0]
    if name in sys.modules:
        return scipy_home
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(scipy_home, "linalg", "cython_blas" + suffix)
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
                return scipy_home
            except ImportError:
                del sys.modules[name]
            break
    importlib.import_module(name)  # an unusual layout: the usual, slower way
    return scipy_home


def pin_blas_to_one_thread(scipy_home: str) -> None:
    """Run the BLAS that _gemm calls (scipy's, installed in ``scipy_home``) on one thread,
    process-wide: the parallelism is Numba's (see _gemm).  numpy's own BLAS is left alone
    when it is a separate library."""
    from threadpoolctl import ThreadpoolController

    blas = ThreadpoolController().select(user_api="blas")
    scipys = [lib for lib in blas.lib_controllers
              if os.path.abspath(lib.filepath).startswith(os.path.dirname(scipy_home) + os.sep + "scipy")]
    for lib in scipys or blas.lib_controllers:
        lib.set_num_threads(1)
