"""numbamlp: a Numba-JIT, batched training engine for multi-layer perceptrons.

Importing numbamlp is cheap: Numba, pydantic and scikit-learn load only when a kernel,
the trainer or the estimator is first used.
"""

from numbamlp.kernels import ACTIVATION_NAMES
from numbamlp.model import MLP, loss_and_grads

# name → module, imported on first attribute access
_LAZY = {
    "TrainConfig": "numbamlp.config",
    "Trainer": "numbamlp.trainer",
    "StackTrainer": "numbamlp.stack",
    "Ensemble": "numbamlp.ensemble",
    "load_model": "numbamlp.layout",
    "save_model": "numbamlp.io",
    "MLPClassifier": "numbamlp.estimator",
    "MLPRegressor": "numbamlp.estimator",
    "sweep": "numbamlp.sweeps",
    "Client": "numbamlp.client",
    "export_onnx": "numbamlp.export",
}

__all__ = ["ACTIVATION_NAMES", "MLP", "loss_and_grads", "__version__", *_LAZY]


def __getattr__(name):
    if name == "__version__":  # pyproject's version, from the installed metadata (numbamlp.diagnostics)
        from numbamlp.diagnostics import installed_version

        return installed_version("numbamlp")
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'numbamlp' has no attribute {name!r}")
