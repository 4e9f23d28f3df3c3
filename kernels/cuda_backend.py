"""CUDA kernels through numba.cuda: the same names and argument order as the CPU backends.

Symbols: B batch size, D input features, H hidden width, C classes.

Each operation is a ``@cuda.jit`` kernel ``<name>_kernel`` and a launcher ``<name>`` that
takes device arrays (or host arrays, which Numba copies — fine for tests, slow for
training), outputs first, then inputs, then options; outputs are overwritten (``=``).
Arrays are float32 or float64 and may be transposed views.

- The affine kernels are one tiled GEMM: TILE×TILE shared-memory tiles, each thread
  computing a 2×2 block of outputs, bounds-checked so any size works; the forward
  epilogue adds the bias and can apply the activation (``affine_activation_forward``), and
  the backward one multiplies by the activation's derivative (``affine_activation_backward``).
- Reductions (bias gradient, mean loss) are two-pass and deterministic: fixed chunks of
  REDUCE_CHUNK rows are summed in order into partials, then the partials in order; no
  float atomics, so results do not depend on scheduling.

Importing this module needs numba.cuda (built into Numba, or NVIDIA's numba-cuda, the
``cuda`` extra); running it needs a GPU, or NUMBA_ENABLE_CUDASIM=1 (the simulator, for tests).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, float64

from numbamlp.kernels import ACTIVATION_NAMES
from numbamlp.kernels.rowwise import softmax_crossentropy_row

TILE = 16           # output tile edge; a block is (TILE/2)² threads, 2×2 outputs each
REDUCE_CHUNK = 32   # rows per partial sum in the two-pass reductions
THREADS_1D = 128    # threads per block for elementwise kernels



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


# ---------------------------------------------------------------- tiled GEMM
def _make_gemm(dtype):
    @cuda.jit
    def gemm_kernel(C, A, B, bias, act_code, alpha, H, epilogue):
        """C (M, N) = A (M, K) @ B (K, N); epilogue 1: + bias (N,); 2: also H = φ(C);
        3: C = (A @ B) ⊙ φ'(H), H being the activation's cache (backward through φ)."""
        A_tile = cuda.shared.array((TILE, TILE), dtype)
        B_tile = cuda.shared.array((TILE, TILE), dtype)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        row0 = cuda.blockIdx.y * TILE + 2 * ty
        col0 = cuda.blockIdx.x * TILE + 2 * tx
        M, K = A.shape
        N = B.shape[1]
        acc00 = acc01 = acc10 = acc11 = dtype(0)
        for k0 in range(0, K, TILE):
            for di in range(2):  # each thread loads 2×2 elements of each tile
                for dj in range(2):
                    r, c = 2 * ty + di, 2 * tx + dj
                    gr, gk = cuda.blockIdx.y * TILE + r, k0 + c
                    A_tile[r, c] = A[gr, gk] if gr < M and gk < K else dtype(0)
                    gk2, gc = k0 + r, cuda.blockIdx.x * TILE + c
                    B_tile[r, c] = B[gk2, gc] if gk2 < K and gc < N else dtype(0)
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
                i, j = row0 + di, col0 + dj
                if i < M and j < N:
                    value = (acc00 if dj == 0 else acc01) if di == 0 else (acc10 if dj == 0 else acc11)
                    if epilogue == 1 or epilogue == 2:
                        value += bias[j]
                    if epilogue == 3:
                        value *= _dphi(act_code, H[i, j], alpha)
                    C[i, j] = value
                    if epilogue == 2:
                        H[i, j] = _phi(act_code, value, alpha)

    return gemm_kernel


_GEMM = {np.dtype(np.float32): _make_gemm(float32), np.dtype(np.float64): _make_gemm(float64)}
_PLACEHOLDERS: dict = {}


def _placeholder(dtype, ndim: int):
    """A small device array standing in for an unused argument.  Never pass a real argument
    twice instead: Numba copies host arguments in and out one by one, so an alias would be
    overwritten by its stale copy."""
    key = (np.dtype(dtype), ndim)
    if key not in _PLACEHOLDERS:
        _PLACEHOLDERS[key] = cuda.device_array((1,) * ndim, dtype=dtype)
    return _PLACEHOLDERS[key]


def _gemm(C, A, B, bias=None, epilogue=0, act_code=0, alpha=0.0, H=None):
    M, N = C.shape
    grid = ((N + TILE - 1) // TILE, (M + TILE - 1) // TILE)
    kernel = _GEMM[np.dtype(C.dtype)]
    kernel[grid, (TILE // 2, TILE // 2)](C, A, B, _placeholder(C.dtype, 1) if bias is None else bias, act_code,
                                         alpha, _placeholder(C.dtype, 2) if H is None else H, epilogue)


# ---------------------------------------------------------------- two-pass reductions
@cuda.jit
def _column_partials_kernel(partials, X):
    """partials[chunk, j] = Σ of X[chunk·REDUCE_CHUNK : (chunk+1)·REDUCE_CHUNK, j], in order."""
    j = cuda.grid(1)
    chunk = cuda.blockIdx.y
    if j < X.shape[1]:
        total = X[0, 0] * 0
        for i in range(chunk * REDUCE_CHUNK, min((chunk + 1) * REDUCE_CHUNK, X.shape[0])):
            total += X[i, j]
        partials[chunk, j] = total


@cuda.jit
def _sum_partials_kernel(out, partials):
    """out[j] = Σ_chunk partials[chunk, j], chunks in order."""
    j = cuda.grid(1)
    if j < out.shape[0]:
        total = partials[0, j] * 0
        for chunk in range(partials.shape[0]):
            total += partials[chunk, j]
        out[j] = total


def column_sums(out, X):
    """out (N,) = Σ_rows X (R, N): deterministic two-pass reduction."""
    chunks = (X.shape[0] + REDUCE_CHUNK - 1) // REDUCE_CHUNK
    partials = cuda.device_array((chunks, X.shape[1]), dtype=X.dtype)
    blocks = (X.shape[1] + THREADS_1D - 1) // THREADS_1D
    _column_partials_kernel[(blocks, chunks), THREADS_1D](partials, X)
    _sum_partials_kernel[blocks, THREADS_1D](out, partials)


# ---------------------------------------------------------------- affine
def affine_forward(out, X, W, b):
    """out (B, out) = X (B, in) @ W (out, in).T + b (out,)."""
    _gemm(out, X, W.T, bias=b, epilogue=1)


def affine_activation_forward(A, H, X, W, b, act_code, alpha):
    """A = X Wᵀ + b and H = φ(A) in one GEMM epilogue (act_code: position in ACTIVATION_NAMES)."""
    _gemm(A, X, W.T, bias=b, epilogue=2, act_code=act_code, alpha=alpha, H=H)


def affine_activation_backward(dA_below, dW, db, dout, X, W, cache, act_code, alpha):
    """affine_backward with the activation below fused into the dX GEMM's epilogue:
    dA_below (B, in) = (dout W) ⊙ φ'(cache), so dH never goes to memory."""
    _gemm(dW, dout.T, X)
    column_sums(db, dout)
    _gemm(dA_below, dout, W, epilogue=3, act_code=act_code, alpha=alpha, H=cache)


def affine_backward(dX, dW, db, dout, X, W):
    """dW (out, in) = doutᵀ X;  db (out,) = Σ_rows dout (two-pass);  dX (B, in) = dout W (if not None)."""
    _gemm(dW, dout.T, X)
    column_sums(db, dout)
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
_softmax_crossentropy_row = cuda.jit(device=True)(softmax_crossentropy_row)  # shared with cpu


@cuda.jit
def softmax_crossentropy_rows_kernel(P, row_loss, S, y):
    """One thread per row: P = softmax(S_i), row_loss = (max − s_y) + log1p(Σ other exps)."""
    i = cuda.grid(1)
    if i < S.shape[0]:
        _softmax_crossentropy_row(P, row_loss, S, y, i)


@cuda.jit
def softmax_crossentropy_backward_kernel(dS, P, y, weights, weight_sum, has_weights):
    i, j = cuda.grid(2)
    if i < P.shape[0] and j < P.shape[1]:
        scale = (weights[i] if has_weights else 1.0) / weight_sum[0]
        dS[i, j] = (P[i, j] - (1.0 if j == y[i] else 0.0)) * scale


@cuda.jit
def _weighted_copy_kernel(out, values, weights, has_weights):
    i = cuda.grid(1)
    if i < values.shape[0]:
        out[i, 0] = values[i] * (weights[i] if has_weights else 1.0)
        out[i, 1] = weights[i] if has_weights else 1.0


def _loss_sums(row_loss, weights):
    """(Σ wᵢ·lossᵢ, Σ wᵢ) on the device, as a (2,) float64 array: two-pass, deterministic."""
    pairs = cuda.device_array((row_loss.shape[0], 2), dtype=np.float64)
    blocks = (row_loss.shape[0] + THREADS_1D - 1) // THREADS_1D
    has_weights = weights is not None
    _weighted_copy_kernel[blocks, THREADS_1D](pairs, row_loss, weights if has_weights else _placeholder(row_loss.dtype, 1),
                                              has_weights)
    sums = cuda.device_array(2, dtype=np.float64)
    column_sums(sums, pairs)
    return sums


def softmax_crossentropy_forward(P, row_loss, S, y, weights=None):
    """P (B, C) = softmax(S); row_loss (B,); returns the (weighted) mean loss as a float
    (the only value copied to the host)."""
    blocks = (S.shape[0] + THREADS_1D - 1) // THREADS_1D
    softmax_crossentropy_rows_kernel[blocks, THREADS_1D](P, row_loss, S, y)
    total, weight_sum = _loss_sums(row_loss, weights).copy_to_host()
    return float(total / weight_sum)


def softmax_crossentropy_backward(dS, P, y, weights=None):
    """dS (B, C) = (P − onehot(y)) / B, or wᵢ (P − onehot(y)) / Σ w."""
    if weights is None:
        weight_sum = cuda.to_device(np.array([float(P.shape[0])]))
    else:
        weight_sum = cuda.device_array(1, dtype=np.float64)
        column_sums(weight_sum, weights.reshape(weights.shape[0], 1))
    grid, block = _grid2(P.shape)
    softmax_crossentropy_backward_kernel[grid, block](
        dS, P, y, weights if weights is not None else _placeholder(P.dtype, 1), weight_sum, weights is not None)


# ---------------------------------------------------------------- optimizers
@cuda.jit
def sgd_update_kernel(param, velocity, grad, lr, momentum, weight_decay, nesterov):
    k = cuda.grid(1)
    if k < param.shape[0]:
        g = grad[k] + weight_decay * param[k]
        if momentum != 0.0:
            velocity[k] = momentum * velocity[k] + g
            g = g + momentum * velocity[k] if nesterov else velocity[k]
        param[k] -= lr * g


def sgd_update(param, velocity, grad, lr, momentum, weight_decay, nesterov):
    """SGD as in PyTorch over flat device arrays (see the cpu backend)."""
    blocks = (param.shape[0] + THREADS_1D - 1) // THREADS_1D
    sgd_update_kernel[blocks, THREADS_1D](param, velocity, grad, lr, momentum, weight_decay, nesterov)


@cuda.jit
def adam_update_kernel(param, m, v, grad, lr, beta1, beta2, eps, weight_decay, decoupled, bias1, bias2):
    k = cuda.grid(1)
    if k < param.shape[0]:
        g = grad[k]
        if decoupled:
            param[k] -= lr * weight_decay * param[k]
        else:
            g += weight_decay * param[k]
        m[k] = beta1 * m[k] + (1.0 - beta1) * g
        v[k] = beta2 * v[k] + (1.0 - beta2) * g * g
        param[k] -= lr * (m[k] / bias1) / (math.sqrt(v[k] / bias2) + eps)


def adam_update(param, m, v, grad, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    """Adam / AdamW over flat device arrays; step counts from 1."""
    blocks = (param.shape[0] + THREADS_1D - 1) // THREADS_1D
    adam_update_kernel[blocks, THREADS_1D](param, m, v, grad, lr, beta1, beta2, eps, weight_decay, decoupled,
                                           1.0 - beta1**step, 1.0 - beta2**step)


# ---------------------------------------------------------------- device-resident training
UPDATE_AFTER = 0  # the GPU step always writes gradients, then updates (same codes as cpu)
UPDATE_SGD = 1


def _matrix(flat, offset, rows, cols):
    return flat[offset : offset + rows * cols].reshape(rows, cols)


def train_step(params, grads, state_a, state_b, layers, param_offsets, workspace, hidden_offsets,
               S, P, dS, row_loss, scalars, X, y, weights, act_code, backward_uses_output, alpha,
               update_mode, adam, lr, momentum, weight_decay, nesterov_or_decoupled, beta1, beta2, eps, step):
    """One minibatch update on the GPU, with the cpu backend's train_step signature.

    Every array argument is a device array (host ``layers``, ``param_offsets`` and
    ``hidden_offsets`` only describe the layout); hidden buffers are batch-major (B, H_l)
    views of ``workspace``.  The forward GEMMs apply bias and activation in their epilogue.
    Only the loss comes back to the host.  ``update_mode`` is accepted for the shared
    signature; the GPU always writes the gradients and then updates.
    """
    L = len(layers) - 1
    B = X.shape[0]
    h = X
    for layer in range(L - 1):
        n_in, n_out = int(layers[layer]), int(layers[layer + 1])
        offset = int(param_offsets[layer])
        W, b = _matrix(params, offset, n_out, n_in), params[offset + n_out * n_in : offset + n_out * (n_in + 1)]
        A = _matrix(workspace, int(hidden_offsets[layer][0]), B, n_out)
        H = _matrix(workspace, int(hidden_offsets[layer][1]), B, n_out)
        affine_activation_forward(A, H, h, W, b, act_code, alpha)
        h = H
    n_in, n_out = int(layers[L - 1]), int(layers[L])
    offset = int(param_offsets[L - 1])
    affine_forward(S, h, _matrix(params, offset, n_out, n_in), params[offset + n_out * n_in : offset + n_out * (n_in + 1)])
    loss = softmax_crossentropy_forward(P, row_loss, S, y, weights)
    if not math.isfinite(loss):
        return loss
    softmax_crossentropy_backward(dS, P, y, weights)
    dout = dS
    for layer in range(L - 1, -1, -1):
        n_in, n_out = int(layers[layer]), int(layers[layer + 1])
        offset = int(param_offsets[layer])
        W = _matrix(params, offset, n_out, n_in)
        dW, db = _matrix(grads, offset, n_out, n_in), grads[offset + n_out * n_in : offset + n_out * (n_in + 1)]
        if layer == 0:
            affine_backward(None, dW, db, dout, X, W)
            break
        below = layer - 1
        H_below = _matrix(workspace, int(hidden_offsets[below][1]), B, n_in)
        cache = _matrix(workspace, int(hidden_offsets[below][1 if backward_uses_output else 0]), B, n_in)
        dA = _matrix(workspace, int(hidden_offsets[below][3]), B, n_in)
        affine_activation_backward(dA, dW, db, dout, H_below, W, cache, act_code, alpha)
        dout = dA
    if adam:
        adam_update(params, state_a, state_b, grads, lr, beta1, beta2, eps, weight_decay, nesterov_or_decoupled, step)
    else:
        sgd_update(params, state_a, grads, lr, momentum, weight_decay, nesterov_or_decoupled)
    return loss


@cuda.jit
def _gather_rows_kernel(out, X, order, start):
    i, j = cuda.grid(2)
    if i < out.shape[0] and j < out.shape[1]:
        out[i, j] = X[order[start + i], j]


@cuda.jit
def _gather_kernel(out, values, order, start):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = values[order[start + i]]


class DeviceMirror:
    """A model's training state on the GPU: parameters, gradients, optimizer buffers and
    workspaces, copied up once; ``pull`` copies parameters and optimizer state back into the
    host arrays (at epoch ends and checkpoints), ``push`` after the host changed them."""

    def __init__(self, params, grads, buffers):
        self.host_params, self.host_buffers = params, buffers
        self.params, self.grads = cuda.to_device(params), cuda.to_device(grads)
        unique = {id(b): cuda.to_device(b) for b in buffers}
        self.buffers = tuple(unique[id(b)] for b in buffers)
        self._workspaces: dict = {}
        self.scalars = self.empty(2, params.dtype)

    def workspace(self, host_workspace):
        """The device twin of a host Workspace (same flat layout), made once."""
        key = id(host_workspace)
        if key not in self._workspaces:
            self._workspaces = {key: self.empty(host_workspace.flat.shape, host_workspace.flat.dtype)}
        return self._workspaces[key]

    def pull(self) -> None:
        self.params.copy_to_host(self.host_params)
        seen = set()
        for device, host in zip(self.buffers, self.host_buffers):
            if id(host) not in seen:
                device.copy_to_host(host)
                seen.add(id(host))

    def push(self) -> None:
        self.params.copy_to_device(self.host_params)
        for device, host in zip(self.buffers, self.host_buffers):
            device.copy_to_device(host)

    @staticmethod
    def upload(array):
        return cuda.to_device(np.ascontiguousarray(array))

    @staticmethod
    def empty(shape, dtype):
        return cuda.device_array(shape, dtype=dtype)

    @staticmethod
    def gather(out, values, order, start):
        """out[i] = values[order[start + i]] on the device, for 1-D or 2-D ``values``."""
        if len(values.shape) == 2:
            grid, block = _grid2(out.shape)
            _gather_rows_kernel[grid, block](out, values, order, start)
        else:
            _gather_kernel[(out.shape[0] + THREADS_1D - 1) // THREADS_1D, THREADS_1D](out, values, order, start)
