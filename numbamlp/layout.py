"""What a run directory and a sweep directory hold, stated once, and the one writer of a run
directory's files.

A run directory: what `numbamlp train` writes (runs/<UTC timestamp> unless --out), and as
well each member of a sweep (members/<k>/) and each job of the service (jobs/<id>/):

    config.json        CONFIG_FILE     the effective, fully resolved TrainConfig (data files by
                                       absolute path)
    metrics.jsonl      METRICS_FILE    one JSON line per epoch (epoch, loss, lr, the validation
                                       metrics: val_loss, val_accuracy, ..., seconds)
    checkpoint/        CHECKPOINT_DIR  state.safetensors (numbamlp.io.save_checkpoint): weights,
                                       optimizer state, step count, RNG state; `numbamlp train`'s
                                       runs only (what --resume goes on from)
    model.safetensors  MODEL_FILE      the trained model, with its label mapping and
                                       standardisation; none where a member diverged or failed
    summary.json       SUMMARY_FILE    run_summary: the saved weights' scores, status, epochs,
                                       timings, data files (their size and modification time) and
                                       the network's shape

A sweep directory: what `numbamlp sweep` writes (sweeps/<UTC timestamp> unless --out), or
``sweep(out=...)``:

    sweep.json         SWEEP_FILE      what to train: base config, grid keys, each member's values,
                                       metric, stack size, data files; writing it claims the directory
    results.jsonl      RESULTS_JSONL   a row per finished member, rewritten as each stack finishes
    results.csv        RESULTS_CSV     the same rows as CSV
    members/<k>/       MEMBERS_DIR     member k's run directory (member_directory)
    summary.json       SUMMARY_FILE    at the end: the best row and its config, counts by status
    study.journal      STUDY_FILE      a search's Optuna study, unless --storage names another
                                       (numbamlp.sweeps.search; Optuna writes it, appending)

Every file is written atomically (numbamlp.io): a reader sees the old file or the new one.
"""

from __future__ import annotations

import json
from pathlib import Path

from numbamlp.io import (DIRECTORY_MODEL_FILE, ModelFileError, atomic_write_bytes, atomic_write_json, json_text,
                         save_checkpoint, save_model)
from numbamlp.io import load_model as load_model_file

# ---------------------------------------------------------------- a run directory
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_STATE = "state.safetensors"  # (inside CHECKPOINT_DIR: the file numbamlp.io.save_checkpoint writes)
MODEL_FILE = DIRECTORY_MODEL_FILE  # model.safetensors: numbamlp.io.load_model(DIR) reads it
SUMMARY_FILE = "summary.json"
RUN_FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, MODEL_FILE, CHECKPOINT_DIR)

# ---------------------------------------------------------------- a sweep directory
SWEEP_FILE = "sweep.json"
RESULTS_JSONL = "results.jsonl"
RESULTS_CSV = "results.csv"
MEMBERS_DIR = "members"
STUDY_FILE = "study.journal"
# what a sweep writes beside SWEEP_FILE
SWEEP_FILES = (RESULTS_JSONL, RESULTS_CSV, SUMMARY_FILE, MEMBERS_DIR, STUDY_FILE)

# summary.json's scores, per task: of the saved weights on the validation rows, and on the test
# rows (null where not scored: an interrupted run, a member that did not finish; and for the F1
# a classifier does not report: f1 is two classes', macro_f1 more's)
SUMMARY_SCORES = {
    "classification": ("test_accuracy", "test_loss", "val_accuracy", "val_loss", "test_balanced_accuracy", "test_f1",
                       "test_macro_f1", "test_roc_auc", "test_average_precision", "test_log_loss",
                       "val_balanced_accuracy", "val_f1", "val_macro_f1", "val_roc_auc", "val_average_precision"),
    "regression": ("test_accuracy", "test_loss", "val_accuracy", "val_loss",
                   "test_r2", "test_mse", "test_mae", "val_r2", "val_mse"),
}


def holds_run(directory: Path) -> bool:
    """Whether ``directory`` holds any of a run's files."""
    return any((directory / name).exists() for name in RUN_FILES)


def has_checkpoint(directory: Path) -> bool:
    """Whether the run in ``directory`` has a complete checkpoint to go on from."""
    return (directory / CHECKPOINT_DIR / CHECKPOINT_STATE).is_file()


def holds_sweep(directory: Path) -> bool:
    """Whether ``directory`` holds a sweep (its sweep.json)."""
    return (directory / SWEEP_FILE).exists()


def member_directory(sweep_directory: Path, member: int) -> Path:
    """The run directory of member ``member`` of a sweep."""
    return sweep_directory / MEMBERS_DIR / str(member)


def sweep_directory_note(directory) -> str | None:
    """For a sweep directory given where a run's is due (eval, predict, export, plot,
    load_model): what to give instead, its best member's run directory when its
    summary.json names one; None for any other path."""
    directory = Path(directory)
    if not (directory / SWEEP_FILE).is_file():
        return None
    try:
        best = json.loads((directory / SUMMARY_FILE).read_text())["best"]["row"]["member"]
        example = f", e.g. its best, {member_directory(directory, best)}"
    except (OSError, ValueError, KeyError, TypeError):
        example = f" ({directory / MEMBERS_DIR}/<member>)"
    return f"{directory} is a sweep directory: give one of its members' run directories{example}"


def load_model(path):
    """A model from its file or a run directory (numbamlp.io.load_model); a sweep directory
    given instead is refused with what to give (ModelFileError, sweep_directory_note)."""
    path = Path(path)
    if path.is_dir() and not (path / MODEL_FILE).exists():
        note = sweep_directory_note(path)
        if note is not None:
            raise ModelFileError(note)
    return load_model_file(path)


# ---------------------------------------------------------------- the run writer
class RunFiles:
    """The writer of one run directory's files, each atomically: `numbamlp train`'s runs, a
    sweep's members and the service's jobs all write theirs through it."""

    def __init__(self, directory):
        self.directory = Path(directory)

    def write_config(self, config) -> dict:
        """config.json: ``config`` (a TrainConfig) with its data files by absolute path, so that
        eval and --resume find them from any folder; returns that document."""
        from numbamlp.config import with_absolute_data_paths

        document = with_absolute_data_paths(config.model_dump(mode="json", by_alias=True))
        atomic_write_json(self.directory / CONFIG_FILE, document)
        return document

    def write_metrics(self, history: list[dict]) -> None:
        """metrics.jsonl: a line per epoch of ``history``."""
        lines = "".join(json_text(metrics) + "\n" for metrics in history)
        atomic_write_bytes(self.directory / METRICS_FILE, lines.encode())

    def write_checkpoint(self, trainer, config_document: dict) -> None:
        save_checkpoint(self.directory / CHECKPOINT_DIR, trainer, config_document)

    def write_model(self, model, splits, config_document: dict) -> Path:
        """model.safetensors: ``model`` with what it needs from its data.Splits (the
        standardisation, feature names); returns its path."""
        splits.attach_to(model)
        path = self.directory / MODEL_FILE
        save_model(model, path, config=config_document)
        return path

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.directory / SUMMARY_FILE, summary)


def run_summary(directory: Path, config, splits, model, *, scores: dict, status: str, error: str | None,
                best_epoch: int | None, epochs: int | None, seconds: float | None, wall_s: float | None,
                gradient_check_error: float | None = None) -> dict:
    """A run directory's summary.json, the one format of runs, sweep members and jobs.

    It describes the saved weights ``model`` (None: there is no model file), those of
    ``best_epoch`` with early stopping, otherwise the last epoch's.  ``scores``: their
    SUMMARY_SCORES (missing ones are null).  ``status``: "done", "stopped early" or
    "interrupted" (a run), or a stack member's ("diverged", "failed", "cancelled").
    ``seconds``: the wall time of the epochs trained (for a member, of its stack's);
    ``wall_s``: of the whole run, from start to summary (None for a member, trained in a
    stack).  ``epochs`` appears twice, as ``epochs_run`` and as a sweep's rows name it.
    """
    from numbamlp.data import data_files

    return {
        **{name: scores.get(name) for name in SUMMARY_SCORES[config.task]},
        "task": config.task,
        "best_epoch": best_epoch,
        "epochs_run": epochs,
        "stopped_early": status == "stopped early",
        "interrupted": status == "interrupted",
        "gradient_check_error": gradient_check_error,
        "wall_s": wall_s,
        "model_path": None if model is None else str(directory / MODEL_FILE),
        "run_dir": str(directory),
        "test_rows": int(len(splits.y_test)),
        "data_files": data_files(config.data),  # (eval RUN_DIR and --resume check that they are unchanged)
        "layers": None if model is None else model.layers,
        "activation": None if model is None else model.activation,
        "backend": config.backend,
        "dtype": config.dtype,
        "status": status,
        "error": error,
        "epochs": epochs,
        "seconds": seconds,
    }
