"""ONNX export: a trained MLP as a self-contained ONNX graph that runs without numbamlp.

Symbols: N rows (the graph's dynamic batch dimension), D input features, H hidden width,
C classes.

The graph a classifier becomes (opset ``DEFAULT_OPSET`` unless asked otherwise)::

    X (N, D) float32                                  raw features, as ``MLP.predict`` takes them
    → ((X − mean_hi) − mean_lo) / scale               the saved standardisation, if the model has one
    → Gemm(W_1, b_1, transB=1) → φ → … → Gemm(W_L, b_L, transB=1)      logits (N, C)
    → Softmax(axis=1)                     → probabilities (N, C) float32
    → ArgMax(axis=1) of the logits → Gather(classes)  → label (N,) int64 or string

Decisions, with their reasons:

- float32 graphs only.  ``X`` is float32 (the issue's contract, and what every runtime
  serves fastest); a float64 model is exported with its weights rounded to float32, so it
  agrees with numbamlp's float64 predictions to float32 rounding, like a float32 model.  A
  float64 graph is not an option: onnxruntime's CPU kernels for Erf, Elu and LeakyRelu take
  float32 only.
- The standardisation stays its own three elementwise nodes rather than being folded into
  the first layer: W' = W/scale, b' = b − W·mean/scale is exact in float64 but not in
  float32, where x·W' and b' cancel whenever |mean| ≫ scale (b' carries the mean).  The
  mean is split into float32 parts mean_hi + mean_lo (mean_lo = the float32 rounding error
  of mean_hi): X − mean_hi is exact when X is near the mean (Sterbenz) and rounded relative
  to the result otherwise, so the centred value is as accurate as numbamlp's float64
  centring rounded to float32, however large the features' offset.
- The label is the argmax of the logits, as ``MLP.predict`` takes it (of the probabilities,
  two logits that round to the same probability would tie) — for a binary classifier with a
  decision threshold, whether the second class's probability is at least it — and the class values come from
  ``Gather`` on a constant: it works for int64 and string tensors alike in onnxruntime, with
  no ONNX-ML operator (whose support differs between runtimes) needed.
- GELU is exact: 0.5·a·(1 + erf(a/√2)) below opset 20, the ``Gelu`` operator with
  approximate="none" from opset 20.  SiLU is Sigmoid·Mul at every opset: onnxruntime 1.32
  runs ``Swish`` only at opset 24 itself (opsets 25-28 have no kernel for it), so Sigmoid·Mul
  is the form every runtime loads.
- Opsets ``MIN_OPSET``..``MAX_OPSET`` (and no newer than the installed ``onnx`` knows):
  13 (2020) is the first with Softmax in its per-axis form and every other operator used
  here in its current one, and every maintained runtime loads it; 28 is the newest tested.  The default, 17, is the newest opset that
  onnxruntime has supported since 1.13 (2022), so the file also loads in older C#, Java and
  browser builds; GELU through Erf is exact there.
- The IR version is set explicitly to the oldest that can carry the opset
  (``onnx.helper.find_min_ir_version_for``: IR 8 for opset 17): the ``onnx`` package stamps
  its own newest IR version otherwise, which older runtimes refuse to load.

A model trained on a table (``model.table``, a ``numbamlp.encoding.TableEncoder``) takes
the raw columns instead of ``X``, one input per column, as skl2onnx takes a DataFrame, and
its graph starts with the encoding (numbamlp.encoding's module docstring is the spec)::

    number column c   (N, 1) double, NaN where missing
      → Where(IsNaN(c), median, c)                    the value (N, 1)
      → Cast(IsNaN(c), double)                        its was-missing feature, when it has one
    text column t     (N, 1) string, "" where missing
      → ai.onnx.ml LabelEncoder(categories → 0..B−2, default B−1)     bucket (N, 1) int64
      → Gather(table (B, W), bucket) → Squeeze       its features (N, W)
    → Concat(axis=1)                                  the encoded row (N, D) double
    → (· − mean) / scale → Cast(float)                "standardized" (N, D) float32, then the MLP

- Number inputs are double, not float: a table's number columns are float64 (pandas, CSV
  and Parquet readers give them so) and numbamlp imputes, encodes and standardises in
  float64, rounding to float32 only at the first layer.  The graph does the same, so its
  first layer sees the bits ``predict_proba`` gives it, and a column far from zero (a
  timestamp, an amount of 12345.678 ± 0.01) keeps its digits, where a float32 input would
  have rounded them away before the graph could centre them.  onnxruntime runs every node of
  that part (IsNaN, Where, Cast, Gather, Concat, Sub, Div) in double.
- The median is IsNaN + Where, not ai.onnx.ml's Imputer: onnxruntime has no double kernel
  for Imputer (float and int64 only; tried with onnxruntime 1.32).
- A text cell's bucket is ai.onnx.ml's LabelEncoder (string → int64 with a default: version
  2, domain ``ai.onnx.ml`` opset ``ML_OPSET``; version 4's tensor attributes would need
  ai.onnx.ml opset 4 and IR 9) with the shared bucket as its default, so an unseen text
  goes to the shared bucket and a missing one, the empty string (``MISSING_TEXT``), to its
  own bucket exactly when training made one ("" is then among the categories).  A column
  with no category of its own (every one rare) puts every row in the shared bucket without
  a LabelEncoder (which needs keys).
- Inputs are named by their columns, sanitised to C identifiers (``input_names``: each run
  of characters outside [A-Za-z0-9_] becomes one "_", a leading digit gets "_" before it,
  and a name taken by an earlier column or by the graph's own tensors gets "_2", "_3", ...);
  the metadata ``input_columns`` maps each input to its column, ``categorical`` lists the
  text columns.
- Where the cells come from is the caller's: the graph compares texts exactly, so it takes
  them as numbamlp reads them (surrounding spaces stripped; a category column of numbers
  as the integer's text, "3" not "3.0": ``numbamlp.encoding.number_text``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from numbamlp.kernels import ACTIVATION_NAMES, activation_spec

__all__ = ["DEFAULT_OPSET", "MAX_OPSET", "MIN_OPSET", "build_onnx_model", "check_opset", "export_onnx",
           "input_names"]

MIN_OPSET = 13
MAX_OPSET = 28
DEFAULT_OPSET = 17
GELU_OP_OPSET = 20  # the first opset with the Gelu operator
# ai.onnx.ml opset of a table model's graph: LabelEncoder version 2 (string → int64 with a default)
ML_OPSET = 2
# names the graph's own tensors hold, which no input of a table model may take
_GRAPH_NAMES = ("probabilities", "label", "predictions", "logits", "standardized", "encoded")

# protobuf cannot serialise a message over 2 GiB; bigger models need ONNX external data
_PROTOBUF_LIMIT = 2**31 - 1

INSTALL_HINT = "ONNX export needs the onnx extra: pip install 'numbamlp[onnx]'"


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return onnx


def check_opset(opset) -> int:
    """``opset`` as an int in MIN_OPSET..MAX_OPSET that the installed ``onnx`` knows
    (``DEFAULT_OPSET`` for None); ValueError, one line, otherwise."""
    onnx = _onnx()
    newest = min(MAX_OPSET, onnx.defs.onnx_opset_version())
    if opset is None:
        opset = DEFAULT_OPSET
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"unsupported opset {opset!r}: numbamlp exports opsets {MIN_OPSET} to {newest} "
                         f"(onnx {onnx.__version__} installed)")
    return int(opset)


# ---------------------------------------------------------------- graph pieces
class _Graph:
    """Nodes and constants of the graph being built, with unique names for intermediates."""

    def __init__(self, helper, numpy_helper, reserved=()):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.initializers = [], []
        self._count = 0
        self._shared: dict[float, str] = {}
        self._reserved = set(reserved)  # (the inputs' names: no intermediate takes one)

    def name(self, stem: str) -> str:
        self._count += 1
        while f"{stem}_{self._count}" in self._reserved:
            self._count += 1
        return f"{stem}_{self._count}"

    def constant(self, stem: str, array: np.ndarray) -> str:
        name = self.name(stem)
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def scalar(self, value: float) -> str:
        """A float32 scalar constant, one per value however often it is used."""
        if value not in self._shared:
            self._shared[value] = self.constant("c", np.array(value, dtype=np.float32))
        return self._shared[value]

    def op(self, op_type: str, inputs: list[str], output: str | None = None, domain: str | None = None,
           **attributes) -> str:
        output = output or self.name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [output], domain=domain, **attributes))
        return output


def _standardise(g: _Graph, x: str, transform) -> str:
    """(x − mean) / scale for x (N, D) float32, with the float64 mean as two float32 parts."""
    mean = np.asarray(transform.mean, dtype=np.float64)
    mean_hi = mean.astype(np.float32)
    mean_lo = (mean - mean_hi.astype(np.float64)).astype(np.float32)
    centred = g.op("Sub", [g.op("Sub", [x, g.constant("mean_hi", mean_hi)]), g.constant("mean_lo", mean_lo)])
    scale = np.asarray(transform.scale, dtype=np.float64).astype(np.float32)
    return g.op("Div", [centred, g.constant("scale", scale)], "standardized")


def input_names(columns: list[str]) -> list[str]:
    """The graph's input name for each raw column (N,) of a table model: the column's name
    where it is a C identifier the graph does not use itself, else sanitised (each run of
    characters outside [A-Za-z0-9_] → "_", "_" before a leading digit or for an empty name) and made
    unique with "_2", "_3", ... (see the module docstring)."""
    taken, names = set(_GRAPH_NAMES), []
    for column in columns:
        stem = re.sub(r"[^A-Za-z0-9_]+", "_", str(column))
        if not stem or stem[0].isdigit():
            stem = "_" + stem
        name, k = stem, 1
        while name in taken:
            k += 1
            name = f"{stem}_{k}"
        taken.add(name)
        names.append(name)
    return names


def _encode_number(g: _Graph, x: str, coding) -> list[str]:
    """A number column x (N, 1) double → its value, NaN replaced by the median, and its
    was-missing feature when the coding has one: [(N, 1) double, ...]."""
    missing = g.op("IsNaN", [x])
    parts = [g.op("Where", [missing, g.constant("median", np.array([[coding.median]], dtype=np.float64)), x])]
    if coding.indicator:
        from onnx import TensorProto

        parts.append(g.op("Cast", [missing], to=TensorProto.DOUBLE))
    return parts


def _category_keys(categories: list[str]) -> dict[str, int]:
    """{text: bucket} of a categorical column's LabelEncoder: each category's text, and the
    spellings numbamlp.encoding.category_text reads as one of them that a graph cannot
    compute — a missing cell's markers (MISSING_CELLS: NA, n/a, ...) and true/false — in
    their usual cases (lower, UPPER, Capitalised).  Numbers must come as category_text
    writes them ("3", not "3.0")."""
    from numbamlp.encoding import MISSING_CELLS, MISSING_TEXT, usual_spellings

    keys = {text: k for k, text in enumerate(categories)}
    spellings = {MISSING_TEXT: MISSING_CELLS, "true": ("true",), "false": ("false",)}
    for text, forms in spellings.items():
        if text in keys:
            for form in forms:
                for spelled in usual_spellings(form):
                    keys.setdefault(spelled, keys[text])
    return keys


def _encode_category(g: _Graph, x: str, coding) -> list[str]:
    """A text column x (N, 1) string → table[bucket] (N, W) double (see the module
    docstring); [] when the coding has no features."""
    if coding.width == 0:
        return []
    shared = len(coding.categories)
    if coding.categories:
        keys = _category_keys(coding.categories)
        bucket = g.op("LabelEncoder", [x], domain="ai.onnx.ml", keys_strings=list(keys),
                      values_int64s=list(keys.values()), default_int64=shared)
    else:  # (every row in the shared bucket, 0)
        from onnx import TensorProto

        bucket = g.op("ConstantOfShape", [g.op("Shape", [x])],
                      value=g.helper.make_tensor("shared", TensorProto.INT64, [1], [shared]))
    table = g.constant("table", np.ascontiguousarray(coding.table, dtype=np.float64))
    rows = g.op("Gather", [table, bucket], axis=0)  # (N, 1, W)
    return [g.op("Squeeze", [rows, g.constant("axis", np.array([1], dtype=np.int64))])]


def _encode_table(g: _Graph, table, inputs: list[str], transform) -> str:
    """The raw columns (``inputs``, in the table's order) → the first layer's input
    "standardized" (N, D) float32: encoded in double, standardised in double, then rounded."""
    from onnx import TensorProto

    parts = []
    for coding, x in zip(table.codings, inputs):
        encode = _encode_category if hasattr(coding, "categories") else _encode_number  # (a CategoryCoding)
        parts.extend(encode(g, x, coding))
    encoded = g.op("Concat", parts, "encoded", axis=1) if len(parts) > 1 else g.op("Identity", parts, "encoded")
    if transform is not None:
        centred = g.op("Sub", [encoded, g.constant("mean", np.asarray(transform.mean, dtype=np.float64))])
        encoded = g.op("Div", [centred, g.constant("scale", np.asarray(transform.scale, dtype=np.float64))])
    return g.op("Cast", [encoded], "standardized", to=TensorProto.FLOAT)


def _table_inputs(model, names: list[str]) -> list:
    """The graph inputs of a table model: one (N, 1) per raw column, double or string."""
    from onnx import TensorProto, helper

    inputs = []
    for coding, name in zip(model.table.codings, names):
        column = coding.name
        if hasattr(coding, "categories"):  # (a CategoryCoding)
            kind, doc = TensorProto.STRING, f"column {column!r}: its text (the empty string where missing)"
        else:
            kind, doc = TensorProto.DOUBLE, f"column {column!r}: a number (NaN where missing)"
        inputs.append(helper.make_tensor_value_info(name, kind, ["N", 1], doc_string=doc))
    return inputs


def _activation(g: _Graph, a: str, name: str, opset: int) -> str:
    """φ(a) for a (N, H) float32, exactly as numbamlp's activation table defines it."""
    alpha = activation_spec(name).alpha
    if name == "relu":
        return g.op("Relu", [a])
    if name == "leaky_relu":
        return g.op("LeakyRelu", [a], alpha=alpha)
    if name == "elu":
        return g.op("Elu", [a], alpha=alpha)
    if name == "sigmoid":
        return g.op("Sigmoid", [a])
    if name == "tanh":
        return g.op("Tanh", [a])
    if name == "silu":
        return g.op("Mul", [a, g.op("Sigmoid", [a])])
    if name == "gelu":
        if opset >= GELU_OP_OPSET:
            return g.op("Gelu", [a], approximate="none")
        # Φ(a) = 0.5·(1 + erf(a/√2)), as numbamlp computes it
        erf = g.op("Erf", [g.op("Mul", [a, g.scalar(float(np.sqrt(0.5)))])])
        cdf = g.op("Mul", [g.op("Add", [erf, g.scalar(1.0)]), g.scalar(0.5)])
        return g.op("Mul", [a, cdf])
    raise ValueError(f"activation {name!r} has no ONNX form; exportable: {', '.join(ACTIVATION_NAMES)}")


def _class_values(classes, n_outputs: int) -> np.ndarray | None:
    """The model's class labels as a (C,) array ``Gather`` can index: int64, float64, bool or
    str (object); None when the model has none (then the label is the class index)."""
    if classes is None:
        return None
    classes = np.asarray(classes)
    if classes.ndim != 1 or len(classes) != n_outputs:
        raise ValueError(f"cannot export: the model has {n_outputs} outputs but {classes.size} class labels")
    kind = classes.dtype.kind
    if kind in "iu":
        if kind == "u" and classes.max() > np.iinfo(np.int64).max:
            raise ValueError("cannot export: class labels beyond int64")
        return classes.astype(np.int64)
    if kind in "fb":
        return classes.astype(np.float64 if kind == "f" else np.bool_)
    if kind in "USO":
        return np.array([str(c) for c in classes.tolist()], dtype=object)
    raise ValueError(f"cannot export class labels of dtype {classes.dtype}")


def _classifier_head(g: _Graph, logits: str, model) -> list:
    """probabilities (N, C) float32 and label (N,) of the class values; the graph outputs."""
    from onnx import TensorProto, helper

    C = model.n_classes
    g.op("Softmax", [logits], "probabilities", axis=1)
    values = _class_values(model.classes, C)
    threshold = getattr(model, "threshold", None)
    if threshold is not None:  # (a binary classifier's threshold on the second class's probability)
        positive = g.op("Gather", ["probabilities", g.constant("positive", np.array(1, dtype=np.int64))], axis=1)
        at_least = g.op("GreaterOrEqual", [positive, g.constant("threshold", np.array(threshold, dtype=np.float32))])
        index = g.op("Cast", [at_least], "label" if values is None else None, to=TensorProto.INT64)
    if values is None:
        if threshold is None:
            g.op("ArgMax", [logits], "label", axis=1, keepdims=0)
        label_type = TensorProto.INT64
    else:
        if threshold is None:
            index = g.op("ArgMax", [logits], axis=1, keepdims=0)
        g.op("Gather", [g.constant("classes", values), index], "label", axis=0)
        label_type = helper.np_dtype_to_tensor_dtype(values.dtype) if values.dtype != object else TensorProto.STRING
    return [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", C]),
            helper.make_tensor_value_info("label", label_type, ["N"])]


def _regressor_head(g: _Graph, outputs: str, model) -> list:
    """predictions (N, K) float32 in the targets' units: outputs·scale + mean when the targets
    were standardised (model.target_transform), else the outputs; the graph's output."""
    from onnx import TensorProto, helper

    transform = model.target_transform
    if transform is None:
        g.op("Identity", [outputs], "predictions")
    else:
        scale = np.asarray(transform.scale, dtype=np.float32)
        mean = np.asarray(transform.mean, dtype=np.float32)
        g.op("Add", [g.op("Mul", [outputs, g.constant("y_scale", scale)]), g.constant("y_mean", mean)], "predictions")
    return [helper.make_tensor_value_info("predictions", TensorProto.FLOAT, ["N", model.n_classes])]


# The graph's last part per task, after the logits (N, K): its nodes, and the outputs it declares.
_HEADS = {"classification": _classifier_head, "regression": _regressor_head}


def _metadata(model, task: str) -> dict[str, str]:
    """What a consumer of the file may want to know about the model, as metadata_props."""
    import numbamlp

    classes = None if model.classes is None else np.asarray(model.classes).tolist()
    return {
        "producer": "numbamlp",
        "numbamlp_version": numbamlp.__version__,
        "task": task,
        "layers": json.dumps(model.layers),
        "activation": model.activation,
        "activation_alpha": repr(activation_spec(model.activation).alpha),
        "classes": json.dumps(classes),
        # the columns of X, in order (null: the training data had no names)
        "feature_names": json.dumps(model.feature_names),
        # what each column held at training (numpy's dtype names where there is one; null: not recorded)
        "feature_dtypes": json.dumps(model.feature_dtypes),
        "standardized": json.dumps(model.input_transform is not None),
        "dtype": model.dtype.name + (" (exported as float32)" if model.dtype.name != "float32" else ""),
    }


def _table_metadata(model, names: list[str]) -> dict[str, str]:
    """A table model's metadata beside _metadata's: each input's column ({input: column}, in
    the columns' order) and the text columns."""
    return {"input_columns": json.dumps(dict(zip(names, model.table.columns))),
            "categorical": json.dumps(model.table.categorical)}


def _columns_doc(model) -> str:
    """The input's doc string: what its columns are."""
    if model.feature_names is None:
        return f"{model.n_features} features, raw (the model standardises them when it was trained to)"
    return "columns, in order: " + ", ".join(model.feature_names)


def _as_mlp(model):
    """An MLP, or a fitted MLPClassifier's ``model_``; TypeError otherwise."""
    from numbamlp.model import MLP

    if not isinstance(model, MLP):
        model = getattr(model, "model_", model)  # numbamlp.MLPClassifier or MLPRegressor after fit
    if not isinstance(model, MLP):
        unfitted = " (not fitted yet)" if type(model).__name__.startswith("MLP") else ""
        raise TypeError(f"export_onnx takes a numbamlp MLP, or a fitted MLPClassifier or MLPRegressor, not "
                        f"{type(model).__name__}{unfitted}")
    return model


# ---------------------------------------------------------------- public API
def build_onnx_model(model, opset: int | None = None):
    """The ONNX ModelProto of ``model`` (see the module docstring for the graph), checked by
    ``onnx.checker`` with full shape inference.

    Inputs: X (N, D) float32; for a model trained on a table (``model.table``), one input
    (N, 1) per raw column instead, named by ``input_names``: a number column double (NaN where
    missing), a text column string ("" where missing).  Outputs: a classifier's
    probabilities (N, C) float32 and label
    (N,) holding ``model.classes`` (int64, float64, bool or string) or the class index (int64)
    without; a regressor's predictions (N, K) float32, in the targets' units.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    opset = check_opset(opset)
    model = _as_mlp(model)
    task = getattr(model, "task", "classification")
    if task not in _HEADS:
        raise ValueError(f"ONNX export of {task} models is not supported yet")
    if model.flat_params.size * 4 > _PROTOBUF_LIMIT:
        raise ValueError(f"cannot export: {model.flat_params.size} parameters exceed ONNX's 2 GiB limit "
                         "without external data, which numbamlp does not write")

    table = getattr(model, "table", None)
    if table is None:
        g = _Graph(helper, numpy_helper)
        h = "X"
        if model.input_transform is not None:
            h = _standardise(g, h, model.input_transform)
        inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", model.n_features],
                                                doc_string=_columns_doc(model))]
    else:
        if table.width != model.n_features:
            raise ValueError(f"cannot export: the table encoding makes {table.width} inputs, "
                             f"but the first layer takes {model.n_features}")
        names = input_names(table.columns)
        g = _Graph(helper, numpy_helper, reserved=names)
        h = _encode_table(g, table, names, model.input_transform)
        inputs = _table_inputs(model, names)
    last = len(model.params) - 1
    for layer, (W, b) in enumerate(model.params):
        # Gemm with transB=1 takes W (out, in) as numbamlp stores it: A = h Wᵀ + b
        W32, b32 = g.constant(f"W{layer}", W.astype(np.float32)), g.constant(f"b{layer}", b.astype(np.float32))
        h = g.op("Gemm", [h, W32, b32], "logits" if layer == last else None, transB=1)
        if layer != last:
            h = _activation(g, h, model.activation, opset)
    outputs = _HEADS[task](g, h, model)

    graph = helper.make_graph(
        g.nodes, "numbamlp_mlp", inputs, outputs, g.initializers,
        doc_string=f"numbamlp MLP {'-'.join(map(str, model.layers))} {model.activation}",
    )
    imports = [helper.make_opsetid("", opset)]
    metadata = _metadata(model, task)
    if table is not None:
        imports.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
        metadata.update(_table_metadata(model, names))
    proto = helper.make_model(graph, opset_imports=imports, producer_name="numbamlp",
                              producer_version=metadata["numbamlp_version"])
    proto.ir_version = helper.find_min_ir_version_for(imports)
    helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model, path, opset: int | None = None):
    """Write ``model`` (an MLP, or a fitted MLPClassifier) to ``path`` as ONNX (atomically:
    a reader sees the old file or the new one); returns the ModelProto written.

    opset: MIN_OPSET..MAX_OPSET, default DEFAULT_OPSET (17).  The graph takes raw features
    X (N, D) float32 (a table model: its raw columns, one input each, see build_onnx_model)
    and outputs a classifier's probabilities (N, C) float32 and label (N,),
    or a regressor's predictions (N, K) float32; float64 models are exported as float32 graphs.
    """
    from numbamlp.io import atomic_write_bytes

    proto = build_onnx_model(model, opset)
    atomic_write_bytes(Path(path), proto.SerializeToString())
    return proto
