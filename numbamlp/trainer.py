"""Minibatch training of an MLP on any backend.

Symbols: N rows, B batch size, D features, C classes.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from numbamlp.config import TrainConfig
from numbamlp.kernels import get_backend
from numbamlp.model import (
    MLP,
    Workspace,
    as_class_indices,
    as_features,
    backward_into,
    forward,
    layer_views,
)


class Callback(Protocol):
    def on_epoch_end(self, epoch: int, metrics: dict) -> None: ...


class Trainer:
    """Trains an MLP as the config says.

    ``fit(X, y)`` builds the model from the data (unless ``model.layers`` fixes it) and
    runs the epochs; ``step(Xb, yb)`` is one minibatch update and returns its loss.
    Labels may be any sortable values; they are encoded to indices 0..C−1 and
    ``classes_`` maps them back.
    """

    def __init__(self, config: TrainConfig | dict | None = None, **overrides):
        if config is None:
            config = TrainConfig()
        elif isinstance(config, dict):
            config = TrainConfig.model_validate(config)
        if overrides:
            config = TrainConfig.model_validate({**config.model_dump(), **overrides})
        self.config = config
        self.model: MLP | None = None
        self.classes_: np.ndarray | None = None
        self.history: list[dict] = []
        self._workspace: Workspace | None = None

    # ------------------------------------------------------------ set-up
    def build(self, n_features: int, n_classes: int) -> MLP:
        """Create the model (and its gradient/optimizer buffers) for this data shape."""
        cfg = self.config
        layers = cfg.model.layers or [n_features, *cfg.model.hidden, n_classes]
        if layers[0] != n_features:
            raise ValueError(f"model.layers starts with {layers[0]} inputs but the data has {n_features} features")
        if layers[-1] < n_classes:
            raise ValueError(f"model.layers ends with {layers[-1]} outputs but the data has {n_classes} classes")
        self.set_model(MLP(layers, activation=cfg.model.activation, dtype=cfg.dtype, seed=cfg.seed))
        return self.model

    def set_model(self, model: MLP) -> None:
        """Train ``model`` (its weights are updated in place)."""
        self.model = model
        self._kernels = None if self.config.backend == "reference" else get_backend(self.config.backend)
        self._grad_flat = np.zeros_like(model.flat_params)
        self._grads = layer_views(self._grad_flat, model.layers)
        self._velocity = np.zeros_like(model.flat_params)
        self._workspace = None

    def _workspace_for(self, rows: int) -> Workspace:
        if self._workspace is None or self._workspace.capacity < rows:
            self._workspace = Workspace(self.model, max(rows, self.config.batch_size))
        return self._workspace

    # ------------------------------------------------------------ one update
    def step(self, Xb, yb) -> float:
        """One minibatch update: forward, loss, backward, optimizer.  Returns the batch loss.

        Xb (B, D) features, yb (B,) class indices.  Builds the model on first use.
        """
        Xb = as_features(Xb, self.model.n_features if self.model else None, self.config.dtype)
        if self.model is None:
            self.build(Xb.shape[1], int(np.max(yb)) + 1)
        yb = as_class_indices(yb, Xb.shape[0], self.model.n_classes)
        return self._step(Xb, yb)

    def _step(self, Xb: np.ndarray, yb: np.ndarray) -> float:
        if self._kernels is None:
            loss = self._reference_grads(Xb, yb)
            kernels = get_backend("numpy")
        else:
            kernels = self._kernels
            loss = backward_into(kernels, self.model, Xb, yb, self._workspace_for(Xb.shape[0]), self._grads)
        opt = self.config.optimizer
        if opt.weight_decay:
            self._grad_flat += opt.weight_decay * self.model.flat_params
        if opt.momentum:
            kernels.momentum_update(self.model.flat_params, self._velocity, self._grad_flat, opt.lr, opt.momentum)
        else:
            kernels.sgd_update(self.model.flat_params, self._grad_flat, opt.lr)
        return loss

    def _reference_grads(self, Xb, yb) -> float:
        from numbamlp import reference

        loss, grads = reference.mean_loss_and_grads(self.model.params, self.model.activation, Xb, yb)
        for (dW, db), (rW, rb) in zip(self._grads, grads):
            dW[...] = rW
            db[...] = rb
        return loss

    # ------------------------------------------------------------ epochs
    def fit(self, X, y, X_val=None, y_val=None, callbacks=()) -> list[dict]:
        """Train for ``config.epochs`` epochs; returns the history (one dict per epoch).

        Each epoch shuffles the rows with a generator seeded from ``config.seed`` and
        visits every row once: the last, shorter batch is trained on, not dropped.
        """
        X = as_features(X, None, self.config.dtype)
        self.classes_, y_idx = np.unique(np.asarray(y), return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("y has a single class; classification needs at least 2")
        if self.model is None:
            self.build(X.shape[1], len(self.classes_))
        y_idx = as_class_indices(y_idx, X.shape[0], self.model.n_classes)
        X = as_features(X, self.model.n_features, self.model.dtype)
        rng = np.random.default_rng(self.config.seed)
        batch = self.config.batch_size
        self.history = []
        for epoch in range(1, self.config.epochs + 1):
            start = time.perf_counter()
            order = rng.permutation(X.shape[0])
            X_epoch, y_epoch = X[order], y_idx[order]
            total = 0.0
            for lo in range(0, X.shape[0], batch):
                Xb, yb = X_epoch[lo : lo + batch], y_epoch[lo : lo + batch]
                total += self._step(Xb, yb) * Xb.shape[0]
            metrics = {"epoch": epoch, "loss": total / X.shape[0]}
            if X_val is not None:
                val = self.evaluate(X_val, y_val)
                metrics.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
            metrics["seconds"] = time.perf_counter() - start
            self.history.append(metrics)
            for callback in callbacks:
                callback.on_epoch_end(epoch, metrics)
        return self.history

    # ------------------------------------------------------------ evaluation
    def _encode(self, y) -> np.ndarray:
        y = np.asarray(y)
        positions = np.searchsorted(self.classes_, y)
        positions = np.clip(positions, 0, len(self.classes_) - 1)
        if not np.array_equal(self.classes_[positions], y):
            raise ValueError("y holds labels that were not seen in training")
        return positions

    def scores(self, X) -> np.ndarray:
        """Logits (N, C), computed in batches through the training backend's kernels."""
        X = as_features(X, self.model.n_features, self.model.dtype)
        kernels = self._kernels or get_backend("numpy")
        out = np.empty((X.shape[0], self.model.n_classes), dtype=self.model.dtype)
        ws = self._workspace_for(min(X.shape[0], 1024))
        for lo in range(0, X.shape[0], ws.capacity):
            out[lo : lo + ws.capacity] = forward(kernels, self.model, X[lo : lo + ws.capacity], ws)
        return out

    def predict(self, X) -> np.ndarray:
        """Predicted labels, in the values ``fit`` was given."""
        return self.classes_[np.argmax(self.scores(X), axis=1)]

    def evaluate(self, X, y) -> dict:
        """{"loss": mean cross-entropy, "accuracy": fraction correct} on (X, y)."""
        S = self.scores(X).astype(np.float64)
        y_idx = self._encode(y)
        P, row_loss = np.empty_like(S), np.empty(S.shape[0])
        loss = get_backend("numpy").softmax_crossentropy_forward(P, row_loss, S, y_idx)
        accuracy = float(np.mean(np.argmax(S, axis=1) == y_idx))
        return {"loss": loss, "accuracy": accuracy}
