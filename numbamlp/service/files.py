"""Where the service keeps its files under the data directory, stated once:

    jobs/<job id>/             a job's run directory (numbamlp.layout: config.json, model.safetensors, ...)
    sweeps/<sweep id>/         a search's sweep directory (numbamlp.layout); each trial's run
                               directory is members/<trial number>/ inside it
    datasets/<id>.<ext>        an uploaded data set, which configs name dataset:<id>

and how an error names an upload: as "the uploaded dataset <id>", never by the server's path.
"""

from __future__ import annotations

import re
from pathlib import Path

DATASET_PREFIX = "dataset:"


def job_directory(data_dir: Path, job_id: str) -> Path:
    """The run directory of a job the scheduler trained."""
    return Path(data_dir) / "jobs" / job_id


def search_directory(data_dir: Path, sweep_id: str) -> Path:
    """The sweep directory of a search (numbamlp.sweeps.sweep's ``out``)."""
    return Path(data_dir) / "sweeps" / sweep_id


def model_file(data_dir: Path, job: dict) -> Path:
    """Where a job's model file is, once it has succeeded: in its run directory, or, for a
    search's trial, in the trial's run directory inside the search's."""
    from numbamlp.layout import MODEL_FILE, member_directory

    if job.get("trial") is not None:
        return member_directory(search_directory(data_dir, job["sweep_id"]), job["trial"]["number"]) / MODEL_FILE
    return job_directory(data_dir, job["id"]) / MODEL_FILE


def file_sha256(path) -> str | None:
    """A model file's SHA-256 (its ETag); None for no file (None)."""
    if path is None:
        return None
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def succeeded_columns(scored: dict, model_path) -> dict:
    """What a succeeded job's row keeps (Store.set_status's fields): its four headline
    scores, every val_/test_ score of ``scored`` (a stack member's outcome, a trial's row)
    as JSON, and its model file's SHA-256."""
    from numbamlp.io import json_text

    scores = {k: v for k, v in scored.items() if k.startswith(("val_", "test_"))}
    return {**{k: scores.get(k) for k in ("test_accuracy", "test_loss", "val_accuracy", "val_loss")},
            "scores": json_text(scores), "model_sha256": file_sha256(model_path)}


def dataset_path(data_dir: Path, source: str) -> str:
    """The file behind ``dataset:<id>`` (other sources as they are)."""
    if not source.startswith(DATASET_PREFIX):
        return source
    dataset_id = source[len(DATASET_PREFIX):]
    matches = sorted((Path(data_dir) / "datasets").glob(f"{dataset_id}.*"))
    if not matches:
        raise ValueError(f"unknown data set {source!r}")
    return str(matches[0])


def with_dataset_paths(config: dict, data_dir: Path) -> dict:
    """A config document (a TrainConfig's dict) with its ``dataset:<id>`` sources as their
    files: what training reads, where the stored config keeps the ids."""
    data = dict(config.get("data") or {})
    for key in ("train", "test", "val"):
        if data.get(key) is not None:
            data[key] = dataset_path(data_dir, data[key])
    return {**config, "data": data}


def with_dataset_ids(config: dict, data_dir: Path) -> dict:
    """with_dataset_paths undone: a config document whose sources are uploads' files named
    ``dataset:<id>`` again (a search's trials' files keep what a job's keep)."""
    data, upload = dict(config.get("data") or {}), _uploads(data_dir)
    for key in ("train", "test", "val"):
        found = upload.fullmatch(str(data[key])) if data.get(key) is not None else None
        if found is not None:
            data[key] = DATASET_PREFIX + found.group(1)
    return {**config, "data": data}


def _uploads(data_dir) -> re.Pattern:
    """An uploaded data set's file path (also while it is checked, in a folder of its own)."""
    datasets = re.escape(str(Path(data_dir) / "datasets"))
    return re.compile(datasets + r"/(?:incoming-[^/]+/)?([0-9a-f]{64})\.(?:npz|parquet|csv(?:\.gz|\.zst|\.bz2)?)")


def hide_dataset_paths(text: str, data_dir) -> str:
    """``text`` with each uploaded dataset's file path (also while it is checked, in a folder
    of its own) as "the uploaded dataset <id>": what a client reads never shows the server's
    files."""
    return _uploads(data_dir).sub(r"the uploaded dataset \1", text)
