"""The step plan: everything one training step of a stack of M ≥ 1 same-shaped models needs,
built once.

Symbols: M members, P parameters per member, L affine layers, B batch rows (≤ capacity),
D features, C classes (or K regression outputs).

A plan is made once per (layers, activation, optimizer, M, batch capacity, dtype, backend,
loss).  The loss ("cross_entropy" over class indices, or "squared_error" against float
targets, kernels.LOSS_NAMES) is, like the activation, a constant of the compiled step.
It owns the flat buffers — parameters, gradients and optimizer state, each (M, P), and one
workspace per member — and the per-member settings (learning rate, momentum, weight decay,
Adam's betas and eps, step count, active flag).  A backend's ``stack_step`` receives it as
three named tuples (StepBuffers, StepLayout, MemberSettings) and a few options, never as
dozens of positional arguments.  One model is the M = 1 case of the same step.

On cuda the buffers live on the device (``buffers``, device arrays) and ``host`` holds their
host copies: ``pull()`` copies parameters, gradients and optimizer state down (after steps),
``push()`` copies what the host changed up.  Elsewhere ``host`` is ``buffers`` and both are
no-ops.  Layout and settings stay on the host everywhere.

The contract every test holds the cpu backend to: member m of a stack computes exactly the
bits it computes alone, in any position, in a stack of any size, on any thread count.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from numbamlp import reference
from numbamlp.kernels import (ACTIVATION_NAMES, LOSS_NAMES, STEP_GRADIENTS, STEP_TRAIN, activation_spec, get_backend,
                              launch_guard)
from numbamlp.kernels.pool import adapt_threads
from numbamlp.model import layer_offsets, layer_views, n_parameters, workspace_layout
from numbamlp.optim import update_rule


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
    scalars: np.ndarray  # (M, 2): scratch for BLAS's alpha and beta, one pair per member (cuda:
    #                      (M, cuda_backend.MEMBER_FIELDS) float64, the step's members table)
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


__all__ = ["DeviceData", "MemberSettings", "STEP_GRADIENTS", "STEP_TRAIN", "StepBuffers", "StepLayout", "StepPlan"]


class StepPlan:
    """The buffers, layout and settings of a stack of ``members`` models, and the backend's
    step over them.

    ``step(X, y, weights)`` trains every active member on its batch: X (M, B, D) or
    (1, B, D) for one batch shared by all members, y (M, B) or (1, B) int64 class indices
    (loss "cross_entropy") or (M, B, K) / (1, B, K) targets of the plan's dtype
    ("squared_error"), weights None or (M, B) / (1, B).  It returns the losses (M,) (a view, overwritten by the
    next step); a member whose loss is not finite is not updated, nor is an inactive one.
    On cuda the arrays are device arrays (host arrays are copied up for the step: fine for
    ``Trainer.step``, slow for training, which gathers its batches there, see DeviceData).
    """

    def __init__(self, layers: Sequence[int], activation: str, optimizer: str, members: int,
                 capacity: int, dtype, backend: str, loss: str = "cross_entropy", threads: int | None = None):
        self.layers = [int(n) for n in layers]
        self.members, self.capacity, self.dtype = int(members), int(capacity), np.dtype(dtype)
        self.backend = backend
        # the reference backend: gradients from the reference path (reference_stack_step), the
        # numpy backend's optimizer kernels
        self.kernels = get_backend("numpy" if backend == "reference" else backend)
        # threads unset on cpu: each step first takes the calling thread's share of the cores
        # other processes leave free (kernels/pool.py: spinning threads beside a busy process)
        self.adapts_threads = backend == "cpu" and threads is None
        spec = activation_spec(activation)
        self.activation = spec.name
        self.adam, self.flag = update_rule(optimizer)
        self.options = (ACTIVATION_NAMES.index(spec.name), spec.backward_uses == "output", spec.alpha,
                        self.adam, self.flag)
        if loss not in LOSS_NAMES:
            raise ValueError(f"unknown loss {loss!r}; valid losses: {', '.join(LOSS_NAMES)}")
        self.loss, self.loss_code = loss, LOSS_NAMES.index(loss)
        P, M = n_parameters(self.layers), self.members
        size, hidden_offsets, output_offsets = workspace_layout(self.layers, self.capacity,
                                                                transposed_input=backend == "cpu")
        self.layout = StepLayout(np.asarray(self.layers, dtype=np.int64), layer_offsets(self.layers),
                                 hidden_offsets, output_offsets)
        state_a = np.zeros((M, P), self.dtype)
        self.host = StepBuffers(
            params=np.zeros((M, P), self.dtype), grads=np.zeros((M, P), self.dtype), state_a=state_a,
            state_b=np.zeros((M, P), self.dtype) if self.adam else state_a,
            workspace=np.zeros((M, size), self.dtype), scalars=np.zeros((M, 2), self.dtype),
            losses=np.zeros(M, np.float64),
        )
        self.on_device = backend == "cuda"
        self.buffers = self.kernels.device_buffers(self.host) if self.on_device else self.host
        self._stale = False  # (cuda) the device has stepped since the last pull
        self.settings = MemberSettings(*(np.zeros(M, np.float64) for _ in range(6)),
                                       steps=np.zeros(M, np.int64), active=np.ones(M, np.bool_))
        # the backend's step, chosen once, not at every call: on cpu, a model alone's skips
        # Numba's dispatcher (kernels/cpu_dispatch.py, AloneStep)
        if backend == "reference":
            self._stack_step = reference_stack_step
        elif backend == "cpu" and M == 1:
            from numbamlp.kernels.cpu_dispatch import AloneStep

            self._stack_step = AloneStep(self.buffers, self.layout, self.settings)
        else:
            self._stack_step = self.kernels.stack_step

    def plain_step(self):
        """Trainer.step's shortcut for plain batches (kernels/cpu_dispatch.py, PlainStep), or None:
        the cpu backend has one, for a plan of one classifier."""
        if self.backend != "cpu" or self.members != 1 or self.loss != "cross_entropy":
            return None
        from numbamlp.kernels.cpu_dispatch import PlainStep

        return PlainStep(self._stack_step, self.options, self.capacity)

    def plain_batch(self, X: np.ndarray, y: np.ndarray) -> bool:
        """Whether X (k, B, D) and y (k, B) are class indices and features the cpu step
        takes as they are: C-contiguous and aligned, X of the plan's dtype and D, finite, y
        int64 in [0, C) (checked in one compiled pass, kernels.cpu_backend.batch_problem).
        False elsewhere, and for anything else: the caller's checks convert or refuse."""
        if (self.backend != "cpu" or self.loss != "cross_entropy" or X.dtype != self.dtype or y.dtype != np.int64
                or X.shape[-1] != self.layers[0] or not (X.flags.c_contiguous and X.flags.aligned
                                                         and y.flags.c_contiguous and y.flags.aligned)):
            return False
        return not self.kernels.batch_problem(X.reshape(-1, X.shape[-1]), y.reshape(-1), self.layers[-1])

    @property
    def n_parameters(self) -> int:
        return self.host.params.shape[1]

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
        """Member m's optimizer buffers by name (live views of the host copies), as checkpoints
        store them."""
        if self.adam:
            return {"m": self.host.state_a[m], "v": self.host.state_b[m]}
        return {"velocity": self.host.state_a[m]}

    def pull(self) -> None:
        """cuda: copy the parameters, gradients and optimizer state from the device into
        ``host`` if a step ran since the last pull (a no-op elsewhere)."""
        if not self._stale:
            return
        for device, host in self._device_and_host(("params", "grads", "state_a", "state_b")):
            device.copy_to_host(host)
        self._stale = False

    def push(self, member: int | None = None) -> None:
        """cuda: copy the host's parameters and optimizer state (all members' or one member's
        rows) up to the device, after the host changed them (a no-op elsewhere).  Pull first
        where the device may be ahead: a push overwrites what it copies."""
        if not self.on_device:
            return
        for device, host in self._device_and_host(("params", "state_a", "state_b")):
            if member is None:
                device.copy_to_device(host)
            else:
                device[member].copy_to_device(host[member])

    def _device_and_host(self, names):
        """(device, host) array pairs of these buffers; state_b only where it is not state_a
        under another name (the SGD family)."""
        if self.host.state_b is self.host.state_a:
            names = [name for name in names if name != "state_b"]
        return [(getattr(self.buffers, name), getattr(self.host, name)) for name in names]

    def step(self, X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None,
             mode: int = STEP_TRAIN) -> np.ndarray:
        """One step of every active member; see the class docstring.  Arrays must be
        validated and C-contiguous: X of the plan's dtype, y int64 (cross-entropy) or of the
        dtype (squared error), weights of the dtype."""
        if self.on_device:
            to_device = self.kernels.to_device
            X, y, weights = to_device(X), to_device(y), None if weights is None else to_device(weights)
            self.host.losses[...] = self._stack_step(self.buffers, self.layout, self.settings, X, y, weights,
                                                     *self.options, mode, self.loss_code)  # (copied down)
            self._stale = True
            return self.host.losses
        if self.adapts_threads:
            adapt_threads()
        with launch_guard(self.kernels):
            self._stack_step(self.buffers, self.layout, self.settings, X, y, weights, *self.options, mode,
                             self.loss_code)
        return self.buffers.losses


def reference_stack_step(buffers: StepBuffers, layout: StepLayout, settings: MemberSettings, X, y, weights,
                         act_code: int, backward_uses_output: bool, alpha: float, adam: bool, flag: bool, mode: int,
                         loss_code: int) -> None:
    """The reference path as a step plan's backend (``backend="reference"``): a backend's
    stack_step, with each active member's gradients from numbamlp.reference (one example at
    a time, the specification every fast kernel is checked against), then the numpy
    backend's optimizer update.  Arguments as the backends' stack_step (X (M or 1, B, D), y
    (M or 1, B) or (M or 1, B, K), weights None or (M or 1, B)); buffers.losses (M,) = each
    member's loss, NaN for an inactive one.  The optimizer's settings go to the update as
    Python numbers, as the reference path has always passed them: numpy keeps a float32
    model's update in float32 only for those (an np.float64 scalar widens the arithmetic)."""
    from numbamlp.kernels import numpy_backend

    layers = [int(n) for n in layout.layers]
    activation, loss = ACTIVATION_NAMES[act_code], LOSS_NAMES[loss_code]
    s = settings
    for m in range(buffers.params.shape[0]):
        if not s.active[m]:
            buffers.losses[m] = np.nan
            continue
        row = 0 if X.shape[0] == 1 else m
        params = layer_views(buffers.params[m], layers)
        value, grads = reference.mean_loss_and_grads(params, activation, X[row], y[row],
                                                     None if weights is None else weights[row], loss)
        buffers.losses[m] = value
        for (dW, db), (rW, rb) in zip(layer_views(buffers.grads[m], layers), grads):
            dW[...] = rW
            db[...] = rb
        if mode == STEP_GRADIENTS or not np.isfinite(value):  # (a non-finite loss updates nothing)
            continue
        s.steps[m] += 1
        if adam:
            numpy_backend.adam_update(buffers.params[m], buffers.state_a[m], buffers.state_b[m], buffers.grads[m],
                                      float(s.lr[m]), float(s.beta1[m]), float(s.beta2[m]), float(s.eps[m]),
                                      float(s.weight_decay[m]), flag, int(s.steps[m]))
        else:
            numpy_backend.sgd_update(buffers.params[m], buffers.state_a[m], buffers.grads[m], float(s.lr[m]),
                                     float(s.momentum[m]), float(s.weight_decay[m]), flag)


class DeviceData:
    """A data set on the device (cuda), copied up once, and minibatches gathered from it there
    by index, so that per step only indices travel, if anything.

    X (N, D) of the plan's dtype; y (N,) int64 class indices (the members of a stack encode
    labels alike) or (N, K) regression targets of the dtype; weights None, (N,) or (k, N) loss
    weights by row of X, k members' own.  ``batch(order, start, rows)`` gathers member m's
    rows order[m, start : start + rows] into device buffers (k, rows, D), (k, rows) or
    (k, rows, K), (k, rows), made once per batch size (the short last batch of an epoch has
    its own).
    """

    def __init__(self, kernels, X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None):
        self.kernels = kernels
        self.X = kernels.to_device(X)
        self.y = kernels.to_device(y if y.ndim == 2 else y.reshape(1, -1))  # targets (N, K) gather as rows
        self.weights = None if weights is None else kernels.to_device(np.atleast_2d(weights))
        self._batches: dict[int, tuple] = {}

    def upload(self, order: np.ndarray):
        """order (k, n) int64 on the device, e.g. a Trainer's epoch order, once per epoch."""
        return self.kernels.to_device(np.ascontiguousarray(order, np.int64))

    def batch(self, order, start: int, rows: int) -> tuple:
        """(X (k, rows, D), y (k, rows) or (k, rows, K), weights (k, rows) or None) on the device.  ``order``
        (k, ·) int64: a device array (see ``upload``), or a host array of exactly (k, rows)
        indices (start 0), copied up into the batch's own index buffer."""
        k = order.shape[0]
        if rows not in self._batches:
            empty = self.kernels.device_array
            self._batches[rows] = (empty((k, rows), np.int64), empty((k, rows, self.X.shape[1]), self.X.dtype),
                                   empty((k, rows), np.int64) if self.y.dtype == np.int64
                                   else empty((k, rows, self.y.shape[1]), self.y.dtype),
                                   None if self.weights is None else empty((k, rows), self.weights.dtype))
        index, Xb, yb, wb = self._batches[rows]
        if isinstance(order, np.ndarray):
            index.copy_to_device(np.ascontiguousarray(order, np.int64))
            order = index
        gather = self.kernels.gather
        gather(Xb, self.X, order, start)
        gather(yb, self.y, order, start)
        if wb is not None:
            gather(wb, self.weights, order, start)
        return Xb, yb, wb
