"""Independent oracles: code we did not write computes the same loss and gradients.

scikit-learn's MLPClassifier (relu, logistic, tanh) through one plain SGD step, and
PyTorch autograd for all seven activations when torch is installed (the `bench` extra).
"""

import numpy as np
import pytest

from naive import BACKENDS, assert_close
from numbamlp import MLP, loss_and_grads
from numbamlp.kernels import ACTIVATION_NAMES

SKLEARN_NAMES = {"relu": "relu", "sigmoid": "logistic", "tanh": "tanh"}


def problem(activation, seed=0):
    rng = np.random.default_rng(seed)
    model = MLP([5, 6, 4, 3], activation=activation, dtype="float64", seed=seed)
    for _, b in model.params:
        b[...] = rng.normal(0, 0.2, size=b.shape)
    return model, rng.normal(size=(8, 5)), rng.integers(0, 3, size=8)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", sorted(SKLEARN_NAMES))
def test_gradients_match_scikit_learn_sgd_step(activation, backend):
    from sklearn.neural_network import MLPClassifier

    model, X, y = problem(activation)
    lr = 0.5
    clf = MLPClassifier(
        hidden_layer_sizes=(6, 4), activation=SKLEARN_NAMES[activation], solver="sgd", alpha=0.0,
        batch_size=len(y), learning_rate_init=lr, momentum=0.0, nesterovs_momentum=False, shuffle=False,
    )
    clf.partial_fit(X, y, classes=[0, 1, 2])  # sets up layers and the optimizer
    # the optimizer updates these arrays in place: copy our weights into them (sklearn: W is (in, out))
    for (W, b), coef, intercept in zip(model.params, clf.coefs_, clf.intercepts_):
        coef[...] = W.T
        intercept[...] = b
    clf.partial_fit(X, y)  # one step: θ ← θ − lr·∇L over the whole batch
    _, grads = loss_and_grads(model, X, y, backend=backend)
    for (W, b), (dW, db), coef, intercept in zip(model.params, grads, clf.coefs_, clf.intercepts_):
        assert_close((W - coef.T) / lr, dW, np.float64, "dW vs sklearn")
        assert_close((b - intercept) / lr, db, np.float64, "db vs sklearn")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_gradients_match_pytorch_autograd(activation, backend):
    torch = pytest.importorskip("torch", reason="PyTorch is an optional oracle (pip install '.[bench]')")
    F = torch.nn.functional
    functions = {
        "relu": F.relu, "leaky_relu": lambda a: F.leaky_relu(a, 0.1), "elu": lambda a: F.elu(a, 1.0),
        "sigmoid": torch.sigmoid, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh,
    }
    model, X, y = problem(activation)
    params = [(torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True)) for W, b in model.params]
    h = torch.tensor(X)
    for i, (W, b) in enumerate(params):
        h = h @ W.T + b
        if i < len(params) - 1:
            h = functions[activation](h)
    torch_loss = F.cross_entropy(h, torch.tensor(y))
    torch_loss.backward()
    loss, grads = loss_and_grads(model, X, y, backend=backend)
    assert loss == pytest.approx(torch_loss.item(), rel=1e-12)
    for (W, b), (dW, db) in zip(params, grads):
        assert_close(dW, W.grad.numpy(), np.float64, "dW vs torch")
        assert_close(db, b.grad.numpy(), np.float64, "db vs torch")
