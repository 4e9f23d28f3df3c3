"""Minibatch training of one MLP on any backend.

Symbols: N rows, B batch size, D features, C classes, K regression outputs.

The trainer sees prepared arrays: features already standardised (if wanted), labels of
any sortable kind (classification) or float targets (N,) / (N, K) (regression).  It never
applies ``model.input_transform`` itself; a regressor's targets it standardises itself
(``data.standardize``), with the training rows' statistics, kept as ``model.target_transform``.
A Trainer is a numbamlp.member.Member (its state and everything done for one model) with
``fit`` and ``step``.
"""

from __future__ import annotations

import math
import time
from typing import Protocol

import numpy as np

from numbamlp.kernels import STEP_TRAIN
from numbamlp.kernels.pool import adapt_threads
from numbamlp.member import GradientMismatch, Member, TrainingDiverged, TrainingInterrupted
from numbamlp.metrics import regression_metrics
from numbamlp.model import (
    as_class_indices,
    as_features,
    as_labels,
    as_sample_weights,
    as_targets,
    step_class_indices,
    unique_labels,
)
from numbamlp.threads import quiet_blas, set_threads, threads_while

__all__ = ["Callback", "GradientMismatch", "Trainer", "TrainingDiverged", "TrainingInterrupted",
           "quiet_blas", "regression_metrics", "set_threads", "threads_while"]


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


class Trainer(Member):
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
    ``self.epoch`` (what resuming a checkpoint and ``partial_fit`` use).  Everything else
    (evaluate, predict, state, restore, continue_with, ...) is numbamlp.member.Member's.
    """

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
            kept = self.snapshot()  # (what a refused fit puts back)
            self.model = None
            self.start_over()
        try:
            X, rows, y_idx, weights, X_val, y_val = self._fit_data(X, y, X_val, y_val, sample_weight)
        except Exception:
            if kept is not None:  # data refused before any epoch: the fitted model stays as it was
                self.put_back(kept)
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
                self.end_epoch(progress, start, X_val, y_val, callbacks)
                if self._stop_reason is not None and self.epoch < self.config.epochs and not self.stopped_early:
                    raise TrainingInterrupted(self.epoch, "end", self._stop_reason)
        if self.best_params is not None:
            self.model.flat_params[...] = self.best_params
            self.host_changed()
        self.check_outputs_finite(X, rows)
        return self.history

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
        return X, rows, y_idx, self.row_weights(y, weights), X_val, y_val

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
        return X, rows, self.encode(y), self.row_weights(y, weights), X_val, y_val

    def _run_epoch(self, X, rows, y_idx, weights, device, callbacks, start: float) -> dict:
        """The steps of one epoch (from where an interrupted one stopped) on the training
        rows ``rows`` of X (None: all); returns its progress record: the order, next row, loss
        totals, learning rate and seconds."""
        n = len(y_idx)
        progress = self.epoch_progress(n)
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

    def _device_data(self, X, rows, y_idx, weights):
        """cuda: the training rows of X (all, or ``rows``) on the GPU once
        (numbamlp.plan.DeviceData); None elsewhere."""
        if not self._plan.on_device:
            return None
        from numbamlp.plan import DeviceData

        return DeviceData(self._plan.kernels, X if rows is None else X[rows], y_idx, weights)
