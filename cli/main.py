"""The ``numbamlp`` command: train, sweep, eval, predict, export, gradcheck, info, plot, serve, jobs.

Commands import the library inside their bodies so that ``numbamlp --help`` stays
instant.  Every user error is one line on stderr and exit code 2, never a traceback; any
other exception is one line and exit code 1, with the traceback only under ``--debug``
(or ``NUMBAMLP_DEBUG=1``).
"""

from __future__ import annotations

import functools
import gc
import json
import os
import sys
from pathlib import Path

import click

from numbamlp.kernels import BackendUnavailable


class CliError(click.ClickException):
    """A user error: printed as one line ``Error: ...``, exit code 2."""

    exit_code = 2


# ---------------------------------------------------------------- config ↔ flags
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
    ("--class-weight", "class_weight", "class_weight", " Here: balanced, label=weight pairs (churn=5,stay=1) "
     "or a JSON object ('{\"churn\": 5}')."),
    ("--epochs", "epochs", int, ""),
    ("--batch-size", "batch_size", int, ""),
    ("--backend", "backend", str, ""),
    ("--dtype", "dtype", str, ""),
    ("--seed", "seed", int, ""),
    ("--threads", "threads", int, ""),
]


def _schema_field(path: str):
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


def _train_flags(command):
    for flag, path, kind, extra in reversed(TRAIN_FLAGS):
        field = _schema_field(path)
        help_text = field.description + extra + _shown_default(field)
        name = path.replace(".", "__")
        if kind in ("int_list", "class_weight"):
            callback = _int_list if kind == "int_list" else _class_weight
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


def _header_option(command):
    """--header/--no-header of the commands that read a file for a model (predict, eval,
    jobs predict), with the config's description of data.header."""
    return _on_off_option("--header", help_text=_schema_field("data.header").description + _HEADER_EXTRA)(command)


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_config_file(path: str) -> dict:
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


_FLAG_OF_PATH = {path: flag for flag, path, _, _ in TRAIN_FLAGS}


def _validation_message(err, passed: set = frozenset()) -> str:
    """A pydantic ValidationError as one line naming each field: the flag, where the value
    came from one the user passed (``--seed``), else the config key (``optimizer.lr``)."""
    parts = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "config"
        name = field
        if field in passed and field in _FLAG_OF_PATH:
            flag = _FLAG_OF_PATH[field]
            name = flag if flag[2:].replace("-", "_") == field else f"{flag} ({field})"
        parts.append(f"{name}: {e['msg'].removeprefix('Value error, ')}")
    return "invalid configuration: " + "; ".join(parts)


def _as_flags(config) -> dict:
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
    return _validated(_with_flags(_one_run_config(config_file), flags), flags)


def _one_run_config(config_file: str | None) -> dict:
    """The document of a config file for one run (train, jobs submit), {} for none: a [grid]
    table is a sweep's, and said so."""
    document = _read_config_file(config_file) if config_file else {}
    if "grid" in document:
        raise CliError(f"{config_file} has a grid table, which `numbamlp sweep --config {config_file}` trains; "
                       "remove it to train one config")
    return document


def _with_flags(document: dict, flags: dict) -> dict:
    """A config document with the flags the user passed (None = not passed) set in it."""
    from numbamlp.config import set_setting

    passed = {}
    for path, value in flags.items():
        if value is not None:
            set_setting(passed, path, value)
    return _merge(document, passed)


def _validated(document: dict, flags: dict):
    """The TrainConfig of ``document``; a CliError naming the flag or key otherwise."""
    from pydantic import ValidationError

    from numbamlp.config import TrainConfig

    try:
        return TrainConfig.model_validate(document)
    except ValidationError as err:
        given = {path for path, value in flags.items() if value is not None}
        raise CliError(_validation_message(err, given)) from None


# ---------------------------------------------------------------- commands
_debug_flag = False  # --debug on this invocation


def _debugging() -> bool:
    return _debug_flag or os.environ.get("NUMBAMLP_DEBUG", "") not in ("", "0")


# click 8.2 and later raise this (a UsageError) for a group called without a command; 8.1
# printed the help itself.
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _OneLineErrors(click.Group):
    """click, except that a usage error is one line (with where to look), not three, and an
    unexpected exception is one line and exit 1 (the traceback only when debugging)."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        global _debug_flag
        _debug_flag = False
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NO_ARGS_IS_HELP as err:  # `numbamlp` or `numbamlp jobs` alone: the help, not an error line
            err.show()
            sys.exit(err.exit_code)
        except click.UsageError as err:
            hint = f" (see '{err.ctx.command_path} --help')" if err.ctx is not None else ""
            click.echo(f"Error: {err.format_message()}{hint}", err=True)
            sys.exit(err.exit_code)
        except click.ClickException as err:
            err.show()
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BackendUnavailable as err:  # (a backend this machine cannot run, said in one line wherever found)
            click.echo(f"Error: {err}", err=True)
            sys.exit(2)
        except Exception as err:  # a bug or an environment problem, not the user's input
            if _debugging():
                raise
            reason = str(err).strip().splitlines()[0] if str(err).strip() else ""
            click.echo(f"Error: unexpected {type(err).__name__}{': ' + reason if reason else ''} "
                       "(run with --debug or NUMBAMLP_DEBUG=1 for the traceback)", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


def _say_data_notes() -> None:
    """numbamlp.data's DataNotes as "note: ..." lines on stderr (not Python's warning format,
    with its file and line of numbamlp's code)."""
    import warnings

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__name__ == "DataNote":
            click.echo(f"note: {message}", err=True)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="numbamlp")
@click.option("--debug", is_flag=True, help="Show the full traceback of an unexpected error (also NUMBAMLP_DEBUG=1).")
@click.pass_context
def main(ctx, debug):
    """numbamlp: train multi-layer perceptrons with Numba-compiled kernels."""
    global _debug_flag
    _debug_flag = debug
    _say_data_notes()
    if ctx.invoked_subcommand != "train":  # train ends its start-up after the first epoch
        _end_of_startup()


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML or JSON config file (the TrainConfig schema); flags override it.")
@_train_flags
@click.option("--out", type=click.Path(file_okay=False), help="Run directory to create (default: runs/<UTC timestamp>).")
@click.option("--resume", type=click.Path(file_okay=False),
              help="Continue the run in this directory from its last checkpoint (its config is used; --epochs may extend it).")
@click.option("--overwrite", is_flag=True, help="Allow --out to name a directory that already holds a run.")
@click.option("--validate", is_flag=True, default=None,
              help="Check the backend's gradients against the reference path on real batches first.")
@click.option("--json", "as_json", is_flag=True, help="Print only the summary, as JSON (the last line of stdout).")
@click.option("--quiet", is_flag=True, help="Print only the summary line.")
def train(config_file, out, resume, overwrite, validate, as_json, quiet, **flags):
    """Train an MLP (default: the built-in digits set) and write a run directory."""
    from numbamlp.data import DataError
    from numbamlp.io import ModelFileError, json_text
    from numbamlp.run import RunAborted, RunError, RunInterrupted, read_run_config, train_run
    from numbamlp.trainer import GradientMismatch, TrainingDiverged

    flags = {name.replace("__", "."): value for name, value in flags.items()}
    flags["validate"] = validate
    if resume is not None:
        others = [f"--{p.split('.')[-1].replace('_', '-')}" for p, v in flags.items() if v is not None and p != "epochs"]
        if others or config_file or out:
            raise CliError("--resume continues a run with its own config; only --epochs may change "
                           f"(got {', '.join(others + (['--config'] if config_file else []) + (['--out'] if out else []))})")
        try:
            saved = read_run_config(resume)
        except RunError as err:
            raise CliError(str(err)) from None
        config = saved if flags["epochs"] is None else build_config(None, {**_as_flags(saved), "epochs": flags["epochs"]})
    else:
        config = build_config(config_file, flags)
    if config.backend == "cpu":
        from numbamlp.diagnostics import cache_notice

        notice = cache_notice()
        if notice:
            click.echo(notice, err=True)
    callbacks = [_StartupEnds()]
    if not as_json:
        callbacks.append(_GradientCheckLine())
    if not (as_json or quiet):
        callbacks.append(_progress(config.epochs))
    try:
        try:
            summary = train_run(config, out=out, resume=resume, overwrite=overwrite, callbacks=callbacks)
        finally:  # the progress line ends before any message
            for callback in callbacks:
                callback.close()
    except (GradientMismatch, TrainingDiverged) as err:  # not the user's input: exit 1
        click.echo(f"Error: {err}", err=True)
        sys.exit(1)
    except RunInterrupted as stop:  # 128 + the signal's number: 130 for SIGINT, 143 for SIGTERM
        click.echo(f"{stop}\ncontinue with: numbamlp train --resume {stop.directory}", err=True)
        sys.exit(128 + int(stop.signal_number))
    except (RunAborted, KeyboardInterrupt) as stop:  # a second interrupt, or one before training
        if isinstance(stop, KeyboardInterrupt):
            stop = RunAborted(None, resumed=resume is not None)
        hint = f"\ncontinue with: numbamlp train --resume {stop.directory}" if stop.directory else ""
        click.echo(f"{stop}{hint}", err=True)
        sys.exit(130)
    except (DataError, RunError, ModelFileError, BackendUnavailable, ValueError) as err:
        raise CliError(str(err)) from None
    if as_json:
        click.echo(json_text(summary))
        return
    from numbamlp.text import counted

    best = f", weights of epoch {summary['best_epoch']}" if summary["best_epoch"] is not None else ""
    score = (f"test R²: {summary['test_r2']:.4f}  test MSE: {summary['test_mse']:.6g}  test MAE: {summary['test_mae']:.6g}"
             if summary["task"] == "regression" else
             f"test accuracy: {summary['test_accuracy']:.4f}  test loss: {summary['test_loss']:.4f}")
    click.echo(
        f"{score}  "
        f"({summary['test_rows']} test rows, layers {summary['layers']}, {summary['activation']}, "
        f"{summary['backend']}/{summary['dtype']}, {counted(summary['epochs_run'], 'epoch')}"
        f"{', stopped early' if summary['stopped_early'] else ''}{best})"
    )
    if not quiet:
        click.echo(f"run directory: {summary['run_dir']}")


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML or JSON base config (the TrainConfig schema); a [grid] table in it adds grid keys.")
@_train_flags
@click.option("--grid", "grid_options", multiple=True, metavar="KEY=V1,V2,...",
              help="A setting (dotted path, e.g. optimizer.lr, model.hidden, seed) and its values; a list "
              "value in brackets: model.hidden=[64],[128,64]; with --random also uniform:A:B, "
              "loguniform:A:B, int:A:B.  Repeat for more settings: the members are every combination.")
@click.option("--random", "random_members", type=int, metavar="N",
              help="Draw N members from the grid's lists and ranges (with --seed) instead of every combination.")
@click.option("--workers", type=int, metavar="N",
              help="Train on a Dask LocalCluster of N worker processes (needs numbamlp[dask]).")
@click.option("--scheduler", metavar="ADDRESS",
              help="Train on the running Dask cluster at ADDRESS, e.g. tcp://10.0.0.5:8786 (needs numbamlp[dask]).")
@click.option("--stack-size", type=int, default=32, show_default=True,
              help="Most members trained together in one stack (one task).")
@click.option("--metric", type=click.Choice(["val_accuracy", "val_r2", "val_loss", "val_mse"]),
              help="What picks the best member, on the validation rows (default: val_accuracy for "
              "classification, val_r2 for regression).")
@click.option("--max-members", type=int, default=10_000, show_default=True, help="Refuse grids larger than this.")
@click.option("--out", type=click.Path(file_okay=False), help="Sweep directory to create (default: sweeps/<UTC timestamp>).")
@click.option("--resume", type=click.Path(file_okay=False),
              help="Go on with the sweep in this directory: train the members it has no results for.")
@click.option("--json", "as_json", is_flag=True, help="Print only the summary, as JSON (the last line of stdout).")
@click.option("--quiet", is_flag=True, help="Print only the best member and where the results are.")
def sweep(config_file, grid_options, random_members, workers, scheduler, stack_size, metric, max_members, out,
          resume, as_json, quiet, **flags):
    """Train every combination of a grid of settings, as stacks, and pick the best on validation data."""
    from numbamlp.data import DataError
    from numbamlp.io import json_text
    from numbamlp.paths import OutputPathError
    from numbamlp.sweeps import NEW_DIRECTORY, SweepError, SweepInterrupted, grid_from_table, parse_grid_option
    from numbamlp.sweeps import sweep as run_sweep

    flags = {name.replace("__", "."): value for name, value in flags.items()}
    try:
        if resume is not None:
            given = [_FLAG_OF_PATH[p] for p, v in flags.items() if v is not None]
            given += [name for name, v in (("--config", config_file), ("--grid", grid_options),
                                            ("--random", random_members), ("--out", out)) if v]
            context = click.get_current_context()  # (these have defaults: given only when typed)
            given += [f"--{name.replace('_', '-')}" for name in ("stack_size", "metric", "max_members")
                      if context.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
            if given:
                raise CliError(f"--resume goes on with the sweep's own settings; only --workers, --scheduler, "
                               f"--json and --quiet may be given (got {', '.join(given)})")
            document, grid = None, None
        else:
            document = _read_config_file(config_file) if config_file else {}
            grid = grid_from_table(document.pop("grid", None) or {})
            document = _with_flags(document, flags)
            _validated(document, flags)  # (to name the flag that is wrong)
            given = set()  # (a --grid replaces the config's [grid] entry, as flags override config keys)
            for option in grid_options:
                key, values = parse_grid_option(option)
                if key in given:
                    raise CliError(f"--grid sets {key} twice; give all its values in one: --grid {key}=V1,V2,...")
                given.add(key)
                grid[key] = values
        if not (as_json or quiet):
            _cache_notice(document or {})
        show = None if as_json or quiet else _sweep_progress
        result = run_sweep(document, grid, random=random_members, workers=workers, scheduler=scheduler,
                           stack_size=stack_size, metric=metric, max_members=max_members,
                           out=out if out is not None else (None if resume else NEW_DIRECTORY),
                           resume=resume, progress=show)
    except SweepInterrupted as stop:
        click.echo(f"\n{stop}" + (f"\ncontinue with: numbamlp sweep --resume {stop.directory}"
                                  if stop.directory else ""), err=True)
        sys.exit(130)
    except (SweepError, DataError, OutputPathError, BackendUnavailable, ValueError) as err:
        raise CliError(str(err)) from None
    if as_json:
        click.echo(json_text(result.summary))
    else:
        _sweep_report(result, quiet)
    if result.best is None and not _finished(result.table):  # nothing to use, as a diverged train (exit 1)
        sys.exit(1)


def _cache_notice(document: dict) -> None:
    if document.get("backend", "cpu") == "cpu":
        from numbamlp.diagnostics import cache_notice

        notice = cache_notice()
        if notice:
            click.echo(notice, err=True)


def _member_text(row: dict, keys: list[str]) -> str:
    return ", ".join(f"{key}={json.dumps(row[key]) if isinstance(row[key], list) else row[key]}" for key in keys)


def _sweep_progress(done: int, total: int, best: dict | None) -> None:
    width = len(str(total))
    line = f"[{done:>{width}}/{total}] members done"
    if best is not None:
        from numbamlp.sweeps import grid_keys

        scores = " ".join(f"{k} {v:.4f}" for k, v in best.items() if k.startswith("val_") and v is not None)
        line += f"; best so far: member {best['member']} ({_member_text(best, grid_keys(best))}) {scores}"
    click.echo(line)


def _sweep_report(result, quiet: bool, top: int = 5) -> None:
    """The best rows as a table, the best member, and where everything is."""
    from numbamlp.sweeps import grid_keys, ranked

    summary, table = result.summary, result.table
    keys = grid_keys(table[0]) if table else []
    test_metric = result.metric.replace("val_", "test_")
    if not quiet:
        scores = [c for c in table[0] if c.startswith("val_")] if table else []
        columns = ["member", *keys, *scores, test_metric, "epochs", "status"]
        cells = [[_cell(row.get(c)) for c in columns] for row in ranked(table, result.metric)[:top]]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        click.echo(f"top {min(top, len(table))} of {len(table)} by {result.metric}:")
        click.echo("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
        for row in cells:
            click.echo("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    counts = ", ".join(f"{n} {status}" for status, n in summary["statuses"].items())
    best = result.best
    if best is None and _finished(table):  # (no validation rows, or 0 epochs)
        click.echo(f"no member has a {result.metric} to rank them by ({counts}): ranking needs validation rows "
                   "and at least one epoch")
    elif best is None:
        click.echo(f"no member finished ({counts})")
    else:
        click.echo(f"best: member {best['member']} ({_member_text(best, keys)}): {result.metric} "
                   f"{best[result.metric]:.4f}, {test_metric} {best[test_metric]:.4f} ({counts})")
        click.echo(f"best model: {best['model_path']}")
    click.echo(f"results: {summary['results_path']}")


def _finished(table: list[dict]) -> int:
    """How many members finished training (numbamlp.sweeps.FINISHED)."""
    from numbamlp.sweeps import FINISHED

    return sum(row["status"] in FINISHED for row in table)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if 1e-3 <= abs(value) < 1e6 or value == 0 else f"{value:.3g}"
    return json.dumps(value) if isinstance(value, list) else str(value)


def _limit_flags(command):
    """serve's flags for the server's limits, one per field of numbamlp.service.limits.Limits
    (its defaults and help), so the two cannot drift."""
    from dataclasses import fields

    from numbamlp.service.limits import HELP, Limits, flag

    for field in reversed(fields(Limits)):
        kind = click.IntRange(min=1) if field.type in (int, "int") else click.FloatRange(min=0, min_open=True)
        command = click.option(flag(field.name), field.name, type=kind, default=field.default, show_default=True,
                               help=HELP[field.name])(command)
    return command


@main.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (localhost unless told otherwise).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: a free one, printed at start).")
@click.option("--data-dir", type=click.Path(file_okay=False), default="numbamlp-service", show_default=True,
              help="Where the jobs database, uploaded data, run directories and the token live.")
@click.option("--workers", type=int, metavar="N", help="Train on a Dask LocalCluster of N worker processes.")
@click.option("--scheduler", metavar="ADDRESS", help="Train on the running Dask cluster at ADDRESS.")
@click.option("--batch-window", type=float, default=0.5, show_default=True,
              help="Seconds a queued job waits for others that can share its stack (0: none).")
@_limit_flags
@click.pass_context
def serve(ctx, host, port, data_dir, workers, scheduler, batch_window, **limits):
    """Run the training service: jobs over HTTP, batched into stacks, with a dashboard at /.

    The first start writes an admin token to DATA_DIR/token; `serve token create NAME`
    makes one for each person."""
    if ctx.invoked_subcommand is not None:  # (`serve token ...`: it reads --data-dir from here too)
        return
    from numbamlp.paths import OutputPathError, check_output_directory
    from numbamlp.service.limits import Limits
    from numbamlp.sweeps import SweepError

    if workers is not None and scheduler is not None:
        raise CliError("give --workers or --scheduler, not both")
    if batch_window < 0:
        raise CliError("--batch-window must be 0 or more")
    try:
        check_output_directory(data_dir, "the data directory")
        from numbamlp.service import serve as run_server

        run_server(data_dir, host=host, port=port, batch_window=batch_window, limits=Limits(**limits),
                   workers=workers, scheduler=scheduler, announce=lambda line: click.echo(line, err=False))
    except (OutputPathError, SweepError) as err:
        raise CliError(str(err)) from None
    except RuntimeError as err:  # the serve extra is missing, the address cannot be had, a bad token file or database
        raise CliError(str(err)) from None


@serve.group("token")
def serve_token():
    """Tokens for the people who use the service: create, list, revoke.  Works while the
    server runs (a revoked token is refused from its next request on)."""


def _token_store(command):
    """A token command's --data-dir, given to it as the service's open Store (closed after)."""

    @click.option("--data-dir", type=click.Path(file_okay=False),
                  help="The service's data directory (default: serve's --data-dir).")
    @click.pass_context
    @functools.wraps(command)
    def with_store(ctx, data_dir, **arguments):
        from numbamlp.service.store import Store, StoreError

        directory = Path(data_dir or ctx.parent.parent.params["data_dir"])  # (serve's, given before `token`)
        database = directory / "numbamlp.sqlite"
        if not database.is_file():
            raise CliError(f"{directory} holds no service database: start `numbamlp serve --data-dir {directory}` "
                           "once")
        os.umask(0o077)  # (as serve: the database's files stay the service's own)
        try:
            store = Store(database)
        except StoreError as err:
            raise CliError(str(err)) from None
        try:
            return command(store, **arguments)
        finally:
            store.close()

    return with_store


@serve_token.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(["read", "submit", "admin"]), default="submit", show_default=True,
              help="read: list, follow, download, predict; submit: also submit and cancel its own jobs; "
                   "admin: also cancel anyone's.")
@_token_store
def serve_token_create(store, name, role):
    """Make a token for NAME (printed once: the service keeps only its hash)."""
    from numbamlp.service.auth import FILE_TOKEN_NAME, check_name, new_token

    try:
        check_name(name)
    except ValueError as err:
        raise CliError(str(err)) from None
    if name == FILE_TOKEN_NAME:
        raise CliError(f"{FILE_TOKEN_NAME!r} is the token file's token: choose another name")
    token = new_token()
    if not store.add_token(name, role, token):
        raise CliError(f"{name} has a token already: `numbamlp serve token revoke {name}` first to replace it")
    click.echo(token)


@serve_token.command("list")
@_token_store
def serve_token_list(store):
    """Every token's name, role and when it was made (never the tokens)."""
    import datetime

    for token in store.tokens():
        made = datetime.datetime.fromtimestamp(token["created_at"]).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{token['name']:<24}  {token['role']:<6}  {made}")


@serve_token.command("revoke")
@click.argument("name")
@_token_store
def serve_token_revoke(store, name):
    """Refuse NAME's token from now on (its jobs stay)."""
    from numbamlp.service.auth import FILE_TOKEN_NAME, TOKEN_FILE

    if name == FILE_TOKEN_NAME:
        raise CliError(f"{FILE_TOKEN_NAME!r} is the token file's token: to replace it, delete "
                       f"DATA_DIR/{TOKEN_FILE} and restart the server")
    if not store.revoke_token(name):
        raise CliError(f"no token named {name[:70]!r} (`numbamlp serve token list` shows them)")
    click.echo(f"revoked {name}")


@main.group()
@click.option("--url", envvar="NUMBAMLP_URL", default="http://127.0.0.1:8000", show_default=True,
              help="The service's address (also NUMBAMLP_URL).")
@click.option("--token-file", type=click.Path(dir_okay=False), help="File holding the token (default: NUMBAMLP_TOKEN).")
@click.pass_context
def jobs(ctx, url, token_file):
    """Submit, list, watch, cancel and download training jobs of a numbamlp service, and predict with them."""
    token = os.environ.get("NUMBAMLP_TOKEN")
    if token_file is not None:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as err:
            raise CliError(f"cannot read the token file {token_file}: {err.strerror}") from None
    from numbamlp.client import Client

    try:
        ctx.obj = Client(url, token)
    except ValueError as err:  # (an address that is no URL)
        raise CliError(f"--url: {err}") from None


def _service_call(call):
    from numbamlp.client import ServiceError

    try:
        return call()
    except (ServiceError, ValueError) as err:  # (ValueError: a job id that is no id)
        raise CliError(str(err)) from None


@jobs.command("submit")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML or JSON config file.")
@_train_flags
@click.option("--idempotency-key", help="Retrying with the same key returns the same job.")
@click.pass_obj
def jobs_submit(client, config_file, idempotency_key, **flags):
    """Submit a job (train's flags and config file); prints its id.  A local data file
    (--data, --test, --val: .npz, .parquet or .csv) is uploaded first and named by its
    dataset id, since the service reads only builtin and uploaded data."""
    flags = {name.replace("__", "."): value for name, value in flags.items()}
    document = _with_flags(_one_run_config(config_file), flags)
    _validated(document, flags)
    document = _with_uploaded_data(client, document)
    job = _service_call(lambda: client.submit(document, idempotency_key))
    click.echo(job["id"])


def _with_uploaded_data(client, document: dict) -> dict:
    """The config with every local file among data.train, data.test and data.val uploaded
    (POST /v1/datasets, stored by content, so a second upload costs the transfer only) and
    replaced by dataset:<id>."""
    from numbamlp.config import names_a_file

    data = dict(document.get("data") or {})
    for key, flag in (("train", "--data"), ("test", "--test"), ("val", "--val")):
        source = data.get(key)
        if not names_a_file(source):
            continue
        path = Path(source)
        if path.is_dir():
            raise CliError(f"{flag} {source}: a folder cannot be sent to the service; send it as an .npz, "
                           ".parquet or .csv file")
        if not path.is_file():
            raise CliError(f"{flag} {source}: data file not found")
        uploaded = _service_call(lambda: client.upload_dataset(path, data.get("label_column")))
        data[key] = f"dataset:{uploaded['id']}"
    return {**document, "data": data} if data else document


@jobs.command("list")
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]))
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--owner", metavar="NAME", help="Only the jobs of this token name ('numbamlp serve token list').")
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@click.pass_obj
def jobs_list(client, status, limit, owner, as_json):
    """The newest jobs: id, owner, status, stack, test accuracy."""
    page = _service_call(lambda: client.jobs(status, limit, owner=owner))
    if as_json:
        click.echo(json.dumps(page))
        return
    for job in page["jobs"]:
        stack = f"stack {job['stack']['id']} ({job['stack']['size']})" if job["stack"] else ""
        scores = job["scores"] or {}
        accuracy = next((f"{name} {scores[name]:.4f}" for name in ("test_accuracy", "test_r2")
                         if scores.get(name) is not None), "")
        click.echo(f"{job['id']}  {job['owner'] or '-':<12}  {job['status']:<9}  {stack:<20}  {accuracy}".rstrip())


@jobs.command("show")
@click.argument("job_id")
@click.pass_obj
def jobs_show(client, job_id):
    """One job as JSON."""
    click.echo(json.dumps(_service_call(lambda: client.job(job_id)), indent=1))


@jobs.command("cancel")
@click.argument("job_id")
@click.pass_obj
def jobs_cancel(client, job_id):
    """Cancel a queued or running job."""
    job = _service_call(lambda: client.cancel(job_id))
    click.echo(f"{job['id']}  {job['status']}{' (cancelling)' if job['cancel_requested'] and job['status'] == 'running' else ''}")


@jobs.command("logs")
@click.argument("job_id")
@click.pass_obj
def jobs_logs(client, job_id):
    """Follow a job's epochs until it ends (a finished job's history at once)."""
    def follow():
        epochs = client.job(job_id)["config"]["epochs"]
        for epoch, metrics in client.events(job_id):
            if epoch != "end":
                click.echo(_epoch_text(metrics, len(str(epochs)), epochs))
                continue
            scores = metrics.get("scores") or {}
            score = next((f"  test {name[5:].replace('_', ' ')} {scores[name]:.4f}"
                          for name in ("test_accuracy", "test_r2") if scores.get(name) is not None), "")
            click.echo(f"{metrics['status']}{score}" + (f"  {metrics['error']}" if metrics.get("error") else ""))

    _service_call(follow)


@jobs.command("download")
@click.argument("job_id")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), required=True, help="Where to write the model.")
@click.option("--overwrite", is_flag=True, help="Allow --out to replace an existing file.")
@click.pass_obj
def jobs_download(client, job_id, out_file, overwrite):
    """Download a succeeded job's model file."""
    _check_output_file(out_file, overwrite)
    click.echo(str(_service_call(lambda: client.download(job_id, out_file, overwrite=overwrite))))


def _prediction_flags(command):
    """The flags `predict` and `jobs predict` share: what the file holds, what to leave out,
    what to write, where."""
    for option in reversed([
            _header_option,
            click.option("--label-column", help="CSV or Parquet column to ignore, by name or 0-based index."),
            click.option("--proba", is_flag=True, help="Also write the probability of every class."),
            click.option("--out", "out_file", type=click.Path(dir_okay=False),
                         help="Write CSV here instead of stdout ('-': stdout)."),
            click.option("--overwrite", is_flag=True, help="Allow --out to replace an existing file.")]):
        command = option(command)
    return command


REQUEST_BYTES = 16_000_000  # jobs predict: this much JSON a request at most (the service's --max-request-mb: 64)


@jobs.command("predict")
@click.argument("job_id")
@click.option("--data", required=True, help="builtin:NAME, .npz (X), a folder holding X.npy, or .csv or .parquet, "
              "read as `numbamlp predict` reads it (the model's features by name when it knows them).")
@_prediction_flags
@click.option("--rows-per-request", type=click.IntRange(min=1), default=8192, show_default=True,
              help="Rows sent in one request at most: fewer for wide rows (16 MB of JSON at most), and half as "
              "many while the service refuses a request as too large.")
@click.pass_obj
def jobs_predict(client, job_id, data, header, label_column, proba, out_file, overwrite, rows_per_request):
    """Predict with a succeeded job's model on the service, for the rows of --data: the same
    CSV as `numbamlp predict` writes.  The model's features, classes and label column come
    from its file's header (GET /v1/jobs/JOB/model, read up to its weights, which are not
    downloaded); the rows go to POST /v1/jobs/JOB/predict a chunk at a time."""
    import numpy as np

    from numbamlp.client import ServiceError
    from numbamlp.data import check_header_applies, check_label_column_applies, read_features

    if out_file == "-":  # (the usual name of standard output)
        out_file = None
    if out_file:
        _check_output_file(out_file, overwrite)
    metadata = _service_call(lambda: client.model_metadata(job_id))
    task, layers = metadata.get("task", "classification"), metadata["layers"]
    if proba and task == "regression":
        raise CliError("--proba is for classifiers; this model is a regressor (its predictions are values)")
    try:
        check_label_column_applies(label_column, data)
        check_header_applies(header, data)
        X = read_features(data, layers[0], label_column, task=task, trained_label=_trained_label_column(metadata),
                          names=metadata.get("feature_names"), header=header, dtypes=metadata.get("feature_dtypes"))
    except ValueError as err:
        raise CliError(str(err)) from None
    fit = max(1, REQUEST_BYTES // (26 * layers[0]))  # (26 bytes: a float's JSON at most, with its ", ")
    step, answers, lo = _scored_together(min(rows_per_request, fit)), [], 0
    while lo < len(X):
        try:
            answers.append(client.predict(job_id, X[lo : lo + step], proba))
        except ServiceError as err:
            # a service with a smaller --max-request-mb answers 413, or, to a body much larger,
            # closes the connection mid-send: while it still answers, send fewer rows
            if step == 1 or not (err.status == 413 or (err.status is None and _answers(client))):
                raise CliError(str(err)) from None
            step = _scored_together(max(1, min(step, len(X) - lo) // 2))
            continue
        lo += step
    if task == "regression":
        values = _finite_outputs(np.array([v for answer in answers for v in answer["values"]], dtype=np.float64))
        _write_predictions(out_file, outputs=layers[-1], values=values)
        return
    P = _finite_outputs(np.array([p for answer in answers for p in answer["proba"]])) if proba else None
    _write_predictions(out_file, classes=metadata.get("classes") or list(range(layers[-1])),
                       labels=[label for answer in answers for label in answer["labels"]], proba=P)


def _scored_together(rows: int) -> int:
    """``rows`` rounded down to a multiple of the rows a model scores at a time, where it has
    that many: each request's rows are then scored in the pieces `numbamlp predict` scores
    the file in, to the same bits (a float32 product can round its last bit otherwise by
    where in a piece a row falls)."""
    from numbamlp.model import SCORING_ROWS

    return rows // SCORING_ROWS * SCORING_ROWS if rows >= SCORING_ROWS else rows


def _answers(client) -> bool:
    """Whether the service answers (its /healthz)."""
    from numbamlp.client import ServiceError

    try:
        client.health()
    except ServiceError:
        return False
    return True


class _GradientCheckLine:
    """--validate's result, printed when the check has run: before the first epoch."""

    def on_gradients_checked(self, error: float) -> None:
        click.echo(f"gradient check: max relative error vs reference {error:.2e}")

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(epochs: int):
    # (a terminal that cannot redraw a line, TERM=dumb, gets the plain lines too)
    redraws = sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
    return _ProgressBar(epochs) if redraws else _EpochLines(epochs)


class _EpochLines:
    """One plain line per epoch (when stdout is not a terminal that redraws)."""

    def __init__(self, epochs: int):
        self.width, self.epochs = len(str(epochs)), epochs

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        click.echo(_epoch_text(metrics, self.width, self.epochs))

    def close(self) -> None:
        pass


class _ProgressBar:
    """One line on the terminal, redrawn as training goes (the trainer reports within each
    epoch, at most ~10 times a second): epoch, a bar over all epochs, the running loss of
    the epoch, the last epoch's validation metrics and the time left."""

    WIDTH = 24

    def __init__(self, epochs: int):
        import time

        self.epochs, self.clock = epochs, time.perf_counter
        self.first = None  # (time, fraction done) at the first report: a resumed run starts late
        self.last_epoch_text = ""

    def _draw(self, epoch: int, done: float, loss: float) -> None:
        """done: the fraction of all epochs finished, in [0, 1]."""
        now = self.clock()
        if self.first is None:
            self.first = (now, done)
        start, done_at_start = self.first
        eta = (now - start) / (done - done_at_start) * (1.0 - done) if done > done_at_start else None
        filled = int(round(self.WIDTH * done))
        line = (f"epoch {epoch}/{self.epochs} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {100 * done:3.0f}%"
                f"  loss {loss:.4f}{self.last_epoch_text}  eta {_clock_text(eta)}")
        click.echo(f"\r{line}\x1b[K", nl=False)

    def on_progress(self, epoch: int, rows_done: int, rows_total: int, loss: float) -> None:
        self._draw(epoch, (epoch - 1 + rows_done / rows_total) / max(self.epochs, 1), loss)

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        if "val_accuracy" in metrics:
            self.last_epoch_text = f"  val_loss {metrics['val_loss']:.4f}  val_acc {metrics['val_accuracy']:.4f}"
        self._draw(epoch, epoch / max(self.epochs, 1), metrics["loss"])

    def close(self) -> None:
        if self.first is not None:
            click.echo()


def _clock_text(seconds) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes:02d}:{secs:02d}"


def _epoch_text(metrics: dict, width: int, epochs: int) -> str:
    line = f"epoch {metrics['epoch']:>{width}}/{epochs}  loss {metrics['loss']:.4f}"
    if "val_accuracy" in metrics:
        line += f"  val_loss {metrics['val_loss']:.4f}  val_acc {metrics['val_accuracy']:.4f}"
    return line + f"  ({metrics['seconds']:.2f}s)"


def _load_model(path: str):
    """A model file, or the model of a run directory."""
    from numbamlp.io import ModelFileError, load_model

    try:
        return load_model(path)
    except ModelFileError as err:
        raise CliError(str(err)) from None


@main.command("eval")
@click.argument("model_path", metavar="MODEL")
@click.option("--data", help="builtin:NAME, .csv or .parquet with labels, .npz (X, y) or a folder of X.npy "
              "and y.npy; default for a run directory: the test rows that run held out.")
@click.option("--label-column", help="CSV or Parquet label column by name or 0-based index (default: the one the "
              "model was trained with, when the file has it, else the last).")
@_header_option
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
def evaluate(model_path, data, label_column, header, as_json):
    """Loss, accuracy, balanced accuracy, macro F1, per-class precision/recall and the
    confusion matrix of MODEL on --data (a run directory: on its held-out test rows); for a
    regressor, R², MSE and MAE in the targets' units.

    MODEL is a .safetensors model file or a run directory (its model.safetensors).
    """
    import numpy as np
    from sklearn.metrics import balanced_accuracy_score, f1_score

    from numbamlp.data import (check_feature_count, check_header_applies, check_label_column_applies,
                               evaluation_label, feature_columns, feature_names, header_for_model, load_dataset)
    from numbamlp.io import json_text
    from numbamlp.model import mean_cross_entropy
    from numbamlp.run import held_out_test_split

    model = _load_model(model_path)
    try:
        if data is not None:
            check_label_column_applies(label_column, data)
            check_header_applies(header, data)
            header = header_for_model(data, model.feature_names, header)
            column = evaluation_label(data, label_column, _trained_label_column(model.metadata))
            dataset = load_dataset(data, label_column=column, task=model.task, header=header)
            X, labels, source = dataset.X, dataset.y, data
            named = feature_names(data, column, header) if model.feature_names is not None else None
            if named is not None:  # (the file's features by name, in the model's order)
                X = X[:, feature_columns(named, model.feature_names, data)]
        elif header is not None:
            raise CliError("--header/--no-header are for --data (a run's held-out test rows are read as it read them)")
        elif Path(model_path).is_dir():
            X, labels = held_out_test_split(model_path)
            source = f"the test rows {model_path} held out"
        else:
            raise CliError("--data is needed with a model file (a run directory defaults to its held-out test rows)")
        check_feature_count(X, model.n_features, source)
        S = _finite_outputs(model.scores(X))
    except ValueError as err:
        raise CliError(str(err)) from None
    if model.task == "regression":
        targets = 1 if labels.ndim == 1 else labels.shape[1]
        if targets != model.n_classes:
            raise CliError(f"{source} has {targets} target column{'s' if targets != 1 else ''} but the model has "
                           f"{model.n_classes} outputs")
        _evaluate_regressor(model, S, labels, as_json)
        return
    classes = model.classes if model.classes is not None else np.arange(model.n_classes)
    lookup = {label: i for i, label in enumerate(classes.tolist())}
    unknown = sorted({str(v) for v in labels.tolist() if v not in lookup})
    if unknown:
        raise CliError(f"{source} has labels the model does not know: {', '.join(unknown[:5])}")
    y = np.array([lookup[v] for v in labels.tolist()])
    predicted = np.argmax(S, axis=1)
    loss = mean_cross_entropy(S, y)
    C = len(classes)
    confusion = np.zeros((C, C), dtype=int)
    np.add.at(confusion, (y, predicted), 1)
    per_class = []
    for k, label in enumerate(classes.tolist()):
        predicted_k, actual_k = confusion[:, k].sum(), confusion[k, :].sum()
        per_class.append({
            "class": label, "support": int(actual_k),
            "precision": float(confusion[k, k] / predicted_k) if predicted_k else 0.0,
            "recall": float(confusion[k, k] / actual_k) if actual_k else 0.0,
        })
    result = {"loss": loss, "accuracy": float(np.mean(predicted == y)),
              "balanced_accuracy": _quietly(balanced_accuracy_score, y, predicted),
              "macro_f1": _quietly(f1_score, y, predicted, average="macro", zero_division=0),
              "rows": int(len(y)), "data": source, "per_class": per_class, "confusion_matrix": confusion.tolist()}
    if as_json:
        click.echo(json_text(result))
        return
    click.echo(f"accuracy {result['accuracy']:.4f}  balanced accuracy {result['balanced_accuracy']:.4f}  "
               f"macro F1 {result['macro_f1']:.4f}  loss {loss:.4f}  ({len(y)} rows: {source})")
    click.echo(f"{'class':>12} {'precision':>9} {'recall':>7} {'support':>8}")
    for row in per_class:
        click.echo(f"{str(row['class']):>12} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['support']:>8}")
    click.echo("confusion matrix (rows: true class, columns: predicted)")
    cell = max(len(str(confusion.max())), max(len(str(c)) for c in classes.tolist()))
    click.echo(" " * (cell + 1) + " ".join(f"{str(c):>{cell}}" for c in classes.tolist()))
    for label, row in zip(classes.tolist(), confusion):
        click.echo(f"{str(label):>{cell}} " + " ".join(f"{v:>{cell}}" for v in row))


def _check_output_file(path, overwrite: bool):
    from numbamlp.paths import OutputPathError, check_output_file

    try:
        return check_output_file(path, overwrite)
    except OutputPathError as err:
        raise CliError(str(err)) from None


@main.command()
@click.argument("model_path", metavar="MODEL")
@click.option("--data", required=True, help="builtin:NAME, .npz (X), a folder holding X.npy, or .csv or .parquet: "
              "the model's features by name when it knows them; otherwise a file with one column more leaves out "
              "the label column (--label-column, or the one the model was trained with); labels are never needed.")
@_prediction_flags
@click.option("--keep", "keep", multiple=True, metavar="COLUMN",
              help="Copy this column of a CSV or Parquet file (an id, say) into the output, before the "
                   "predictions; repeat for more.")
def predict(model_path, data, header, label_column, proba, out_file, overwrite, keep):
    """Predict labels (and probabilities) for the rows of --data with MODEL, as CSV.

    MODEL is a .safetensors model file or a run directory (its model.safetensors).
    """
    import numpy as np

    from numbamlp.data import (check_header_applies, check_label_column_applies, header_for_model, read_columns,
                               read_features)
    from numbamlp.model import softmax

    if out_file == "-":  # (the usual name of standard output)
        out_file = None
    if out_file:
        _check_output_file(out_file, overwrite)
    model = _load_model(model_path)
    kept = None
    if proba and model.task == "regression":
        raise CliError("--proba is for classifiers; this model is a regressor (its predictions are values)")
    try:
        check_label_column_applies(label_column, data)
        check_header_applies(header, data)
        header = header_for_model(data, model.feature_names, header)
        if keep:
            kept = read_columns(data, list(keep), header)
        X = read_features(data, model.n_features, label_column, task=model.task,
                          trained_label=_trained_label_column(model.metadata), names=model.feature_names,
                          header=header, dtypes=model.feature_dtypes)
        S = _finite_outputs(model.scores(X))
        P = model.values(S) if model.task == "regression" else softmax(S)
    except ValueError as err:
        raise CliError(str(err)) from None
    if model.task == "regression":
        _write_predictions(out_file, outputs=model.n_classes, values=P, kept=kept)
        return
    classes = model.classes if model.classes is not None else np.arange(model.n_classes)
    _write_predictions(out_file, classes=classes.tolist(), labels=classes[np.argmax(P, axis=1)].tolist(),
                       proba=P if proba else None, kept=kept)


def _finite_outputs(values):
    """values, unless some are not finite: a model whose weights blew up (a diverged
    training's) gives NaN, which would be printed as predictions or scored as a class."""
    import numpy as np

    bad = int(np.sum(~np.isfinite(values).all(axis=tuple(range(1, np.ndim(values))))))
    if bad:
        raise CliError(f"the model's outputs are not finite for {bad} of {len(values)} rows: its weights have "
                       "blown up (a diverged training?)")
    return values


def _trained_label_column(metadata):
    """The label column a model was trained with, as its file's metadata (``model.metadata``)
    records it in the config (None when it records none, or the data had none, as builtin
    sets and .npz files)."""
    config = (metadata or {}).get("config") or {}
    return (config.get("data") or {}).get("label_column")


def _write_predictions(out_file, classes=None, labels=None, proba=None, outputs=1, values=None,
                       kept=None) -> None:
    """The CSV of `numbamlp predict` and `numbamlp jobs predict`, to ``out_file`` (atomically)
    or stdout (None).  A regressor's ``values`` (N,) or (N, outputs): a column per output
    (prediction, or prediction_0 ...), %.9g.  A classifier's ``labels`` in a prediction
    column and, with ``proba`` (N, C), the probability of each of ``classes`` in p_<class>
    columns, %.6g.  ``kept`` ({name: N cells}, --keep): columns written first, as given."""
    import csv
    import io as text_io

    import numpy as np

    buffer = text_io.StringIO()
    table = csv.writer(buffer, lineterminator="\n")  # quotes class names that hold commas or quotes
    kept = kept or {}
    names = list(kept)
    if values is not None:
        values = np.asarray(values, dtype=np.float64).reshape(-1, outputs)
        table.writerow(names + (["prediction"] if outputs == 1 else [f"prediction_{k}" for k in range(outputs)]))
        table.writerows([[kept[name][i] for name in names] + [f"{v:.9g}" for v in row]
                         for i, row in enumerate(values)])
        rows = len(values)
    else:
        table.writerow(names + ["prediction"] + ([f"p_{c}" for c in classes] if proba is not None else []))
        for i, label in enumerate(labels):
            table.writerow([kept[name][i] for name in names] + [label]
                           + ([f"{p:.6g}" for p in proba[i]] if proba is not None else []))
        rows = len(labels)
    if out_file:
        from numbamlp.io import atomic_write_bytes

        atomic_write_bytes(out_file, buffer.getvalue().encode())
        click.echo(f"wrote {rows} predictions to {out_file}", err=True)
    else:
        click.echo(buffer.getvalue(), nl=False)


def _quietly(metric, *args, **kwargs) -> float:
    """A scikit-learn metric without its warnings (a class the data lacks is a normal case
    for eval: the score says so; stderr stays one line per error)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(metric(*args, **kwargs))


def _evaluate_regressor(model, S, targets, as_json: bool) -> None:
    """eval's report for a regressor: R², MSE, MAE (numbamlp.trainer.regression_metrics) of
    its predictions from outputs S (N, K) against the targets."""
    from numbamlp.io import json_text
    from numbamlp.trainer import regression_metrics

    result = {"rows": len(S), **regression_metrics(targets, model.values(S))}
    if as_json:
        click.echo(json_text(result))
        return
    click.echo(f"R² {result['r2']:.4f}  MSE {result['mse']:.6g}  MAE {result['mae']:.6g}  ({result['rows']} rows)")


@main.command()
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed for weights and data.")
def gradcheck(seed):
    """Check batched kernels against the reference path and central differences.

    For every activation, a 2-layer and a 3-layer net, the cpu and numpy backends, float64
    and float32: the normwise max relative error of all gradients.  Exits 1 on any mismatch.
    """
    from numbamlp.gradcheck import NUMERICAL_TOLERANCE, REFERENCE_TOLERANCE, gradcheck as run

    rows = run(seed=seed)
    click.echo(f"{'activation':<11} {'layers':<12} {'backend':<7} {'dtype':<8} {'vs reference':>13} {'vs central diff':>16}  result")
    for row in rows:
        click.echo(
            f"{row.activation:<11} {'-'.join(map(str, row.layers)):<12} {row.backend:<7} {row.dtype:<8} "
            f"{row.vs_reference:>13.2e} {row.vs_numerical:>16.2e}  {'ok' if row.ok else 'FAIL'}"
        )
    for dtype in ("float64", "float32"):
        click.echo(f"tolerance {dtype}: reference {REFERENCE_TOLERANCE[dtype]:.0e}, central diff {NUMERICAL_TOLERANCE[dtype]:.0e}")
    failed = [row for row in rows if not row.ok]
    if failed:
        click.echo(f"{len(failed)} of {len(rows)} checks FAILED", err=True)
        sys.exit(1)
    click.echo(f"all {len(rows)} checks passed")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(as_json):
    """Versions, backends, threads, threading layer and how its idle threads wait, BLAS and the compile cache."""
    from numbamlp.diagnostics import environment_info

    report = environment_info()
    if as_json:
        click.echo(json.dumps(report))
        return
    for key, value in report.items():
        if isinstance(value, list):
            click.echo(f"{key}:")
            for item in value:
                click.echo(f"  - {item}")
        else:
            click.echo(f"{key}: {value}")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
              add_help_option=False)
@click.pass_context
def bench(ctx):
    """Run bench/train.py (the training-step benchmark against numpy, PyTorch and JAX).

    Arguments pass through, e.g. `numbamlp bench --configs small,mnist --rounds 5 --json`;
    `numbamlp bench --help` lists them.  Needs a source checkout: bench/ is not part of an
    installed wheel.
    """
    import runpy

    import numbamlp

    script = Path(numbamlp.__file__).resolve().parents[1] / "bench" / "train.py"
    if not script.is_file():
        raise CliError("numbamlp bench runs bench/train.py from a source checkout; none was found "
                       f"next to {Path(numbamlp.__file__).parent}")
    sys.argv = ["numbamlp bench", *ctx.args]  # (argparse names the command by argv[0])
    runpy.run_path(str(script), run_name="__main__")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--out", "out_file", type=click.Path(dir_okay=False),
              help="Image file; its suffix picks the format (.png, .pdf, .svg, .jpg, ...; default: RUN_DIR/curves.png).")
@click.option("--overwrite", is_flag=True, help="Allow the image to replace an existing file.")
def plot(run_dir, out_file, overwrite):
    """Loss and accuracy curves of a run (metrics.jsonl) as an image; needs matplotlib."""
    from numbamlp.plots import PlotError, default_plot_path, plot_run

    # (the default image too: a curves.png already there is not replaced unasked)
    target = out_file or (default_plot_path(run_dir) if Path(run_dir).is_dir() else None)
    if target:
        _check_output_file(target, overwrite)
    try:
        path = plot_run(run_dir, out_file)
    except PlotError as err:
        raise CliError(str(err)) from None
    click.echo(f"wrote {path}")


# The console script holds Python's garbage collector off while the command starts up.
# Start-up (importing Numba, loading the compiled kernels from the cache) allocates several
# hundred thousand objects that live until exit, and none of them is garbage, yet the
# collector walks them again and again as they pile up: ~0.1 s of a warm `numbamlp train`
# (bench/README.md).  When start-up is over they are frozen (left out of every later
# collection) and the collector runs as usual.
_collector_held_off = False


from numbamlp.cli.export import export_command  # noqa: E402  (its own module: ONNX export)

main.add_command(export_command)


def _end_of_startup() -> None:
    global _collector_held_off
    if _collector_held_off:
        _collector_held_off = False
        gc.freeze()
        gc.enable()


class _StartupEnds:
    """Training callback: start-up is over when the first epoch ends."""

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        _end_of_startup()

    def close(self) -> None:
        pass


class _OutputThatOutlivesItsReader:
    """The console script's stdout: when its reader goes away (``numbamlp train | head -2``),
    the rest goes to /dev/null and the command carries on — a run finishes and writes its
    directory — instead of dying half-way, silently, on a BrokenPipeError.  Everything
    else is the real stream's."""

    def __init__(self, stream):
        self._stream = stream

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._to_devnull()

    def _to_devnull(self) -> None:
        # (onto the descriptor itself: what the stream still buffers then flushes there, at exit too)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)


def command_line() -> None:
    """The ``numbamlp`` console script: ``main``, without garbage collection during
    start-up (see _end_of_startup) or at exit, its output surviving a reader that leaves."""
    global _collector_held_off
    if gc.isenabled():
        _collector_held_off = True
        gc.disable()
    sys.stdout = _OutputThatOutlivesItsReader(sys.stdout)
    try:
        main()
    finally:
        # At exit Python collects garbage once more and walks every object there is: ~0.2 s
        # of a warm `numbamlp train` that took ~0.55 s besides (bench/README.md).  The
        # process is ending and the OS takes its memory back, so the objects are frozen
        # instead; what the command wrote is closed by now.
        gc.freeze()


if __name__ == "__main__":
    command_line()
