"""Training configuration: one pydantic schema for the config file, the CLI and the Python API.

Every model forbids unknown keys and describes every field; the CLI takes its option
help from these descriptions.
"""

from __future__ import annotations

import functools
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from numbamlp.kernels import ACTIVATION_NAMES, CUDA_STATUS, activation_spec
from numbamlp.metrics import METRICS, TASK_METRICS, THRESHOLD_METRICS, check_metric_applies

TRAIN_BACKENDS = ("cpu", "numpy", "reference")
SCHEDULES = ("constant", "step", "cosine")
# The share of the training rows held out for validation when a run needs validation rows
# (early stopping, a sweep ranking its members) and data.val_fraction is 0.
DEFAULT_VAL_FRACTION = 0.1
# what a table's missing feature cells do (data.missing), and the fewest training rows a
# category needs to be one of its own (data.min_category_rows)
MISSING_POLICIES = ("impute", "error")
MIN_CATEGORY_ROWS = 10


class _Strict(BaseModel):
    # allow_inf_nan False: no setting means anything at infinity (an lr of inf passed the
    # bounds and trained to a divergence)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_numbers(cls, document):
        """A number setting given true/false or text is refused: pydantic would read a
        config file's `epochs = true` as 1 and `batch_size = "8"` as 8.  (Not strict mode
        throughout: that would refuse numpy's integers, which Python callers pass.)"""
        if not isinstance(document, dict):
            return document
        for key, name in _number_fields(cls):
            value = document.get(key, document.get(name))
            wrong = next((v for v in (value if isinstance(value, list) else [value]) if isinstance(v, (bool, str))),
                         None)
            if wrong is not None:
                raise ValueError(f"{key} must be a number, not {wrong!r}")
        return document


@functools.cache
def _number_fields(model: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    """(key, name) of the fields of ``model`` that hold numbers (or lists of them), and not
    text too (label_column is a name or an index)."""
    fields = []
    for name, field in model.model_fields.items():
        types = _annotation_types(field.annotation)
        if {int, float} & set(types) and str not in types:
            fields.append((field.alias or name, name))
    return tuple(fields)


def _annotation_types(annotation) -> tuple:
    """The plain types an annotation is made of: int | None → (int, NoneType); list[int] → (int,);
    Literal["a", "b"] → (str,)."""
    from typing import get_args, get_origin

    arguments = get_args(annotation)
    if get_origin(annotation) is Literal:
        return tuple({type(argument) for argument in arguments})
    if not arguments:
        return (annotation,)
    return tuple(t for argument in arguments for t in _annotation_types(argument))


class ModelConfig(_Strict):
    layers: list[int] | None = Field(
        None, description="Full layer list [D, H1, ..., C]; overrides 'hidden'."
    )
    hidden: list[int] = Field(
        [128], description="Hidden layer widths; input and output sizes come from the data."
    )
    activation: str = Field(
        "relu", description=f"Hidden activation: one of {', '.join(ACTIVATION_NAMES)}."
    )

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, name: str) -> str:
        return activation_spec(name).name

    @field_validator("layers")
    @classmethod
    def _layer_sizes(cls, layers):
        if layers is not None and (len(layers) < 2 or min(layers) < 1):
            raise ValueError("layers must list at least 2 positive sizes [D, ..., C]")
        return layers

    @field_validator("hidden")
    @classmethod
    def _hidden_sizes(cls, hidden):
        if hidden and min(hidden) < 1:
            raise ValueError("hidden widths must be positive")
        return hidden


# The defaults that belong to the optimizer, as in the frameworks users know (PyTorch's SGD
# has momentum 0; "momentum" and "nesterov" are SGD with momentum 0.9; Adam's lr is 1e-3).
# A setting that does not apply to the chosen optimizer is refused, never silently ignored.
OPTIMIZER_DEFAULTS: dict[str, dict[str, float]] = {
    "sgd": {"lr": 0.05, "momentum": 0.0},
    "momentum": {"lr": 0.05, "momentum": 0.9},
    "nesterov": {"lr": 0.05, "momentum": 0.9},
    "adam": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
    "adamw": {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}
OPTIMIZERS = tuple(OPTIMIZER_DEFAULTS)  # the optimizers' names: the keys above
MOMENTUM_OPTIMIZERS = ("momentum", "nesterov")  # SGD with momentum: momentum 0 is refused (that is sgd)
DEFAULT_OPTIMIZER = "momentum"


class OptimizerConfig(_Strict):
    # frozen: the other settings' defaults are the optimizer's, filled in when the config is
    # made, so assigning another name later would keep the first one's (Adam at SGD's lr 0.05,
    # with an unused momentum); a new config with the name gets its own
    name: Literal[OPTIMIZERS] = Field(
        DEFAULT_OPTIMIZER, frozen=True,
        description="Optimizer: sgd (plain SGD unless momentum is set, as PyTorch's), momentum "
        "(SGD with momentum 0.9), nesterov, adam, adamw (decoupled weight decay).",
    )
    lr: float | None = Field(
        None, gt=0, description="Learning rate (> 0); default: the optimizer's (0.05 for sgd, momentum "
        "and nesterov; 0.001 for adam and adamw)."
    )
    momentum: float | None = Field(
        None, ge=0, lt=1,
        description="Momentum in [0, 1), for sgd (default 0), momentum and nesterov (default 0.9) only.",
    )
    weight_decay: float = Field(
        1e-3, ge=0, description="L2 penalty: weight_decay·θ added to the gradient (decoupled for adamw)."
    )
    beta1: float | None = Field(None, ge=0, lt=1, description="Adam's first-moment decay (adam, adamw; default 0.9).")
    beta2: float | None = Field(None, ge=0, lt=1, description="Adam's second-moment decay (adam, adamw; default 0.999).")
    eps: float | None = Field(None, gt=0, description="Adam's denominator guard (adam, adamw; default 1e-8).")

    @model_validator(mode="before")
    @classmethod
    def _defaults_of_the_optimizer(cls, data):
        """Fill the settings the user left out with the chosen optimizer's defaults (the
        settings it does not use stay None)."""
        if not isinstance(data, dict) or data.get("name", DEFAULT_OPTIMIZER) not in OPTIMIZER_DEFAULTS:
            return data  # an unknown name is reported by the field's own validation
        filled = dict(data)
        for key, value in OPTIMIZER_DEFAULTS[data.get("name", DEFAULT_OPTIMIZER)].items():
            if filled.get(key) is None:
                filled[key] = value
        return filled

    @field_validator("momentum", "beta1", "beta2", "eps")
    @classmethod
    def _used_by_the_optimizer(cls, value, info):
        name = info.data.get("name")
        if value is not None and name in OPTIMIZER_DEFAULTS and info.field_name not in OPTIMIZER_DEFAULTS[name]:
            users = [n for n, defaults in OPTIMIZER_DEFAULTS.items() if info.field_name in defaults]
            raise ValueError(f"{info.field_name} does not apply to optimizer {name!r} (only to {', '.join(users)})")
        return value

    @model_validator(mode="after")
    def _momentum_needed(self):
        if self.name in MOMENTUM_OPTIMIZERS and self.momentum == 0:
            raise ValueError(f"optimizer {self.name!r} needs momentum > 0")
        return self


class ScheduleConfig(_Strict):
    name: Literal[SCHEDULES] = Field(
        "constant", description="Learning-rate schedule: constant, step or cosine (per epoch)."
    )
    warmup_epochs: int = Field(0, ge=0, description="Epochs of linear warm-up before the schedule.")
    step_size: int = Field(10, ge=1, description="step: epochs between decays.")
    gamma: float = Field(0.1, gt=0, le=1, description="step: decay factor.")
    min_lr: float = Field(0.0, ge=0, description="cosine: final learning rate.")


# What early stopping watches when early_stopping.metric is unset.
DEFAULT_STOPPING_METRIC = "val_loss"


class EarlyStoppingConfig(_Strict):
    patience: int | None = Field(
        None, ge=1,
        description="Stop after this many epochs without improvement of the validation metric (metric) and "
        "restore the best epoch's weights; unset: train all epochs.",
    )
    min_delta: float = Field(0.0, ge=0, description="Smallest improvement of the metric that counts.")
    metric: Literal[METRICS] | None = Field(
        None,
        description="The validation metric that picks the best epoch (early stopping) and, in a sweep, the best "
        f"member: for classification {', '.join(TASK_METRICS['classification'])} (val_f1: two classes, of the "
        f"second; val_macro_f1: more), for regression {', '.join(TASK_METRICS['regression'])}.  Unset: "
        f"{DEFAULT_STOPPING_METRIC} for early stopping, and a sweep ranks by {TASK_METRICS['classification'][0]} "
        f"or {TASK_METRICS['regression'][0]}.",
    )

    @property
    def watched_metric(self) -> str:
        """The validation metric early stopping watches: ``metric``, else DEFAULT_STOPPING_METRIC."""
        return self.metric or DEFAULT_STOPPING_METRIC


class DataConfig(_Strict):
    train: str = Field(
        "builtin:digits",
        description="Training data: builtin:NAME (digits, iris, wine, breast_cancer, spiral; diabetes for "
        "regression), a .csv "
        "or .parquet file (label column: label_column, default the last), a .npz file with X, y "
        "(optional X_test, y_test), or a folder holding X.npy and y.npy (optional X_test.npy, "
        "y_test.npy; X is memory-mapped).",
    )
    test: str | None = Field(
        None, description="Test data; default: the file's X_test/y_test, else a held-out split."
    )
    val: str | None = Field(
        None, description="Validation data (same format as train); default: none, or a held-out "
        "val_fraction of the training rows."
    )
    test_fraction: float = Field(
        0.25, gt=0, lt=1, description="Stratified test fraction held out when there is no test set."
    )
    val_fraction: float = Field(
        0.0, ge=0, lt=1, description="Stratified validation fraction of the training split (early "
        f"stopping without validation data holds out {DEFAULT_VAL_FRACTION:g} when this is 0)."
    )
    standardize: bool = Field(
        True, description="Standardise features with statistics of the training split."
    )
    label_column: str | int | None = Field(
        None, description="CSV or Parquet label column, by header name or 0-based index; default: the last."
    )
    header: bool | None = Field(
        None, strict=True,
        description="Whether a CSV file's first row is a header (names the columns); unset: detected (a row "
        "of 0,1,...,W-1, or one with text outside the label column, is one; predict and eval also take a row "
        "holding the model's feature names as one, and refuse a row they cannot tell).",
    )
    seed: int | None = Field(
        None, ge=0, description="Seed of the held-out test and validation rows (and of builtin:spiral's "
        "points); default: the run's seed.  A sweep fixes it so that every member sees the same split."
    )
    features: list[str] | None = Field(
        None, description="The feature columns of a CSV or Parquet file, by name; unset: every column but the "
        "label column and those dropped (an identifier column is left out, with a note, unless named here)."
    )
    drop: list[str] = Field(
        default_factory=list, description="Columns of a CSV or Parquet file that are not features (an ID, a "
        "free-text note), by name."
    )
    categorical: list[str] = Field(
        default_factory=list, description="Columns read as categories even though they hold numbers (a zip "
        "code, a store number); a column of text is categorical without being named."
    )
    missing: Literal[MISSING_POLICIES] = Field(
        "impute", description="Missing feature cells (empty, NA, NaN, a Parquet null): impute (a number: the "
        "training split's median, plus a was-missing feature; a category: one of its own) or error (refuse "
        "the file, naming the cell)."
    )
    min_category_rows: int = Field(
        MIN_CATEGORY_ROWS, ge=1, description="A category with fewer training rows than this shares one "
        "bucket with the categories training never saw."
    )

    @field_validator("features", "drop", "categorical")
    @classmethod
    def _distinct_names(cls, value):
        if value is not None:
            repeated = sorted({name for name in value if value.count(name) > 1})
            if repeated:
                raise ValueError(f"names {', '.join(map(repr, repeated))} more than once")
            if any(not name for name in value):
                raise ValueError("an empty column name")
        return value

    @model_validator(mode="after")
    def _columns_have_one_role(self):
        both = sorted(set(self.features or ()) & set(self.drop))
        if both:
            raise ValueError(f"column {both[0]!r} is both a feature (features) and dropped (drop)")
        if self.label_column is not None and str(self.label_column) in set(self.features or ()) | set(self.drop):
            raise ValueError(f"column {self.label_column!r} is the label column; leave it out of features and drop")
        return self

    @model_validator(mode="after")
    def _one_source_of_validation_rows(self):
        if self.val is not None and self.val_fraction > 0:
            raise ValueError("val and val_fraction are both set; give a validation file or a fraction, not both")
        return self


class TrainConfig(_Strict):
    task: Literal["classification", "regression"] = Field(
        "classification",
        description="classification (softmax cross-entropy over class labels) or regression (squared "
        "error against float targets, one or more outputs; the targets are standardised with the "
        "training split's statistics when data.standardize is on, and predictions are in their units).",
    )
    seed: int = Field(0, ge=0, description="Seed for initialisation, splits and shuffling (≥ 0).")
    backend: Literal[(*TRAIN_BACKENDS, "cuda")] = Field(
        "cpu",
        description=f"Compute backend: one of {', '.join(TRAIN_BACKENDS)} (reference: slow, for validation), "
        f"or cuda ({CUDA_STATUS}).",
    )
    dtype: Literal["float32", "float64"] = Field("float32", description="Floating-point type.")
    threads: int | None = Field(
        None, ge=1,
        description="CPU threads (default: all cores).  On the cpu backend the weights do not "
        "depend on it: every matrix product is cut into blocks by its shape, never by the thread count.",
    )
    epochs: int = Field(30, ge=0, description="Passes over the training data (≥ 0).")
    batch_size: int = Field(32, ge=1, description="Minibatch size (≥ 1); the last short batch is kept.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Network shape.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="Optimizer.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="Learning-rate schedule.")
    early_stopping: EarlyStoppingConfig = Field(
        default_factory=EarlyStoppingConfig, description="Early stopping on validation loss."
    )
    threshold: float | Literal[THRESHOLD_METRICS] | None = Field(
        None,
        description="A binary classifier's decision threshold on the second class's probability (the classes "
        f"sorted): a number in (0, 1), or one of {', '.join(THRESHOLD_METRICS)}: the threshold that maximises it on "
        "the validation rows (held out as early stopping holds them out when there are none), stored in the model "
        "and used by predict, the service and ONNX's label; unset: the most probable class.",
    )
    class_weight: Literal["balanced"] | dict[str, float] | None = Field(
        None,
        description="Per-class loss weights: 'balanced' (n_samples / (n_classes · count)) or "
        "{label: weight}; unset: all 1.",
    )
    validate_gradients: bool = Field(
        False,
        alias="validate",
        description="Before training, compare the backend's gradients with the reference path on a "
        "few real batches and stop if they disagree beyond the dtype's tolerance.",
    )
    data: DataConfig = Field(default_factory=DataConfig, description="Data sources and splits.")

    @field_validator("class_weight", mode="before")
    @classmethod
    def _class_weights(cls, value):
        """'balanced', or {label: weight} with the labels as text (as a config file writes
        them: 0 and "0" name one class) and weights finite numbers ≥ 0: one message for
        anything else (the union's two would name its members)."""
        if value is None or value == "balanced":
            return value
        if not isinstance(value, dict):
            raise ValueError(f"must be 'balanced' or a mapping {{label: weight}}, got {value!r}")
        weights = {}
        for label, weight in value.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < float("inf"):
                raise ValueError(f"the weight of class {label!r} must be a finite number >= 0, got {weight!r}")
            weights[str(label)] = float(weight)
        return weights

    @field_validator("early_stopping")
    @classmethod
    def _stopping_metric_of_the_task(cls, value, info):
        # (a field's own check, after task's: the message names early_stopping)
        if value.metric is not None and info.data.get("task") is not None:
            check_metric_applies(value.metric, info.data["task"])
        return value

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold_is_one_thing(cls, value):
        """A number or a metric's name: one message for anything else (the union's would name its members)."""
        if value is None or value in THRESHOLD_METRICS or (isinstance(value, (int, float))
                                                           and not isinstance(value, bool)):
            return value
        raise ValueError(f"must be a probability in (0, 1) or one of {', '.join(THRESHOLD_METRICS)}, got {value!r}")

    @field_validator("threshold")
    @classmethod
    def _threshold_is_a_probability(cls, value, info):
        if value is not None and info.data.get("task") == "regression":
            raise ValueError("threshold is for binary classification; task 'regression' has no classes")
        if isinstance(value, float) and not 0 < value < 1:
            raise ValueError(f"a threshold is a probability in (0, 1), got {value}")
        return value

    @field_validator("class_weight")
    @classmethod
    def _class_weight_is_for_classes(cls, value, info):
        # (a field's own check, after task's: the message then names class_weight, or its flag)
        if value is not None and info.data.get("task") == "regression":
            raise ValueError("class_weight is for classification; task 'regression' has no classes")
        return value


def names_a_file(source) -> bool:
    """Whether a data source (data.train, .val, .test) is a path: not builtin:NAME, nor a
    service's uploaded dataset:<id>."""
    return isinstance(source, str) and bool(source) and not source.startswith(("builtin:", "dataset:"))


def with_absolute_data_paths(document: dict) -> dict:
    """A config document with its data files (data.train, .val, .test) as absolute paths, as
    a run's config.json records them: `eval RUN_DIR` and `--resume` then find them from any
    folder (a relative path would name another file there, or none).  builtin: and dataset:
    sources stay as they are."""
    data = document.get("data")
    if not isinstance(data, dict):
        return document
    files = {key: os.path.abspath(value) for key, value in data.items()
             if key in ("train", "val", "test") and names_a_file(value)}
    return {**document, "data": {**data, **files}}


def set_setting(document: dict, path: str, value) -> None:
    """Set the dotted ``path`` (``optimizer.lr``) in a config document (nested dicts)."""
    *parents, leaf = path.split(".")
    for part in parents:
        document = document.setdefault(part, {})
    document[leaf] = value
