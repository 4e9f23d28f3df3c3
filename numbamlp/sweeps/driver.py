"""``sweep()``: every member of a grid trained, as stacks, in-process or on Dask.

Everything is checked before anything trains or is written; then the runner trains the
tasks, and as each stack finishes its members' rows (and, with ``out``, their run
directories and the results files) are written.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np

from numbamlp.config import TrainConfig, set_setting, with_absolute_data_paths
from numbamlp.metrics import METRICS, check_metric_applies, check_threshold_applies
from numbamlp.sweeps.directory import (NEW_DIRECTORY, SweepWriter, check_new_directory, claim_directory,
                                       read_finished_rows, read_sweep_plan)
from numbamlp.sweeps.errors import SweepError, SweepInterrupted
from numbamlp.sweeps.grid import Range, grid_size, member_settings, normalise_grid
from numbamlp.sweeps.members import (DEFAULT_MAX_MEMBERS, DEFAULT_SEARCH_STACK, DEFAULT_STACK_SIZE,
                                     absolute_data_settings, base_document, member_configs, stack_groups,
                                     validate_base)
from numbamlp.sweeps.results import (FINISHED, RUN_COLUMNS, SEARCH_COLUMNS, TASK_COLUMNS, SweepResult, best_row,
                                     grid_column, metric_for, sweep_summary)
from numbamlp.sweeps.runners import DaskRunner, InProcessRunner
from numbamlp.sweeps.search import DEFAULT_REDUCTION_FACTOR
from numbamlp.sweeps.splits import (arrays_stamp, checked_arrays, data_file_stamps, data_sets, other_arrays,
                                    prepare_data)
from numbamlp.sweeps.task import StackStopped, SweepData


def sweep(base=None, grid=None, *, data=None, random: int | None = None, workers: int | None = None,
          scheduler: str | None = None, client=None, stack_size: int | None = None,
          metric: str | None = None, out=None, resume=None, max_members: int = DEFAULT_MAX_MEMBERS,
          progress=None, search: str | None = None, trials: int | None = None, prune: str = "none",
          min_epochs: int = 1, reduction_factor: int = DEFAULT_REDUCTION_FACTOR, storage=None,
          refill: bool = True, watch=None, written=None) -> SweepResult:
    """Train every member of ``grid`` over ``base`` (a TrainConfig, a dict, or None for the
    defaults) and return a SweepResult; see numbamlp.sweeps.

    data: None (the base config's data settings), or (X, y) arrays, split and standardised
    as the base config says (to resume such a sweep, give the same arrays again).
    metric: the validation metric that ranks the members (numbamlp.metrics.TASK_METRICS),
    which they also early-stop by (it becomes the base's early_stopping.metric); None: the
    base's early_stopping.metric, else the task's default (val_accuracy, val_r2).
    progress(done, total, best_row) is called as stacks finish (a search's trials, as each
    ends).  search: None (every member of the grid, or ``random`` draws), or "tpe",
    "cmaes", "random", "grid": ``trials`` trials asked of an Optuna study over the grid's
    lists and ranges, in stacks whose freed slots are refilled, pruned by ``prune``
    ("median", "asha", "hyperband") from epoch ``min_epochs`` with ``reduction_factor``,
    the study in ``storage`` (numbamlp.sweeps.search); ``refill`` False leaves a search's freed
    slots empty until their stack ends (to measure what refilling saves); ``watch`` (a
    numbamlp.sweeps.search.TrialWatch) hears of each trial as it starts, trains an epoch and
    ends, and may cancel trials or stop the search; ``written(config document) → config
    document`` changes the config a search's trials' files keep (config.json, the model's
    metadata: the service's keeps its uploads' ids there, not its paths).  On Dask (workers, scheduler, client) a
    search's sampler runs here and its stacks on the workers.  stack_size: most members to a stack
    (DEFAULT_STACK_SIZE; a search's, DEFAULT_SEARCH_STACK, which is also the trials in
    flight).  Everything is checked before anything trains or is written: SweepError
    otherwise.
    """
    if progress is False:  # (as None: no progress calls)
        progress = None
    if progress is not None and not callable(progress):
        raise SweepError(f"progress must be a function progress(done, total, best_row), or None; got {progress!r}")
    if metric is not None and metric not in METRICS:
        raise SweepError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if search is not None or (resume is not None and "search" in read_sweep_plan(resume)):
        _check_runner(workers, scheduler, client)
        return _search_sweep(base, grid, data=data, random=random, stack_size=stack_size, metric=metric, out=out,
                             resume=resume, progress=progress, search=search, trials=trials, prune=prune,
                             min_epochs=min_epochs, reduction_factor=reduction_factor, storage=storage,
                             refill=refill, watch=watch, written=written, on=(workers, scheduler, client))
    if watch is not None or written is not None:
        raise SweepError("watch and written go with search: a grid sweep reports its stacks through progress")
    if trials is not None or prune != "none" or storage is not None or min_epochs != 1 \
            or reduction_factor != DEFAULT_REDUCTION_FACTOR:
        raise SweepError("--trials, --prune, --min-epochs, --reduction-factor and --storage go with --search")
    stack_size = DEFAULT_STACK_SIZE if stack_size is None else stack_size
    if stack_size < 1:
        raise SweepError(f"stack size must be at least 1, got {stack_size}")
    _check_runner(workers, scheduler, client)
    directory = None
    if resume is not None:
        directory = Path(resume)
        plan = read_sweep_plan(directory)
        document, settings = plan["base"], plan["members"]
        keys, metric, stack_size = plan["keys"], plan["metric"], plan["stack_size"]
        if out is not None:
            raise SweepError("resume goes on in the sweep's own directory; give no out")
    else:
        document, grid, base_config, metric = _new_sweep(base, grid, metric)
        keys = list(grid)
        if grid_size(grid, random) > max_members:  # (counted before the members are made)
            raise SweepError(f"the grid has {grid_size(grid, random)} members, more than the limit of {max_members} "
                             f"(raise --max-members, or use --random N)")
        settings = [absolute_data_settings(member) for member in member_settings(grid, random, base_config.seed)]
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
    runner = _runner(workers, scheduler, client)
    try:
        if out is not None and resume is None:
            directory = claim_directory(out, {"base": document, "keys": keys, "members": settings, "metric": metric,
                                              "stack_size": stack_size, "data_files": stamps,
                                              "data_arrays": data_arrays})
        return _run(runner, directory, configs, settings, keys, splits, stack_size, metric, progress,
                    resumed=resume is not None)
    finally:
        runner.close()


def _check_runner(workers, scheduler, client) -> None:
    if sum(x is not None for x in (workers, scheduler, client)) > 1:
        raise SweepError("give one of workers (--workers), scheduler (--scheduler) and client")
    if workers is not None and workers < 1:
        raise SweepError(f"workers must be at least 1, got {workers}")


def _runner(workers, scheduler, client):
    """Where the stacks train: on Dask when any of the three is given, else here."""
    on_dask = workers is not None or scheduler is not None or client is not None
    return DaskRunner(workers, scheduler, client) if on_dask else InProcessRunner()


def _new_sweep(base, grid, metric: str | None):
    """A new sweep's (base document, normalised grid, base TrainConfig, ranking metric): the
    data files by absolute path (as a run's config.json has them: a resume from another
    folder reads the same files); a ``metric`` given is the base's early_stopping.metric
    too, so that the members early-stop by the metric that ranks them."""
    document = with_absolute_data_paths(base_document(base))
    grid = normalise_grid(grid or {})
    if "task" in grid:
        raise SweepError("task cannot vary within a sweep: run one sweep per task")
    base_config = validate_base(document)
    ranking = metric_for(base_config, metric)
    if metric is not None:
        set_setting(document, "early_stopping.metric", metric)
    return document, grid, base_config, ranking


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
    from numbamlp.data import split_key

    data = {key: SweepData.of(one) for key, one in splits.items()}
    task_keys = [split_key(configs[task[0]]) for task in tasks]  # (a stack shares its splits: stack_key_text)
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


def _search_sweep(base, grid, *, data, random, stack_size, metric, out, resume, progress, search, trials, prune,
                  min_epochs, reduction_factor, storage, refill, watch, written, on) -> SweepResult:
    """``sweep`` with ``search``: trials asked of an Optuna study (numbamlp.sweeps.search)."""
    from numbamlp.member import TrainingInterrupted
    from numbamlp.metrics import HIGHER_IS_BETTER
    from numbamlp.sweeps.search import (SearchSettings, TrialRunner, check_search, grid_combinations, make_study,
                                        optuna_module, search_space, trial_values, written_grid)

    optuna_module()  # (without Optuna: said before anything is checked or written)
    directory = None
    if resume is not None:
        directory = Path(resume)
        plan = read_sweep_plan(directory)
        if any(v is not None for v in (base, grid, random, stack_size, out, search, trials, storage, metric)) \
                or (prune, min_epochs, reduction_factor) != ("none", 1, DEFAULT_REDUCTION_FACTOR):
            raise SweepError("resume goes on with the search's own settings; give only the directory (and the same "
                             "data arrays, when it was given arrays)")
        document, keys, metric, stack_size = plan["base"], plan["keys"], plan["metric"], plan["stack_size"]
        grid = normalise_grid(plan["grid"])
        settings = SearchSettings(**plan["search"])
        space = search_space(grid, settings.search)
    else:
        document, grid, _, metric = _new_sweep(base, grid, metric)
        keys = list(grid)
        space = search_space(grid, search)
        size = grid_size({d.path: d.choices for d in space}) if search == "grid" else None
        settings = check_search(search, trials, prune, min_epochs, reduction_factor, storage, random, size)
        stack_size = DEFAULT_SEARCH_STACK if stack_size is None else stack_size
    if stack_size < 1:
        raise SweepError(f"stack size must be at least 1, got {stack_size}")
    frozen = json.loads(json.dumps(document))

    def make_config(values: dict):
        return member_configs(json.loads(json.dumps(frozen)), [absolute_data_settings(values)])[0]

    base_config = make_config({})
    # every value a trial may take, with the base (a range by its ends): refused now, not mid-search
    trial_configs = [make_config(values) for values in trial_values(space)]
    stamps = data_file_stamps([base_config])
    from numbamlp.data import changed_data_file

    changed = None if resume is None else changed_data_file(plan.get("data_files") or {}, stamps)
    if changed is not None and plan.get("data_files") is not None:
        raise SweepError(f"the data of {directory} changed since the sweep started ({changed}: size or modification "
                         "time); resuming would train its other trials on other rows")
    arrays = None if data is None else checked_arrays(data, base_config.task)
    data_arrays = None if arrays is None else arrays_stamp(*arrays)
    if resume is not None and plan.get("data_arrays") != data_arrays:
        raise SweepError(other_arrays(directory, plan.get("data_arrays"), data_arrays))
    splits = prepare_data(base_config, arrays)
    if base_config.task == "classification":
        try:
            check_metric_applies(metric, "classification", len(np.unique(splits.y_train)))
            for config in (base_config, *trial_configs):
                check_threshold_applies(config.threshold, len(np.unique(splits.y_train)))
        except ValueError as err:
            raise SweepError(str(err)) from None
    if out is not None and out is not NEW_DIRECTORY:
        check_new_directory(out)
    # where the stacks train, reached (a Dask scheduler) before the directory is claimed
    stacks_runner = _runner(*on)
    with contextlib.closing(stacks_runner):
        max_epochs = max([base_config.epochs]
                         + [int(v.high if isinstance(v, Range) else v) for v in grid.get("epochs", ())])
        direction = "maximize" if HIGHER_IS_BETTER[metric] else "minimize"
        study = None
        if settings.storage is not None:  # (a storage of the user's: opened before the directory is claimed)
            study = make_study(settings, direction, base_config.seed, max_epochs, directory, resume=resume is not None)
        if out is not None and resume is None:
            directory = claim_directory(out, {"base": document, "keys": keys, "members": [], "metric": metric,
                                              "stack_size": stack_size, "data_files": stamps,
                                              "data_arrays": data_arrays,
                                              "grid": written_grid(grid), "search": settings.as_json()})
        if study is None:
            study = make_study(settings, direction, base_config.seed, max_epochs, directory, resume=resume is not None)
        writer = SweepWriter(directory)
        rows: dict[int, dict] = {}
        models: dict[int, object] = {}
        if resume is not None:
            for row in read_finished_rows(directory):
                if row.get("model_path") is not None:
                    row["model_path"] = str(writer.model_path(row["member"]))
                rows[row["member"]] = row
        again = _interrupted_trials(study, rows, metric)
        if settings.search == "grid" and not study.trials:
            for params in grid_combinations(space)[: settings.trials]:
                study.enqueue_trial(params)

        def finish(trial, outcome: dict) -> None:
            """A trial's run files (inside the runner's one_sync) and row."""
            member = trial.trial.number
            kept = trial.config if written is None else TrainConfig.model_validate(
                written(trial.config.model_dump(mode="json", by_alias=True)))
            model_path = writer.member(member, kept, outcome, splits)
            if outcome.get("model") is not None:
                splits.attach_to(outcome["model"])
                models[member] = outcome["model"]
            row = {"member": member, **{grid_column(key): trial.settings.get(key) for key in keys}}
            row.update({k: outcome.get(k) for k in (*TASK_COLUMNS[base_config.task], *RUN_COLUMNS, *SEARCH_COLUMNS)})
            row["model_path"] = model_path
            rows[member] = row
            return row

        def commit() -> None:
            """The rows so far (results.jsonl and .csv: they commit the run files flushed before)."""
            finished = [rows[k] for k in sorted(rows)]
            writer.rows(finished)
            if progress is not None:
                progress(len(rows), settings.trials, best_row(finished, metric))

        from numbamlp.io import one_sync

        runner = TrialRunner(study, space, make_config, SweepData.of(splits), metric, stack_size, finish, refill,
                             writes=one_sync, commit=commit, runner=stacks_runner, watch=watch)
        told = sum(1 for t in study.trials if t.state.is_finished())
        try:
            runner.run(max(0, settings.trials - told - len(again)), again)
        except (KeyboardInterrupt, TrainingInterrupted):
            raise SweepInterrupted(directory, len(rows), settings.trials) from None
    table = [rows[k] for k in sorted(rows)]
    configs = [make_config({key: row.get(grid_column(key)) for key in keys}) for row in table]
    summary = sweep_summary(table, metric, directory, configs)
    summary["search"] = {**settings.as_json(), "trials_by_state": _trial_states(study)}
    writer.summary(summary)
    return SweepResult(table, [models.get(row["member"]) for row in table], metric, summary)


def _interrupted_trials(study, rows: dict, metric: str) -> list:
    """A resumed search's trials the storage holds as running: told from their row when it
    was written (the sweep stopped between the two), else returned, to be trained again
    from the start under their numbers (optuna Trials, whose settings the storage has)."""
    import optuna

    again = []
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        row = rows.get(frozen.number)
        if row is None:
            again.append(optuna.trial.Trial(study, frozen._trial_id))
        elif row["status"] == "pruned":
            study.tell(frozen.number, state=optuna.trial.TrialState.PRUNED)
        elif row["status"] in FINISHED and row.get(metric) is not None:
            study.tell(frozen.number, row[metric])
        else:
            study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
    return again


def _trial_states(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return counts
