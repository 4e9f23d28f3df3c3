"""A training run on disk: what `numbamlp train` does, callable from Python too.

``train_run`` trains as a config says into a run directory (numbamlp.layout says what one
holds, and writes its files): config.json first, metrics.jsonl and the checkpoint after
every epoch, the model and summary.json at the end.  A run can be resumed from its
checkpoint, and stops cleanly on SIGINT or SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
import warnings
from pathlib import Path

import numpy as np

from numbamlp.config import TrainConfig
from numbamlp.io import load_checkpoint
from numbamlp.layout import (CHECKPOINT_DIR, CONFIG_FILE, RUN_FILES, SUMMARY_FILE, RunFiles, has_checkpoint, holds_run,
                             holds_sweep, run_summary)


class RunError(ValueError):
    """A run directory that cannot be used as asked (exists, missing, incomplete)."""


def _remove_run_files(directory: Path, keep: str) -> None:
    """Remove a run's files (RUN_FILES but ``keep``) from ``directory``, nothing else."""
    import shutil

    for name in RUN_FILES:
        path = directory / name
        if name == keep or not path.exists():
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def read_run_config(directory) -> TrainConfig:
    """The config.json of an existing run directory."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise RunError(f"{directory} is not a run directory (no {CONFIG_FILE})")
    try:
        return TrainConfig.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValueError) as err:
        raise RunError(f"{path} is not a valid numbamlp config: {str(err).splitlines()[0]}") from None


def held_out_test_split(directory):
    """(X_test, y_test) of a run directory's config as the run held it out: raw features
    (the saved model standardises them itself; a table's raw columns, {name: column}, which
    it encodes) and labels."""
    from numbamlp.data import DataNote, prepare_for

    config = read_run_config(directory)
    check_data_unchanged(directory, config, "its held-out test rows cannot be drawn again; give --data")
    with warnings.catch_warnings():  # (what reading the data noted, the run noted when it trained)
        warnings.simplefilter("ignore", DataNote)
        splits = prepare_for(config, config.data.model_copy(update={"standardize": False}), raw_test=True)
    return (splits.X_test if splits.raw_test is None else splits.raw_test), splits.y_test


def check_data_unchanged(directory, config: TrainConfig, consequence: str) -> None:
    """DataError (ending in ``consequence``) when a data file of the run in ``directory`` has
    another size or modification time than its summary.json records (runs written before
    2026-11-30, or killed before their first summary, record none: not checked)."""
    from numbamlp.data import DataError, changed_data_file, data_files

    summary = Path(directory) / SUMMARY_FILE
    recorded = json.loads(summary.read_text()).get("data_files") if summary.is_file() else None
    changed = None if recorded is None else changed_data_file(recorded, data_files(config.data))
    if changed is not None:
        raise DataError(f"the data of {directory} changed since it ran ({changed}: size or modification time), "
                        f"so {consequence}")


class RunWriter:
    """Callback: after every epoch, rewrite metrics.jsonl and the checkpoint."""

    def __init__(self, files: RunFiles, trainer, config_dump: dict):
        self.files, self.trainer, self.config_dump = files, trainer, config_dump

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        self.save()

    def save(self) -> None:
        self.files.write_metrics(self.trainer.history)
        self.files.write_checkpoint(self.trainer, self.config_dump)


class RunInterrupted(Exception):
    """SIGINT or SIGTERM stopped a run after a complete step; its checkpoint is saved, and
    the weights of that step are the run's model."""

    def __init__(self, directory: Path, signal_number: int, epoch: int, step):
        where = "at the end of the epoch" if step == "end" else f"after step {step}"
        super().__init__(f"interrupted in epoch {epoch} {where}; checkpoint and model saved in {directory}")
        self.directory, self.signal_number = directory, signal_number


class RunAborted(Exception):
    """A second interrupt stopped a run at once (KeyboardInterrupt): what is on disk is the
    last checkpoint that was completely written, if any (every write is atomic)."""

    def __init__(self, directory: Path | None, resumed: bool):
        if directory is None:
            message = "interrupted before training started; nothing was written"
        elif has_checkpoint(directory):
            message = (f"interrupted; {directory} keeps its last complete checkpoint"
                       f"{'' if resumed else ' (the model file may be older or missing)'}")
        else:
            message = f"interrupted before the first checkpoint; {directory} holds no checkpoint yet"
        super().__init__(message)
        self.directory = directory if directory is not None and (directory / CHECKPOINT_DIR).is_dir() else None


def stop_on_signals(trainer):
    """While inside, SIGINT and SIGTERM ask the trainer to stop after its current step
    (a second one of either stops the process at once, as usual)."""
    return on_signals(trainer.request_stop)


@contextlib.contextmanager
def on_signals(react):
    """While inside, the first SIGINT or SIGTERM calls ``react(signal_number)``; a second
    one gets the handling there was before (the default: stop at once).  Outside the main
    thread (a caller's thread, a Dask worker's), nothing: signals are the main thread's."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signal_number, frame):
        for number, old in previous.items():
            signal.signal(number, old)
        react(signal_number)

    for number in (signal.SIGINT, signal.SIGTERM):
        previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def train_run(config: TrainConfig, out=None, resume=None, overwrite: bool = False, callbacks=()) -> dict:
    """Train as ``config`` says, writing a run directory; returns the summary (_train_run)."""
    with contextlib.ExitStack() as held:  # (the run directory's lock, _run_lock, until the run ends)
        return _train_run(config, out, resume, overwrite, callbacks, held)


def _run_lock(directory: Path):
    """Held while a run trains in ``directory`` (paths.directory_lock): a second ``--resume``
    of it meanwhile is refused rather than both writing its files."""
    from numbamlp.paths import directory_lock

    return directory_lock(directory, RunError(f"{directory} is in use: another numbamlp run is training in it now"))


def _train_run(config: TrainConfig, out, resume, overwrite: bool, callbacks, held: contextlib.ExitStack) -> dict:
    """Train as ``config`` says, writing a run directory; returns the summary.

    ``resume``: an existing run directory to continue (its config is used; ``config.epochs``
    may extend it).  ``out``: a new directory (default runs/<UTC timestamp>); one that
    already holds a run is refused unless ``overwrite``.  Everything that can be refused
    (the output path, the data, the model's shape, the backend) is, before a file is written.
    """
    from numbamlp.data import prepare_for
    from numbamlp.paths import RunDirectoryTaken, check_output_directory, claim_run_directory
    from numbamlp.trainer import Trainer, TrainingInterrupted

    start = time.perf_counter()
    if resume is not None:
        directory = Path(resume)
        if not has_checkpoint(directory):
            raise RunError(f"{directory} has no checkpoint to resume from")
        check_output_directory(directory)
        held.enter_context(_run_lock(directory))
        check_data_unchanged(directory, config, "resuming would train on other rows")
    elif out is not None:
        check_output_directory(out)
        if holds_sweep(Path(out)):  # (--overwrite would leave the sweep's files beside the run)
            raise RunError(f"{out} holds a sweep, not a run; choose another --out")
        if holds_run(Path(out)) and not overwrite:
            raise RunDirectoryTaken(out)
    splits = prepare_for(config)
    trainer = Trainer(config)
    # a regressor's outputs: its targets (N,) or (N, K); a classifier's: its classes
    outputs = (1 if splits.y_train.ndim == 1 else splits.y_train.shape[1]) if trainer.regression else None
    if resume is not None:
        arrays, meta = load_checkpoint(directory / CHECKPOINT_DIR)
        done, partway = int(meta["epoch"]), meta.get("progress") is not None
        if config.epochs < done + partway:  # (fewer would rewrite config.json below what the model has had)
            had = f"{done} epochs" + (f" and part of epoch {done + 1}" if partway else "")
            raise RunError(f"{directory} has trained {had}: --epochs must be at least {done + partway} to go on "
                           f"(got {config.epochs})")
        classes = meta["classes"]
        trainer.build(splits.X_train.shape[1], outputs or len(classes))
        trainer.restore(arrays, meta, classes)
    else:
        trainer.build(splits.X_train.shape[1], outputs or len(np.unique(splits.y_train)))
    trainer.check_stopping_metric()  # (val_f1 for two classes, val_macro_f1 for more: said before any file)
    trainer.check_threshold()  # (binary classifiers only: said before any file)
    claimed = None
    try:
        if resume is None:
            directory = claimed = claim_run_directory(out, CONFIG_FILE, overwrite)
            held.enter_context(_run_lock(directory))
            if overwrite:  # the old run's files go: a new run that fails must not leave them beside its config
                _remove_run_files(directory, keep=CONFIG_FILE)
        files = RunFiles(directory)
        config_dump = files.write_config(config)
        writer = RunWriter(files, trainer, config_dump)
        try:
            with stop_on_signals(trainer):
                trainer.fit(splits.X_train, splits.y_train, splits.X_val, splits.y_val,
                            callbacks=[*callbacks, writer], warm_start=resume is not None)
        except TrainingInterrupted as stop:
            writer.save()
            _finish(trainer, splits, files, config, config_dump, start, interrupted=True)
            raise RunInterrupted(directory, stop.reason, stop.epoch, stop.step) from None
        if trainer.epoch == 0:  # zero epochs: still leave a loadable checkpoint
            writer.on_epoch_end(0, {})
        return _finish(trainer, splits, files, config, config_dump, start, interrupted=False)
    except KeyboardInterrupt:  # a second interrupt, while the first one's checkpoint was written
        raise RunAborted(directory if (resume is not None or claimed is not None) else None,
                         resumed=resume is not None) from None


def _finish(trainer, splits, files: RunFiles, config: TrainConfig, config_dump: dict, start: float,
            interrupted: bool) -> dict:
    """Write the run's model and summary.json (numbamlp.layout.run_summary), and return the summary.

    The summary describes the saved weights: with early stopping those of ``best_epoch``
    (its validation metrics), otherwise the last epoch's.  An interrupted run saves the
    weights of its last complete step and is not scored on the test set.
    """
    model = trainer.model
    files.write_model(model, splits, config_dump)
    test = None if interrupted else trainer.evaluate(splits.X_test, splits.y_test)
    scores = {name: value for name, value in trainer.saved_epoch_metrics().items() if name.startswith("val_")}
    if test is not None:  # (Trainer.evaluate's: a classifier's loss and classification_metrics; a regressor's)
        scores.update({f"test_{name}": value for name, value in test.items()})
    status = "interrupted" if interrupted else "stopped early" if trainer.stopped_early else "done"
    summary = run_summary(files.directory, config, splits, model, scores=scores, status=status, error=None,
                          best_epoch=trainer.best_epoch, epochs=trainer.epoch,
                          seconds=trainer.training_seconds,
                          wall_s=time.perf_counter() - start, gradient_check_error=trainer.validation_error)
    files.write_summary(summary)
    return summary
