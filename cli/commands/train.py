"""``numbamlp train``: one run, from defaults < config file < flags, into a run directory,
with its progress on the terminal and its summary (a line, or JSON) at the end.
"""

from __future__ import annotations

import sys

import click

from numbamlp.cli.common import CliError, say_cache_notice
from numbamlp.cli.config_flags import as_flags, build_config, train_flags
from numbamlp.cli.process import StartupEnds
from numbamlp.cli.progress import progress_display
from numbamlp.kernels import BackendUnavailable


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML or JSON config file (the TrainConfig schema); flags override it.")
@train_flags
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
        config = saved if flags["epochs"] is None else build_config(None, {**as_flags(saved), "epochs": flags["epochs"]})
    else:
        config = build_config(config_file, flags)
    say_cache_notice(config.backend)
    callbacks = [StartupEnds()]
    if not as_json:
        callbacks.append(GradientCheckLine())
    if not (as_json or quiet):
        callbacks.append(progress_display(config.epochs))
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


class GradientCheckLine:
    """--validate's result, printed when the check has run: before the first epoch."""

    def on_gradients_checked(self, error: float) -> None:
        click.echo(f"gradient check: max relative error vs reference {error:.2e}")

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        pass

    def close(self) -> None:
        pass
