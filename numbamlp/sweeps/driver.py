"""``sweep()``: every member of a grid trained, as stacks, in-process or on Dask.

Everything is checked before anything trains or is written; then the runner trains the
tasks, and as each stack finishes its members' rows (and, with ``out``, their run
directories and the results files) are written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from numbamlp.config import set_setting, with_absolute_data_paths
from numbamlp.metrics import METRICS, check_metric_applies, check_threshold_applies
from numbamlp.sweeps.directory import (NEW_DIRECTORY, SweepWriter, check_new_directory, claim_directory,
                                       read_finished_rows, read_sweep_plan)
from numbamlp.sweeps.errors import SweepError, SweepInterrupted
from numbamlp.sweeps.grid import member_settings, normalise_grid
from numbamlp.sweeps.members import (DEFAULT_MAX_MEMBERS, DEFAULT_STACK_SIZE, absolute_data_settings, base_document,
                                     member_configs, stack_groups, validate_base)
from numbamlp.sweeps.results import (RUN_COLUMNS, TASK_COLUMNS, SweepResult, best_row, grid_column, metric_for,
                                     sweep_summary)
from numbamlp.sweeps.runners import DaskRunner, InProcessRunner
from numbamlp.sweeps.splits import (arrays_stamp, checked_arrays, data_file_stamps, data_key, data_sets, other_arrays,
                                    prepare_data)
from numbamlp.sweeps.task import StackStopped, SweepData


def sweep(base=None, grid=None, *, data=None, random: int | None = None, workers: int | None = None,
          scheduler: str | None = None, client=None, stack_size: int = DEFAULT_STACK_SIZE,
          metric: str | None = None, out=None, resume=None, max_members: int = DEFAULT_MAX_MEMBERS,
          progress=None) -> SweepResult:
    """Train every member of ``grid`` over ``base`` (a TrainConfig, a dict, or None for the
    defaults) and return a SweepResult; see numbamlp.sweeps.

    data: None (the base config's data settings), or (X, y) arrays, split and standardised
    as the base config says (to resume such a sweep, give the same arrays again).
    metric: the validation metric that ranks the members (numbamlp.metrics.TASK_METRICS),
    which they also early-stop by (it becomes the base's early_stopping.metric); None: the
    base's early_stopping.metric, else the task's default (val_accuracy, val_r2).
    progress(done, total, best_row) is called as stacks finish.  Everything is checked
    before anything trains or is written: SweepError otherwise.
    """
    if progress is False:  # (as None: no progress calls)
        progress = None
    if progress is not None and not callable(progress):
        raise SweepError(f"progress must be a function progress(done, total, best_row), or None; got {progress!r}")
    if metric is not None and metric not in METRICS:
        raise SweepError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if stack_size < 1:
        raise SweepError(f"stack size must be at least 1, got {stack_size}")
    if sum(x is not None for x in (workers, scheduler, client)) > 1:
        raise SweepError("give one of workers (--workers), scheduler (--scheduler) and client")
    if workers is not None and workers < 1:
        raise SweepError(f"workers must be at least 1, got {workers}")
    directory = None
    if resume is not None:
        directory = Path(resume)
        plan = read_sweep_plan(directory)
        document, settings = plan["base"], plan["members"]
        keys, metric, stack_size = plan["keys"], plan["metric"], plan["stack_size"]
        if out is not None:
            raise SweepError("resume goes on in the sweep's own directory; give no out")
    else:
        # data files by absolute path (as a run's config.json has them): a resume from
        # another folder reads the same files
        document = with_absolute_data_paths(base_document(base))
        grid = normalise_grid(grid or {})
        keys = list(grid)
        if "task" in grid:
            raise SweepError("task cannot vary within a sweep: run one sweep per task")
        base_config = validate_base(document)
        settings = [absolute_data_settings(member) for member in member_settings(grid, random, base_config.seed)]
        ranking = metric_for(base_config, metric)
        if metric is not None:  # (given here: the members early-stop by the metric that ranks them)
            set_setting(document, "early_stopping.metric", metric)
        metric = ranking
        if len(settings) > max_members:
            raise SweepError(f"the grid has {len(settings)} members, more than the limit of {max_members} "
                             f"(raise --max-members, or use --random N)")
    configs = member_configs(json.loads(json.dumps(document)), settings)
    from numbamlp.data import changed_data_file

    stamps = data_file_stamps(configs)
    recorded = None if resume is None else plan.get("data_files")
    changed = None if recorded is None else changed_data_file(recorded, stamps)
    if changed is not None:
        raise SweepError(f"the data of {directory} changed since the sweep started ({changed}: size or modification "
                         "time); resuming would train its other members on other rows")
    arrays = None if data is None else checked_arrays(data, configs[0].task)
    data_arrays = None if arrays is None else arrays_stamp(*arrays)
    if resume is not None and plan.get("data_arrays") != data_arrays:
        raise SweepError(other_arrays(directory, plan.get("data_arrays"), data_arrays))
    splits = {key: prepare_data(config, arrays) for key, config in data_sets(configs).items()}
    if configs[0].task == "classification":  # (val_f1 is two classes', val_macro_f1 more's; a threshold two's)
        for one in splits.values():
            try:
                check_metric_applies(metric, "classification", len(np.unique(one.y_train)))
                for config in configs:
                    check_threshold_applies(config.threshold, len(np.unique(one.y_train)))
            except ValueError as err:
                raise SweepError(str(err)) from None
    if out is not None and out is not NEW_DIRECTORY:
        check_new_directory(out)
    on_dask = workers is not None or scheduler is not None or client is not None
    runner = DaskRunner(workers, scheduler, client) if on_dask else InProcessRunner()
    try:
        if out is not None and resume is None:
            directory = claim_directory(out, {"base": document, "keys": keys, "members": settings, "metric": metric,
                                              "stack_size": stack_size, "data_files": stamps,
                                              "data_arrays": data_arrays})
        return _run(runner, directory, configs, settings, keys, splits, stack_size, metric, progress,
                    resumed=resume is not None)
    finally:
        runner.close()


def _run(runner, directory, configs, settings, keys, splits: dict, stack_size, metric, progress,
         resumed) -> SweepResult:
    """Train the members not finished yet, stack by stack; ``splits``: each data key's."""
    from numbamlp.io import one_sync

    writer = SweepWriter(directory)
    table: list[dict | None] = [None] * len(configs)
    models: list = [None] * len(configs)
    if resumed:
        for row in read_finished_rows(directory):
            if row.get("model_path") is not None:  # (where the sweep's directory is now: it may have moved)
                row["model_path"] = str(writer.model_path(row["member"]))
            table[row["member"]] = row
    todo = [k for k in range(len(configs)) if table[k] is None]
    tasks = [[todo[i] for i in group]
             for group in stack_groups([configs[k] for k in todo], stack_size, getattr(runner, "parallel", 1))]
    data = {key: SweepData.of(one) for key, one in splits.items()}
    task_keys = [data_key(configs[task[0]]) for task in tasks]  # (a stack shares its data settings)
    task_configs = [[configs[k].model_dump(mode="json", by_alias=True) for k in task] for task in tasks]
    done = sum(row is not None for row in table)
    try:
        for index, outcomes in runner.run(task_configs, [data[key] for key in task_keys]):
            task_splits = splits[task_keys[index]]
            with one_sync():  # the stack's run files, then one flush; the results rows commit them
                model_paths = [writer.member(member, configs[member], outcome, task_splits)
                               for member, outcome in zip(tasks[index], outcomes)]
            for member, outcome, model_path in zip(tasks[index], outcomes, model_paths):
                models[member] = outcome.get("model")
                if models[member] is not None:
                    task_splits.attach_to(models[member])
                row = {"member": member, **{grid_column(key): settings[member].get(key) for key in keys}}
                row.update({k: outcome.get(k) for k in (*TASK_COLUMNS[configs[member].task], *RUN_COLUMNS)})
                row["model_path"] = model_path
                table[member] = row
            done += len(tasks[index])
            finished = [row for row in table if row is not None]
            writer.rows(finished)
            if progress is not None:
                progress(done, len(configs), best_row(finished, metric))
    except (StackStopped, KeyboardInterrupt):
        raise SweepInterrupted(directory, done, len(configs)) from None
    summary = sweep_summary(table, metric, directory, configs)
    writer.summary(summary)
    return SweepResult(table, models, metric, summary)
