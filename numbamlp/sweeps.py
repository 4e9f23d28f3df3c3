"""Sweeps: every member of a hyperparameter grid trained, as stacks, in-process or on Dask.

Symbols: K members, N rows, D features.

    from numbamlp import sweep
    result = sweep({"epochs": 30}, {"optimizer.lr": [0.01, 0.1], "seed": [0, 1, 2]})
    result.best, result.best_model, result.table

A grid maps dotted ``TrainConfig`` paths (``optimizer.lr``, ``model.hidden``, ``seed``, ...)
to lists of values; the members are their cartesian product, or, with ``random=N``, N
draws from the lists and from ranges (``uniform:A:B``, ``loguniform:A:B``, ``int:A:B``)
with the sweep's seed.  Every member sees the same data split — held out with the base
config's seed, which each member's config records as ``data.seed`` — and a validation set
(``data.val_fraction`` 0.1 unless the base sets one, or ``data.val``): the best member is
the one with the best validation metric, never chosen on the test rows.

Members that can share a step (``numbamlp.stack.STACK_KEY``) are trained together as a
``StackTrainer`` of at most ``stack_size``; each stack is one task.  Tasks run one after
another in this process (all cores; no Dask import), or on Dask: ``workers=N`` starts a
``LocalCluster`` of N processes, ``scheduler=ADDRESS`` or ``client=`` uses a running one.
A member's results are exactly those of ``numbamlp train`` with its config (the cpu
backend computes the same bits in a stack as alone, on any thread count), so a task that
Dask reruns after losing a worker gives the same results.

With ``out``, the sweep writes, as each stack finishes: ``sweep.json`` (what to train),
``results.jsonl`` and ``results.csv`` (a row per finished member), ``members/<k>/`` (the
run files of member k: config.json, metrics.jsonl, model.safetensors, summary.json) and at
the end ``summary.json`` (the best row and its config, counts by status).  ``resume=DIR``
trains only the members that ``DIR`` has no row for.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import gc
import io
import itertools
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from numbamlp.config import OPTIMIZER_DEFAULTS, TrainConfig, set_setting, with_absolute_data_paths

# What a row holds per task, the validation metrics that can choose the best member (the
# first is the default), and which way each is better.
TASK_COLUMNS = {
    "classification": ("val_accuracy", "val_loss", "test_accuracy", "test_loss"),
    "regression": ("val_r2", "val_mse", "val_loss", "test_r2", "test_mse", "test_mae", "test_loss"),
}
TASK_METRICS = {"classification": ("val_accuracy", "val_loss"), "regression": ("val_r2", "val_mse", "val_loss")}
HIGHER_IS_BETTER = {"val_accuracy": True, "val_r2": True, "val_loss": False, "val_mse": False}
METRICS = tuple(HIGHER_IS_BETTER)
RANGE_KINDS = ("uniform", "loguniform", "int")
DEFAULT_VAL_FRACTION = 0.1  # of the training rows, when the base config holds out none
DEFAULT_STACK_SIZE = 32
DEFAULT_MAX_MEMBERS = 10_000
SCHEDULER_TIMEOUT_S = 3  # to reach a Dask scheduler by address before the sweep says it cannot
NEW_DIRECTORY = "<new sweeps/ directory>"  # out=NEW_DIRECTORY: sweeps/<UTC timestamp>, as the CLI's default
RUN_COLUMNS = ("epochs", "best_epoch", "status", "error", "seconds", "model_path")
RESULT_COLUMNS = (*dict.fromkeys(c for columns in TASK_COLUMNS.values() for c in columns), *RUN_COLUMNS)
FINISHED = ("done", "stopped early")  # the statuses whose members can be the best


class SweepError(ValueError):
    """A sweep that cannot run as asked; the message is one line for the user."""


class SweepInterrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped the sweep: the members finished before it are kept."""

    def __init__(self, directory: Path | None, done: int, total: int):
        kept = f"; their results are in {directory}" if directory is not None else ""
        super().__init__(f"sweep interrupted with {done} of {total} members done{kept}")
        self.directory = directory


# ---------------------------------------------------------------- the grid
@dataclass(frozen=True)
class Range:
    """A range to draw from (``random`` sweeps only): uniform, log-uniform, or integers A..B."""

    kind: str
    low: float
    high: float

    def draw(self, rng: np.random.Generator):
        if self.kind == "int":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def __str__(self) -> str:
        return f"{self.kind}:{self.low:g}:{self.high:g}"


def setting_paths() -> list[str]:
    """Every dotted path of a single setting in TrainConfig (``optimizer.lr``, ``seed``, ...)."""
    from pydantic import BaseModel

    def walk(model, prefix):
        for name, field in model.model_fields.items():
            key = field.alias or name
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from walk(field.annotation, f"{prefix}{key}.")
            else:
                yield prefix + key

    return list(walk(TrainConfig, ""))


def resolve_key(key: str) -> str:
    """The setting a grid key names: a dotted path, or a leaf name that only one setting has
    (``lr`` → ``optimizer.lr``); SweepError otherwise, with the closest names."""
    paths = setting_paths()
    if key in paths:
        return key
    by_leaf = [p for p in paths if p.rsplit(".", 1)[-1] == key]
    if len(by_leaf) == 1:
        return by_leaf[0]
    if len(by_leaf) > 1:
        raise SweepError(f"grid key {key!r} is ambiguous: write {' or '.join(by_leaf)}")
    close = difflib.get_close_matches(key, paths, n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else " (see numbamlp train --help)"
    raise SweepError(f"grid key {key!r} is not a setting{hint}")


def _split_top_level(text: str) -> list[str]:
    """'a,[1,2],b' → ['a', '[1,2]', 'b']: commas inside brackets belong to the value."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise SweepError(f"unbalanced ']' in {text!r}")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth != 0:
        raise SweepError(f"unbalanced '[' in {text!r}")
    return [*parts, current]


def parse_value(text: str):
    """One value as written on the command line: a range (``loguniform:1e-4:1e-1``), a
    number, true/false/null, a bracketed list (``[128,64]``), or else the text itself."""
    text = text.strip()
    kind, _, bounds = text.partition(":")
    if kind in RANGE_KINDS and bounds:
        return parse_range(kind, bounds, text)
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return float(text)  # .5, 1e-3 and the like that JSON does not take
    except ValueError:
        pass
    if text.startswith("["):
        return [parse_value(item) for item in _split_top_level(text[1:-1]) if item.strip()]
    return text


def parse_range(kind: str, bounds: str, text: str) -> Range:
    low, _, high = bounds.partition(":")
    try:
        low_value, high_value = float(low), float(high)
    except ValueError:
        raise SweepError(f"range {text!r} must be {kind}:LOW:HIGH with two numbers") from None
    if not (math.isfinite(low_value) and math.isfinite(high_value)):
        raise SweepError(f"range {text!r} must have finite bounds")
    if kind == "int" and max(abs(low_value), abs(high_value)) >= 2**62:  # (numpy draws int64 below that)
        raise SweepError(f"range {text!r}: int bounds must lie within ±2**62")
    if not low_value <= high_value:
        raise SweepError(f"range {text!r} has LOW above HIGH")
    if kind == "loguniform" and low_value <= 0:
        raise SweepError(f"range {text!r}: loguniform needs LOW > 0")
    if kind == "int" and (low_value != int(low_value) or high_value != int(high_value)):
        raise SweepError(f"range {text!r}: int needs whole numbers")
    return Range(kind, low_value, high_value)


def parse_grid_option(text: str) -> tuple[str, list]:
    """``KEY=V1,V2,...`` (one ``--grid``) → (the setting's dotted path, its values)."""
    key, equals, values = text.partition("=")
    if not equals or not key.strip():
        raise SweepError(f"--grid {text!r} must be KEY=V1,V2,... (e.g. optimizer.lr=0.01,0.1)")
    items = _split_top_level(values)
    if not any(item.strip() for item in items):
        raise SweepError(f"--grid {text!r} gives no values for {key.strip()}")
    if not all(item.strip() for item in items):  # (0.1, or 0.1,,0.3: a value left out by mistake)
        raise SweepError(f"--grid {text!r} has an empty value; write KEY=V1,V2,... without empty items")
    return resolve_key(key.strip()), [parse_value(item) for item in items]


def grid_from_table(table: dict) -> dict[str, list]:
    """A config file's ``[grid]`` table (nested tables for dotted keys) → {path: values}; a
    value is a list of values or one range string."""
    grid: dict[str, list] = {}
    if not isinstance(table, dict):
        raise SweepError(f"grid must be a table of KEY = [values] (e.g. [grid] with lr = [0.01, 0.1]), "
                         f"got {type(table).__name__}")

    def walk(prefix, tree):
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
                continue
            path = resolve_key(prefix + key)
            if path in grid:  # (e.g. lr = [...] beside [grid.optimizer] lr = [...])
                raise SweepError(f"grid sets {path} twice")
            if isinstance(value, str):
                value = [parse_value(value)]
            if not isinstance(value, list) or not value:
                raise SweepError(f"grid.{prefix}{key} must be a non-empty list of values (or a range string)")
            grid[path] = [parse_value(v) if isinstance(v, str) else v for v in value]

    walk("", table)
    return grid


def normalise_grid(grid: dict) -> dict[str, list]:
    """A grid from Python: keys resolved, a single value or Range made a list of one."""
    if not isinstance(grid, dict):
        raise SweepError(f"grid must be a mapping of settings to their values, e.g. {{'optimizer.lr': [0.01, 0.1]}}; "
                         f"got {type(grid).__name__}")
    if not grid:
        raise SweepError("the grid is empty: give at least one setting and its values")
    out: dict[str, list] = {}
    for key, values in grid.items():
        path = resolve_key(key)
        if path in out:
            raise SweepError(f"grid sets {path} twice")
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise SweepError(f"grid gives no values for {path}")
        out[path] = [_range_in_text(value) for value in values]
    return out


def _range_in_text(value):
    """A range written as text in a Python grid (``"loguniform:1e-4:1e-1"``) as its Range;
    any other value as it is (a string such as ``"relu"`` stays a string)."""
    if isinstance(value, str):
        kind, _, bounds = value.strip().partition(":")
        if kind in RANGE_KINDS and bounds:
            return parse_range(kind, bounds, value.strip())
    return value


def _absolute_data_settings(member: dict) -> dict:
    """A member's grid values with the data files it names (data.train, .val, .test) by
    absolute path."""
    data = {key[len("data."):]: value for key, value in member.items() if key.startswith("data.")}
    absolute = with_absolute_data_paths({"data": data})["data"]
    return {**member, **{f"data.{key}": value for key, value in absolute.items()}}


def member_settings(grid: dict[str, list], random: int | None, seed: int) -> list[dict]:
    """Each member's grid values {path: value}: the cartesian product, or ``random`` draws
    with ``seed``: of different combinations when every value is listed (_distinct_draws),
    else each key's own (a list is drawn from uniformly, a Range by its kind)."""
    if random is None:
        for path, values in grid.items():
            ranges = [str(v) for v in values if isinstance(v, Range)]
            if ranges:
                raise SweepError(f"grid {path}={ranges[0]} is a range: ranges need a random sweep "
                                 "(--random N; random=N in Python)")
        return [dict(zip(grid, combination)) for combination in itertools.product(*grid.values())]
    if random < 1:
        raise SweepError(f"--random must be at least 1, got {random}")
    rng = np.random.default_rng(seed)
    if not any(isinstance(v, Range) for values in grid.values() for v in values):
        return _distinct_draws(grid, random, rng)
    members = []
    for _ in range(random):
        member = {}
        for path, values in grid.items():
            pick = values[int(rng.integers(len(values)))] if len(values) > 1 else values[0]
            member[path] = pick.draw(rng) if isinstance(pick, Range) else pick
        members.append(member)
    return members


def _distinct_draws(grid: dict[str, list], random: int, rng) -> list[dict]:
    """``random`` different combinations of a grid of lists, drawn uniformly without
    replacement (as scikit-learn's ParameterSampler): all of them, in the grid's order, when
    there are no more than ``random``."""
    sizes = [len(values) for values in grid.values()]
    total = math.prod(sizes)
    if total <= 2 * random:  # all of them, or most: a shuffle of every combination's index tuple
        every = list(itertools.product(*map(range, sizes)))
        picked = every if total <= random else sorted(every[i] for i in rng.permutation(total)[:random])
    else:  # few of many (any number of them): draw each key's index until enough combinations differ
        chosen: set[tuple] = set()
        while len(chosen) < random:
            chosen.add(tuple(int(rng.integers(size)) for size in sizes))
        picked = sorted(chosen)  # (in the grid's order, as product lists them)
    return [{path: values[i] for (path, values), i in zip(grid.items(), indices)} for indices in picked]


# ---------------------------------------------------------------- members' configs
def base_document(base) -> dict:
    """The base config as a document that members override.  From a TrainConfig, the
    optimizer settings that are only its optimizer's defaults are left out, so that a grid
    over ``optimizer.name`` gets each optimizer's own defaults."""
    if base is None:
        return {}
    if isinstance(base, dict):
        return json.loads(json.dumps(base))  # a deep copy the sweep may edit
    document = base.model_dump(mode="json", by_alias=True)
    defaults = OPTIMIZER_DEFAULTS[base.optimizer.name]
    document["optimizer"] = {k: v for k, v in document["optimizer"].items()
                             if v is not None and defaults.get(k) != v}
    return document


def member_configs(document: dict, settings: list[dict]) -> list[TrainConfig]:
    """Each member's TrainConfig: the base document with the member's values,
    the data split fixed to the base's seed, and a validation set (``data.val_fraction``
    0.1 unless the base has one).  SweepError naming the member's values when the schema
    refuses them."""
    from pydantic import ValidationError

    base = validate_base(document)
    data = document.setdefault("data", {})
    data["seed"] = base.data.seed if base.data.seed is not None else base.seed
    if base.data.val is None and base.data.val_fraction == 0:
        data["val_fraction"] = DEFAULT_VAL_FRACTION
    configs = []
    for member in settings:
        tree = json.loads(json.dumps(document))
        for path, value in member.items():
            set_setting(tree, path, value)
        try:
            configs.append(TrainConfig.model_validate(tree))
        except ValidationError as err:
            shown = ", ".join(f"{p}={v!r}" for p, v in member.items())
            raise SweepError(f"the member {shown} is not a valid configuration: {_first_problem(err)}") from None
    return configs


def _metric_for(task: str, metric: str | None) -> str:
    """The metric that picks the best member: the task's default, or one it has."""
    if metric is None:
        return TASK_METRICS[task][0]
    if metric not in TASK_METRICS[task]:
        raise SweepError(f"metric {metric} does not apply to {task}: use one of {', '.join(TASK_METRICS[task])}")
    return metric


def validate_base(document: dict) -> TrainConfig:
    from pydantic import ValidationError

    try:
        return TrainConfig.model_validate(document)
    except ValidationError as err:
        raise SweepError(f"invalid base configuration: {_first_problem(err)}") from None


def _first_problem(err) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg'].removeprefix('Value error, ')}" if where else first["msg"]


def stack_groups(configs: list[TrainConfig], stack_size: int, parallel: int = 1) -> list[list[int]]:
    """The tasks: lists of member indices that share a step (numbamlp.stack.STACK_KEY), at
    most ``stack_size`` each, and cut into at least ``parallel`` tasks where a group has the
    members for it, so that every worker has one."""
    groups: dict[str, list[int]] = {}
    for index, config in enumerate(configs):
        groups.setdefault(json.dumps(_stack_key(config), sort_keys=True, default=str), []).append(index)
    tasks = []
    for members in groups.values():
        count = max(math.ceil(len(members) / stack_size), min(parallel, len(members)))
        size = math.ceil(len(members) / count)
        tasks.extend(members[lo : lo + size] for lo in range(0, len(members), size))
    return tasks


def _stack_key(config: TrainConfig) -> dict:
    from numbamlp.stack import STACK_KEY, _leaves

    return {leaf: value for path in STACK_KEY for leaf, value in _leaves(config, path).items()}


# ---------------------------------------------------------------- one task: a stack
@dataclass
class SweepData:
    """The arrays every member trains and is scored on (sent to Dask workers once)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @classmethod
    def of(cls, splits) -> "SweepData":
        """The arrays of data.Splits (its standardizer stays behind: the workers need none)."""
        return cls(splits.X_train, splits.y_train, splits.X_val, splits.y_val, splits.X_test, splits.y_test)


def train_stack(configs: list[dict], data: SweepData, threads: int | None = None, callbacks=(),
                on_start=None, stack=None) -> list[dict]:
    """Train one stack (configs as dicts) and return each member's outcome: its metrics,
    status, history, model (MLP) and seconds.  A stack that fails as a whole gives every
    member the status "failed" and the error.  ``threads``: Numba's threads for this task
    (on a Dask worker, its share of the machine's cores).  ``callbacks``: StackTrainer
    callbacks; ``on_start(stack)`` is called before training (to cancel members or stop it
    from another thread); ``stack``: a StackTrainer restored from a checkpoint, to go on
    with.  A stack stopped by ``request_stop`` raises StackStopped."""
    from numbamlp.stack import StackTrainer
    from numbamlp.trainer import TrainingInterrupted

    if threads is not None:
        from numbamlp.trainer import set_threads

        set_threads(threads, "cpu")
    start = time.perf_counter()
    try:
        warm_start = stack is not None
        stack = stack if warm_start else StackTrainer(configs)
        if on_start is not None:
            on_start(stack)
        with _stop_on_signals(stack):
            stack.fit(data.X_train, data.y_train, data.X_val, data.y_val, callbacks=callbacks, warm_start=warm_start)
    except TrainingInterrupted:
        raise StackStopped(stack) from None
    except Exception as err:  # noqa: BLE001 — a failed stack is a row per member, not a failed sweep
        message = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        return [{"status": "failed", "error": message, "seconds": time.perf_counter() - start}
                for _ in configs]
    outcomes = []
    for trainer, result in zip(stack.trainers, stack.results):
        saved_epoch = trainer.best_epoch if trainer.best_epoch is not None else trainer.epoch
        saved = trainer.epoch_metrics(saved_epoch)
        columns = TASK_COLUMNS[trainer.config.task]
        outcome = {"status": result["status"], "error": result["error"], "epochs": trainer.epoch,
                   "best_epoch": trainer.best_epoch,
                   **{c: saved.get(c) for c in columns if c.startswith("val_")},
                   **{c: None for c in columns if c.startswith("test_")},
                   "seconds": sum(m.get("seconds", 0.0) for m in trainer.history),
                   # a diverged member has no model, as a diverged `numbamlp train` writes none: its
                   # weights (finite, but blown up) would predict NaN
                   "history": trainer.history, "model": None if result["status"] == "diverged" else trainer.model}
        if result["status"] in FINISHED:
            test = trainer.evaluate(data.X_test, data.y_test)
            outcome.update({c: test[c.removeprefix("test_")] for c in columns if c.startswith("test_")})
        outcomes.append(outcome)
    return outcomes


class StackStopped(Exception):
    """``request_stop`` (a signal, a server's shutdown) stopped a stack after a complete step;
    ``stack`` can be checkpointed and continued."""

    def __init__(self, stack):
        super().__init__("the stack was stopped")
        self.stack = stack


def write_run_files(folder: Path, config: TrainConfig, outcome: dict, splits) -> str | None:
    """A member's run directory (config.json, metrics.jsonl, model.safetensors with what the
    model needs from its data.Splits: standardisation, feature names; summary.json), every
    file atomically; returns the model's path (None without a model)."""
    from numbamlp.io import atomic_write_bytes, atomic_write_json, json_text, save_model

    folder.mkdir(parents=True, exist_ok=True)
    config_dump = with_absolute_data_paths(config.model_dump(mode="json", by_alias=True))
    atomic_write_json(folder / "config.json", config_dump)
    lines = "".join(json_text(m) + "\n" for m in outcome.get("history", []))
    atomic_write_bytes(folder / "metrics.jsonl", lines.encode())
    model_path = None
    if outcome.get("model") is not None:
        model = outcome["model"]
        splits.attach_to(model)
        model_path = folder / "model.safetensors"
        save_model(model, model_path, config=config_dump)
    from numbamlp.data import data_files

    summary = {k: outcome[k] for k in RESULT_COLUMNS if k in outcome and k != "model_path"}
    summary.update(model_path=None if model_path is None else str(model_path), run_dir=str(folder),
                   data_files=data_files(config.data))  # (eval of the member checks them, as a run's)
    atomic_write_json(folder / "summary.json", summary)
    return None if model_path is None else str(model_path)


@contextlib.contextmanager
def _stop_on_signals(stack):
    """In the main thread of the sweep's own process: SIGINT and SIGTERM stop the stack after
    its current step.  Elsewhere (a Dask worker's thread) signals are not ours to handle."""
    import threading

    if threading.current_thread() is not threading.main_thread() or not _SIGNALS_ARE_OURS[0]:
        yield
        return
    from numbamlp.run import stop_on_signals

    with stop_on_signals(stack):
        yield


_SIGNALS_ARE_OURS = [False]  # set while an in-process sweep runs


@contextlib.contextmanager
def _interrupt_on_signals():
    """While a sweep's process waits for Dask's tasks (in its main thread): SIGINT and
    SIGTERM interrupt the wait (KeyboardInterrupt, which the sweep reports as interrupted,
    its finished members kept), as in-process training stops on them.  Set here, not
    inherited: a process started in the background by a shell ignores SIGINT."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from numbamlp.run import on_signals

    def interrupt(signal_number):
        raise KeyboardInterrupt

    with on_signals(interrupt):
        yield


def worker_threads() -> int:
    """Numba threads for a task on this Dask worker: the cores over the worker's task slots
    (the nanny pins OpenMP's and MKL's threads, not Numba's)."""
    from distributed import get_worker

    from numbamlp.kernels import usable_cores

    return max(1, usable_cores() // max(1, get_worker().state.nthreads))


def train_stack_on_worker(configs: list[dict], data: SweepData) -> list[dict]:
    return train_stack(configs, data, threads=worker_threads())


# ---------------------------------------------------------------- running the tasks
class InProcessRunner:
    """Tasks one after another in this process."""

    def run(self, tasks: list[list[dict]], data: list[SweepData]):
        """Yields (index, outcomes) of each task (its configs, trained on data[index])."""
        _SIGNALS_ARE_OURS[0] = True
        try:
            for index, configs in enumerate(tasks):
                yield index, train_stack(configs, data[index])
        finally:
            _SIGNALS_ARE_OURS[0] = False

    def close(self) -> None:
        pass


def _freeze_at_exit_plugin():
    """A Dask worker plugin (made here: distributed is imported only for a sweep on Dask)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class FreezeAtExit(WorkerPlugin):
        """On the workers of the sweep's own LocalCluster: when a worker closes, its objects
        are frozen (gc.freeze) so that the exiting process does not walk them all in a last
        garbage collection, ~0.25 s after Numba's kernels (closing the 2-worker cluster took
        0.30 s, 0.04 s with this; the CLI does the same for its own process)."""

        def teardown(self, worker) -> None:
            gc.freeze()

    return FreezeAtExit()


class DaskRunner:
    """Tasks on a Dask cluster: the data scattered to every worker once, one task per stack,
    results taken as they complete.  Dask reruns a task whose worker was lost."""

    def __init__(self, workers: int | None, scheduler: str | None, client):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise SweepError("running a sweep on Dask needs the dask extra: pip install 'numbamlp[dask]'") from None
        self.cluster = None
        self.own_client = client is None
        if client is not None:
            self.client = client
        elif scheduler is not None:
            try:
                self.client = Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s")
            except (OSError, TimeoutError, ValueError) as err:
                raise SweepError(f"cannot reach the Dask scheduler at {scheduler}: {str(err).splitlines()[0]}") from None
        else:
            from numbamlp.kernels import usable_cores

            cores = usable_cores()
            # one task at a time per worker process, with its share of the cores for Numba
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        # (the scheduler's HTTP server on a free port: the default 8787
                                        # warns on the terminal when another cluster holds it)
                                        dashboard_address=":0",
                                        # (a Ctrl-C cancels the running tasks: each worker would log a
                                        # multi-line warning for it under the one-line report)
                                        silence_logs=logging.ERROR,
                                        env={"NUMBA_NUM_THREADS": str(max(1, cores // workers))})
            self.client = Client(self.cluster)
            self.client.register_plugin(_freeze_at_exit_plugin(), name="numbamlp-freeze-at-exit")

    @property
    def parallel(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def run(self, tasks: list[list[dict]], data: list[SweepData]):
        """As InProcessRunner.run: each data set goes to every worker once."""
        from distributed import as_completed

        # a key of its own (hash=False): a key named by the data's hash would be shared with an
        # earlier sweep's scatter of the same data, which the scheduler may be releasing now
        distinct = {id(one): one for one in data}  # (data has an entry per task; most share one data set)
        shared = {key: self.client.scatter(one, broadcast=True, hash=False) for key, one in distinct.items()}
        futures = {self.client.submit(train_stack_on_worker, configs, shared[id(data[index])], pure=False): index
                   for index, configs in enumerate(tasks)}
        try:
            with _interrupt_on_signals():
                for future in as_completed(futures):
                    yield futures[future], future.result()
        finally:
            self.client.cancel(list(futures))

    def close(self) -> None:
        if self.own_client:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


# ---------------------------------------------------------------- results on disk
class SweepResult:
    """What a sweep produced: ``table`` (one row per member, in member order), ``best``
    (the best finished member's row by the metric, None when none finished), ``models``
    (each member's MLP, None where it failed), ``best_model`` and ``summary``."""

    def __init__(self, table: list[dict], models: list, metric: str, summary: dict):
        self.table, self._models, self.metric, self.summary = table, models, metric, summary
        self.best = best_row(table, metric)

    @property
    def models(self) -> list:
        """Each member's MLP, None where it has none (failed, diverged)."""
        return [self._model(member) for member in range(len(self.table))]

    @property
    def best_model(self):
        return None if self.best is None else self._model(self.best["member"])

    def _model(self, member: int):
        """Member ``member``'s MLP: as trained, or, for one an earlier run of a resumed sweep
        trained, read from its model file (once)."""
        path = self.table[member].get("model_path")
        if self._models[member] is None and path:
            from numbamlp.io import load_model

            self._models[member] = load_model(path)
        return self._models[member]

    def to_csv(self, path) -> None:
        from numbamlp.io import atomic_write_bytes

        atomic_write_bytes(Path(path), table_csv(self.table).encode())


def ranked(table: list[dict], metric: str) -> list[dict]:
    """The rows best first: finished members by ``metric`` (higher accuracy or R², lower
    loss or MSE), ties to the lower validation loss, then the lower member number; the
    others last."""
    sign = -1.0 if HIGHER_IS_BETTER[metric] else 1.0

    def order(row):
        loss = row.get("val_loss")
        loss = math.inf if loss is None else loss
        if row["status"] not in FINISHED or row.get(metric) is None:
            return (1, 0.0, loss, row["member"])
        return (0, sign * row[metric], loss, row["member"])

    return sorted(table, key=order)


def best_row(table: list[dict], metric: str) -> dict | None:
    """The best finished row (see ``ranked``); None when no member finished."""
    first = next(iter(ranked(table, metric)), None)
    return first if first is not None and first["status"] in FINISHED and first.get(metric) is not None else None


def grid_column(key: str) -> str:
    """The results column of grid key ``key``: the key itself, or ``grid.<key>`` for a key
    that is also a result's name (``epochs``: the grid's value beside the epochs trained)."""
    return f"grid.{key}" if key in RESULT_COLUMNS else key


def grid_keys(row: dict) -> list[str]:
    """The grid's settings among a row's columns (grid_column's names)."""
    return [key for key in row if key != "member" and key not in RESULT_COLUMNS]


def table_csv(table: list[dict]) -> str:
    """The rows as CSV: a list as JSON text, and an empty cell for None and for a number
    that is not finite (a diverged member's loss), as results.jsonl has null."""
    if not table:
        return ""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: json.dumps(v) if isinstance(v, list)
                         else None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()})
    return text.getvalue()


class _Writer:
    """The sweep's directory, written as each stack finishes (every file atomically)."""

    def __init__(self, directory: Path | None):
        self.directory = directory

    def member_directory(self, member: int) -> Path:
        return self.directory / "members" / str(member)

    def member(self, member: int, config: TrainConfig, outcome: dict, splits) -> str | None:
        """Member ``member``'s run files; returns its model path (None without a model)."""
        if self.directory is None:
            return None
        return write_run_files(self.member_directory(member), config, outcome, splits)

    def rows(self, table: list[dict]) -> None:
        if self.directory is None:
            return
        from numbamlp.io import atomic_write_bytes, json_text

        lines = "".join(json_text(row) + "\n" for row in table)
        atomic_write_bytes(self.directory / "results.jsonl", lines.encode())
        atomic_write_bytes(self.directory / "results.csv", table_csv(table).encode())


def read_finished_rows(directory: Path) -> list[dict]:
    """The rows a sweep directory's results.jsonl holds (an interrupted sweep's)."""
    path = directory / "results.jsonl"
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise SweepError(f"{path} line {number} is not JSON; the sweep directory is damaged") from None
    return rows


def sweep_directory_note(directory) -> str | None:
    """For a sweep directory given where a run's is due (eval, predict, export, plot,
    load_model): what to give instead, its best member's run directory when its
    summary.json names one; None for any other path."""
    directory = Path(directory)
    if not (directory / "sweep.json").is_file():
        return None
    try:
        best = json.loads((directory / "summary.json").read_text())["best"]["row"]["member"]
        example = f", e.g. its best, {directory / 'members' / str(best)}"
    except (OSError, ValueError, KeyError, TypeError):
        example = f" ({directory / 'members'}/<member>)"
    return f"{directory} is a sweep directory: give one of its members' run directories{example}"


def read_sweep_plan(directory) -> dict:
    """The sweep.json of an existing sweep directory (what ``resume`` trains)."""
    path = Path(directory) / "sweep.json"
    if not path.is_file():
        raise SweepError(f"{directory} is not a sweep directory (no sweep.json)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SweepError(f"{path} is not valid JSON: {err}") from None


# ---------------------------------------------------------------- the sweep
def sweep(base=None, grid=None, *, data=None, random: int | None = None, workers: int | None = None,
          scheduler: str | None = None, client=None, stack_size: int = DEFAULT_STACK_SIZE,
          metric: str | None = None, out=None, resume=None, max_members: int = DEFAULT_MAX_MEMBERS,
          progress=None) -> SweepResult:
    """Train every member of ``grid`` over ``base`` (a TrainConfig, a dict, or None for the
    defaults) and return a SweepResult; see the module docstring.

    data: None (the base config's data settings), or (X, y) arrays, split and standardised
    as the base config says (to resume such a sweep, give the same arrays again).  progress(done, total, best_row) is called as stacks finish.
    Everything is checked before anything trains or is written: SweepError otherwise.
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
        settings = [_absolute_data_settings(member) for member in member_settings(grid, random, base_config.seed)]
        metric = _metric_for(base_config.task, metric)
        if len(settings) > max_members:
            raise SweepError(f"the grid has {len(settings)} members, more than the limit of {max_members} "
                             f"(raise --max-members, or use --random N)")
    configs = member_configs(json.loads(json.dumps(document)), settings)
    from numbamlp.data import changed_data_file

    stamps = _data_files(configs)
    recorded = None if resume is None else plan.get("data_files")
    changed = None if recorded is None else changed_data_file(recorded, stamps)
    if changed is not None:
        raise SweepError(f"the data of {directory} changed since the sweep started ({changed}: size or modification "
                         "time); resuming would train its other members on other rows")
    arrays = None if data is None else _checked_arrays(data, configs[0].task)
    arrays_stamp = None if arrays is None else _arrays_stamp(*arrays)
    if resume is not None and plan.get("data_arrays") != arrays_stamp:
        raise SweepError(_other_arrays(directory, plan.get("data_arrays"), arrays_stamp))
    splits = {key: _prepare_data(config, arrays) for key, config in _data_sets(configs).items()}
    if out is not None and out is not NEW_DIRECTORY:
        from numbamlp.paths import check_output_directory
        from numbamlp.run import RUN_FILES

        check_output_directory(out, "the sweep directory")
        if (Path(out) / "sweep.json").exists():
            raise SweepError(f"{out} already holds a sweep; choose another --out, or --resume it")
        in_the_way = [name for name in dict.fromkeys((*SWEEP_FILES, *RUN_FILES)) if (Path(out) / name).exists()]
        if in_the_way:  # (a run's, or a user's own files: a sweep would write over them)
            raise SweepError(f"{out} already holds {', '.join(in_the_way)}; choose another --out for the sweep")
    on_dask = workers is not None or scheduler is not None or client is not None
    runner = DaskRunner(workers, scheduler, client) if on_dask else InProcessRunner()
    try:
        if out is not None and resume is None:
            directory = _claim(out, {"base": document, "keys": keys, "members": settings, "metric": metric,
                                     "stack_size": stack_size, "data_files": stamps, "data_arrays": arrays_stamp})
        return _run(runner, directory, configs, settings, keys, splits, stack_size, metric, progress,
                    resumed=resume is not None)
    finally:
        runner.close()


# What a sweep writes in its directory (besides sweep.json, its claim).
SWEEP_FILES = ("results.jsonl", "results.csv", "summary.json", "members")


def _data_files(configs: list[TrainConfig]) -> dict[str, list[int]]:
    """Every member's data files with their size and modification time (data.data_files),
    which a resumed sweep checks."""
    from numbamlp.data import data_files

    stamps: dict[str, list[int]] = {}
    for config in configs:
        stamps.update(data_files(config.data))
    return stamps


def _claim(out, plan: dict) -> Path:
    """Create the sweep's directory (NEW_DIRECTORY: sweeps/<UTC timestamp>) and its sweep.json,
    which claims it: of two sweeps started on one directory, the second is refused."""
    from numbamlp.io import atomic_write_json
    from numbamlp.paths import RunDirectoryTaken, claim_run_directory

    try:
        directory = claim_run_directory(None if out is NEW_DIRECTORY else out, "sweep.json", parent="sweeps")
    except RunDirectoryTaken:
        raise SweepError(f"{out} already holds a sweep; choose another --out, or --resume it") from None
    atomic_write_json(directory / "sweep.json", plan)
    return directory


def _data_key(config: TrainConfig) -> str:
    """What a member's splits depend on: its data settings (the split's seed fixed by the
    sweep), dtype and task.  Members with the same key train on the same splits."""
    return json.dumps([config.data.model_dump(mode="json"), config.dtype, config.task], sort_keys=True)


def _data_sets(configs: list[TrainConfig]) -> dict[str, TrainConfig]:
    """{data key: its first member's config}: the splits a sweep prepares (a grid over a
    data.* setting has several)."""
    first: dict[str, TrainConfig] = {}
    for config in configs:
        first.setdefault(_data_key(config), config)
    return first


def _checked_arrays(data, task: str) -> tuple[np.ndarray, np.ndarray]:
    """``sweep(data=(X, y))``'s arrays, checked."""
    from numbamlp.data import check_arrays

    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise SweepError(f"data must be a pair (X, y) of arrays, or None for the base config's data settings; "
                         f"got {type(data).__name__}")
    return check_arrays(np.asarray(data[0]), np.asarray(data[1]), "data", dtype=None, task=task)


def _arrays_stamp(X: np.ndarray, y: np.ndarray) -> dict:
    """Shapes, dtypes and a SHA-256 of ``sweep(data=(X, y))``'s arrays, which sweep.json keeps
    so that a resume can tell the same arrays from others."""
    import hashlib

    digest = hashlib.sha256()
    for array in (X, y):
        if array.dtype.kind == "O":  # (labels as Python objects: their text)
            digest.update("\0".join(map(str, array.tolist())).encode())
        else:
            digest.update(np.ascontiguousarray(array).data)
    return {"X": [list(X.shape), str(X.dtype)], "y": [list(y.shape), str(y.dtype)], "sha256": digest.hexdigest()}


def _other_arrays(directory: Path, recorded: dict | None, given: dict | None) -> str:
    """Why a resume is refused when its data is not the sweep's: arrays missing, extra or changed."""
    if given is None:
        return (f"{directory} was trained on arrays given as sweep(data=(X, y)): resume it from Python with the "
                f"same arrays, sweep(resume=..., data=(X, y))")
    if recorded is None:
        return f"{directory} trains on its configuration's data files: resume it without data"
    return (f"the arrays given differ from those {directory} was trained on (X {recorded['X'][0]} {recorded['X'][1]}, "
            f"y {recorded['y'][0]} {recorded['y'][1]}, or their values); resuming would train its other members "
            "on other rows")


def _prepare_data(member: TrainConfig, arrays):
    """The splits members like ``member`` train on: of its data settings' files, or of
    ``arrays`` (X, y) split as its data settings say."""
    from numbamlp.data import prepare_for, split_arrays

    if arrays is None:
        return prepare_for(member)
    X, y = arrays
    return split_arrays(X, y, member.data, member.data.seed, source="data",
                        dtype=member.dtype, task=member.task)


def _run(runner, directory, configs, settings, keys, splits: dict, stack_size, metric, progress,
         resumed) -> SweepResult:
    """Train the members not finished yet, stack by stack; ``splits``: each data key's."""
    from numbamlp.io import one_sync

    writer = _Writer(directory)
    table: list[dict | None] = [None] * len(configs)
    models: list = [None] * len(configs)
    if resumed:
        for row in read_finished_rows(directory):
            if row.get("model_path") is not None:  # (where the sweep's directory is now: it may have moved)
                row["model_path"] = str(writer.member_directory(row["member"]) / "model.safetensors")
            table[row["member"]] = row
    todo = [k for k in range(len(configs)) if table[k] is None]
    tasks = [[todo[i] for i in group]
             for group in stack_groups([configs[k] for k in todo], stack_size, getattr(runner, "parallel", 1))]
    data = {key: SweepData.of(one) for key, one in splits.items()}
    task_keys = [_data_key(configs[task[0]]) for task in tasks]  # (a stack shares its data settings)
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
    summary = _summary(table, metric, directory, configs)
    if directory is not None:
        from numbamlp.io import atomic_write_json

        atomic_write_json(directory / "summary.json", summary)
    return SweepResult(table, models, metric, summary)


def _summary(table: list[dict], metric: str, directory: Path | None, configs: list[TrainConfig]) -> dict[str, Any]:
    best = best_row(table, metric)
    counts: dict[str, int] = {}
    for row in table:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return {
        "members": len(table),
        "metric": metric,
        "best": None if best is None else {
            "row": best, "config": configs[best["member"]].model_dump(mode="json", by_alias=True)},
        "statuses": counts,
        "results_path": None if directory is None else str(directory / "results.csv"),
        "sweep_dir": None if directory is None else str(directory),
    }
