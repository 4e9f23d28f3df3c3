"""The cpu backend's blocked GEMM: right against numpy, and the same bits on any thread count."""

import subprocess
import sys

import numba
import numpy as np
import pytest

from numbamlp.kernels import cpu_backend
from numbamlp.kernels.cpu_backend import AS_IS, TRANSPOSED, _gemm, gemm_blocks

TWO_THREADS = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 CPU threads")


def operand(rng, rows, cols, transposed, dtype):
    """(M, code): a C-ordered matrix M whose op(M), M (AS_IS) or Mᵀ (TRANSPOSED), is (rows, cols)."""
    shape = (cols, rows) if transposed else (rows, cols)
    return rng.normal(size=shape).astype(dtype), TRANSPOSED if transposed else AS_IS


def as_numpy(operand):
    stored, code = operand
    return stored.T if code == TRANSPOSED else stored


# (m, k, n): one block; rows split in 2 and 4; columns split in 4; single rows and columns
EVEN_SHAPES = [(7, 5, 3), (600, 80, 96), (1100, 64, 300), (40, 300, 1500), (1, 40, 9), (9, 40, 1), (600, 1, 64)]
# Blocks that do not divide the cut side (rows in 2 and 4, columns in 2 and 4): a block size
# rounded down instead of up leaves C's last rows (or columns) uncomputed, which no shape
# above can show.
UNEVEN_SHAPES = [(777, 64, 300), (1103, 64, 300), (40, 300, 777), (40, 300, 1501)]
SHAPES = EVEN_SHAPES + UNEVEN_SHAPES


@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_matches_numpy_with_alpha_beta_and_transposed_operands(m, k, n, transpose_a, transpose_b):
    rng = np.random.default_rng(m * n + k)
    A = operand(rng, m, k, transpose_a, np.float64)
    B = operand(rng, k, n, transpose_b, np.float64)
    C = rng.normal(size=(m, n))
    expected = -0.5 * (as_numpy(A) @ as_numpy(B)) + 0.25 * C
    _gemm(C, *A, *B, -0.5, 0.25, np.empty(2))
    np.testing.assert_allclose(C, expected, rtol=1e-12, atol=1e-12)


def test_the_test_shapes_reach_every_blocking():
    blocks = {(m, n): gemm_blocks(m, n, k) for m, k, n in SHAPES}
    assert blocks[(7, 3)] == 1 and blocks[(600, 96)] == 2 and blocks[(1100, 300)] == 4
    assert blocks[(40, 1500)] == 4  # the longer side, columns here, is cut
    assert blocks[(777, 300)] == 2 and blocks[(1103, 300)] == 4
    assert blocks[(40, 777)] == 2 and blocks[(40, 1501)] == 4


@pytest.mark.parametrize("m, k, n", UNEVEN_SHAPES)
def test_the_uneven_shapes_leave_a_short_last_block(m, k, n):
    blocks = gemm_blocks(m, n, k)
    assert blocks > 1 and max(m, n) % blocks != 0


def test_blocks_depend_on_the_shape_alone_and_grow_with_it():
    assert gemm_blocks(128, 32, 64) == 1  # too little work for a parallel launch
    assert gemm_blocks(512, 128, 784) == 2
    assert gemm_blocks(2048, 1024, 2048) == cpu_backend.GEMM_MAX_BLOCKS


@TWO_THREADS
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_gives_the_same_bits_on_one_and_two_threads(dtype):
    rng = np.random.default_rng(0)
    A = operand(rng, 1024, 784, False, dtype)
    B = operand(rng, 784, 256, True, dtype)
    assert gemm_blocks(1024, 256, 784) > 1
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, 2, 1):
            numba.set_num_threads(threads)
            C = np.empty((1024, 256), dtype)
            _gemm(C, *A, *B, 1.0, 0.0, np.empty(2, dtype))
            results.append(C)
    finally:
        numba.set_num_threads(before)
    assert results[0].tobytes() == results[1].tobytes() == results[2].tobytes()
    np.testing.assert_allclose(results[0], as_numpy(A).astype(np.float64) @ as_numpy(B), rtol=1e-3, atol=1e-3)


def test_importing_the_cpu_backend_runs_scipys_blas_on_one_thread():
    """Numba's threads run the GEMM blocks; a multi-threaded BLAS inside them would
    oversubscribe the cores and make the bits depend on its thread count."""
    import scipy
    from threadpoolctl import threadpool_info

    scipy_home = scipy.__file__.rsplit("scipy", 1)[0]
    scipys = [lib for lib in threadpool_info()
              if lib["user_api"] == "blas" and lib["filepath"].startswith(scipy_home + "scipy")]
    assert scipys and all(lib["num_threads"] == 1 for lib in scipys)


def printed_by(code: str, env=None) -> list[str]:
    """What ``python -c code`` prints in a fresh process, split on whitespace; the process
    must exit 0."""
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    return run.stdout.split()


def test_the_cpu_backend_loads_scipys_blas_without_importing_scipy_linalg():
    """Start-up: the scipy.linalg package cost ~0.15 s of `numbamlp train`; the backend
    loads only its BLAS module, which a later ``import scipy.linalg`` must reuse."""
    code = ("import sys, numpy as np\n"
            "import numbamlp.kernels.cpu_backend as cpu\n"
            "print('scipy.linalg' in sys.modules, 'scipy.special' in sys.modules)\n"
            "A = np.arange(6, dtype=np.float32).reshape(2, 3); C = np.zeros((2, 2), np.float32)\n"
            "cpu._gemm(C, A, cpu.AS_IS, A, cpu.TRANSPOSED, 1.0, 0.0, np.empty(2, np.float32))\n"
            "print(np.array_equal(C, A @ A.T))\n"
            "import scipy.linalg\n"
            "from scipy.linalg import cython_blas\n"
            "print(cython_blas is sys.modules['scipy.linalg.cython_blas'], scipy.linalg.blas.sgemm(1.0, A, A.T).sum())\n")
    assert printed_by(code) == ["False", "False", "True", "True", "83.0"]


@pytest.mark.parametrize("before", ["import scipy.linalg",  # e.g. scikit-learn imported first
                                    "import importlib.machinery; importlib.machinery.EXTENSION_SUFFIXES.clear()"])
def test_scipys_blas_loads_the_usual_way_when_it_must(before):
    """The usual import path: scipy.linalg already imported, or no extension file to load."""
    code = (f"{before}\n"
            "import sys, numpy as np\n"
            "import numbamlp.kernels.cpu_backend as cpu\n"
            "A = np.arange(6, dtype=np.float64).reshape(2, 3); C = np.zeros((2, 2))\n"
            "cpu._gemm(C, A, cpu.AS_IS, A, cpu.TRANSPOSED, 1.0, 0.0, np.empty(2))\n"
            "print(np.array_equal(C, A @ A.T), 'scipy.linalg' in sys.modules)\n")
    assert printed_by(code) == ["True", "True"]


@pytest.mark.slow
def test_cached_kernels_load_in_any_order(tmp_path):
    """A Numba (0.68) caching bug: a caller compiled while its parallel callee came from the
    cache is cached without the hook that starts the thread pool, and running it from the
    cache in a fresh process crashed.  Three fresh processes on an empty cache: a training
    step caches _gemm; affine_forward compiles against the cached _gemm; affine_forward runs
    from the cache (a multi-block product, so the thread pool is used)."""
    import os

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    train = (
        "import numpy as np\n"
        "from numbamlp.trainer import Trainer\n"
        "t = Trainer({'model': {'hidden': [64]}})\n"
        "t.step(np.ones((8, 16), np.float32), np.arange(8) % 2)\n"
    )
    affine = (
        "import numpy as np\n"
        "from numbamlp.kernels import cpu_backend\n"
        "X, W, b = np.ones((256, 784), np.float32), np.ones((512, 784), np.float32), np.zeros(512, np.float32)\n"
        "assert cpu_backend.gemm_blocks(256, 512, 784) > 1\n"
        "out = np.empty((256, 512), np.float32)\n"
        "cpu_backend.affine_forward(out, X, W, b)\n"
        "assert (out == 784).all()\n"
    )
    for code in (train, affine, affine):
        printed_by(code, env)
