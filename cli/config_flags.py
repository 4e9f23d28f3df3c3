"""Config ↔ flags: train's flags derived from the TrainConfig schema (help from its field
descriptions, so they cannot drift; tests/test_config.py checks every path), and the config a
command builds from defaults < config file < the flags the user actually passed, with a
validation error as one line naming the flag or key.

Used by train, sweep and jobs submit (train's flags, the config) and by eval, predict and
jobs predict (--header).  ``train_flags`` and ``header_option`` read the schema (numbamlp.config)
when the commands are defined; everything else loads inside the functions.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from numbamlp.cli.common import CliError

# (flag, config path, click type, extra help).  Help text comes from the schema's field
# description; tests check that every path names a real field.
_STR_OR_INT = click.STRING
_HEADER_EXTRA = " --header: it is; --no-header: it is not."
TRAIN_FLAGS = [
    ("--task", "task", str, ""),
    ("--data", "data.train", str, ""),
    ("--test", "data.test", str, ""),
    ("--val", "data.val", str, ""),
    ("--label-column", "data.label_column", _STR_OR_INT, ""),
    ("--header", "data.header", "on_off", _HEADER_EXTRA),
    ("--val-fraction", "data.val_fraction", float, ""),
    ("--test-fraction", "data.test_fraction", float, ""),
    ("--data-seed", "data.seed", int, ""),
    ("--features", "data.features", "str_list", " Comma-separated."),
    ("--drop", "data.drop", "str_list", " Comma-separated."),
    ("--categorical", "data.categorical", "str_list", " Comma-separated."),
    ("--missing", "data.missing", str, ""),
    ("--min-category-rows", "data.min_category_rows", int, ""),
    ("--hidden", "model.hidden", "int_list", " Comma-separated, e.g. 256,128."),
    ("--layers", "model.layers", "int_list", " Comma-separated, e.g. 64,128,10."),
    ("--activation", "model.activation", str, ""),
    ("--optimizer", "optimizer.name", str, ""),
    ("--lr", "optimizer.lr", float, ""),
    ("--momentum", "optimizer.momentum", float, ""),
    ("--weight-decay", "optimizer.weight_decay", float, ""),
    ("--schedule", "schedule.name", str, ""),
    ("--warmup-epochs", "schedule.warmup_epochs", int, ""),
    ("--patience", "early_stopping.patience", int, ""),
    ("--metric", "early_stopping.metric", str, ""),
    ("--threshold", "threshold", "threshold", ""),
    ("--class-weight", "class_weight", "class_weight", " Here: balanced, label=weight pairs (churn=5,stay=1) "
     "or a JSON object ('{\"churn\": 5}')."),
    ("--epochs", "epochs", int, ""),
    ("--batch-size", "batch_size", int, ""),
    ("--backend", "backend", str, ""),
    ("--dtype", "dtype", str, ""),
    ("--seed", "seed", int, ""),
    ("--threads", "threads", int, ""),
]


def schema_field(path: str):
    """The pydantic FieldInfo at a dotted config path, e.g. "optimizer.lr"."""
    from numbamlp.config import TrainConfig

    model, field = TrainConfig, None
    for part in path.split("."):
        if field is not None:
            model = field.annotation
        field = model.model_fields[part]
    return field


def _int_list(ctx, param, value):
    if value is None:
        return None
    if not value.strip():  # (--hidden "": no hidden layer)
        return []
    try:
        return [int(v) for v in value.split(",")]  # (an empty item, as in 4,,4, is a typo: refused)
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 256,128, got {value!r}") from None


def _str_list(ctx, param, value):
    """--features, --drop, --categorical: comma-separated column names (spaces around a name
    are not part of it)."""
    if value is None:
        return None
    names = [name.strip() for name in value.split(",")]
    if not any(names):
        return []
    if not all(names):
        raise click.BadParameter(f"expected comma-separated column names like id,notes, got {value!r}")
    return names


def _threshold(ctx, param, value):
    """--threshold: a probability (0.3) or the name of the metric to choose it by (f1)."""
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value.strip()  # (the config says which names it takes)


def _class_weight(ctx, param, value):
    """--class-weight: 'balanced', a JSON object, or label=weight pairs (churn=5,stay=1), as
    the config's class_weight: {label text: weight}.  The config checks the weights and the
    trainer matches the labels to the classes (the text of an integer label, 0, names it)."""
    if value is None or value.strip() == "balanced":
        return None if value is None else "balanced"
    forms = "'balanced', label=weight pairs like churn=5,stay=1, or a JSON object like '{\"churn\": 5}'"
    if value.lstrip().startswith("{"):
        try:
            return json.loads(value)  # (an object: a text that starts with '{' parses as nothing else)
        except ValueError as err:
            raise click.BadParameter(f"expected {forms}; {value!r} is not valid JSON ({err})") from None
    weights = {}
    for pair in value.split(","):
        label, equals, weight = pair.rpartition("=")
        label = label.strip()
        try:
            number = float(weight)
        except ValueError:
            number = None
        if not equals or not label or number is None:
            raise click.BadParameter(f"expected {forms}, got {value!r}")
        if label in weights:
            raise click.BadParameter(f"class {label!r} is given two weights in {value!r}")
        weights[label] = number
    return weights


def _shown_default(field) -> str:
    """The schema's default as ``--help`` shows it (a list comma-separated); nothing where the
    default is None: the description says what unset means.  (The flags' click default is
    None, which is how build_config tells a passed flag from one left out.)"""
    default = field.get_default(call_default_factory=True)
    if default is None:
        return ""
    return f"  [default: {','.join(map(str, default)) if isinstance(default, list) else default}]"


def train_flags(command):
    """A command's options for every TRAIN_FLAGS entry (train, sweep, jobs submit), each named
    by its config path with "__" for "." and None unless passed."""
    for flag, path, kind, extra in reversed(TRAIN_FLAGS):
        field = schema_field(path)
        help_text = field.description + extra + _shown_default(field)
        name = path.replace(".", "__")
        if kind in ("int_list", "str_list", "class_weight", "threshold"):
            callback = {"int_list": _int_list, "str_list": _str_list, "class_weight": _class_weight,
                        "threshold": _threshold}[kind]
            command = click.option(flag, name, callback=callback, help=help_text)(command)
        elif kind == "on_off":  # (--header/--no-header; None when neither is given)
            command = _on_off_option(flag, name, help_text)(command)
        else:
            command = click.option(flag, name, type=kind, help=help_text)(command)
    return command


def _on_off_option(flag: str, name: str | None = None, help_text: str | None = None):
    """A click option ``--x/--no-x`` that is True, False, or None when neither is given
    (how build_config tells a setting left to the config from one passed)."""
    declared = [f"{flag}/--no-{flag[2:]}"] + ([name] if name else [])
    return click.option(*declared, default=None, help=help_text)


def header_option(command):
    """--header/--no-header of the commands that read a file for a model (predict, eval,
    jobs predict), with the config's description of data.header."""
    return _on_off_option("--header", help_text=schema_field("data.header").description + _HEADER_EXTRA)(command)


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_config_file(path: str) -> dict:
    """A .toml or .json config file as a dict; a CliError when it is missing or unreadable."""
    file = Path(path)
    if not file.is_file():
        raise CliError(f"config file not found: {path}")
    try:
        if file.suffix == ".toml":
            import tomllib

            return tomllib.loads(file.read_text())
        if file.suffix == ".json":
            document = json.loads(file.read_text())
            if not isinstance(document, dict):
                raise ValueError("the top level must be an object")
            return document
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise CliError(f"cannot parse config file {path}: {str(err).splitlines()[0]}") from None
    raise CliError(f"config file {path} must be .toml or .json")


# The flag of each config path, to name it in an error (sweep --resume names the ones given).
FLAG_OF_PATH = {path: flag for flag, path, _, _ in TRAIN_FLAGS}


def _validation_message(err, passed: set = frozenset()) -> str:
    """A pydantic ValidationError as one line naming each field: the flag, where the value
    came from one the user passed (``--seed``), else the config key (``optimizer.lr``)."""
    parts = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "config"
        name = field
        if field in passed and field in FLAG_OF_PATH:
            flag = FLAG_OF_PATH[field]
            name = flag if flag[2:].replace("-", "_") == field else f"{flag} ({field})"
        parts.append(f"{name}: {e['msg'].removeprefix('Value error, ')}")
    return "invalid configuration: " + "; ".join(parts)


def as_flags(config) -> dict:
    """A config as {dotted path: value} for every leaf, so build_config can take it back."""
    out = {}

    def walk(prefix, tree):
        for key, value in tree.items():
            if isinstance(value, dict) and key != "class_weight":
                walk(f"{prefix}{key}.", value)
            else:
                out[prefix + key] = value

    walk("", config.model_dump(mode="json", by_alias=True))
    return out


def build_config(config_file: str | None, flags: dict):
    """defaults < config file < the flags the user actually passed (None = not passed)."""
    return validated(with_flags(one_run_config(config_file), flags), flags)


def one_run_config(config_file: str | None) -> dict:
    """The document of a config file for one run (train, jobs submit), {} for none: a [grid]
    table is a sweep's, and said so."""
    document = read_config_file(config_file) if config_file else {}
    if "grid" in document:
        raise CliError(f"{config_file} has a grid table, which `numbamlp sweep --config {config_file}` trains; "
                       "remove it to train one config")
    return document


def with_flags(document: dict, flags: dict) -> dict:
    """A config document with the flags the user passed (None = not passed) set in it."""
    from numbamlp.config import set_setting

    passed = {}
    for path, value in flags.items():
        if value is not None:
            set_setting(passed, path, value)
    return _merge(document, passed)


def validated(document: dict, flags: dict):
    """The TrainConfig of ``document``; a CliError naming the flag or key otherwise."""
    from pydantic import ValidationError

    from numbamlp.config import TrainConfig

    try:
        return TrainConfig.model_validate(document)
    except ValidationError as err:
        given = {path for path, value in flags.items() if value is not None}
        raise CliError(_validation_message(err, given)) from None
