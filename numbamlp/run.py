"""A training run on disk: what `numbamlp train` does, callable from Python too.

A run directory holds:
  config.json        the effective, fully resolved TrainConfig
  metrics.jsonl      one JSON line per epoch (epoch, loss, lr, val_loss, val_accuracy, seconds)
  checkpoint/        state.safetensors: weights, optimizer state, step count, RNG state
  model.safetensors  the trained model (with its label mapping and standardisation)
  summary.json       test_accuracy, test_loss, val_accuracy, epochs_run, wall_s, model_path
Every file is written atomically (numbamlp.io).
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from numbamlp.config import TrainConfig
from numbamlp.io import atomic_write_bytes, atomic_write_json, load_checkpoint, save_checkpoint, save_model

RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "model.safetensors", "checkpoint")


class RunError(ValueError):
    """A run directory that cannot be used as asked (exists, missing, incomplete)."""


def default_run_dir() -> Path:
    """runs/<UTC timestamp>, with a -2, -3, ... suffix if that name is taken."""
    base = Path("runs") / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def holds_run(directory: Path) -> bool:
    return any((directory / name).exists() for name in RUN_FILES)


def read_run_config(directory) -> TrainConfig:
    """The config.json of an existing run directory."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise RunError(f"{directory} is not a run directory (no config.json)")
    try:
        return TrainConfig.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValueError) as err:
        raise RunError(f"{path} is not a valid numbamlp config: {str(err).splitlines()[0]}") from None


class RunWriter:
    """Callback: after every epoch, rewrite metrics.jsonl and the checkpoint."""

    def __init__(self, directory: Path, trainer, config_dump: dict):
        self.directory, self.trainer, self.config_dump = directory, trainer, config_dump

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        self.save()

    def save(self) -> None:
        lines = "".join(json.dumps(m) + "\n" for m in self.trainer.history)
        atomic_write_bytes(self.directory / "metrics.jsonl", lines.encode())
        save_checkpoint(self.directory / "checkpoint", self.trainer, self.config_dump)


class RunInterrupted(Exception):
    """SIGINT or SIGTERM stopped a run after a complete step; its checkpoint is saved."""

    def __init__(self, directory: Path, signal_number: int, epoch: int, step):
        where = "at the end of the epoch" if step == "end" else f"after step {step}"
        super().__init__(f"interrupted in epoch {epoch} {where}; checkpoint saved in {directory}")
        self.directory, self.signal_number = directory, signal_number


@contextlib.contextmanager
def stop_on_signals(trainer):
    """While inside, SIGINT and SIGTERM ask the trainer to stop after its current step
    (a second one of either stops the process at once, as usual)."""
    previous = {}

    def handler(signal_number, frame):
        for number, old in previous.items():  # a second signal gets the default behaviour
            signal.signal(number, old)
        trainer.request_stop(signal_number)

    for number in (signal.SIGINT, signal.SIGTERM):
        previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def train_run(config: TrainConfig, out=None, resume=None, overwrite: bool = False, callbacks=()) -> dict:
    """Train as ``config`` says, writing a run directory; returns the summary.

    ``resume``: an existing run directory to continue (its config is used; ``config.epochs``
    may extend it).  ``out``: a new directory (default runs/<UTC timestamp>); one that
    already holds a run is refused unless ``overwrite``.
    """
    from numbamlp.data import prepare
    from numbamlp.trainer import Trainer, TrainingInterrupted

    start = time.perf_counter()
    if resume is not None:
        directory = Path(resume)
        if not (directory / "checkpoint" / "state.safetensors").is_file():
            raise RunError(f"{directory} has no checkpoint to resume from")
    else:
        directory = Path(out) if out is not None else default_run_dir()
        if directory.exists() and not directory.is_dir():
            raise RunError(f"{directory} exists and is not a directory")
        if holds_run(directory) and not overwrite:
            raise RunError(f"{directory} already holds a run; choose another --out or pass --overwrite")
    splits = prepare(config.data, config.seed)
    trainer = Trainer(config)
    # everything that can refuse (data, model shape, backend) does so before a file is written
    if resume is not None:
        arrays, meta = load_checkpoint(directory / "checkpoint")
        classes = np.asarray(meta["classes"])
        trainer.build(splits.X_train.shape[1], len(classes))
        trainer.restore(arrays, meta, classes)
    else:
        trainer.build(splits.X_train.shape[1], len(np.unique(splits.y_train)))
    directory.mkdir(parents=True, exist_ok=True)
    config_dump = config.model_dump(mode="json", by_alias=True)
    atomic_write_json(directory / "config.json", config_dump)
    writer = RunWriter(directory, trainer, config_dump)
    try:
        with stop_on_signals(trainer):
            trainer.fit(splits.X_train, splits.y_train, splits.X_val, splits.y_val, callbacks=[*callbacks, writer])
    except TrainingInterrupted as stop:
        writer.save()
        raise RunInterrupted(directory, stop.reason, stop.epoch, stop.step) from None
    if trainer.epoch == 0:  # zero epochs: still leave a loadable checkpoint
        writer.on_epoch_end(0, {})
    test = trainer.evaluate(splits.X_test, splits.y_test)
    model = trainer.model
    model.input_transform = splits.standardizer
    model_path = directory / "model.safetensors"
    save_model(model, model_path, config=config_dump)
    val_accuracy = next((m["val_accuracy"] for m in reversed(trainer.history) if "val_accuracy" in m), None)
    summary = {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "val_accuracy": val_accuracy,
        "epochs_run": trainer.epoch,
        "stopped_early": trainer.stopped_early,
        "gradient_check_error": trainer.validation_error,
        "wall_s": time.perf_counter() - start,
        "model_path": str(model_path),
        "run_dir": str(directory),
        "test_rows": int(len(splits.y_test)),
        "layers": model.layers,
        "activation": model.activation,
        "backend": config.backend,
        "dtype": config.dtype,
    }
    atomic_write_json(directory / "summary.json", summary)
    return summary
