"""Training configuration: one pydantic schema for the config file, the CLI and the Python API.

Every model forbids unknown keys and describes every field; the CLI takes its option
help from these descriptions.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from numbamlp.kernels import ACTIVATION_NAMES, activation_spec

TRAIN_BACKENDS = ("cpu", "numpy", "reference")
OPTIMIZERS = ("sgd",)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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


class OptimizerConfig(_Strict):
    name: str = Field("sgd", description=f"Optimizer: one of {', '.join(OPTIMIZERS)}.")
    lr: float = Field(0.05, gt=0, description="Learning rate (> 0).")
    momentum: float = Field(
        0.9, ge=0, lt=1, description="Momentum in [0, 1); 0 is the seed notes' plain SGD."
    )
    weight_decay: float = Field(1e-3, ge=0, description="L2 penalty: weight_decay·θ is added to every gradient.")

    @field_validator("name")
    @classmethod
    def _known_optimizer(cls, name: str) -> str:
        if name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
        return name


class DataConfig(_Strict):
    train: str = Field(
        "builtin:digits", description="Training data: builtin:NAME or a .npz file with X, y."
    )
    test: str | None = Field(
        None, description="Test data; default: the file's X_test/y_test, else a held-out split."
    )
    test_fraction: float = Field(
        0.25, gt=0, lt=1, description="Stratified test fraction held out when there is no test set."
    )
    val_fraction: float = Field(
        0.0, ge=0, lt=1, description="Stratified validation fraction of the training split."
    )
    standardize: bool = Field(
        True, description="Standardise features with statistics of the training split."
    )


class TrainConfig(_Strict):
    seed: int = Field(0, description="Seed for initialisation, splits and shuffling.")
    backend: Literal["cpu", "numpy", "reference"] = Field(
        "cpu", description=f"Compute backend: one of {', '.join(TRAIN_BACKENDS)}."
    )
    dtype: Literal["float32", "float64"] = Field("float32", description="Floating-point type.")
    epochs: int = Field(30, ge=0, description="Passes over the training data (≥ 0).")
    batch_size: int = Field(32, ge=1, description="Minibatch size (≥ 1); the last short batch is kept.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Network shape.")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig, description="Optimizer.")
    data: DataConfig = Field(default_factory=DataConfig, description="Data sources and splits.")
