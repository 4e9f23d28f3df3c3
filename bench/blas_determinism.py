"""Does OpenBLAS give bit-identical GEMM results with 1 and 2 threads?  (It does not, always.)

    python bench/blas_determinism.py

For GEMM shapes that numbamlp's training steps use, computes C = A·B two ways and counts
the elements that differ between 1 and 2 threads:
- "OpenBLAS": one call to scipy's OpenBLAS (what Numba's np.dot uses) with the BLAS
  limited to 1 and then 2 threads;
- "numbamlp": the cpu backend's _gemm, whose blocks depend on the shape alone, on 1 and
  then 2 of Numba's threads.
Run it with and without OPENBLAS_CORETYPE to see both kernel families.
"""

import numba
import numpy as np
import scipy.linalg.cython_blas  # noqa: F401  (load scipy's OpenBLAS, so the limits reach it)
from numba import njit
from threadpoolctl import threadpool_info, threadpool_limits

SHAPES = [(64, 64, 64), (128, 64, 64), (256, 64, 32), (256, 64, 64), (512, 128, 784), (512, 784, 128),
          (1024, 256, 1024), (2048, 1024, 2048)]


@njit
def matmul(out, a, b):
    np.dot(a, b, out)


def main():
    rng = np.random.default_rng(0)
    cores = sorted({p.get("architecture") for p in threadpool_info() if p["user_api"] == "blas"})
    print(f"OpenBLAS kernels: {', '.join(map(str, cores))}")
    print(f"{'m, k, n':<20} {'OpenBLAS: 1 vs 2 threads':>26} {'numbamlp: 1 vs 2 threads':>26} {'blocks':>7}")
    blas_results = {}
    for m, k, n in SHAPES:
        A = rng.normal(size=(m, k)).astype(np.float32)
        B = rng.normal(size=(k, n)).astype(np.float32)
        results = []
        for threads in (1, 2):
            with threadpool_limits(threads, user_api="blas"):
                C = np.empty((m, n), np.float32)
                matmul(C, A, B)
                results.append(C)
        blas_results[m, k, n] = (A, B, int(np.count_nonzero(results[0] != results[1])))
    from numbamlp.kernels import cpu_backend  # pins scipy's BLAS to one thread from here on

    for (m, k, n), (A, B, blas_differing) in blas_results.items():
        results = []
        for threads in (1, 2):
            numba.set_num_threads(threads)
            C = np.empty((m, n), np.float32)
            cpu_backend._gemm(C, A, cpu_backend.AS_IS, B, cpu_backend.AS_IS, 1.0, 0.0, np.empty(2, np.float32))
            results.append(C)
        ours = int(np.count_nonzero(results[0] != results[1]))
        print(f"{f'{m}, {k}, {n}':<20} {f'{blas_differing} of {m * n}':>26} {f'{ours} of {m * n}':>26} "
              f"{cpu_backend.gemm_blocks(m, n, k):>7}")


if __name__ == "__main__":
    main()
