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

A stack's slots can also be refilled while it trains (``open_fit``, StackFit): between two
epochs a member leaves (ended, or pruned) and a new one, of the same stack key, takes its
slot and trains from its own epoch 0, exactly as it would alone.

Memory: the parameters, gradients and optimizer state of M members, (M, P) each, plus one
workspace per member for a batch — M times one model's, and nothing that grows with the
step count.  On cuda these live on the device (with host copies), and so does the data,
copied up once per fit: each step gathers every member's batch there by index.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import NamedTuple

import numpy as np
from pydantic import BaseModel

from numbamlp.arrays import as_features, as_labels, as_sample_weights, as_targets, step_class_indices, unique_labels
from numbamlp.config import TrainConfig
from numbamlp.member import Member, TrainingDiverged, TrainingInterrupted
from numbamlp.metrics import RANKING_METRICS
from numbamlp.model import stacked_scores
from numbamlp.plan import StepPlan
from numbamlp.threads import quiet_blas, set_config_threads, threads_while

# The settings every member of a stack shares (dotted config paths): what the step plan is
# built from, and the data every member sees.
STACK_KEY = ("task", "model", "batch_size", "dtype", "backend", "optimizer.name", "data", "threads",
             "validate_gradients")


def _leaves(config: TrainConfig, path: str) -> dict:
    """{dotted path: value} of every setting at or under ``path``."""
    value = config
    for part in path.split("."):
        value = getattr(value, part)
    if not isinstance(value, BaseModel):
        return {path: value}
    return {leaf: v for name in type(value).model_fields for leaf, v in _leaves(config, f"{path}.{name}").items()}


def stack_key(config: TrainConfig) -> dict:
    """{dotted path: value} of every setting under STACK_KEY, leaf by leaf: configs with
    equal stack keys can share a stack."""
    return {leaf: value for path in STACK_KEY for leaf, value in _leaves(config, path).items()}


def check_stack_key(configs: list[TrainConfig]) -> None:
    """ValueError naming the first shared setting on which the configs disagree, and which
    members hold which value."""
    keys = [stack_key(config) for config in configs]
    for leaf in keys[0]:
        values = [key[leaf] for key in keys]
        if all(v == values[0] for v in values[1:]):
            continue
        groups: dict[str, list[int]] = {}
        for m, value in enumerate(values):
            groups.setdefault(repr(value), []).append(m)
        listed = "; ".join(f"member{'s' if len(ms) > 1 else ''} {', '.join(map(str, ms))}: {value}"
                           for value, ms in groups.items())
        raise ValueError(f"the configs cannot share a step: {leaf} differs ({listed})")


class _Member:
    """One member's data for a fit: its training rows (after its own validation split), the
    class index and loss weight of every row of X (N,), its validation set, and its status.
    Where it is in an epoch is its member's ``progress`` (the same record a Trainer keeps,
    so checkpoints hold it alike): the epoch's order (a permutation of ``rows``), next_row,
    the loss totals, the epoch's learning rate and seconds."""

    def __init__(self, trainer: Member, rows, y_idx, weights, X_val, y_val, status: str, error=None):
        self.trainer, self.rows, self.y_idx, self.weights = trainer, rows, y_idx, weights
        self.X_val, self.y_val = X_val, y_val
        self.status, self.error = status, error
        self.order = None  # this epoch's rows of X, shuffled
        self.started = 0.0

    @property
    def running(self) -> bool:
        return self.status == "training"


def member_data(member: Member, X, y, X_val, y_val, sample_weight, status: str = "training",
                error=None) -> _Member:
    """One member's data for a fit over X (N, D): its validation split (its own hold-out when
    it stops early without X_val), its target standardisation (a regressor's), its row
    weights and its encoded labels, both by row of X; its status ("done" or "stopped early"
    when a warm fit finds nothing left to train).  y: labels (N,) or targets (N, K) float64;
    sample_weight (N,) float64 or None; X_val, y_val checked already (checked_validation_data)."""
    member.check_stopping_metric()
    member.check_threshold()
    if not member.regression:  # (a number holds from the start, so an interrupted fit's model has it; a
        threshold = member.config.threshold  # metric's is chosen at the end: none meanwhile, not an old one)
        member.model.threshold = float(threshold) if isinstance(threshold, (int, float)) else None
    rows, Xv, yv = member.validation_split(X, y, X_val, y_val)
    if member.regression:
        member.fit_target_transform(y[rows], None if sample_weight is None else sample_weight[rows])
    weights = member.row_weights(y[rows], None if sample_weight is None else sample_weight[rows])
    if weights is not None:  # by row of X, as the labels are
        by_row = np.zeros(X.shape[0], weights.dtype)
        by_row[rows] = weights
        weights = by_row
    if status == "training" and (member.stopped_early or member.epoch >= member.config.epochs):
        status = "stopped early" if member.stopped_early else "done"
    if status in ("done", "stopped early"):  # (a checkpoint taken at its last epoch's end holds that
        member.restore_best()                # epoch's weights beside the best: the fit puts these back)
    return _Member(member, rows, member.encode(y), weights, Xv, yv, status, error)


class _EpochPositions:
    """Where each member is in the epoch under way, as vectors over the stack (M,): its
    shuffled rows of X (``orders`` (M, longest), a member's first len(rows) entries), its next
    row and its loss totals.  A member's trainer keeps the same in its progress record (the
    one checkpoints hold), which ``write_back`` brings up to date at the epoch's end or an
    interruption: kept member by member in Python, this bookkeeping took ~0.1 ms of a
    32-member stack's ~0.5 ms step."""

    def __init__(self, members: list[_Member]):
        M = len(members)
        self.running_at_start = [index for index in range(M) if members[index].running]
        self.lengths = np.array([len(member.rows) if member.running else 0 for member in members])
        self.orders = np.zeros((M, self.lengths.max()), np.int64)
        self.next_row = np.zeros(M, np.int64)
        self.total, self.weight_total = np.zeros(M), np.zeros(M)
        for index in self.running_at_start:
            progress = members[index].trainer.progress
            self.orders[index, : self.lengths[index]] = members[index].order
            self.next_row[index] = progress["next_row"]
            self.total[index], self.weight_total[index] = progress["total"], progress["weight_total"]

    def write_back(self, members: list[_Member]) -> None:
        for index in self.running_at_start:
            progress = members[index].trainer.progress
            if progress is not None:
                progress.update(next_row=int(self.next_row[index]), total=float(self.total[index]),
                                weight_total=float(self.weight_total[index]))


class _ForMember:
    """A stack's callback as one member's trainer calls it: its metrics carry ``"member"``."""

    def __init__(self, callback, member: int):
        self.callback, self.member = callback, member

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        self.callback.on_epoch_end(epoch, {**metrics, "member": self.member})


# How often, at most, a callback's on_progress hears of an epoch under way.
PROGRESS_INTERVAL_S = 0.1


class StackTrainer:
    """Trains a stack of same-shaped MLPs, one per config; see the module docstring.

    ``fit(X, y, X_val=None, y_val=None, sample_weight=None, callbacks=())`` trains every
    member; ``step(X, y)`` is one update of every member and returns the losses (M,);
    ``models``, ``histories`` and ``results`` hold what each member became.  A callback is
    any object with ``on_epoch_end(epoch, metrics)``; metrics carry ``"member"``.
    ``open_fit(...)`` sets a fit up and hands it back (StackFit) to run an epoch at a time,
    members leaving and new ones taking their slots between epochs.
    """

    def __init__(self, configs):
        configs = [c if isinstance(c, TrainConfig) else TrainConfig.model_validate(c) for c in configs]
        if not configs:
            raise ValueError("a stack needs at least one config")
        check_stack_key(configs)
        self._hold([Member(c) for c in configs], plan=None)  # (each member's state; the loop is here)

    def _hold(self, members: list[Member], plan: StepPlan | None, members_named: bool = True) -> None:
        """The stack's state around ``members``, before any fit."""
        self.configs = [member.config for member in members]
        self.trainers = members
        self.plan = plan
        self.results: list[dict] = []
        self.statuses: list[tuple] = [("training", None)] * len(members)  # (status, error) per member
        self._stop_reason = None
        self._cancelled: set[int] = set()  # members asked to stop (cancel_member), from any thread
        self._step_hooks: list = []
        self._threads_set = False  # (step sets config.threads once; fit sets it while it runs)
        self._members_named = members_named  # (a callback's metrics carry "member"; not in a Trainer's own fit)

    @classmethod
    def of_one(cls, member: Member) -> "StackTrainer":
        """The stack of one a Trainer's fit runs its epochs in (``train``): ``member`` itself,
        with its own step plan (no copy), its callbacks' metrics as they are."""
        stack = cls.__new__(cls)
        stack._hold([member], member.plan, members_named=False)
        return stack

    def __getstate__(self):
        # the step plan does not pickle (nor need it: the members' weights and optimizer state
        # pickle with them, see Member.__getstate__); a plan of the same capacity is made on load
        for trainer in self.trainers:
            trainer.synchronize()
        state = self.__dict__.copy()
        plan = state.pop("plan")
        state.update(_batches={}, _device=None,
                     _planned=None if plan is None else (plan.capacity, plan.settings.active.copy()))
        return state

    def __setstate__(self, state):
        planned = state.pop("_planned", None)
        self.__dict__.update(state)
        self.plan = None
        self._threads_set = False
        if planned is not None:
            capacity, active = planned
            self._use_plan(capacity)
            self._set_learning_rates()
            self.plan.settings.active[:] = active

    @property
    def members(self) -> int:
        return len(self.configs)

    @property
    def models(self):
        return [t.model for t in self.trainers]

    @property
    def histories(self) -> list[list[dict]]:
        return [t.history for t in self.trainers]

    def ensemble(self, members=None):
        """The fitted members (all, or those ``members`` lists) as one numbamlp.ensemble.Ensemble:
        their probabilities (a regressor's values) averaged; members that diverged are left out."""
        from numbamlp.ensemble import Ensemble

        if any(t.model is None for t in self.trainers):
            raise ValueError("this stack has no models yet: call fit first")
        chosen = range(self.members) if members is None else members
        diverged = {m for m, (status, _) in enumerate(self.statuses) if status == "diverged"}
        models = [self.trainers[m].model for m in chosen if m not in diverged]
        if not models:
            raise ValueError("every member chosen diverged: there is no model to average")
        for trainer in self.trainers:
            trainer.synchronize()  # (the weights the step plan holds, into the models)
        return Ensemble(models)

    # ------------------------------------------------------------ set-up
    def build(self, n_features: int, n_classes: int) -> None:
        """Every member's model from its seed, and the step plan holding them all."""
        shared = self.configs[0]
        for trainer in self.trainers:
            trainer.build(n_features, n_classes)
        self._use_plan(shared.batch_size)
        self._set_learning_rates()
        self._batches: dict[int, tuple] = {}
        self._shared_labels = None  # (fit) the labels of X's rows every member shares, or None
        self._device = None  # cuda: the data of the fit under way on the device (plan.DeviceData)

    def _use_plan(self, capacity: int) -> None:
        """A new step plan for batches of up to ``capacity`` rows; every member moves into it."""
        shared, model = self.configs[0], self.trainers[0].model
        self.plan = StepPlan(model.layers, model.activation, shared.optimizer.name, self.members, capacity,
                             shared.dtype, shared.backend, model.loss, shared.threads)
        for m, trainer in enumerate(self.trainers):
            trainer.use_plan(self.plan, m)

    def _grow_plan(self, rows: int) -> None:
        """A plan for batches of up to ``rows`` rows (``step`` on a bigger batch than the
        stack's batch_size, as Trainer.step allows), taking every member's weights, optimizer
        state, learning rate and active flag along."""
        old = self.plan
        old.pull()  # (cuda: the state the new plan takes is the device's)
        self._use_plan(rows)
        self.plan.settings.lr[:] = old.settings.lr
        self.plan.settings.active[:] = old.settings.active
        self._batches = {}

    def _set_learning_rates(self) -> None:
        """Each member's learning rate for its current epoch, as ``step`` uses them (fit sets
        them at each epoch's start; ``step`` does not move the epochs)."""
        for m, trainer in enumerate(self.trainers):
            self.plan.settings.lr[m] = trainer.lr

    def _batch(self, X, members, indices: np.ndarray, picks: np.ndarray, rows: int, any_weights: bool) -> tuple:
        """This step's (X (M, rows, D), y (M, rows) or targets (M, rows, K), weights (M, rows) or
        None) for plan.step, member indices[i]'s rows of X being picks[i] (members not
        stepping keep what they had).  On cuda
        the batch is gathered on the device from the data copied up once per fit: only the
        (M, rows) indices go up, D times less than the batch itself.  Elsewhere it is gathered
        here into host buffers.  The buffers are made once per batch size (the short last
        batch of an epoch has its own), C-contiguous."""
        M = self.members
        if rows not in self._batches:
            if self._device is not None:
                self._batches[rows] = (np.zeros((M, rows), np.int64),)
            else:
                D, dtype = self.plan.layers[0], self.plan.dtype
                targets = (np.zeros((M, rows, self.plan.layers[-1]), dtype) if self.regression
                           else np.zeros((M, rows), np.int64))
                self._batches[rows] = (np.zeros((M, rows, D), dtype), targets, np.ones((M, rows), dtype))
        if self._device is not None:
            (order,) = self._batches[rows]
            order[indices] = picks
            return self._device.batch(order, 0, rows)
        Xb, yb, wb = self._batches[rows]
        if len(indices) == M and self._shared_labels is not None:  # every member steps: one gather each
            np.take(X, picks, axis=0, out=Xb, mode="clip")  # (mode="clip": valid indices, no temporary)
            np.take(self._shared_labels, picks, axis=0, out=yb, mode="clip")
        else:
            for index, picked in zip(indices, picks):
                np.take(X, picked, axis=0, out=Xb[index])
                np.take(members[index].y_idx, picked, axis=0, out=yb[index])
        if any_weights:  # unit weights give the plain mean's bits (loss and gradients)
            for index, picked in zip(indices, picks):
                member = members[index]
                wb[index] = 1.0 if member.weights is None else member.weights[picked]
        return Xb, yb, wb if any_weights else None

    @property
    def regression(self) -> bool:
        return self.configs[0].task == "regression"

    # ------------------------------------------------------------ one update
    def step(self, X, y, sample_weight=None) -> np.ndarray:
        """One update of every member: X (B, D) shared by all, or (M, B, D) one batch each;
        y (B,) or (M, B) class indices 0..C−1; sample_weight None or (B,).  Returns the
        losses (M,) (a copy).  The learning rate is each member's for its current epoch (set
        when the stack is built and after each fit)."""
        from numbamlp.arrays import as_class_indices

        if not self._threads_set:  # (once, as Trainer.step)
            set_config_threads(self.configs[0])
            self._threads_set = True
        X, y = np.asarray(X), np.asarray(y)
        if self.regression:
            return self._regression_step(X, y, sample_weight)
        batches, labels = (X[None] if X.ndim == 2 else X), (y[None] if y.ndim == 1 else y)
        if batches.ndim != 3 or batches.shape[0] not in (1, self.members) or labels.shape != batches.shape[:2]:
            raise ValueError(f"X must be (B, D) or ({self.members}, B, D) and y (B,) or ({self.members}, B) "
                             f"to match, got shapes {X.shape} and {y.shape}")
        if self.plan is None:
            indices, n_classes = step_class_indices(labels.reshape(-1), labels.size)
            labels = indices.reshape(labels.shape)
            self.build(batches.shape[2], n_classes)
        if not self.plan.plain_batch(batches, labels):  # (most batches are: one compiled pass checks them)
            batches = as_features(batches.reshape(-1, batches.shape[2]), self.plan.layers[0],
                                  self.plan.dtype).reshape(batches.shape)
            labels = as_class_indices(labels.reshape(-1), labels.size, self.plan.layers[-1]).reshape(labels.shape)
        if batches.shape[1] > self.plan.capacity:
            self._grow_plan(batches.shape[1])
        weights = None
        if sample_weight is not None:
            weights = as_sample_weights(sample_weight, batches.shape[1], self.plan.dtype)[None]
        return self.plan.step(batches, labels, weights).copy()

    def _regression_step(self, X, y, sample_weight) -> np.ndarray:
        """step for regressors: X (B, D) and targets y (B,) / (B, K), shared by every member,
        used as given (no standardisation)."""
        if X.ndim != 2:
            raise ValueError(f"a regression stack steps on one shared batch X (B, D), got shape {X.shape}")
        X = as_features(X, None if self.plan is None else self.plan.layers[0], self.configs[0].dtype)
        targets = as_targets(y, X.shape[0], None if self.plan is None else self.plan.layers[-1], self.configs[0].dtype)
        if self.plan is None:
            self.build(X.shape[1], targets.shape[1])
        if X.shape[0] > self.plan.capacity:
            self._grow_plan(X.shape[0])
        weights = None if sample_weight is None else as_sample_weights(sample_weight, X.shape[0], self.plan.dtype)[None]
        return self.plan.step(X[None], targets[None], weights).copy()

    # ------------------------------------------------------------ epochs
    def fit(self, X, y, X_val=None, y_val=None, sample_weight=None, callbacks=(),
            warm_start: bool = False) -> list[list[dict]]:
        """Train every member as ``Trainer(config_m).fit(X, y, X_val, y_val, sample_weight)``
        would; returns the histories.  A member that stops early is frozen with its best
        weights back in place while the others go on; one that diverges is marked
        ``"diverged"`` in ``results`` and frozen (its weights as before the bad step).
        ``warm_start``: go on from where the stack is (after ``request_stop`` or
        ``from_checkpoint``) instead of starting over."""
        with threads_while(self.configs[0].threads, self.configs[0].backend):
            self._open(X, y, X_val, y_val, sample_weight, callbacks, warm_start).run()
        return self.histories

    def open_fit(self, X, y, X_val=None, y_val=None, sample_weight=None, callbacks=(),
                 warm_start: bool = False) -> StackFit:
        """fit's set-up (every member built from its seed, the classes, each member's data)
        without any epoch: the StackFit returned runs the epochs one at a time, and between
        two of them takes members out of their slots and seats new ones (a stack whose slots
        are refilled: StackFit's docstring).  The arguments are fit's (``warm_start``: go on
        from a stop or a checkpoint; a slot whose member had ended is ``ended`` again).  The
        config's threads hold in the calling thread until ``close``, as fit holds them while
        it runs."""
        fit = self._open(X, y, X_val, y_val, sample_weight, callbacks, warm_start)
        shared = self.configs[0]
        fit._threads.enter_context(threads_while(shared.threads, shared.backend))
        return fit

    def _open(self, X, y, X_val, y_val, sample_weight, callbacks, warm_start: bool) -> StackFit:
        dtype = self.configs[0].dtype
        warm = warm_start and self.plan is not None
        X = as_features(X, self.plan.layers[0] if warm else None, dtype)
        sample_weight = as_sample_weights(sample_weight, X.shape[0], np.float64)
        if self.regression:  # targets (N, K), no classes
            y = as_targets(y, X.shape[0], None if self.plan is None else self.plan.layers[-1], np.float64)
            classes, outputs = None, y.shape[1]
        else:
            y = as_labels(y, X.shape[0])
            classes = unique_labels(y)
            outputs = len(classes)
            if len(classes) < 2:
                raise ValueError("y has 1 class; classification needs at least 2")
        # what a refused fit puts back (data refused before any epoch: the fitted stack stays as
        # it was, as Trainer.fit keeps its model); every trainer's model and optimizer are new objects
        kept = (self.__dict__.copy(), [t.snapshot() for t in self.trainers]) if self.plan is not None else None
        try:
            if not warm:
                for trainer in self.trainers:
                    trainer.model = None
                    trainer.start_over()
                    trainer.classes_ = classes
                self.statuses = [("training", None)] * self.members
                self.build(X.shape[1], outputs)
            elif not self.regression and not np.array_equal(classes, self.trainers[0].classes_):
                raise ValueError("warm_start continues the stack's training: y must have the classes it was trained on")
            X_val, y_val = self.trainers[0].checked_validation_data(X_val, y_val)  # (before any epoch)
            for trainer in self.trainers:
                trainer.model.classes = classes
            members = [member_data(trainer, X, y, X_val, y_val, sample_weight, status, error)
                       for trainer, (status, error) in zip(self.trainers, self.statuses)]
            any_weights = self.prepare_batches(X, members)
        except Exception:
            if kept is not None and not warm:
                self.__dict__.update(kept[0])
                for trainer, state in zip(self.trainers, kept[1]):
                    trainer.put_back(state)
            raise
        return StackFit(self, X, members, any_weights, callbacks, _Seating(y, X_val, y_val, sample_weight, classes))

    def prepare_batches(self, X, members: list[_Member]) -> bool:
        """Before a fit's epochs: the batch buffers, the labels every member shares (when they
        do), and on cuda the data on the device.  Returns whether any member weighs its rows."""
        self._batches = {}
        any_weights = any(m.weights is not None for m in members)
        # the labels (or encoded targets) of X's rows when every member has the same ones (a
        # classifier's always: the classes are the stack's), which one gather serves
        same = all(np.array_equal(m.y_idx, members[0].y_idx) for m in members[1:])
        self._shared_labels = members[0].y_idx if same else None
        self._device = None
        if self.plan.on_device:  # the data goes up once (every member encodes y alike)
            from numbamlp.plan import DeviceData

            if not same:
                raise ValueError("a cuda stack of regressors needs every member to standardise its targets "
                                 "alike: give them the same early stopping and validation settings")
            weights = None
            if any_weights:
                weights = np.stack([np.ones(X.shape[0], self.plan.dtype) if m.weights is None else m.weights
                                    for m in members])
            self._device = DeviceData(self.plan.kernels, X, members[0].y_idx, weights)
        return any_weights

    def train(self, X, members: list[_Member], any_weights: bool, callbacks) -> None:
        """The epochs of a fit (Trainer.fit runs them as a stack of one): StackFit.run, the
        one loop for every M.  X (N, D) of the plan's dtype; ``members`` from member_data,
        after prepare_batches."""
        StackFit(self, X, members, any_weights, callbacks).run()

    def cancel_member(self, member: int) -> None:
        """Stop member ``member`` after the step in progress (safe from another thread): it
        is frozen as it is, its status "cancelled", and the others go on: in the fit under way,
        or the next one (the fit after that trains every member again)."""
        if isinstance(member, bool) or not isinstance(member, (int, np.integer)) or not 0 <= member < self.members:
            raise ValueError(f"member must be a member's index, 0..{self.members - 1}, got {member!r}")
        self._cancelled.add(int(member))

    def add_step_hook(self, hook) -> None:
        """Call ``hook()`` after every step of the stack (e.g. to look for cancelled jobs)."""
        self._step_hooks.append(hook)

    def request_stop(self, reason=None) -> None:
        """Ask ``fit`` to stop after the step in progress (safe from a signal handler); the
        stack can then be checkpointed and ``fit(..., warm_start=True)`` goes on exactly there."""
        self._stop_reason = reason if reason is not None else "stop requested"

    def _epoch(self, X, members: list[_Member], any_weights: bool, callbacks) -> None:
        """One epoch of every running member: their steps side by side, then each member's
        end of epoch (validation, early stopping, callbacks).  A member whose epoch was
        interrupted goes on from where it stopped."""
        plan = self.plan
        running = [m for m in members if m.running]
        for index, member in enumerate(members):
            if member.running:
                progress = member.trainer.epoch_progress(len(member.rows))  # new, or interrupted
                member.order = member.rows[progress["order"]]
                member.started = time.perf_counter()
                plan.settings.lr[index] = progress["lr"]
        at = _EpochPositions(members)
        if len(members) == 1:
            self._steps_alone(X, members[0], at, any_weights, callbacks)
        else:
            self._steps_side_by_side(X, members, running, at, any_weights)
        at.write_back(members)
        ending = [index for index, member in enumerate(members) if member in running and member.running]
        scored = self._validation_metrics(members, ending)
        for index in ending:
            self._end_epoch(index, members[index], callbacks, X, scored.get(index))
        if self._stop_reason is not None and any(m.running for m in members):
            raise TrainingInterrupted(max(m.trainer.epoch for m in running), "end", self._stop_reason)

    def _steps_side_by_side(self, X, members: list[_Member], running: list[_Member], at: _EpochPositions,
                            any_weights: bool) -> None:
        """An epoch's steps of every running member, row lo of each one's order at a time."""
        batch = self.configs[0].batch_size
        starts, lengths = at.next_row[at.running_at_start], at.lengths[at.running_at_start]
        if starts.min() == starts.max() and lengths.min() == lengths.max():
            self._steps_in_lockstep(X, members, running, at, any_weights)
            return
        for lo in range(int(at.next_row[at.running_at_start].min()), int(at.lengths.max()), batch):
            # the members due a batch at row lo; those whose batch has the same number of rows step together
            due = np.array([member.running for member in members]) & (at.next_row <= lo) & (lo < at.lengths)
            sizes = np.minimum(batch, at.lengths - lo)
            for rows in np.unique(sizes[due]):
                self._step_members(X, members, at, np.flatnonzero(due & (sizes == rows)), lo, int(rows), any_weights)
            self._after_step(members)
            if self._stop_reason is not None and any(m.running and lo + batch < len(m.rows) for m in running):
                at.write_back(members)
                self._interrupt(running, lo // batch + 1)

    def _steps_in_lockstep(self, X, members: list[_Member], running: list[_Member], at: _EpochPositions,
                           any_weights: bool) -> None:
        """_steps_side_by_side when every running member is at the same row of an epoch of
        the same length (one data set, no epoch interrupted part way: the usual case): the
        same steps, in the same order, with the same bits, without working out at each row
        which members are due and with how many rows (~10 µs of Python a step).  The members
        stepping change only when one diverges or is cancelled; once none is left the epoch
        ends there (the general loop goes on calling the step hooks to the epoch's last row,
        stepping no one)."""
        batch = self.configs[0].batch_size
        indices = np.array(at.running_at_start)
        length = int(at.lengths[indices[0]])
        for lo in range(int(at.next_row[indices[0]]), length, batch):
            diverged = self._step_members(X, members, at, indices, lo, min(batch, length - lo), any_weights)
            self._after_step(members)
            if diverged or self._cancelled:
                indices = np.array([index for index in indices if members[index].running], dtype=np.int64)
            if self._stop_reason is not None and any(m.running and lo + batch < len(m.rows) for m in running):
                at.write_back(members)
                self._interrupt(running, lo // batch + 1)
            if not len(indices):
                return

    def _steps_alone(self, X, member: _Member, at: _EpochPositions, any_weights: bool, callbacks) -> None:
        """An epoch's steps of a stack of one (a Trainer's fit): _step_members's bookkeeping
        without its vectors over the members, which would cost a small model's step several
        times over; the same steps, in the same order, with the same bits.  On the host each
        batch's rows are gathered by index into one buffer Xb (B, D) (never a shuffled copy
        of X, which may be a memory map), its labels and weights sliced from the epoch's
        order.  Callbacks with an ``on_progress(epoch, rows_done, rows_total, loss)`` hear the
        running loss at most every PROGRESS_INTERVAL_S seconds."""
        if not member.running:
            return
        plan, batch, trainer = self.plan, self.configs[0].batch_size, member.trainer
        n, lr = int(at.lengths[0]), trainer.progress["lr"]
        order = at.orders[0, :n]  # this epoch's rows of X
        w_order = None if member.weights is None else member.weights[order]
        if self._device is None:
            y_order = member.y_idx[order]
            Xb = self._batch_buffer(X)
        else:  # the data stays on the GPU; the epoch's order goes up once
            device_order = self._device.upload(order[None])
        watchers = [callback.on_progress for callback in callbacks if hasattr(callback, "on_progress")]
        shown = time.perf_counter()
        plan.settings.active[0] = True
        total, weight_total = float(at.total[0]), float(at.weight_total[0])  # (Python floats: float64)
        for lo in range(int(at.next_row[0]), n, batch):
            count = min(batch, n - lo)
            wb = None if w_order is None else w_order[lo : lo + count]
            if wb is not None and not wb.any():  # rows all of weight 0: nothing to learn (and 0/0)
                at.next_row[0] = lo + batch
            else:
                if self._device is None:  # (mode="clip": valid indices, and numpy writes into Xb directly)
                    np.take(X, order[lo : lo + count], axis=0, out=Xb[:count], mode="clip")
                    loss = trainer.train_step(Xb[:count], y_order[lo : lo + count], wb, lr)
                else:  # this batch's rows gathered on the device, by index
                    loss = trainer.train_step(*self._device.batch(device_order, lo, count), lr)
                if not math.isfinite(loss):
                    member.status = "diverged"
                    member.error = str(TrainingDiverged.at_step(loss, trainer.epoch + 1, lo // batch + 1, lr))
                    return
                weight = count if wb is None else float(wb.sum())
                total += loss * weight
                weight_total += weight
                at.total[0], at.weight_total[0], at.next_row[0] = total, weight_total, lo + batch
                if watchers and time.perf_counter() - shown >= PROGRESS_INTERVAL_S:
                    shown = time.perf_counter()
                    for watch in watchers:
                        watch(trainer.epoch + 1, lo + count, n, total / weight_total)
            if self._step_hooks or self._cancelled:  # (after every batch, as side by side)
                self._after_step([member])
                if not member.running:  # cancelled: frozen as it is
                    return
            if self._stop_reason is not None and lo + batch < n:
                at.write_back([member])
                self._interrupt([member], lo // batch + 1)

    def _batch_buffer(self, X) -> np.ndarray:
        """The host buffer a stack of one gathers its batches into: (batch_size, D) of X's
        dtype, made once per fit (the short last batch is a view of its first rows)."""
        key = ("alone", X.dtype)
        if key not in self._batches:
            self._batches[key] = np.empty((self.configs[0].batch_size, X.shape[1]), X.dtype)
        return self._batches[key]

    def _after_step(self, members: list[_Member]) -> None:
        """The step hooks, then the cancels they (or anyone) asked for."""
        for hook in self._step_hooks:
            hook()
        for index in list(self._cancelled):
            if members[index].running:
                members[index].status = "cancelled"

    def _interrupt(self, running: list[_Member], step: int) -> None:
        for member in running:
            progress = member.trainer.progress
            if progress is not None:
                progress["seconds"] += time.perf_counter() - member.started
        raise TrainingInterrupted(max(m.trainer.epoch for m in running) + 1, step, self._stop_reason)

    def _step_members(self, X, members, at: _EpochPositions, indices: np.ndarray, lo: int, rows: int,
                      any_weights: bool) -> bool:
        """One step of members ``indices`` (each due ``rows`` rows from row ``lo`` of its epoch's
        order); their positions and loss totals move on in ``at``, a member whose loss is
        not finite is marked diverged (then True is returned)."""
        batch = self.configs[0].batch_size
        picks = at.orders[indices, lo : lo + rows]  # (k, rows): each member's rows of X
        if any_weights:  # a member whose rows here all weigh 0 has nothing to learn (and 0/0): it skips the step
            weighs = np.array([members[index].weights is None or members[index].weights[picked].any()
                               for index, picked in zip(indices, picks)])
            at.next_row[indices[~weighs]] = lo + batch
            indices, picks = indices[weighs], picks[weighs]
            if not len(indices):
                return False
        active = self.plan.settings.active
        active[:] = False
        active[indices] = True
        losses = self.plan.step(*self._batch(X, members, indices, picks, rows, any_weights))[indices]
        finite = np.isfinite(losses)
        if not any_weights and finite.all():  # (the usual step: the lines below, without their masks)
            at.total[indices] += losses * rows
            at.weight_total[indices] += rows
            at.next_row[indices] = lo + batch
            return False
        for index, loss in zip(indices[~finite], losses[~finite]):
            trainer = members[index].trainer
            members[index].status = "diverged"
            members[index].error = str(TrainingDiverged.at_step(float(loss), trainer.epoch + 1, lo // batch + 1,
                                                                trainer.progress["lr"]))
        if any_weights:  # (each member's weight summed in its weights' dtype, as Trainer sums a batch's)
            weight = np.array([rows if members[index].weights is None else float(members[index].weights[picked].sum())
                               for index, picked in zip(indices, picks)])[finite]
        else:
            weight = rows
        indices = indices[finite]
        at.total[indices] += losses[finite] * weight  # (float64, as the trainer's Python floats)
        at.weight_total[indices] += weight
        at.next_row[indices] = lo + batch
        return not finite.all()

    def _validation_metrics(self, members: list[_Member], ending: list[int]) -> dict[int, dict]:
        """{member index: its validation metrics} for the ``ending`` members that share their
        validation rows with another (a sweep's members, given X_val): scored together,
        stacked_scores's one GEMM per layer instead of a Trainer.evaluate each (~0.3 ms of
        numpy calls per member and epoch).  The others (and a cuda stack's) are left to
        their trainers."""
        if self.plan.on_device:
            return {}
        sharing: dict[int, list[int]] = {}
        for index in ending:
            if members[index].X_val is not None:
                sharing.setdefault(id(members[index].X_val), []).append(index)
        scored = {}
        for indices in sharing.values():
            if len(indices) < 2:
                continue
            X_val, y_val, model = members[indices[0]].X_val, members[indices[0]].y_val, self.trainers[0].model
            with np.errstate(over="ignore", invalid="ignore"):  # (a diverged member's; its trainer says so)
                S = stacked_scores(self.plan.host.params[indices], model.layers, model.activation, X_val)
            if self.regression:  # (each member's own target standardisation)
                scored.update({index: self.trainers[index].metrics_of_scores(S[position], y_val)
                               for position, index in enumerate(indices)})
            else:  # (the stack's classes are every member's)
                ranks = [self.trainers[index].ranks_per_epoch for index in indices]
                for index, ranked, metrics in zip(indices, ranks, self.trainers[indices[0]].class_metrics(
                        S, y_val, any(ranks))):  # (each member's metrics as it scores them alone)
                    scored[index] = metrics if ranked else {name: value for name, value in metrics.items()
                                                            if name not in RANKING_METRICS}
        return scored

    def _end_epoch(self, index: int, member: _Member, callbacks, X, val: dict | None = None) -> None:
        """The member's end of epoch, as its trainer ends one (Member.end_epoch, and at its
        last epoch Trainer.fit's check of the trained model's scores on rows of X); a
        divergence marks the member instead of ending the fit.  ``val``: its validation
        metrics, when _validation_metrics scored them."""
        trainer = member.trainer
        try:
            if self._members_named:
                callbacks = [_ForMember(callback, index) for callback in callbacks]
            trainer.end_epoch(trainer.progress, member.started, member.X_val, member.y_val, callbacks, val)
        except TrainingDiverged as err:
            member.status, member.error = "diverged", str(err)
            return
        if trainer.stopped_early:
            member.status = "stopped early"
        elif trainer.epoch >= trainer.config.epochs:
            member.status = "done"
        if not member.running:
            trainer.restore_best()
        if not member.running:
            try:
                trainer.check_outputs_finite(X, member.rows)
            except TrainingDiverged as err:
                member.status, member.error = "diverged", str(err)

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self, directory) -> None:
        """Everything ``from_checkpoint`` needs to go on exactly here: one checkpoint per
        member (``member-000/``, ... as a Trainer's) and ``stack.json`` (their statuses)."""
        from pathlib import Path

        from numbamlp.io import atomic_write_json, save_checkpoint

        if self.plan is None:
            raise ValueError("the stack has nothing to checkpoint yet: call fit (or step) first")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for m, trainer in enumerate(self.trainers):
            save_checkpoint(directory / f"member-{m:03d}", trainer, trainer.config.model_dump(mode="json", by_alias=True))
        atomic_write_json(directory / "stack.json", {"members": self.members, "statuses": self.statuses})

    @classmethod
    def from_checkpoint(cls, directory) -> "StackTrainer":
        """A stack restored from ``save_checkpoint``; ``fit(X, y, warm_start=True)`` on the
        same data continues it bit for bit."""
        import json
        from pathlib import Path

        from numbamlp.io import load_checkpoint

        directory = Path(directory)
        saved = json.loads((directory / "stack.json").read_text())
        checkpoints = [load_checkpoint(directory / f"member-{m:03d}") for m in range(saved["members"])]
        stack = cls([meta["config"] for _, meta in checkpoints])
        layers = checkpoints[0][1]["layers"]
        stack.build(layers[0], layers[-1])
        for trainer, (arrays, meta) in zip(stack.trainers, checkpoints):
            trainer.restore(arrays, meta, meta["classes"])
        stack.statuses = [tuple(entry) for entry in saved["statuses"]]
        return stack

    @staticmethod
    def _result(member: _Member) -> dict:
        trainer = member.trainer
        last, best = trainer.epoch_metrics(trainer.epoch), trainer.epoch_metrics(trainer.best_epoch)
        return {
            "status": member.status,
            "epochs_run": trainer.epoch,
            "stopped_early": trainer.stopped_early,
            "best_epoch": trainer.best_epoch,
            "final_val_loss": last.get("val_loss"),
            "final_val_accuracy": last.get("val_accuracy"),
            "best_val_loss": best.get("val_loss"),
            "best_val_accuracy": best.get("val_accuracy"),
            **({f"{when}_val_{name}": metrics.get(f"val_{name}") for when, metrics in (("final", last), ("best", best))
                for name in ("mse", "r2")} if trainer.regression else {}),
            "error": member.error,
        }


class _Seating(NamedTuple):
    """What a member seated during a fit gets its data from (member_data): the fit's labels
    y (N,) or targets (N, K) float64, its validation rows (the same objects every member
    holds, so that they are still scored together), its row weights (N,) or None, and the
    stack's classes (None for regressors)."""

    y: np.ndarray
    X_val: np.ndarray | None
    y_val: np.ndarray | None
    sample_weight: np.ndarray | None
    classes: np.ndarray | None


# The statuses of a member that ended on its own and keeps the weights a Trainer's fit ends
# with (early stopping's best, restored at its end of epoch): it gets its decision threshold.
_FINISHED = ("done", "stopped early")


class StackFit:
    """A fit under way, an epoch at a time, whose slots can be refilled between epochs
    (issue 28: a search's trials of one stack key share a running stack, and when one is
    pruned or finishes, the next takes its slot)::

        fit = stack.open_fit(X, y, X_val, y_val)
        while fit.running():
            fit.run_epoch()
            for slot in fit.ended():                # done, stopped early, diverged, cancelled
                left = fit.release(slot)            # its model, history, result, ...
            for slot in fit.running():
                if should_prune(fit.history(slot)):
                    fit.release(slot, "pruned")     # stopped now, its weights as they are
            for slot in fit.vacant():
                if waiting:
                    fit.seat(slot, waiting.pop())   # its epoch 0 is the next run_epoch
        fit.close()

    Each member trains exactly as ``Trainer(config).fit(X, y, X_val, y_val, sample_weight)``
    alone for the epochs it trains, whichever epoch of the stack it was seated at (bit for
    bit on cpu): it is built from its seed, with fresh optimizer state and shuffles, and runs
    its own epoch count, learning-rate schedule and early stopping.  Slots are numbered as
    the stack's members (``stack.trainers[slot]``: the slot's member, or the last one to
    leave it); a callback's metrics carry the slot as ``"member"``.

    ``fit`` runs its epochs through one of these (``run``).  One opened by ``open_fit``
    holds the config's threads from there to ``close`` (Numba's setting is the calling
    thread's: run the epochs in the thread that opened it); numpy's BLAS is kept quiet
    during each epoch only, being the whole process's.  On cuda a seat copies the data up
    to the device again (prepare_batches).
    """

    def __init__(self, stack: StackTrainer, X, members: list[_Member], any_weights: bool, callbacks,
                 seating: _Seating | None = None):
        self.stack, self.X, self.members = stack, X, members
        self.any_weights, self.callbacks = any_weights, callbacks
        self._seating = seating  # (None: a Trainer's fit, which seats no one)
        self._key: dict | None = None  # (the stack key, once a member is seated)
        self._vacant: set[int] = set()
        # the config's threads while the fit is open (open_fit's; fit holds its own), put back
        # at its end: put back after each epoch, they cost a one-model fit's 2 ms epochs 5%
        # (the threads the steps had fitted to the load, kernels/pool.py, were sought anew)
        self._threads = contextlib.ExitStack()
        self._closed = False  # (after close or a stop: the stack's state is a finished fit's)

    def _open_or_refuse(self) -> None:
        if self._closed:
            raise ValueError("this fit has ended (close, or a stop): open another with StackTrainer.open_fit")

    # ------------------------------------------------------------ where each slot is
    def running(self) -> list[int]:
        """The slots whose member is still training."""
        return [slot for slot, member in enumerate(self.members) if member.running]

    def ended(self) -> list[int]:
        """The occupied slots whose member stopped on its own (done, stopped early, diverged,
        cancelled) and was not released yet."""
        return [slot for slot, member in enumerate(self.members) if not member.running and slot not in self._vacant]

    def vacant(self) -> list[int]:
        """The slots without a member (released ones): they cost no compute, and ``seat``
        fills them."""
        return sorted(self._vacant)

    def history(self, slot: int) -> list[dict]:
        """The slot's member's metrics of each epoch so far (a Trainer's history)."""
        return list(self._occupied(slot).trainer.history)

    def epochs_done(self, slot: int) -> int:
        """The epochs the slot's member has completed."""
        return self._occupied(slot).trainer.epoch

    def _occupied(self, slot: int) -> _Member:
        if isinstance(slot, bool) or not isinstance(slot, (int, np.integer)) or not 0 <= slot < len(self.members):
            raise ValueError(f"slot must be a slot's index, 0..{len(self.members) - 1}, got {slot!r}")
        if slot in self._vacant:
            raise ValueError(f"slot {slot} is vacant")
        return self.members[slot]

    # ------------------------------------------------------------ epochs
    def run_epoch(self) -> None:
        """One epoch of every running member, each at its own epoch count (StackTrainer's
        epoch: their steps side by side, then each one's end of epoch), numpy's BLAS quiet
        meanwhile; nothing when none is running.  TrainingInterrupted after
        ``stack.request_stop``, as from fit (then ``close``)."""
        self._open_or_refuse()
        if not self.running():
            return
        with quiet_blas(self.stack.configs[0].backend):
            self._epoch()

    def run(self) -> None:
        """Every epoch until no member is training, then ``close``: fit's loop (its caller
        holds the config's threads for the whole fit).  A stop or an error ends the fit as
        it stands (``_end``): no decision threshold is settled, a warm fit does that."""
        try:
            with quiet_blas(self.stack.configs[0].backend):
                while self.running():
                    self._epoch()
        except BaseException:
            self._end()
            raise
        self.close()

    def _epoch(self) -> None:
        self.stack._epoch(self.X, self.members, self.any_weights, self.callbacks)

    # ------------------------------------------------------------ members out and in
    def release(self, slot: int, status: str | None = None) -> dict:
        """Take the slot's member out of the stack, which leaves the slot vacant.

        ``status`` None: a member that ended on its own (``ended``) leaves with its status,
        and ends as its Trainer's fit would: done or stopped early, it gets its decision
        threshold (its best weights are back already, from its last end of epoch).  A status
        (e.g. "pruned"): a running member stops now, frozen with its weights as they are, as
        a Trainer's fit stopped between two epochs by ``request_stop`` leaves them (early
        stopping's best weights are not put back, no threshold is settled).

        Returns {"status", "error", "result" (a row of ``stack.results``), "model",
        "history", "epochs", "trainer" (its numbamlp.member.Member)}.  The member's model
        and optimizer state move out of the stack's rows into storage of their own (a plan
        of one, Member.own_plan), so a member seated here later overwrites nothing of it."""
        self._open_or_refuse()
        member = self._occupied(slot)
        if status is None:
            if member.running:
                raise ValueError(f"slot {slot}'s member is still training: give the status it leaves with "
                                 f"(e.g. 'pruned')")
            if member.status in _FINISHED:
                member.trainer.settle_threshold(member.X_val, member.y_val)
        elif not member.running:
            raise ValueError(f"slot {slot}'s member has ended already ({member.status}): release it with status None")
        elif not isinstance(status, str) or status == "training":
            raise ValueError(f"a member leaves with a status other than 'training', got {status!r}")
        else:
            member.status = status
        member.trainer.own_plan()
        self._vacant.add(slot)
        self.stack.statuses[slot] = (member.status, member.error)
        self.stack._cancelled.discard(slot)
        return self._leaving(slot)

    def seat(self, slot: int, config: TrainConfig | dict) -> None:
        """A new member in the vacant ``slot``, from ``config`` (its stack key must be the
        stack's: ValueError naming the setting that differs), which starts its epoch 0 at the
        next ``run_epoch``: built from its seed, fresh optimizer state and shuffles, trained
        on the fit's data (its own validation hold-out when it stops early without X_val)."""
        self._open_or_refuse()
        if self._seating is None:
            raise ValueError("only a fit opened with StackTrainer.open_fit seats members")
        if slot not in self._vacant:
            self._occupied(slot)  # (a slot's index)
            raise ValueError(f"slot {slot} holds a member: release it first")
        stack, data = self.stack, self._seating
        config = config if isinstance(config, TrainConfig) else TrainConfig.model_validate(config)
        if self._key is None:
            self._key = stack_key(stack.configs[0])  # (every member's: the stack was checked when made)
        if stack_key(config) != self._key:  # (one key a seat, not every member's: a refill of M slots is O(M))
            check_stack_key([*stack.configs[:slot], config, *stack.configs[slot + 1:]])
        trainer = Member(config)
        trainer.classes_ = data.classes
        trainer.build(stack.plan.layers[0], stack.plan.layers[-1])
        trainer.model.classes = data.classes
        member = member_data(trainer, self.X, data.y, data.X_val, data.y_val, data.sample_weight)
        members = [*self.members[:slot], member, *self.members[slot + 1:]]
        try:  # the batch buffers and shared labels (on cuda the data on the device) for the new members
            any_weights = stack.prepare_batches(self.X, members)
        except ValueError:  # (a cuda stack of regressors refuses one that standardises its targets otherwise)
            stack.prepare_batches(self.X, self.members)
            raise
        # the slot changes hands only from here: a member refused above leaves the fit as it was
        trainer.use_plan(stack.plan, slot)
        stack.trainers[slot], stack.configs[slot] = trainer, config
        stack.statuses[slot] = (member.status, member.error)
        stack._cancelled.discard(slot)  # (a cancel was for the member that left)
        self.members[slot] = member
        self.any_weights = any_weights
        self._vacant.discard(slot)

    def close(self) -> list[dict]:
        """The fit's end for the members still seated, as fit ends (those done or stopped
        early get their decision thresholds; ``stack.statuses`` and ``stack.results`` hold
        each slot's last member); returns their ``release`` dicts, in slot order.  They stay
        the stack's members, as after fit: their models are rows of the stack's plan until
        the stack trains again; one still running stays "training" (a warm fit goes on)."""
        if self._closed:
            return []
        seated = [slot for slot in range(len(self.members)) if slot not in self._vacant]
        try:
            for slot in seated:
                member = self.members[slot]
                if member.status in _FINISHED:  # (its decision threshold, from its final weights)
                    member.trainer.settle_threshold(member.X_val, member.y_val)
        finally:
            self._end()
        return [self._leaving(slot) for slot in seated]

    def _end(self) -> None:
        """What ends every fit, however it ends: the statuses and results, the threads as
        they were before open_fit, the stack ready for the next fit or step."""
        stack = self.stack
        stack._device = None
        stack._cancelled.clear()  # (a cancel is for the fit under way, or the next one)
        stack._stop_reason = None  # (so is a stop: one asked while the fit was set up is honoured, as Trainer's)
        stack.statuses = [(m.status, m.error) for m in self.members]
        stack.results = [stack._result(m) for m in self.members]
        stack._set_learning_rates()
        self._threads.close()
        self._closed = True

    def _leaving(self, slot: int) -> dict:
        member = self.members[slot]
        trainer = member.trainer
        return {"status": member.status, "error": member.error, "result": self.stack._result(member),
                "model": trainer.model, "history": list(trainer.history), "epochs": trainer.epoch, "trainer": trainer}
