"""``numbamlp sweep``: every combination (or a random draw) of a grid of settings, trained as
stacks, the best member picked on validation data; its progress and report on the terminal.
"""

from __future__ import annotations

import json
import sys

import click

from numbamlp.cli.common import CliError, say_cache_notice
from numbamlp.cli.config_flags import FLAG_OF_PATH, read_config_file, train_flags, validated, with_flags
from numbamlp.kernels import BackendUnavailable
from numbamlp.sweeps.members import DEFAULT_MAX_MEMBERS, DEFAULT_SEARCH_STACK, DEFAULT_STACK_SIZE
from numbamlp.sweeps.search import DEFAULT_REDUCTION_FACTOR, PRUNERS, SEARCHES


@click.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="TOML or JSON base config (the TrainConfig schema); a [grid] table in it adds grid keys.")
@train_flags
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
@click.option("--search", type=click.Choice(SEARCHES),
              help="Ask an Optuna study for --trials trials over the grid's lists and ranges instead: tpe, cmaes, "
              "random, or grid (every combination); trials of one shape share a stack whose freed slots are "
              "refilled (needs numbamlp[search]).")
@click.option("--trials", type=int, metavar="N", help="Trials a --search asks for (a grid search: all its combinations).")
@click.option("--prune", type=click.Choice(PRUNERS), default="none", show_default=True,
              help="Stop a --search's poor trials early, by Optuna's MedianPruner, SuccessiveHalvingPruner (asha) "
              "or HyperbandPruner, from the validation metric after each epoch.")
@click.option("--min-epochs", type=int, default=1, show_default=True, metavar="R",
              help="The first epoch a pruner may stop a trial at (its min_resource).")
@click.option("--reduction-factor", type=int, default=DEFAULT_REDUCTION_FACTOR, show_default=True, metavar="ETA",
              help="asha's and hyperband's reduction factor: about 1/ETA of the trials go on at each rung.")
@click.option("--storage", metavar="URL|FILE",
              help="The Optuna study's storage: an RDB URL (sqlite:///study.db) or a journal file "
              "(default: study.journal in the sweep's directory).")
@click.option("--stack-size", type=int, default=None,
              help=f"Most members trained together in one stack (one task) [default: {DEFAULT_STACK_SIZE}; a "
              f"--search's, also its trials in flight: {DEFAULT_SEARCH_STACK}].")
@click.option("--max-members", type=int, default=DEFAULT_MAX_MEMBERS, show_default=True,
              help="Refuse grids larger than this.")
@click.option("--out", type=click.Path(file_okay=False), help="Sweep directory to create (default: sweeps/<UTC timestamp>).")
@click.option("--resume", type=click.Path(file_okay=False),
              help="Go on with the sweep in this directory: train the members it has no results for.")
@click.option("--json", "as_json", is_flag=True, help="Print only the summary, as JSON (the last line of stdout).")
@click.option("--quiet", is_flag=True, help="Print only the best member and where the results are.")
def sweep(config_file, grid_options, random_members, workers, scheduler, search, trials, prune, min_epochs,
          reduction_factor, storage, stack_size, max_members, out, resume, as_json, quiet, **flags):
    """Train every combination of a grid of settings, as stacks, and pick the best on validation data
    (by --metric, which the members also early-stop by)."""
    from numbamlp.data import DataError
    from numbamlp.io import json_text
    from numbamlp.paths import OutputPathError
    from numbamlp.sweeps import NEW_DIRECTORY, SweepError, SweepInterrupted, grid_from_table, parse_grid_option
    from numbamlp.sweeps import sweep as run_sweep

    flags = {name.replace("__", "."): value for name, value in flags.items()}
    try:
        if resume is not None:
            given = [FLAG_OF_PATH[p] for p, v in flags.items() if v is not None]
            given += [name for name, v in (("--config", config_file), ("--grid", grid_options),
                                            ("--random", random_members), ("--out", out), ("--search", search),
                                            ("--trials", trials), ("--storage", storage),
                                            ("--stack-size", stack_size)) if v not in (None, ())]
            context = click.get_current_context()  # (these have defaults: given only when typed)
            given += [f"--{name.replace('_', '-')}" for name in ("max_members", "prune", "min_epochs",
                                                                  "reduction_factor")
                      if context.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
            if given:
                raise CliError(f"--resume goes on with the sweep's own settings; only --workers, --scheduler, "
                               f"--json and --quiet may be given (got {', '.join(given)})")
            document, grid = None, None
        else:
            document = read_config_file(config_file) if config_file else {}
            grid = grid_from_table(document.pop("grid", None) or {})
            document = with_flags(document, flags)
            validated(document, flags)  # (to name the flag that is wrong)
            given = set()  # (a --grid replaces the config's [grid] entry, as flags override config keys)
            for option in grid_options:
                key, values = parse_grid_option(option)
                if key in given:
                    raise CliError(f"--grid sets {key} twice; give all its values in one: --grid {key}=V1,V2,...")
                given.add(key)
                grid[key] = values
        if not (as_json or quiet):
            say_cache_notice((document or {}).get("backend", "cpu"))
        show = None if as_json or quiet else _sweep_progress
        searching = {} if search is None and resume else dict(
            search=search, trials=trials, prune=prune, min_epochs=min_epochs, reduction_factor=reduction_factor,
            storage=storage)
        result = run_sweep(document, grid, random=random_members, workers=workers, scheduler=scheduler,
                           stack_size=stack_size, max_members=max_members,
                           out=out if out is not None else (None if resume else NEW_DIRECTORY),
                           resume=resume, progress=show, **searching)
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


def _member_text(row: dict, keys: list[str]) -> str:
    return ", ".join(f"{key}={json.dumps(row[key]) if isinstance(row[key], list) else row[key]}" for key in keys)


def _sweep_progress(done: int, total: int, best: dict | None) -> None:
    width = len(str(total))
    line = f"[{done:>{width}}/{total}] members done"
    if best is not None:
        from numbamlp.sweeps import grid_keys

        scores = " ".join(f"{k} {best[k]:.4f}" for k in _shown_scores(best) if best[k] is not None)
        line += f"; best so far: member {best['member']} ({_member_text(best, grid_keys(best))}) {scores}"
    click.echo(line)


def _shown_scores(row: dict, metric: str | None = None) -> list[str]:
    """The validation columns of a row the terminal shows: ``metric`` (what ranks), the first
    two of its task's metrics (numbamlp.metrics.TASK_METRICS) and val_loss; results.csv has
    every one."""
    from numbamlp.sweeps import TASK_COLUMNS, TASK_METRICS

    # (the task whose columns the row holds; a row an older sweep wrote may lack the newer ones)
    task = next((task for task, columns in TASK_COLUMNS.items() if set(columns) <= set(row)), "classification")
    shown = {metric, *TASK_METRICS[task][:2], "val_loss"}
    return [column for column in row if column in shown]


def _sweep_report(result, quiet: bool, top: int = 5) -> None:
    """The best rows as a table, the best member, and where everything is."""
    from numbamlp.sweeps import grid_keys, ranked

    summary, table = result.summary, result.table
    keys = grid_keys(table[0]) if table else []
    test_metric = result.metric.replace("val_", "test_")
    if not quiet:
        scores = _shown_scores(table[0], result.metric) if table else []
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
                   f"{best[result.metric]:.4f}, {test_metric} {_cell(best.get(test_metric))} ({counts})")
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
