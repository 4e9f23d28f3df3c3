"""The config schema: the documented shape, clear rejections, and the CLI flags derived from it."""

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from numbamlp.cli.config_flags import TRAIN_FLAGS, schema_field
from numbamlp.cli.main import main
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
        field = schema_field(path)  # raises KeyError for a path that does not exist
        assert flag in options
        param = next(p for p in train.params if flag in p.opts)
        assert param.help.startswith(field.description)


# ---------------------------------------------------------------- settings a user got wrong; an optimizer's defaults
def test_class_weights_take_integer_labels_and_refuse_negative_weights():
    """Reported 2026-11-30 by a new user (first look); fixed in 32f489a."""
    assert TrainConfig(class_weight={0: 2}).class_weight == {"0": 2.0}
    for bad, phrase in (({"0": -2.0}, "finite number >= 0"), ({"0": float("inf")}, "finite number >= 0"),
                        ("often", "must be 'balanced' or a mapping")):
        with pytest.raises(ValueError, match=phrase):
            TrainConfig(class_weight=bad)


def test_number_settings_refuse_booleans_and_text_but_take_numpy_numbers(tmp_path, cli):
    """Reported 2026-11-30 by a new user (second look); fixed in c275e47."""
    (tmp_path / "c.toml").write_text("epochs = true\n")
    code, output = cli("train", "--config", tmp_path / "c.toml", "--quiet")
    assert code == 2 and "epochs must be a number, not True" in output
    for document, phrase in (({"batch_size": "8"}, "batch_size must be a number, not '8'"),
                             ({"model": {"hidden": [64, "8"]}}, "hidden must be a number"),
                             ({"optimizer": {"lr": False}}, "lr must be a number")):
        with pytest.raises(ValueError, match=phrase):
            TrainConfig.model_validate(document)
    config = TrainConfig.model_validate({"epochs": np.int64(3), "optimizer": {"lr": np.float32(0.5)}})
    assert config.epochs == 3 and config.optimizer.lr == 0.5


def test_an_optimizers_name_cannot_be_assigned_after_its_defaults_were_filled():
    """Reported 2026-11-30 by a new user (third look); fixed in 1b210a4.

    cfg.optimizer.name = 'adam' kept SGD's lr 0.05 and momentum 0.9: refused; a config
    made with the name gets the optimizer's own defaults."""
    config = TrainConfig()
    with pytest.raises(ValueError, match="frozen"):
        config.optimizer.name = "adam"
    adam = TrainConfig.model_validate({"optimizer": {"name": "adam"}}).optimizer
    assert adam.lr == 0.001 and adam.momentum is None


def test_the_learning_rate_default_belongs_to_the_optimizer():
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    lr = {name: TrainConfig.model_validate({"optimizer": {"name": name}}).optimizer.lr
          for name in ("sgd", "momentum", "nesterov", "adam", "adamw")}
    assert lr == {"sgd": 0.05, "momentum": 0.05, "nesterov": 0.05, "adam": 1e-3, "adamw": 1e-3}
    assert TrainConfig.model_validate({"optimizer": {"name": "adam", "lr": 0.01}}).optimizer.lr == 0.01
    assert TrainConfig().optimizer.name == "momentum" and TrainConfig().optimizer.momentum == 0.9


def test_settings_the_optimizer_does_not_use_are_refused():
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    from pydantic import ValidationError

    for optimizer, key in (("adam", "momentum"), ("adamw", "momentum"), ("sgd", "beta1"), ("nesterov", "eps")):
        with pytest.raises(ValidationError, match=f"{key} does not apply to optimizer '{optimizer}'"):
            TrainConfig.model_validate({"optimizer": {"name": optimizer, key: 0.5}})


def test_the_cuda_status_is_stated_once():
    """Reported 2026-11-30 by a new user (issue 11); tested since 0e0a2db."""
    from numbamlp.cli.config_flags import schema_field
    from numbamlp.kernels import CUDA_STATUS

    assert CUDA_STATUS in schema_field("backend").description
    root = Path(__file__).resolve().parents[1]
    for path in [root / "README.md", *root.glob("docs/*.md"), *root.glob("numbamlp/**/*.py"),
                 *root.glob("kernels/*.py"), *root.glob("cli/**/*.py")]:
        assert "not yet device-resident" not in path.read_text(), path
