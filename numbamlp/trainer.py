"""Minibatch training of an MLP on any backend.

Symbols: N rows, B batch size, D features, C classes, K regression outputs.

The trainer sees prepared arrays: features already standardised (if wanted), labels of
any sortable kind (classification) or float targets (N,) / (N, K) (regression).  It never
applies ``model.input_transform`` itself; a regressor's targets it standardises itself
(``data.standardize``), with the training rows' statistics, kept as ``model.target_transform``.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Protocol

import numpy as np

from numbamlp.config import TrainConfig
from numbamlp.kernels import STEP_GRADIENTS, STEP_TRAIN, get_backend
from numbamlp.kernels.pool import adapt_threads, look_at_the_next_step
from numbamlp.model import (
    MLP,
    SCORING_ROWS,
    Workspace,
    as_class_indices,
    as_features,
    as_labels,
    as_sample_weights,
    as_targets,
    layer_views,
    mean_cross_entropies,
    one_blas_thread,
    scores_in_chunks,
    step_class_indices,
    unique_labels,
)
from numbamlp.optim import Optimizer, learning_rate


def set_threads(threads: int, backend: str) -> None:
    """Run ``backend``'s kernels on ``threads`` CPU threads (at most the cores Numba sees).

    cpu: Numba's thread pool (a per-thread setting of the calling thread; the GEMMs run in
    it, scipy's BLAS on one thread, see kernels/cpu_backend.py).  numpy and reference:
    numpy's BLAS, process-wide.  See threads_while for a setting that ends with a fit.
    """
    if backend == "cpu":
        import numba

        numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    elif backend in ("numpy", "reference"):
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")


@contextlib.contextmanager
def threads_while(threads: int | None, backend: str):
    """A config's ``threads`` for the block (a fit), then the threads as they were: Numba's
    of the calling thread (cpu; None: as many as the steps choose, kernels/pool.py), numpy's
    BLAS (numpy, reference; None: no change)."""
    if (threads is None and backend != "cpu") or backend not in ("cpu", "numpy", "reference"):
        yield
        return
    if backend == "cpu":
        import numba

        before = numba.get_num_threads()
        if threads is not None:  # (None: the steps adapt the threads to the load, kernels/pool.py)
            set_threads(threads, backend)
        try:
            yield
        finally:
            numba.set_num_threads(before)
            if threads is None:
                look_at_the_next_step()
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def quiet_blas(backend: str):
    """While the cpu backend trains: numpy's BLAS on one thread.  Its GEMMs here are small
    (validation scores), and its idle threads spin long enough after each to take a core from
    the Numba step that follows: a 32-member fit with validation took 3.9 s, 1.3 s with this
    (bench/README.md).  Elsewhere (the numpy backend computes with that BLAS): no change."""
    if backend != "cpu":
        return contextlib.nullcontext()
    return one_blas_thread()  # (shared with scoring: a fit and a predict in two threads both hold it)


class Callback(Protocol):
    """Called after every epoch with that epoch's metrics (epoch, loss, lr, seconds, val_*).

    Two optional methods are called when a callback has them:
    ``on_progress(epoch, rows_done, rows_total, loss)`` within an epoch, at most every
    PROGRESS_INTERVAL_S seconds (epoch is the 1-based epoch in progress, loss the running
    mean of the epoch so far), and ``on_gradients_checked(error)`` once ``validate``'s
    check has passed, before the first epoch.
    """

    def on_epoch_end(self, epoch: int, metrics: dict) -> None: ...


PROGRESS_INTERVAL_S = 0.1


class TrainingDiverged(ValueError):
    """The loss or the weights stopped being finite: the weights are left as they were
    before the offending step (a non-finite loss never updates them)."""

    @classmethod
    def at_step(cls, loss: float, epoch: int, step: int, lr: float) -> "TrainingDiverged":
        return cls(f"training diverged: the loss became {loss} at epoch {epoch}, step {step} "
                   f"(learning rate {lr:g}); try a lower learning rate")

    @classmethod
    def in_epoch(cls, epoch: int, lr: float) -> "TrainingDiverged":
        return cls(f"training diverged: weights became non-finite during epoch {epoch} "
                   f"(learning rate {lr:g}); try a lower learning rate")


class TrainingInterrupted(Exception):
    """``request_stop`` was called (e.g. by a signal handler): training stopped after a
    complete step, with its position in the epoch kept, so ``state`` can checkpoint it and a
    restored trainer continues exactly there."""

    def __init__(self, epoch: int, step: int, reason):
        super().__init__(f"training interrupted in epoch {epoch} after step {step}")
        self.epoch, self.step, self.reason = epoch, step, reason


class GradientMismatch(ValueError):
    """validate=True found the backend's gradients too far from the reference path's."""


class Trainer:
    """Trains an MLP as the config says.

    ``fit(X, y)`` builds the model from the data (unless ``model.layers`` fixes it) and runs
    the epochs; ``step(Xb, yb)`` is one minibatch update and returns its loss;
    ``evaluate(X, y)`` gives loss and accuracy (regression: loss, mse, mae, r2).  Labels may
    be any sortable values; they are encoded to indices 0..C−1 and ``classes_`` (also
    ``model.classes``) maps them back.  Regression targets are encoded by standardising them
    (``model.target_transform``) and decoded in ``predict``.
    A second ``fit`` trains again from scratch on the data it is given (new weights from
    the seed, new optimizer state, history and shuffles), as scikit-learn does;
    ``fit(..., warm_start=True)`` continues instead, running the epochs after
    ``self.epoch`` (what resuming a checkpoint and ``partial_fit`` use).
    """

    def __init__(self, config: TrainConfig | dict | None = None, **overrides):
        if config is None:
            config = TrainConfig()
        elif isinstance(config, dict):
            config = TrainConfig.model_validate(config)
        if overrides:
            config = TrainConfig.model_validate({**config.model_dump(by_alias=True), **overrides})
        self.config = config
        self._threads_set = False  # (step sets config.threads once; fit sets it while it runs)
        self.model: MLP | None = None
        self._workspace: Workspace | None = None
        self._plan, self._member = None, 0  # the step plan this trainer's model is member _member of
        self._plain_step = None  # the plan's shortcut for plain batches (StepPlan.plain_step)
        self._start_over()

    def _start_over(self) -> None:
        """Forget everything a fit learned (the model is rebuilt by the next fit)."""
        self.classes_: np.ndarray | None = None
        self.history: list[dict] = []
        self.epoch = 0  # epochs completed
        self.best_val_loss = np.inf
        self.best_epoch: int | None = None  # the epoch whose weights early stopping keeps
        self.bad_epochs = 0  # epochs since the best validation loss
        self.stopped_early = False
        self.validation_error: float | None = None
        self._best_params: np.ndarray | None = None
        self._rng = np.random.default_rng(self.config.seed)
        self._progress: dict | None = None  # position inside an interrupted epoch
        self._stop_reason = None

    def continue_with(self, config: TrainConfig | dict) -> None:
        """Go on training under ``config`` from where this trainer is (the next
        ``fit(..., warm_start=True)``): the same network and optimizer, whose state is kept;
        new settings (more epochs, another learning rate or batch size) apply from the next
        epoch.  Early stopping starts afresh: its patience and its best weights so far.
        A config that changes what cannot change (the network, the optimizer, the task,
        dtype, backend) is refused: start a new Trainer for that."""
        if isinstance(config, dict):
            config = TrainConfig.model_validate(config)
        if self.model is not None:
            old = self.config
            for name, before, after in (("model", old.model, config.model), ("optimizer.name", old.optimizer.name,
                                        config.optimizer.name), ("task", old.task, config.task),
                                        ("dtype", old.dtype, config.dtype), ("backend", old.backend, config.backend)):
                if before != after:
                    raise ValueError(f"continue_with keeps the trained network and optimizer: {name} is {before!r} "
                                     f"here, the new config has {after!r}; start a new Trainer to change it")
        self.config = config
        if self.model is not None:  # (the optimizer is made with the model)
            self.optimizer.config = config.optimizer
            self._plan.set_member(self._member, config.optimizer)
        self.stopped_early, self.bad_epochs = False, 0
        self.best_val_loss, self.best_epoch, self._best_params = np.inf, None, None

    @property
    def fitted(self) -> bool:
        """Whether a fit has trained (or been restored) past its start."""
        return self.epoch > 0 or self._progress is not None

    def __getstate__(self):
        # modules, views and the step plan do not pickle: drop them and rebuild on load (the
        # model's parameters and the optimizer's state pickle as copies of their rows)
        self.synchronize()
        state = self.__dict__.copy()
        for name in ("_grads", "_workspace", "_plan", "_plain_step"):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._workspace = self._plan = self._plain_step = None
        self._threads_set = False  # (another process, perhaps: step sets them again)
        if self.model is not None:
            self._grads = layer_views(self._grad_flat, self.model.layers)
            self._make_plan(self.config.batch_size)

    # ------------------------------------------------------------ set-up
    @property
    def regression(self) -> bool:
        return self.config.task == "regression"

    def build(self, n_features: int, n_classes: int) -> MLP:
        """Create the model (and its gradient/optimizer buffers) for this data shape
        (n_classes: the classes, or a regressor's K outputs)."""
        cfg = self.config
        layers = cfg.model.layers or [n_features, *cfg.model.hidden, n_classes]
        if layers[0] != n_features:
            raise ValueError(f"model.layers starts with {layers[0]} inputs but the data has {n_features} features")
        if self.regression and layers[-1] != n_classes:
            raise ValueError(f"model.layers ends with {layers[-1]} outputs but the targets have {n_classes}")
        if layers[-1] != n_classes:  # (an output without a class would predict no label)
            raise ValueError(f"model.layers ends with {layers[-1]} outputs but the data has {n_classes} classes")
        self.set_model(MLP(layers, activation=cfg.model.activation, dtype=cfg.dtype, seed=cfg.seed, task=cfg.task))
        return self.model

    def set_model(self, model: MLP) -> None:
        """Train ``model`` (its weights are updated in place); resets the optimizer state."""
        self.model = model
        self._grad_flat = np.zeros_like(model.flat_params)
        self._grads = layer_views(self._grad_flat, model.layers)
        self.optimizer = Optimizer(self.config.optimizer, model.flat_params.size, model.dtype)
        self._workspace = self._plan = self._plain_step = None
        # the step plan of a stack of one (numbamlp.plan), the same step a StackTrainer runs,
        # on every backend (the reference path's too); the model's parameters and the
        # optimizer's state move into it.  On cuda they live on the device, and
        # synchronize() refreshes the model's host copies.
        self._make_plan(self.config.batch_size)

    def _make_plan(self, capacity: int) -> None:
        """A step plan of one member for batches of up to ``capacity`` rows (a bigger batch
        than planned for makes a new plan, which takes the state along)."""
        from numbamlp.plan import StepPlan

        self.synchronize()  # (cuda: the state the new plan takes is the device's)
        model = self.model
        self._plan = StepPlan(model.layers, model.activation, self.config.optimizer.name, 1, capacity,
                              model.dtype, self.config.backend, model.loss, self.config.threads)
        self.use_plan(self._plan, 0)

    def use_plan(self, plan, member: int) -> None:
        """Train as member ``member`` of a step plan (numbamlp.plan): the model's parameters,
        the gradients and the optimizer's state and step count move into that member's rows,
        and the plan takes this trainer's optimizer settings.  (On cuda the rows are the
        plan's host copies, which go up to the device here.)"""
        self._plan, self._member = plan, member
        self._plain_step = plan.plain_step() if plan.members == 1 else None
        self.model.use_storage(plan.host.params[member])
        self._grad_flat = plan.host.grads[member]
        self._grads = layer_views(self._grad_flat, self.model.layers)
        self.optimizer.use_storage(plan.optimizer_state(member), plan.settings.steps[member : member + 1])
        plan.set_member(member, self.config.optimizer)
        plan.push(member)

    def _workspace_for(self, rows: int) -> Workspace:
        if self._workspace is None or self._workspace.capacity < rows:
            self._workspace = Workspace(self.model, max(rows, self.config.batch_size))
        return self._workspace

    @property
    def lr(self) -> float:
        """The learning rate of the current (next) epoch."""
        return learning_rate(self.config.schedule, self.config.optimizer.lr, self.epoch, self.config.epochs)

    # ------------------------------------------------------------ one update
    def step(self, Xb, yb, sample_weight=None) -> float:
        """One minibatch update: forward, loss, backward, optimizer.  Returns the batch loss.

        Xb (B, D) features, yb (B,) class indices 0..C−1 (regression: targets (B,) or (B, K),
        used as given).  Builds the model on first use.
        """
        if not self._threads_set:  # (once: per step it would cost ~3 µs of a ~20 µs step)
            self._threads_set = True
            if self.config.threads is not None:
                set_threads(self.config.threads, self.config.backend)
        if self._plain_step is not None and sample_weight is None:  # a batch the step takes as it is
            if self._plan.adapts_threads:
                adapt_threads()
            loss = self._plain_step(Xb, yb, self.lr)
            if loss is not None:
                return loss
        Xb = as_features(Xb, self.model.n_features if self.model else None, self.config.dtype)
        if self.regression:
            yb = as_targets(yb, Xb.shape[0], self.model.n_classes if self.model else None, self.config.dtype)
            if self.model is None:
                self.build(Xb.shape[1], yb.shape[1])
        elif self.model is None:  # y is class indices: the classes are 0..C−1 (a later fit keeps them)
            yb, n_classes = step_class_indices(yb, Xb.shape[0])
            self.build(Xb.shape[1], n_classes)
            self.classes_ = self.model.classes = np.arange(n_classes)
        else:
            yb = as_class_indices(yb, Xb.shape[0], self.model.n_classes)
        return self._step(Xb, yb, as_sample_weights(sample_weight, Xb.shape[0], self.model.dtype), self.lr)

    def _step(self, Xb: np.ndarray, yb: np.ndarray, wb: np.ndarray | None, lr: float) -> float:
        """One update on validated arrays; a non-finite loss is returned without an update."""
        return self._plan_step(Xb, yb, wb, lr, STEP_TRAIN)

    def host_changed(self) -> None:
        """Say that the model's weights or the optimizer's state were changed on the host
        (restored, best weights put back): cuda copies them up to the device."""
        if self._plan is not None:
            self._plan.push(self._member)

    def _plan_step(self, Xb, yb, wb, lr: float, mode: int) -> float:
        """The step plan's step for this one model (mode STEP_GRADIENTS: the gradients only).
        Xb (B, D), yb (B,) or (B, K), wb (B,) or None; or, on cuda, device arrays (1, B, ·)
        already (targets (1, B, K))."""
        rows = Xb.shape[len(Xb.shape) - 2]
        if rows > self._plan.capacity:
            self._make_plan(rows)
        self._plan.settings.lr[0] = lr
        if len(Xb.shape) == 2:  # one model's batch → a stack of one's
            Xb, yb, wb = Xb[None], yb[None], None if wb is None else wb[None]
        return float(self._plan.step(Xb, yb, wb, mode)[0])

    def synchronize(self) -> None:
        """cuda: copy the weights, gradients and optimizer state from the GPU into ``model``
        and the optimizer (a no-op elsewhere, and when no step ran since).  fit, evaluate,
        predict and checkpoints call it; call it yourself after ``step`` before reading
        ``trainer.model``'s arrays."""
        if self._plan is not None:
            self._plan.pull()

    def _gradients(self, Xb, yb, wb) -> float:
        """The batch loss, with this backend's gradients in ``self._grads``, computed the way
        a training step computes them; the weights are left untouched."""
        loss = self._plan_step(Xb, yb, wb, 0.0, STEP_GRADIENTS)
        self.synchronize()  # (cuda: the gradients come down)
        return loss

    # ------------------------------------------------------------ epochs
    def fit(self, X, y, X_val=None, y_val=None, sample_weight=None, callbacks=(),
            warm_start: bool = False) -> list[dict]:
        """Train until ``config.epochs`` epochs are done; returns the history (one dict per epoch).

        Each epoch shuffles the rows with the trainer's generator (seeded from
        ``config.seed``) and visits every row once: the last, shorter batch is trained on.
        With early stopping and no (X_val, y_val), a stratified ``data.val_fraction`` (0.1
        if unset) of the rows is held out for validation.  A trainer that has already
        trained starts over unless ``warm_start`` (see the class docstring).  ``config.threads``
        holds while it runs (threads_while).
        """
        with threads_while(self.config.threads, self.config.backend):
            try:
                return self._fit(X, y, X_val, y_val, sample_weight, callbacks, warm_start)
            finally:
                # a stop is for the fit under way, or the next one when none is (a signal that
                # came while it was being set up was lost when this was cleared at the start);
                # once a fit ends, the next fit's is another
                self._stop_reason = None

    def _fit(self, X, y, X_val, y_val, sample_weight, callbacks, warm_start: bool) -> list[dict]:
        kept = None
        if self.fitted and not warm_start:
            kept = self.__dict__.copy()  # (what a refused fit puts back)
            self.model = None
            self._start_over()
        try:
            X, rows, y_idx, weights, X_val, y_val = self._fit_data(X, y, X_val, y_val, sample_weight)
        except Exception:
            if kept is not None:  # data refused before any epoch: the fitted model stays as it was
                self.__dict__.update(kept)
            raise
        if self.config.validate_gradients and self.epoch == 0:
            first = X if rows is None else X[rows[: 3 * self.config.batch_size]]
            error = self.validate_gradients(first, y_idx, weights)
            for callback in callbacks:
                getattr(callback, "on_gradients_checked", lambda error: None)(error)
        device = self._device_data(X, rows, y_idx, weights)
        with quiet_blas(self.config.backend):
            while self.epoch < self.config.epochs and not self.stopped_early:
                start = time.perf_counter()
                progress = self._run_epoch(X, rows, y_idx, weights, device, callbacks, start)
                self._end_epoch(progress, start, X_val, y_val, callbacks)
                if self._stop_reason is not None and self.epoch < self.config.epochs and not self.stopped_early:
                    raise TrainingInterrupted(self.epoch, "end", self._stop_reason)
        if self._best_params is not None:
            self.model.flat_params[...] = self._best_params
            self.host_changed()
        self._check_outputs_finite(X, rows)
        return self.history

    def _check_outputs_finite(self, X, rows) -> None:
        """TrainingDiverged when the trained weights, finite but blown up, give scores that
        are not (each step's loss was finite, from the weights before its update): the
        model would predict NaN.  Checked on up to 256 training rows (a copy of so few is no
        matter for the memory bound)."""
        if self.epoch == 0:
            return
        head = X[:256] if rows is None else X[rows[:256]]
        if not np.isfinite(self.scores(head)).all():
            raise TrainingDiverged(f"training diverged: the weights after epoch {self.epoch} give scores that are "
                                   f"not finite (learning rate {self.lr:g}); try a lower learning rate")

    def _fit_data(self, X, y, X_val, y_val, sample_weight):
        """What fit trains on: (X (N, D) of the model's dtype, the training rows of X (n,)
        int64 or None for all of them, their class indices (n,) or encoded targets (n, K),
        row weights (n,) or None, X_val, y_val), after the validation hold-out; builds the
        model (and learns the classes) on the first fit.  The training rows are gathered by
        index batch by batch, never copied out of X (issue 16's memory bound)."""
        X = as_features(X, None, self.config.dtype)
        weights = as_sample_weights(sample_weight, X.shape[0], np.float64)
        if self.regression:
            return self._regression_data(X, np.asarray(y), X_val, y_val, weights)
        y = as_labels(y, X.shape[0])
        if self.classes_ is None:  # (a model stepped before its first fit has classes 0..C−1)
            self.classes_ = unique_labels(y)
        if len(self.classes_) < 2:
            raise ValueError("y has 1 class; classification needs at least 2")
        if self.model is None:
            self.build(X.shape[1], len(self.classes_))
        elif self.model.n_classes != len(self.classes_):  # (a model given to set_model)
            raise ValueError(f"the model has {self.model.n_classes} outputs but y has {len(self.classes_)} classes")
        self.model.classes = self.classes_
        X_val, y_val = self.checked_validation_data(X_val, y_val)
        rows, X_val, y_val = self.validation_split(X, y, X_val, y_val)
        rows, y, weights = self._training_rows(rows, y, weights)
        y_idx = as_class_indices(self.encode(y), len(y), self.model.n_classes)
        X = as_features(X, self.model.n_features, self.model.dtype)
        return X, rows, y_idx, self._row_weights(y, weights), X_val, y_val

    @staticmethod
    def _training_rows(rows: np.ndarray, y, weights):
        """(rows, or None when every row trains; y and weights of those rows)."""
        if len(rows) == len(y):
            return None, y, weights
        return rows, y[rows], None if weights is None else weights[rows]

    def _regression_data(self, X, y, X_val, y_val, weights):
        """_fit_data for a regressor: the targets (N, K) float64, the hold-out, the target
        standardisation fitted on the training rows (first fit only, when data.standardize),
        the targets encoded with it in the model's dtype."""
        y = as_targets(y, X.shape[0], self.model.n_classes if self.model else None, np.float64)
        if self.model is None:
            self.build(X.shape[1], y.shape[1])
        X_val, y_val = self.checked_validation_data(X_val, y_val)
        rows, X_val, y_val = self.validation_split(X, y, X_val, y_val)
        rows, y, weights = self._training_rows(rows, y, weights)
        self.fit_target_transform(y, weights)
        X = as_features(X, self.model.n_features, self.model.dtype)
        return X, rows, self.encode(y), self._row_weights(y, weights), X_val, y_val

    def fit_target_transform(self, y_train: np.ndarray, sample_weight: np.ndarray | None = None) -> None:
        """Regression: standardise the targets with the training rows' (weighted) mean and
        standard deviation (y_train (N, K) float64, sample_weight (N,) or None; a constant
        target keeps scale 1), on a fit from scratch when ``data.standardize`` is on; a warm
        fit keeps the first fit's.  Weighted, so that weight 2 on a row means what the row
        twice means (scikit-learn's check_sample_weight_equivalence)."""
        if self.model.target_transform is None and self.config.data.standardize and not self.fitted:
            from numbamlp.data import Standardizer

            mean = np.average(y_train, axis=0, weights=sample_weight)
            scale = np.sqrt(np.average((y_train - mean) ** 2, axis=0, weights=sample_weight))
            scale[scale == 0] = 1.0
            self.model.target_transform = Standardizer(mean, scale)

    def checked_validation_data(self, X_val, y_val):
        """(X_val, y_val) checked against the model before any epoch trains (a mistake there
        would otherwise surface after the first epoch): both or neither, X_val's features
        (converted to the model's dtype), as many labels as rows, labels the model knows
        (regression: its K targets)."""
        if (X_val is None) != (y_val is None):
            raise ValueError("X_val and y_val go together: give both or neither")
        if X_val is None:
            return None, None
        X_val = as_features(X_val, self.model.n_features, self.model.dtype, name="X_val")
        if self.regression:
            return X_val, as_targets(y_val, X_val.shape[0], self.model.n_classes, np.float64)
        y_val = as_labels(y_val, X_val.shape[0], "y_val", "X_val")
        self.encode(y_val, name="y_val")
        return X_val, y_val

    def validation_split(self, X, y, X_val, y_val):
        """(the rows to train on, X_val, y_val): with early stopping and no validation data, a
        ``data.val_fraction`` (0.1 if unset) of the rows is held out (stratified by class, or
        a plain shuffle for regression), drawn with the data's seed (``data.seed``, else the
        config's); otherwise every row trains."""
        rows = np.arange(len(y))
        if self.config.early_stopping.patience and X_val is None:
            from numbamlp.data import data_seed, holdout_split

            fraction = self.config.data.val_fraction or 0.1
            rows, val_rows, _, _ = holdout_split(rows, y, fraction, data_seed(self.config.data, self.config.seed),
                                                 self.config.task)
            if len(val_rows) == 0:  # (said now: the first epoch's validation would find no rows)
                raise ValueError(f"{len(y)} rows are too few to hold out a validation split for early stopping "
                                 f"(val_fraction {fraction:g} of them is none); give X_val and y_val")
            X_val, y_val = X[val_rows], y[val_rows]
        return rows, X_val, y_val

    def _run_epoch(self, X, rows, y_idx, weights, device, callbacks, start: float) -> dict:
        """The steps of one epoch (from where an interrupted one stopped) on the training
        rows ``rows`` of X (None: all); returns its progress record: the order, next row, loss
        totals, learning rate and seconds."""
        n = len(y_idx)
        progress = self._epoch_progress(n)
        order, lr, batch = progress["order"], progress["lr"], self.config.batch_size
        x_order = order if rows is None else rows[order]  # the order's rows of X
        watchers = [callback.on_progress for callback in callbacks if hasattr(callback, "on_progress")]
        w_epoch = None if weights is None else weights[order]
        if device is None:  # each batch's rows are gathered by index into Xb (B, D), never a
            y_epoch = y_idx[order]  # shuffled copy of X (which may be a memory map)
            Xb = np.empty((min(batch, n), X.shape[1]), dtype=X.dtype)
        else:  # the data stays on the GPU; only the order goes up
            device_order = device.upload(order[None])
        shown = time.perf_counter()
        for lo in range(progress["next_row"], n, batch):
            step, count = lo // batch + 1, min(batch, n - lo)
            wb = None if w_epoch is None else w_epoch[lo : lo + count]
            if wb is not None and not wb.any():  # rows all of weight 0: nothing to learn (and 0/0)
                progress["next_row"] = lo + batch
                continue
            if device is None:  # (mode="clip": the order's indices are valid, and numpy then
                # writes into Xb directly instead of through a temporary)
                np.take(X, x_order[lo : lo + count], axis=0, out=Xb[:count], mode="clip")
                loss = self._step(Xb[:count], y_epoch[lo : lo + count], wb, lr)
            else:  # this batch's rows gathered on the device, by index
                loss = self._plan_step(*device.batch(device_order, lo, count), lr, STEP_TRAIN)
            if not math.isfinite(loss):
                raise TrainingDiverged.at_step(loss, self.epoch + 1, step, lr)
            weight = count if wb is None else float(wb.sum())
            progress["total"] += loss * weight
            progress["weight_total"] += weight
            progress["next_row"] = lo + batch
            if watchers and time.perf_counter() - shown >= PROGRESS_INTERVAL_S:
                shown = time.perf_counter()
                for watch in watchers:
                    watch(self.epoch + 1, lo + count, n, progress["total"] / progress["weight_total"])
            if self._stop_reason is not None and progress["next_row"] < n:
                progress["seconds"] += time.perf_counter() - start
                raise TrainingInterrupted(self.epoch + 1, step, self._stop_reason)
        return progress

    def _epoch_progress(self, n_rows: int) -> dict:
        """The progress record of the epoch under way, a new one (its shuffle of ``n_rows``
        rows and its learning rate) when the last one ended."""
        if self._progress is None:
            self._progress = {"order": self._rng.permutation(n_rows), "next_row": 0,
                              "total": 0.0, "weight_total": 0.0, "lr": self.lr, "seconds": 0.0}
        return self._progress

    def epoch_metrics(self, epoch: int | None) -> dict:
        """The history's metrics of ``epoch`` (1-based; {} for None or an epoch not run)."""
        return next((m for m in self.history if m.get("epoch") == epoch), {})

    def _end_epoch(self, progress: dict, start: float, X_val, y_val, callbacks, val: dict | None = None) -> None:
        """An epoch's end: the divergence check, its metrics (validation, early stopping)
        into the history, the callbacks.  ``val``: the validation metrics, where the caller
        scored them (a stack, all its members at once)."""
        self.synchronize()  # (cuda: the host weights are stale until now)
        if not np.isfinite(self.model.flat_params).all():
            raise TrainingDiverged.in_epoch(self.epoch + 1, progress["lr"])
        self._progress = None
        self.epoch += 1
        metrics = {"epoch": self.epoch, "loss": progress["total"] / progress["weight_total"], "lr": progress["lr"]}
        if X_val is not None:
            val = self.evaluate(X_val, y_val) if val is None else val
            metrics.update({f"val_{name}": value for name, value in val.items()})
            self._track_best(val["loss"])
        metrics["seconds"] = progress["seconds"] + time.perf_counter() - start
        self.history.append(metrics)
        for callback in callbacks:
            callback.on_epoch_end(self.epoch, metrics)

    def _device_data(self, X, rows, y_idx, weights):
        """cuda: the training rows of X (all, or ``rows``) on the GPU once
        (numbamlp.plan.DeviceData); None elsewhere."""
        if not self._plan.on_device:
            return None
        from numbamlp.plan import DeviceData

        return DeviceData(self._plan.kernels, X if rows is None else X[rows], y_idx, weights)

    def request_stop(self, reason=None) -> None:
        """Ask ``fit`` to stop after the step in progress (safe to call from a signal handler)."""
        self._stop_reason = reason if reason is not None else "stop requested"

    def _track_best(self, val_loss: float) -> None:
        stopping = self.config.early_stopping
        if stopping.patience is None:
            return
        if val_loss < self.best_val_loss - stopping.min_delta:
            self.best_val_loss = val_loss
            self.best_epoch = self.epoch
            self.bad_epochs = 0
            self._best_params = self.model.flat_params.copy()
        else:
            self.bad_epochs += 1
            self.stopped_early = self.bad_epochs >= stopping.patience

    def _row_weights(self, y, sample_weight) -> np.ndarray | None:
        """Per-row loss weights: sample_weight × class_weight[label] (None when all 1)."""
        class_weight = self.config.class_weight  # (None for regression: TrainConfig refuses it)
        if class_weight is None:
            if sample_weight is None or np.all(sample_weight == sample_weight[0]):
                return None  # equal weights: the plain mean, bit for bit
            return sample_weight.astype(self.model.dtype)
        if class_weight == "balanced":  # (counted with the sample weights, as scikit-learn's compute_class_weight)
            row_weight = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
            counts = np.array([row_weight[y == c].sum() for c in self.classes_])
            per_class = row_weight.sum() / (len(self.classes_) * np.where(counts > 0, counts, 1.0))
        else:
            texts = [_label_texts(c) for c in self.classes_.tolist()]
            unknown = set(class_weight) - set().union(*texts)
            if unknown:
                raise ValueError(f"class_weight names unknown classes: {', '.join(sorted(unknown))}")
            per_class = np.array([next((w for key, w in class_weight.items() if key in names), 1.0)
                                  for names in texts])
            if not per_class.any():
                raise ValueError("class_weight gives every class weight 0: nothing would train")
        weights = per_class[self.encode(y)]
        if sample_weight is not None:
            weights = weights * sample_weight
        return as_sample_weights(weights, len(y), self.model.dtype)

    def validate_gradients(self, X, y_idx, weights=None, batches: int = 3) -> float:
        """Compare this backend's gradients, computed as training computes them (the fused
        step on cpu), with the reference path on up to ``batches`` real minibatches; raises
        GradientMismatch beyond the dtype's tolerance.

        Returns (and stores as ``validation_error``) the largest relative error.
        """
        from numbamlp import reference
        from numbamlp.gradcheck import REFERENCE_TOLERANCE, grads_error

        batch = self.config.batch_size
        worst = 0.0
        for lo in range(0, min(X.shape[0], batches * batch), batch):
            Xb, yb = X[lo : lo + batch], y_idx[lo : lo + batch]
            wb = None if weights is None else weights[lo : lo + batch]
            self._gradients(Xb, yb, wb)
            _, ref = reference.mean_loss_and_grads(self.model.params, self.model.activation, Xb, yb, wb,
                                                   self.model.loss)
            worst = max(worst, grads_error(self._grads, ref))
        self.validation_error = worst
        tolerance = REFERENCE_TOLERANCE[self.model.dtype.name]
        if not worst <= tolerance:
            raise GradientMismatch(
                f"backend {self.config.backend!r} gradients differ from the reference path by "
                f"{worst:.2e} (tolerance {tolerance:g} for {self.model.dtype.name})"
            )
        return worst

    # ------------------------------------------------------------ evaluation
    def encode(self, y, name: str = "y") -> np.ndarray:
        """Labels → class indices; ValueError for labels not seen in training.  Regression:
        targets (N,) or (N, K) → (N, K) in the model's dtype, standardised by
        ``model.target_transform`` when it has one.

        Before ``fit`` has seen labels, y must already be class indices 0..C−1.
        """
        if self.regression:
            y = as_targets(y, len(y), self.model.n_classes, np.float64)
            transform = self.model.target_transform
            if transform is not None:
                y = transform.transform(y)
            return np.ascontiguousarray(y, dtype=self.model.dtype)
        y = np.asarray(y)
        if self.classes_ is None:
            return as_class_indices(y, len(y), self.model.n_classes)
        try:
            positions = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
            known = self.classes_[positions] == y
        except TypeError:  # labels that do not compare with the classes (e.g. strings against numbers)
            known = np.zeros(len(y), bool)
        if not np.all(known):
            unknown = ", ".join(repr(label) for label in unique_labels(y[~np.asarray(known, bool)])[:3].tolist())
            raise ValueError(f"{name} holds labels that were not seen in training: {unknown}"
                             f" (the classes: {_summary(self.classes_)})")
        return positions

    def scores(self, X) -> np.ndarray:
        """Logits (N, C), computed in batches with the numpy backend: inference is GEMM-bound,
        and loading the cpu backend's batch-major kernels from Numba's cache cost ~50 ms of
        `numbamlp train`'s start-up for nothing (bench/README.md).  X is already in the
        model's units (no input_transform: fit standardised it); the workspace is the calling
        thread's (MLP.scoring_workspace), never the training one, so predictions from several
        threads, or beside a step, do not share rows."""
        if self.model is None:
            raise ValueError("this Trainer has no model yet: call fit (or step) first")
        self.synchronize()
        X = as_features(X, self.model.n_features, self.model.dtype)
        return scores_in_chunks(get_backend("numpy"), self.model, X,
                                self.model.scoring_workspace(min(X.shape[0], SCORING_ROWS)))

    def predict(self, X) -> np.ndarray:
        """Predicted labels, in the values ``fit`` was given (regression: values in the
        targets' units, (N,) for one output, else (N, K))."""
        if self.regression:
            return self.model.values(self.scores(X))
        return self.classes_[np.argmax(self.scores(X), axis=1)]

    def evaluate(self, X, y) -> dict:
        """{"loss": mean cross-entropy, "accuracy": fraction correct} on (X, y); regression:
        {"loss": the training loss (½ mean squared error in the standardised units), "mse",
        "mae", "r2"} (regression_metrics, in the targets' units)."""
        return self.metrics_of_scores(self.scores(X), y)

    def metrics_of_scores(self, S, y) -> dict:
        """evaluate's metrics of this model's scores S (N, C) against y (N,) (regression: (N,)
        or (N, K) targets)."""
        if self.regression:
            y = as_targets(y, S.shape[0], self.model.n_classes, np.float64)
            encoded = self.encode(y)
            loss = float(0.5 * np.mean(np.sum((S.astype(np.float64) - encoded) ** 2, axis=1)))
            return {"loss": loss, **regression_metrics(y, self.model.values(S))}
        return self.class_metrics(S[None], y)[0]

    def class_metrics(self, S, y) -> list[dict]:
        """{"loss", "accuracy"} of each of M classifiers sharing this one's classes, from
        their scores S (M, N, C), against labels y (N,): each the bits it gets alone."""
        y_idx = self.encode(as_labels(y, S.shape[1]))
        with np.errstate(over="ignore", invalid="ignore"):  # (scores that are not finite: a NaN loss, said by fit)
            losses = mean_cross_entropies(S, y_idx)
        accuracies = np.mean(np.argmax(S, axis=2) == y_idx, axis=1)
        return [{"loss": float(loss), "accuracy": float(accuracy)} for loss, accuracy in zip(losses, accuracies)]

    # ------------------------------------------------------------ checkpoints
    def state(self) -> tuple[dict, dict]:
        """(arrays, metadata) that let a new Trainer continue exactly where this one is."""
        if self.model is None:
            raise ValueError("this Trainer has nothing to checkpoint yet: call fit (or step) first")
        self.synchronize()
        arrays = {"params": self.model.flat_params}
        if self.model.target_transform is not None:
            arrays["target_transform.mean"] = self.model.target_transform.mean
            arrays["target_transform.scale"] = self.model.target_transform.scale
        arrays.update({f"optimizer.{k}": v for k, v in self.optimizer.state.items()})
        if self._best_params is not None:
            arrays["best_params"] = self._best_params
        meta = {
            "epoch": self.epoch,
            "optimizer_steps": self.optimizer.step_count,
            "rng_state": self._rng.bit_generator.state,
            "best_val_loss": None if np.isinf(self.best_val_loss) else self.best_val_loss,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped_early,
            "history": self.history,
            "layers": self.model.layers,
            "progress": None,
        }
        if self._progress is not None:
            arrays["progress.order"] = self._progress["order"]
            meta["progress"] = {k: v for k, v in self._progress.items() if k != "order"}
        return arrays, meta

    def restore(self, arrays: dict, meta: dict, classes) -> None:
        """Load what ``state`` produced (the model must already have the saved layers)."""
        if list(meta["layers"]) != self.model.layers:
            raise ValueError(f"checkpoint is for layers {meta['layers']}, the model has {self.model.layers}")
        self.model.flat_params[...] = arrays["params"]
        for key, buffer in self.optimizer.state.items():
            buffer[...] = arrays[f"optimizer.{key}"]
        self.host_changed()
        self._best_params = arrays.get("best_params")
        self.optimizer.step_count = int(meta["optimizer_steps"])
        self._rng.bit_generator.state = meta["rng_state"]
        self.epoch = int(meta["epoch"])
        self.best_val_loss = np.inf if meta["best_val_loss"] is None else float(meta["best_val_loss"])
        self.best_epoch = meta.get("best_epoch")  # absent from checkpoints written before it existed
        self.bad_epochs = int(meta["bad_epochs"])
        self.stopped_early = bool(meta["stopped_early"])
        self.history = list(meta["history"])
        self._progress = None
        if meta.get("progress") is not None:
            self._progress = {**meta["progress"], "order": np.asarray(arrays["progress.order"])}
        if "target_transform.mean" in arrays:
            from numbamlp.data import Standardizer

            self.model.target_transform = Standardizer(np.asarray(arrays["target_transform.mean"]),
                                                       np.asarray(arrays["target_transform.scale"]))
        self.classes_ = None if classes is None or np.ndim(classes) == 0 else np.asarray(classes)  # (a regressor: none)
        self.model.classes = self.classes_


def _label_texts(label) -> set[str]:
    """How a class label is written as a class_weight key (config keys are text): str(label),
    and for an integral float its integer too ("1" for the label 1.0, as 1 == 1.0)."""
    texts = {str(label)}
    if isinstance(label, float) and label.is_integer():
        texts.add(str(int(label)))
    return texts


def _summary(labels: np.ndarray) -> str:
    """A few of a classifier's labels, for a message: all of up to 6, else the first 3 … last 2."""
    shown = [repr(label) for label in labels.tolist()]
    return ", ".join(shown) if len(shown) <= 6 else f"{', '.join(shown[:3])}, ..., {', '.join(shown[-2:])}"


def regression_metrics(y, predictions) -> dict:
    """{"mse", "mae", "r2"} of predictions against targets y, (N,) or (N, K), in the targets'
    units, float64; with K outputs each is the mean over the outputs (R² as scikit-learn's
    r2_score, uniform average: 1 − Σ(y − ŷ)² / Σ(y − ȳ)² per output)."""
    y = np.asarray(y, dtype=np.float64).reshape(len(predictions), -1)
    error = np.asarray(predictions, dtype=np.float64).reshape(y.shape) - y
    spread = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    residual = np.sum(error**2, axis=0)
    r2 = np.where(spread > 0, 1.0 - residual / np.where(spread > 0, spread, 1.0), np.where(residual == 0, 1.0, 0.0))
    return {"mse": float(np.mean(error**2)), "mae": float(np.mean(np.abs(error))), "r2": float(np.mean(r2))}
