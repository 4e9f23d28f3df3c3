"""Regression (issue 15): the squared-error loss on every backend against the reference path,
central differences, PyTorch autograd (pinned in tests/oracle/torch_grads.npz) and one plain
SGD step of scikit-learn's MLPRegressor; the fused and stacked steps; the Trainer.

Symbols: B rows, D features, K outputs.  Loss = ½·mean over rows of Σ_k (s − y)²."""

import numpy as np
import pytest

from naive import BACKENDS, DTYPES, FEW, ONE_EPOCH, assert_close, col
from naive import REPORTS_X as X
from numbamlp import MLP, load_model, loss_and_grads, reference
from numbamlp.gradcheck import NUMERICAL_TOLERANCE, REFERENCE_TOLERANCE, grads_error, numerical_grads
from numbamlp.kernels import ACTIVATION_NAMES, get_backend
from numbamlp.trainer import Trainer


def problem(layers=(5, 6, 4, 3), activation="tanh", B=9, seed=0):
    """A float64 regressor with non-zero biases, X (B, D), Y (B, K), weights (B,)."""
    rng = np.random.default_rng(seed)
    model = MLP(list(layers), activation=activation, dtype="float64", seed=seed, task="regression")
    for _, b in model.params:
        b[...] = rng.normal(0, 0.2, size=b.shape)
    return model, rng.normal(size=(B, layers[0])), rng.normal(size=(B, layers[-1])), rng.uniform(0.5, 2.0, B)


# ---------------------------------------------------------------- the reference module
def test_reference_squared_error_module_by_hand():
    """s = (1, 3), y = (2, 1): L = ½ (1 + 4) = 2.5, ds = s − y = (−1, 2)."""
    loss = reference.SquaredError()
    assert loss.forward(col([1.0, 3.0]), [2.0, 1.0]) == 2.5
    np.testing.assert_array_equal(loss.backward(), col([-1.0, 2.0]))


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_reference_gradients_match_central_differences(activation):
    model, X, Y, _ = problem(activation=activation, B=5)
    _, grads = reference.mean_loss_and_grads(model.params, activation, X, Y, loss="squared_error")
    numerical = numerical_grads(model.params, activation, X, Y, loss="squared_error")
    assert grads_error([(dW, db) for dW, db in grads], numerical) < NUMERICAL_TOLERANCE["float64"]


# ---------------------------------------------------------------- kernels
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_mse_kernels_match_the_reference_rows(backend, dtype, weighted):
    rng = np.random.default_rng(1)
    B, K = 11, 3
    S, Y = rng.normal(size=(B, K)).astype(dtype), rng.normal(size=(B, K)).astype(dtype)
    w = rng.uniform(0.5, 2.0, B).astype(dtype) if weighted else None
    kernels = get_backend(backend)
    row_loss, dS = np.empty(B, dtype), np.empty((B, K), dtype)
    loss = kernels.mse_forward(row_loss, S, Y, w)
    kernels.mse_backward(dS, S, Y, w)
    module = reference.SquaredError()
    rows = [module.forward(col(s), y) for s, y in zip(S, Y)]
    scale = np.ones(B) / B if w is None else w.astype(np.float64) / w.sum(dtype=np.float64)
    assert_close(row_loss, rows, dtype, "row_loss")
    assert_close(loss, np.dot(scale, rows), dtype, "mean loss")
    assert_close(dS, (S.astype(np.float64) - Y) * scale[:, None], dtype, "dS")


# ---------------------------------------------------------------- a batch's gradients
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_batched_gradients_match_the_reference_path(activation, backend, weighted):
    model, X, Y, w = problem(activation=activation)
    w = w if weighted else None
    ref_loss, ref = loss_and_grads(model, X, Y, backend="reference", sample_weight=w)
    loss, grads = loss_and_grads(model, X, Y, backend=backend, sample_weight=w)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert grads_error(grads, ref) < REFERENCE_TOLERANCE["float64"]
    model32 = MLP.from_params(model.params, activation=activation, dtype="float32", task="regression")
    _, grads32 = loss_and_grads(model32, X, Y, backend=backend, sample_weight=w)
    assert grads_error(grads32, ref) < REFERENCE_TOLERANCE["float32"]


def test_one_output_given_as_a_vector_is_one_column():
    model, X, Y, _ = problem(layers=(5, 6, 1))
    assert loss_and_grads(model, X, Y[:, 0], backend="numpy")[0] == loss_and_grads(model, X, Y, backend="numpy")[0]


@pytest.fixture(scope="module")
def torch_answers():
    from test_oracles import TORCH_FIXTURE

    with np.load(TORCH_FIXTURE, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


@pytest.mark.parametrize("case", ["mean", "weighted"])
@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_gradients_match_pinned_pytorch_autograd(torch_answers, activation, backend, case):
    """PyTorch's ½ Σ_k (s − y)², mean (or weighted mean) over rows, by autograd."""
    depth = sum(key.startswith("W") for key in torch_answers)
    params = [(torch_answers[f"W{layer}"], torch_answers[f"b{layer}"]) for layer in range(depth)]
    model = MLP.from_params(params, activation=activation, dtype="float64", task="regression")
    weights = torch_answers["sample_weight"] if case == "weighted" else None
    loss, grads = loss_and_grads(model, torch_answers["X"], torch_answers["Y"], backend=backend, sample_weight=weights)
    expected = lambda key: torch_answers[f"{activation}.squared_error.{case}.{key}"]  # noqa: E731
    assert loss == pytest.approx(float(expected("loss")), rel=1e-12)
    for layer, (dW, db) in enumerate(grads):
        assert_close(dW, expected(f"dW{layer}"), np.float64, f"{backend} dW{layer} vs torch")
        assert_close(np.ravel(db), expected(f"db{layer}"), np.float64, f"{backend} db{layer} vs torch")


@pytest.mark.parametrize("outputs", [1, 3])
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_match_a_scikit_learn_mlpregressor_sgd_step(backend, outputs):
    """scikit-learn trains with the gradient of ½·mean over rows of Σ_k (s − y)²: one plain SGD
    step over the whole batch moves its weights by lr times numbamlp's gradients."""
    from sklearn.neural_network import MLPRegressor

    model, X, Y, _ = problem(layers=(5, 6, 4, outputs), activation="relu")
    lr = 0.1
    reg = MLPRegressor(hidden_layer_sizes=(6, 4), activation="relu", solver="sgd", alpha=0.0, batch_size=len(X),
                       learning_rate_init=lr, momentum=0.0, nesterovs_momentum=False, shuffle=False)
    target = Y[:, 0] if outputs == 1 else Y
    reg.partial_fit(X, target)
    for (W, b), coef, intercept in zip(model.params, reg.coefs_, reg.intercepts_):
        coef[...] = W.T
        intercept[...] = b
    reg.partial_fit(X, target)
    _, grads = loss_and_grads(model, X, target, backend=backend)
    for (W, b), (dW, db), coef, intercept in zip(model.params, grads, reg.coefs_, reg.intercepts_):
        assert_close((W - coef.T) / lr, dW, np.float64, "dW vs sklearn", scale=np.abs(dW).max())
        assert_close((b - intercept) / lr, db, np.float64, "db vs sklearn", scale=np.abs(db).max())


# ---------------------------------------------------------------- the training step
OPTIMIZERS = {"sgd": {"name": "sgd", "momentum": 0.0, "weight_decay": 0.01},
              "momentum": {"name": "momentum", "weight_decay": 0.01}, "adam": {"name": "adam", "weight_decay": 0.01}}


def steps(backend, optimizer, layers=(4, 6, 5, 2), activation="gelu", weights=False, n=4):
    rng = np.random.default_rng(2)
    trainer = Trainer({"task": "regression", "backend": backend, "dtype": "float64", "batch_size": 7,
                       "model": {"layers": list(layers), "activation": activation},
                       "optimizer": {**OPTIMIZERS[optimizer], "lr": 0.05}})
    trainer.set_model(MLP(list(layers), activation=activation, dtype="float64", seed=3, task="regression"))
    losses = []
    for step in range(n):
        B = (7, 7, 3)[step % 3]
        X, Y = rng.normal(size=(B, layers[0])), rng.normal(size=(B, layers[-1]))
        losses.append(trainer.step(X, Y, sample_weight=rng.uniform(0.5, 2, B) if weights else None))
    return np.array(losses), trainer.model.flat_params.copy()


@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_fused_regression_step_equals_the_stepwise_numpy_path(optimizer, weights):
    fused_losses, fused = steps("cpu", optimizer, weights=weights)
    plain_losses, plain = steps("numpy", optimizer, weights=weights)
    np.testing.assert_allclose(fused_losses, plain_losses, rtol=1e-12)
    np.testing.assert_allclose(fused, plain, rtol=1e-10, atol=1e-13)


def test_a_regression_step_is_plain_sgd_on_the_reference_gradients():
    model, X, Y, _ = problem(layers=(5, 6, 2), activation="relu")
    _, ref = reference.mean_loss_and_grads(model.params, "relu", X, Y, loss="squared_error")
    trainer = Trainer({"task": "regression", "dtype": "float64", "batch_size": len(X),
                       "optimizer": {"name": "sgd", "lr": 0.1, "weight_decay": 0.0}})
    trainer.set_model(MLP.from_params(model.params, activation="relu", dtype="float64", task="regression"))
    trainer.step(X, Y)
    for (W, b), (W0, b0), (dW, db) in zip(trainer.model.params, model.params, ref):
        assert_close(W, W0 - 0.1 * dW, np.float64, "W")
        assert_close(b, b0 - 0.1 * db, np.float64, "b")


def test_stack_members_compute_the_bits_they_compute_alone():
    """cpu: member m of a regression stack equals the same config trained alone, bit for bit."""
    from numbamlp.stack import StackTrainer

    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(90, 5)), rng.normal(size=90)
    configs = [{"task": "regression", "dtype": "float64", "epochs": 3, "batch_size": 16, "seed": seed,
                "model": {"hidden": [7]}, "optimizer": optimizer}
               for seed, optimizer in ((0, {"name": "adam"}), (1, {"name": "adam", "lr": 0.01}),
                                       (2, {"name": "adam", "lr": 0.003, "weight_decay": 0.0}))]
    stack = StackTrainer(configs)
    stack.fit(X, y)
    for m, config in enumerate(configs):
        alone = Trainer(config)
        alone.fit(X, y)
        np.testing.assert_array_equal(stack.trainers[m].model.flat_params, alone.model.flat_params)


# ---------------------------------------------------------------- the Trainer
def test_trainer_standardises_targets_and_predicts_in_their_units():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 4))
    y = 1000.0 + 50.0 * (X[:, 0] - 0.5 * X[:, 1] ** 2) + rng.normal(scale=2.0, size=400)
    trainer = Trainer({"task": "regression", "dtype": "float64", "epochs": 40, "optimizer": {"name": "adam", "lr": 0.01},
                       "model": {"hidden": [32]}})
    trainer.fit(X[:300], y[:300])
    transform = trainer.model.target_transform
    assert transform.mean[0] == pytest.approx(y[:300].mean()) and transform.scale[0] == pytest.approx(y[:300].std())
    metrics = trainer.evaluate(X[300:], y[300:])
    assert metrics["r2"] > 0.9, metrics
    predictions = trainer.predict(X[300:])
    assert predictions.shape == (100,)
    assert metrics["mse"] == pytest.approx(np.mean((predictions - y[300:]) ** 2))
    np.testing.assert_allclose(trainer.model.predict(X[300:], backend="numpy"), predictions, rtol=1e-12)


def test_regression_refuses_class_weight_and_string_targets():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="class_weight is for classification"):
        Trainer({"task": "regression", "class_weight": "balanced"})
    with pytest.raises(ValueError, match="regression targets must be numbers"):
        Trainer({"task": "regression"}).fit(np.zeros((4, 2)), np.array(["a", "b", "c", "d"]))


def test_the_commands_train_eval_predict_and_the_model_file_round_trip(tmp_path):
    """`numbamlp train --task regression`, `eval` on its run directory, `predict` values: the
    file's predictions are the trained model's, in the targets' units."""
    import subprocess
    import sys

    from sklearn.datasets import load_diabetes

    from numbamlp.io import load_model

    command = [sys.executable, "-m", "numbamlp.cli.main"]
    run = subprocess.run([*command, "train", "--task", "regression", "--data", "builtin:diabetes", "--optimizer",
                          "adam", "--epochs", "30", "--hidden", "32", "--out", str(tmp_path / "r"), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    summary = __import__("json").loads(run.stdout.strip().splitlines()[-1])
    assert summary["test_r2"] > 0.2
    evaluated = subprocess.run([*command, "eval", str(tmp_path / "r"), "--json"], capture_output=True, text=True,
                               timeout=300)
    metrics = __import__("json").loads(evaluated.stdout)
    # (train scores the float32 rows it read; eval standardises raw float64 features, then casts)
    assert metrics["r2"] == pytest.approx(summary["test_r2"], rel=1e-6)
    X, y = load_diabetes(return_X_y=True)
    np.savetxt(tmp_path / "rows.csv", np.column_stack([X[:5], y[:5]]), delimiter=",")
    predicted = subprocess.run([*command, "predict", str(tmp_path / "r"), "--data", str(tmp_path / "rows.csv"),
                                "--label-column", "-1"], capture_output=True, text=True, timeout=300)
    lines = predicted.stdout.splitlines()
    assert lines[0] == "prediction"
    model = load_model(tmp_path / "r" / "model.safetensors")
    assert model.task == "regression" and model.target_transform is not None
    np.testing.assert_allclose([float(v) for v in lines[1:]], model.predict(X[:5]).ravel(), rtol=1e-6)
    assert 20 < np.mean([float(v) for v in lines[1:]]) < 400  # the targets' units, not standardised ones
    proba = subprocess.run([*command, "predict", str(tmp_path / "r"), "--data", str(tmp_path / "rows.csv"),
                            "--proba"], capture_output=True, text=True, timeout=300)
    assert proba.returncode == 2 and len(proba.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- targets: how many, and from which file
def test_regression_says_how_many_targets_it_needs():
    """Reported 2026-11-30 by a new user (first look); fixed in 32f489a."""
    trainer = Trainer({**ONE_EPOCH, "task": "regression"})
    trainer.fit(X, X[:, 0])
    with pytest.raises(ValueError, match="y must hold 40 targets"):
        trainer.evaluate(X, X[:10, 0])


def test_several_regression_targets_from_an_npz_and_eval_counts_them(tmp_path, cli):
    """Reported 2026-11-30 by a new user (second look); fixed in 572c187."""
    targets = np.column_stack([X[:, 0] * 2, X[:, 1] - X[:, 2]])
    np.savez(tmp_path / "two.npz", X=X, y=targets)
    np.savez(tmp_path / "one.npz", X=X, y=targets[:, 0])
    assert cli("train", "--task", "regression", "--data", tmp_path / "two.npz", "--out", tmp_path / "run", *FEW)[0] == 0
    assert load_model(tmp_path / "run").layers[-1] == 2
    code, output = cli("predict", tmp_path / "run", "--data", tmp_path / "two.npz")
    assert code == 0 and output.splitlines()[0] == "prediction_0,prediction_1"
    code, output = cli("eval", tmp_path / "run", "--data", tmp_path / "one.npz")
    assert code == 2 and "has 1 target column but the model has 2 outputs" in output
