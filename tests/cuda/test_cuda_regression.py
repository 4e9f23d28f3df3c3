"""The cuda backend's squared-error loss (issue 15): mse_forward/mse_backward against the cpu
backend, and a regression stack step (stack_step with SQUARED_ERROR) against the numpy
backend's, under the simulator (NUMBA_ENABLE_CUDASIM=1) or on a real GPU.  Small, odd shapes:
a hidden width of 19 spans two GEMM tiles; each case is two steps of at most three members."""

import os

import numpy as np
import pytest
from numba import cuda

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
if not SIMULATOR and not cuda.is_available():
    pytest.skip("no GPU and not under NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

from numbamlp.kernels import STEP_GRADIENTS, STEP_TRAIN, get_backend  # noqa: E402
from numbamlp.plan import StepPlan  # noqa: E402


@pytest.mark.parametrize("weighted", [False, True])
def test_mse_kernels_match_the_cpu_backend(weighted):
    rng = np.random.default_rng(0)
    B, K = 37, 3  # more rows than the loss kernel's 32 threads
    S, Y = rng.normal(size=(B, K)), rng.normal(size=(B, K))
    w = rng.uniform(0.5, 2.0, B) if weighted else None
    gpu, cpu = get_backend("cuda"), get_backend("numpy")
    rows, dS = np.zeros(B), np.zeros((B, K))
    loss = gpu.mse_forward(rows, S, Y, w)
    gpu.mse_backward(dS, S, Y, w)
    ref_rows, ref_dS = np.zeros(B), np.zeros((B, K))
    ref_loss = cpu.mse_forward(ref_rows, S, Y, w)
    cpu.mse_backward(ref_dS, S, Y, w)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    np.testing.assert_allclose(rows, ref_rows, rtol=1e-12)
    np.testing.assert_allclose(dS, ref_dS, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("optimizer,members,shared,weighted,mode", [
    ("adam", 3, False, True, STEP_TRAIN), ("momentum", 2, True, False, STEP_GRADIENTS)])
def test_a_regression_stack_step_matches_numpy(optimizer, members, shared, weighted, mode):
    rng = np.random.default_rng(1)
    layers, B = [5, 19, 2], 7
    plans = {backend: StepPlan(layers, "tanh", optimizer, members, B, np.float64, backend, loss="squared_error")
             for backend in ("cuda", "numpy")}
    params = rng.normal(size=plans["numpy"].host.params.shape) * 0.5
    for plan in plans.values():
        plan.host.params[...] = params
        plan.settings.lr[:] = 0.05
        plan.settings.momentum[:] = 0.0 if plan.adam else 0.9
        plan.settings.beta1[:], plan.settings.beta2[:], plan.settings.eps[:] = 0.9, 0.999, 1e-8
        plan.push()
    rows = 1 if shared else members
    for mode_now in (STEP_TRAIN, mode):
        X, Y = rng.normal(size=(rows, B, 5)), rng.normal(size=(rows, B, 2))
        w = rng.uniform(0.5, 2.0, size=(rows, B)) if weighted else None
        losses = {backend: np.array(plan.step(X, Y, w, mode_now)) for backend, plan in plans.items()}
        np.testing.assert_allclose(losses["cuda"], losses["numpy"], rtol=1e-12)
    plans["cuda"].pull()
    np.testing.assert_allclose(plans["cuda"].host.params, plans["numpy"].host.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(plans["cuda"].host.grads, plans["numpy"].host.grads, rtol=1e-10, atol=1e-12)
