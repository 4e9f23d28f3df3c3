"""The reference path: the executable specification of numbamlp.

Deliberately slow and obvious, in the style of the seed notes on backpropagation.
Plain numpy, float64, one example at a time as a column vector:

    x (D, 1),  W (out, in),  b (out, 1),  scores s (C, 1),  label y an int in [0, C);
    for regression, outputs s (K, 1) and a target y (K, 1) of floats.

Every module has ``forward`` (caches what ``backward`` needs) and ``backward``
(upstream gradient × local Jacobian).  Every fast kernel is tested against this file;
when the two disagree, this file is right until a central-difference check says otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from numbamlp.kernels import activation_spec, negligible_exp


def _column(v) -> np.ndarray:
    """A float64 copy of ``v`` as a column vector (n, 1)."""
    return np.array(v, dtype=np.float64).reshape(-1, 1)


class Affine:
    """a = W x + b, with W (out, in), b (out, 1)."""

    def __init__(self, W, b):
        self.W = np.array(W, dtype=np.float64)
        self.b = _column(b)
        self.x = None

    def forward(self, x):
        self.x = x
        return self.W @ x + self.b

    def backward(self, dout):
        """dout (out, 1) → dW = dout xᵀ (out, in), db = dout (out, 1), dx = Wᵀ dout (in, 1)."""
        dW = dout @ self.x.T
        db = dout
        dx = self.W.T @ dout
        return dW, db, dx


class ReLU:
    """h = max(0, a); derivative 1[a > 0] (0 at a = 0)."""

    def forward(self, a):
        self.a = a
        return np.maximum(0.0, a)

    def backward(self, dout):
        return dout * (self.a > 0)


class LeakyReLU:
    """h = a if a > 0 else alpha·a."""

    def __init__(self, alpha=0.1):
        self.alpha = alpha

    def forward(self, a):
        self.a = a
        return np.where(a > 0, a, self.alpha * a)

    def backward(self, dout):
        return dout * np.where(self.a > 0, 1.0, self.alpha)


class ELU:
    """h = a if a > 0 else alpha·(eᵃ − 1); derivative 1 or alpha·eᵃ."""

    def __init__(self, alpha=1.0):
        self.alpha = alpha

    def forward(self, a):
        self.a = a
        return np.where(a > 0, a, self.alpha * (np.exp(np.minimum(a, 0.0)) - 1.0))

    def backward(self, dout):
        return dout * np.where(self.a > 0, 1.0, self.alpha * np.exp(np.minimum(self.a, 0.0)))


class Sigmoid:
    """h = 1 / (1 + e⁻ᵃ); derivative h (1 − h)."""

    def forward(self, a):
        self.h = np.array([[_stable_sigmoid(v)] for v in a[:, 0]])
        return self.h

    def backward(self, dout):
        return dout * self.h * (1.0 - self.h)


def _stable_sigmoid(v: float) -> float:
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


class GELU:
    """h = a Φ(a), Φ the standard normal CDF (exact, via erf).

    ``approximate="tanh"`` selects the tanh approximation
    0.5 a (1 + tanh(√(2/π) (a + 0.044715 a³))); it is never chosen silently.
    """

    def __init__(self, approximate: str = "none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU approximate must be 'none' or 'tanh', not {approximate!r}")
        self.approximate = approximate

    def forward(self, a):
        self.a = a
        if self.approximate == "tanh":
            return 0.5 * a * (1.0 + np.tanh(self._inner(a)))
        return a * self._cdf(a)

    def backward(self, dout):
        a = self.a
        if self.approximate == "tanh":
            t = np.tanh(self._inner(a))
            dinner = math.sqrt(2.0 / math.pi) * (1.0 + 3 * 0.044715 * a**2)
            return dout * (0.5 * (1.0 + t) + 0.5 * a * (1.0 - t**2) * dinner)
        pdf = np.exp(-0.5 * a**2) / math.sqrt(2.0 * math.pi)
        return dout * (self._cdf(a) + a * pdf)

    @staticmethod
    def _cdf(a):
        return np.array([[0.5 * (1.0 + math.erf(v / math.sqrt(2.0)))] for v in a[:, 0]])

    @staticmethod
    def _inner(a):
        return math.sqrt(2.0 / math.pi) * (a + 0.044715 * a**3)


class SiLU:
    """h = a·σ(a); derivative σ(a) (1 + a (1 − σ(a)))."""

    def forward(self, a):
        self.a = a
        self.s = np.array([[_stable_sigmoid(v)] for v in a[:, 0]])
        return a * self.s

    def backward(self, dout):
        return dout * self.s * (1.0 + self.a * (1.0 - self.s))


class Tanh:
    """h = tanh(a); derivative 1 − h²."""

    def forward(self, a):
        self.h = np.tanh(a)
        return self.h

    def backward(self, dout):
        return dout * (1.0 - self.h**2)


# Reference implementation of each row of numbamlp.kernels.ACTIVATIONS
# (a test checks the two name sets agree).
REFERENCE_ACTIVATIONS = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "elu": ELU,
    "sigmoid": Sigmoid,
    "gelu": GELU,
    "silu": SiLU,
    "tanh": Tanh,
}


def make_activation(name: str):
    """A fresh reference activation module for ``name``, with the table's alpha."""
    spec = activation_spec(name)
    cls = REFERENCE_ACTIVATIONS[spec.name]
    return cls(alpha=spec.alpha) if spec.alpha else cls()


def logsumexp_parts(s) -> tuple[float, float]:
    """(m, r) with logsumexp(s) = m + log1p(r): m the largest score, r = Σ_(j≠argmax) e^(s_j − m).

    Keeping log1p(r) apart from m is what lets a loss of 1e-12 keep its digits.
    """
    values = [float(v) for v in np.ravel(s)]
    top = int(np.argmax(values))
    m = values[top]
    return m, sum(math.exp(v - m) for j, v in enumerate(values) if j != top)


def logsumexp(s) -> float:
    m, rest = logsumexp_parts(s)
    return m + math.log1p(rest)


class SoftmaxCrossEntropy:
    """L = −log softmax(s)_y = logsumexp(s) − s_y;  ds = p − onehot(y)."""

    def forward(self, s, y):
        m, rest = logsumexp_parts(s)
        e = np.exp(s - m)
        e[e < negligible_exp(e.dtype)] = 0.0  # (as every backend: see negligible_exp)
        self.p = e / (1.0 + rest)
        self.y_onehot = np.zeros_like(self.p)
        self.y_onehot[y] = 1.0
        return (m - float(s[y, 0])) + math.log1p(rest)

    def backward(self):
        return self.p - self.y_onehot


class SquaredError:
    """L = ½ ‖s − y‖² = ½ Σ_k (s_k − y_k)²;  ds = s − y.  s, y (K, 1).

    Averaged over a batch this is scikit-learn's MLPRegressor loss, ½·mean over rows of
    Σ_k (s − y)², the one whose gradient it trains with (numbamlp.kernels' docstring).
    """

    def forward(self, s, y):
        self.diff = s - _column(y)
        return 0.5 * float(np.sum(self.diff**2))

    def backward(self):
        return self.diff


# The reference module of each loss in numbamlp.kernels.LOSS_NAMES, and how one example's
# target enters it (a class index, or a column of K floats).
REFERENCE_LOSSES = {"cross_entropy": (SoftmaxCrossEntropy, int), "squared_error": (SquaredError, _column)}


class ReferenceMLP:
    """Affine → φ → … → Affine, any depth, one example at a time, then the loss
    ("cross_entropy" over C scores, or "squared_error" against K targets).

    params: [(W1, b1), …, (WL, bL)] with W (out, in) and b (out,) or (out, 1).
    The seed's 2-layer net is ``len(params) == 2``; its 3-layer net is 3.
    """

    def __init__(self, params, activation: str = "relu", loss: str = "cross_entropy"):
        self.affines = [Affine(W, b) for W, b in params]
        self.activations = [make_activation(activation) for _ in self.affines[:-1]]
        loss_class, self.target = REFERENCE_LOSSES[loss]
        self.loss = loss_class()

    def forward(self, x):
        """x (D, 1) → scores s (C, 1)."""
        h = x
        for affine, act in zip(self.affines[:-1], self.activations):
            h = act.forward(affine.forward(h))
        return self.affines[-1].forward(h)

    def backward(self, ds):
        """ds (C, 1) → ([(dW, db (out, 1)) per layer], dx (D, 1))."""
        grads = []
        dW, db, dh = self.affines[-1].backward(ds)
        grads.append((dW, db))
        for affine, act in zip(reversed(self.affines[:-1]), reversed(self.activations)):
            dW, db, dh = affine.backward(act.backward(dh))
            grads.append((dW, db))
        return grads[::-1], dh

    def loss_and_grads(self, x, y):
        """One example: (loss, [(dW, db)], dx); y a class index or K targets."""
        s = self.forward(_column(x))
        loss = self.loss.forward(s, self.target(y))
        grads, dx = self.backward(self.loss.backward())
        return loss, grads, dx


def mean_loss_and_grads(params, activation, X, y, sample_weight=None, loss: str = "cross_entropy"):
    """Mean loss and mean gradients over a batch, one example at a time.

    X (B, D), y (B,) class indices or, for loss "squared_error", (B, K) targets; optional
    sample_weight (B,) for the weighted mean Σ wᵢ·Lᵢ / Σ wᵢ.
    Returns (loss, [(dW (out, in), db (out,))]) in float64: the quantity every batched
    backend must reproduce.
    """
    net = ReferenceMLP(params, activation, loss)
    X = np.asarray(X, dtype=np.float64)
    weights = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    total_loss = 0.0
    totals = [(np.zeros_like(a.W), np.zeros(a.W.shape[0])) for a in net.affines]
    for x, target, w in zip(X, np.asarray(y), weights):
        value, grads, _ = net.loss_and_grads(x, target)
        total_loss += w * value
        for (sum_W, sum_b), (dW, db) in zip(totals, grads):
            sum_W += w * dW
            sum_b += w * db[:, 0]
    weight_sum = weights.sum()
    return total_loss / weight_sum, [(sum_W / weight_sum, sum_b / weight_sum) for sum_W, sum_b in totals]


def mean_loss(params, activation, X, y, sample_weight=None, loss: str = "cross_entropy") -> float:
    """(Weighted) mean loss (cross-entropy, or squared error against y (B, K)) over a batch by
    the reference forward pass only."""
    net = ReferenceMLP(params, activation, loss)
    losses = [net.loss.forward(net.forward(_column(x)), net.target(target)) for x, target in zip(X, y)]
    return float(np.average(losses, weights=sample_weight))


def scores(params, activation, X):
    """Reference logits (B, C) for a batch, one example at a time."""
    net = ReferenceMLP(params, activation)
    return np.stack([net.forward(_column(x))[:, 0] for x in np.asarray(X, dtype=np.float64)])


def encode_row(table: list[dict], row: dict) -> np.ndarray:
    """A table's raw row {column: value} → the first layer's input x (D_in, 1), from a model
    file's ``table`` description alone (numbamlp.encoding.TableEncoder.to_json), one cell at
    a time; TableEncoder.transform must equal it row by row.

    A number column gives its value, or the training median when the cell is missing (None
    or NaN), then, when it has a was-missing feature, 1 if missing else 0.  A categorical
    column looks its cell's text up among its categories — the text as
    numbamlp.encoding.category_text writes it (the one rule every reader shares: 3.0 is
    "3", True is "true"), a missing cell the text "" — its row of the column's table, or the
    last row (the shared bucket) for a text not among them.
    """
    from numbamlp.encoding import category_text

    features = []
    for column in table:
        value = row.get(column["name"])
        if column["kind"] == "number":
            missing = value is None or (isinstance(value, float) and math.isnan(value))
            features.append(column["median"] if missing else float(value))
            if column["indicator"]:
                features.append(1.0 if missing else 0.0)
            continue
        text = category_text(value)
        text = "" if text is None else text
        categories = column["categories"]
        bucket = categories.index(text) if text in categories else len(categories)
        features.extend(column["table"][bucket])
    return _column(features)
