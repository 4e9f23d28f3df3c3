"""The ``numbamlp`` command.  Commands import the library inside their bodies so that
``numbamlp --help`` stays instant; every user error is one line on stderr and exit code 2."""

from __future__ import annotations

import sys

import click


class CliError(click.ClickException):
    """A user error: printed as one line ``Error: ...``, exit code 2."""

    exit_code = 2


def _field_help(model_name: str, field: str) -> str:
    """The config schema's description of a field: the single source of option help."""
    from numbamlp import config

    return getattr(config, model_name).model_fields[field].description


def _int_list(ctx, param, value):
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers like 256,128, got {value!r}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="numbamlp")
def main():
    """numbamlp: train multi-layer perceptrons with Numba-compiled kernels."""


@main.command()
@click.option("--data", help=_field_help("DataConfig", "train"))
@click.option("--hidden", callback=_int_list, help=_field_help("ModelConfig", "hidden") + " Comma-separated.")
@click.option("--activation", help=_field_help("ModelConfig", "activation"))
@click.option("--lr", type=float, help=_field_help("OptimizerConfig", "lr"))
@click.option("--momentum", type=float, help=_field_help("OptimizerConfig", "momentum"))
@click.option("--epochs", type=int, help=_field_help("TrainConfig", "epochs"))
@click.option("--batch-size", type=int, help=_field_help("TrainConfig", "batch_size"))
@click.option("--backend", help=_field_help("TrainConfig", "backend"))
@click.option("--dtype", help=_field_help("TrainConfig", "dtype"))
@click.option("--seed", type=int, help=_field_help("TrainConfig", "seed"))
@click.option("--quiet", is_flag=True, help="Print only the final test accuracy.")
def train(data, hidden, activation, lr, momentum, epochs, batch_size, backend, dtype, seed, quiet):
    """Train an MLP (default: the built-in digits set) and report test accuracy."""
    from pydantic import ValidationError

    from numbamlp.config import TrainConfig
    from numbamlp.data import DataError, prepare
    from numbamlp.trainer import Trainer

    passed = {
        "seed": seed, "backend": backend, "dtype": dtype, "epochs": epochs, "batch_size": batch_size,
        "model": {"hidden": hidden, "activation": activation},
        "optimizer": {"lr": lr, "momentum": momentum},
        "data": {"train": data},
    }
    try:
        config = TrainConfig.model_validate(_without_none(passed))
    except ValidationError as err:
        raise CliError(_one_line(err)) from None
    try:
        splits = prepare(config.data, config.seed)
        trainer = Trainer(config)
        trainer.fit(splits.X_train, splits.y_train, splits.X_val, splits.y_val,
                    callbacks=[] if quiet else [_EpochPrinter(config.epochs)])
        result = trainer.evaluate(splits.X_test, splits.y_test)
    except ValueError as err:  # DataError included: bad data or shapes, said in one line
        raise CliError(str(err)) from None
    model = trainer.model
    click.echo(
        f"test accuracy: {result['accuracy']:.4f}  test loss: {result['loss']:.4f}  "
        f"({len(splits.y_test)} test rows, layers {model.layers}, {model.activation}, "
        f"{config.backend}/{config.dtype})"
    )


class _EpochPrinter:
    def __init__(self, epochs: int):
        self.width = len(str(epochs))
        self.epochs = epochs

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        line = f"epoch {epoch:>{self.width}}/{self.epochs}  loss {metrics['loss']:.4f}"
        if "val_accuracy" in metrics:
            line += f"  val_loss {metrics['val_loss']:.4f}  val_acc {metrics['val_accuracy']:.4f}"
        click.echo(line + f"  ({metrics['seconds']:.2f}s)")


@main.command()
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for weights and data.")
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


def _without_none(tree: dict) -> dict:
    """Drop unset flags (None) so that only what the user passed overrides defaults."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            value = _without_none(value)
            if value:
                out[key] = value
        elif value is not None:
            out[key] = value
    return out


def _one_line(err) -> str:
    """A pydantic ValidationError as one line naming each field."""
    parts = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "config"
        parts.append(f"{field}: {e['msg']}")
    return "invalid configuration: " + "; ".join(parts)


if __name__ == "__main__":
    main()
