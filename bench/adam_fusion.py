"""Where Adam's extra time goes: the first mnist layer's gradient GEMM and update, three ways.

    python bench/adam_fusion.py [--rounds 11]

For the 784 → 512 layer at batch 128 (the mnist config), median µs per call of
interleaved rounds:
- sgd:       the update inside the GEMM, W ← W − lr·dAᵀX (what the relu + SGD step does);
- separate:  the gradient G = dAᵀX (blocked GEMM), then Adam over the whole layer (what
             the Adam step does);
- in blocks: Adam inside the GEMM's prange, on the thread that just computed each block of
             G, with the GEMM's own blocks (2 column blocks here) and with G cut into row
             chunks small enough to stay in cache (each chunk one BLAS call).
The two Adam forms are checked to give the same bits before timing.  An experiment kept
for the record (bench/README.md): the fused forms were slower and are not in the backend.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
from numba import njit, prange

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import machine_info, seconds_per_call  # noqa: E402

from numbamlp.kernels.cpu_backend import (  # noqa: E402
    AS_IS, _adam_loop, _gemm, _gemm_block, _gemm_call, adam_update, gemm_blocks,
)

BETA1, BETA2, EPS, STEP = 0.9, 0.999, 1e-8, 10


@njit(nogil=True, error_model="numpy")
def sgd_in_gemm(W, dA, X, scalars, lr):
    _gemm(W, dA, AS_IS, X, AS_IS, -lr, 1.0, scalars)


@njit(nogil=True, error_model="numpy")
def gradient_then_adam(W, m, v, G, dA, X, scalars, lr):
    _gemm(G, dA, AS_IS, X, AS_IS, 1.0, 0.0, scalars)
    adam_update(W.reshape(-1), m.reshape(-1), v.reshape(-1), G.reshape(-1), lr, BETA1, BETA2, EPS, 0.0, False, STEP)


def adam_scalars(lr, dtype):
    """_adam_loop's scalars, folded the way adam_update folds them."""
    t = dtype.type
    return (t(BETA1), t(BETA2), t(lr / (1.0 - BETA1**STEP)), t(1.0 / np.sqrt(1.0 - BETA2**STEP)), t(EPS), t(0.0), t(1.0))


@njit(parallel=True, nogil=True, error_model="numpy")
def adam_in_gemm_blocks(W, m, v, G, dA, X, scalars, adam):
    """G's blocks as _gemm cuts them; each thread runs Adam on the block it just wrote."""
    rows, cols = G.shape
    k = X.shape[0]
    blocks = gemm_blocks(rows, cols, k)
    g, w, mm, vv = G.reshape(-1), W.reshape(-1), m.reshape(-1), v.reshape(-1)
    for block in prange(blocks):
        _gemm_block(block, blocks, rows, cols, k, dA.reshape(-1), dA.shape[1], AS_IS,
                    X.reshape(-1), X.shape[1], AS_IS, g, scalars)
        by_rows = rows >= cols
        longest = rows if by_rows else cols
        size = (longest + blocks - 1) // blocks
        start, stop = block * size, min(longest, (block + 1) * size)
        if by_rows:
            part = slice(start * cols, stop * cols)
            _adam_loop(w[part], mm[part], vv[part], g[part], *adam)
        else:
            for i in range(rows):
                part = slice(i * cols + start, i * cols + stop)
                _adam_loop(w[part], mm[part], vv[part], g[part], *adam)


@njit(parallel=True, nogil=True, error_model="numpy")
def adam_in_row_chunks(W, m, v, G, dA, X, scalars, adam, chunk_rows):
    """G cut into chunks of chunk_rows rows, one BLAS call each, Adam right after."""
    rows, cols = G.shape
    k = X.shape[0]
    g, w, mm, vv = G.reshape(-1), W.reshape(-1), m.reshape(-1), v.reshape(-1)
    for chunk in prange((rows + chunk_rows - 1) // chunk_rows):
        start, stop = chunk * chunk_rows, min(rows, (chunk + 1) * chunk_rows)
        _gemm_call(stop - start, cols, k, dA.reshape(-1)[start * dA.shape[1]:], dA.shape[1], AS_IS,
                   X.reshape(-1), X.shape[1], AS_IS, g[start * cols:], cols, scalars)
        part = slice(start * cols, stop * cols)
        _adam_loop(w[part], mm[part], vv[part], g[part], *adam)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args(argv)
    dtype, n_in, n_out, batch = np.dtype(np.float32), 784, 512, 128
    rng = np.random.default_rng(0)
    W = rng.normal(size=(n_out, n_in)).astype(dtype)
    dA, X = rng.normal(size=(n_out, batch)).astype(dtype), rng.normal(size=(batch, n_in)).astype(dtype)
    m, v, G = np.zeros_like(W), np.zeros_like(W), np.zeros_like(W)
    scalars = np.empty(2, dtype)

    # the same bits from the separate pass and from the fused forms
    results = []
    for fused in (None, "blocks", 64):
        w, mm, vv, g = W.copy(), m.copy(), v.copy(), G.copy()
        if fused is None:
            gradient_then_adam(w, mm, vv, g, dA, X, scalars, 1e-3)
        elif fused == "blocks":
            adam_in_gemm_blocks(w, mm, vv, g, dA, X, scalars, adam_scalars(1e-3, dtype))
        else:
            adam_in_row_chunks(w, mm, vv, g, dA, X, scalars, adam_scalars(1e-3, dtype), fused)
        results.append((w, mm, vv))
    for other in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(results[0], other)), "fused Adam differs"

    lr = 1e-9  # the weights barely move while timing
    variants = {
        "sgd inside the GEMM": (sgd_in_gemm, (W, dA, X, scalars, lr)),
        "gradient, then Adam": (gradient_then_adam, (W, m, v, G, dA, X, scalars, lr)),
        "Adam in the GEMM's blocks": (adam_in_gemm_blocks, (W, m, v, G, dA, X, scalars, adam_scalars(lr, dtype))),
    }
    for chunk_rows in (256, 128, 64, 32, 16):
        variants[f"Adam in {chunk_rows}-row chunks"] = (
            adam_in_row_chunks, (W, m, v, G, dA, X, scalars, adam_scalars(lr, dtype), chunk_rows))
    samples = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (fn, fn_args) in variants.items():
            samples[name].append(seconds_per_call(fn, *fn_args) * 1e6)
    info = machine_info(None)
    print(" ".join(f"{k}={v}" for k, v in info.items()))
    print(f"layer {n_in}->{n_out} batch={batch} float32, gemm_blocks={gemm_blocks(n_out, n_in, batch)}, "
          f"rounds={args.rounds} (medians of interleaved rounds)")
    for name, values in samples.items():
        print(f"{name:<28} {statistics.median(values):8.1f} µs")


if __name__ == "__main__":
    main()
