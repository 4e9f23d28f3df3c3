"""loss_and_grads on every backend against the reference path, and the whole loss against
central differences."""

import numpy as np
import pytest

from naive import BACKENDS, DTYPES, assert_close
from numbamlp import MLP, loss_and_grads, reference
from numbamlp.gradcheck import gradcheck, grads_error, numerical_grads, relative_error
from numbamlp.kernels import ACTIVATION_NAMES, get_backend

NETS = {"2-layer": [6, 5, 3], "3-layer": [6, 5, 4, 3], "odd": [7, 1, 9, 2]}


def random_problem(layers, activation, dtype, batch, seed):
    rng = np.random.default_rng(seed)
    model = MLP(layers, activation=activation, dtype=dtype, seed=seed)
    for _, b in model.params:
        b[...] = rng.normal(0.0, 0.1, size=b.shape)
    X = rng.normal(size=(batch, layers[0])).astype(dtype)
    y = rng.integers(0, layers[-1], size=batch)
    return model, X, y


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("batch", [1, 5])
def test_batched_gradients_equal_mean_of_reference_gradients(backend, dtype, net, activation, batch):
    model, X, y = random_problem(NETS[net], activation, dtype, batch, seed=batch)
    loss, grads = loss_and_grads(model, X, y, backend=backend)
    ref_loss, ref_grads = reference.mean_loss_and_grads(model.params, activation, X, y)
    assert_close(loss, ref_loss, dtype, "loss")
    for layer, ((dW, db), (rW, rb)) in enumerate(zip(grads, ref_grads)):
        assert dW.shape == model.params[layer][0].shape and db.shape == model.params[layer][1].shape
        assert dW.dtype == model.dtype
        assert_close(dW, rW, dtype, f"layer {layer} dW")
        assert_close(db, rb, dtype, f"layer {layer} db")
    bound = 1e-10 if np.dtype(dtype) == np.float64 else 1e-4
    assert grads_error(grads, ref_grads) <= bound


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("net", ["2-layer", "3-layer"])
def test_whole_loss_gradient_matches_central_differences(activation, net):
    model, X, y = random_problem(NETS[net], activation, "float64", 6, seed=7)
    numeric = numerical_grads(model.params, activation, X, y)
    for backend in (*BACKENDS, "reference"):
        _, grads = loss_and_grads(model, X, y, backend=backend)
        error = grads_error(grads, numeric)
        assert error < 1e-7, f"{backend}: relative error {error:.2e}"


def test_relative_error_definition():
    assert relative_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert relative_error([1.0, 2.1], [1.0, 2.0]) == pytest.approx(0.05)
    assert relative_error([1e-3], [0.0]) == pytest.approx(1e-3)  # all-zero reference: absolute


def test_gradcheck_passes_and_reports_every_combination():
    rows = gradcheck(backends=BACKENDS, dtypes=("float64", "float32"))
    assert len(rows) == len(ACTIVATION_NAMES) * 2 * 2 * 2
    assert all(row.ok for row in rows), [r for r in rows if not r.ok]


def test_gradcheck_catches_a_wrong_kernel(monkeypatch, cli):
    """The check can fail: a ReLU backward that lets gradient through everywhere is caught."""
    numpy_backend = get_backend("numpy")
    monkeypatch.setattr(numpy_backend, "relu_backward", lambda dA, dH, A, alpha: np.copyto(dA, dH))
    rows = gradcheck(backends=("numpy",), dtypes=("float64",), activations=("relu",))
    assert not any(row.ok for row in rows)
    result = cli.invoke("gradcheck")
    assert result.exit_code == 1
    assert "FAIL" in result.output


def test_gradcheck_command_prints_a_table_and_succeeds(cli):
    result = cli.invoke("gradcheck")
    assert result.exit_code == 0, result.output
    assert "all 56 checks passed" in result.output
    assert result.output.count(" ok\n") == 56


def test_reference_backend_returns_float64_mean_gradients():
    model, X, y = random_problem(NETS["2-layer"], "tanh", "float32", 3, seed=2)
    loss, grads = loss_and_grads(model, X, y, backend="reference")
    assert isinstance(loss, float) and grads[0][0].dtype == np.float64
