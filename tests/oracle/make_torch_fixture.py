"""Write tests/oracle/torch_grads.npz: PyTorch autograd's losses and gradients for every
activation, the answers tests/test_oracles.py checks numbamlp against on every run.

PyTorch stays out of the test install; its answers are pinned here instead.  Run it with
an interpreter that has torch and numpy (numbamlp itself is not needed), from the
repository root:

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 numpy     # the bench extra's pin, CPU build
    /tmp/torchenv/bin/python tests/oracle/make_torch_fixture.py

and commit the rewritten fixture.  Everything is float64 and seeded, so a rerun with the
same torch gives the same arrays (the zip's timestamps differ).

What it holds (np.savez_compressed, no pickle: load with allow_pickle=False):
  X (B, D), y (B,) int64, sample_weight (B,), and W{l} (out, in), b{l} (out,) per layer:
      one 5-6-4-3 net and one batch of 8 rows, shared by every activation.  Hidden unit 2
      of the first layer and unit 1 of the second have zero weights and bias: their
      pre-activation is exactly 0 on every row, so φ'(0) reaches the gradients.
  {activation}.{mean|weighted}.loss      ()      mean cross-entropy (weighted: Σ wᵢLᵢ / Σ wᵢ)
  {activation}.{mean|weighted}.dW{l}     (out, in)
  {activation}.{mean|weighted}.db{l}     (out,)
  {activation}.{mean|weighted}.dX        (B, D)  gradient of the loss with respect to X
  Y (B, 3) float regression targets (their own generator: the arrays above are unchanged),
  {activation}.squared_error.{mean|weighted}.{loss|dW{l}|db{l}|dX}: the same for the squared
      error ½ Σ_k (s − y)², averaged over rows (weighted: Σ wᵢLᵢ / Σ wᵢ), scikit-learn's
      MLPRegressor loss
  metadata                               ()      str, JSON: torch and numpy versions, the
                                                 command, the activations and their torch calls
for the seven activations: relu, leaky_relu (slope 0.1), elu (α 1), sigmoid, gelu (exact,
erf), silu, tanh.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

F = torch.nn.functional
OUT = Path(__file__).resolve().with_name("torch_grads.npz")
LAYERS = [5, 6, 4, 3]
BATCH = 8
# numbamlp's seven activations with the parameters of its activation table
ACTIVATIONS = {
    "relu": (F.relu, "F.relu(a)"),
    "leaky_relu": (lambda a: F.leaky_relu(a, negative_slope=0.1), "F.leaky_relu(a, negative_slope=0.1)"),
    "elu": (lambda a: F.elu(a, alpha=1.0), "F.elu(a, alpha=1.0)"),
    "sigmoid": (torch.sigmoid, "torch.sigmoid(a)"),
    "gelu": (lambda a: F.gelu(a, approximate="none"), "F.gelu(a, approximate='none')"),
    "silu": (F.silu, "F.silu(a)"),
    "tanh": (torch.tanh, "torch.tanh(a)"),
}


def problem() -> dict:
    """The shared net and batch (float64), pre-activations spread over about ±4."""
    rng = np.random.default_rng(20240611)
    arrays = {"X": rng.normal(size=(BATCH, LAYERS[0])), "y": rng.integers(0, LAYERS[-1], size=BATCH),
              "sample_weight": rng.uniform(0.5, 2.0, size=BATCH)}
    for layer, (n_in, n_out) in enumerate(zip(LAYERS[:-1], LAYERS[1:])):
        arrays[f"W{layer}"] = rng.normal(scale=1.2 / np.sqrt(n_in), size=(n_out, n_in)) * 1.5
        arrays[f"b{layer}"] = rng.normal(scale=0.3, size=n_out)
    for layer, unit in ((0, 2), (1, 1)):  # pre-activation exactly 0 on every row
        arrays[f"W{layer}"][unit] = 0.0
        arrays[f"b{layer}"][unit] = 0.0
    arrays["y"] = arrays["y"].astype(np.int64)
    arrays["Y"] = np.random.default_rng(20240612).normal(size=(BATCH, LAYERS[-1]))
    return arrays


def gradients(arrays: dict, activation, weighted: bool, loss_name: str = "cross_entropy") -> dict:
    """Loss and gradients by autograd: A = H Wᵀ + b per layer, φ between layers."""
    X = torch.tensor(arrays["X"], requires_grad=True)
    params = [(torch.tensor(arrays[f"W{l}"], requires_grad=True), torch.tensor(arrays[f"b{l}"], requires_grad=True))
              for l in range(len(LAYERS) - 1)]
    h = X
    for layer, (W, b) in enumerate(params):
        h = h @ W.T + b
        if layer < len(params) - 1:
            h = activation(h)
    if loss_name == "squared_error":
        rows = 0.5 * ((h - torch.tensor(arrays["Y"])) ** 2).sum(dim=1)
    else:
        rows = F.cross_entropy(h, torch.tensor(arrays["y"]), reduction="none")
    if weighted:
        w = torch.tensor(arrays["sample_weight"])
        loss = (w * rows).sum() / w.sum()
    elif loss_name == "squared_error":
        loss = rows.mean()
    else:
        loss = F.cross_entropy(h, torch.tensor(arrays["y"]))  # the mean over the batch
    loss.backward()
    out = {"loss": np.array(loss.item()), "dX": X.grad.numpy().copy()}
    for layer, (W, b) in enumerate(params):
        out[f"dW{layer}"], out[f"db{layer}"] = W.grad.numpy().copy(), b.grad.numpy().copy()
    return out


def main() -> None:
    torch.use_deterministic_algorithms(True)
    arrays = problem()
    for name, (function, _) in ACTIVATIONS.items():
        for case in ("mean", "weighted"):
            for key, value in gradients(arrays, function, case == "weighted").items():
                arrays[f"{name}.{case}.{key}"] = value
            for key, value in gradients(arrays, function, case == "weighted", "squared_error").items():
                arrays[f"{name}.squared_error.{case}.{key}"] = value
    script = Path(__file__).resolve()
    command = " ".join([sys.executable, str(script.relative_to(script.parents[2])), *sys.argv[1:]])
    metadata = {
        "what": "PyTorch autograd losses and gradients for numbamlp's activations (float64)",
        "command": command,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "layers": LAYERS,
        "batch": BATCH,
        "activations": {name: call for name, (_, call) in ACTIVATIONS.items()},
        "loss": "F.cross_entropy(S, y) (mean); weighted: sum(w * F.cross_entropy(S, y, reduction='none')) / sum(w)",
        "squared_error": "0.5 * ((S - Y) ** 2).sum(dim=1), mean over rows; weighted: sum(w * rows) / sum(w)",
    }
    arrays["metadata"] = np.array(json.dumps(metadata, sort_keys=True))
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes) with torch {torch.__version__}")


if __name__ == "__main__":
    main()
