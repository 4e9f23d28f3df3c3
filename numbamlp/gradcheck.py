"""Gradient checks: batched backends against the reference path and central differences.

The error measure everywhere is the normwise relative error
    max |x − ref| / max |ref|
over one array, the largest over all of a model's (dW, db) arrays.  It is scale-aware,
so tiny gradient entries do not inflate it the way elementwise ratios do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from numbamlp import reference
from numbamlp.kernels import ACTIVATION_NAMES
from numbamlp.model import MLP, loss_and_grads

# Largest acceptable error of a batched backend against the float64 reference, per dtype.
REFERENCE_TOLERANCE = {"float64": 1e-10, "float32": 1e-4}
# Against central differences (step 1e-5, truncation error ~1e-10 relative).
NUMERICAL_TOLERANCE = {"float64": 1e-6, "float32": 1e-4}


def relative_error(x, ref) -> float:
    """max |x − ref| / max |ref| (ref all zero: the absolute error)."""
    x, ref = np.asarray(x, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    scale = np.abs(ref).max(initial=0.0)
    diff = np.abs(x - ref).max(initial=0.0)
    return float(diff / scale) if scale > 0 else float(diff)


def grads_error(grads, ref_grads) -> float:
    """Largest relative_error over the per-layer (dW, db) pairs of two gradient lists."""
    return max(
        relative_error(g, r)
        for pair, ref_pair in zip(grads, ref_grads)
        for g, r in zip(pair, ref_pair)
    )


def numerical_grads(params, activation: str, X, y, step: float = 1e-5, loss: str = "cross_entropy"):
    """Central differences (L(θ+h) − L(θ−h)) / 2h of the reference mean loss, float64
    (cross-entropy over class indices y (B,), or squared error against y (B, K))."""
    theta = [(np.array(W, dtype=np.float64), np.array(b, dtype=np.float64)) for W, b in params]
    grads = []
    for W, b in theta:
        layer_grads = []
        for array in (W, b):
            g = np.zeros_like(array)
            for idx in np.ndindex(array.shape):
                saved = array[idx]
                array[idx] = saved + step
                up = reference.mean_loss(theta, activation, X, y, loss=loss)
                array[idx] = saved - step
                down = reference.mean_loss(theta, activation, X, y, loss=loss)
                array[idx] = saved
                g[idx] = (up - down) / (2 * step)
            layer_grads.append(g)
        grads.append(tuple(layer_grads))
    return grads


@dataclass
class CheckRow:
    activation: str
    layers: list[int]
    backend: str
    dtype: str
    vs_reference: float
    vs_numerical: float

    @property
    def ok(self) -> bool:
        return (
            self.vs_reference <= REFERENCE_TOLERANCE[self.dtype]
            and self.vs_numerical <= NUMERICAL_TOLERANCE[self.dtype]
        )


def gradcheck(
    backends=("cpu", "numpy"),
    dtypes=("float64", "float32"),
    activations=ACTIVATION_NAMES,
    nets=((6, 5, 3), (6, 5, 4, 3)),
    batch: int = 8,
    seed: int = 0,
) -> list[CheckRow]:
    """Check every (activation, net, backend, dtype) on a random batch; one row each.

    The reference and numerical gradients are computed once per (activation, net) in
    float64 from the model's float64 weights; float32 backends run the same weights rounded.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for activation in activations:
        for layers in nets:
            model64 = MLP(layers, activation=activation, dtype="float64", seed=seed)
            # biases away from zero so the bias path is exercised
            for _, b in model64.params:
                b[...] = rng.normal(0.0, 0.1, size=b.shape)
            X = rng.normal(size=(batch, layers[0]))
            y = rng.integers(0, layers[-1], size=batch)
            _, ref_grads = loss_and_grads(model64, X, y, backend="reference")
            num_grads = numerical_grads(model64.params, activation, X, y)
            for dtype in dtypes:
                model = MLP.from_params(model64.params, activation=activation, dtype=dtype)
                for backend in backends:
                    _, grads = loss_and_grads(model, X, y, backend=backend)
                    rows.append(
                        CheckRow(
                            activation, list(layers), backend, dtype,
                            grads_error(grads, ref_grads), grads_error(grads, num_grads),
                        )
                    )
    return rows
