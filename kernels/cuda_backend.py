"""CUDA kernels through numba.cuda: the CPU backends' kernel names and argument order, and the
step of a stack of M ≥ 1 models (numbamlp.plan) on device-resident buffers.

Symbols: M members, B batch rows, D input features, H hidden width, C classes (or K regression
outputs), P parameters per member.

The member axis is the grid's third dimension (blockIdx.z) in every kernel: block (x, y, m)
does its tile, rows or elements of member m, and a member the step leaves alone (inactive, or
its loss not finite: ``members[m, RUN] == 0``) returns at once.  The step's matrices live in
flat (M, ·) buffers (parameters, gradients, workspace; the batch as (M or 1, B·D)), so a
kernel reads each through an *operand* ``(flat, offset, row_stride, col_stride)``: element
(i, j) of member m is ``flat[m, offset + i·row_stride + j·col_stride]``, read from row 0 when
flat has one row (one batch shared by every member).  A transpose is the same operand with
its strides swapped; nothing is reshaped on the device (a reshape there calls a C helper the
GPU does not have).

- GEMM: TILE×TILE shared-memory tiles, each thread 2×2 outputs, bounds-checked so any size
  works.  Epilogues: + bias and φ (forward), ⊙ φ' (backward dX), and db beside dW: the batch
  gains a column of ones, so db = doutᵀ·1 is one more column of the dW product.
- The loss sums are deterministic: each thread adds its rows in order, then the block adds
  the threads' partials in a fixed tree (``_block_sum``); no float atomics, so the bits do not
  depend on scheduling.  (The GEMMs' sums, db included, run in a fixed order per output.)
- The 2-D launchers (affine_forward, …, sgd_update, adam_update) are the M = 1 case of the
  same kernels.  They take device arrays, or host arrays, which Numba copies in and out at
  every launch (fine for tests, slow for training); a 2-D operand must be C-contiguous or
  the transpose of a C-contiguous array.

Per step one small host array goes up (the members' settings, MEMBER_FIELDS columns) and the
losses (M,) come down; nothing else crosses the bus.

Importing this module needs numba.cuda (built into Numba, or NVIDIA's numba-cuda, the
``cuda`` extra); running it needs a GPU, or NUMBA_ENABLE_CUDASIM=1 (the simulator, for tests).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, float64

from numbamlp.kernels import ACTIVATION_NAMES, CROSS_ENTROPY, STEP_TRAIN, negligible_exp

TILE = 16            # output tile edge; a block is (TILE/2)² threads, 2×2 outputs each
THREADS_1D = 128     # threads per block for elementwise kernels
REDUCE_THREADS = 32  # threads (one warp) per member in the loss kernels; a power of two (the tree halves it)

# The members table: one step's per-member settings, (M, MEMBER_FIELDS) float64 on the device
# (a plan's buffers.scalars), uploaded once per step.  BIAS1, BIAS2: Adam's bias corrections
# 1 − β^t for the step t the member would take.  RUN: 1 while the member takes part in the
# step; the loss kernel clears it when the member's loss is not finite.
LR, MOMENTUM, WEIGHT_DECAY, BETA1, BETA2, EPS, BIAS1, BIAS2, RUN = range(9)
MEMBER_FIELDS = 9

# GEMM epilogues
PLAIN, BIAS, BIAS_ACTIVATION, ACTIVATION_GRADIENT, WITH_BIAS_GRADIENT = range(5)


# ---------------------------------------------------------------- scalar φ and φ'
@cuda.jit(device=True)
def _sigmoid(a):
    if a >= 0:
        return 1.0 / (1.0 + math.exp(-a))
    e = math.exp(a)
    return e / (1.0 + e)


# Activation codes are positions in ACTIVATION_NAMES; _phi and _dphi follow that order.
@cuda.jit(device=True)
def _phi(code, a, alpha):
    if code == 0:
        return a if a > 0 else 0.0
    if code == 1:
        return a if a > 0 else alpha * a
    if code == 2:
        return a if a > 0 else alpha * math.expm1(a)
    if code == 3:
        return _sigmoid(a)
    if code == 4:
        return a * 0.5 * (1.0 + math.erf(a * 0.7071067811865476))
    if code == 5:
        return a * _sigmoid(a)
    return math.tanh(a)


@cuda.jit(device=True)
def _dphi(code, cache, alpha):
    """φ' from the cache the activation table names: A for most, φ(A) for sigmoid and tanh."""
    if code == 0:
        return 1.0 if cache > 0 else 0.0
    if code == 1:
        return 1.0 if cache > 0 else alpha
    if code == 2:
        return 1.0 if cache > 0 else alpha * math.exp(cache)
    if code == 3:
        return cache * (1.0 - cache)
    if code == 4:
        return 0.5 * (1.0 + math.erf(cache * 0.7071067811865476)) + cache * 0.3989422804014327 * math.exp(
            -0.5 * cache * cache)
    if code == 5:
        s = _sigmoid(cache)
        return s * (1.0 + cache * (1.0 - s))
    return 1.0 - cache * cache


# ---------------------------------------------------------------- operands
@cuda.jit(device=True)
def _get(operand, m, i, j):
    """Element (i, j) of member m's matrix (row 0's for a one-row flat: a shared batch)."""
    flat, offset, row_stride, col_stride = operand
    return flat[m if flat.shape[0] > 1 else 0, offset + i * row_stride + j * col_stride]


@cuda.jit(device=True)
def _set(operand, m, i, j, value):
    flat, offset, row_stride, col_stride = operand
    flat[m, offset + i * row_stride + j * col_stride] = value


def _transpose(operand):
    flat, offset, row_stride, col_stride = operand
    return flat, offset, col_stride, row_stride


def _operand(array):
    """A 2-D array (host or device) as a one-member operand: C-contiguous, or the transpose of
    a C-contiguous array (e.g. W.T).  A 1-D array is a row: (1, n)."""
    if len(array.shape) == 1:
        return array.reshape(1, array.shape[0]), 0, 0, 1
    rows, cols = array.shape
    if array.flags["C_CONTIGUOUS"]:
        return array.reshape(1, rows * cols), 0, cols, 1
    if array.T.flags["C_CONTIGUOUS"]:
        return array.T.reshape(1, rows * cols), 0, 1, rows
    raise ValueError("a CUDA kernel operand must be C-contiguous or the transpose of a C-contiguous array")


_PLACEHOLDERS: dict = {}


def _placeholder(dtype, ndim: int = 2):
    """A small device array standing in for an unused argument.  Never pass a real argument
    twice instead: Numba copies host arguments in and out one by one, so an alias would be
    overwritten by its stale copy."""
    key = (np.dtype(dtype), ndim)
    if key not in _PLACEHOLDERS:
        _PLACEHOLDERS[key] = cuda.device_array((1,) * ndim, dtype=dtype)
    return _PLACEHOLDERS[key]


def _no_operand(dtype):
    return _placeholder(dtype), 0, 0, 0


def _one_member(**settings):
    """The members table of a 2-D launch: one member that runs, with these settings
    (lr=…, momentum=…, …, by the column names in lower case)."""
    table = np.zeros((1, MEMBER_FIELDS))
    table[0, RUN] = 1.0
    for name, value in settings.items():
        table[0, globals()[name.upper()]] = value
    return cuda.to_device(table)


_RUN_ONE: dict = {}


def _run_one():
    """A cached one-member table for launches that read only RUN."""
    if "table" not in _RUN_ONE:
        _RUN_ONE["table"] = _one_member()
    return _RUN_ONE["table"]


# ---------------------------------------------------------------- tiled GEMM
def _make_gemm(dtype):
    @cuda.jit
    def gemm_kernel(C, A, B, bias, cache, shape, epilogue, act_code, alpha, members):
        """Member m = blockIdx.z, if members[m, RUN]: C (R, N) = A (R, K) @ B (K, N), all
        operands, shape = (R, N, K); outputs overwritten (=).  Epilogue BIAS: + bias (N,) (an
        operand with row stride 0); BIAS_ACTIVATION: also cache = φ(C); ACTIVATION_GRADIENT:
        C = (A @ B) ⊙ φ'(cache); WITH_BIAS_GRADIENT: B gains a column of ones, whose column of
        the product, Σ_k A[i, k], goes to bias[i] (db = doutᵀ·1 beside dW = doutᵀ X)."""
        A_tile = cuda.shared.array((TILE, TILE), dtype)
        B_tile = cuda.shared.array((TILE, TILE), dtype)
        m = cuda.blockIdx.z
        if members[m, RUN] == 0.0:
            return
        R, N, K = shape
        cols = N + 1 if epilogue == WITH_BIAS_GRADIENT else N
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        row_base, col_base = cuda.blockIdx.y * TILE, cuda.blockIdx.x * TILE
        acc00 = acc01 = acc10 = acc11 = dtype(0)
        for k0 in range(0, K, TILE):
            for di in range(2):  # each thread loads 2×2 elements of each tile
                for dj in range(2):
                    r, c = 2 * ty + di, 2 * tx + dj
                    i, k = row_base + r, k0 + c
                    A_tile[r, c] = _get(A, m, i, k) if i < R and k < K else dtype(0)
                    k, j = k0 + r, col_base + c
                    if k < K and j < N:
                        B_tile[r, c] = _get(B, m, k, j)
                    else:  # the column of ones (WITH_BIAS_GRADIENT), or padding
                        B_tile[r, c] = dtype(1) if k < K and j < cols else dtype(0)
            cuda.syncthreads()
            for kk in range(TILE):
                a0, a1 = A_tile[2 * ty, kk], A_tile[2 * ty + 1, kk]
                b0, b1 = B_tile[kk, 2 * tx], B_tile[kk, 2 * tx + 1]
                acc00 += a0 * b0
                acc01 += a0 * b1
                acc10 += a1 * b0
                acc11 += a1 * b1
            cuda.syncthreads()
        for di in range(2):
            for dj in range(2):
                i, j = row_base + 2 * ty + di, col_base + 2 * tx + dj
                if i < R and j < cols:
                    value = (acc00 if dj == 0 else acc01) if di == 0 else (acc10 if dj == 0 else acc11)
                    if j == N:  # (WITH_BIAS_GRADIENT only) db[i]
                        _set(bias, m, 0, i, value)
                        continue
                    if epilogue == BIAS or epilogue == BIAS_ACTIVATION:
                        value += _get(bias, m, 0, j)
                    if epilogue == ACTIVATION_GRADIENT:
                        value *= _dphi(act_code, _get(cache, m, i, j), alpha)
                    _set(C, m, i, j, value)
                    if epilogue == BIAS_ACTIVATION:
                        _set(cache, m, i, j, _phi(act_code, value, alpha))

    return gemm_kernel


_GEMM = {np.dtype(np.float32): _make_gemm(float32), np.dtype(np.float64): _make_gemm(float64)}


def _launch_gemm(C, A, B, shape, members, epilogue=PLAIN, bias=None, cache=None, act_code=0, alpha=0.0):
    """The GEMM kernel over members.shape[0] members; operands as in gemm_kernel."""
    R, N, _ = shape
    cols = N + 1 if epilogue == WITH_BIAS_GRADIENT else N
    grid = ((cols + TILE - 1) // TILE, (R + TILE - 1) // TILE, members.shape[0])
    dtype = np.dtype(C[0].dtype)
    unused = _no_operand(dtype)
    _GEMM[dtype][grid, (TILE // 2, TILE // 2)](C, A, B, unused if bias is None else bias,
                                               unused if cache is None else cache, shape, epilogue,
                                               act_code, alpha, members)


def _gemm(C, A, B, bias=None, epilogue=PLAIN, act_code=0, alpha=0.0, cache=None):
    """C (R, N) = A (R, K) @ B (K, N) for 2-D arrays (one member), with an epilogue."""
    R, N = C.shape
    _launch_gemm(_operand(C), _operand(A), _operand(B), (R, N, A.shape[1]), _run_one(), epilogue,
                 None if bias is None else _operand(bias), None if cache is None else _operand(cache),
                 act_code, alpha)


# ---------------------------------------------------------------- affine
def affine_forward(out, X, W, b):
    """out (B, out) = X (B, in) @ W (out, in).T + b (out,)."""
    _gemm(out, X, W.T, bias=b, epilogue=BIAS)


def affine_backward(dX, dW, db, dout, X, W):
    """dW (out, in) = doutᵀ X and db (out,) = Σ_rows dout in one GEMM;  dX (B, in) = dout W
    (if not None)."""
    _gemm(dW, dout.T, X, bias=db, epilogue=WITH_BIAS_GRADIENT)
    if dX is not None:
        _gemm(dX, dout, W)


# ---------------------------------------------------------------- activations
@cuda.jit
def activation_forward_kernel(Hout, A, code, alpha):
    i, j = cuda.grid(2)
    if i < A.shape[0] and j < A.shape[1]:
        Hout[i, j] = _phi(code, A[i, j], alpha)


@cuda.jit
def activation_backward_kernel(dA, dH, cache, code, alpha):
    i, j = cuda.grid(2)
    if i < cache.shape[0] and j < cache.shape[1]:
        dA[i, j] = dH[i, j] * _dphi(code, cache[i, j], alpha)


def _grid2(shape, block=(8, 8)):
    return ((shape[0] + block[0] - 1) // block[0], (shape[1] + block[1] - 1) // block[1]), block


def _make_activation(code):
    def forward(Hout, A, alpha):
        grid, block = _grid2(A.shape)
        activation_forward_kernel[grid, block](Hout, A, code, alpha)

    def backward(dA, dH, cache, alpha):
        grid, block = _grid2(cache.shape)
        activation_backward_kernel[grid, block](dA, dH, cache, code, alpha)

    return forward, backward


for _code, _name in enumerate(ACTIVATION_NAMES):
    globals()[f"{_name}_forward"], globals()[f"{_name}_backward"] = _make_activation(_code)
    globals()[f"{_name}_forward"].__doc__ = f"Hout = {_name}(A), elementwise."
    globals()[f"{_name}_backward"].__doc__ = f"dA = dH ⊙ {_name}'(cache)."


# ---------------------------------------------------------------- loss
@cuda.jit(device=True)
def _block_sum(shared, value):
    """Σ of every thread's ``value`` over the block (blockDim.x a power of two), added in a
    fixed tree order, so the same bits every run; every thread gets the sum.  Every thread
    of the block must call it."""
    t = cuda.threadIdx.x
    shared[t] = value
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:
        if t < half:
            shared[t] += shared[t + half]
        cuda.syncthreads()
        half //= 2
    total = shared[0]
    cuda.syncthreads()  # everyone has read it before shared is reused
    return total


@cuda.jit(device=True)
def _member_loss(shared, losses, members, m, total, weight_total):
    """Every thread's partial Σ wᵢ·lossᵢ and Σ wᵢ summed over the block in a fixed tree;
    losses[m] = their ratio, and a loss that is not finite takes member m out of the step."""
    total = _block_sum(shared, total)
    weight_total = _block_sum(shared, weight_total)
    if cuda.threadIdx.x == 0:
        loss = total / weight_total
        losses[m] = loss
        if not math.isfinite(loss):
            members[m, RUN] = 0.0


@cuda.jit
def softmax_crossentropy_kernel(P, row_loss, S, y, weights, weighted, losses, members, rows, classes, negligible):
    """Member m = blockIdx.z, its rows i < rows spread over the block's threads:
    P[i] = softmax(S[i]); row_loss[i] = (max − s_y) + log1p(Σ of the other exps), in float64
    (so tiny losses keep their digits), an exponential below ``negligible`` 0 in P
    (numbamlp.kernels.negligible_exp); P, row_loss (B, 1), S operands; y (M or 1, B) int64;
    weights (M or 1, B) if ``weighted``.  losses[m] (float64) = Σ wᵢ·row_lossᵢ / Σ wᵢ over the
    stored row losses, NaN for a member not in the step; a loss that is not finite takes the
    member out of the rest of the step (members[m, RUN] = 0)."""
    shared = cuda.shared.array(REDUCE_THREADS, float64)
    m, t = cuda.blockIdx.z, cuda.threadIdx.x
    if members[m, RUN] == 0.0:
        if t == 0:
            losses[m] = math.nan
        return
    label_row = m if y.shape[0] > 1 else 0
    weight_row = m if weights.shape[0] > 1 else 0
    total = weight_total = 0.0
    for i in range(t, rows, cuda.blockDim.x):
        top = 0
        for j in range(1, classes):
            if _get(S, m, i, j) > _get(S, m, i, top):
                top = j
        high = float64(_get(S, m, i, top))
        rest = 0.0  # Σ over the non-maximal entries: logsumexp = high + log1p(rest)
        for j in range(classes):
            if j != top:
                rest += math.exp(float64(_get(S, m, i, j)) - high)
        for j in range(classes):
            e = 1.0 if j == top else math.exp(float64(_get(S, m, i, j)) - high)
            _set(P, m, i, j, e / (1.0 + rest) if e >= negligible else 0.0)
        _set(row_loss, m, i, 0, (high - float64(_get(S, m, i, y[label_row, i]))) + math.log1p(rest))
        w = float64(weights[weight_row, i]) if weighted else 1.0
        total += w * float64(_get(row_loss, m, i, 0))  # the stored value, as the other backends sum
        weight_total += w
    _member_loss(shared, losses, members, m, total, weight_total)


@cuda.jit(device=True)
def _weight_total(shared, weights, row, rows):
    """Σ weights[row, :rows] over the block, each thread's rows in order, then a fixed tree."""
    total = 0.0
    for i in range(cuda.threadIdx.x, rows, cuda.blockDim.x):
        total += float64(weights[row, i])
    return _block_sum(shared, total)


@cuda.jit
def softmax_crossentropy_backward_kernel(dS, P, y, weights, weighted, members, rows, classes):
    """Member m = blockIdx.z: dS (B, C) = (P − onehot(y)) / B, or wᵢ (P − onehot(y)) / Σ w
    (Σ w in a fixed tree, see _block_sum); operands and y, weights as in the forward kernel."""
    shared = cuda.shared.array(REDUCE_THREADS, float64)
    m, t = cuda.blockIdx.z, cuda.threadIdx.x
    if members[m, RUN] == 0.0:
        return
    label_row = m if y.shape[0] > 1 else 0
    weight_row = m if weights.shape[0] > 1 else 0
    weight_total = _weight_total(shared, weights, weight_row, rows) if weighted else 0.0
    for i in range(t, rows, cuda.blockDim.x):
        label = y[label_row, i]
        for j in range(classes):
            g = _get(P, m, i, j) - (1.0 if j == label else 0.0)
            _set(dS, m, i, j, g * (weights[weight_row, i] / weight_total) if weighted else g / rows)


def _launch_loss(P, row_loss, dS, S, y, weights, losses, members, rows, classes):
    """The loss kernels over members.shape[0] members: P, row_loss, losses, then dS."""
    weighted = weights is not None
    if not weighted:
        weights = _placeholder(P[0].dtype)
    grid = (1, 1, members.shape[0])
    softmax_crossentropy_kernel[grid, REDUCE_THREADS](P, row_loss, S, y, weights, weighted, losses, members,
                                                      rows, classes, negligible_exp(P[0].dtype))
    if dS is not None:
        softmax_crossentropy_backward_kernel[grid, REDUCE_THREADS](dS, P, y, weights, weighted, members, rows,
                                                                   classes)


def softmax_crossentropy_forward(P, row_loss, S, y, weights=None):
    """P (B, C) = softmax(S); row_loss (B,); returns the (weighted) mean loss as a float
    (the only value copied to the host)."""
    B, C = S.shape
    losses = cuda.device_array(1, np.float64)
    _launch_loss(_operand(P), (row_loss.reshape(1, B), 0, 1, 0), None, _operand(S), y.reshape(1, B),
                 None if weights is None else weights.reshape(1, B), losses, _run_one(), B, C)
    return float(losses.copy_to_host()[0])


def softmax_crossentropy_backward(dS, P, y, weights=None):
    """dS (B, C) = (P − onehot(y)) / B, or wᵢ (P − onehot(y)) / Σ w."""
    B, C = P.shape
    weighted = weights is not None
    grid = (1, 1, 1)
    softmax_crossentropy_backward_kernel[grid, REDUCE_THREADS](
        _operand(dS), _operand(P), y.reshape(1, B), weights.reshape(1, B) if weighted else _placeholder(P.dtype),
        weighted, _run_one(), B, C)


@cuda.jit
def squared_error_kernel(row_loss, S, Y, weights, weighted, losses, members, rows, outputs):
    """Member m = blockIdx.z, its rows i < rows spread over the block's threads:
    row_loss[i] = ½ Σ_k (S[i, k] − Y[i, k])² in float64; row_loss (B, 1), S operands; Y
    (M or 1, B·K) the targets, row i at i·K; weights (M or 1, B) if ``weighted``.  losses[m]
    (float64) = Σ wᵢ·row_lossᵢ / Σ wᵢ over the stored row losses (fixed tree order), NaN for
    a member not in the step; a loss that is not finite takes the member out of the step."""
    shared = cuda.shared.array(REDUCE_THREADS, float64)
    m, t = cuda.blockIdx.z, cuda.threadIdx.x
    if members[m, RUN] == 0.0:
        if t == 0:
            losses[m] = math.nan
        return
    target_row = m if Y.shape[0] > 1 else 0
    weight_row = m if weights.shape[0] > 1 else 0
    total = weight_total = 0.0
    for i in range(t, rows, cuda.blockDim.x):
        row = 0.0
        for k in range(outputs):
            d = float64(_get(S, m, i, k)) - float64(Y[target_row, i * outputs + k])
            row += d * d
        _set(row_loss, m, i, 0, 0.5 * row)
        w = float64(weights[weight_row, i]) if weighted else 1.0
        total += w * float64(_get(row_loss, m, i, 0))
        weight_total += w
    _member_loss(shared, losses, members, m, total, weight_total)


@cuda.jit
def squared_error_backward_kernel(dS, S, Y, weights, weighted, members, rows, outputs):
    """Member m = blockIdx.z: dS (B, K) = (S − Y) / B, or wᵢ (S − Y) / Σ w (Σ w in a fixed
    tree); operands, Y and weights as in squared_error_kernel."""
    shared = cuda.shared.array(REDUCE_THREADS, float64)
    m, t = cuda.blockIdx.z, cuda.threadIdx.x
    if members[m, RUN] == 0.0:
        return
    target_row = m if Y.shape[0] > 1 else 0
    weight_row = m if weights.shape[0] > 1 else 0
    weight_total = _weight_total(shared, weights, weight_row, rows) if weighted else 0.0
    for i in range(t, rows, cuda.blockDim.x):
        for k in range(outputs):
            g = _get(S, m, i, k) - Y[target_row, i * outputs + k]
            _set(dS, m, i, k, g * (weights[weight_row, i] / weight_total) if weighted else g / rows)


def _launch_squared_error(row_loss, dS, S, Y, weights, losses, members, rows, outputs):
    """The squared-error kernels over members.shape[0] members: row_loss and losses, then dS
    (if not None).  Y (M or 1, B·K)."""
    weighted = weights is not None
    if not weighted:
        weights = _placeholder(S[0].dtype)
    grid = (1, 1, members.shape[0])
    squared_error_kernel[grid, REDUCE_THREADS](row_loss, S, Y, weights, weighted, losses, members, rows, outputs)
    if dS is not None:
        squared_error_backward_kernel[grid, REDUCE_THREADS](dS, S, Y, weights, weighted, members, rows, outputs)


def mse_forward(row_loss, S, Y, weights=None):
    """row_loss (B,) = ½ Σ_k (S − Y)² for S, Y (B, K); returns the (weighted) mean loss as a
    float (the only value copied to the host)."""
    B, K = S.shape
    losses = cuda.device_array(1, np.float64)
    _launch_squared_error((row_loss.reshape(1, B), 0, 1, 0), None, _operand(S), Y.reshape(1, B * K),
                          None if weights is None else weights.reshape(1, B), losses, _run_one(), B, K)
    return float(losses.copy_to_host()[0])


def mse_backward(dS, S, Y, weights=None):
    """dS (B, K) = (S − Y) / B, or wᵢ (S − Y) / Σ w."""
    B, K = S.shape
    weighted = weights is not None
    squared_error_backward_kernel[(1, 1, 1), REDUCE_THREADS](
        _operand(dS), _operand(S), Y.reshape(1, B * K),
        weights.reshape(1, B) if weighted else _placeholder(S.dtype), weighted, _run_one(), B, K)


# ---------------------------------------------------------------- optimizers
@cuda.jit
def update_kernel(params, grads, state_a, state_b, members, adam, flag):
    """Member m = blockIdx.z, if members[m, RUN]: its optimizer step over its row of params,
    grads, state_a, state_b (M, P), in place, with its settings from the members table, as
    PyTorch and the other backends do it (each stored value rounded where theirs is).  SGD:
    state_a the velocity, flag nesterov.  Adam: state_a, state_b the moments, flag decoupled
    weight decay (AdamW)."""
    k = cuda.grid(1)
    m = cuda.blockIdx.z
    if k >= params.shape[1] or members[m, RUN] == 0.0:
        return
    lr, weight_decay = members[m, LR], members[m, WEIGHT_DECAY]
    g = grads[m, k] * 1.0
    if adam:
        if flag:
            params[m, k] = params[m, k] * (1.0 - lr * weight_decay)
        elif weight_decay != 0.0:
            g = g + weight_decay * params[m, k]
        beta1, beta2 = members[m, BETA1], members[m, BETA2]
        state_a[m, k] = state_a[m, k] * beta1
        state_a[m, k] = state_a[m, k] + (1.0 - beta1) * g
        state_b[m, k] = state_b[m, k] * beta2
        state_b[m, k] = state_b[m, k] + (1.0 - beta2) * g * g
        m_hat, v_hat = state_a[m, k] / members[m, BIAS1], state_b[m, k] / members[m, BIAS2]
        params[m, k] = params[m, k] - lr * m_hat / (math.sqrt(v_hat) + members[m, EPS])
        return
    if weight_decay != 0.0:
        g = g + weight_decay * params[m, k]
    momentum = members[m, MOMENTUM]
    if momentum != 0.0:
        state_a[m, k] = state_a[m, k] * momentum
        state_a[m, k] = state_a[m, k] + g
        g = g + momentum * state_a[m, k] if flag else state_a[m, k] * 1.0
    params[m, k] = params[m, k] - lr * g


def _launch_update(params, grads, state_a, state_b, members, adam, flag):
    grid = ((params.shape[1] + THREADS_1D - 1) // THREADS_1D, 1, members.shape[0])
    update_kernel[grid, THREADS_1D](params, grads, state_a, state_b, members, adam, flag)


def sgd_update(param, velocity, grad, lr, momentum, weight_decay, nesterov):
    """SGD as in PyTorch over flat arrays (see the cpu backend): param, velocity updated in place."""
    members = _one_member(lr=lr, momentum=momentum, weight_decay=weight_decay)
    _launch_update(param.reshape(1, -1), grad.reshape(1, -1), velocity.reshape(1, -1),
                   _placeholder(param.dtype), members, False, nesterov)


def adam_update(param, m, v, grad, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    """Adam / AdamW over flat arrays, in place; step counts from 1."""
    members = _one_member(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                          bias1=1.0 - beta1**step, bias2=1.0 - beta2**step)
    _launch_update(param.reshape(1, -1), grad.reshape(1, -1), m.reshape(1, -1), v.reshape(1, -1), members,
                   True, decoupled)


# ---------------------------------------------------------------- a step of a stack of models
def members_table(settings, training: bool) -> np.ndarray:
    """(M, MEMBER_FIELDS) float64: the step's per-member settings from a plan's MemberSettings;
    Adam's bias corrections are for the step each member would take (steps + 1)."""
    table = np.zeros((len(settings.lr), MEMBER_FIELDS))
    for column, values in ((LR, settings.lr), (MOMENTUM, settings.momentum), (WEIGHT_DECAY, settings.weight_decay),
                           (BETA1, settings.beta1), (BETA2, settings.beta2), (EPS, settings.eps),
                           (RUN, settings.active)):
        table[:, column] = values
    if training:
        step = settings.steps + 1
        table[:, BIAS1] = 1.0 - settings.beta1**step
        table[:, BIAS2] = 1.0 - settings.beta2**step
    return table


def stack_step(buffers, layout, settings, X, y, weights, act_code, backward_uses_output, alpha, adam, flag, mode,
               loss=CROSS_ENTROPY):
    """One step of every active member of a stack (numbamlp.plan), on the device: forward,
    loss, backward and, in mode STEP_TRAIN, each member's optimizer update with its own
    settings (STEP_GRADIENTS: the gradients only).  Returns the losses (M,) float64, copied
    down: each member's loss, NaN for an inactive one.

    buffers: the plan's StepBuffers of device arrays (params, grads, state (M, P); workspace
    (M, W) in model.workspace_layout, batch-major (B, width) blocks; scalars the (M,
    MEMBER_FIELDS) members table; losses (M,)); layout, settings: host arrays.  X (M or 1,
    B, D), y (M or 1, B) int64 (loss CROSS_ENTROPY) or (M or 1, B, K) targets of the dtype
    (SQUARED_ERROR), weights None or (M or 1, B): C-contiguous device arrays, a leading 1 one
    batch shared by every member.

    The host uploads the members table (RUN = active); the loss kernel takes out a member
    whose loss is not finite, and every later kernel skips it, so it keeps its gradients,
    weights and optimizer state, as an inactive member does.  The host then counts a step
    for each member whose loss came down finite: the same members the device updated."""
    training = mode == STEP_TRAIN
    members = buffers.scalars
    members.copy_to_device(members_table(settings, training))
    params, grads, workspace = buffers.params, buffers.grads, buffers.workspace
    layers, offsets, hidden = layout.layers, layout.param_offsets, layout.hidden_offsets
    L, B, D = len(layers) - 1, X.shape[1], X.shape[2]
    C = int(layers[L])
    S, P, dS = ((workspace, int(layout.output_offsets[k]), C, 1) for k in range(3))
    row_loss = (workspace, int(layout.output_offsets[3]), 1, 0)
    inputs = [(X.reshape(X.shape[0], B * D), 0, D, 1)]  # each layer's input (B, in)
    for layer in range(L):
        n_in, n_out, offset = int(layers[layer]), int(layers[layer + 1]), int(offsets[layer])
        W_t, b = (params, offset, 1, n_in), (params, offset + n_out * n_in, 0, 1)  # Wᵀ (in, out), b (out,)
        if layer == L - 1:
            _launch_gemm(S, inputs[layer], W_t, (B, n_out, n_in), members, BIAS, bias=b)
            break
        A, H = (workspace, int(hidden[layer, 0]), n_out, 1), (workspace, int(hidden[layer, 1]), n_out, 1)
        _launch_gemm(A, inputs[layer], W_t, (B, n_out, n_in), members, BIAS_ACTIVATION, bias=b, cache=H,
                     act_code=act_code, alpha=alpha)
        inputs.append(H)
    if loss == CROSS_ENTROPY:
        _launch_loss(P, row_loss, dS, S, y, weights, buffers.losses, members, B, C)
    else:
        _launch_squared_error(row_loss, dS, S, y.reshape(y.shape[0], B * C), weights, buffers.losses, members, B, C)
    dout = dS  # (B, out) of the layer being differentiated
    for layer in range(L - 1, -1, -1):
        n_in, n_out, offset = int(layers[layer]), int(layers[layer + 1]), int(offsets[layer])
        dW, db = (grads, offset, n_in, 1), (grads, offset + n_out * n_in, 0, 1)
        _launch_gemm(dW, _transpose(dout), inputs[layer], (n_out, n_in, B), members, WITH_BIAS_GRADIENT, bias=db)
        if layer == 0:
            break
        dA = (workspace, int(hidden[layer - 1, 3]), n_in, 1)
        cache = (workspace, int(hidden[layer - 1, 1 if backward_uses_output else 0]), n_in, 1)
        _launch_gemm(dA, dout, (params, offset, n_in, 1), (B, n_in, n_out), members, ACTIVATION_GRADIENT,
                     cache=cache, act_code=act_code, alpha=alpha)
        dout = dA
    if training:
        _launch_update(params, grads, buffers.state_a, buffers.state_b, members, adam, flag)
    losses = buffers.losses.copy_to_host()
    if training:
        settings.steps[np.isfinite(losses)] += 1
    return losses


def device_buffers(host):
    """The device twin of a plan's StepBuffers of host arrays (numbamlp.plan), made once:
    parameters, gradients and optimizer state copied up (state_b stays state_a's alias where
    it is one), a workspace and losses, and scalars as the (M, MEMBER_FIELDS) members table."""
    M = host.params.shape[0]
    state_a = cuda.to_device(host.state_a)
    return host._replace(params=cuda.to_device(host.params), grads=cuda.to_device(host.grads), state_a=state_a,
                         state_b=state_a if host.state_b is host.state_a else cuda.to_device(host.state_b),
                         workspace=cuda.device_array(host.workspace.shape, host.workspace.dtype),
                         scalars=cuda.device_array((M, MEMBER_FIELDS), np.float64),
                         losses=cuda.device_array(M, np.float64))


# ---------------------------------------------------------------- data on the device
def to_device(array):
    """A device array: ``array`` itself if it is one, else a C-contiguous copy of it."""
    if isinstance(array, np.ndarray):
        return cuda.to_device(np.ascontiguousarray(array))
    return array


def device_array(shape, dtype):
    return cuda.device_array(shape, dtype=dtype)


@cuda.jit
def _gather_rows_kernel(out, values, order, start):
    """out[m, i, j] = values[order[m, start + i], j]: member m = blockIdx.z."""
    j, i = cuda.grid(2)
    m = cuda.blockIdx.z
    if i < out.shape[1] and j < out.shape[2]:
        out[m, i, j] = values[order[m, start + i], j]


@cuda.jit
def _gather_kernel(out, values, order, start):
    """out[m, i] = values[m (or 0 for one row), order[m, start + i]]: member m = blockIdx.z."""
    i = cuda.grid(1)
    m = cuda.blockIdx.z
    if i < out.shape[1]:
        out[m, i] = values[m if values.shape[0] > 1 else 0, order[m, start + i]]


def gather(out, values, order, start: int) -> None:
    """Each member's rows of a data set, by index, on the device: out (k, B, D) from values
    (N, D), or out (k, B) from values (k or 1, N); row i of member m is order[m, start + i]
    (order (k, ·) int64)."""
    k = out.shape[0]
    if len(out.shape) == 3:
        grid = ((out.shape[2] + 7) // 8, (out.shape[1] + 7) // 8, k)
        _gather_rows_kernel[grid, (8, 8)](out, values, order, start)
    else:
        _gather_kernel[((out.shape[1] + THREADS_1D - 1) // THREADS_1D, 1, k), THREADS_1D](out, values, order, start)
