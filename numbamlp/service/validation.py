"""What a submitted job must pass before it is stored (POST /v1/jobs, each member of POST
/v1/sweeps): its config validates, every data source is one the server may read (builtin:NAME
or an uploaded dataset:<id>) and loads with the config's label column and task, held-out
data is like the training data, and the job is within the server's limits.  Each problem
is one line naming the field, as the 422 says it."""

from __future__ import annotations

import functools
from pathlib import Path

from fastapi import HTTPException

from numbamlp.service.errors import cut
from numbamlp.service.limits import Limits, job_problem
from numbamlp.service.scheduler import DATASET_PREFIX, dataset_path, hide_dataset_paths
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
    for key in ("train", "test", "val"):
        source = getattr(data, key)
        if source is None:
            continue
        uploaded = source.startswith(DATASET_PREFIX) and store.dataset(source[len(DATASET_PREFIX):]) is not None
        if not (uploaded or source.startswith("builtin:")):
            return f"data.{key}: {source!r} is not builtin:NAME or an uploaded dataset:<id>"
        path = dataset_path(data_dir, source)
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
    for key in ("test", "val"):  # (each loads, but with the training data's features and labels?)
        if key in files:
            problem = _unlike_training_problem(files["train"], files[key], data.label_column, config.task)
            if problem is not None:
                return f"data.{key}: {hide_dataset_paths(problem, data_dir)}"
    _, features, outputs = _loaded(files["train"], data.label_column, config.task)
    return job_problem(config, features, outputs, limits)


def load_problem(source: str, label_column, task: str = "classification") -> str | None:
    """Why ``source`` does not load with this label column and task (None: it does)."""
    return _loaded(source, label_column, task)[0]


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
def _loaded(source: str, label_column, task: str) -> tuple[str | None, int, int]:
    """(why ``source`` does not load with this label column and task, or None; its features;
    the model's outputs: classes, or regression targets).  Kept: builtin sets and
    content-addressed uploads never change, so each loads once."""
    import numpy as np

    from numbamlp.data import DataError, load_dataset

    try:
        data = load_dataset(source, label_column=label_column, task=task)
    except DataError as err:
        return str(err), 0, 0
    outputs = (1 if data.y.ndim == 1 else data.y.shape[1]) if task == "regression" else len(np.unique(data.y))
    return None, int(data.X.shape[1]), int(outputs)
