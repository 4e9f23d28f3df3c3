"""The reference path itself: its local derivatives against central differences, and its
composition against the seed notes' 2-layer net written out by hand."""

import math

import numpy as np
import pytest

from naive import col
from numbamlp import reference
from numbamlp.kernels import ACTIVATION_NAMES


def central_difference(f, x, step=1e-6):
    """Elementwise derivative of an elementwise f at the points x."""
    return (f(x + step) - f(x - step)) / (2 * step)


def test_reference_covers_exactly_the_activation_table():
    assert set(reference.REFERENCE_ACTIVATIONS) == set(ACTIVATION_NAMES)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_activation_derivative_matches_central_difference(activation):
    a = col(np.linspace(-3.1, 2.9, 25))  # avoids the kink at exactly 0
    module = reference.make_activation(activation)
    module.forward(a)
    analytic = module.backward(np.ones_like(a))
    numeric = central_difference(lambda v: reference.make_activation(activation).forward(v), a)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-9)


def test_activation_values():
    a = col([-2.0, 0.0, 1.5])
    expect = {
        "relu": [0.0, 0.0, 1.5],
        "leaky_relu": [-0.2, 0.0, 1.5],
        "elu": [math.exp(-2.0) - 1.0, 0.0, 1.5],
        "sigmoid": [1 / (1 + math.exp(2.0)), 0.5, 1 / (1 + math.exp(-1.5))],
        "gelu": [-2.0 * 0.5 * math.erfc(2.0 / math.sqrt(2)), 0.0, 1.5 * 0.5 * math.erfc(-1.5 / math.sqrt(2))],
        "silu": [-2.0 / (1 + math.exp(2.0)), 0.0, 1.5 / (1 + math.exp(-1.5))],
        "tanh": [math.tanh(-2.0), 0.0, math.tanh(1.5)],
    }
    for name, values in expect.items():
        np.testing.assert_allclose(reference.make_activation(name).forward(a)[:, 0], values, rtol=1e-12, err_msg=name)


def test_relu_derivative_is_zero_at_zero():
    relu = reference.ReLU()
    relu.forward(col([0.0]))
    assert relu.backward(col([1.0]))[0, 0] == 0.0


def test_gelu_tanh_approximation_is_opt_in_and_close():
    a = col(np.linspace(-4, 4, 41))
    exact, approx = reference.GELU(), reference.GELU(approximate="tanh")
    assert np.abs(exact.forward(a) - approx.forward(a)).max() < 1e-3
    approx.forward(a)
    numeric = central_difference(lambda v: reference.GELU(approximate="tanh").forward(v), a)
    np.testing.assert_allclose(approx.backward(np.ones_like(a)), numeric, rtol=1e-7, atol=1e-9)
    with pytest.raises(ValueError, match="approximate"):
        reference.GELU(approximate="fast")


def test_softmax_cross_entropy_is_logsumexp_minus_score():
    ce = reference.SoftmaxCrossEntropy()
    s = col([1000.0, -1000.0, 999.0])
    loss = ce.forward(s, 1)
    assert loss == pytest.approx(2000.0 + math.log1p(math.exp(-1.0)), rel=1e-15)
    np.testing.assert_allclose(ce.p.sum(), 1.0)
    np.testing.assert_allclose(ce.backward(), ce.p - col([0, 1, 0]))


def test_affine_backward_is_the_notes_formulas():
    rng = np.random.default_rng(0)
    W, b, x, dout = rng.normal(size=(3, 4)), rng.normal(size=3), col(rng.normal(size=4)), col(rng.normal(size=3))
    layer = reference.Affine(W, b)
    np.testing.assert_allclose(layer.forward(x), W @ x + col(b))
    dW, db, dx = layer.backward(dout)
    np.testing.assert_allclose(dW, dout @ x.T)
    np.testing.assert_allclose(db, dout)
    np.testing.assert_allclose(dx, W.T @ dout)


def test_two_layer_reference_equals_the_seed_notes_net():
    """ReferenceMLP with two layers is the seed's TwoLayerNet: a1 = W1x+b1, h1 = relu(a1), s = W2h1+b2."""
    rng = np.random.default_rng(1)
    W1, b1, W2, b2 = rng.normal(size=(5, 4)), rng.normal(size=5), rng.normal(size=(3, 5)), rng.normal(size=3)
    x, y = rng.normal(size=4), 2
    a1 = W1 @ x + b1
    h1 = np.maximum(0, a1)
    s = W2 @ h1 + b2
    p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    ds = p - np.eye(3)[y]
    dh1 = W2.T @ ds
    da1 = dh1 * (a1 > 0)
    net = reference.ReferenceMLP([(W1, b1), (W2, b2)], "relu")
    loss, grads, dx = net.loss_and_grads(x, y)
    assert loss == pytest.approx(-math.log(p[y]), rel=1e-12)
    np.testing.assert_allclose(grads[1][0], np.outer(ds, h1), rtol=1e-12)
    np.testing.assert_allclose(grads[1][1][:, 0], ds, rtol=1e-12)
    np.testing.assert_allclose(grads[0][0], np.outer(da1, x), rtol=1e-12)
    np.testing.assert_allclose(grads[0][1][:, 0], da1, rtol=1e-12)
    np.testing.assert_allclose(dx[:, 0], W1.T @ da1, rtol=1e-12)
