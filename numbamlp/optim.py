"""Optimizer state and learning-rate schedules over flat parameter buffers.

All state lives in flat arrays with the parameters' layout, in a step plan's rows once a
model trains (numbamlp.plan); the plan's step applies the update, by rules that follow
PyTorch's SGD, Adam and AdamW (the backends' sgd_update and adam_update).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


class UpdateRule(NamedTuple):
    """How an optimizer's name reads to the update kernels (a step plan's ``adam``, ``flag``)."""

    adam: bool  # Adam's two moment buffers (adam, adamw); otherwise the SGD family's velocity
    flag: bool  # nesterov's look-ahead in the SGD family, decoupled weight decay (adamw) in Adam's


def update_rule(optimizer: str) -> UpdateRule:
    """The update rule of the optimizer named ``optimizer`` (numbamlp.config.OPTIMIZERS)."""
    return UpdateRule(adam=optimizer in ("adam", "adamw"), flag=optimizer in ("nesterov", "adamw"))


class Optimizer:
    """Optimizer state for one model (the step plan's step updates it in place).

    sgd / momentum / nesterov: velocity buffer (momentum μ; μ = 0 is the seed's SGD).
    adam / adamw: first and second moment buffers; adamw decouples weight decay.
    """

    def __init__(self, config, n_params: int, dtype):
        self.config = config
        self._steps = np.zeros(1, np.int64)  # the step count, in an array a step plan can share
        if update_rule(config.name).adam:
            self.state = {"m": np.zeros(n_params, dtype), "v": np.zeros(n_params, dtype)}
        else:
            self.state = {"velocity": np.zeros(n_params, dtype)}

    @property
    def step_count(self) -> int:
        """Steps taken (Adam's bias correction counts them)."""
        return int(self._steps[0])

    @step_count.setter
    def step_count(self, value: int) -> None:
        self._steps[0] = value

    def use_storage(self, state: dict[str, np.ndarray], steps: np.ndarray) -> None:
        """Move the state into ``state`` (same names, e.g. a step plan's rows) and the step
        count into ``steps`` (1,) int64; the optimizer reads and writes them there from now on."""
        for name, buffer in state.items():
            buffer[...] = self.state[name]
        steps[...] = self._steps
        self.state, self._steps = dict(state), steps


def learning_rate(schedule, base_lr: float, epoch: int, epochs: int) -> float:
    """Learning rate for 0-based ``epoch`` of ``epochs``.

    Linear warm-up over ``warmup_epochs`` (base·(e+1)/(warmup+1)), then: constant; step
    (×gamma every step_size epochs); or cosine from base to min_lr over the remaining epochs.
    """
    warmup = schedule.warmup_epochs
    if epoch < warmup:
        return base_lr * (epoch + 1) / (warmup + 1)
    e, span = epoch - warmup, max(epochs - warmup, 1)
    if schedule.name == "step":
        return base_lr * schedule.gamma ** (e // schedule.step_size)
    if schedule.name == "cosine":
        return schedule.min_lr + 0.5 * (base_lr - schedule.min_lr) * (1 + math.cos(math.pi * e / span))
    return base_lr
