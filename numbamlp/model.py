"""The MLP model, its buffers, and the batched forward/backward pass over any backend.

Symbols: B batch size, D input features, H hidden width, C classes, K regression outputs,
L number of affine layers.

Shapes: X (B, D), hidden pre-activations A_l and outputs H_l (B, H_l), scores S (B, C),
y (B,) int (classification) or Y (B, K) float targets (regression, where S is (B, K));
weights W_l (out, in), b_l (out,), so A = X Wᵀ + b.
Parameters live in one flat buffer with per-layer (W, b) views; gradient and optimizer
buffers use the same layout, so an optimizer update is one call over a flat array.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Sequence

import numpy as np

from numbamlp.arrays import (FLOAT_DTYPES, as_class_indices, as_features, as_float_dtype, as_sample_weights,
                             as_targets, check_feature_dtypes, column_dtypes, dtype_kind)
from numbamlp.encoding import table_columns
from numbamlp.metrics import predicted_classes
from numbamlp.kernels import TRANSPOSED_INPUT_MAX, activation_kernels, activation_spec, get_backend, launch_guard

# A model's task → the loss it trains with (numbamlp.kernels.LOSS_NAMES).
TASK_LOSSES = {"classification": "cross_entropy", "regression": "squared_error"}


def check_task(task: str) -> str:
    if task not in TASK_LOSSES:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASK_LOSSES)}")
    return task


def softmax(S) -> np.ndarray:
    """Row-wise softmax of scores S (B, C), computed stably in float64."""
    S = np.asarray(S, dtype=np.float64)
    P = np.exp(S - S.max(axis=1, keepdims=True))
    return P / P.sum(axis=1, keepdims=True)


def layer_views(flat: np.ndarray, layers: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split a flat buffer into per-layer (W (out, in), b (out,)) views, in layer order."""
    views, offset = [], 0
    for n_in, n_out in zip(layers[:-1], layers[1:]):
        W = flat[offset : offset + n_out * n_in].reshape(n_out, n_in)
        offset += n_out * n_in
        b = flat[offset : offset + n_out]
        offset += n_out
        views.append((W, b))
    return views


def layer_offsets(layers: Sequence[int]) -> np.ndarray:
    """(L,) int64: where each layer's W starts in the flat layout of ``layer_views``."""
    sizes = [n_out * (n_in + 1) for n_in, n_out in zip(layers[:-1], layers[1:])]
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def n_parameters(layers: Sequence[int]) -> int:
    return sum(n_out * (n_in + 1) for n_in, n_out in zip(layers[:-1], layers[1:]))


def _check_layers(layers) -> list[int]:
    if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in layers):
        raise ValueError(f"layers must list whole numbers [D, ..., C], got {list(layers)}")
    layers = [int(n) for n in layers]
    if len(layers) < 2 or min(layers) < 1:
        raise ValueError(f"layers must list at least 2 positive sizes [D, ..., C], got {layers}")
    return layers


class MLP:
    """A multi-layer perceptron: Affine → φ → … → Affine, with softmax cross-entropy on top
    (task "classification") or K linear outputs under squared error ("regression").

    layers: [D, H1, ..., C].  Initialisation: He normal for the ReLU family, Glorot
    uniform for sigmoid and tanh, zero biases; drawn from ``numpy.random.default_rng(seed)``.

    Optional attributes make a trained model self-contained (all are saved with it):
    ``classes`` (C,) maps class indices back to the user's labels in ``predict``,
    ``input_transform`` (a fitted ``numbamlp.data.Standardizer``) is applied to X by
    ``scores``, ``predict_proba`` and ``predict``, so they take raw features, and, for
    regression, ``target_transform`` (a Standardizer of the K targets, fitted on the training
    rows) maps the outputs back to the targets' units in ``predict``.  ``feature_names`` and
    ``feature_dtypes`` (D,) are the training data's columns and what each held: a table
    (DataFrame) is matched by those names, and refused by name where a column's dtype is of
    another kind (numbamlp.data.dtype_kind: text or dates for numbers, booleans for numbers).
    """

    def __init__(self, layers, activation: str = "relu", dtype="float32", seed: int | None = 0,
                 task: str = "classification"):
        self.layers = _check_layers(layers)
        self.task = check_task(task)
        self.target_transform = None
        self.activation = activation_spec(activation).name
        self.dtype = as_float_dtype(dtype)
        self.flat_params = np.zeros(n_parameters(self.layers), dtype=self.dtype)
        self._params = layer_views(self.flat_params, self.layers)
        self.classes: np.ndarray | None = None
        # the training data's column names, in the order the model takes them (None: the data
        # had none): predict matches a table's columns by them
        self.feature_names: list[str] | None = None
        # what each of those columns held (D,) (numbamlp.data.dtype_kind; None: not recorded):
        # predict refuses a table's column of another kind (text or dates for numbers)
        self.feature_dtypes: list[str] | None = None
        # a table's encoding (numbamlp.encoding.TableEncoder; None: the model takes numbers): the
        # model then takes the table's raw columns, feature_names, and encodes them first
        self.table = None
        # a binary classifier's decision threshold (None: the most probable class): predict
        # says the second class (classes[1]) where its probability is at least this
        self.threshold: float | None = None
        self.input_transform = None
        self.metadata: dict | None = None  # what load_model read from the file
        if seed is not None and not (isinstance(seed, (int, np.integer)) and seed >= 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        rng = np.random.default_rng(seed)
        scheme = activation_spec(activation).init
        for W, _ in self._params:
            n_out, n_in = W.shape
            if scheme == "he":
                W[...] = rng.normal(0.0, np.sqrt(2.0 / n_in), size=W.shape)
            else:
                limit = np.sqrt(6.0 / (n_in + n_out))
                W[...] = rng.uniform(-limit, limit, size=W.shape)

    @classmethod
    def from_params(cls, params, activation: str = "relu", dtype=None, task: str = "classification") -> "MLP":
        """Build from [(W1, b1), ...] with W (out, in), b (out,); arrays are copied.

        dtype defaults to the first W's dtype when it is float32/float64, else float64.
        """
        params = [(np.asarray(W), np.asarray(b)) for W, b in params]
        if not params:
            raise ValueError("params must hold at least one (W, b) pair")
        if dtype is None:
            dtype = params[0][0].dtype if params[0][0].dtype.name in FLOAT_DTYPES else "float64"
        layers = [params[0][0].shape[1] if params[0][0].ndim == 2 else -1]
        for i, (W, b) in enumerate(params):
            if W.ndim != 2 or W.shape[1] != layers[-1]:
                raise ValueError(f"layer {i}: W must have shape (out, {layers[-1]}), got {W.shape}")
            if b.shape != (W.shape[0],):
                raise ValueError(f"layer {i}: b must have shape ({W.shape[0]},), got {b.shape}")
            layers.append(W.shape[0])
        model = cls(layers, activation=activation, dtype=dtype, seed=None, task=task)
        for (W, b), (W_src, b_src) in zip(model._params, params):
            W[...] = W_src
            b[...] = b_src
        return model

    def use_storage(self, flat: np.ndarray) -> None:
        """Move the parameters into ``flat`` (P,) of the model's dtype (e.g. a row of a step
        plan's (M, P) buffer): from now on the model reads and writes them there."""
        flat[...] = self.flat_params
        self.flat_params = flat
        self._params = layer_views(flat, self.layers)

    @property
    def params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(W (out, in), b (out,)), ...]: live views into ``flat_params``."""
        return list(self._params)

    @property
    def n_features(self) -> int:
        return self.layers[0]

    @property
    def n_classes(self) -> int:
        return self.layers[-1]

    def __getstate__(self):
        # the per-layer views would be pickled as copies; rebuild them from the flat buffer
        state = self.__dict__.copy()
        del state["_params"]
        state.pop("_scoring_local", None)  # (per-thread workspaces: each copy makes its own)
        return state

    def __setstate__(self, state):
        self.__dict__.update({"feature_names": None, "feature_dtypes": None, "table": None, "threshold": None, **state})  # (pickled before them)
        self._params = layer_views(self.flat_params, self.layers)

    def __repr__(self) -> str:
        task = "" if self.task == "classification" else f", task={self.task!r}"
        return f"MLP(layers={self.layers}, activation={self.activation!r}, dtype={self.dtype.name!r}{task})"

    @property
    def loss(self) -> str:
        """The loss this model trains with (numbamlp.kernels.LOSS_NAMES), from its task."""
        return TASK_LOSSES[self.task]

    # ------------------------------------------------------------ inference
    def scores(self, X, backend: str = "auto") -> np.ndarray:
        """Logits (B, C) for X (B, D) (after ``input_transform``, when the model has one),
        SCORING_ROWS rows at a time, as Trainer.scores: beyond X and the scores, memory is
        one chunk's (standardising and converting the whole of X took ~6x a big float32 X).
        A table with column names (a pandas DataFrame) is matched by name when the model knows
        its features' names: its columns in the model's order, others left out."""
        if self.table is not None:  # (a table's raw columns, encoded: numbers from here on)
            X = self.table.transform(table_columns(X, self.table.columns, self.table.categorical))
        X = as_features(self.named_columns(X), self.n_features, None)  # (checked whole; copied only when not C-contiguous)

        def ready(rows):
            if self.input_transform is not None:
                return as_features(self.input_transform.transform(rows), self.n_features, self.dtype,
                                   name="X standardised")
            return as_features(rows, self.n_features, self.dtype)

        if self.input_transform is None and X.dtype == self.dtype:
            # (X, checked whole, is already what forward takes: no second check per chunk)
            return scores_in_chunks(get_backend(backend), self, X,
                                    self.scoring_workspace(min(X.shape[0], SCORING_ROWS)))
        return scores_in_chunks(get_backend(backend), self, X, self.scoring_workspace(min(X.shape[0], SCORING_ROWS)),
                                ready)

    def scoring_workspace(self, rows: int) -> "Workspace":
        """A Workspace for scoring batches of ``rows`` rows.  Up to KEPT_SCORING_ROWS rows,
        the calling thread's own (several threads may score with one model at once), kept
        for its next call: allocating one per call was ~40% of a one-row predict.  Bigger
        batches, whose arithmetic outweighs the allocation, get one for the call (so what is
        kept is small: KEPT_SCORING_ROWS rows per thread and model)."""
        if rows > KEPT_SCORING_ROWS:
            return Workspace(self, rows)
        workspace = getattr(self._scoring, "workspace", None)
        if workspace is None:
            workspace = self._scoring.workspace = Workspace(self, KEPT_SCORING_ROWS)
        return workspace

    @property
    def _scoring(self) -> threading.local:
        """The per-thread scoring state (made on first use: it does not pickle, nor is it copied)."""
        local = self.__dict__.get("_scoring_local")
        if local is None:
            local = self.__dict__.setdefault("_scoring_local", threading.local())
        return local

    def named_columns(self, X):
        """X's columns of this model's ``feature_names``, in their order, when X is a table
        with column names (a DataFrame) and the model has names (as one float64 array (B, D)
        when they mix booleans and numbers, which numpy would make one array of objects);
        X as it is otherwise.  ValueError naming the features a table lacks, or one whose
        dtype is of another kind than the model's ``feature_dtypes``
        (numbamlp.data.check_feature_dtypes)."""
        columns = getattr(X, "columns", None)
        if columns is None:
            return X
        if self.feature_names is not None:
            names = [str(c) for c in columns]
            missing = [name for name in self.feature_names if name not in names]
            if missing:
                raise ValueError(f"X has no column {', '.join(map(repr, missing[:8]))}, which the model was trained with")
            X = X.iloc[:, [names.index(name) for name in self.feature_names]]
        dtypes = column_dtypes(X)
        check_feature_dtypes(dtypes, self.feature_dtypes, [str(c) for c in X.columns], "X")
        if dtypes and len(set(dtypes)) > 1 and {dtype_kind(d) for d in dtypes} <= {"number", "bool"}:
            return X.to_numpy(dtype=np.float64, na_value=np.nan)
        return X

    def predict_proba(self, X, backend: str = "auto") -> np.ndarray:
        """Class probabilities (B, C); each row sums to 1."""
        if self.task != "classification":
            raise ValueError("predict_proba is for classifiers; this model is a regressor (use predict)")
        return softmax(self.scores(X, backend))

    def predict(self, X, backend: str = "auto") -> np.ndarray:
        """Classification: class indices (B,) of the highest score, as the user's labels when
        ``classes`` is set.  Regression: the predicted values in the targets' units, (B,) for
        one output (as scikit-learn returns them), else (B, K)."""
        if self.task == "regression":
            return self.values(self.scores(X, backend))
        indices = decisions(self.scores(X, backend), self.threshold)
        return indices if self.classes is None else self.classes[indices]

    def values(self, S) -> np.ndarray:
        """Regression outputs S (B, K) → predictions in the targets' units (float64; the
        target standardisation undone), (B,) when K = 1."""
        values = np.asarray(S, dtype=np.float64)
        if self.target_transform is not None:
            values = values * self.target_transform.scale + self.target_transform.mean
        return values[:, 0] if values.shape[1] == 1 else values


def decisions(S, threshold: float | None = None) -> np.ndarray:
    """The class index (B,) each row of scores S (B, C) is predicted as: the highest score;
    with a ``threshold`` (a binary classifier's), numbamlp.metrics.predicted_classes of its
    probabilities."""
    if threshold is None:
        return np.argmax(S, axis=1)
    return predicted_classes(softmax(S), threshold)


# ---------------------------------------------------------------- batched passes
def transposed_input_rows(layers: Sequence[int], capacity: int) -> int:
    """How many rows of a batch the cpu step's transposed copy of X holds: those of a batch
    whose first product H1·B·D is at most kernels.TRANSPOSED_INPUT_MAX, up to ``capacity``
    (0 without a hidden layer)."""
    if len(layers) < 3:
        return 0
    return min(capacity, TRANSPOSED_INPUT_MAX // (layers[0] * layers[1]))


def workspace_layout(layers: Sequence[int], capacity: int,
                     transposed_input: bool = False) -> tuple[int, np.ndarray, np.ndarray]:
    """Where a model's step buffers sit in one flat workspace, for batches of up to ``capacity``
    rows: (size, hidden_offsets (L−1, 4) int64, output_offsets (5,) int64).

    hidden_offsets[l] = the offsets of hidden layer l's A, Hout, dH, dA blocks, each
    capacity·H_l long; output_offsets = those of S, P, dS (each capacity·C), row_loss
    (capacity) and Xᵀ: with ``transposed_input`` (the cpu step's plan), room for the
    transposed copy of a small batch, D·transposed_input_rows, else none.  The one place
    this layout is computed: Workspace, the step plan and the compiled steps all read it
    from here.
    """
    widths, C = list(layers[1:-1]), layers[-1]
    hidden_offsets = np.zeros((len(widths), 4), dtype=np.int64)
    offset = 0
    for kind in range(4):  # A, Hout, dH, dA
        for layer, h in enumerate(widths):
            hidden_offsets[layer, kind] = offset
            offset += capacity * h
    output_offsets = np.zeros(5, dtype=np.int64)
    XT_size = layers[0] * transposed_input_rows(layers, capacity) if transposed_input else 0
    sizes = (capacity * C, capacity * C, capacity * C, capacity, XT_size)
    for k, size in enumerate(sizes):  # S, P, dS, row_loss, Xᵀ
        output_offsets[k] = offset
        offset += size
    return offset, hidden_offsets, output_offsets


OUTPUT_NAMES = ("S", "P", "dS", "row_loss", "XT")


class Workspace:
    """Buffers for one model at batch sizes up to ``capacity``: one flat array, allocated once.

    Per hidden layer l, each (capacity, H_l): A[l] pre-activations, Hout[l] = φ(A[l]),
    dH[l] the gradient arriving at Hout[l], dA[l] the gradient at A[l] (dH and dA are
    separate: an in-place activation backward measured 40× slower).  Output layer, each
    (capacity, C): S scores, P probabilities, dS; and row_loss (capacity,).  ``rows(B)``
    gives views of the first B rows of everything (cached per B), so the short last batch
    of an epoch reuses the same memory.  The layout is ``workspace_layout``'s.
    """

    def __init__(self, model: MLP, capacity: int):
        self.capacity = capacity
        widths = model.layers[1:-1]
        C = model.n_classes
        size, self.hidden_offsets, outputs = workspace_layout(model.layers, capacity)
        self.flat = np.zeros(size, dtype=model.dtype)
        self.A, self.Hout, self.dH, self.dA = (
            [self.flat[o : o + capacity * h].reshape(capacity, h) for o, h in zip(self.hidden_offsets[:, kind], widths)]
            for kind in range(4)
        )
        # where S, P, dS, row_loss start (for a device twin of the buffer)
        self.output_offsets = dict(zip(OUTPUT_NAMES, outputs.tolist()))
        self.S, self.P, self.dS = (self.flat[o : o + capacity * C].reshape(capacity, C) for o in outputs[:3])
        self.row_loss = self.flat[outputs[3] : outputs[3] + capacity]
        self._rows: dict[int, _Rows] = {}

    def rows(self, B: int) -> "_Rows":
        if B > self.capacity:
            raise ValueError(f"batch of {B} rows exceeds workspace capacity {self.capacity}")
        if B not in self._rows:
            self._rows[B] = _Rows(self, B)
        return self._rows[B]


class _Rows:
    """Views of the first B rows of every workspace buffer (row slices stay C-contiguous)."""

    def __init__(self, ws: Workspace, B: int):
        self.B = B
        self.A = [a[:B] for a in ws.A]
        self.Hout = [h[:B] for h in ws.Hout]
        self.dH = [d[:B] for d in ws.dH]
        self.dA = [d[:B] for d in ws.dA]
        self.S, self.P, self.dS, self.row_loss = ws.S[:B], ws.P[:B], ws.dS[:B], ws.row_loss[:B]


def forward(backend, model: MLP, X: np.ndarray, workspace: Workspace) -> np.ndarray:
    """Scores S (B, C) for a validated X (B, D), into the workspace (returned as a view)."""
    buf = workspace.rows(X.shape[0])
    act_forward, _ = activation_kernels(backend, model.activation)
    act_forward, affine_forward = unchecked(act_forward), unchecked(backend.affine_forward)
    alpha = activation_spec(model.activation).alpha
    h = X
    with launch_guard(backend):
        for (W, b), A, Hout in zip(model._params[:-1], buf.A, buf.Hout):
            affine_forward(A, h, W, b)
            act_forward(Hout, A, alpha)
            h = Hout
        W, b = model._params[-1]
        affine_forward(buf.S, h, W, b)
    return buf.S


def unchecked(kernel):
    """A backend's kernel without the argument checks of its public name (the cpu backend's
    ``compiled``; the kernel itself elsewhere), for callers whose arguments are valid by
    construction (forward: a validated X, the model's parameters, a workspace of its shapes).
    The checks cost ~4 µs a call, a third of a one-row forward."""
    return getattr(kernel, "compiled", kernel)


# Scoring (Trainer.scores, MLP.scores, stacked_scores) goes through the rows this many at a
# time: float32 GEMMs round a row by how many rows share the call, so all cut the rows alike.
SCORING_ROWS = 1024
# MLP.scoring_workspace keeps a workspace of this many rows per thread and model.
KEPT_SCORING_ROWS = 64


_pin_lock = threading.Lock()
_pin = {"holders": 0, "blas": None, "before": None}  # one_blas_thread's state, shared by the process's threads


@contextlib.contextmanager
def one_blas_thread():
    """numpy's BLAS on one thread while any thread of the process is inside this block: the
    first in sets it, the last out restores what it was (threadpoolctl's limits are
    process-wide, so a plain ``with threadpool_limits(1)`` in two threads would let the
    first to leave restore two threads under the other).  The BLAS libraries are found once
    (threadpoolctl's search of the loaded libraries costs ~0.2 ms, more than a one-row
    predict); setting and restoring them then costs ~2 µs."""
    with _pin_lock:
        if _pin["holders"] == 0:
            if _pin["blas"] is None:
                from threadpoolctl import ThreadpoolController

                _pin["blas"] = ThreadpoolController().select(user_api="blas").lib_controllers
            _pin["before"] = [lib.num_threads for lib in _pin["blas"]]
            for lib in _pin["blas"]:
                lib.set_num_threads(1)
        _pin["holders"] += 1
    try:
        yield
    finally:
        with _pin_lock:
            _pin["holders"] -= 1
            if _pin["holders"] == 0:
                for lib, threads in zip(_pin["blas"], _pin["before"]):
                    lib.set_num_threads(threads)


def scores_in_chunks(kernels, model: MLP, X: np.ndarray, workspace: Workspace, ready=None) -> np.ndarray:
    """Scores S (N, C) of ``model`` for X (N, ·), SCORING_ROWS rows at a time through
    ``workspace`` (room for min(N, SCORING_ROWS) rows at least); ``ready(rows)`` makes each
    chunk what forward takes (standardised, in the model's dtype; None: as it is).  Beyond X
    and S, memory is one chunk's.

    numpy's BLAS runs on one thread meanwhile: OpenBLAS rounds differently on 1 and 2
    threads with some kernels (bench/blas_determinism.py; OPENBLAS_CORETYPE=Haswell here),
    and a model's scores must be the same bits wherever they are computed (a sweep's member
    scored on a Dask worker, whose BLAS has one thread, or in-process; predict on any
    machine).  (~0.2 ms a call to set and restore.)"""
    S = np.empty((X.shape[0], model.n_classes), dtype=model.dtype)
    with one_blas_thread():
        for lo in range(0, X.shape[0], SCORING_ROWS):
            rows = X[lo : lo + SCORING_ROWS] if ready is None else ready(X[lo : lo + SCORING_ROWS])
            with np.errstate(over="ignore", invalid="ignore"):  # (blown-up weights: inf and NaN, which callers check)
                S[lo : lo + len(rows)] = forward(kernels, model, rows, workspace)
    return S


def stacked_scores(params: np.ndarray, layers: Sequence[int], activation: str, X: np.ndarray) -> np.ndarray:
    """Scores S (M, N, C) of M same-shaped models, their flat parameters ``params`` (M, P)
    (a step plan's host rows), for one validated X (N, D), with the numpy backend: one GEMM
    per layer for all M, each model's slice the very call ``forward`` makes for it alone
    (the same bits: tests/test_stack.py), SCORING_ROWS rows at a time as Trainer.scores."""
    backend = get_backend("numpy")
    act_forward, _ = activation_kernels(backend, activation)
    alpha = activation_spec(activation).alpha
    M, N = params.shape[0], X.shape[0]
    offsets = layer_offsets(layers)
    weights = [(params[:, o : o + n_out * n_in].reshape(M, n_out, n_in).transpose(0, 2, 1),  # Wᵀ (M, in, out)
                params[:, o + n_out * n_in : o + n_out * (n_in + 1)][:, None, :])  # b (M, 1, out)
               for o, n_in, n_out in zip(offsets, layers[:-1], layers[1:])]
    S = np.empty((M, N, layers[-1]), dtype=params.dtype)
    for lo in range(0, N, SCORING_ROWS):
        h = X[lo : lo + SCORING_ROWS]
        for layer, (WT, b) in enumerate(weights):
            A = np.empty((M, h.shape[-2], WT.shape[2]), dtype=params.dtype)
            np.matmul(h, WT, out=A)
            A += b
            if layer < len(weights) - 1:
                act_forward(A, A, alpha)
            h = A
        S[:, lo : lo + SCORING_ROWS] = h
    return S


def backward_into(backend, model: MLP, X, y, workspace: Workspace, grads, weights=None) -> float:
    """Mean loss over (X (B, D), y (B,) class indices or Y (B, K) targets, as the model's task
    says); writes per-layer (dW, db) into ``grads`` views.

    X and y must be validated (see ``as_features`` / ``as_class_indices`` / ``as_targets``);
    ``weights`` (B,), if given, makes the loss the weighted mean Σ wᵢ·Lᵢ / Σ wᵢ.
    """
    buf = workspace.rows(X.shape[0])
    _, act_backward = activation_kernels(backend, model.activation)
    spec = activation_spec(model.activation)
    caches = buf.A if spec.backward_uses == "input" else buf.Hout
    inputs = [X] + buf.Hout  # the input of layer l
    dout = buf.dS
    with launch_guard(backend):
        S = forward(backend, model, X, workspace)
        if model.task == "regression":
            loss = backend.mse_forward(buf.row_loss, S, y, weights)
            backend.mse_backward(buf.dS, S, y, weights)
        else:
            loss = backend.softmax_crossentropy_forward(buf.P, buf.row_loss, S, y, weights)
            backend.softmax_crossentropy_backward(buf.dS, buf.P, y, weights)
        for layer in range(len(model._params) - 1, -1, -1):
            W, _ = model._params[layer]
            dW, db = grads[layer]
            dX = buf.dH[layer - 1] if layer > 0 else None
            backend.affine_backward(dX, dW, db, dout, inputs[layer], W)
            if layer > 0:
                act_backward(buf.dA[layer - 1], dX, caches[layer - 1], spec.alpha)
                dout = buf.dA[layer - 1]
    return float(loss)


def loss_and_grads(model: MLP, X, y, backend: str = "cpu", sample_weight=None):
    """(mean loss, [(dW (out, in), db (out,)), ...]) for one batch: cross-entropy over class
    indices y (B,), or, for a regressor, squared error against y (B,) or (B, K).

    backend: "cpu", "numpy", "auto", or "reference" (the single-example float64 path).
    The batched gradients equal the mean of the reference path's per-example gradients;
    with ``sample_weight`` (B,), the weighted mean Σ wᵢ·Lᵢ / Σ wᵢ and its gradients.
    Inputs are used as given: the model's ``input_transform`` is not applied here.
    """
    X = as_features(X, model.n_features, model.dtype)
    if model.task == "regression":
        y = as_targets(y, X.shape[0], model.n_classes, model.dtype)
    else:
        y = as_class_indices(y, X.shape[0], model.n_classes)
    weights = as_sample_weights(sample_weight, X.shape[0], model.dtype)
    if backend == "reference":
        from numbamlp import reference

        return reference.mean_loss_and_grads(model.params, model.activation, X, y, weights, model.loss)
    kernels = get_backend(backend)
    grad_flat = np.zeros_like(model.flat_params)
    grads = layer_views(grad_flat, model.layers)
    loss = backward_into(kernels, model, X, y, Workspace(model, X.shape[0]), grads, weights)
    return loss, grads
