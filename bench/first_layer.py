"""The first layer's product two ways, the measurement behind kernels.TRANSPOSED_INPUT_MAX.

    python bench/first_layer.py [--rounds 5] [--shapes 128x32x64,256x128x784,...]

The cpu step computes a hidden layer's pre-activations feature-major, Aᵀ (H, B) = W (H, D)
· Xᵀ.  X (B, D) arrives batch-major, so BLAS is asked either for W·Xᵀ with X transposed
in the call (column-major "TN"), or for W·(Xᵀ) with a transposed copy of X made first
(plain "NN").  Shapes are H×B×D.  Each way runs in a compiled loop of single-threaded calls
(cpu_backend._gemm on one thread, as a stack member's step calls it), the two interleaved
round by round; the table shows each way's median µs per call (the copy included) and
whether the two give the same bits.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from numba import njit

import numbamlp.kernels.cpu_backend as cpu
from numbamlp.kernels import TRANSPOSED_INPUT_MAX

SHAPES = "64x32x64,128x32x64,256x32x64,100x32x30,32x256x20,128x128x64,128x256x64,128x32x784,512x128x784"


@njit(cache=False)
def _in_the_call(n, AT, W, X, scalars):
    for _ in range(n):
        cpu._gemm(AT, W, cpu.AS_IS, X, cpu.TRANSPOSED, 1.0, 0.0, scalars, False)


@njit(cache=False)
def _copy_first(n, AT, W, X, XT, scalars):
    for _ in range(n):
        cpu._transpose(XT, X)
        cpu._gemm(AT, W, cpu.AS_IS, XT, cpu.AS_IS, 1.0, 0.0, scalars, False)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--shapes", default=SHAPES, help="H×B×D, comma-separated")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    scalars = np.zeros(2, np.float32)
    print(f"float32, one thread, median µs per call over {args.rounds} interleaved rounds; "
          f"TRANSPOSED_INPUT_MAX = {TRANSPOSED_INPUT_MAX:,} (H·B·D)")
    print(f"{'H x B x D':>16} {'H·B·D':>11} {'X^T in the call':>16} {'copy, then W·X^T':>17} {'ratio':>6}  same bits")
    for shape in args.shapes.split(","):
        H, B, D = (int(v) for v in shape.split("x"))
        W, X = rng.normal(size=(H, D)).astype(np.float32), rng.normal(size=(B, D)).astype(np.float32)
        XT, first, second = np.empty((D, B), np.float32), np.empty((H, B), np.float32), np.empty((H, B), np.float32)
        _in_the_call(1, first, W, X, scalars)
        _copy_first(1, second, W, X, XT, scalars)
        same = np.array_equal(first, second)
        n = max(20, int(2e8 / (2 * H * B * D)))
        times = {"call": [], "copy": []}
        for _ in range(args.rounds):
            start = time.perf_counter()
            _in_the_call(n, first, W, X, scalars)
            times["call"].append((time.perf_counter() - start) / n * 1e6)
            start = time.perf_counter()
            _copy_first(n, second, W, X, XT, scalars)
            times["copy"].append((time.perf_counter() - start) / n * 1e6)
        call, copy = statistics.median(times["call"]), statistics.median(times["copy"])
        print(f"{shape:>16} {H * B * D:>11,} {call:>16.2f} {copy:>17.2f} {copy / call:>6.2f}  {same}")


if __name__ == "__main__":
    main()
