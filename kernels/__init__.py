"""Compute backends for numbamlp, all with one set of kernel names.

Symbols: B batch size, D input features, H hidden width, C classes, K regression outputs.

Backends (``get_backend``):
  - ``"numpy"``: plain batched numpy, the baseline and the fallback without Numba.
  - ``"cpu"``:   Numba-compiled kernels (``numbamlp.kernels.cpu_backend``).
  - ``"cuda"``:  CUDA kernels through numba.cuda (``numbamlp.kernels.cuda_backend``); see
                 CUDA_STATUS for what is tested.
  - ``"auto"``:  ``"cpu"`` when Numba imports, else ``"numpy"``.

Every backend module defines, with outputs first, then inputs, then options:

  affine_forward(out, X, W, b)                  out (B, out)  = X (B, in) @ W (out, in).T + b (out,)
  affine_backward(dX, dW, db, dout, X, W)       dW = doutᵀ X, db = Σ_rows dout, dX = dout W (dX may be None)
  <act>_forward(Hout, A, alpha)                 Hout = φ(A), elementwise, Hout may alias A
  <act>_backward(dA, dH, cache, alpha)          dA = dH ⊙ φ'(·); ``cache`` is A or Hout, see ACTIVATIONS
  softmax_crossentropy_forward(P, row_loss, S, y, weights=None) -> (weighted) mean loss
  softmax_crossentropy_backward(dS, P, y, weights=None)  dS = (P − onehot(y)) / B  (or wᵢ/Σw)
  mse_forward(row_loss, S, Y, weights=None) -> (weighted) mean loss;  row_loss (B,) = ½ Σ_k (S − Y)²
  mse_backward(dS, S, Y, weights=None)      dS (B, K) = (S − Y) / B  (or wᵢ (S − Y) / Σw)
  sgd_update(param, velocity, grad, lr, momentum, weight_decay, nesterov)   PyTorch's SGD
  adam_update(param, m, v, grad, lr, beta1, beta2, eps, weight_decay, decoupled, step)

Gradient outputs are always overwritten (``=``), never accumulated.

Called directly with arrays they cannot take (shapes that do not fit, labels outside
[0, C), mixed float dtypes), the numpy kernels raise numpy's errors and the cpu kernels a
``KernelArgumentError`` (a ValueError) naming the argument: their compiled code indexes
without bounds checks, so the public names check first (compiled code, and the fused
training step, call the kernels themselves: ``cpu_backend._relu_forward``, ...).  The cpu
kernels want C-contiguous float32 or float64 arrays.

The squared-error loss is scikit-learn's MLPRegressor's: ½·(mean over rows of Σ_k (s − y)²),
whose gradient is (s − y)/B.  (scikit-learn's reported ``loss_`` also divides by K, the
outputs, but trains with this gradient; the two agree for one output.)  Y (B, K) float, of
the scores' dtype.

This module imports neither Numba nor anything above it, so listing the
activations (for config validation, CLI choices, docs) costs nothing.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
from dataclasses import dataclass
from types import ModuleType

import numpy as np

# The cpu step's first layer computes Aᵀ = W Xᵀ from a transposed copy of X, Aᵀ = W·(Xᵀ), when
# H·B·D is at most this: scipy's OpenBLAS (0.3.30) then takes its small-matrix kernel for the
# plain product and not for the transposed one (128 × 32 × 64: 3.92 against 6.45 µs, the copy
# 0.57 µs; from 128 × 128 × 64 on, the copy costs more than it saves; the same bits either way:
# bench/README.md, "A transposed copy of X").  A cpu plan's workspace keeps room for the copy.
TRANSPOSED_INPUT_MAX = 1_000_000

__all__ = [
    "CUDA_STATUS",
    "STEP_GRADIENTS",
    "STEP_TRAIN",
    "CROSS_ENTROPY",
    "LOSS_NAMES",
    "SQUARED_ERROR",
    "ACTIVATIONS",
    "ACTIVATION_NAMES",
    "ActivationSpec",
    "BACKEND_NAMES",
    "BackendUnavailable",
    "activation_kernels",
    "activation_spec",
    "get_backend",
    "negligible_exp",
    "usable_cores",
]


@dataclass(frozen=True)
class ActivationSpec:
    """One row of the activation table.

    backward_uses: "input" when the derivative needs the pre-activation A,
                   "output" when it can be computed from φ(A) alone.
    init:          "he" (ReLU family) or "glorot" (saturating activations).
    alpha:         the activation's parameter (negative slope / ELU scale), 0 if none.
    """

    name: str
    backward_uses: str
    init: str
    alpha: float = 0.0
    formula: str = ""


# The one place the seven activations are listed.
ACTIVATIONS: dict[str, ActivationSpec] = {
    spec.name: spec
    for spec in (
        ActivationSpec("relu", "input", "he", 0.0, "max(0, a); derivative 0 at 0"),
        ActivationSpec("leaky_relu", "input", "he", 0.1, "a if a > 0 else 0.1·a"),
        ActivationSpec("elu", "input", "he", 1.0, "a if a > 0 else 1.0·(eᵃ − 1)"),
        ActivationSpec("sigmoid", "output", "glorot", 0.0, "1 / (1 + e⁻ᵃ)"),
        ActivationSpec("gelu", "input", "he", 0.0, "a·Φ(a), exact (erf)"),
        ActivationSpec("silu", "input", "he", 0.0, "a·sigmoid(a)"),
        ActivationSpec("tanh", "output", "glorot", 0.0, "tanh(a)"),
    )
}
ACTIVATION_NAMES: tuple[str, ...] = tuple(ACTIVATIONS)


def activation_spec(name: str) -> ActivationSpec:
    """Return the table row for ``name``; ValueError listing the valid names otherwise."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; valid activations: {', '.join(ACTIVATION_NAMES)}"
        ) from None


# What a backend's stack_step does (its ``mode``; see numbamlp.plan)
STEP_TRAIN = 0  # forward, loss, backward and each member's optimizer update
STEP_GRADIENTS = 1  # forward, loss and backward: the gradients only, weights and state untouched



def usable_cores() -> int:
    """The CPU cores this process may run on: its affinity mask (what taskset and a
    container's cpuset allow; Numba counts its default threads the same way), or
    os.cpu_count() where the OS keeps no mask."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (not on Linux)
        return os.cpu_count() or 1


def negligible_exp(dtype) -> float:
    """Softmax's exponentials e^(s_j − max s) below this are stored as 0 in P of ``dtype``:
    the square root of the dtype's smallest normal number (float32 2⁻⁶³ ≈ 1.1e-19, float64
    2⁻⁵¹¹), so that no probability, and no product of two numbers of at least that size, is
    subnormal.  x86 multiplies subnormal numbers 10-20 × slower (a 10 × 128 × 32 GEMM with a
    tenth of its inputs subnormal: 1.8 against 17 µs), and a confident model's softmax is
    full of them: a stack step of 32 members late in training took 716 against 505 µs
    (bench/README.md, "Subnormal probabilities").  Such a probability is far below float's
    resolution of any weight it would update; the loss, from the exponentials' float64 sum,
    keeps every one.  Every backend, and the reference, applies this; compiled code can
    call it (the cpu backend registers it with Numba)."""
    return math.sqrt(float(np.finfo(dtype).tiny))


# The loss a step ends in (a step's ``loss`` option): its position in LOSS_NAMES.  Like the
# activation, a compile-time constant of the cpu backend's fused step.
LOSS_NAMES: tuple[str, ...] = ("cross_entropy", "squared_error")
CROSS_ENTROPY, SQUARED_ERROR = 0, 1  # class indices y (B,) int64; targets Y (B, K) float

# The one statement of where the CUDA backend stands; help texts and `numbamlp info` use it.
CUDA_STATUS = ("NVIDIA GPU through numba-cuda; device-resident training of one model or a stack "
               "(StackTrainer), tested in Numba's CUDA simulator, not yet run on a real GPU")


class BackendUnavailable(RuntimeError):
    """A backend was asked for but cannot run here (e.g. Numba is not installed)."""


_BACKEND_MODULES = {"cpu": "cpu_backend", "numpy": "numpy_backend"}
BACKEND_NAMES: tuple[str, ...] = tuple(_BACKEND_MODULES)


def get_backend(name: str = "cpu") -> ModuleType:
    """Return the kernel module for ``name`` ("cpu", "numpy" or "auto")."""
    if name == "auto":
        try:
            return get_backend("cpu")
        except BackendUnavailable:
            return get_backend("numpy")
    if name == "cuda":
        return _cuda_backend()
    if name not in _BACKEND_MODULES:
        raise ValueError(f"unknown backend {name!r}; valid backends: {', '.join(BACKEND_NAMES)}")
    if name == "cpu" and os.environ.get("NUMBA_DISABLE_JIT", "0").strip() not in ("", "0"):
        # (Numba's debugging switch runs jitted functions as Python; the cpu backend's
        # overloads, intrinsics and compiled entry points have no Python form)
        raise BackendUnavailable("the 'cpu' backend is compiled by Numba, and NUMBA_DISABLE_JIT turns its compiler "
                                 "off: unset it, or use backend 'numpy'")
    try:
        return importlib.import_module(f"{__name__}.{_BACKEND_MODULES[name]}")
    except ImportError as err:
        if name == "cpu" and getattr(err, "name", "") in ("numba", "llvmlite"):
            raise BackendUnavailable(
                "the 'cpu' backend needs Numba, which is not installed: "
                "`pip install numba` or use backend 'numpy'"
            ) from None
        raise


def _cuda_backend() -> ModuleType:
    """The CUDA kernels, when numba.cuda imports and a GPU (or the simulator) is there."""
    import os

    try:
        from numba import cuda
    except ImportError:
        raise BackendUnavailable(
            "the cuda backend needs numba-cuda: pip install 'numbamlp[cuda]', or use backend 'cpu'"
        ) from None
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" and not cuda.is_available():
        raise BackendUnavailable("the cuda backend found no NVIDIA GPU here; use backend 'cpu'")
    return importlib.import_module(f"{__name__}.cuda_backend")


_NO_GUARD = contextlib.nullcontext()


def launch_guard(backend: ModuleType):
    """The context to hold while calling ``backend``'s kernels from Python: a lock where
    concurrent calls from several threads would crash (the cpu backend on Numba's
    workqueue threading layer, see ``cpu_backend.LAUNCH_GUARD``), a no-op elsewhere."""
    return getattr(backend, "LAUNCH_GUARD", _NO_GUARD)


def activation_kernels(backend: ModuleType, name: str):
    """(forward, backward) kernels of activation ``name`` on ``backend``."""
    spec = activation_spec(name)
    return getattr(backend, f"{spec.name}_forward"), getattr(backend, f"{spec.name}_backward")
