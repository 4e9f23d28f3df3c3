"""One model in training: the per-member state a stack of M ≥ 1 models keeps for each.

Symbols: N rows, B batch size, D features, C classes, K regression outputs.

A Member holds what is one model's alone — its config, model, optimizer state (its rows of
the step plan), classes, history, epoch count, early stopping's state and best weights, the
shuffle generator, and the progress of an interrupted epoch — and does what is done for one
model: build it, encode its labels, hold out its validation rows, weigh its rows, end an
epoch (validation, early stopping, callbacks), score, evaluate, checkpoint and restore.
The loop over epochs and steps is numbamlp.stack's, for every M; numbamlp.trainer.Trainer
is a Member with its own ``fit`` and ``step``.
"""

from __future__ import annotations

import time

import numpy as np

from numbamlp.arrays import as_class_indices, as_features, as_labels, as_sample_weights, as_targets, unique_labels
from numbamlp.config import DEFAULT_VAL_FRACTION, TrainConfig
from numbamlp.kernels import STEP_GRADIENTS, STEP_TRAIN, get_backend
from numbamlp.metrics import (HIGHER_IS_BETTER, RANKING_METRICS, best_threshold, check_metric_applies,
                              check_threshold_applies,
                              cross_entropies_and_probabilities, regression_metrics, stacked_classification_metrics)
from numbamlp.model import MLP, SCORING_ROWS, decisions, layer_views, scores_in_chunks
from numbamlp.optim import Optimizer, learning_rate


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

    def __reduce__(self):  # (pickled with its three arguments: a search's stack on Dask raises it)
        return type(self), (self.epoch, self.step, self.reason)


class GradientMismatch(ValueError):
    """validate=True found the backend's gradients too far from the reference path's."""


class Member:
    """One model in training: its config, model, optimizer state, place in a step plan and
    everything a fit has learned so far (classes, history, epochs, early stopping's best
    weights, the shuffle generator, where an interrupted epoch stopped).  The one training
    loop (numbamlp.stack.StackTrainer) drives members; a Trainer is a member with its own
    ``fit`` and ``step`` (the M = 1 view), so everything below is a Trainer's too.

    ``evaluate(X, y)`` gives loss and accuracy (regression: loss, mse, mae, r2).  Labels may
    be any sortable values; ``encode`` maps them to indices 0..C−1 and ``classes_`` (also
    ``model.classes``) back; a regressor's targets are encoded by standardising them
    (``model.target_transform``) and decoded in ``predict``.
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
        self._plan, self._member = None, 0  # the step plan this trainer's model is member _member of
        self._plain_step = None  # the plan's shortcut for plain batches (StepPlan.plain_step)
        self.start_over()

    def start_over(self) -> None:
        """Forget everything a fit learned (the model is rebuilt by the next fit)."""
        self.classes_: np.ndarray | None = None
        self.history: list[dict] = []
        self.epoch = 0  # epochs completed
        self.best_val_score: float | None = None  # the best value of early stopping's metric so far
        self.best_epoch: int | None = None  # the epoch whose weights early stopping keeps
        self.bad_epochs = 0  # epochs since the best value of early stopping's metric
        self.stopped_early = False
        self.validation_error: float | None = None
        self.best_params: np.ndarray | None = None
        self._rng = np.random.default_rng(self.config.seed)
        self.progress: dict | None = None  # position inside an interrupted epoch
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
        self.best_val_score, self.best_epoch, self.best_params = None, None, None

    @property
    def plan(self):
        """The step plan (numbamlp.plan.StepPlan) this member trains in; None before a model."""
        return self._plan

    def snapshot(self) -> dict:
        """What ``put_back`` needs to undo a fit refused before its first epoch (its data, say):
        the attributes as they are (a fit from scratch replaces the model and optimizer with
        new objects, so the old ones are kept whole)."""
        return self.__dict__.copy()

    def put_back(self, snapshot: dict) -> None:
        """Return to a ``snapshot``."""
        self.__dict__.update(snapshot)

    @property
    def fitted(self) -> bool:
        """Whether a fit has trained (or been restored) past its start."""
        return self.epoch > 0 or self.progress is not None

    def __getstate__(self):
        # modules, views and the step plan do not pickle: drop them and rebuild on load (the
        # model's parameters and the optimizer's state pickle as copies of their rows)
        self.synchronize()
        state = self.__dict__.copy()
        for name in ("_grads", "_plan", "_plain_step"):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._plan = self._plain_step = None
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
        self._plan = self._plain_step = None
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

    def own_plan(self) -> None:
        """Leave a shared step plan (a stack's) for a plan of one's own: the model's
        parameters, the gradients and the optimizer's state and step count are copied out of
        the shared rows, which the member that takes this one's place overwrites."""
        self._make_plan(self._plan.capacity)

    @property
    def lr(self) -> float:
        """The learning rate of the current (next) epoch."""
        return learning_rate(self.config.schedule, self.config.optimizer.lr, self.epoch, self.config.epochs)

    # ------------------------------------------------------------ one update
    def train_step(self, Xb: np.ndarray, yb: np.ndarray, wb: np.ndarray | None, lr: float) -> float:
        """One update on validated arrays (Xb (B, D), yb (B,) class indices or (B, K) targets,
        wb (B,) or None; on cuda device arrays (1, B, ·) too) at learning rate ``lr``: the step a
        stack of one takes in its fit, and Trainer.step after its checks.  A non-finite loss
        is returned without an update."""
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
    def check_outputs_finite(self, X, rows) -> None:
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

    def fit_target_transform(self, y_train: np.ndarray, sample_weight: np.ndarray | None = None) -> None:
        """Regression: standardise the targets with the training rows' (weighted) mean and
        standard deviation (y_train (N, K) float64, sample_weight (N,) or None; a constant
        target keeps scale 1), on a fit from scratch when ``data.standardize`` is on; a warm
        fit keeps the first fit's.  Weighted, so that weight 2 on a row means what the row
        twice means (scikit-learn's check_sample_weight_equivalence)."""
        if self.model.target_transform is None and self.config.data.standardize and not self.fitted:
            from numbamlp.transforms import Standardizer

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

    def check_stopping_metric(self) -> None:
        """ValueError when early_stopping.metric names a metric this model will not have: the
        config checked the task; the F1 the validation rows get depends on the classes
        (val_f1 for two, val_macro_f1 for more)."""
        metric = self.config.early_stopping.metric
        if metric is not None and not self.regression:
            try:
                check_metric_applies(metric, self.config.task, self.model.n_classes)
            except ValueError as err:
                raise ValueError(f"early_stopping.{err}") from None

    def check_threshold(self) -> None:
        """ValueError when the config asks for a decision threshold of a model that is not a
        binary classifier (the config checked the task; the classes are known now)."""
        if not self.regression:
            check_threshold_applies(self.config.threshold, self.model.n_classes)

    def settle_threshold(self, X_val, y_val) -> None:
        """Give a binary classifier its decision threshold after training (config.threshold):
        the number given, or the one that maximises the metric named on the validation rows
        (numbamlp.metrics.best_threshold)."""
        setting = self.config.threshold
        if self.regression:
            return
        if setting is None or not isinstance(setting, str):  # (a warm fit without one keeps no old one)
            self.model.threshold = None if setting is None else float(setting)
            return
        probabilities = cross_entropies_and_probabilities(self.scores(X_val)[None], self.encode(y_val))[1][0]
        self.model.threshold = best_threshold(self.encode(y_val), probabilities[:, 1], setting)

    def validation_split(self, X, y, X_val, y_val):
        """(the rows to train on, X_val, y_val): with early stopping (or a decision threshold to
        choose) and no validation data, a
        ``data.val_fraction`` (numbamlp.config.DEFAULT_VAL_FRACTION if unset) of the rows is held
        out (stratified by class, or a plain shuffle for regression), drawn with the data's seed
        (``data.seed``, else the config's); otherwise every row trains."""
        rows = np.arange(len(y))
        if (self.config.early_stopping.patience or isinstance(self.config.threshold, str)) and X_val is None:
            from numbamlp.data import data_seed, holdout_split

            fraction = self.config.data.val_fraction or DEFAULT_VAL_FRACTION
            rows, val_rows, _, _ = holdout_split(rows, y, fraction, data_seed(self.config.data, self.config.seed),
                                                 self.config.task)
            if len(val_rows) == 0:  # (said now: the first epoch's validation would find no rows)
                raise ValueError(f"{len(y)} rows are too few to hold out a validation split for early stopping "
                                 f"(val_fraction {fraction:g} of them is none); give X_val and y_val")
            X_val, y_val = X[val_rows], y[val_rows]
        return rows, X_val, y_val

    def epoch_progress(self, n_rows: int) -> dict:
        """The progress record of the epoch under way, a new one (its shuffle of ``n_rows``
        rows and its learning rate) when the last one ended."""
        if self.progress is None:
            self.progress = {"order": self._rng.permutation(n_rows), "next_row": 0,
                              "total": 0.0, "weight_total": 0.0, "lr": self.lr, "seconds": 0.0}
        return self.progress

    def epoch_metrics(self, epoch: int | None) -> dict:
        """The history's metrics of ``epoch`` (1-based; {} for None or an epoch not run)."""
        return next((m for m in self.history if m.get("epoch") == epoch), {})

    def end_epoch(self, progress: dict, start: float, X_val, y_val, callbacks, val: dict | None = None) -> None:
        """An epoch's end: the divergence check, its metrics (validation, early stopping)
        into the history, the callbacks.  ``val``: the validation metrics, where the caller
        scored them (a stack, all its members at once)."""
        self.synchronize()  # (cuda: the host weights are stale until now)
        if not np.isfinite(self.model.flat_params).all():
            raise TrainingDiverged.in_epoch(self.epoch + 1, progress["lr"])
        self.progress = None
        self.epoch += 1
        metrics = {"epoch": self.epoch, "loss": progress["total"] / progress["weight_total"], "lr": progress["lr"]}
        if X_val is not None:
            val = self.metrics_of_scores(self.scores(X_val), y_val, self.ranks_per_epoch) if val is None else val
            # (a classifier's log loss is its val_loss clipped: the history keeps the exact one alone)
            metrics.update({f"val_{name}": value for name, value in val.items() if name != "log_loss"})
            self._track_best(metrics)
        metrics["seconds"] = progress["seconds"] + time.perf_counter() - start
        self.history.append(metrics)
        for callback in callbacks:
            callback.on_epoch_end(self.epoch, metrics)

    def saved_epoch_metrics(self) -> dict:
        """The history's metrics of the epoch whose weights the model holds after a fit:
        early stopping's best epoch, else the last (what a run's or a member's summary reports)."""
        return self.epoch_metrics(self.best_epoch if self.best_epoch is not None else self.epoch)

    @property
    def training_seconds(self) -> float:
        """The seconds the epochs so far took (their history's, resumed fits included)."""
        return sum(m.get("seconds", 0.0) for m in self.history)

    def restore_best(self) -> None:
        """Put the best epoch's weights back (early stopping's, when it kept any): what the end
        of a fit does, and a warm fit that finds nothing left to train."""
        if self.best_params is not None:
            self.model.flat_params[...] = self.best_params
            self.host_changed()

    def _track_best(self, metrics: dict) -> None:
        """Early stopping at an epoch's end, from its ``metrics`` (the history's): the epoch is
        the best so far when its early_stopping.metric beats the best by more than min_delta
        (higher or lower, as HIGHER_IS_BETTER says); an undefined (None) or NaN value never does."""
        stopping = self.config.early_stopping
        if stopping.patience is None:
            return
        value = metrics.get(stopping.watched_metric)
        if _improves(value, self.best_val_score, HIGHER_IS_BETTER[stopping.watched_metric], stopping.min_delta):
            self.best_val_score = value
            self.best_epoch = self.epoch
            self.bad_epochs = 0
            self.best_params = self.model.flat_params.copy()
        else:
            self.bad_epochs += 1
            self.stopped_early = self.bad_epochs >= stopping.patience

    def row_weights(self, y, sample_weight) -> np.ndarray | None:
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
        return self.classes_[decisions(self.scores(X), self.model.threshold)]

    def evaluate(self, X, y) -> dict:
        """{"loss": mean cross-entropy, then numbamlp.metrics.classification_metrics: "accuracy",
        "balanced_accuracy", "f1" (two classes) or "macro_f1", "roc_auc", "average_precision",
        "log_loss"} on (X, y); regression: {"loss": the training loss (½ mean squared error in
        the standardised units), "mse", "mae", "r2"} (regression_metrics, in the targets' units)."""
        return self.metrics_of_scores(self.scores(X), y)

    @property
    def ranks_per_epoch(self) -> bool:
        """Whether each epoch's validation metrics include numbamlp.metrics.RANKING_METRICS:
        only when early stopping watches one of them."""
        metric = self.config.early_stopping.metric
        return metric is not None and metric.removeprefix("val_") in RANKING_METRICS

    def metrics_of_scores(self, S, y, ranking: bool = True) -> dict:
        """evaluate's metrics of this model's scores S (N, C) against y (N,) (regression: (N,)
        or (N, K) targets); ``ranking`` False: without numbamlp.metrics.RANKING_METRICS."""
        if self.regression:
            y = as_targets(y, S.shape[0], self.model.n_classes, np.float64)
            encoded = self.encode(y)
            loss = float(0.5 * np.mean(np.sum((S.astype(np.float64) - encoded) ** 2, axis=1)))
            return {"loss": loss, **regression_metrics(y, self.model.values(S))}
        return self.class_metrics(S[None], y, ranking, self.model.threshold)[0]

    def class_metrics(self, S, y, ranking: bool = True, threshold: float | None = None) -> list[dict]:
        """evaluate's metrics of each of M classifiers sharing this one's classes, from their
        scores S (M, N, C), against labels y (N,): each the bits it gets alone.  The metrics
        other than the loss come from the probabilities the loss was computed with."""
        y_idx = self.encode(as_labels(y, S.shape[1]))
        with np.errstate(over="ignore", invalid="ignore"):  # (scores that are not finite: a NaN loss, said by fit)
            losses, probabilities = cross_entropies_and_probabilities(S, y_idx)
        return [{"loss": float(loss), **metrics}
                for loss, metrics in zip(losses, stacked_classification_metrics(y_idx, probabilities, S.shape[2],
                                                                                ranking, threshold))]

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
        if self.best_params is not None:
            arrays["best_params"] = self.best_params
        meta = {
            "epoch": self.epoch,
            "optimizer_steps": self.optimizer.step_count,
            "rng_state": self._rng.bit_generator.state,
            "best_val_score": self.best_val_score,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped_early,
            "history": self.history,
            "layers": self.model.layers,
            "progress": None,
        }
        if self.progress is not None:
            arrays["progress.order"] = self.progress["order"]
            meta["progress"] = {k: v for k, v in self.progress.items() if k != "order"}
        return arrays, meta

    def restore(self, arrays: dict, meta: dict, classes) -> None:
        """Load what ``state`` produced (the model must already have the saved layers)."""
        if list(meta["layers"]) != self.model.layers:
            raise ValueError(f"checkpoint is for layers {meta['layers']}, the model has {self.model.layers}")
        self.model.flat_params[...] = arrays["params"]
        for key, buffer in self.optimizer.state.items():
            buffer[...] = arrays[f"optimizer.{key}"]
        self.host_changed()
        self.best_params = arrays.get("best_params")
        self.optimizer.step_count = int(meta["optimizer_steps"])
        self._rng.bit_generator.state = meta["rng_state"]
        self.epoch = int(meta["epoch"])
        # (checkpoints written before early_stopping.metric existed hold the best val_loss as best_val_loss)
        self.best_val_score = meta["best_val_score"] if "best_val_score" in meta else meta.get("best_val_loss")
        self.best_epoch = meta.get("best_epoch")  # absent from checkpoints written before it existed
        self.bad_epochs = int(meta["bad_epochs"])
        self.stopped_early = bool(meta["stopped_early"])
        self.history = list(meta["history"])
        self.progress = None
        if meta.get("progress") is not None:
            self.progress = {**meta["progress"], "order": np.asarray(arrays["progress.order"])}
        if "target_transform.mean" in arrays:
            from numbamlp.transforms import Standardizer

            self.model.target_transform = Standardizer(np.asarray(arrays["target_transform.mean"]),
                                                       np.asarray(arrays["target_transform.scale"]))
        self.classes_ = None if classes is None or np.ndim(classes) == 0 else np.asarray(classes)  # (a regressor: none)
        self.model.classes = self.classes_


def _improves(value: float | None, best: float | None, higher_is_better: bool, min_delta: float) -> bool:
    """Whether a metric's ``value`` beats ``best`` (None: nothing yet) by more than
    ``min_delta``; an undefined (None) or NaN value never does."""
    if value is None or np.isnan(value):
        return False
    if best is None:
        return True
    return value > best + min_delta if higher_is_better else value < best - min_delta


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
