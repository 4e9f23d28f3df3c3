"""Sweeps: every member of a hyperparameter grid trained, as stacks, in-process or on Dask.

    from numbamlp import sweep
    result = sweep({"epochs": 30}, {"optimizer.lr": [0.01, 0.1], "seed": [0, 1, 2]})
    result.best, result.best_model, result.table

A grid maps dotted ``TrainConfig`` paths (``optimizer.lr``, ``model.hidden``, ``seed``, ...)
to lists of values; the members are their cartesian product, or, with ``random=N``, N
draws from the lists and from ranges (``uniform:A:B``, ``loguniform:A:B``, ``int:A:B``)
with the sweep's seed.  Every member sees the same data split — held out with the base
config's seed, which each member's config records as ``data.seed`` — and a validation set
(``data.val_fraction``, numbamlp.config.DEFAULT_VAL_FRACTION unless the base sets one, or
``data.val``): the best member is the one with the best validation metric, never chosen on
the test rows.

Members that can share a step (``numbamlp.stack.STACK_KEY``) are trained together as a
``StackTrainer`` of at most ``stack_size``; each stack is one task.  Tasks run one after
another in this process (all cores; no Dask import), or on Dask: ``workers=N`` starts a
``LocalCluster`` of N processes, ``scheduler=ADDRESS`` or ``client=`` uses a running one.
A member's results are exactly those of ``numbamlp train`` with its config (the cpu
backend computes the same bits in a stack as alone, on any thread count), so a task that
Dask reruns after losing a worker gives the same results.

With ``out``, the sweep writes its directory (numbamlp.layout says what it holds) as each
stack finishes: a row per finished member, and each member's run directory.  ``resume=DIR``
trains only the members that ``DIR`` has no row for.

The parts, each a module:

    errors     SweepError (refused before anything trains), SweepInterrupted
    grid       the grid's keys and values (command line, config file, Python) → members' values
    members    the members' configs (the shared split and validation rows), grouped into stacks
    results    a member's row, ranking by the metric, the table as CSV, the summary, SweepResult
    splits     the data the members train on, and what a resume checks it by
    task       one stack trained (here or on a Dask worker); a member's run directory from it
    runners    where tasks run: InProcessRunner, DaskRunner
    directory  the sweep's directory: checked, claimed, written as stacks finish, read by resume
    driver     sweep() itself
"""

from numbamlp.layout import SWEEP_FILES, sweep_directory_note
from numbamlp.sweeps.directory import NEW_DIRECTORY, read_finished_rows, read_sweep_plan
from numbamlp.sweeps.driver import DEFAULT_MAX_MEMBERS, sweep
from numbamlp.sweeps.errors import SweepError, SweepInterrupted
from numbamlp.sweeps.grid import (RANGE_KINDS, Range, grid_from_table, member_settings, normalise_grid,
                                  parse_grid_option, parse_range, parse_value, resolve_key, setting_paths)
from numbamlp.sweeps.members import (DEFAULT_STACK_SIZE, DEFAULT_VAL_FRACTION, base_document, member_configs,
                                    stack_groups, validate_base)
from numbamlp.sweeps.results import (FINISHED, HIGHER_IS_BETTER, METRICS, RESULT_COLUMNS, RUN_COLUMNS, TASK_COLUMNS,
                                     TASK_METRICS, SweepResult, best_row, grid_column, grid_keys, ranked, table_csv)
from numbamlp.sweeps.runners import SCHEDULER_TIMEOUT_S, DaskRunner, InProcessRunner
from numbamlp.sweeps.task import (StackStopped, SweepData, train_stack, train_stack_on_worker, worker_threads,
                                  write_run_files)

__all__ = [
    "DEFAULT_MAX_MEMBERS", "DEFAULT_STACK_SIZE", "DEFAULT_VAL_FRACTION", "FINISHED", "HIGHER_IS_BETTER", "METRICS",
    "NEW_DIRECTORY", "RANGE_KINDS", "RESULT_COLUMNS", "RUN_COLUMNS", "SCHEDULER_TIMEOUT_S", "SWEEP_FILES",
    "TASK_COLUMNS", "TASK_METRICS", "DaskRunner", "InProcessRunner", "Range", "StackStopped", "SweepData",
    "SweepError", "SweepInterrupted", "SweepResult", "base_document", "best_row", "grid_column", "grid_from_table",
    "grid_keys", "member_configs", "member_settings", "normalise_grid", "parse_grid_option", "parse_range",
    "parse_value", "ranked", "read_finished_rows", "read_sweep_plan", "resolve_key", "setting_paths", "stack_groups",
    "sweep", "sweep_directory_note", "table_csv", "train_stack", "train_stack_on_worker", "validate_base",
    "worker_threads", "write_run_files",
]
