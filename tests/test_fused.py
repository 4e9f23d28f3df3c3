"""The cpu backend's fused train_step against the step-by-step numpy path, every family."""

import numpy as np
import pytest

from naive import assert_close
from numbamlp import MLP
from numbamlp.kernels import ACTIVATION_NAMES
from numbamlp.trainer import Trainer

OPTIMIZERS = {
    "sgd": {"name": "sgd", "momentum": 0.0, "weight_decay": 0.0},
    "sgd+decay": {"name": "sgd", "momentum": 0.0, "weight_decay": 0.01},
    "momentum+decay": {"name": "momentum", "momentum": 0.9, "weight_decay": 0.01},
    "nesterov": {"name": "nesterov", "momentum": 0.9, "weight_decay": 0.01},
    "adam": {"name": "adam", "weight_decay": 0.01},
    "adamw": {"name": "adamw", "weight_decay": 0.01},
}


def run(backend, layers, activation, optimizer, steps=4, batches=(7, 7, 3), weights=None):
    rng = np.random.default_rng(0)
    trainer = Trainer({"backend": backend, "dtype": "float64", "batch_size": 7,
                       "model": {"layers": layers, "activation": activation},
                       "optimizer": {**optimizer, "lr": 0.05}})
    trainer.set_model(MLP(layers, activation=activation, dtype="float64", seed=3))
    losses = []
    for step in range(steps):
        B = batches[step % len(batches)]
        X = rng.normal(size=(B, layers[0]))
        y = rng.integers(0, layers[-1], size=B)
        w = None if weights is None else rng.uniform(0.5, 2.0, size=B)
        losses.append(trainer.step(X, y, sample_weight=w))
    return np.array(losses), trainer.model.flat_params


@pytest.mark.parametrize("layers", [[5, 3], [5, 6, 3], [5, 6, 4, 3]], ids=["depth1", "depth2", "depth3"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_fused_step_equals_stepwise_path_for_every_optimizer(layers, optimizer):
    fused_losses, fused = run("cpu", layers, "relu", OPTIMIZERS[optimizer])
    plain_losses, plain = run("numpy", layers, "relu", OPTIMIZERS[optimizer])
    np.testing.assert_allclose(fused_losses, plain_losses, rtol=1e-12)
    np.testing.assert_allclose(fused, plain, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_fused_step_dispatches_every_activation(activation):
    """The fused step's activation codes follow the table's order."""
    fused_losses, fused = run("cpu", [4, 5, 6, 3], activation, OPTIMIZERS["momentum+decay"])
    plain_losses, plain = run("numpy", [4, 5, 6, 3], activation, OPTIMIZERS["momentum+decay"])
    np.testing.assert_allclose(fused_losses, plain_losses, rtol=1e-12)
    np.testing.assert_allclose(fused, plain, rtol=1e-10, atol=1e-13)


def test_fused_step_with_sample_weights():
    fused_losses, fused = run("cpu", [4, 6, 3], "tanh", OPTIMIZERS["adam"], weights=True)
    plain_losses, plain = run("numpy", [4, 6, 3], "tanh", OPTIMIZERS["adam"], weights=True)
    np.testing.assert_allclose(fused_losses, plain_losses, rtol=1e-12)
    np.testing.assert_allclose(fused, plain, rtol=1e-10, atol=1e-13)


@pytest.mark.filterwarnings("ignore:invalid value encountered")
@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_a_non_finite_loss_leaves_the_weights_untouched(backend):
    trainer = Trainer({"backend": backend, "model": {"layers": [3, 4, 2]}})
    trainer.build(3, 2)
    before = trainer.model.flat_params.copy()
    loss = trainer.train_step(np.array([[np.inf, 0.0, 1.0]], dtype=np.float32), np.array([0]), None, 0.1)
    assert not np.isfinite(loss)
    np.testing.assert_array_equal(trainer.model.flat_params, before)
    assert trainer.optimizer.step_count == 0


def test_validation_checks_the_fused_path_and_leaves_the_weights_alone():
    """--validate compares the gradients training actually uses (the fused step) with the
    reference path, without moving the weights or the optimizer."""
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(40, 6)), rng.integers(0, 3, 40)
    trainer = Trainer({"dtype": "float64", "batch_size": 8, "model": {"layers": [6, 7, 3]},
                       "optimizer": {"name": "adam"}})
    trainer.build(6, 3)
    before = trainer.model.flat_params.copy()
    error = trainer.validate_gradients(X, y)
    assert error < 1e-10
    np.testing.assert_array_equal(trainer.model.flat_params, before)
    assert trainer.optimizer.step_count == 0


# The fused step's GEMMs at these widths and batches (hidden buffers are feature-major,
# (H, B)) are cut into blocks that do not divide their longer side: a short last block left
# uncomputed would leave columns of activations or deltas, or rows of gradients or weights,
# stale.  (m, n, k) of C (m, n) = op(A) (m, k) @ op(B) (k, n), for B = 601 and 257:
# Aᵀ₁ = W₁ Xᵀ, Aᵀ₂ = W₂ Hᵀ₁, dHᵀ₁ = W₂ᵀ dAᵀ₂, dW₂ = dAᵀ₂ H₁, dW₁ = dAᵀ₁ X.
WIDE_LAYERS, WIDE_BATCHES = [777, 513, 33, 10], (601, 257)
WIDE_PRODUCTS = [(513, 601, 777), (33, 601, 513), (513, 601, 33), (33, 513, 601), (513, 777, 601),
                 (513, 257, 777), (513, 257, 33), (33, 513, 257), (513, 777, 257)]


def test_the_wide_net_reaches_uneven_multi_block_products():
    from numbamlp.kernels.cpu_backend import gemm_blocks

    for m, n, k in WIDE_PRODUCTS:
        blocks = gemm_blocks(m, n, k)
        assert blocks > 1 and max(m, n) % blocks != 0, ((m, n, k), blocks)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fused_step_on_uneven_multi_block_products_equals_stepwise_path(optimizer):
    """Plain SGD writes the update straight into W through the blocked GEMM (β = 1); Adam
    updates from the blocked gradient: both must cover every row and column."""
    fused_losses, fused = run("cpu", WIDE_LAYERS, "relu", OPTIMIZERS[optimizer], steps=3, batches=WIDE_BATCHES)
    plain_losses, plain = run("numpy", WIDE_LAYERS, "relu", OPTIMIZERS[optimizer], steps=3, batches=WIDE_BATCHES)
    np.testing.assert_allclose(fused_losses, plain_losses, rtol=1e-12)
    assert_close(fused, plain, np.float64, f"{optimizer} weights after 3 steps")


def stepped_trainer(optimizer, layers=(6, 8, 3), seed=5):
    trainer = Trainer({"batch_size": 4, "model": {"layers": list(layers)}, "seed": seed,
                       "optimizer": {**OPTIMIZERS[optimizer], "lr": 0.05}})
    trainer.build(layers[0], layers[-1])
    return trainer


def batches(layers=(6, 8, 3), steps=5):
    rng = np.random.default_rng(2)
    return [(rng.normal(size=(4, layers[0])).astype(np.float32), rng.integers(0, layers[-1], size=4))
            for _ in range(steps)]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_model_alone_steps_past_the_dispatcher_with_the_same_bits(optimizer):
    """A model stepping again on checked arrays (what fit does) calls its compiled step's
    entry point directly (its plan's cpu_dispatch.AloneStep), also while other models step
    in turn: the same bits as through Numba's dispatcher (stack_step)."""
    import numba

    from numbamlp.kernels import cpu_backend, cpu_dispatch

    alone, in_turn, other = stepped_trainer(optimizer), stepped_trainer(optimizer), stepped_trainer(optimizer, (5, 3))
    alone_losses = [alone.train_step(X, y, None, alone.lr) for X, y in batches()]
    step = alone._plan._stack_step
    assert isinstance(step, cpu_dispatch.AloneStep) and step.buffers is alone._plan.buffers
    assert step._entries and not any(isinstance(entry, numba.core.dispatcher.Dispatcher)
                                     for entry in step._entries.values())
    dispatched = stepped_trainer(optimizer)
    dispatched._plan._stack_step = cpu_backend.stack_step  # every call through the dispatcher
    assert [dispatched.train_step(X, y, None, dispatched.lr) for X, y in batches()] == alone_losses
    assert np.array_equal(dispatched.model.flat_params, alone.model.flat_params)
    in_turn_losses = []
    for (X, y), (X_other, y_other) in zip(batches(), batches((5, 3))):
        in_turn_losses.append(in_turn.train_step(X, y, None, in_turn.lr))
        other.train_step(X_other, y_other, None, other.lr)
    assert alone_losses == in_turn_losses
    assert np.array_equal(alone.model.flat_params, in_turn.model.flat_params)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum+decay", "adam"])
def test_trainer_step_on_plain_batches_takes_the_shortcut_to_the_same_bits(optimizer):
    """Trainer.step on batches the compiled step takes as they are (float32 C-contiguous X,
    int64 y) goes through the plan's PlainStep and its compiled entry points; the weights,
    optimizer state and losses are those of the checked path (fit's)."""
    import numba

    shortcut, checked = stepped_trainer(optimizer), stepped_trainer(optimizer)
    for X, y in batches():
        assert shortcut.step(X, y) == checked.train_step(X, y, None, checked.lr)
    plain = shortcut._plain_step
    assert plain.alone is shortcut._plan._stack_step  # one step, one set of entry points
    assert plain.alone._entries and not any(isinstance(entry, numba.core.dispatcher.Dispatcher)
                                            for entry in plain.alone._entries.values())
    assert np.array_equal(shortcut.model.flat_params, checked.model.flat_params)
    assert np.array_equal(shortcut._plan.host.state_a, checked._plan.host.state_a)
    assert shortcut.optimizer.step_count == checked.optimizer.step_count == 5


def test_anything_but_a_plain_batch_takes_the_checked_path():
    """What the shortcut does not take it leaves untouched, and Trainer.step converts it (to
    the same bits) or refuses it with the checked path's message."""
    trainer, reference = stepped_trainer("momentum+decay"), stepped_trainer("momentum+decay")
    plain = trainer._plain_step
    X, y = batches()[0]
    converted = [X.astype(np.float64), np.asfortranarray(X), X.tolist()]
    for other in converted:
        assert plain(other, y, 0.05) is None
        assert trainer.step(other, y) == reference.step(X, y)
    assert plain(X, y.astype(np.int32), 0.05) is None and trainer.step(X, y.astype(np.int32)) == reference.step(X, y)
    unaligned = np.frombuffer(b"\0" + X.tobytes(), dtype=np.float32, offset=1).reshape(X.shape)
    assert not unaligned.flags.aligned and plain(unaligned, y, 0.05) is None
    assert trainer.step(unaligned, y) == reference.step(X, y)
    for bad_X, bad_y, message in [
            (np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X).astype(np.float32), y, "NaN or infinite"),
            (np.where(np.arange(X.size).reshape(X.shape) == 7, np.inf, X).astype(np.float32), y, "NaN or infinite"),
            (X, np.where(np.arange(4) == 2, 3, y), r"class indices must lie in \[0, 3\)"),
            (X, np.where(np.arange(4) == 2, -1, y), r"class indices must lie in \[0, 3\)"),
            (X[:, :5].copy(), y, "5 features but the model expects 6"),
            (X, y[:3].copy(), "vector of 4 labels"),
            (X[:0], y[:0], "no rows"),
            (X, ["a", "b", "a", "b"], "y must hold integer class indices, not dtype <U1")]:
        assert plain(bad_X, bad_y, 0.05) is None
        with pytest.raises(ValueError, match=message):
            trainer.step(bad_X, bad_y)
    assert np.array_equal(trainer.model.flat_params, reference.model.flat_params)  # nothing refused stepped
    big_X, big_y = np.repeat(X, 3, axis=0), np.repeat(y, 3)  # past the plan's capacity: a bigger plan
    assert plain(big_X, big_y, 0.05) is None
    assert trainer.step(big_X, big_y) == reference.step(big_X, big_y)
    assert trainer._plan.capacity == 12 and trainer._plain_step is not plain
    weights = np.full(4, 2.0)
    assert trainer.step(X, y, sample_weight=weights) == reference.step(X, y, sample_weight=weights)
    assert np.array_equal(trainer.model.flat_params, reference.model.flat_params)


def test_a_model_alone_with_other_argument_types_goes_through_the_dispatcher():
    """After the direct calls, an argument of another type is typed (and refused) by Numba,
    never handed to the compiled step (whose unboxing would read a 2-D X as 3-D: a crash)."""
    from numba.core.errors import TypingError

    trainer = stepped_trainer("sgd")
    for X, y in batches():
        trainer.step(X, y)
    with pytest.raises(TypingError):
        trainer._plan.step(X, y[None])  # X (B, D) where (1, B, D) is due


# ---------------------------------------------------------------- the first layer's transposed copy of X
# D ≠ H, so that a size swapped between them shows; H·D = 10,000: the threshold falls at a
# whole number of rows for kernels.TRANSPOSED_INPUT_MAX = 1,000,000.
FIRST_LAYER = (125, 80, 3)  # D, H, C


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("side", ["below", "at", "above"])
def test_the_first_layers_transposed_copy_steps_as_the_numpy_backend_on_either_side_of_its_threshold(dtype, side):
    """kernels.TRANSPOSED_INPUT_MAX: a cpu step whose first product H·B·D is at most that
    multiplies by a transposed copy of X in the plan's workspace (room for
    model.transposed_input_rows of them), a larger one by X itself.  On either side, and at
    the threshold, two steps (the copy refreshed for each batch) move the weights as the
    numpy backend's steps do, to the dtype's tolerance: the same gradients."""
    from numbamlp.kernels import TRANSPOSED_INPUT_MAX
    from numbamlp.model import transposed_input_rows

    D, H, C = FIRST_LAYER
    threshold = TRANSPOSED_INPUT_MAX // (H * D)  # the most rows the transposed copy takes
    B = {"below": threshold - 1, "at": threshold, "above": threshold + 1}[side]
    assert (H * B * D <= TRANSPOSED_INPUT_MAX) == (side != "above")
    assert transposed_input_rows([D, H, C], threshold + 1) == threshold  # the workspace's room for the copy
    rng = np.random.default_rng(4)
    batches = [(rng.normal(size=(B, D)), rng.integers(0, C, size=B)) for _ in range(2)]
    moves, losses = {}, {}
    for backend in ("cpu", "numpy"):
        trainer = Trainer({"backend": backend, "dtype": dtype, "batch_size": threshold + 1,
                           "model": {"layers": [D, H, C], "activation": "tanh"},
                           "optimizer": {"name": "sgd", "momentum": 0.0, "weight_decay": 0.0, "lr": 0.5}})
        trainer.set_model(MLP([D, H, C], activation="tanh", dtype=dtype, seed=3))
        moves[backend], losses[backend] = [], []
        for X, y in batches:
            before = trainer.model.flat_params.copy()
            losses[backend].append(trainer.step(X, y))
            moves[backend].append(before - trainer.model.flat_params)  # lr · the gradient
    for step in range(2):
        assert_close(moves["cpu"][step], moves["numpy"][step], dtype, f"{side}, step {step + 1}: the weights' move")
    assert_close(losses["cpu"], losses["numpy"], dtype, f"{side}: the losses")
