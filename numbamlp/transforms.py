"""What is learned from the training split and applied at prediction: Standardizer
(x ↦ (x − mean) / scale, each (D,), fitted on the training rows only).

numbamlp.data fits it on the training split (split_arrays); a model file stores it
(numbamlp.io), and the model applies it to X (N, D) before its first layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from numbamlp.arrays import row_chunks


@dataclass
class Standardizer:
    """x ↦ (x − mean) / scale, statistics fitted on training rows only (scale 1 for constant features).

    mean, scale: (D,) float64.  Statistics are accumulated in float64 over row chunks, so an
    X (N, D) of float32 is never copied whole.
    """

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X) -> "Standardizer":
        X = np.asarray(X)
        n, d = X.shape
        total = np.zeros(d)
        low, high = np.full(d, np.inf), np.full(d, -np.inf)
        for lo, hi in row_chunks(n, d):
            chunk = X[lo:hi]
            total += chunk.sum(axis=0, dtype=np.float64)
            low, high = np.minimum(low, chunk.min(axis=0)), np.maximum(high, chunk.max(axis=0))
        mean = total / n
        squares = np.zeros(d)
        for lo, hi in row_chunks(n, d):
            centred = X[lo:hi] - mean  # (rows, D) float64
            squares += np.einsum("ij,ij->j", centred, centred)
        scale = np.sqrt(squares / n)
        scale[(low == high) | (scale == 0)] = 1.0
        return cls(mean, scale)

    def leaving(self, unscaled: np.ndarray) -> "Standardizer":
        """This standardisation but for the features where ``unscaled`` (D,) bool is True
        (mean 0, scale 1 there: a table's one-hot and was-missing features stay 0 or 1)."""
        return Standardizer(np.where(unscaled, 0.0, self.mean), np.where(unscaled, 1.0, self.scale))

    def transform(self, X) -> np.ndarray:
        """A new float64 array (N, D) of standardised rows."""
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.scale

    def inplace_transform(self, X: np.ndarray) -> None:
        """Standardise X (N, D) in place, row chunk by row chunk (computed in float64, stored
        in X's dtype: the same values as ``transform(X).astype(X.dtype)``)."""
        for lo, hi in row_chunks(X.shape[0], X.shape[1]):
            X[lo:hi] = (X[lo:hi] - self.mean) / self.scale
