"""Independent oracles: code we did not write computes the same loss and gradients.

scikit-learn's MLPClassifier (relu, logistic, tanh) through one plain SGD step; PyTorch
autograd for all seven activations, on every run from the answers pinned in
tests/oracle/torch_grads.npz (written by tests/oracle/make_torch_fixture.py, torch stays
out of the test install), and live when torch is installed (the `bench` extra).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from naive import BACKENDS, assert_close
from numbamlp import MLP, loss_and_grads, reference
from numbamlp.kernels import ACTIVATION_NAMES, ACTIVATIONS

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


TORCH_FIXTURE = Path(__file__).with_name("oracle") / "torch_grads.npz"


@pytest.fixture(scope="module")
def torch_answers():
    with np.load(TORCH_FIXTURE, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def test_the_torch_fixture_says_where_it_came_from_and_covers_every_activation(torch_answers):
    meta = json.loads(str(torch_answers["metadata"]))
    assert meta["torch"].startswith("2.") and "make_torch_fixture.py" in meta["command"]
    assert set(meta["activations"]) == set(ACTIVATION_NAMES)
    # torch was called with the parameters of numbamlp's activation table
    assert f"negative_slope={ACTIVATIONS['leaky_relu'].alpha}" in meta["activations"]["leaky_relu"]
    assert f"alpha={ACTIVATIONS['elu'].alpha}" in meta["activations"]["elu"]
    assert "approximate='none'" in meta["activations"]["gelu"]
    assert all(f"{name}.{case}.loss" in torch_answers for name in ACTIVATION_NAMES for case in ("mean", "weighted"))
    assert TORCH_FIXTURE.stat().st_size < 200_000


def torch_problem(answers, activation):
    depth = sum(key.startswith("W") for key in answers)  # W0, W1, ...: the activations' keys start lowercase
    params = [(answers[f"W{layer}"], answers[f"b{layer}"]) for layer in range(depth)]
    return MLP.from_params(params, activation=activation, dtype="float64"), answers["X"], answers["y"]


@pytest.mark.parametrize("case", ["mean", "weighted"])
@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_gradients_match_pinned_pytorch_autograd(torch_answers, activation, backend, case):
    """The net has hidden units whose pre-activation is exactly 0, so torch's φ'(0) is in here too."""
    model, X, y = torch_problem(torch_answers, activation)
    weights = torch_answers["sample_weight"] if case == "weighted" else None
    loss, grads = loss_and_grads(model, X, y, backend=backend, sample_weight=weights)
    expected = lambda key: torch_answers[f"{activation}.{case}.{key}"]  # noqa: E731
    assert loss == pytest.approx(float(expected("loss")), rel=1e-12)
    for layer, (dW, db) in enumerate(grads):
        assert_close(dW, expected(f"dW{layer}"), np.float64, f"{backend} dW{layer} vs torch")
        assert_close(np.ravel(db), expected(f"db{layer}"), np.float64, f"{backend} db{layer} vs torch")


@pytest.mark.parametrize("case", ["mean", "weighted"])
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_input_gradients_of_the_reference_path_match_pinned_pytorch(torch_answers, activation, case):
    """dL/dX of the batch loss: row i is wᵢ/Σw times the reference path's single-example dx."""
    model, X, y = torch_problem(torch_answers, activation)
    weights = torch_answers["sample_weight"] if case == "weighted" else np.ones(len(y))
    net = reference.ReferenceMLP(model.params, activation)
    rows = [w * net.loss_and_grads(x, label)[2][:, 0] for x, label, w in zip(X, y, weights)]
    assert_close(np.stack(rows) / weights.sum(), torch_answers[f"{activation}.{case}.dX"], np.float64,
                 "reference dX vs torch")
