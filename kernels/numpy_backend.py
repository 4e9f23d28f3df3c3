"""Plain batched numpy kernels: the baseline, and the fallback where Numba is unavailable.

Symbols: B batch size, D input features, H hidden width, C classes, K regression outputs.

Same names, argument order and conventions as every backend (see ``numbamlp.kernels``):
outputs first, then inputs, then options; outputs are overwritten (``=``).
Arrays are float32 or float64, C-contiguous, all of one dtype; ``y`` is an integer
vector with values in [0, C); regression targets ``Y`` are (B, K) of the scores' dtype.
"""

from __future__ import annotations

import sys

import numpy as np

from numbamlp.kernels import ACTIVATION_NAMES, CROSS_ENTROPY, STEP_GRADIENTS, activation_kernels, negligible_exp

_SQRT_HALF = np.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


# ---------------------------------------------------------------- affine
def affine_forward(out, X, W, b):
    """out (B, out) = X (B, in) @ W (out, in).T + b (out,)."""
    np.matmul(X, W.T, out=out)
    out += b


def affine_backward(dX, dW, db, dout, X, W):
    """dW (out, in) = doutᵀ X;  db (out,) = Σ_rows dout;  dX (B, in) = dout W (skipped if None)."""
    np.matmul(dout.T, X, out=dW)
    np.sum(dout, axis=0, out=db)
    if dX is not None:
        np.matmul(dout, W, out=dX)


# ---------------------------------------------------------------- activations
# forward(Hout, A, alpha): Hout = φ(A).   backward(dA, dH, cache, alpha): dA = dH ⊙ φ'.
def relu_forward(Hout, A, alpha):
    np.maximum(A, 0, out=Hout)


def relu_backward(dA, dH, A, alpha):
    np.multiply(dH, A > 0, out=dA)


def leaky_relu_forward(Hout, A, alpha):
    np.copyto(Hout, np.where(A > 0, A, alpha * A))


def leaky_relu_backward(dA, dH, A, alpha):
    np.copyto(dA, np.where(A > 0, dH, alpha * dH))


def elu_forward(Hout, A, alpha):
    np.copyto(Hout, np.where(A > 0, A, alpha * np.expm1(np.minimum(A, 0))))


def elu_backward(dA, dH, A, alpha):
    np.copyto(dA, np.where(A > 0, dH, dH * alpha * np.exp(np.minimum(A, 0))))


def _sigmoid(A):
    # exp of −|a| never overflows; fold the sign back in.
    e = np.exp(-np.abs(A))
    return np.where(A >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_forward(Hout, A, alpha):
    np.copyto(Hout, _sigmoid(A))


def sigmoid_backward(dA, dH, Hout, alpha):
    np.multiply(dH, Hout * (1 - Hout), out=dA)


def _normal_cdf(A):
    """Φ(A), the standard normal CDF.  scipy.special is imported here, on first use: it
    cost ~25 ms of every `numbamlp train` start-up, which evaluates with this backend."""
    from scipy.special import erf

    return 0.5 * (1 + erf(A * _SQRT_HALF))


def gelu_forward(Hout, A, alpha):
    np.copyto(Hout, A * _normal_cdf(A))


def gelu_backward(dA, dH, A, alpha):
    cdf = _normal_cdf(A)
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * A * A)
    np.multiply(dH, cdf + A * pdf, out=dA)


def silu_forward(Hout, A, alpha):
    np.multiply(A, _sigmoid(A), out=Hout)


def silu_backward(dA, dH, A, alpha):
    s = _sigmoid(A)
    np.multiply(dH, s * (1 + A * (1 - s)), out=dA)


def tanh_forward(Hout, A, alpha):
    np.tanh(A, out=Hout)


def tanh_backward(dA, dH, Hout, alpha):
    np.multiply(dH, 1 - Hout * Hout, out=dA)


# ---------------------------------------------------------------- loss
def softmax_crossentropy_forward(P, row_loss, S, y, weights=None):
    """P (B, C) = softmax(S) row-wise; row_loss (B,) = logsumexp(S_i) − S_i,y_i.

    Returns the mean loss as a Python float, or Σ wᵢ·lossᵢ / Σ wᵢ with ``weights`` (B,).
    """
    rows = np.arange(S.shape[0])
    S64 = S.astype(np.float64)  # accumulate in float64, as the cpu backend does
    top = S64.argmax(axis=1)
    m = S64[rows, top][:, None]
    E = np.exp(S64 - m)
    E[rows, top] = 0.0
    rest = E.sum(axis=1)  # Σ over the non-maximal entries: logsumexp = m + log1p(rest)
    E[E < negligible_exp(P.dtype)] = 0.0  # (in P only: see negligible_exp)
    E[rows, top] = 1.0
    # (max − s_y) + log1p(rest): no cancellation, so tiny losses keep their digits
    row_loss[:] = (m[:, 0] - S64[rows, y]) + np.log1p(rest)
    np.divide(E, (1.0 + rest)[:, None], out=P, casting="same_kind")
    if weights is None:
        return float(row_loss.mean(dtype=np.float64))
    return float(np.dot(weights, row_loss.astype(np.float64)) / np.sum(weights, dtype=np.float64))


def softmax_crossentropy_backward(dS, P, y, weights=None):
    """dS (B, C) = (P − onehot(y)) / B, or wᵢ (P − onehot(y)) / Σ w with ``weights`` (B,)."""
    B = P.shape[0]
    np.copyto(dS, P)
    dS[np.arange(B), y] -= 1
    if weights is None:
        dS /= B
    else:
        dS *= (weights / np.sum(weights, dtype=np.float64))[:, None]


def mse_forward(row_loss, S, Y, weights=None):
    """row_loss (B,) = ½ Σ_k (S − Y)² (accumulated in float64, as the cpu backend does) for
    scores S (B, K) and targets Y (B, K).

    Returns the mean loss as a Python float, or Σ wᵢ·lossᵢ / Σ wᵢ with ``weights`` (B,).
    """
    diff = S.astype(np.float64) - Y
    row_loss[:] = 0.5 * np.einsum("ik,ik->i", diff, diff)
    if weights is None:
        return float(row_loss.mean(dtype=np.float64))
    return float(np.dot(weights, row_loss.astype(np.float64)) / np.sum(weights, dtype=np.float64))


def mse_backward(dS, S, Y, weights=None):
    """dS (B, K) = (S − Y) / B, or wᵢ (S − Y) / Σ w with ``weights`` (B,)."""
    np.subtract(S, Y, out=dS)
    if weights is None:
        dS /= S.shape[0]
    else:
        dS *= (weights / np.sum(weights, dtype=np.float64))[:, None]


def _loss(loss, dS, P, row_loss, S, y, weights):
    """Both passes of loss ``loss`` (CROSS_ENTROPY or SQUARED_ERROR) for one member: dS
    written, the (weighted) mean loss returned (P is cross-entropy's probabilities)."""
    if loss == CROSS_ENTROPY:
        value = softmax_crossentropy_forward(P, row_loss, S, y, weights)
        softmax_crossentropy_backward(dS, P, y, weights)
        return value
    value = mse_forward(row_loss, S, y, weights)
    mse_backward(dS, S, y, weights)
    return value


# ---------------------------------------------------------------- optimizers
def sgd_update(param, velocity, grad, lr, momentum, weight_decay, nesterov):
    """SGD as in PyTorch (see the cpu backend): param, velocity updated in place."""
    g = grad + weight_decay * param if weight_decay else grad.copy()
    if momentum:
        velocity *= momentum
        velocity += g
        g = g + momentum * velocity if nesterov else velocity
    param -= (lr * g).astype(param.dtype)


def adam_update(param, m, v, grad, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    """Adam / AdamW (decoupled weight decay) over flat arrays, in place; step counts from 1."""
    g = grad
    if decoupled:
        param *= 1 - lr * weight_decay
    elif weight_decay:
        g = grad + weight_decay * param
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    m_hat = m / (1 - beta1**step)
    v_hat = v / (1 - beta2**step)
    param -= (lr * m_hat / (np.sqrt(v_hat) + eps)).astype(param.dtype)


# ---------------------------------------------------------------- a step of a stack of models
def _member_views(flat, layers, param_offsets, layer):
    """Every member's W (M, out, in) and b (M, out) of ``layer``: views of flat (M, P)."""
    n_in, n_out = int(layers[layer]), int(layers[layer + 1])
    start = int(param_offsets[layer])
    W = flat[:, start : start + n_out * n_in].reshape(flat.shape[0], n_out, n_in)
    b = flat[:, start + n_out * n_in : start + n_out * (n_in + 1)]
    return W, b


def stack_step(buffers, layout, settings, X, y, weights, act_code, backward_uses_output, alpha, adam, flag, mode,
               loss=CROSS_ENTROPY):
    """One step of every active member of a stack (numbamlp.plan), batched over the member
    axis with np.matmul.  buffers, layout, settings: the plan's named tuples (params,
    grads, state (M, P); the workspace is not used: numpy allocates its temporaries).
    X (M or 1, B, D), y (M or 1, B) int64 (loss CROSS_ENTROPY) or (M or 1, B, K) float
    targets (SQUARED_ERROR), weights None or (M or 1, B): a leading 1 is one batch shared by
    every member.  mode 0 trains, 1 writes the gradients only.
    losses (M,) = each member's loss (NaN for an inactive one); a member whose loss is not
    finite, or that is inactive, keeps its weights and optimizer state."""
    act_forward, act_backward = activation_kernels(sys.modules[__name__], ACTIVATION_NAMES[act_code])
    layers, offsets = layout.layers, layout.param_offsets
    L = len(layers) - 1
    inputs, caches, h = [], [], X
    for layer in range(L):  # A = h Wᵀ + b for every member at once
        W, b = _member_views(buffers.params, layers, offsets, layer)
        A = np.matmul(h, W.transpose(0, 2, 1)) + b[:, None, :]
        inputs.append(h)
        if layer == L - 1:
            S = A
            break
        H = np.empty_like(A)
        act_forward(H, A, alpha)
        caches.append(H if backward_uses_output else A)
        h = H
    M, B = buffers.params.shape[0], S.shape[1]
    shared = X.shape[0] == 1
    P, dS, row_loss = np.empty_like(S), np.empty_like(S), np.empty((M, B), S.dtype)
    losses = buffers.losses
    for m in range(M):
        row = 0 if shared else m
        w = None if weights is None else weights[row]
        losses[m] = _loss(loss, dS[m], P[m], row_loss[m], S[m], y[row], w)
    update = settings.active & np.isfinite(losses)
    losses[~settings.active] = np.nan
    dout = dS
    for layer in range(L - 1, -1, -1):
        W, _ = _member_views(buffers.params, layers, offsets, layer)
        dW, db = _member_views(buffers.grads, layers, offsets, layer)
        dW[update] = np.matmul(dout.transpose(0, 2, 1), np.broadcast_to(inputs[layer], (M, *inputs[layer].shape[1:])))[update]
        db[update] = dout.sum(axis=1)[update]
        if layer > 0:
            dA = np.empty_like(caches[layer - 1])
            act_backward(dA, np.matmul(dout, W), caches[layer - 1], alpha)
            dout = dA
    if mode == STEP_GRADIENTS:
        return
    s = settings
    for m in np.flatnonzero(update):
        s.steps[m] += 1
        if adam:
            adam_update(buffers.params[m], buffers.state_a[m], buffers.state_b[m], buffers.grads[m], s.lr[m],
                        s.beta1[m], s.beta2[m], s.eps[m], s.weight_decay[m], flag, s.steps[m])
        else:
            sgd_update(buffers.params[m], buffers.state_a[m], buffers.grads[m], s.lr[m], s.momentum[m],
                       s.weight_decay[m], flag)
