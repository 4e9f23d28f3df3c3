"""Metrics of predictions against targets, shared by training, evaluation and the faces."""

from __future__ import annotations

import numpy as np


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
