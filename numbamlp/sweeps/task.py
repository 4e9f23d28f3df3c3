"""One task of a sweep: a stack of members trained together, each member's outcome, and
its run directory written from that outcome (numbamlp.layout's run writer).

A task runs in the sweep's own process or on a Dask worker (``train_stack_on_worker``); the
service trains its stacks of jobs through ``train_stack`` too.  A member's results are
exactly those of ``numbamlp train`` with its config (the cpu backend computes the same bits
in a stack as alone, on any thread count), so a task that Dask reruns after losing a worker
gives the same results.

Symbols: N rows, D features.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from numbamlp.config import TrainConfig
from numbamlp.layout import RunFiles, run_summary
from numbamlp.sweeps.results import FINISHED, TASK_COLUMNS


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
                on_start=None) -> list[dict]:
    """Train one stack (configs as dicts) and return each member's outcome: its metrics,
    status, history, model (MLP) and seconds.  A stack that fails as a whole gives every
    member the status "failed" and the error.  ``threads``: Numba's threads for this task
    (on a Dask worker, its share of the machine's cores).  ``callbacks``: StackTrainer
    callbacks; ``on_start(stack)`` is called before training (to cancel members or stop it
    from another thread).  A stack stopped by ``request_stop`` raises StackStopped."""
    from numbamlp.stack import StackTrainer
    from numbamlp.trainer import TrainingInterrupted

    if threads is not None:
        from numbamlp.trainer import set_threads

        set_threads(threads, "cpu")
    start = time.perf_counter()
    try:
        stack = StackTrainer(configs)
        if on_start is not None:
            on_start(stack)
        with _stop_on_signals(stack):
            stack.fit(data.X_train, data.y_train, data.X_val, data.y_val, callbacks=callbacks)
    except TrainingInterrupted:
        raise StackStopped(stack) from None
    except Exception as err:  # noqa: BLE001 — a failed stack is a row per member, not a failed sweep
        return [{"status": "failed", "error": error_text(err), "seconds": time.perf_counter() - start}
                for _ in configs]
    return [member_outcome(trainer, result["status"], result["error"], data)
            for trainer, result in zip(stack.trainers, stack.results)]


def error_text(err: BaseException) -> str:
    """An error as a row's one line: its type and its message's first line."""
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def member_outcome(trainer, status: str, error, data: SweepData) -> dict:
    """A member's outcome once it left its stack (a numbamlp.member.Member): its saved
    weights' validation metrics (a pruned member's: its last epoch's, whose weights it
    keeps), its test metrics (finished members only), status, epochs, history, model and
    seconds."""
    pruned = status == "pruned"
    saved = trainer.epoch_metrics(trainer.epoch) if pruned else trainer.saved_epoch_metrics()
    columns = TASK_COLUMNS[trainer.config.task]
    outcome = {"status": status, "error": error, "epochs": trainer.epoch,
               "best_epoch": None if pruned else trainer.best_epoch,
               **{c: saved.get(c) for c in columns if c.startswith("val_")},
               **{c: None for c in columns if c.startswith("test_")},
               "seconds": trainer.training_seconds,
               # a diverged member has no model, as a diverged `numbamlp train` writes none: its
               # weights (finite, but blown up) would predict NaN
               "history": trainer.history, "model": None if status == "diverged" else trainer.model}
    if status in FINISHED:
        test = trainer.evaluate(data.X_test, data.y_test)
        outcome.update({c: test.get(c.removeprefix("test_")) for c in columns if c.startswith("test_")})
    return outcome


class StackStopped(Exception):
    """``request_stop`` (a signal, a server's shutdown) stopped a stack after a complete step;
    ``stack`` can be checkpointed and continued."""

    def __init__(self, stack):
        super().__init__("the stack was stopped")
        self.stack = stack


def write_run_files(folder: Path, config: TrainConfig, outcome: dict, splits) -> str | None:
    """A member's run directory, from its ``outcome`` (train_stack's), through the run writer
    (numbamlp.layout): config.json, metrics.jsonl, model.safetensors with what the model needs
    from its data.Splits (standardisation, feature names), summary.json.  Returns the model's
    path (None without a model: a member that diverged or failed)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = RunFiles(folder)
    config_document = files.write_config(config)
    files.write_metrics(outcome.get("history", []))
    model = outcome.get("model")
    model_path = None if model is None else files.write_model(model, splits, config_document)
    # (a stack that failed as a whole gives its members only a status, an error and seconds)
    files.write_summary(run_summary(folder, config, splits, model, scores=outcome, status=outcome["status"],
                                    error=outcome["error"], best_epoch=outcome.get("best_epoch"),
                                    epochs=outcome.get("epochs"), seconds=outcome["seconds"], wall_s=None))
    return None if model_path is None else str(model_path)


@contextlib.contextmanager
def _stop_on_signals(stack):
    """In the main thread of the sweep's own process: SIGINT and SIGTERM stop the stack after
    its current step.  Elsewhere (a Dask worker's thread, the service's) signals are not ours
    to handle (signals_are_ours; on_signals does nothing outside the main thread)."""
    if not _SIGNALS_ARE_OURS[0]:
        yield
        return
    from numbamlp.run import stop_on_signals

    with stop_on_signals(stack):
        yield


_SIGNALS_ARE_OURS = [False]  # set while an in-process sweep runs (signals_are_ours)


@contextlib.contextmanager
def signals_are_ours():
    """While inside (an in-process sweep's tasks), a stack that trains in the main thread
    stops on SIGINT and SIGTERM after its current step (_stop_on_signals)."""
    _SIGNALS_ARE_OURS[0] = True
    try:
        yield
    finally:
        _SIGNALS_ARE_OURS[0] = False


def worker_threads() -> int:
    """Numba threads for a task on this Dask worker: the cores over the worker's task slots
    (the nanny pins OpenMP's and MKL's threads, not Numba's)."""
    from distributed import get_worker

    from numbamlp.kernels import usable_cores

    return max(1, usable_cores() // max(1, get_worker().state.nthreads))


def train_stack_on_worker(configs: list[dict], data: SweepData) -> list[dict]:
    return train_stack(configs, data, threads=worker_threads())
