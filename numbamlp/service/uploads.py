"""Uploaded data sets (POST /v1/datasets): the body is the file, checked in a folder of its
own (it loads with the given label column, as numbers or as a table of text and missing
cells; decompressed, it is no larger than --max-dataset-mb) and then kept in ``DATA_DIR/datasets`` by its sha256, which jobs name as
dataset:<id>.  The answer says what the server read: its rows, its features, and each
column a job trains on with its type (``upload_columns``)."""

from __future__ import annotations

import functools
import hashlib
import shutil
import tempfile
from pathlib import Path

from fastapi import HTTPException

from numbamlp.data import file_kind
from numbamlp.service.limits import Limits
from numbamlp.service.files import DATASET_PREFIX, dataset_path, hide_dataset_paths
from numbamlp.service.store import StorageFull, Store
from numbamlp.service.validation import kept_upload_problem, upload_problem

# An upload's kind, by its first bytes (a CSV's text has none), as its file's suffix
UPLOAD_MAGIC = ((b"PK\x03\x04", "npz"), (b"PAR1", "parquet"), (b"\x1f\x8b", "csv.gz"), (b"\x28\xb5\x2f\xfd", "csv.zst"),
                (b"BZh", "csv.bz2"))
INCOMING = "incoming-"  # the prefix of an upload's folder while it is checked


def prepare_datasets_folder(data_dir: Path) -> None:
    """``data_dir/datasets``, made if missing, without the uploads a kill -9 cut off mid-check."""
    (data_dir / "datasets").mkdir(parents=True, exist_ok=True)
    for leftover in (data_dir / "datasets").glob(INCOMING + "*"):
        shutil.rmtree(leftover, ignore_errors=True)


def store_dataset(store: Store, data_dir: Path, body: bytes, label_column: str | None, limits: Limits) -> dict:
    """Keep an uploaded file by content hash after checking that it loads with that label
    column (as numbers, or as a table: validation.upload_problem) and that it is no larger,
    decompressed, than the server takes (422 if not; the same content already kept is
    checked with the label column too)."""
    from numbamlp.io import atomic_write_bytes

    if not body:
        raise HTTPException(422, "the body is empty: send an .npz, .parquet or .csv file")
    digest = hashlib.sha256(body).hexdigest()
    existing = store.dataset(digest)
    if existing is not None:
        kept = dataset_path(data_dir, DATASET_PREFIX + digest)
        problem = kept_upload_problem(kept, label_column)[0]
        if problem is not None:
            raise HTTPException(422, hide_dataset_paths(problem, data_dir))
        return existing | {"columns": kept_upload_columns(kept, label_column)}
    suffix = next((kind for magic, kind in UPLOAD_MAGIC if body.startswith(magic)), "csv")  # (by magic bytes)
    # checked in a folder of its own: a concurrent upload of the same bytes never sees a bad try
    incoming = Path(tempfile.mkdtemp(prefix=INCOMING, dir=data_dir / "datasets"))
    try:
        trial = incoming / f"{digest}.{suffix}"
        _written(store, lambda: trial.write_bytes(body))
        problem = _decompressed_problem(trial, suffix, limits)
        if problem is not None:
            raise HTTPException(422, problem)
        problem, rows, features = upload_problem(str(trial), label_column)
        if problem is not None:
            raise HTTPException(422, hide_dataset_paths(problem, data_dir))
        columns = upload_columns(str(trial), label_column)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    _written(store, lambda: atomic_write_bytes(data_dir / "datasets" / f"{digest}.{suffix}", body))
    return store.add_dataset(digest, file_kind(trial), len(body), rows, features) | {"columns": columns}


def upload_columns(source: str, label_column: str | None) -> list[dict]:
    """The columns of a checked upload that a job naming no column roles reads, in the
    file's order, each {name, type, role}, as training reads them (the reader that
    validation.upload_problem chose: numbers alone, or a table).  ``type``: "text" for a
    table's column of categories, else the number dtype read (int64, float64, ...); None for
    a column left out unread.  ``role``: "feature", or "identifier" for a table's column left
    out because it looks like an identifier (a job's data.features may keep it).  A file
    without column names (.npz, a CSV without a header) names its features by position: "0",
    "1", ...  The label column is not among them.  (The file is read a second time, after
    the check, for this.)"""
    import warnings

    from numbamlp.data import ColumnRoles, DataNote, feature_names, load_dataset, read_table, reads_as_table
    from numbamlp.data.dataset import NotNumbers

    names = feature_names(source, label_column)  # (every column but the label; None without names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataNote)  # (a left-out identifier's note: its role says it here)
        if not reads_as_table(source, label_column, None):
            try:
                data = load_dataset(source, label_column=label_column)
            except NotNumbers:  # (text further down: a table, as upload_problem reads it)
                pass
            else:
                width = data.X.shape[1]
                dtypes = data.feature_dtypes or [str(data.X.dtype)] * width
                return [{"name": name, "type": dtype, "role": "feature"}
                        for name, dtype in zip(names or map(str, range(width)), dtypes)]
        table = read_table(source, label_column, ColumnRoles())
    read = dict(zip(table.columns, table.dtypes))
    return [{"name": name, "type": ("text" if read[name] == "string" else read[name]) if name in read else None,
             "role": "feature" if name in read else "identifier"} for name in names or list(read)]


# upload_columns of a kept upload (content-addressed: it never changes, so each is read once)
kept_upload_columns = functools.lru_cache(maxsize=64)(upload_columns)


def _decompressed_problem(path: Path, kind: str, limits: Limits) -> str | None:
    """Why an uploaded file is too large once decompressed, or cannot be measured, if it is
    either (measured without inflating it whole: limits.npz_decompressed_bytes,
    limits.parquet_decompressed_bytes, a compressed CSV streamed and counted).  A plain CSV
    is read as it comes: its size is the body's, under --max-request-mb."""
    from numbamlp.service.limits import (compressed_text_bytes, flag, npz_decompressed_bytes,
                                         parquet_decompressed_bytes)

    limit = int(limits.max_dataset_mb * (1 << 20))
    try:
        if kind == "npz":
            size = npz_decompressed_bytes(path)
        elif kind == "parquet":
            size = parquet_decompressed_bytes(path, limit)
        elif kind.startswith("csv."):
            size = compressed_text_bytes(path, limit)
        else:
            return None
    except Exception as err:  # noqa: BLE001 — refused when it cannot be measured: never inflated blind
        return f"the uploaded .{kind} cannot be read to measure it ({type(err).__name__}: {str(err)[:200]})"
    if size <= limit:
        return None
    return (f"the uploaded .{kind} holds {'' if kind == 'npz' else 'more than '}{size / (1 << 20):,.0f} MB "
            f"of data once decompressed, more than this server's limit of {limits.max_dataset_mb:g} MB "
            f"({flag('max_dataset_mb')})")


def _written(store: Store, write) -> None:
    """Run ``write()``; a full disk becomes StorageFull (507), not a 500, and the service
    takes no new work until there is room (Store.full)."""
    try:
        write()
    except OSError as err:
        if store.noted_full(err):
            raise StorageFull() from None
        raise
