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

``search="tpe"`` (or "cmaes", "random", "grid") with ``trials=N`` asks an Optuna study for
the members instead, trains them in stacks whose freed slots are refilled at the next epoch
boundary, and stops poor ones early with ``prune="asha"`` (or "median", "hyperband"):
numbamlp.sweeps.search.

The parts, each a module:

    errors     SweepError (refused before anything trains), SweepInterrupted
    grid       the grid's keys and values (command line, config file, Python) → members' values
    members    the members' configs (the shared split and validation rows), grouped into stacks
    results    a member's row, ranking by the metric, the table as CSV, the summary, SweepResult
    splits     the data the members train on, and what a resume checks it by
    task       one stack trained (here or on a Dask worker); a member's run directory from it
    search     a search's space, Optuna study, and trials trained in refilled stacks
    runners    where tasks run: InProcessRunner, DaskRunner
    directory  the sweep's directory: checked, claimed, written as stacks finish, read by resume
    driver     sweep() itself
"""

# Where each name lives: the parts are imported on first use (PEP 562), as numbamlp's own
# names are, so that reading a default from here does not load the trainer.
_PARTS = {
    "numbamlp.layout": "SWEEP_FILES sweep_directory_note",
    "numbamlp.metrics": "HIGHER_IS_BETTER METRICS TASK_METRICS",
    "numbamlp.sweeps.directory": "NEW_DIRECTORY read_finished_rows read_sweep_plan",
    "numbamlp.sweeps.driver": "sweep",
    "numbamlp.sweeps.errors": "SweepError SweepInterrupted",
    "numbamlp.sweeps.grid": ("RANGE_KINDS Range grid_from_table member_settings normalise_grid "
                            "parse_grid_option parse_range parse_value resolve_key setting_paths"),
    "numbamlp.sweeps.members": ("DEFAULT_MAX_MEMBERS DEFAULT_SEARCH_STACK DEFAULT_STACK_SIZE DEFAULT_VAL_FRACTION "
                               "base_document member_configs stack_groups stack_key_text validate_base"),
    "numbamlp.sweeps.results": ("FINISHED RESULT_COLUMNS RUN_COLUMNS SEARCH_COLUMNS TASK_COLUMNS SweepResult best_row "
                               "grid_column grid_keys ranked table_csv"),
    "numbamlp.sweeps.search": "PRUNERS SEARCHES search_space",
    "numbamlp.sweeps.runners": "SCHEDULER_TIMEOUT_S DaskRunner InProcessRunner",
    "numbamlp.sweeps.task": "StackStopped SweepData train_stack train_stack_on_worker worker_threads write_run_files",
}
_HOMES = {name: module for module, names in _PARTS.items() for name in names.split()}

__all__ = sorted(_HOMES)


def __getattr__(name):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'numbamlp.sweeps' has no attribute {name!r}")
