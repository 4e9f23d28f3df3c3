"""The ``numbamlp`` command: train, sweep, eval, predict, export, gradcheck, info, bench, plot,
serve, jobs.

This file holds the root group, the registration of the commands (each in its module of
cli/commands/) and ``command_line``, the console script.  Commands import the library inside
their bodies so that ``numbamlp --help`` stays instant.  Every user error is one line on
stderr and exit code 2, never a traceback; any other exception is one line and exit code 1,
with the traceback only under ``--debug`` (or ``NUMBAMLP_DEBUG=1``): see
numbamlp.cli.common.OneLineErrors.
"""

from __future__ import annotations

import gc
import sys

import click

from numbamlp.cli.commands.evaluate import evaluate
from numbamlp.cli.commands.export import export_command
from numbamlp.cli.commands.jobs import jobs
from numbamlp.cli.commands.predict import predict
from numbamlp.cli.commands.serve import serve
from numbamlp.cli.commands.sweep import sweep
from numbamlp.cli.commands.tools import bench, gradcheck, info, plot
from numbamlp.cli.commands.train import train
from numbamlp.cli.common import OneLineErrors
from numbamlp.cli.process import OutputThatOutlivesItsReader, end_of_startup, hold_collector_off, say_data_notes


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="numbamlp")
@click.option("--debug", is_flag=True, help="Show the full traceback of an unexpected error (also NUMBAMLP_DEBUG=1).")
@click.pass_context
def main(ctx, debug):
    """numbamlp: train multi-layer perceptrons with Numba-compiled kernels."""
    ctx.command.debug = debug  # (read by OneLineErrors when a command fails)
    say_data_notes()
    if ctx.invoked_subcommand != "train":  # train ends its start-up after the first epoch
        end_of_startup()


main.add_command(train)
main.add_command(sweep)
main.add_command(evaluate)
main.add_command(predict)
main.add_command(export_command)
main.add_command(gradcheck)
main.add_command(info)
main.add_command(bench)
main.add_command(plot)
main.add_command(serve)
main.add_command(jobs)


def command_line() -> None:
    """The ``numbamlp`` console script: ``main``, without garbage collection during
    start-up (see numbamlp.cli.process) or at exit, its output surviving a reader that leaves."""
    hold_collector_off()
    sys.stdout = OutputThatOutlivesItsReader(sys.stdout)
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
