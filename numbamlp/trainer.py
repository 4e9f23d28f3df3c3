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

from typing import Protocol

import numpy as np

from numbamlp.arrays import (as_class_indices, as_features, as_labels, as_sample_weights, as_targets, step_class_indices,
                             unique_labels)
from numbamlp.kernels.pool import adapt_threads
from numbamlp.member import GradientMismatch, Member, TrainingDiverged, TrainingInterrupted
from numbamlp.metrics import regression_metrics
from numbamlp.threads import quiet_blas, set_config_threads, set_threads, threads_while

__all__ = ["Callback", "GradientMismatch", "Trainer", "TrainingDiverged", "TrainingInterrupted",
           "quiet_blas", "regression_metrics", "set_threads", "threads_while"]


class Callback(Protocol):
    """Called after every epoch with that epoch's metrics (epoch, loss, lr, seconds, val_*).

    Two optional methods are called when a callback has them:
    ``on_progress(epoch, rows_done, rows_total, loss)`` within an epoch, at most every
    numbamlp.stack.PROGRESS_INTERVAL_S seconds (epoch is the 1-based epoch in progress, loss the running
    mean of the epoch so far), and ``on_gradients_checked(error)`` once ``validate``'s
    check has passed, before the first epoch.
    """

    def on_epoch_end(self, epoch: int, metrics: dict) -> None: ...




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
        if not self._threads_set:  # (once: see set_config_threads)
            self._threads_set = True
            set_config_threads(self.config)
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
        return self.train_step(Xb, yb, as_sample_weights(sample_weight, Xb.shape[0], self.model.dtype), self.lr)

    def fit(self, X, y, X_val=None, y_val=None, sample_weight=None, callbacks=(),
            warm_start: bool = False) -> list[dict]:
        """Train until ``config.epochs`` epochs are done; returns the history (one dict per epoch).

        Each epoch shuffles the rows with the trainer's generator (seeded from
        ``config.seed``) and visits every row once: the last, shorter batch is trained on.
        With early stopping and no (X_val, y_val), a stratified ``data.val_fraction``
        (numbamlp.config.DEFAULT_VAL_FRACTION if unset) of the rows is held out for validation.
        A trainer that has already trained starts over unless ``warm_start`` (see the class
        docstring).  ``config.threads`` holds while it runs (threads_while).
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
        from numbamlp.stack import StackTrainer, member_data

        kept = None
        if self.fitted and not warm_start:
            kept = self.snapshot()  # (what a refused fit puts back)
            self.model = None
            self.start_over()
        try:
            X, y, X_val, y_val, sample_weight = self._fit_data(X, y, X_val, y_val, sample_weight)
            member = member_data(self, X, y, X_val, y_val, sample_weight)
            X = as_features(X, self.model.n_features, self.model.dtype)
        except Exception:
            if kept is not None:  # data refused before any epoch: the fitted model stays as it was
                self.put_back(kept)
            raise
        if self.config.validate_gradients and self.epoch == 0:
            first = member.rows[: 3 * self.config.batch_size]
            weights = None if member.weights is None else member.weights[first]
            error = self.validate_gradients(X[first], member.y_idx[first], weights)
            for callback in callbacks:
                getattr(callback, "on_gradients_checked", lambda error: None)(error)
        # the epochs: the one loop, a stack's, run as a stack of this trainer alone
        loop = self._loop = StackTrainer.of_one(self)
        loop._stop_reason = self._stop_reason  # (a stop asked while the fit was set up)
        try:
            loop.train(X, [member], loop.prepare_batches(X, [member]), callbacks)
        finally:
            self._loop = None
        if member.status == "diverged":
            raise TrainingDiverged(member.error)
        return self.history

    def request_stop(self, reason=None) -> None:
        """Ask ``fit`` to stop after the step in progress (safe to call from a signal handler)."""
        self._stop_reason = reason if reason is not None else "stop requested"
        loop = getattr(self, "_loop", None)
        if loop is not None:
            loop.request_stop(self._stop_reason)

    def _fit_data(self, X, y, X_val, y_val, sample_weight):
        """fit's data checked and converted: (X (N, D) of the config's dtype, y (N,) labels or
        (N, K) float64 targets, X_val, y_val checked against the model, sample_weight (N,)
        float64 or None); builds the model (and learns the classes) on the first fit."""
        X = as_features(X, None, self.config.dtype)
        weights = as_sample_weights(sample_weight, X.shape[0], np.float64)
        if self.regression:
            y = as_targets(np.asarray(y), X.shape[0], self.model.n_classes if self.model else None, np.float64)
            if self.model is None:
                self.build(X.shape[1], y.shape[1])
            return (X, y, *self.checked_validation_data(X_val, y_val), weights)
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
        return (X, y, *self.checked_validation_data(X_val, y_val), weights)
