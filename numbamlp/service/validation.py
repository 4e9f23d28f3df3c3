"""What a submitted job must pass before it is stored (POST /v1/jobs, each member of POST
/v1/sweeps): its config validates, every data source is one the server may read (builtin:NAME
or an uploaded dataset:<id>) and loads with the config's label column and task, held-out
data is like the training data, and the job is within the server's limits.  A table (a CSV
or Parquet file with text or missing cells, or data.features, data.drop or data.categorical
named) is prepared at submit as the job will prepare it.  Each problem is one line naming
the field, as the 422 says it."""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import HTTPException

from numbamlp.service.errors import cut
from numbamlp.service.limits import Limits, job_problem
from numbamlp.service.files import DATASET_PREFIX, dataset_path, hide_dataset_paths
from numbamlp.service.store import Store


def job_config(document: dict, store: Store, data_dir: Path, limits: Limits) -> dict:
    """A submitted config, validated (422 naming the field), its data and size checked
    (data_problem), the data split's seed fixed (0 unless given: jobs that differ only in
    seed share a split, and so can share a stack)."""
    from pydantic import ValidationError

    from numbamlp.config import TrainConfig

    try:
        config = TrainConfig.model_validate(document)
    except ValidationError as err:
        problems = "; ".join((f"{'.'.join(cut(str(p), 60) for p in e['loc'])}: " if e["loc"] else "")
                             + e["msg"].removeprefix("Value error, ") for e in err.errors())
        raise HTTPException(422, f"invalid configuration: {problems}") from None
    problem = data_problem(config, store, data_dir, limits)
    if problem is not None:
        raise HTTPException(422, problem)
    if config.data.seed is None:
        config = config.model_copy(update={"data": config.data.model_copy(update={"seed": 0})})
    return config.model_dump(mode="json", by_alias=True)


def data_problem(config, store: Store, data_dir: Path, limits: Limits) -> str | None:
    """What is wrong with a config's data, naming the field, if anything: every source is
    builtin:NAME or an uploaded dataset:<id> (the server reads no other path) that loads
    with the config's label column and task — checked now, not when the job runs; and
    then which of the server's limits the job passes (epochs, batch size, parameters)."""
    from numbamlp.data import DataError, check_label_column_applies

    data = config.data
    table = None  # (whether the training data is a table: then every source is read as one, by prepare)
    for key in ("train", "test", "val"):
        source = getattr(data, key)
        if source is None:
            continue
        uploaded = source.startswith(DATASET_PREFIX) and store.dataset(source[len(DATASET_PREFIX):]) is not None
        if not (uploaded or source.startswith("builtin:")):
            return f"data.{key}: {source!r} is not builtin:NAME or an uploaded dataset:<id>"
        path = dataset_path(data_dir, source)
        if table is None:
            table = _reads_as_table(data, path, config.task)
        if table:
            continue
        problem = load_problem(path, data.label_column, config.task)
        if problem is not None:
            # the label column is to blame when the source loads with the default one
            label_fault = data.label_column is not None and load_problem(path, None, config.task) is None
            return f"data.{'label_column' if label_fault else key}: {hide_dataset_paths(problem, data_dir)}"
    files = {key: dataset_path(data_dir, getattr(data, key)) for key in ("train", "test", "val")
             if getattr(data, key) is not None}
    try:  # (a label column with no CSV or Parquet source: refused as the command line refuses it)
        check_label_column_applies(data.label_column, *files.values())
    except DataError as err:
        return f"data.label_column: {hide_dataset_paths(str(err), data_dir)}"
    if table:
        return _table_problem(config, files, data_dir, limits)
    for key in ("test", "val"):  # (each loads, but with the training data's features and labels?)
        if key in files:
            problem = _unlike_training_problem(files["train"], files[key], data.label_column, config.task)
            if problem is not None:
                return f"data.{key}: {hide_dataset_paths(problem, data_dir)}"
    _, features, outputs, _ = _loaded(files["train"], data.label_column, config.task)
    return _stopping_metric_problem(config, outputs) or job_problem(config, features, outputs, limits)


def _stopping_metric_problem(config, outputs: int) -> str | None:
    """Why early_stopping.metric (val_f1 is two classes', val_macro_f1 more's) or a decision
    threshold (two classes') does not apply to a classifier of ``outputs`` classes, if one does
    not: said at submit, since a member that fails at its fit would fail its whole stack."""
    from numbamlp.metrics import check_metric_applies, check_threshold_applies

    metric = config.early_stopping.metric
    if config.task != "classification":
        return None
    try:
        check_threshold_applies(config.threshold, outputs)
        if metric is not None:
            check_metric_applies(metric, config.task, outputs)
    except ValueError as err:
        return str(err) if metric is None or str(err).startswith("threshold") else f"early_stopping.{err}"
    return None


def load_problem(source: str, label_column, task: str = "classification") -> str | None:
    """Why ``source`` does not load as numbers with this label column and task (None: it does)."""
    return _loaded(source, label_column, task)[0]


def upload_problem(source: str, label_column) -> tuple[str | None, int, int]:
    """(why an uploaded file does not load with this label column, or None; its rows; its
    features).  A file of numbers is loaded as a job loads it (load_dataset); a CSV or
    Parquet table (text or missing cells: numbamlp.data.reads_as_table, or met further
    down) is read by its columns (numbamlp.data.read_table) with no roles named: its
    features are then every column but the label and the identifier-like ones, which a
    job's data.features, data.drop and data.categorical may change."""
    from numbamlp.data import ColumnRoles, DataError, load_dataset, read_table, reads_as_table
    from numbamlp.data.dataset import NotNumbers

    try:
        if not reads_as_table(source, label_column, None):
            try:
                data = load_dataset(source, label_column=label_column)
                return None, int(data.X.shape[0]), int(data.X.shape[1])
            except NotNumbers:
                pass
        table = read_table(source, label_column, ColumnRoles())
    except DataError as err:
        return str(err), 0, 0
    return None, len(table), len(table.columns)


# upload_problem of a kept upload (content-addressed: it never changes, so each is read once)
kept_upload_problem = functools.lru_cache(maxsize=64)(upload_problem)


def _reads_as_table(data, source: str, task: str) -> bool:
    """Whether a job's training data ``source`` is trained on as a table (as
    numbamlp.data.prepare decides: column roles named, text or missing cells).  When it
    does not load with data.label_column, whether it would with the default one (a label
    column the table lacks is then said as data.label_column's fault, as for numbers)."""
    from numbamlp.data import ColumnRoles, reads_as_table

    if ColumnRoles.of(data).given:
        return True
    for label_column in dict.fromkeys((data.label_column, None)):
        if reads_as_table(source, label_column, data.header):
            return True
        problem, _, _, not_numbers = _loaded(source, label_column, task)
        if not_numbers or problem is None:
            return not_numbers
    return False


def _table_problem(config, files: dict, data_dir: Path, limits: Limits) -> str | None:
    """data_problem for a table: its data prepared as the job will prepare it (the columns by
    their roles, the held-out files read by the training file's columns, the encoding
    learned), so that what would fail the job is refused now, naming the field; then the
    server's limits, with the encoded features' count."""
    data = config.data
    for key in ("train", "test", "val"):  # (a table's columns are read by name: builtin sets have none)
        if key in files and files[key].startswith("builtin:"):
            return (f"data.{key}: {getattr(data, key)} is not a table; the training data is read as one (text or "
                    "missing cells, or data.features, data.drop or data.categorical named), so every data source "
                    "must be a CSV or Parquet file with its columns")
    resolved = data.model_copy(update={"seed": 0 if data.seed is None else data.seed, **files})
    task_given = "task" in config.model_fields_set
    # (the split's seed is data.seed, set here: the run's seed plays no part, so jobs that
    # differ in it share one preparation)
    prepared = functools.partial(_prepared, seed=0, dtype=config.dtype, task=config.task, task_given=task_given)
    problem, features, outputs = prepared(resolved.model_dump_json())
    if problem is None:
        return _stopping_metric_problem(config, outputs) or job_problem(config, features, outputs, limits)
    # to blame: a setting the data prepares without (the label column: with the default one),
    # else the held-out file the message names, else the training data
    defaults = {"label_column": None, "features": None, "drop": [], "categorical": [], "missing": "impute"}
    key = next((key for key, default in defaults.items() if getattr(data, key) != default
                and prepared(resolved.model_copy(update={key: default}).model_dump_json())[0] is None), None)
    if key is None:
        key = next((k for k in ("test", "val") if k in files and files[k] in problem and files[k] != files["train"]),
                   "train")
    return f"data.{key}: {hide_dataset_paths(problem, data_dir)}"


@functools.lru_cache(maxsize=64)
def _unlike_training_problem(train: str, other: str, label_column, task: str) -> str | None:
    """Why the data ``other`` cannot score a model trained on ``train`` (data.check_like_training:
    other features, labels training never shows), as `numbamlp train` refuses it; None if
    it can.  Kept, as _loaded's."""
    from numbamlp.data import DataError, check_like_training, load_dataset

    try:
        training, held_out = (load_dataset(source, label_column=label_column, task=task) for source in (train, other))
        check_like_training(held_out.X, held_out.y, training.X, training.y, other, train, task == "regression")
    except DataError as err:
        return str(err)
    return None


@functools.lru_cache(maxsize=64)
def _loaded(source: str, label_column, task: str) -> tuple[str | None, int, int, bool]:
    """(why ``source`` does not load with this label column and task, or None; its features;
    the model's outputs: classes, or regression targets; whether it failed for a cell that is
    text or missing, numbamlp.data.dataset.NotNumbers: a table).  Kept: builtin sets and
    content-addressed uploads never change, so each loads once."""
    from numbamlp.data import DataError, load_dataset
    from numbamlp.data.dataset import NotNumbers

    try:
        data = load_dataset(source, label_column=label_column, task=task)
    except DataError as err:
        return str(err), 0, 0, isinstance(err, NotNumbers)
    return None, int(data.X.shape[1]), _outputs(data.y, task), False


@functools.lru_cache(maxsize=64)
def _prepared(data_json: str, seed: int, dtype: str, task: str, task_given: bool) -> tuple[str | None, int, int]:
    """(why a table's data settings (a DataConfig as JSON, its sources the files) do not
    prepare, or None; the encoded features; the model's outputs), as numbamlp.data.prepare
    gives them to the job.  Kept, as _loaded's."""
    from numbamlp.config import DataConfig
    from numbamlp.data import DataError, prepare

    try:
        splits = prepare(DataConfig.model_validate_json(data_json), seed, dtype=dtype, task=task,
                         task_given=task_given)
    except DataError as err:
        return str(err), 0, 0
    return None, int(splits.X_train.shape[1]), _outputs(splits.y_train, task)


def _outputs(y, task: str) -> int:
    """The outputs of a model trained on labels or targets y: classes, or regression targets."""
    import numpy as np

    return int((1 if y.ndim == 1 else y.shape[1]) if task == "regression" else len(np.unique(y)))
