"""One training step of a tiny net, worked by hand so a reader can follow it with a pencil.

Net: 2 inputs → 2 ReLU units → 2 classes.  One example x = [1, 2], label y = 0.

    W1 = [[1, -1], [0.5, 0.5]]   b1 = [0, 0]
    W2 = [[1, 2], [3, 1]]        b2 = [0, 1.5]

Forward
    a1 = W1 x + b1 = [1·1 − 1·2, 0.5·1 + 0.5·2] = [−1, 1.5]
    h1 = relu(a1)  = [0, 1.5]
    s  = W2 h1 + b2 = [0 + 2·1.5, 0 + 1·1.5 + 1.5] = [3, 3]
    p  = softmax(s) = [0.5, 0.5]          (equal scores)
    L  = logsumexp(s) − s_0 = 3 + ln 2 − 3 = ln 2 ≈ 0.693147

Backward
    ds  = p − onehot(0) = [−0.5, 0.5]
    dW2 = ds h1ᵀ = [[−0.5·0, −0.5·1.5], [0.5·0, 0.5·1.5]] = [[0, −0.75], [0, 0.75]]
    db2 = ds = [−0.5, 0.5]
    dh1 = W2ᵀ ds = [1·(−0.5) + 3·0.5, 2·(−0.5) + 1·0.5] = [1, −0.5]
    da1 = dh1 ⊙ 1[a1 > 0] = [1·0, −0.5·1] = [0, −0.5]
    dW1 = da1 xᵀ = [[0, 0], [−0.5·1, −0.5·2]] = [[0, 0], [−0.5, −1]]
    db1 = da1 = [0, −0.5]

SGD step, lr = 0.1 (θ ← θ − 0.1·dθ)
    W1 = [[1, −1], [0.55, 0.6]]   b1 = [0, 0.05]
    W2 = [[1, 2.075], [3, 0.925]] b2 = [0.05, 1.45]

Forward again
    a1 = [−1, 0.55 + 1.2 + 0.05] = [−1, 1.8];  h1 = [0, 1.8]
    s  = [2.075·1.8 + 0.05, 0.925·1.8 + 1.45] = [3.785, 3.115]
    L  = ln(1 + e^(3.115 − 3.785)) = ln(1 + e^−0.67) ≈ 0.413241   (down from 0.693147)
"""

import math

import numpy as np
import pytest

from naive import BACKENDS
from numbamlp import MLP, loss_and_grads
from numbamlp.trainer import Trainer

W1, b1 = [[1.0, -1.0], [0.5, 0.5]], [0.0, 0.0]
W2, b2 = [[1.0, 2.0], [3.0, 1.0]], [0.0, 1.5]
X, y = np.array([[1.0, 2.0]]), np.array([0])


def tiny_net():
    return MLP.from_params([(np.array(W1), np.array(b1)), (np.array(W2), np.array(b2))], "relu", dtype="float64")


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
def test_hand_computed_loss_and_gradients(backend):
    loss, ((dW1, db1), (dW2, db2)) = loss_and_grads(tiny_net(), X, y, backend=backend)
    assert loss == pytest.approx(math.log(2), rel=1e-14)
    np.testing.assert_allclose(dW2, [[0, -0.75], [0, 0.75]], atol=1e-15)
    np.testing.assert_allclose(db2, [-0.5, 0.5], atol=1e-15)
    np.testing.assert_allclose(dW1, [[0, 0], [-0.5, -1.0]], atol=1e-15)
    np.testing.assert_allclose(db1, [0, -0.5], atol=1e-15)


@pytest.mark.parametrize("backend", [*BACKENDS, "reference"])
def test_hand_computed_sgd_step(backend):
    trainer = Trainer(
        {"backend": backend, "dtype": "float64", "batch_size": 1,
         "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.0}}
    )
    trainer.set_model(tiny_net())
    assert trainer.step(X, y) == pytest.approx(math.log(2), rel=1e-14)
    (nW1, nb1), (nW2, nb2) = trainer.model.params
    np.testing.assert_allclose(nW1, [[1, -1], [0.55, 0.6]], rtol=1e-15)
    np.testing.assert_allclose(nb1, [0, 0.05], rtol=1e-15)
    np.testing.assert_allclose(nW2, [[1, 2.075], [3, 0.925]], rtol=1e-15)
    np.testing.assert_allclose(nb2, [0.05, 1.45], rtol=1e-15)
    loss_after, _ = loss_and_grads(trainer.model, X, y, backend=backend)
    assert loss_after == pytest.approx(math.log1p(math.exp(-0.67)), rel=1e-12)
    assert loss_after == pytest.approx(0.413241, abs=1e-6)
