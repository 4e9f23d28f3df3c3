"""The cuda step of a stack of models (cuda_backend.stack_step on a StepPlan) against the numpy
backend's, and the cuda StackTrainer against Trainers alone and the numpy backend.

Runs in its own pytest process under the simulator (NUMBA_ENABLE_CUDASIM=1), or on a real
GPU; skips itself otherwise.  Shapes are odd; a hidden width of 19 spans two 16-wide GEMM
tiles, and batches of 5 and 7 leave the last tile ragged.  The simulator runs every thread
in Python, so each case takes two steps of at most three members.
"""

import os

import numpy as np
import pytest
from numba import cuda

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
if not SIMULATOR and not cuda.is_available():
    pytest.skip("no GPU and not under NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

from numbamlp import StackTrainer, Trainer  # noqa: E402
from numbamlp.kernels import STEP_GRADIENTS, STEP_TRAIN  # noqa: E402
from numbamlp.plan import StepPlan  # noqa: E402
from numbamlp.trainer import TrainingInterrupted  # noqa: E402

TOLERANCE = {np.float64: 1e-12, np.float32: 1e-4}

# Per-member settings, every one different (member 0 plain SGD in the SGD family).
SETTINGS = {"lr": [0.1, 0.03, 0.2], "momentum": [0.0, 0.9, 0.5], "weight_decay": [0.0, 0.01, 0.1],
            "beta1": [0.9, 0.8, 0.95], "beta2": [0.999, 0.99, 0.9], "eps": [1e-8, 1e-6, 1e-7]}

# (optimizer, members, layers, batch, dtype, shared batch, weighted, activation, second call's mode)
CASES = {
    "sgd": ("sgd", 3, [7, 5, 3], 5, np.float64, True, False, "relu", STEP_TRAIN),
    "momentum": ("momentum", 3, [5, 19, 4, 3], 7, np.float64, False, True, "gelu", STEP_TRAIN),
    "nesterov": ("nesterov", 3, [7, 5, 3], 7, np.float64, False, False, "sigmoid", STEP_GRADIENTS),
    "adam": ("adam", 3, [5, 9, 4, 3], 5, np.float64, True, True, "elu", STEP_TRAIN),
    "adamw": ("adamw", 3, [7, 5, 3], 5, np.float64, False, True, "tanh", STEP_GRADIENTS),
    "one member": ("adamw", 1, [5, 19, 4, 3], 7, np.float64, True, True, "silu", STEP_TRAIN),
    "float32": ("adam", 3, [7, 5, 3], 7, np.float32, False, True, "leaky_relu", STEP_TRAIN),
}


def plans_alike(optimizer, M, layers, batch, dtype, activation, seed):
    """A cuda and a numpy plan with the same parameters, optimizer state and settings."""
    rng = np.random.default_rng(seed)
    plans = {backend: StepPlan(layers, activation, optimizer, M, batch, dtype, backend)
             for backend in ("cuda", "numpy")}
    shape = plans["numpy"].host.params.shape
    params, state_a, state_b = rng.normal(size=shape) * 0.5, rng.normal(size=shape) * 0.1, rng.uniform(size=shape) * 0.1
    for plan in plans.values():
        plan.host.params[...] = params
        plan.host.state_a[...] = state_a
        if plan.adam:
            plan.host.state_b[...] = state_b
        for name, values in SETTINGS.items():
            getattr(plan.settings, name)[:] = values[:M]
        plan.settings.steps[:] = [0, 4, 9][:M]
        plan.push()
    return plans


def assert_plans_alike(plans, dtype, what):
    cuda_plan, numpy_plan = plans["cuda"], plans["numpy"]
    cuda_plan.pull()
    tolerance = TOLERANCE[dtype]
    for name in ("params", "grads", "state_a", "state_b"):
        got, want = getattr(cuda_plan.host, name), getattr(numpy_plan.host, name)
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance * np.nanmax(np.abs(want)),
                                   err_msg=f"{what}: {name}")
    np.testing.assert_array_equal(cuda_plan.settings.steps, numpy_plan.settings.steps, err_msg=f"{what}: steps")


@pytest.mark.parametrize("case", CASES)
def test_the_cuda_stack_step_matches_the_numpy_backend(case):
    """Two calls: the first with member 1 inactive, the second (training, or the gradients
    only) with member 2's output bias poisoned, so that its loss is NaN and the step must
    leave it as it was."""
    optimizer, M, layers, batch, dtype, shared, weighted, activation, second_mode = CASES[case]
    plans = plans_alike(optimizer, M, layers, batch, dtype, activation, seed=len(case))
    rng = np.random.default_rng(7)
    rows = 1 if shared else M
    for call, mode in enumerate((STEP_TRAIN, second_mode)):
        X = rng.normal(size=(rows, batch, layers[0])).astype(dtype)
        y = rng.integers(0, layers[-1], (rows, batch))
        w = rng.uniform(0.5, 2.0, (rows, batch)).astype(dtype) if weighted else None
        untouched = set()
        for plan in plans.values():
            plan.settings.active[:] = True
            if M == 3 and call == 0:
                plan.settings.active[1] = False
                untouched = {1}
            if M == 3 and call == 1:
                plan.pull()
                plan.host.params[2, plan.layout.param_offsets[-1] + layers[-1] * layers[-2]] = np.nan
                plan.push()
                untouched = {2}
        before = {name: getattr(plans["cuda"].host, name).copy() for name in ("params", "grads", "state_a")}
        losses = {backend: plan.step(X, y, w, mode).copy() for backend, plan in plans.items()}
        finite = np.isfinite(losses["numpy"])
        np.testing.assert_array_equal(np.isfinite(losses["cuda"]), finite)
        assert set(np.flatnonzero(~finite)) == untouched
        np.testing.assert_allclose(losses["cuda"][finite], losses["numpy"][finite], rtol=TOLERANCE[dtype])
        assert_plans_alike(plans, dtype, f"{case}, call {call}")
        for m in untouched:  # as it was, to the bit
            for name, values in before.items():
                np.testing.assert_array_equal(getattr(plans["cuda"].host, name)[m], values[m], err_msg=name)
        if mode == STEP_GRADIENTS:
            np.testing.assert_array_equal(plans["cuda"].host.params, before["params"])


def small_data(n=16, d=5, classes=3, seed=11):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return rng.normal(size=(n, d)) + y[:, None], y


def stack_configs():
    """Three members on cuda: their own seeds and learning rates, class weights for one and
    early stopping for another."""
    base = {"backend": "cuda", "dtype": "float64", "batch_size": 8, "epochs": 2,
            "model": {"hidden": [6], "activation": "tanh"}}
    configs = [{**base, "seed": s, "optimizer": {"name": "momentum", "lr": 0.05 * (s + 1)}} for s in range(3)]
    configs[1]["class_weight"] = "balanced"
    configs[2]["early_stopping"] = {"patience": 1}
    return configs


class StopAfterFirstEpoch:
    def __init__(self):
        self.stack = None

    def on_epoch_end(self, epoch, metrics):
        if epoch == 1:
            self.stack.request_stop("test")


def test_a_cuda_stack_resumed_from_a_checkpoint_trains_each_member_as_alone(tmp_path):
    """The stack stops after its first epoch, is checkpointed (the device's state comes
    down), restored (and copied up) and continued; each member then holds what the numpy
    backend makes of its config (and member 1 what a cuda Trainer alone makes of it)."""
    X, y = small_data()
    X_val, y_val = small_data(n=6, seed=12)
    configs = stack_configs()
    stopper = StopAfterFirstEpoch()
    stopper.stack = StackTrainer(configs)
    with pytest.raises(TrainingInterrupted):
        stopper.stack.fit(X, y, X_val, y_val, callbacks=[stopper])
    stopper.stack.save_checkpoint(tmp_path / "stack")
    stack = StackTrainer.from_checkpoint(tmp_path / "stack")
    stack.fit(X, y, X_val, y_val, warm_start=True)
    for m, config in enumerate(configs):
        # every member against the numpy backend; the class-weighted one against a cuda
        # Trainer alone too (each cuda fit costs seconds in the simulator)
        alone = [Trainer({**config, "backend": "numpy"})] + ([Trainer(config)] if m == 1 else [])
        for trainer in alone:
            trainer.fit(X, y, X_val, y_val)
        assert stack.results[m]["epochs_run"] == alone[0].epoch == 2
        assert stack.results[m]["status"] == ("stopped early" if alone[0].stopped_early else "done")
        for trainer in alone:
            np.testing.assert_allclose(stack.models[m].flat_params, trainer.model.flat_params, rtol=1e-12,
                                       atol=1e-13, err_msg=f"member {m} against {trainer.config.backend}")
            assert [h["loss"] for h in stack.histories[m]] == pytest.approx([h["loss"] for h in trainer.history],
                                                                            rel=1e-12)
