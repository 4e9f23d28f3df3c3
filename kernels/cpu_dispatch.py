"""The cpu backend's step of one model, called past Numba's dispatcher (numbamlp.plan uses
AloneStep for a plan of one model on the cpu backend, and PlainStep for Trainer.step).

Nothing here is compiled by Numba: it picks and calls the compiled step of
kernels/cpu_backend.py (stack_function), the same compiled code, the same bits.  (A cached
Numba function is not recompiled when a function it calls from another file changes, so
compiled code stays in cpu_backend.py; this is the Python around it.)

Symbols: B batch size, D input features, C classes.
"""

from __future__ import annotations

import math

import numpy as np

from numbamlp.kernels import CROSS_ENTROPY, STEP_GRADIENTS
from numbamlp.kernels.cpu_backend import LAUNCH_GUARD, alone_specialisation, batch_problem, stack_function
from numbamlp.kernels.native import entry_point, type_fingerprint


# ---------------------------------------------------------------- a model alone, past the dispatcher
# Numba's dispatcher types the plan's named tuples element by element in Python at every
# call, ~2-3 µs of a ~20 µs step at bench/train.py's small config (bench/README.md, "M = 1").
# A plan's tuples never change, so a plan of one model calls the compiled entry point it
# resolved on its first step with those argument types.


class AloneStep:
    """The step of a plan of one model (numbamlp.plan picks it for the cpu backend's M = 1):
    stack_step's M = 1 case, past Numba's dispatcher after the first call.  Entry points are
    kept per specialisation and argument types (Numba's type fingerprint, and alignment);
    anything new goes through the dispatcher, which types and checks everything."""

    def __init__(self, buffers, layout, settings):
        self.buffers, self.layout, self.settings = buffers, layout, settings
        self._entries: dict[tuple, object] = {}  # (specialisation, argument types) → compiled entry point

    def __call__(self, buffers, layout, settings, X, y, weights, act_code, backward_uses_output, alpha, adam, flag,
                 mode, loss=CROSS_ENTROPY):
        """stack_step, for this plan's own buffers, layout and settings (which these are)."""
        specialisation = alone_specialisation(buffers, settings, act_code, adam, mode == STEP_GRADIENTS, loss)
        self.run(specialisation, (buffers, layout, settings, X, y, weights, backward_uses_output, alpha, flag))
        if not settings.active[0]:
            buffers.losses[0] = np.nan

    @staticmethod
    def types_of(arguments) -> tuple | None:
        """What an entry point is kept by besides the specialisation: the types of the
        arguments after the plan's tuples (Numba's fingerprint) and the arrays' alignment;
        None for arguments that are not arrays."""
        X, y, weights = arguments[3:6]
        try:
            return (type_fingerprint(arguments[3:]), X.flags.aligned, y.flags.aligned,
                    weights is None or weights.flags.aligned)
        except (AttributeError, ValueError):
            return None

    def run(self, specialisation, arguments, types: tuple | None = None) -> None:
        """stack_function(*specialisation)(*arguments) on this plan's tuples; ``types``:
        types_of(arguments), when the caller knows it (PlainStep's batches all have one)."""
        types = types or self.types_of(arguments)
        if types is None:  # not arrays: the dispatcher says what is wrong
            stack_function(*specialisation)(*arguments)
            return
        key = (specialisation, types)
        entry = self._entries.get(key)
        if entry is not None:
            entry(*arguments)
            return
        compiled = stack_function(*specialisation)
        compiled(*arguments)
        self._entries[key] = entry_point(compiled, arguments) or compiled


# ---------------------------------------------------------------- Trainer.step on a plain batch
# Trainer.step checks and converts what a user passes (numbamlp.arrays.as_features and
# as_class_indices: ~2.8 µs of numpy at small), then goes through the plan and stack_step
# (~2 µs more of Python).  Most calls pass a batch the step takes as it is; PlainStep
# recognises one (its types by Numba's fingerprint, its values in one compiled pass) and
# steps on it through the compiled entry point; anything else takes the checked path.


class PlainStep:
    """``plain_step(X, y, lr)``: one training step of a plan of one classifier (numbamlp.plan)
    at learning rate lr on X (B, D), y (B,), returning the loss, when they are exactly what
    the compiled step takes: X C-contiguous, aligned, of the plan's dtype, finite, with the
    plan's D features and 1 ≤ B ≤ capacity rows; y C-contiguous int64 class indices in range.
    Anything else: nothing is done and it returns None (Trainer.step's checks then convert
    the arrays or say what is wrong).  The same compiled step as stack_step, the same bits."""

    def __init__(self, alone: AloneStep, options, capacity: int):
        self.alone = alone  # the plan's step
        self.buffers, self.layout, self.settings = alone.buffers, alone.layout, alone.settings
        self.act_code, self.backward_uses_output, self.alpha, self.adam, self.flag = options
        self.capacity = capacity
        self.n_features, self.n_classes = int(self.layout.layers[0]), int(self.layout.layers[-1])
        self.types = type_fingerprint((np.zeros((1, 1), self.buffers.params.dtype), np.zeros(1, np.int64)))
        self._check = None
        self._step_types = None  # AloneStep.types_of the step's arguments: the same for every plain batch

    def __call__(self, X, y, lr: float) -> float | None:
        try:
            if type_fingerprint((X, y)) != self.types:
                return None
        except ValueError:  # not arrays
            return None
        rows = X.shape[0]
        if not (0 < rows <= self.capacity and X.shape[1] == self.n_features and y.shape[0] == rows
                and X.flags.aligned and y.flags.aligned):
            return None
        check = self._check
        if check is None:
            batch_problem(X, y, self.n_classes)  # (compiled or loaded on first use)
            check = self._check = entry_point(batch_problem, (X, y, self.n_classes))
        if check(X, y, self.n_classes):
            return None
        settings, buffers = self.settings, self.buffers
        settings.lr[0] = lr
        specialisation = alone_specialisation(buffers, settings, self.act_code, self.adam, False, CROSS_ENTROPY)
        arguments = (buffers, self.layout, settings, X[None], y[None], None, self.backward_uses_output, self.alpha,
                     self.flag)
        if self._step_types is None:
            self._step_types = self.alone.types_of(arguments)
        with LAUNCH_GUARD:
            self.alone.run(specialisation, arguments, self._step_types)
        return float(buffers.losses[0]) if settings.active[0] else math.nan
