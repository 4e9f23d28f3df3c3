"""Optimizers and learning-rate schedules over flat parameter buffers.

All state lives in flat arrays with the parameters' layout, so one kernel call updates
every layer.  The update rules follow PyTorch's SGD, Adam and AdamW.
"""

from __future__ import annotations

import math

import numpy as np

from numbamlp.kernels import launch_guard


class Optimizer:
    """Optimizer state for one model: ``update`` applies one step in place.

    sgd / momentum / nesterov: velocity buffer (momentum μ; μ = 0 is the seed's SGD).
    adam / adamw: first and second moment buffers; adamw decouples weight decay.
    """

    def __init__(self, config, n_params: int, dtype):
        self.config = config
        self._steps = np.zeros(1, np.int64)  # the step count, in an array a step plan can share
        if config.name in ("adam", "adamw"):
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

    def arguments(self, lr: float) -> tuple:
        """The optimizer's settings for the next step (``update`` passes them to a backend's
        sgd_update or adam_update): (adam, lr, momentum, weight_decay, nesterov_or_decoupled,
        beta1, beta2, eps, step);
        the settings the optimizer does not use (None in the config) are passed as 0."""
        cfg = self.config
        adam = cfg.name in ("adam", "adamw")
        flag = cfg.name == "adamw" if adam else cfg.name == "nesterov"
        unused = 0.0
        return (adam, float(lr), float(cfg.momentum or unused), float(cfg.weight_decay), flag,
                float(cfg.beta1 or unused), float(cfg.beta2 or unused), float(cfg.eps or unused),
                self.step_count + 1)

    @property
    def buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """(state_a, state_b): velocity twice for SGD (the second unused), m and v for Adam."""
        if "m" in self.state:
            return self.state["m"], self.state["v"]
        return self.state["velocity"], self.state["velocity"]

    def update(self, kernels, params: np.ndarray, grads: np.ndarray, lr: float) -> None:
        """One step: params (flat) updated from grads (flat) at learning rate ``lr``."""
        adam, lr, momentum, weight_decay, flag, beta1, beta2, eps, step = self.arguments(lr)
        state_a, state_b = self.buffers
        with launch_guard(kernels):
            if adam:
                kernels.adam_update(params, state_a, state_b, grads, lr, beta1, beta2, eps, weight_decay, flag, step)
            else:
                kernels.sgd_update(params, state_a, grads, lr, momentum, weight_decay, flag)
        self.step_count = step


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
