"""The config schema: the documented shape, clear rejections, and the CLI flags derived from it."""

import pytest
from pydantic import ValidationError

from numbamlp.cli.main import TRAIN_FLAGS, _schema_field, main
from numbamlp.config import TrainConfig
from numbamlp.kernels import ACTIVATION_NAMES

ISSUE_SHAPE = {
    "seed": 0, "backend": "cpu", "dtype": "float32", "epochs": 30, "batch_size": 64,
    "model": {"layers": [64, 128, 10], "hidden": [128], "activation": "relu"},
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0},
    "data": {"train": "builtin:digits", "test": None, "val_fraction": 0.1, "standardize": True},
}


def test_documented_shape_is_accepted():
    config = TrainConfig.model_validate(ISSUE_SHAPE)
    assert config.model.layers == [64, 128, 10] and config.optimizer.lr == 0.1
    assert TrainConfig.model_validate(config.model_dump(by_alias=True)) == config


@pytest.mark.parametrize(
    "patch,field",
    [
        ({"model": {"activation": "swish"}}, "model.activation"),
        ({"optimizer": {"name": "rmsprop"}}, "optimizer.name"),
        ({"optimizer": {"lr": 0}}, "optimizer.lr"),
        ({"optimizer": {"lr": -1}}, "optimizer.lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": -1}, "epochs"),
        ({"data": {"val_fraction": 1.0}}, "data.val_fraction"),
        ({"data": {"val_fraction": -0.1}}, "data.val_fraction"),
        ({"backend": "gpu"}, "backend"),
        ({"unknown_key": 1}, "unknown_key"),
        ({"model": {"width": 3}}, "model.width"),
        ({"optimizer": {"name": "nesterov", "momentum": 0}}, "optimizer"),
    ],
)
def test_invalid_values_name_the_field(patch, field):
    with pytest.raises(ValidationError) as err:
        TrainConfig.model_validate(patch)
    locations = [".".join(map(str, e["loc"])) for e in err.value.errors()]
    assert field in locations


def test_unknown_activation_message_lists_the_table():
    with pytest.raises(ValidationError) as err:
        TrainConfig.model_validate({"model": {"activation": "swish"}})
    assert all(name in str(err.value) for name in ACTIVATION_NAMES)


def test_every_field_has_a_description():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            if hasattr(field.annotation, "model_fields"):
                walk(field.annotation)

    walk(TrainConfig)


def test_every_train_flag_maps_to_a_schema_field_and_uses_its_description():
    """The flags cannot drift from the schema: each names a real field and shows its help."""
    train = main.commands["train"]
    options = {opt for param in train.params for opt in param.opts}
    for flag, path, _, _ in TRAIN_FLAGS:
        field = _schema_field(path)  # raises KeyError for a path that does not exist
        assert flag in options
        param = next(p for p in train.params if flag in p.opts)
        assert param.help.startswith(field.description)
