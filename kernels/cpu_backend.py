"""Numba-compiled batched CPU kernels.

Symbols: B batch size, D input features, H hidden width, C classes, K regression outputs.

Same names, argument order and conventions as every backend (see ``numbamlp.kernels``):
outputs first, then inputs, then options; outputs are overwritten (``=``).
Arrays are float32 or float64, C-contiguous, all of one dtype (row slices of a
C-contiguous array qualify); ``y`` is an integer vector with values in [0, C); regression
targets ``Y`` are (B, K) of the scores' dtype.
The kernels trust their inputs: the Python layer above validates shapes and labels.

Threading: Numba's thread pool does all of it.  Each GEMM is cut into blocks by its shape
(never by the thread count) and the blocks run in a ``prange``, each one single-threaded
BLAS call (see ``_gemm``), so the bits of every product, and of the weights, are the same
on any number of threads.  BLAS itself is pinned to one thread when this module is
imported: a multi-threaded BLAS inside Numba's threads would oversubscribe the cores
(bench/README.md, bench/threads.py).  The optimizer
updates (SGD with momentum, Adam) run in fixed chunks on the threads too, past a size;
the other elementwise and per-row kernels are written with ``prange`` but compiled serial
(``_ELEMENTWISE``).  Reductions that feed the weights (the bias gradient, the mean loss)
run in a fixed order.  On one thread (``--threads 1``, or a process forked under OpenMP,
see the end of this module) the same blocks run in a plain loop.
"""

from __future__ import annotations

import contextlib
import math
import threading

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import overload, register_jitable

from numbamlp.kernels import (ACTIVATION_NAMES, CROSS_ENTROPY, LOSS_NAMES, SQUARED_ERROR, STEP_GRADIENTS,
                              TRANSPOSED_INPUT_MAX, negligible_exp)
from numbamlp.kernels.native import float32_from_bits as _float32_from_bits
from numbamlp.kernels.native import thread_count as _thread_count
from numbamlp.kernels.native import xxgemm as _xxgemm
from numbamlp.kernels.blas import load_scipy_blas, pin_blas_to_one_thread
from numbamlp.kernels.cpu_checks import KERNEL_CHECKS, KernelArgumentError, checked  # noqa: F401 (the backend's error)
from numbamlp.kernels.pool import one_thread_in_forked_children
from numbamlp.kernels.pool import start as start_thread_pool
from numbamlp.kernels.rowwise import softmax_crossentropy_row

# One project-wide set of compiler options.  No fastmath: NaN/Inf must stay visible.
# error_model="numpy": x / 0 gives inf or NaN (which the finiteness checks catch) instead
# of a ZeroDivisionError branch in every division, which keeps LLVM from vectorising
# (bench/README.md, "Numba's error model").
_SERIAL = dict(cache=True, nogil=True, error_model="numpy")
_PARALLEL = dict(_SERIAL, parallel=True)
# Added to the options of the helpers that only other compiled functions call: no entry
# point from Python (nor a C callback) is compiled for them, which saves ~0.6 s of a cold
# `numbamlp train` (bench/README.md).  Such a helper cannot be called from Python (the
# process would crash); call it from an @njit function, as tests/test_elementary.py does.
_INTERNAL = dict(no_cpython_wrapper=True, no_cfunc_wrapper=True)
# Elementwise kernels: serial for now (see the module docstring); switching to _PARALLEL
# here is the one change that makes every prange loop multi-threaded.
_ELEMENTWISE = _SERIAL

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# ---------------------------------------------------------------- GEMM
# Every matrix product goes through _gemm: BLAS (numba_xxgemm, the helper Numba's own np.dot
# calls, scipy's OpenBLAS underneath) with alpha and beta, which np.dot does not expose (they
# let plain SGD write the update straight into the weights, W ← βW + α·dY·X).
#
# Determinism: OpenBLAS rounds differently with 1 and 2 threads (it splits the work by
# thread count; bench/blas_determinism.py counts the differing elements).  So _gemm cuts C
# into blocks by its shape alone, never by the thread count, and runs each block as one
# single-threaded BLAS call on Numba's threads: the same bits on 1 thread or 64.  BLAS
# itself must then run on one thread (pin_blas_to_one_thread), or the two thread pools
# would oversubscribe the cores.
# (numba_xxgemm and the thread count are bound in kernels/native.py, with the reasons.)

GEMM_MIN_BLOCK = 256         # rows (or columns) of C per block, at least
GEMM_MAX_BLOCKS = 4          # 2 blocks were fastest on 2 cores, 4 within 5 % (bench/README.md)
GEMM_MIN_BLOCK_FLOPS = 4e6   # below ~10 µs of work a parallel launch costs more than it saves


@njit(**_SERIAL)
def gemm_blocks(m, n, k):
    """How many blocks C (m, n) = A (m, k) @ B (k, n) is cut into along C's longer side: a
    power of two that depends on the shape alone."""
    longest = max(m, n)
    blocks = 1
    while (blocks * 2 <= GEMM_MAX_BLOCKS and longest >= blocks * 2 * GEMM_MIN_BLOCK
           and 2.0 * m * n * k >= blocks * 2 * GEMM_MIN_BLOCK_FLOPS):
        blocks *= 2
    return blocks


# How an operand enters a product: as stored, or transposed (BLAS's own codes).  numpy
# int8 values, not Python bools: Numba compiles a separate copy of a function for every
# combination of constant bool arguments, but types these as plain int8.
AS_IS, TRANSPOSED = np.int8(ord("n")), np.int8(ord("t"))
# BLAS's precision codes, as constants: ord() in compiled code compiles Numba's unicode
# support with the kernels (~0.1 s of a cold start).
SINGLE, DOUBLE = np.int8(ord("s")), np.int8(ord("d"))


@njit(**_SERIAL, **_INTERNAL)
def _gemm_call(m, n, k, a, lda, trans_a, b, ldb, trans_b, c, ldc, scalars):
    """One BLAS call on flat buffers that start with row-major matrices of row strides
    lda, ldb, ldc: C (m, n) = scalars[0]·op(A) (m, k) @ op(B) (k, n) + scalars[1]·C, op(M)
    = M or Mᵀ as trans (AS_IS or TRANSPOSED) says."""
    kind = SINGLE if c.itemsize == 4 else DOUBLE
    # row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ
    _xxgemm(kind, trans_b, trans_a, n, m, k, scalars[0:1].ctypes, b.ctypes, ldb, a.ctypes, lda,
            scalars[1:2].ctypes, c.ctypes, ldc)


@njit(**_SERIAL, **_INTERNAL)
def _gemm_block(block, blocks, m, n, k, a, lda, trans_a, b, ldb, trans_b, c, scalars):
    """Block ``block`` of _gemm's product cut into ``blocks`` along C's longer side: rows
    of C and op(A), or columns of C and op(B)."""
    by_rows = m >= n
    longest = m if by_rows else n
    size = (longest + blocks - 1) // blocks
    start, stop = block * size, min(longest, (block + 1) * size)
    if by_rows:  # op(A)'s row i starts at A[i, 0], or at Aᵀ's A[0, i]
        a_start = start if trans_a == TRANSPOSED else start * lda
        _gemm_call(stop - start, n, k, a[a_start:], lda, trans_a, b, ldb, trans_b, c[start * n:], n, scalars)
    else:  # op(B)'s column j starts at B[0, j], or at Bᵀ's B[j, 0]
        b_start = start * ldb if trans_b == TRANSPOSED else start
        _gemm_call(m, stop - start, k, a, lda, trans_a, b[b_start:], ldb, trans_b, c[start:], n, scalars)


@njit(**_PARALLEL, **_INTERNAL)
def _gemm_in_parallel(blocks, m, n, k, a, lda, trans_a, b, ldb, trans_b, c, scalars):
    for block in prange(blocks):
        _gemm_block(block, blocks, m, n, k, a, lda, trans_a, b, ldb, trans_b, c, scalars)


@njit(**_SERIAL)
def _gemm(C, A, trans_a, B, trans_b, alpha, beta, scalars, threads=True):
    """C (m, n) = alpha·op(A) @ op(B) + beta·C, op(M) = M (AS_IS) or Mᵀ (TRANSPOSED), in
    gemm_blocks(m, n, k) blocks, on Numba's threads unless it has one or ``threads`` is
    False (the caller already runs on them, e.g. one member of a stack per thread): the
    same blocks either way, so the same bits.  C, A, B C-contiguous (so that every call has
    one type and this compiles once per dtype); scalars (2,) of C's dtype, scratch."""
    m, n = C.shape
    k = A.shape[0] if trans_a == TRANSPOSED else A.shape[1]
    scalars[0] = alpha
    scalars[1] = beta
    a, b, c = A.reshape(-1), B.reshape(-1), C.reshape(-1)
    blocks = gemm_blocks(m, n, k)
    if blocks > 1 and threads and _thread_count() > 1:
        _gemm_in_parallel(blocks, m, n, k, a, A.shape[1], trans_a, b, B.shape[1], trans_b, c, scalars)
        return
    for block in range(blocks):
        _gemm_block(block, blocks, m, n, k, a, A.shape[1], trans_a, b, B.shape[1], trans_b, c, scalars)


# ---------------------------------------------------------------- affine
@njit(**_SERIAL)
def affine_forward(out, X, W, b):
    """out (B, out) = X (B, in) @ W (out, in).T + b (out,).  ``out`` overwritten."""
    _gemm(out, X, AS_IS, W, TRANSPOSED, 1.0, 0.0, np.empty(2, out.dtype))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] += b[j]


@njit(**_SERIAL)
def affine_backward(dX, dW, db, dout, X, W):
    """Gradients of out = X Wᵀ + b given dout (B, out).  All outputs overwritten.

    dW (out, in) = doutᵀ X;  db (out,) = Σ_rows dout (rows added in order);
    dX (B, in) = dout W, or skipped when dX is None (the first layer needs no dX).
    """
    scalars = np.empty(2, dW.dtype)
    _gemm(dW, dout, TRANSPOSED, X, AS_IS, 1.0, 0.0, scalars)
    db[:] = 0
    for i in range(dout.shape[0]):
        for j in range(dout.shape[1]):
            db[j] += dout[i, j]
    if dX is not None:
        _gemm(dX, dout, AS_IS, W, AS_IS, 1.0, 0.0, scalars)


# ---------------------------------------------------------------- activations
# Scalar φ and φ' first; each kernel is a flat parallel loop over one of them.
# forward(Hout, A, alpha): Hout = φ(A).   backward(dA, dH, cache, alpha): dA = dH ⊙ φ'.
# Kernels flatten with reshape(-1), a view for C-contiguous arrays; outputs may alias inputs.


# ---------------------------------------------------------------- elementary functions
# The activations call _exp, _expm1, _tanh and _normal_cdf, which pick their code by dtype
# at compile time: float64 keeps libm's last-bit accuracy; float32 uses the polynomial
# versions below.  A call into libm keeps LLVM from vectorising the loop around it; these
# are plain arithmetic, so the loops become AVX2/AVX-512 code.  Every kernel computes in
# its arrays' own dtype (constants typed with A.dtype.type): a float64 constant would turn
# a float32 loop into a float64 one.
_F32 = np.float32
_LOG2E = _F32(1.4426950408889634)
_LN2_HIGH, _LN2_LOW = _F32(0.693359375), _F32(-2.12194440e-4)  # ln 2 = high + low, high exact
_EXP_LOWEST, _EXP_HIGHEST = _F32(-87.0), _F32(88.0)  # 2ⁿ stays a normal float32
_TAYLOR_EXP = tuple(_F32(1.0 / math.factorial(i)) for i in range(8))
# Abramowitz & Stegun 7.1.26: erfc(z) ≈ t·(a₁ + t(a₂ + …)) e^(−z²), t = 1/(1 + p z), z ≥ 0,
# absolute error ≤ 1.5e-7
_AS_P = _F32(0.3275911)
_AS_A = (_F32(0.254829592), _F32(-0.284496736), _F32(1.421413741), _F32(-1.453152027), _F32(1.061405429))


@njit(**_SERIAL, **_INTERNAL)
def _exp_float32(x):
    """e^x in float32 within 1 ulp (tests/test_elementary.py): x = n ln 2 + r with
    |r| ≤ ln2/2, e^x = 2ⁿ·(Taylor series of e^r to r⁷).
    Below −87 it gives 0 (e^x < 1.7e−38 there), above 88 inf (float32 overflows at 88.7
    exactly, e^88 = 1.7e38 is near enough); NaN stays NaN."""
    t = min(max(x, _EXP_LOWEST), _EXP_HIGHEST)
    n = np.floor(t * _LOG2E + _F32(0.5))
    r = t - n * _LN2_HIGH - n * _LN2_LOW
    c = _TAYLOR_EXP
    p = c[0] + r * (c[1] + r * (c[2] + r * (c[3] + r * (c[4] + r * (c[5] + r * (c[6] + r * c[7]))))))
    two_to_n = _float32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))
    y = p * two_to_n
    y = y if x >= _EXP_LOWEST else _F32(0.0)
    y = y if x <= _EXP_HIGHEST else _F32(np.inf)
    return y if x == x else x


@njit(**_SERIAL, **_INTERNAL)
def _expm1_float32(x):
    """e^x − 1 in float32: the Taylor series below |x| = 1/4 (where e^x − 1 would lose
    relative accuracy to cancellation), e^x − 1 above."""
    c = _TAYLOR_EXP
    series = x * (c[1] + x * (c[2] + x * (c[3] + x * (c[4] + x * (c[5] + x * c[6])))))
    return series if abs(x) < _F32(0.25) else _exp_float32(x) - c[0]


@njit(**_SERIAL, **_INTERNAL)
def _tanh_float32(a):
    """tanh in float32 within 12 ulp (1.4e-6 relative): the Taylor series near 0 keeps
    the relative accuracy that 1 − 2/(e^2a + 1) loses there (next term < 1e-11 below 1/16)."""
    one, two = _F32(1.0), _F32(2.0)
    a2 = a * a
    series = a * (one - a2 * (one / 3 - a2 * (two / 15 - a2 * (one * 17 / 315))))
    return series if abs(a) < _F32(0.0625) else one - two / (_exp_float32(two * a) + one)


@njit(**_SERIAL, **_INTERNAL)
def _normal_cdf_float32(x):
    """Φ(x), the standard normal CDF, in float32 to 2.5e-7 absolute (measured): the lower tail
    Φ(−|x|) = erfc(|x|/√2)/2 directly (no 1 − erf cancellation), then reflected."""
    return _normal_cdf_from_gaussian_float32(x, _exp_float32(_F32(-0.5) * x * x))


@njit(**_SERIAL, **_INTERNAL)
def _normal_cdf_from_gaussian_float32(x, gaussian):
    """Φ(x) given gaussian = e^(−x²/2), the factor A&S 7.1.26 shares with the density."""
    z = abs(x) * _F32(_SQRT_HALF)
    t = _F32(1.0) / (_F32(1.0) + _AS_P * z)
    a = _AS_A
    tail = _F32(0.5) * t * (a[0] + t * (a[1] + t * (a[2] + t * (a[3] + t * a[4])))) * gaussian
    return tail if x < 0 else _F32(1.0) - tail


def _exp(x):
    """e^x in x's float type (the compiled versions are below)."""
    return math.exp(x)


def _expm1(x):
    """e^x − 1 in x's float type."""
    return math.expm1(x)


def _tanh(x):
    """tanh in x's float type."""
    return math.tanh(x)


def _normal_cdf(x):
    """Φ(x) in x's float type."""
    return _normal_cdf_float64(x)


def _normal_cdf_from_gaussian(x, gaussian):
    """Φ(x) in x's float type, given gaussian = e^(−x²/2) (GELU's derivative needs both):
    float32 reuses it and saves an exponential; float64 keeps erf."""
    return _normal_cdf_float64(x)


@njit(**_SERIAL, **_INTERNAL)
def _normal_cdf_float64(x):
    return 0.5 * (1.0 + math.erf(x * _SQRT_HALF))


@overload(_exp)
def _exp_typed(x):
    return (lambda x: _exp_float32(x)) if x == types.float32 else (lambda x: math.exp(x))


@overload(_expm1)
def _expm1_typed(x):
    return (lambda x: _expm1_float32(x)) if x == types.float32 else (lambda x: math.expm1(x))


@overload(_tanh)
def _tanh_typed(x):
    return (lambda x: _tanh_float32(x)) if x == types.float32 else (lambda x: math.tanh(x))


@overload(_normal_cdf)
def _normal_cdf_typed(x):
    return (lambda x: _normal_cdf_float32(x)) if x == types.float32 else (lambda x: _normal_cdf_float64(x))


@overload(_normal_cdf_from_gaussian)
def _normal_cdf_from_gaussian_typed(x, gaussian):
    if x == types.float32:
        return lambda x, gaussian: _normal_cdf_from_gaussian_float32(x, gaussian)
    return lambda x, gaussian: _normal_cdf_float64(x)


@njit(**_SERIAL, **_INTERNAL)
def _sigmoid(a, one):
    # e^(−a) may overflow to inf for very negative a: 1 / inf = 0, still exact
    return one / (one + _exp(-a))


@njit(**_ELEMENTWISE)
def relu_forward(Hout, A, alpha):
    h, a = Hout.reshape(-1), A.reshape(-1)
    for k in prange(a.size):
        # written so that NaN passes through, as np.maximum does
        h[k] = 0.0 if a[k] <= 0 else a[k]


@njit(**_ELEMENTWISE)
def relu_backward(dA, dH, A, alpha):
    da, dh, a = dA.reshape(-1), dH.reshape(-1), A.reshape(-1)
    for k in prange(a.size):
        da[k] = dh[k] if a[k] > 0 else 0.0


@njit(**_ELEMENTWISE)
def leaky_relu_forward(Hout, A, alpha):
    h, a = Hout.reshape(-1), A.reshape(-1)
    for k in prange(a.size):
        h[k] = a[k] if a[k] > 0 else alpha * a[k]


@njit(**_ELEMENTWISE)
def leaky_relu_backward(dA, dH, A, alpha):
    da, dh, a = dA.reshape(-1), dH.reshape(-1), A.reshape(-1)
    for k in prange(a.size):
        da[k] = dh[k] if a[k] > 0 else alpha * dh[k]


@njit(**_ELEMENTWISE)
def elu_forward(Hout, A, alpha):
    h, a = Hout.reshape(-1), A.reshape(-1)
    scale = A.dtype.type(alpha)
    for k in prange(a.size):
        h[k] = a[k] if a[k] > 0 else scale * _expm1(a[k])


@njit(**_ELEMENTWISE)
def elu_backward(dA, dH, A, alpha):
    da, dh, a = dA.reshape(-1), dH.reshape(-1), A.reshape(-1)
    scale = A.dtype.type(alpha)
    for k in prange(a.size):
        da[k] = dh[k] if a[k] > 0 else dh[k] * scale * _exp(a[k])


@njit(**_ELEMENTWISE)
def sigmoid_forward(Hout, A, alpha):
    h, a = Hout.reshape(-1), A.reshape(-1)
    one = A.dtype.type(1.0)
    for k in prange(a.size):
        h[k] = _sigmoid(a[k], one)


@njit(**_ELEMENTWISE)
def sigmoid_backward(dA, dH, Hout, alpha):
    da, dh, h = dA.reshape(-1), dH.reshape(-1), Hout.reshape(-1)
    one = Hout.dtype.type(1.0)
    for k in prange(h.size):
        da[k] = dh[k] * h[k] * (one - h[k])


@njit(**_ELEMENTWISE)
def gelu_forward(Hout, A, alpha):
    h, a = Hout.reshape(-1), A.reshape(-1)
    for k in prange(a.size):
        h[k] = a[k] * _normal_cdf(a[k])


@njit(**_ELEMENTWISE)
def gelu_backward(dA, dH, A, alpha):
    """φ'(x) = Φ(x) + x·e^(−x²/2)/√(2π), the exponential computed once for both terms."""
    da, dh, a = dA.reshape(-1), dH.reshape(-1), A.reshape(-1)
    minus_half, inv_sqrt_2pi = A.dtype.type(-0.5), A.dtype.type(_INV_SQRT_2PI)
    for k in prange(a.size):
        x = a[k]
        gaussian = _exp(minus_half * x * x)
        da[k] = dh[k] * (_normal_cdf_from_gaussian(x, gaussian) + x * inv_sqrt_2pi * gaussian)


@njit(**_ELEMENTWISE)
def silu_forward(Hout, A, alpha):
    h, a = Hout.reshape(-1), A.reshape(-1)
    one = A.dtype.type(1.0)
    for k in prange(a.size):
        h[k] = a[k] * _sigmoid(a[k], one)


@njit(**_ELEMENTWISE)
def silu_backward(dA, dH, A, alpha):
    da, dh, a = dA.reshape(-1), dH.reshape(-1), A.reshape(-1)
    one = A.dtype.type(1.0)
    for k in prange(a.size):
        s = _sigmoid(a[k], one)
        da[k] = dh[k] * s * (one + a[k] * (one - s))


@njit(**_ELEMENTWISE)
def tanh_forward(Hout, A, alpha):
    h, a = Hout.reshape(-1), A.reshape(-1)
    for k in prange(a.size):
        h[k] = _tanh(a[k])


@njit(**_ELEMENTWISE)
def tanh_backward(dA, dH, Hout, alpha):
    da, dh, h = dA.reshape(-1), dH.reshape(-1), Hout.reshape(-1)
    one = Hout.dtype.type(1.0)
    for k in prange(h.size):
        da[k] = dh[k] * (one - h[k] * h[k])


# ---------------------------------------------------------------- loss
register_jitable(negligible_exp)  # (softmax_crossentropy_row calls it)
_softmax_crossentropy_row = njit(inline="always", **_SERIAL)(softmax_crossentropy_row)


@njit(**_ELEMENTWISE)
def softmax_crossentropy_forward(P, row_loss, S, y, weights=None):
    """P (B, C) = softmax(S) row-wise; row_loss (B,) = logsumexp(S_i) − S_i,y_i.

    Returns the mean loss (float64), or Σ wᵢ·lossᵢ / Σ wᵢ with ``weights`` (B,), summed
    over rows in order.  Stable for any finite logits: the row maximum is subtracted
    before exponentiating.
    """
    B = S.shape[0]
    for i in prange(B):
        _softmax_crossentropy_row(P, row_loss, S, y, i)
    return _mean_loss(row_loss, weights)


@njit(**_SERIAL)
def _mean_loss(row_loss, weights):
    """The mean of row_loss (B,), or Σ wᵢ·lossᵢ / Σ wᵢ with ``weights``: rows summed in order."""
    B = row_loss.shape[0]
    loss = 0.0
    if weights is None:
        for i in range(B):
            loss += row_loss[i]
        return loss / B
    weight_sum = 0.0
    for i in range(B):
        loss += weights[i] * row_loss[i]
        weight_sum += weights[i]
    return loss / weight_sum


@njit(**_ELEMENTWISE)
def softmax_crossentropy_backward(dS, P, y, weights=None):
    """dS (B, C) = (P − onehot(y)) / B, or wᵢ (P − onehot(y)) / Σ w with ``weights`` (B,)."""
    B, C = P.shape
    if weights is None:
        inv_b = 1.0 / B
        for i in prange(B):
            for j in range(C):
                dS[i, j] = P[i, j] * inv_b
            dS[i, y[i]] -= inv_b
        return
    weight_sum = 0.0
    for i in range(B):
        weight_sum += weights[i]
    for i in prange(B):
        scale = weights[i] / weight_sum
        for j in range(C):
            dS[i, j] = P[i, j] * scale
        dS[i, y[i]] -= scale


@njit(**_ELEMENTWISE)
def mse_forward(row_loss, S, Y, weights=None):
    """row_loss (B,) = ½ Σ_k (S_ik − Y_ik)², each row summed in float64, for S, Y (B, K).

    Returns the mean loss (float64), or Σ wᵢ·lossᵢ / Σ wᵢ with ``weights`` (B,), summed
    over rows in order.
    """
    B, K = S.shape
    for i in prange(B):
        total = 0.0
        for k in range(K):
            d = np.float64(S[i, k]) - np.float64(Y[i, k])
            total += d * d
        row_loss[i] = 0.5 * total
    return _mean_loss(row_loss, weights)


@njit(**_ELEMENTWISE)
def mse_backward(dS, S, Y, weights=None):
    """dS (B, K) = (S − Y) / B, or wᵢ (S − Y) / Σ w with ``weights`` (B,)."""
    B, K = S.shape
    if weights is None:
        inv_b = 1.0 / B
        for i in prange(B):
            for k in range(K):
                dS[i, k] = (S[i, k] - Y[i, k]) * inv_b
        return
    weight_sum = 0.0
    for i in range(B):
        weight_sum += weights[i]
    for i in prange(B):
        scale = weights[i] / weight_sum
        for k in range(K):
            dS[i, k] = (S[i, k] - Y[i, k]) * scale


# The fused step's loss by code (CROSS_ENTROPY, SQUARED_ERROR), a constant of each
# specialised step as the activation is: only that loss's kernels are compiled into it.
def _loss_forward(code, P, row_loss, S, y, weights):
    """The (weighted) mean loss of scores S against y (compiled code only)."""


def _loss_backward(code, dS, P, S, y, weights):
    """dS, the loss's gradient with respect to S (compiled code only)."""


@overload(_loss_forward, prefer_literal=True)
def _loss_forward_typed(code, P, row_loss, S, y, weights):
    if not isinstance(code, types.IntegerLiteral):
        return None  # a run-time code: not supported (every step passes a constant)
    if code.literal_value == SQUARED_ERROR:
        return lambda code, P, row_loss, S, y, weights: _mse_forward(row_loss, S, y, weights)
    return lambda code, P, row_loss, S, y, weights: _softmax_crossentropy_forward(P, row_loss, S, y, weights)


@overload(_loss_backward, prefer_literal=True)
def _loss_backward_typed(code, dS, P, S, y, weights):
    if not isinstance(code, types.IntegerLiteral):
        return None
    if code.literal_value == SQUARED_ERROR:
        return lambda code, dS, P, S, y, weights: _mse_backward(dS, S, y, weights)
    return lambda code, dS, P, S, y, weights: _softmax_crossentropy_backward(dS, P, y, weights)


# ---------------------------------------------------------------- optimizers
# An update reads and writes three (SGD with momentum) or four (Adam) arrays over every
# parameter.  Past UPDATE_PARALLEL_MIN parameters it runs on Numba's threads, in fixed
# chunks (each element on its own, so the bits do not depend on the thread count), through
# one parallel function for both optimizers, since each parallel function adds to a cold
# compile (bench/README.md, "Adam on Numba's threads" and bench/threads.py).
UPDATE_PARALLEL_MIN = 65536
UPDATE_CHUNK = 16384
# which update _update_in_chunks runs (int8 codes, not bools: see AS_IS)
_SGD, _ADAM = np.int8(0), np.int8(1)


# The loops run from 0 over whole arrays or slices (with an arbitrary start LLVM keeps
# negative-index checks and does not vectorise), on scalars in the arrays' dtype.
@njit(**_SERIAL, **_INTERNAL)
def _sgd_loop(param, velocity, grad, step, mu, decay, nesterov):
    if mu == 0.0:
        for k in range(param.size):
            param[k] -= step * (grad[k] + decay * param[k])
    elif nesterov:
        for k in range(param.size):
            g = grad[k] + decay * param[k]
            velocity[k] = mu * velocity[k] + g
            param[k] -= step * (g + mu * velocity[k])
    else:
        for k in range(param.size):
            velocity[k] = mu * velocity[k] + grad[k] + decay * param[k]
            param[k] -= step * velocity[k]


@njit(**_SERIAL, **_INTERNAL)
def _adam_loop(param, m, v, grad, b1, b2, step_size, inv_sqrt_bias2, epsilon, decay, shrink):
    one = param.dtype.type(1.0)
    for k in range(param.size):
        p = param[k] * shrink
        g = grad[k] + decay * p
        m[k] = b1 * m[k] + (one - b1) * g
        v[k] = b2 * v[k] + (one - b2) * g * g
        param[k] = p - step_size * m[k] / (math.sqrt(v[k]) * inv_sqrt_bias2 + epsilon)


@njit(**_PARALLEL, **_INTERNAL)
def _update_in_chunks(optimizer, param, state_a, state_b, grad, scalars, flag):
    """_sgd_loop (state_a the velocity, scalars[:3], flag nesterov) or _adam_loop (state_a,
    state_b = m, v; all seven scalars) over UPDATE_CHUNK-sized slices on Numba's threads."""
    n = param.size
    for chunk in prange((n + UPDATE_CHUNK - 1) // UPDATE_CHUNK):
        part = slice(chunk * UPDATE_CHUNK, min(n, (chunk + 1) * UPDATE_CHUNK))
        if optimizer == _ADAM:
            _adam_loop(param[part], state_a[part], state_b[part], grad[part], *scalars)
        else:
            _sgd_loop(param[part], state_a[part], grad[part], scalars[0], scalars[1], scalars[2], flag)


@njit(inline="always", **_SERIAL, **_INTERNAL)
def _sgd_scalars(param, lr, momentum, weight_decay):
    """sgd_update's settings in the arrays' dtype: (step, mu, decay)."""
    dtype = param.dtype.type
    return dtype(lr), dtype(momentum), dtype(weight_decay)


@njit(inline="always", **_SERIAL, **_INTERNAL)
def _adam_scalars(param, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    """adam_update's settings in the arrays' dtype, in _adam_loop's order."""
    dtype = param.dtype.type
    step_size = dtype(lr / (1.0 - beta1**step))
    inv_sqrt_bias2 = dtype(1.0 / math.sqrt(1.0 - beta2**step))
    # AdamW shrinks the weights first; Adam adds the L2 term to the gradient
    shrink = dtype(1.0 - lr * weight_decay) if decoupled else dtype(1.0)
    decay = dtype(0.0) if decoupled else dtype(weight_decay)
    return (dtype(beta1), dtype(beta2), step_size, inv_sqrt_bias2, dtype(eps), decay, shrink)


@njit(**_SERIAL)
def sgd_update(param, velocity, grad, lr, momentum, weight_decay, nesterov):
    """SGD as in PyTorch, over flat arrays; ``param`` and ``velocity`` updated in place.

    g = grad + weight_decay·param;  with momentum μ > 0: velocity = μ·velocity + g and
    g = g + μ·velocity (nesterov) or velocity;  param −= lr·g.  μ = 0 is the seed's SGD.
    Branches are hoisted and the loops run in the arrays' dtype, so they vectorise.
    """
    step, mu, decay = _sgd_scalars(param, lr, momentum, weight_decay)
    if param.size < UPDATE_PARALLEL_MIN or _thread_count() == 1:
        _sgd_loop(param, velocity, grad, step, mu, decay, nesterov)
        return
    unused = param.dtype.type(0.0)
    _update_in_chunks(_SGD, param, velocity, velocity, grad, (step, mu, decay, unused, unused, unused, unused),
                      nesterov)


@njit(**_SERIAL)
def adam_update(param, m, v, grad, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    """Adam (decoupled=False, L2 added to the gradient) or AdamW (decoupled weight decay).

    Flat arrays; ``param``, ``m``, ``v`` updated in place; ``step`` counts from 1.
    param −= lr · m̂ / (√v̂ + eps) with m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ); the bias
    corrections are folded into two scalars and the loop runs in the arrays' dtype, so it
    vectorises (~4× faster than per element in float64, bench/README.md).
    """
    scalars = _adam_scalars(param, lr, beta1, beta2, eps, weight_decay, decoupled, step)
    if param.size < UPDATE_PARALLEL_MIN or _thread_count() == 1:
        _adam_loop(param, m, v, grad, *scalars)
        return
    _update_in_chunks(_ADAM, param, m, v, grad, scalars, decoupled)


# ---------------------------------------------------------------- fused training step
# The activation, update mode, optimizer and size class are constants (Numba literals) in a
# step compiled for each combination (stack_function), and the dispatchers below, resolved
# while Numba types it, keep only the kernels a run uses: as run-time values, every branch
# would compile (bench/README.md, "Cold start").  The activation code is the activation's
# position in numbamlp.kernels.ACTIVATION_NAMES; the dispatchers find the kernel by name.


def _activation_forward(code, Hout, A, alpha):
    """Hout = φ(A), φ the activation number ``code`` (compiled code only)."""


def _activation_backward(code, dA, dH, cache, alpha):
    """dA = dH ⊙ φ'(cache), φ the activation number ``code`` (compiled code only)."""


@overload(_activation_forward, prefer_literal=True)
def _activation_forward_typed(code, Hout, A, alpha):
    if isinstance(code, types.IntegerLiteral):  # a constant (every step passes one): that kernel alone
        kernel = globals()[f"_{ACTIVATION_NAMES[code.literal_value]}_forward"]
        return lambda code, Hout, A, alpha: kernel(Hout, A, alpha)
    return None  # a run-time code: not supported (it would compile all seven activations)


@overload(_activation_backward, prefer_literal=True)
def _activation_backward_typed(code, dA, dH, cache, alpha):
    if isinstance(code, types.IntegerLiteral):
        kernel = globals()[f"_{ACTIVATION_NAMES[code.literal_value]}_backward"]
        return lambda code, dA, dH, cache, alpha: kernel(dA, dH, cache, alpha)
    return None


@njit(**_SERIAL, **_INTERNAL)
def _add_bias_rows(AT, b):
    """AT (H, B) += b (H,) down each row: the bias of a feature-major pre-activation."""
    for j in range(AT.shape[0]):
        for k in range(AT.shape[1]):
            AT[j, k] += b[j]


@njit(**_SERIAL, **_INTERNAL)
def _sum_rows(db, dAT):
    """db (H,) = Σ_k dAT[j, k], each row summed in order (deterministic)."""
    for j in range(dAT.shape[0]):
        total = 0.0
        for k in range(dAT.shape[1]):
            total += dAT[j, k]
        db[j] = total


# How the fused step applies the optimizer (chosen in Python, see Trainer):
UPDATE_AFTER = 0  # write the gradients, then one sgd_update / adam_update over all of them
UPDATE_SGD = 1    # plain SGD (no momentum): W ← (1 − lr·wd)·W − lr·dY·X in the GEMM itself
# Momentum updates after, not in the GEMM (V ← μV + dY·X): OpenBLAS is slow with β ∉ {0, 1}
# (bench/README.md, "Measured reasons").


# Inlined into the step (Numba IR): it receives the update mode as a constant in a
# specialised step, and a cached function of its own would keep one entry per constant.
@njit(inline="always", **_SERIAL, **_INTERNAL)
def _layer_update(mode, params, grads, offset, n_out, n_in, dY, trans_dY, X_in, trans_X,
                  lr, weight_decay, scalars, threads):
    """Gradient of one layer, dW = op(dY) (n_out, B) @ op(X_in) (B, n_in), with db already in
    grads[offset + n_out·n_in :]: stored (UPDATE_AFTER) or applied to the weights now."""
    if mode == UPDATE_AFTER:
        _gemm(_matrix(grads, offset, n_out, n_in), dY, trans_dY, X_in, trans_X, 1.0, 0.0, scalars, threads)
        return
    _gemm(_matrix(params, offset, n_out, n_in), dY, trans_dY, X_in, trans_X,
          -lr, 1.0 - lr * weight_decay, scalars, threads)
    for k in range(offset + n_out * n_in, offset + n_out * (n_in + 1)):
        params[k] = (1.0 - lr * weight_decay) * params[k] - lr * grads[k]


@njit(**_SERIAL, **_INTERNAL)
def _transpose(XT, X):
    """XT (D, B) = X (B, D)ᵀ."""
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            XT[j, i] = X[i, j]


@njit(**_SERIAL, **_INTERNAL)
def _matrix(flat, offset, rows, cols):
    """The (rows, cols) C-contiguous view of flat[offset : offset + rows·cols]."""
    return flat[offset : offset + rows * cols].reshape(rows, cols)


def _optimizer_after(update_mode, adam, chunked, params, state_a, state_b, grads, lr, momentum, weight_decay,
                     nesterov_or_decoupled, beta1, beta2, eps, step):
    """The optimizers that need every gradient first, over all parameters: adam_update or
    sgd_update in UPDATE_AFTER mode, nothing in UPDATE_SGD.  chunked False: the parameters
    are too few for update chunks on threads, so the serial loop alone is compiled
    (compiled code only)."""


@overload(_optimizer_after, prefer_literal=True)
def _optimizer_after_typed(update_mode, adam, chunked, params, state_a, state_b, grads, lr, momentum,
                           weight_decay, nesterov_or_decoupled, beta1, beta2, eps, step):
    if not all(isinstance(a, types.Literal) for a in (update_mode, adam, chunked)):
        return None  # run-time settings: not supported (every step passes constants)
    if update_mode.literal_value == UPDATE_SGD:
        def nothing(update_mode, adam, chunked, params, state_a, state_b, grads, lr, momentum, weight_decay,
                    nesterov_or_decoupled, beta1, beta2, eps, step):
            pass
        return nothing
    if adam.literal_value and chunked.literal_value:
        def adam_any(update_mode, adam, chunked, params, state_a, state_b, grads, lr, momentum, weight_decay,
                     nesterov_or_decoupled, beta1, beta2, eps, step):
            _adam_update(params, state_a, state_b, grads, lr, beta1, beta2, eps, weight_decay,
                         nesterov_or_decoupled, step)
        return adam_any
    if adam.literal_value:
        def adam_serial(update_mode, adam, chunked, params, state_a, state_b, grads, lr, momentum, weight_decay,
                        nesterov_or_decoupled, beta1, beta2, eps, step):
            _adam_loop(params, state_a, state_b, grads,
                       *_adam_scalars(params, lr, beta1, beta2, eps, weight_decay, nesterov_or_decoupled, step))
        return adam_serial
    if chunked.literal_value:
        def sgd_any(update_mode, adam, chunked, params, state_a, state_b, grads, lr, momentum, weight_decay,
                    nesterov_or_decoupled, beta1, beta2, eps, step):
            _sgd_update(params, state_a, grads, lr, momentum, weight_decay, nesterov_or_decoupled)
        return sgd_any

    def sgd_serial(update_mode, adam, chunked, params, state_a, state_b, grads, lr, momentum, weight_decay,
                   nesterov_or_decoupled, beta1, beta2, eps, step):
        step_, mu, decay = _sgd_scalars(params, lr, momentum, weight_decay)
        _sgd_loop(params, state_a, grads, step_, mu, decay, nesterov_or_decoupled)
    return sgd_serial


# Inlined (Numba IR) into each specialised step, which is compiled and cached as one
# function: every separately compiled function re-optimises the code of all it calls when
# it is finalised, so each level of calls costs compile time.
@njit(inline="always", **_SERIAL)
def _train_step(params, grads, state_a, state_b, layers, param_offsets, workspace, hidden_offsets,
                output_offsets, scalars, X, y, weights, act_code, backward_uses_output, alpha,
                update_mode, adam, lr, momentum, weight_decay, nesterov_or_decoupled, adam_settings, step,
                chunked, threads, loss_code):
    """One minibatch update in one compiled call: forward, loss, backward, optimizer.

    params, grads, state_a, state_b: flat (P,) buffers (the optimizer's velocity, or Adam's
    m and v); layers (L+1,) int64 sizes; param_offsets (L,) int64: where layer l's W (out, in)
    starts, its b (out,) following (the layout of numbamlp.model.layer_views).
    workspace: flat buffer; hidden_offsets (L−1, 4) int64: where each hidden layer's A, Hout,
    dH, dA blocks start; output_offsets (5,) int64: where S, P, dS (B, C), row_loss (B,) and
    Xᵀ (D, B) start (model.workspace_layout).  Hidden buffers are used feature-major, (H_l, B):
    OpenBLAS runs Aᵀ = W Xᵀ 20-25 % faster than A = X Wᵀ at the mnist and deep shapes
    (bench/README.md); a small first layer multiplies by a transposed copy of X instead (see
    TRANSPOSED_INPUT_MAX: the same bits, faster).
    X (B, D), y (B,) int64 (loss_code CROSS_ENTROPY) or Y (B, C) targets (SQUARED_ERROR),
    weights (B,) or None; scalars (2,) scratch.  update_mode: UPDATE_AFTER or UPDATE_SGD.
    adam_settings: (beta1, beta2, eps), one argument for three (a call of more than 30 arguments is compiled by
    Python as a call with *args, which Numba cannot inline).  chunked: whether the
    optimizer may update in chunks on threads (params.size ≥ UPDATE_PARALLEL_MIN); threads:
    whether the GEMMs' blocks may run on Numba's threads (False when the caller runs one
    step per thread).
    Only arrays and scalars are passed: typed lists cost ~0.5 µs each to unbox per call.
    Returns the (weighted) mean loss; when it is not finite, returns it without touching
    the weights, so a bad batch loses nothing.
    """
    L = layers.shape[0] - 1
    B = X.shape[0]
    C = layers[L]
    S, P, dS = (_matrix(workspace, output_offsets[0], B, C), _matrix(workspace, output_offsets[1], B, C),
                _matrix(workspace, output_offsets[2], B, C))
    row_loss = workspace[output_offsets[3] : output_offsets[3] + B]
    # ---- forward: Aᵀ_l = W_l Hᵀ_(l−1) + b_l, Hᵀ_l = φ(Aᵀ_l); S = H_(L−1) W_Lᵀ + b_L
    for layer in range(L - 1):
        n_in, n_out = layers[layer], layers[layer + 1]
        W = _matrix(params, param_offsets[layer], n_out, n_in)
        b = params[param_offsets[layer] + n_out * n_in : param_offsets[layer] + n_out * (n_in + 1)]
        AT = _matrix(workspace, hidden_offsets[layer, 0], n_out, B)
        HT = _matrix(workspace, hidden_offsets[layer, 1], n_out, B)
        if layer == 0 and n_out * B * n_in <= TRANSPOSED_INPUT_MAX:  # (room for Xᵀ: workspace_layout)
            XT = _matrix(workspace, output_offsets[4], n_in, B)
            _transpose(XT, X)
            _gemm(AT, W, AS_IS, XT, AS_IS, 1.0, 0.0, scalars, threads)
        elif layer == 0:
            _gemm(AT, W, AS_IS, X, TRANSPOSED, 1.0, 0.0, scalars, threads)
        else:
            H_below = _matrix(workspace, hidden_offsets[layer - 1, 1], n_in, B)
            _gemm(AT, W, AS_IS, H_below, AS_IS, 1.0, 0.0, scalars, threads)
        _add_bias_rows(AT, b)
        _activation_forward(act_code, HT, AT, alpha)
    n_in, n_out = layers[L - 1], layers[L]
    out_offset = param_offsets[L - 1]
    W_out = _matrix(params, out_offset, n_out, n_in)
    b_out = params[out_offset + n_out * n_in : out_offset + n_out * (n_in + 1)]
    if L == 1:
        _gemm(S, X, AS_IS, W_out, TRANSPOSED, 1.0, 0.0, scalars, threads)
    else:
        HT_last = _matrix(workspace, hidden_offsets[L - 2, 1], n_in, B)
        _gemm(S, HT_last, TRANSPOSED, W_out, TRANSPOSED, 1.0, 0.0, scalars, threads)
    for i in range(B):
        for c in range(n_out):
            S[i, c] += b_out[c]
    loss = _loss_forward(loss_code, P, row_loss, S, y, weights)
    if not math.isfinite(loss):
        return loss
    # ---- backward; each layer's dH goes down before its weights may be updated in place
    _loss_backward(loss_code, dS, P, S, y, weights)
    db_out = grads[out_offset + n_out * n_in : out_offset + n_out * (n_in + 1)]
    db_out[:] = 0
    for i in range(B):
        for c in range(n_out):
            db_out[c] += dS[i, c]
    if L == 1:
        _layer_update(update_mode, params, grads, out_offset, n_out, n_in, dS, TRANSPOSED, X, AS_IS,
                      lr, weight_decay, scalars, threads)
    else:
        HT_last = _matrix(workspace, hidden_offsets[L - 2, 1], n_in, B)
        dHT_last = _matrix(workspace, hidden_offsets[L - 2, 2], n_in, B)
        _gemm(dHT_last, W_out, TRANSPOSED, dS, TRANSPOSED, 1.0, 0.0, scalars, threads)
        _layer_update(update_mode, params, grads, out_offset, n_out, n_in, dS, TRANSPOSED,
                      HT_last, TRANSPOSED, lr, weight_decay, scalars, threads)
        for layer in range(L - 2, -1, -1):
            n_in, n_out = layers[layer], layers[layer + 1]
            offset = param_offsets[layer]
            AT = _matrix(workspace, hidden_offsets[layer, 0], n_out, B)
            HT = _matrix(workspace, hidden_offsets[layer, 1], n_out, B)
            dHT = _matrix(workspace, hidden_offsets[layer, 2], n_out, B)
            dAT = _matrix(workspace, hidden_offsets[layer, 3], n_out, B)
            _activation_backward(act_code, dAT, dHT, HT if backward_uses_output else AT, alpha)
            _sum_rows(grads[offset + n_out * n_in : offset + n_out * (n_in + 1)], dAT)
            if layer == 0:
                _layer_update(update_mode, params, grads, offset, n_out, n_in, dAT, AS_IS, X, AS_IS,
                              lr, weight_decay, scalars, threads)
            else:
                W = _matrix(params, offset, n_out, n_in)
                dH_below = _matrix(workspace, hidden_offsets[layer - 1, 2], n_in, B)
                _gemm(dH_below, W, TRANSPOSED, dAT, AS_IS, 1.0, 0.0, scalars, threads)
                H_below = _matrix(workspace, hidden_offsets[layer - 1, 1], n_in, B)
                _layer_update(update_mode, params, grads, offset, n_out, n_in, dAT, AS_IS,
                              H_below, TRANSPOSED, lr, weight_decay, scalars, threads)
    # ---- optimizers that need every gradient first
    beta1, beta2, eps = adam_settings
    _optimizer_after(update_mode, adam, chunked, params, state_a, state_b, grads, lr, momentum, weight_decay,
                     nesterov_or_decoupled, beta1, beta2, eps, step)
    return loss


_UPDATE_NAMES = {(UPDATE_SGD, False): "sgd_in_gemm", (UPDATE_AFTER, False): "sgd", (UPDATE_AFTER, True): "adam"}


# ---------------------------------------------------------------- a step of a stack of models
# numbamlp.plan's StepPlan calls stack_step: every member m of the stack runs _train_step on
# its rows of the plan's buffers.  One member, or one thread: the members in turn, each with
# its GEMM blocks (and update chunks) on Numba's threads, as a model alone.  Several members
# on several threads: one member per thread, its blocks and updates in a plain loop.  The
# blocks are cut by shape either way and the updates go element by element, so member m
# computes the bits it computes alone, in any position, in a stack of any size.


def _row(array, row):
    """array[row], or None for None (a stack without loss weights); compiled code only."""


@overload(_row)
def _row_typed(array, row):
    if isinstance(array, types.NoneType):
        return lambda array, row: None
    return lambda array, row: array[row]


def _specialised_stack_step(act_code: int, update_mode: int, adam: bool, chunked: bool, by_member: bool,
                            gradients: bool, loss_code: int):
    """A stack step compiled with these as constants, _train_step inlined: the members in
    turn, each with its blocks on threads (by_member False: prange runs as range), or one
    member per thread (by_member True, compiled parallel).
    gradients: the gradients only (plain SGD at rate 0, momentum 0 and decay 0, so the
    weights stay the same bits).  loss_code: CROSS_ENTROPY (y (M or 1, B) int64) or
    SQUARED_ERROR (y (M or 1, B, C) float targets)."""
    threads = not by_member
    chunks = chunked and threads
    off = 0.0 if gradients else 1.0

    def stack_function(buffers, layout, settings, X, y, weights, backward_uses_output, alpha, flag):
        """Every active member m steps on its rows of the plan (numbamlp.plan)."""
        # The arrays leave their named tuples before the loop: Numba (0.68) drops what a
        # parallel loop writes into an array reached through a tuple's attribute.
        params, grads, state_a, state_b = buffers.params, buffers.grads, buffers.state_a, buffers.state_b
        workspaces, scalars, losses = buffers.workspace, buffers.scalars, buffers.losses
        layers, param_offsets, hidden_offsets, outputs = (layout.layers, layout.param_offsets,
                                                           layout.hidden_offsets, layout.output_offsets)
        lr, momentum, weight_decay = settings.lr, settings.momentum, settings.weight_decay
        beta1, beta2, eps, steps, active = settings.beta1, settings.beta2, settings.eps, settings.steps, settings.active
        for member in prange(params.shape[0]):
            m = np.int64(member)  # (a parallel loop's index may be unsigned)
            if not active[m]:
                continue
            row = 0 if X.shape[0] == 1 else m  # a leading 1: one batch for every member
            Xm = X[row]
            workspace = workspaces[m]
            step = steps[m] + 1
            loss = _train_step(
                params[m], grads[m], state_a[m], state_b[m], layers, param_offsets, workspace, hidden_offsets,
                outputs, scalars[m], Xm, y[row], _row(weights, row), act_code, backward_uses_output, alpha,
                update_mode, adam,
                off * lr[m], off * momentum[m], off * weight_decay[m], flag, (beta1[m], beta2[m], eps[m]), step,
                chunks, threads, loss_code)
            losses[m] = loss
            if math.isfinite(loss) and not gradients:
                steps[m] = step

    # Numba names a function's cache files after its qualified name.  One name per
    # specialisation gives each its own index: with one index for all, two processes that
    # compile different ones on an empty cache could each write it without the other's
    # entry, and the later one's data file over the earlier one's, under the earlier key.
    name = (f"stack_step_{ACTIVATION_NAMES[act_code]}_{_UPDATE_NAMES[update_mode, adam]}"
            f"{'_chunked' if chunked else ''}{'_by_member' if by_member else ''}{'_gradients' if gradients else ''}"
            f"{'' if loss_code == CROSS_ENTROPY else '_' + LOSS_NAMES[loss_code]}")
    stack_function.__name__ = stack_function.__qualname__ = name
    return njit(**(_PARALLEL if by_member else _SERIAL))(stack_function)


_SPECIALISED_STACK: dict = {}


def stack_function(act_code, update_mode, adam, chunked, by_member, gradients, loss_code=CROSS_ENTROPY):
    """The compiled stack step for these settings (see stack_step), made on first use (then
    loaded from the cache); compiled callers, such as a loop of steps, can call it."""
    key = (act_code, update_mode, adam, chunked, by_member, gradients, loss_code)
    compiled = _SPECIALISED_STACK.get(key)
    if compiled is None:
        compiled = _SPECIALISED_STACK.setdefault(key, _specialised_stack_step(
            int(act_code), int(update_mode), bool(adam), bool(chunked), bool(by_member), bool(gradients),
            int(loss_code)))
    return compiled


def stack_step(buffers, layout, settings, X, y, weights, act_code, backward_uses_output, alpha, adam, flag, mode,
               loss=CROSS_ENTROPY):
    """One step of every active member of a stack (numbamlp.plan): forward, loss, backward
    and, in mode STEP_TRAIN, each member's optimizer update with its own settings (mode
    STEP_GRADIENTS: the gradients only).  buffers, layout, settings: the plan's named tuples;
    X (M or 1, B, D); y (M or 1, B) int64 class indices (loss CROSS_ENTROPY) or (M or 1, B, K)
    targets of the buffers' dtype (SQUARED_ERROR); weights None or (M or 1, B); C-contiguous,
    X and weights of the buffers' dtype.  losses (M,) = each member's loss, NaN for an inactive one; a member
    whose loss is not finite keeps its weights and optimizer state, as does an inactive one.

    Plain SGD (momentum 0) updates inside the GEMMs, the others after them (see
    UPDATE_SGD); members of both kinds step in two calls, each member in its own kind, so
    that each does what it does alone."""
    arguments = (buffers, layout, settings, X, y, weights, backward_uses_output, alpha, flag)
    gradients = mode == STEP_GRADIENTS
    update_after = gradients or adam
    if buffers.params.shape[0] == 1:  # a model alone: no masks, no reductions (a plan's AloneStep skips the dispatcher)
        stack_function(*alone_specialisation(buffers, settings, act_code, adam, gradients, loss))(*arguments)
        if not settings.active[0]:
            buffers.losses[0] = np.nan
        return
    by_member = numba.get_num_threads() > 1
    chunked = not by_member and buffers.params.shape[1] >= UPDATE_PARALLEL_MIN
    momentum, active = settings.momentum, settings.active
    if update_after or momentum.all():
        stack_function(act_code, UPDATE_AFTER, adam and not gradients, chunked, by_member, gradients, loss)(*arguments)
    elif not momentum.any():
        stack_function(act_code, UPDATE_SGD, False, chunked, by_member, False, loss)(*arguments)
    else:  # plain SGD beside momentum: each kind in its own call
        was_active = active.copy()
        plain = momentum == 0.0
        for update_mode, members in ((UPDATE_SGD, plain), (UPDATE_AFTER, ~plain)):
            np.logical_and(was_active, members, out=active)
            stack_function(act_code, update_mode, False, chunked, by_member, False, loss)(*arguments)
        active[:] = was_active
    if not active.all():
        buffers.losses[~active] = np.nan


def alone_specialisation(buffers, settings, act_code, adam, gradients, loss) -> tuple:
    """stack_function's settings for a stack of one: plain SGD (momentum 0) updates inside
    the GEMMs, every other optimizer (and the gradients-only mode) after them."""
    chunked = buffers.params.shape[1] >= UPDATE_PARALLEL_MIN
    update_mode = UPDATE_AFTER if gradients or adam or settings.momentum[0] != 0.0 else UPDATE_SGD
    return (act_code, update_mode, adam and not gradients, chunked, False, gradients, loss)


# ---------------------------------------------------------------- a plain batch (kernels/cpu_dispatch.py)
@njit(**_SERIAL)
def batch_problem(X, y, n_classes):
    """False when every value of X (B, D) is finite and y (B,) int64 holds class indices in
    [0, n_classes), True otherwise.  Branch-free, so the loops vectorise (0.1 µs at
    32 x 64; with an early return 1.2 µs)."""
    bad = False
    for i in range(y.shape[0]):
        bad |= (y[i] < 0) | (y[i] >= n_classes)
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            v = X[i, j]
            bad |= (v - v) != 0.0  # NaN for NaN and ±inf
    return bad


# Importing this backend loads scipy's BLAS and makes it single-threaded: see _gemm.
pin_blas_to_one_thread(load_scipy_blas())
# Start Numba's thread pool now.  A cached function that calls a parallel one is supposed
# to start it when loaded, but Numba (0.68) loses that hook when the parallel callee was
# itself loaded from the cache while the caller compiled: running such a caller from the
# cache then crashed (segfault) until something else had started the pool.  Reproduced
# and tested: tests/test_gemm.py::test_cached_kernels_load_in_any_order.  (kernels/pool.py
# starts it, and sizes the default threads by the cores other processes leave free.)
start_thread_pool()
# Numba's workqueue threading layer (its fallback when neither OpenMP's libgomp nor TBB is
# installed) aborts the whole process when two Python threads launch parallel work at the
# same time (measured: two Trainers fitting in two threads).  There, callers take turns
# through this lock (numbamlp.kernels.launch_guard); with OpenMP or TBB it is a no-op.
LAUNCH_GUARD = threading.RLock() if numba.threading_layer() == "workqueue" else contextlib.nullcontext()


# A child forked under GNU OpenMP runs on one thread (kernels/pool.py says why).
one_thread_in_forked_children()


# ---------------------------------------------------------------- the public kernels, checked
# The public names check their arguments first (kernels/cpu_checks.py: the kernels index
# without bounds checks); compiled code calls the kernels themselves, by their private
# names (_relu_forward, ...), as do benchmarks that time the kernels alone.
for _name, _check in KERNEL_CHECKS.items():
    globals()["_" + _name] = globals()[_name]  # the compiled kernel, for compiled callers
    globals()[_name] = checked(_name, globals()[_name], _check)
del _name, _check
