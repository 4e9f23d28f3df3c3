"""The step plan: everything one training step of a stack of M ≥ 1 same-shaped models needs,
built once.

Symbols: M members, P parameters per member, L affine layers, B batch rows (≤ capacity),
D features, C classes.

A plan is made once per (layers, activation, optimizer, M, batch capacity, dtype, backend).
It owns the flat buffers — parameters, gradients and optimizer state, each (M, P), and one
workspace per member — and the per-member settings (learning rate, momentum, weight decay,
Adam's betas and eps, step count, active flag).  A backend's ``stack_step`` receives it as
three named tuples (StepBuffers, StepLayout, MemberSettings) and a few options, never as
dozens of positional arguments.  One model is the M = 1 case of the same step.

The contract every test holds the cpu backend to: member m of a stack computes exactly the
bits it computes alone, in any position, in a stack of any size, on any thread count.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from numbamlp.kernels import ACTIVATION_NAMES, STEP_GRADIENTS, STEP_TRAIN, activation_spec, get_backend, launch_guard
from numbamlp.model import layer_offsets, n_parameters, workspace_layout


class StepLayout(NamedTuple):
    """Where one member's arrays sit in its rows of the buffers (the same for every member)."""

    layers: np.ndarray  # (L+1,) int64: [D, H1, ..., C]
    param_offsets: np.ndarray  # (L,) int64: where layer l's W (out, in) starts in a row; b (out,) follows
    hidden_offsets: np.ndarray  # (L−1, 4) int64: a workspace row's A, Hout, dH, dA blocks (model.workspace_layout)
    output_offsets: np.ndarray  # (4,) int64: a workspace row's S, P, dS and row_loss


class StepBuffers(NamedTuple):
    """The stack's arrays; row m is member m's."""

    params: np.ndarray  # (M, P): parameters in model.layer_views' layout
    grads: np.ndarray  # (M, P): the last step's gradients (=, never accumulated)
    state_a: np.ndarray  # (M, P): the velocity (SGD family) or Adam's first moment
    state_b: np.ndarray  # (M, P): Adam's second moment (the SGD family leaves it unused)
    workspace: np.ndarray  # (M, W): activations and their gradients (model.workspace_layout)
    scalars: np.ndarray  # (M, 2): scratch for BLAS's alpha and beta, one pair per member
    losses: np.ndarray  # (M,) float64: each member's loss in the last step


class MemberSettings(NamedTuple):
    """Per-member hyperparameters, (M,) each, read by every step."""

    lr: np.ndarray  # float64: this epoch's learning rate (the schedule sets it)
    momentum: np.ndarray  # float64: 0 = plain SGD (unused by Adam)
    weight_decay: np.ndarray  # float64
    beta1: np.ndarray  # float64 (Adam)
    beta2: np.ndarray  # float64 (Adam)
    eps: np.ndarray  # float64 (Adam)
    steps: np.ndarray  # int64: optimizer steps taken; a step with a finite loss adds one
    active: np.ndarray  # bool: an inactive member is left exactly as it is


__all__ = ["MemberSettings", "STEP_GRADIENTS", "STEP_TRAIN", "StepBuffers", "StepLayout", "StepPlan"]


class StepPlan:
    """The buffers, layout and settings of a stack of ``members`` models, and the backend's
    step over them.

    ``step(X, y, weights)`` trains every active member on its batch: X (M, B, D) or
    (1, B, D) for one batch shared by all members, y (M, B) or (1, B) int64 class indices,
    weights None or (M, B) / (1, B).  It returns the losses (M,) (a view, overwritten by the
    next step); a member whose loss is not finite is not updated, nor is an inactive one.
    """

    def __init__(self, layers: Sequence[int], activation: str, optimizer: str, members: int,
                 capacity: int, dtype, backend: str):
        self.layers = [int(n) for n in layers]
        self.members, self.capacity, self.dtype = int(members), int(capacity), np.dtype(dtype)
        self.backend = backend
        self.kernels = get_backend(backend)
        self._stack_step = self.kernels.stack_step  # chosen once, not at every call
        spec = activation_spec(activation)
        self.activation = spec.name
        self.adam = optimizer in ("adam", "adamw")
        # nesterov's look-ahead for the SGD family, decoupled weight decay for Adam
        self.flag = optimizer in ("nesterov", "adamw")
        self.options = (ACTIVATION_NAMES.index(spec.name), spec.backward_uses == "output", spec.alpha,
                        self.adam, self.flag)
        P, M = n_parameters(self.layers), self.members
        size, hidden_offsets, output_offsets = workspace_layout(self.layers, self.capacity)
        self.layout = StepLayout(np.asarray(self.layers, dtype=np.int64), layer_offsets(self.layers),
                                 hidden_offsets, output_offsets)
        state_a = np.zeros((M, P), self.dtype)
        self.buffers = StepBuffers(
            params=np.zeros((M, P), self.dtype), grads=np.zeros((M, P), self.dtype), state_a=state_a,
            state_b=np.zeros((M, P), self.dtype) if self.adam else state_a,
            workspace=np.zeros((M, size), self.dtype), scalars=np.zeros((M, 2), self.dtype),
            losses=np.zeros(M, np.float64),
        )
        self.settings = MemberSettings(*(np.zeros(M, np.float64) for _ in range(6)),
                                       steps=np.zeros(M, np.int64), active=np.ones(M, np.bool_))

    @property
    def n_parameters(self) -> int:
        return self.buffers.params.shape[1]

    def set_member(self, m: int, optimizer_config) -> None:
        """Member m's constant optimizer settings from an OptimizerConfig (the learning rate
        too; the trainer sets it again each epoch from the schedule)."""
        s = self.settings
        s.lr[m] = optimizer_config.lr
        s.momentum[m] = optimizer_config.momentum or 0.0
        s.weight_decay[m] = optimizer_config.weight_decay
        s.beta1[m] = optimizer_config.beta1 or 0.0
        s.beta2[m] = optimizer_config.beta2 or 0.0
        s.eps[m] = optimizer_config.eps or 0.0

    def optimizer_state(self, m: int) -> dict[str, np.ndarray]:
        """Member m's optimizer buffers by name (live views), as checkpoints store them."""
        if self.adam:
            return {"m": self.buffers.state_a[m], "v": self.buffers.state_b[m]}
        return {"velocity": self.buffers.state_a[m]}

    def step(self, X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None,
             mode: int = STEP_TRAIN) -> np.ndarray:
        """One step of every active member; see the class docstring.  Arrays must be
        validated and C-contiguous: X of the plan's dtype, y int64, weights of the dtype."""
        with launch_guard(self.kernels):
            self._stack_step(self.buffers, self.layout, self.settings, X, y, weights, *self.options, mode)
        return self.buffers.losses
