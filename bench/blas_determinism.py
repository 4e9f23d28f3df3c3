"""Does OpenBLAS give bit-identical GEMM results with 1 and 2 threads?  (It does not, always.)

    python bench/blas_determinism.py

For GEMM shapes that numbamlp's training steps use, computes C = A·B through the same
path the cpu backend takes (Numba's np.dot → scipy's OpenBLAS) with the BLAS limited to 1
and then 2 threads, and counts the elements that differ.  Run it with and without
OPENBLAS_CORETYPE to see both kernel families.
"""

import numpy as np
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
    print(f"{'m, k, n':<20} {'elements differing (1 vs 2 threads)':>38}")
    for m, k, n in SHAPES:
        A = rng.normal(size=(m, k)).astype(np.float32)
        B = rng.normal(size=(k, n)).astype(np.float32)
        results = []
        for threads in (1, 2):
            with threadpool_limits(threads, user_api="blas"):
                C = np.empty((m, n), np.float32)
                matmul(C, A, B)
                results.append(C)
        differing = int(np.count_nonzero(results[0] != results[1]))
        print(f"{f'{m}, {k}, {n}':<20} {differing:>20} of {m * n}")


if __name__ == "__main__":
    main()
