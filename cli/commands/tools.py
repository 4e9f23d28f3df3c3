"""The small commands around training: ``gradcheck`` (the kernels against the reference path),
``info`` (this installation), ``bench`` (bench/train.py from a source checkout) and ``plot``
(a run's curves as an image).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from numbamlp.cli.common import CliError, check_output_file


@click.command()
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


@click.command()
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


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
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


@click.command()
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
        check_output_file(target, overwrite)
    try:
        path = plot_run(run_dir, out_file)
    except PlotError as err:
        raise CliError(str(err)) from None
    click.echo(f"wrote {path}")
