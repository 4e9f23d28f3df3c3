"""CUDA kernels against the CPU backend and the reference path.

Runs in its own pytest process under the simulator (`make test` does
NUMBA_ENABLE_CUDASIM=1 pytest tests/cuda), or on a real GPU; skips itself otherwise.
Shapes are odd and larger than one 16×16 tile so every GEMM spans several blocks, and
batches are longer than the 32 threads that share a member's loss rows, so each thread sums
several before the block's tree adds them.  (The step of a stack: test_cuda_stack.py.)
"""

import os

import numpy as np
import pytest
from numba import cuda

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
if not SIMULATOR and not cuda.is_available():
    pytest.skip("no GPU and not under NUMBA_ENABLE_CUDASIM=1", allow_module_level=True)

from numbamlp import reference  # noqa: E402
from numbamlp.kernels import ACTIVATION_NAMES, ACTIVATIONS, get_backend  # noqa: E402

gpu = get_backend("cuda")
cpu = get_backend("numpy")


# The GEMM epilogues the cuda step fuses an activation into (cuda_backend.stack_step), called
# as it calls them: on their own here, so that a wrong epilogue shows as itself.
def fused_affine_activation_forward(A, H, X, W, b, act_code, alpha):
    """A (B, out) = X (B, in) Wᵀ + b and H = φ(A) in one GEMM's epilogue."""
    gpu._gemm(A, X, W.T, bias=b, epilogue=gpu.BIAS_ACTIVATION, act_code=act_code, alpha=alpha, cache=H)


def fused_affine_activation_backward(dA_below, dW, db, dout, X, W, cache, act_code, alpha):
    """dW = doutᵀ X and db in one GEMM; dA_below (B, in) = (dout W) ⊙ φ'(cache) in the
    epilogue of the other."""
    gpu._gemm(dW, dout.T, X, bias=db, epilogue=gpu.WITH_BIAS_GRADIENT)
    gpu._gemm(dA_below, dout, W, epilogue=gpu.ACTIVATION_GRADIENT, act_code=act_code, alpha=alpha, cache=cache)
RTOL = {np.float64: 1e-12, np.float32: 2e-5}
DTYPES = (np.float64, np.float32)


def close(actual, expected, dtype, scale=None):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = np.abs(expected).max() if scale is None else scale
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


def random(rng, shape, dtype, scale=1.0):
    return (scale * rng.normal(size=shape)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_affine_forward_and_fused_epilogue(dtype):
    rng = np.random.default_rng(0)
    B, n_in, n_out = 37, 21, 19
    X, W, b = random(rng, (B, n_in), dtype), random(rng, (n_out, n_in), dtype), random(rng, n_out, dtype)
    out = np.zeros((B, n_out), dtype)
    gpu.affine_forward(out, X, W, b)
    expected = np.empty_like(out)
    cpu.affine_forward(expected, X, W, b)
    close(out, expected, dtype)
    for code, name in enumerate(ACTIVATION_NAMES):
        A, H = np.zeros_like(out), np.zeros_like(out)
        fused_affine_activation_forward(A, H, X, W, b, code, ACTIVATIONS[name].alpha)
        H_cpu = np.empty_like(out)
        getattr(cpu, f"{name}_forward")(H_cpu, expected, ACTIVATIONS[name].alpha)
        close(A, expected, dtype)
        close(H, H_cpu, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_affine_backward_with_transposed_operands_and_the_bias_gradient_in_the_gemm(dtype):
    rng = np.random.default_rng(1)
    B, n_in, n_out = 70, 17, 23  # db is the dW GEMM's extra column: 70 rows, five tiles of its inner loop
    X, W, dout = random(rng, (B, n_in), dtype), random(rng, (n_out, n_in), dtype), random(rng, (B, n_out), dtype)
    dX, dW, db = np.zeros((B, n_in), dtype), np.zeros((n_out, n_in), dtype), np.zeros(n_out, dtype)
    gpu.affine_backward(dX, dW, db, dout, X, W)
    ref_dX, ref_dW, ref_db = np.empty_like(dX), np.empty_like(dW), np.empty_like(db)
    cpu.affine_backward(ref_dX, ref_dW, ref_db, dout, X, W)
    close(dW, ref_dW, dtype)
    close(db, ref_db, dtype)
    close(dX, ref_dX, dtype)
    dW2 = np.zeros_like(dW)
    gpu.affine_backward(None, dW2, db, dout, X, W)
    np.testing.assert_array_equal(dW2, dW)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_activations_match_the_reference(activation, dtype):
    rng = np.random.default_rng(2)
    A, dH = random(rng, (9, 11), dtype, 3.0), random(rng, (9, 11), dtype)
    spec = ACTIVATIONS[activation]
    Hout, dA = np.zeros_like(A), np.zeros_like(A)
    getattr(gpu, f"{activation}_forward")(Hout, A, spec.alpha)
    getattr(gpu, f"{activation}_backward")(dA, dH, A if spec.backward_uses == "input" else Hout, spec.alpha)
    ref_H, ref_dA = [], []
    for a, d in zip(A, dH):
        module = reference.make_activation(activation)
        ref_H.append(module.forward(a.astype(np.float64).reshape(-1, 1))[:, 0])
        ref_dA.append(module.backward(d.astype(np.float64).reshape(-1, 1))[:, 0])
    close(Hout, np.stack(ref_H), dtype)
    close(dA, np.stack(ref_dA), dtype, scale=np.abs(dH).max())


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_crossentropy_is_deterministic_and_matches(dtype, weighted):
    rng = np.random.default_rng(3)
    B, C = 70, 7
    S, y = random(rng, (B, C), dtype, 4.0), rng.integers(0, C, B)
    w = rng.uniform(0.5, 2.0, B).astype(dtype) if weighted else None
    P, row_loss, dS = np.zeros_like(S), np.zeros(B, dtype), np.zeros_like(S)
    loss = gpu.softmax_crossentropy_forward(P, row_loss, S, y, w)
    gpu.softmax_crossentropy_backward(dS, P, y, w)
    ref_P, ref_rows, ref_dS = np.empty_like(S), np.empty(B, dtype), np.empty_like(S)
    ref_loss = cpu.softmax_crossentropy_forward(ref_P, ref_rows, S, y, w)
    cpu.softmax_crossentropy_backward(ref_dS, ref_P, y, w)
    close(P, ref_P, dtype)
    close(row_loss, ref_rows, dtype)
    assert loss == pytest.approx(ref_loss, rel=RTOL[dtype])
    close(dS, ref_dS, dtype, scale=1.0 / B)
    again = gpu.softmax_crossentropy_forward(np.zeros_like(S), np.zeros(B, dtype), S, y, w)
    assert again == loss  # two-pass, fixed order: the same bits every time



@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_leaves_out_negligible_exponentials_as_the_cpu_backend(dtype):
    """numbamlp.kernels.negligible_exp: a confident model's underflowing exponentials are 0
    in P on the GPU too, so that no subnormal number slows what follows."""
    gaps = [0.0, -30.0, -43.0, -44.0, -95.0, -720.0]  # e^-43 > 2^-63 > e^-44
    S, y = np.array([gaps, gaps[::-1]], dtype), np.array([0, 3])
    P, row_loss, dS = np.zeros_like(S), np.zeros(2, dtype), np.zeros_like(S)
    loss = gpu.softmax_crossentropy_forward(P, row_loss, S, y)
    gpu.softmax_crossentropy_backward(dS, P, y)
    ref_P, ref_rows, ref_dS = np.empty_like(S), np.empty(2, dtype), np.empty_like(S)
    ref_loss = cpu.softmax_crossentropy_forward(ref_P, ref_rows, S, y)
    cpu.softmax_crossentropy_backward(ref_dS, ref_P, y)
    np.testing.assert_array_equal(P == 0, ref_P == 0)
    close(P, ref_P, dtype)
    close(dS, ref_dS, dtype, scale=0.5)
    assert loss == pytest.approx(ref_loss, rel=RTOL[dtype])

@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_updates_match_the_cpu_backend(dtype):
    rng = np.random.default_rng(4)
    n = 300  # three blocks of 128
    for args in [(0.1, 0.0, 0.0, False), (0.05, 0.9, 0.01, False), (0.05, 0.9, 0.01, True)]:
        p, v, g = random(rng, n, dtype), random(rng, n, dtype), random(rng, n, dtype)
        p_cpu, v_cpu = p.copy(), v.copy()
        gpu.sgd_update(p, v, g, *args)
        cpu.sgd_update(p_cpu, v_cpu, g, *args)
        close(p, p_cpu, dtype)
        close(v, v_cpu, dtype)
    for decoupled in (False, True):
        p, m, v, g = random(rng, n, dtype), np.zeros(n, dtype), np.zeros(n, dtype), random(rng, n, dtype)
        p_cpu, m_cpu, v_cpu = p.copy(), m.copy(), v.copy()
        for step in (1, 2):
            gpu.adam_update(p, m, v, g, 0.01, 0.9, 0.999, 1e-8, 0.01, decoupled, step)
            cpu.adam_update(p_cpu, m_cpu, v_cpu, g, 0.01, 0.9, 0.999, 1e-8, 0.01, decoupled, step)
        close(p, p_cpu, dtype)
        close(m, m_cpu, dtype)
        close(v, v_cpu, dtype)


def test_a_two_layer_net_gradients_match_the_reference_on_device_arrays():
    """The kernels composed by hand on device-resident arrays: the batch's gradients equal
    the mean of the reference path's single-example gradients."""
    rng = np.random.default_rng(5)
    B, D, H, C = 35, 9, 18, 4
    X, y = rng.normal(size=(B, D)), rng.integers(0, C, B)
    W1, b1 = rng.normal(size=(H, D)) * 0.5, rng.normal(size=H) * 0.1
    W2, b2 = rng.normal(size=(C, H)) * 0.5, rng.normal(size=C) * 0.1
    d = {name: cuda.to_device(a) for name, a in dict(X=X, y=y, W1=W1, b1=b1, W2=W2, b2=b2).items()}
    A, Hh = cuda.device_array((B, H)), cuda.device_array((B, H))
    S, P, rows, dS = (cuda.device_array((B, C)), cuda.device_array((B, C)), cuda.device_array(B),
                      cuda.device_array((B, C)))
    fused_affine_activation_forward(A, Hh, d["X"], d["W1"], d["b1"], ACTIVATION_NAMES.index("tanh"), 0.0)
    gpu.affine_forward(S, Hh, d["W2"], d["b2"])
    loss = gpu.softmax_crossentropy_forward(P, rows, S, d["y"])
    gpu.softmax_crossentropy_backward(dS, P, d["y"])
    dW2, db2, dH = cuda.device_array((C, H)), cuda.device_array(C), cuda.device_array((B, H))
    gpu.affine_backward(dH, dW2, db2, dS, Hh, d["W2"])
    dA = cuda.device_array((B, H))
    gpu.tanh_backward(dA, dH, Hh, 0.0)
    dW1, db1 = cuda.device_array((H, D)), cuda.device_array(H)
    gpu.affine_backward(None, dW1, db1, dA, d["X"], d["W1"])
    ref_loss, ref = reference.mean_loss_and_grads([(W1, b1), (W2, b2)], "tanh", X, y)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for got, want in zip((dW1, db1, dW2, db2), (ref[0][0], ref[0][1], ref[1][0], ref[1][1])):
        np.testing.assert_allclose(got.copy_to_host(), want, rtol=1e-10, atol=1e-13)


def test_trainer_steps_on_the_cuda_backend_match_the_numpy_backend():
    """Trainer.step on cuda: the batch goes up, the update happens on the device, and
    synchronize() brings the weights back."""
    from numbamlp import MLP
    from numbamlp.trainer import Trainer

    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)
    weights = {}
    for backend in ("cuda", "numpy"):
        trainer = Trainer({"backend": backend, "dtype": "float64", "batch_size": 20,
                           "model": {"layers": [5, 17, 3], "activation": "silu"},
                           "optimizer": {"name": "adam", "lr": 0.01}})
        trainer.set_model(MLP([5, 17, 3], activation="silu", dtype="float64", seed=1))
        for start in (0, 20, 0):
            trainer.step(X[start:start + 20], y[start:start + 20])
        trainer.synchronize()  # cuda: the weights live on the device until asked for
        weights[backend] = trainer.model.flat_params
    np.testing.assert_allclose(weights["cuda"], weights["numpy"], rtol=1e-10, atol=1e-13)


def test_device_resident_fit_validates_checkpoints_and_resumes_as_the_numpy_backend():
    """fit on cuda keeps data, weights, optimizer state and workspaces on the device,
    shuffles by index there, and ends with the numpy backend's weights; with the gradient
    check (the device's gradients come down), weights, a short last batch and a checkpoint
    round trip in the middle (the restored state goes up)."""
    from numbamlp import MLP
    from numbamlp.trainer import Trainer

    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(15, 6)), rng.integers(0, 3, 15)  # batches of 10 and 5
    w = rng.uniform(0.5, 2.0, 15)
    results = {}
    for backend in ("cuda", "numpy"):
        config = {"backend": backend, "dtype": "float64", "batch_size": 10, "epochs": 1, "validate_gradients": True,
                  "model": {"layers": [6, 9, 7, 3], "activation": "gelu"}, "optimizer": {"name": "adamw", "lr": 0.01}}
        trainer = Trainer(config)
        trainer.set_model(MLP([6, 9, 7, 3], activation="gelu", dtype="float64", seed=2))
        trainer.fit(X, y, sample_weight=w)
        assert trainer.validation_error < 1e-9
        arrays, meta = trainer.state()
        resumed = Trainer({**config, "epochs": 2})
        resumed.set_model(MLP([6, 9, 7, 3], activation="gelu", dtype="float64", seed=9))
        resumed.restore({k: v.copy() for k, v in arrays.items()}, meta, trainer.classes_)
        resumed.fit(X, y, sample_weight=w)
        results[backend] = (trainer.history[-1]["loss"], resumed.model.flat_params.copy())
    assert results["cuda"][0] == pytest.approx(results["numpy"][0], rel=1e-10)
    np.testing.assert_allclose(results["cuda"][1], results["numpy"][1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_fused_backward_epilogue_equals_the_two_pass_backward(activation):
    rng = np.random.default_rng(8)
    B, n_in, n_out = 37, 19, 21
    X, W, dout = rng.normal(size=(B, n_in)), rng.normal(size=(n_out, n_in)), rng.normal(size=(B, n_out))
    A = rng.normal(size=(B, n_in)) * 2
    spec = ACTIVATIONS[activation]
    Hout = np.empty_like(A)
    getattr(cpu, f"{activation}_forward")(Hout, A, spec.alpha)
    cache = A if spec.backward_uses == "input" else Hout
    dA, dW, db = np.zeros((B, n_in)), np.zeros((n_out, n_in)), np.zeros(n_out)
    fused_affine_activation_backward(dA, dW, db, dout, X, W, cache, ACTIVATION_NAMES.index(activation), spec.alpha)
    ref_dH, ref_dW, ref_db, ref_dA = np.empty((B, n_in)), np.empty_like(dW), np.empty_like(db), np.empty((B, n_in))
    cpu.affine_backward(ref_dH, ref_dW, ref_db, dout, X, W)
    getattr(cpu, f"{activation}_backward")(ref_dA, ref_dH, cache, spec.alpha)
    close(dA, ref_dA, np.float64)
    close(dW, ref_dW, np.float64)
    close(db, ref_db, np.float64)


def test_a_cpu_trained_model_predicts_on_the_device():
    from numbamlp import MLP

    rng = np.random.default_rng(9)
    model = MLP([6, 11, 4], activation="elu", dtype="float64", seed=3)
    X = rng.normal(size=(23, 6))
    np.testing.assert_allclose(model.scores(X, backend="cuda"), model.scores(X, backend="cpu"), rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(model.predict(X, backend="cuda"), model.predict(X, backend="cpu"))


def test_estimator_and_command_line_run_on_cuda(tmp_path):
    import json
    import subprocess
    import sys

    from numbamlp import MLPClassifier, load_model

    rng = np.random.default_rng(10)
    X, y = rng.normal(size=(48, 4)), rng.integers(0, 3, 48)
    X[np.arange(48), y] += 2.0  # learnable
    common = dict(hidden_layer_sizes=(8,), max_iter=3, batch_size=16, random_state=0, dtype="float64")
    on_gpu = MLPClassifier(backend="cuda", **common).fit(X, y)
    on_cpu = MLPClassifier(backend="numpy", **common).fit(X, y)
    np.testing.assert_allclose(on_gpu.predict_proba(X), on_cpu.predict_proba(X), rtol=1e-9, atol=1e-12)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    run = subprocess.run([sys.executable, "-m", "numbamlp.cli.main", "train", "--backend", "cuda", "--data",
                          str(tmp_path / "d.npz"), "--epochs", "2", "--hidden", "8", "--batch-size", "16",
                          "--json", "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["backend"] == "cuda" and summary["epochs_run"] == 2
    model = load_model(tmp_path / "run" / "model.safetensors")  # trained on the device, loads anywhere
    assert model.predict(X, backend="cpu").shape == (48,)
