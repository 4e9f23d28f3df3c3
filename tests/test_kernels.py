"""Every batched kernel, on both backends, against the single-example reference path."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from naive import BACKENDS, DTYPES, assert_close, col
from numbamlp import reference
from numbamlp.kernels import ACTIVATION_NAMES, ACTIVATIONS, activation_kernels, get_backend, negligible_exp

shapes = st.tuples(st.integers(1, 9), st.integers(1, 7), st.integers(1, 7))  # (B, in, out)
dtypes = st.sampled_from(DTYPES)
backends = st.sampled_from(BACKENDS)
fuzz = settings(max_examples=30, deadline=None)


def random(rng, shape, dtype, scale=1.0):
    return (scale * rng.normal(size=shape)).astype(dtype)


@fuzz
@given(shape=shapes, dtype=dtypes, backend=backends, seed=st.integers(0, 2**16))
def test_affine_forward_matches_reference(shape, dtype, backend, seed):
    B, n_in, n_out = shape
    rng = np.random.default_rng(seed)
    X, W, b = random(rng, (B, n_in), dtype), random(rng, (n_out, n_in), dtype), random(rng, n_out, dtype)
    out = np.empty((B, n_out), dtype=dtype)
    get_backend(backend).affine_forward(out, X, W, b)
    expected = np.stack([reference.Affine(W, b).forward(col(x))[:, 0] for x in X])
    assert_close(out, expected, dtype, f"{backend} affine_forward")


@fuzz
@given(shape=shapes, dtype=dtypes, backend=backends, seed=st.integers(0, 2**16))
def test_affine_backward_matches_reference(shape, dtype, backend, seed):
    B, n_in, n_out = shape
    rng = np.random.default_rng(seed)
    X, W = random(rng, (B, n_in), dtype), random(rng, (n_out, n_in), dtype)
    dout = random(rng, (B, n_out), dtype)
    dX, dW, db = np.empty_like(X), np.empty_like(W), np.empty(n_out, dtype=dtype)
    dW.fill(np.nan)  # outputs are overwritten, never accumulated
    get_backend(backend).affine_backward(dX, dW, db, dout, X, W)
    ref_dW, ref_db, ref_dX = np.zeros(W.shape), np.zeros(n_out), []
    for x, d in zip(X, dout):
        layer = reference.Affine(W, np.zeros(n_out))
        layer.forward(col(x))
        gW, gb, gx = layer.backward(col(d))
        ref_dW += gW
        ref_db += gb[:, 0]
        ref_dX.append(gx[:, 0])
    assert_close(dW, ref_dW, dtype, f"{backend} dW")
    assert_close(db, ref_db, dtype, f"{backend} db")
    assert_close(dX, np.stack(ref_dX), dtype, f"{backend} dX")


@pytest.mark.parametrize("backend", BACKENDS)
def test_affine_backward_skips_dX_when_none(backend):
    rng = np.random.default_rng(0)
    X, W, dout = random(rng, (4, 3), np.float64), random(rng, (2, 3), np.float64), random(rng, (4, 2), np.float64)
    dW, db = np.empty_like(W), np.empty(2)
    get_backend(backend).affine_backward(None, dW, db, dout, X, W)
    assert_close(dW, dout.T @ X, np.float64, "dW")


@fuzz
@given(
    activation=st.sampled_from(ACTIVATION_NAMES),
    shape=shapes,
    dtype=dtypes,
    backend=backends,
    seed=st.integers(0, 2**16),
)
def test_activation_forward_backward_match_reference(activation, shape, dtype, backend, seed):
    B, width, _ = shape
    rng = np.random.default_rng(seed)
    A = random(rng, (B, width), dtype, scale=3.0)
    dH = random(rng, (B, width), dtype)
    spec = ACTIVATIONS[activation]
    forward, backward = activation_kernels(get_backend(backend), activation)
    Hout, dA = np.empty_like(A), np.empty_like(A)
    forward(Hout, A, spec.alpha)
    backward(dA, dH, A if spec.backward_uses == "input" else Hout, spec.alpha)
    ref_H, ref_dA = [], []
    for a, d in zip(A, dH):
        module = reference.make_activation(activation)
        ref_H.append(module.forward(col(a))[:, 0])
        ref_dA.append(module.backward(col(d))[:, 0])
    assert_close(Hout, np.stack(ref_H), dtype, f"{backend} {activation}_forward")
    # φ' ∈ [0, 1.13]: dA is accurate to rounding on the scale of dH.  (For tanh and sigmoid in
    # float32 the derivative is computed from the rounded output, 1 − h² with h ≈ 1 cancels.)
    assert_close(dA, np.stack(ref_dA), dtype, f"{backend} {activation}_backward", scale=np.abs(dH).max())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_activation_kernels_work_in_place(backend, activation):
    """Hout may alias A and dA may alias dH: the trainer relies on it for deltas."""
    rng = np.random.default_rng(1)
    spec = ACTIVATIONS[activation]
    forward, backward = activation_kernels(get_backend(backend), activation)
    A = rng.normal(size=(5, 4))
    Hout = np.empty_like(A)
    forward(Hout, A, spec.alpha)
    in_place = A.copy()
    forward(in_place, in_place, spec.alpha)
    np.testing.assert_array_equal(in_place, Hout)
    dH = rng.normal(size=A.shape)
    cache = A if spec.backward_uses == "input" else Hout
    dA = np.empty_like(A)
    backward(dA, dH, cache, spec.alpha)
    backward(dH, dH, cache, spec.alpha)
    np.testing.assert_array_equal(dH, dA)


@fuzz
@given(
    B=st.integers(1, 9), C=st.integers(2, 7), dtype=dtypes, backend=backends,
    scale=st.sampled_from([0.1, 3.0, 50.0]), seed=st.integers(0, 2**16),
)
def test_softmax_crossentropy_matches_reference(B, C, dtype, backend, scale, seed):
    rng = np.random.default_rng(seed)
    S = random(rng, (B, C), dtype, scale)
    y = rng.integers(0, C, size=B)
    kernels = get_backend(backend)
    P, row_loss, dS = np.empty_like(S), np.empty(B, dtype=dtype), np.empty_like(S)
    loss = kernels.softmax_crossentropy_forward(P, row_loss, S, y)
    kernels.softmax_crossentropy_backward(dS, P, y)
    ref_loss, ref_p, ref_ds = [], [], []
    for s, label in zip(S, y):
        ce = reference.SoftmaxCrossEntropy()
        ref_loss.append(ce.forward(col(s), int(label)))
        ref_p.append(ce.p[:, 0])
        ref_ds.append(ce.backward()[:, 0] / B)  # gradient of the batch mean
    assert_close(P, np.stack(ref_p), dtype, "P")
    assert_close(row_loss, ref_loss, dtype, "row_loss")
    assert_close(loss, np.mean(ref_loss), dtype, "mean loss")
    # dS = (p − onehot)/B cancels when p ≈ 1: judge it on the scale of its operands, 1/B
    assert_close(dS, np.stack(ref_ds), dtype, "dS", scale=1.0 / B)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_rows_sum_to_one_and_gradient_is_p_minus_onehot(backend, dtype):
    rng = np.random.default_rng(2)
    B, C = 6, 5
    S = random(rng, (B, C), dtype, 4.0)
    y = rng.integers(0, C, size=B)
    kernels = get_backend(backend)
    P, row_loss, dS = np.empty_like(S), np.empty(B, dtype=dtype), np.empty_like(S)
    kernels.softmax_crossentropy_forward(P, row_loss, S, y)
    kernels.softmax_crossentropy_backward(dS, P, y)
    assert_close(P.sum(axis=1), np.ones(B), dtype, "row sums")
    onehot = np.eye(C)[y]
    assert_close(dS * B, P.astype(np.float64) - onehot, dtype, "B·dS = p − onehot")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_logits_give_finite_loss_and_gradients(backend, dtype):
    S = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [0.0, 0.0, -1e4]], dtype=dtype)
    y = np.array([1, 0, 2])  # the worst labels
    kernels = get_backend(backend)
    P, row_loss, dS = np.empty_like(S), np.empty(3, dtype=dtype), np.empty_like(S)
    loss = kernels.softmax_crossentropy_forward(P, row_loss, S, y)
    kernels.softmax_crossentropy_backward(dS, P, y)
    assert np.isfinite(loss) and np.isfinite(P).all() and np.isfinite(dS).all()
    # logsumexp − s_y, exactly: no log(0) and no +1e-12 fudge
    assert_close(row_loss, [2e4, 2e4 + np.log(2), 1e4 + np.log(2)], dtype, "row_loss")



@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_confident_scores_give_no_subnormal_probabilities_or_gradients(backend, dtype):
    """A confident model's softmax underflows; a subnormal P or dS made every product that
    touched it 10-20x slower (negligible_exp): exponentials below it are 0 in P, every other
    one as before, and the loss still counts them all."""
    threshold = negligible_exp(dtype)
    tiny = np.finfo(dtype).tiny
    # e^(s_j - max) for each column: 1, e^-30, just above and just below the threshold, a
    # float32 subnormal, a float64 subnormal
    gaps = [0.0, -30.0, np.log(threshold) + 0.5, np.log(threshold) - 0.5, -95.0, -720.0]
    S = np.array([gaps, gaps[::-1]], dtype=dtype)
    y = np.array([0, 3])
    kernels = get_backend(backend)
    P, row_loss, dS = np.empty_like(S), np.empty(2, dtype=dtype), np.empty_like(S)
    kernels.softmax_crossentropy_forward(P, row_loss, S, y)
    kernels.softmax_crossentropy_backward(dS, P, y)
    for name, values in (("P", P), ("dS", dS)):
        magnitudes = np.abs(values)
        assert not ((magnitudes > 0) & (magnitudes < tiny)).any(), f"{name} holds subnormal numbers: {values}"
    exps = np.exp(S.astype(np.float64) - S.astype(np.float64).max(axis=1, keepdims=True))
    kept = exps >= threshold
    assert kept[0].tolist() == [True, True, True, False, dtype == np.float64, False]
    assert_close(P[kept], (exps / exps.sum(axis=1, keepdims=True))[kept], dtype, "P")
    assert (P[~kept] == 0).all()
    # the loss is logsumexp - s_y over every score, the ones P leaves out included
    rows = np.arange(2)
    expected = np.log(exps.sum(axis=1)) + S.astype(np.float64).max(axis=1) - S.astype(np.float64)[rows, y]
    assert_close(row_loss, expected, dtype, "row_loss")
    # the readable reference (float64) applies the same rule for its dtype
    ce = reference.SoftmaxCrossEntropy()
    ce.forward(col(S[0]), 0)
    assert (ce.p[:, 0] == 0).tolist() == (exps[0] < negligible_exp(ce.p.dtype)).tolist()

def naive_sgd(param, velocity, grad, lr, momentum, weight_decay, nesterov):
    """PyTorch's SGD, written out one step at a time (float64)."""
    g = grad + weight_decay * param
    if momentum:
        velocity = momentum * velocity + g
        g = g + momentum * velocity if nesterov else velocity
    return param - lr * g, velocity


def naive_adam(param, m, v, grad, lr, b1, b2, eps, weight_decay, decoupled, step):
    """PyTorch's Adam / AdamW, one step (float64)."""
    if decoupled:
        param = param * (1 - lr * weight_decay)
    else:
        grad = grad + weight_decay * param
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad**2
    m_hat, v_hat = m / (1 - b1**step), v / (1 - b2**step)
    return param - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


SGD_CASES = {"plain": (0.0, 0.0, False), "momentum": (0.9, 0.0, False),
             "nesterov": (0.9, 0.01, True), "decay": (0.5, 0.1, False)}
# a few parameters, and enough for the cpu backend's parallel updates (with a short last chunk)
UPDATE_SIZES = [11, 70_001]


def test_the_update_sizes_reach_the_parallel_updates():
    from numbamlp.kernels import cpu_backend

    assert max(UPDATE_SIZES) > cpu_backend.UPDATE_PARALLEL_MIN
    assert max(UPDATE_SIZES) % cpu_backend.UPDATE_CHUNK != 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", SGD_CASES)
@pytest.mark.parametrize("size", UPDATE_SIZES)
def test_sgd_update_follows_the_rule_over_steps(backend, dtype, case, size):
    momentum, weight_decay, nesterov = SGD_CASES[case]
    rng = np.random.default_rng(3)
    param = random(rng, size, dtype)
    velocity = np.zeros_like(param)
    ref_param, ref_velocity = param.astype(np.float64), np.zeros(size)
    for _ in range(4):
        grad = random(rng, size, dtype)
        get_backend(backend).sgd_update(param, velocity, grad, 0.1, momentum, weight_decay, nesterov)
        ref_param, ref_velocity = naive_sgd(ref_param, ref_velocity, grad.astype(np.float64), 0.1,
                                            momentum, weight_decay, nesterov)
    assert_close(param, ref_param, dtype, f"{case} param")
    assert_close(velocity, ref_velocity if momentum else np.zeros(size), dtype, f"{case} velocity")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("size", UPDATE_SIZES)
def test_adam_update_follows_the_rule_over_steps(backend, dtype, decoupled, size):
    rng = np.random.default_rng(4)
    param = random(rng, size, dtype)
    m, v = np.zeros_like(param), np.zeros_like(param)
    ref = (param.astype(np.float64), np.zeros(size), np.zeros(size))
    for step in range(1, 5):
        grad = random(rng, size, dtype)
        get_backend(backend).adam_update(param, m, v, grad, 0.01, 0.9, 0.999, 1e-8, 0.05, decoupled, step)
        ref = naive_adam(*ref, grad.astype(np.float64), 0.01, 0.9, 0.999, 1e-8, 0.05, decoupled, step)
    assert_close(param, ref[0], dtype, "param")
    assert_close(m, ref[1], dtype, "m")
    assert_close(v, ref[2], dtype, "v")


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_is_not_hidden_by_activations(backend):
    """No fastmath nnan: a NaN pre-activation stays NaN, so divergence is detectable."""
    for activation in ACTIVATION_NAMES:
        forward, _ = activation_kernels(get_backend(backend), activation)
        A = np.array([[np.nan, 1.0]])
        H = np.empty_like(A)
        forward(H, A, ACTIVATIONS[activation].alpha)
        assert np.isnan(H[0, 0]), activation


@pytest.mark.parametrize("call, phrase", [
    (lambda k: k.softmax_crossentropy_forward(np.empty((4, 3)), np.empty(4), np.zeros((4, 3)),
                                              np.array([0, 1, 2, 10**9])), r"class indices in \[0, 3\)"),
    (lambda k: k.softmax_crossentropy_backward(np.empty((4, 3)), np.zeros((4, 3)), np.array([1, 2, 3, 3])),
     r"class indices in \[0, 3\)"),
    (lambda k: k.relu_forward(np.empty((2, 2)), np.ones((4, 5)), 0.0), r"Hout must have shape \(4, 5\)"),
    (lambda k: k.affine_backward(np.empty((4, 3)), np.empty((5, 3)), np.empty(5), np.ones((4, 55)),
                                 np.ones((4, 3)), np.ones((5, 3))), r"must have shape"),
    (lambda k: k.sgd_update(np.ones(10), np.zeros(3), np.ones(2), 0.1, 0.9, 0.0, False),
     r"velocity must have shape \(10,\)"),
    (lambda k: k.affine_forward(np.empty((4, 5)), np.ones((4, 3), np.float32), np.ones((5, 3), np.float32),
                                np.zeros(5, np.float32)), "out is float64 but the arrays before it are float32"),
    (lambda k: k.affine_forward(np.empty((4, 5)), np.asfortranarray(np.ones((4, 3))), np.ones((5, 3)),
                                np.zeros(5)), "X must be C-contiguous"),
    (lambda k: k.mse_backward(np.empty((4, 2)), np.zeros((4, 2)), np.zeros((4, 3))), r"Y must have shape \(4, 2\)"),
])
def test_the_cpu_kernels_called_directly_refuse_what_they_cannot_take(call, phrase):
    """They index without bounds checks: a wrong shape, label or dtype read and wrote outside
    the arrays (a segfault, heap corruption, or wrong numbers).  The public names check first."""
    from numbamlp.kernels.cpu_backend import KernelArgumentError

    with pytest.raises(KernelArgumentError, match=phrase):
        call(get_backend("cpu"))
