"""numbamlp: a Numba-JIT, batched training engine for multi-layer perceptrons.

Importing numbamlp is cheap: Numba and scikit-learn load only when a kernel or a
built-in data set is first used.
"""

from numbamlp.kernels import ACTIVATION_NAMES
from numbamlp.model import MLP, loss_and_grads

__version__ = "0.1.0"

__all__ = ["ACTIVATION_NAMES", "MLP", "loss_and_grads", "__version__"]
