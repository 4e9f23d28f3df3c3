"""Many models at once: a stack of M same-shaped MLPs trained by one compiled step.

Symbols: M members, N rows, B batch size, D features, C classes.

    from numbamlp import StackTrainer
    stack = StackTrainer([{"seed": s, "optimizer": {"lr": lr}} for s in range(4) for lr in (0.01, 0.05)])
    stack.fit(X, y)
    stack.models, stack.histories, stack.results

Each member trains exactly as ``Trainer(config_m).fit`` would — the same initialisation
from its seed, the same shuffles, learning-rate schedule, early stopping and divergence
handling — and on the cpu backend computes the same bits.  The members share one step plan
(numbamlp.plan), so what they share is fixed: the network (layers or hidden sizes,
activation), batch size, dtype, backend, optimizer name, data settings, threads and
gradient validation.  Everything else (seed, epochs, learning rate and schedule, momentum,
weight decay, Adam's betas and eps, early stopping, class weights) may differ per member.

Memory: the parameters, gradients and optimizer state of M members, (M, P) each, plus one
workspace per member for a batch — M times one model's, and nothing that grows with the
step count.
"""

from __future__ import annotations

import math
import time

import numpy as np

from numbamlp.config import TrainConfig
from numbamlp.model import as_features, as_sample_weights
from numbamlp.plan import StepPlan
from numbamlp.trainer import Trainer, TrainingDiverged

# The settings every member of a stack shares (dotted config paths): what the step plan is
# built from, and the data every member sees.
STACK_KEY = ("model", "batch_size", "dtype", "backend", "optimizer.name", "data", "threads", "validate_gradients")
STACK_BACKENDS = ("cpu", "numpy")


def _leaves(config: TrainConfig, path: str) -> dict:
    """{dotted path: value} of every setting at or under ``path``."""
    value = config
    for part in path.split("."):
        value = getattr(value, part)
    if not hasattr(value, "model_fields"):
        return {path: value}
    return {leaf: v for name in type(value).model_fields for leaf, v in _leaves(config, f"{path}.{name}").items()}


def check_stack_key(configs: list[TrainConfig]) -> None:
    """ValueError naming the first shared setting on which the configs disagree, and which
    members hold which value."""
    for path in STACK_KEY:
        for leaf in _leaves(configs[0], path):
            values = [_leaves(c, leaf)[leaf] for c in configs]
            if all(v == values[0] for v in values[1:]):
                continue
            groups: dict[str, list[int]] = {}
            for m, value in enumerate(values):
                groups.setdefault(repr(value), []).append(m)
            listed = "; ".join(f"member{'s' if len(ms) > 1 else ''} {', '.join(map(str, ms))}: {value}"
                               for value, ms in groups.items())
            raise ValueError(f"the configs cannot share a step: {leaf} differs ({listed})")
    if configs[0].backend not in STACK_BACKENDS:
        raise ValueError(f"StackTrainer runs on the {' or '.join(STACK_BACKENDS)} backend, not "
                         f"{configs[0].backend!r} (a stack on cuda is not built yet)")


class _Member:
    """One member's data for a fit: its training rows (after its own validation split), the
    class index and loss weight of every row of X (N,), its validation set, and where it is
    in the epoch."""

    def __init__(self, trainer: Trainer, rows, y_idx, weights, X_val, y_val):
        self.trainer, self.rows, self.y_idx, self.weights = trainer, rows, y_idx, weights
        self.X_val, self.y_val = X_val, y_val
        self.status = "training"
        self.order = None  # this epoch's rows, shuffled
        self.total = self.weight_total = 0.0
        self.started = 0.0

    @property
    def running(self) -> bool:
        return self.status == "training"


class StackTrainer:
    """Trains a stack of same-shaped MLPs, one per config; see the module docstring.

    ``fit(X, y, X_val=None, y_val=None, sample_weight=None, callbacks=())`` trains every
    member; ``step(X, y)`` is one update of every member and returns the losses (M,);
    ``models``, ``histories`` and ``results`` hold what each member became.  A callback is
    any object with ``on_epoch_end(epoch, metrics)``; metrics carry ``"member"``.
    """

    def __init__(self, configs):
        configs = [c if isinstance(c, TrainConfig) else TrainConfig.model_validate(c) for c in configs]
        if not configs:
            raise ValueError("a stack needs at least one config")
        check_stack_key(configs)
        self.configs = configs
        self.trainers = [Trainer(c) for c in configs]
        self.plan: StepPlan | None = None
        self.results: list[dict] = []

    @property
    def members(self) -> int:
        return len(self.configs)

    @property
    def models(self):
        return [t.model for t in self.trainers]

    @property
    def histories(self) -> list[list[dict]]:
        return [t.history for t in self.trainers]

    # ------------------------------------------------------------ set-up
    def build(self, n_features: int, n_classes: int) -> None:
        """Every member's model from its seed, and the step plan holding them all."""
        shared = self.configs[0]
        for trainer in self.trainers:
            trainer.build(n_features, n_classes)
        model = self.trainers[0].model
        self.plan = StepPlan(model.layers, model.activation, shared.optimizer.name, self.members,
                             shared.batch_size, shared.dtype, shared.backend)
        for m, trainer in enumerate(self.trainers):
            trainer.use_plan(self.plan, m)
        self._batches: dict[int, tuple] = {}

    def _batch_buffers(self, rows: int) -> tuple:
        """(X (M, rows, D), y (M, rows), weights (M, rows)) gather buffers, C-contiguous,
        made once per batch size (the short last batch of an epoch has its own)."""
        if rows not in self._batches:
            M, D, dtype = self.members, self.plan.layers[0], self.plan.dtype
            self._batches[rows] = (np.zeros((M, rows, D), dtype), np.zeros((M, rows), np.int64),
                                   np.ones((M, rows), dtype))
        return self._batches[rows]

    # ------------------------------------------------------------ one update
    def step(self, X, y, sample_weight=None) -> np.ndarray:
        """One update of every member: X (B, D) shared by all, or (M, B, D) one batch each;
        y (B,) or (M, B) class indices 0..C−1; sample_weight None or (B,).  Returns the
        losses (M,) (a copy).  The learning rate is each member's for its current epoch."""
        from numbamlp.model import as_class_indices

        X, y = np.asarray(X), np.asarray(y)
        batches, labels = (X[None] if X.ndim == 2 else X), (y[None] if y.ndim == 1 else y)
        if batches.ndim != 3 or batches.shape[0] not in (1, self.members) or labels.shape != batches.shape[:2]:
            raise ValueError(f"X must be (B, D) or ({self.members}, B, D) and y (B,) or ({self.members}, B) "
                             f"to match, got shapes {X.shape} and {y.shape}")
        if self.plan is None:
            self.build(batches.shape[2], int(np.max(labels)) + 1)
        batches = as_features(batches.reshape(-1, batches.shape[2]), self.plan.layers[0],
                              self.plan.dtype).reshape(batches.shape)
        labels = as_class_indices(labels.reshape(-1), labels.size, self.plan.layers[-1]).reshape(labels.shape)
        weights = None
        if sample_weight is not None:
            weights = as_sample_weights(sample_weight, batches.shape[1], self.plan.dtype)[None]
        for m, trainer in enumerate(self.trainers):
            self.plan.settings.lr[m] = trainer.lr
        return self.plan.step(batches, labels, weights).copy()

    # ------------------------------------------------------------ epochs
    def fit(self, X, y, X_val=None, y_val=None, sample_weight=None, callbacks=()) -> list[list[dict]]:
        """Train every member as ``Trainer(config_m).fit(X, y, X_val, y_val, sample_weight)``
        would; returns the histories.  A member that stops early is frozen with its best
        weights back in place while the others go on; one that diverges is marked
        ``"diverged"`` in ``results`` and frozen (its weights as before the bad step)."""
        from numbamlp.data import stratified_split

        dtype = self.configs[0].dtype
        X = as_features(X, None, dtype)
        y = np.asarray(y)
        if len(y) != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but y has {len(y)} labels")
        sample_weight = as_sample_weights(sample_weight, X.shape[0], np.float64)
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError("y has 1 class; classification needs at least 2")
        for trainer in self.trainers:
            trainer.model = None
            trainer._start_over()
            trainer.classes_ = classes
        self.build(X.shape[1], len(classes))
        members = []
        for trainer in self.trainers:
            trainer.model.classes = classes
            rows, Xv, yv = np.arange(X.shape[0]), X_val, y_val
            if trainer.config.early_stopping.patience and X_val is None:  # as Trainer.fit holds out
                rows, val_rows, _, _ = stratified_split(rows, y, trainer.config.data.val_fraction or 0.1,
                                                        trainer.config.seed)
                Xv, yv = X[val_rows], y[val_rows]
            weights = trainer._row_weights(y[rows], None if sample_weight is None else sample_weight[rows])
            if weights is not None:  # by row of X, as the labels are
                by_row = np.zeros(X.shape[0], weights.dtype)
                by_row[rows] = weights
                weights = by_row
            members.append(_Member(trainer, rows, trainer.encode(y), weights, Xv, yv))
        any_weights = any(m.weights is not None for m in members)
        while any(m.running for m in members):
            self._epoch(X, members, any_weights, callbacks)
        self.results = [self._result(m) for m in members]
        return self.histories

    def _epoch(self, X, members: list[_Member], any_weights: bool, callbacks) -> None:
        """One epoch of every running member: their steps side by side, then each member's
        end of epoch (validation, early stopping, callbacks)."""
        plan, batch = self.plan, self.configs[0].batch_size
        running = [m for m in members if m.running]
        for index, member in enumerate(members):
            if member.running:
                trainer = member.trainer
                member.order = member.rows[trainer._rng.permutation(len(member.rows))]
                member.total = member.weight_total = 0.0
                member.started = time.perf_counter()
                member.lr = plan.settings.lr[index] = trainer.lr
        longest = max(len(m.rows) for m in running)
        for lo in range(0, longest, batch):
            # members whose batch has the same number of rows step together
            sizes: dict[int, list[int]] = {}
            for index, member in enumerate(members):
                if member.running and lo < len(member.rows):
                    sizes.setdefault(min(batch, len(member.rows) - lo), []).append(index)
            for rows, indices in sizes.items():
                self._step_members(X, members, indices, lo, rows, any_weights)
        for index, member in enumerate(members):
            if member in running and member.running:
                self._end_epoch(index, member, callbacks)

    def _step_members(self, X, members, indices, lo, rows, any_weights) -> None:
        Xb, yb, wb = self._batch_buffers(rows)
        active = self.plan.settings.active
        active[:] = False
        for index in indices:
            member = members[index]
            picked = member.order[lo : lo + rows]
            np.take(X, picked, axis=0, out=Xb[index])
            np.take(member.y_idx, picked, out=yb[index])
            if any_weights:  # unit weights give the plain mean's bits (loss and gradients)
                wb[index] = 1.0 if member.weights is None else member.weights[picked]
            active[index] = True
        losses = self.plan.step(Xb, yb, wb if any_weights else None)
        for index in indices:
            member, loss = members[index], float(losses[index])
            trainer = member.trainer
            if not math.isfinite(loss):
                member.status = "diverged"
                member.error = str(TrainingDiverged.at_step(loss, trainer.epoch + 1,
                                                            lo // self.configs[0].batch_size + 1, member.lr))
                continue
            weight = rows if member.weights is None else float(wb[index].sum())
            member.total += loss * weight
            member.weight_total += weight

    def _end_epoch(self, index: int, member: _Member, callbacks) -> None:
        trainer = member.trainer
        if not np.isfinite(trainer.model.flat_params).all():
            member.status = "diverged"
            member.error = str(TrainingDiverged.in_epoch(trainer.epoch + 1, member.lr))
            return
        trainer.epoch += 1
        metrics = {"epoch": trainer.epoch, "loss": member.total / member.weight_total, "lr": member.lr}
        if member.X_val is not None:
            val = trainer.evaluate(member.X_val, member.y_val)
            metrics.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
            trainer._track_best(val["loss"])
        metrics["seconds"] = time.perf_counter() - member.started
        trainer.history.append(metrics)
        for callback in callbacks:
            callback.on_epoch_end(trainer.epoch, {**metrics, "member": index})
        if trainer.stopped_early:
            member.status = "stopped early"
        elif trainer.epoch >= trainer.config.epochs:
            member.status = "done"
        if not member.running and trainer._best_params is not None:
            trainer.model.flat_params[...] = trainer._best_params

    @staticmethod
    def _result(member: _Member) -> dict:
        trainer = member.trainer
        last = trainer.history[-1] if trainer.history else {}
        best = next((m for m in trainer.history if m["epoch"] == trainer.best_epoch), {})
        return {
            "status": member.status,
            "epochs_run": trainer.epoch,
            "stopped_early": trainer.stopped_early,
            "best_epoch": trainer.best_epoch,
            "final_val_loss": last.get("val_loss"),
            "final_val_accuracy": last.get("val_accuracy"),
            "best_val_loss": best.get("val_loss"),
            "best_val_accuracy": best.get("val_accuracy"),
            "error": getattr(member, "error", None),
        }
