"""Files numbamlp writes: models, checkpoints, JSON.  Arrays are safetensors, never pickle.

Every write goes to a temporary file in the same directory, is flushed and fsynced, then
renamed into place, so a reader sees the old file or the new one, never half of one.

A model file is one ``.safetensors`` file: tensors ``layers.{i}.W`` (out, in),
``layers.{i}.b`` (out,) in the model's dtype, optionally ``input_transform.mean`` /
``.scale`` (D,) in float64, for a regressor optionally ``target_transform.mean`` / ``.scale``
(K,) in float64 (the target standardisation predictions undo), and under the header's
metadata key ``numbamlp`` a JSON document with the task, layer sizes, activation and its
parameter, dtype, class labels, versions and the training config.  A file without a task
(written before regression existed) is a classifier.  ``load_model`` checks every tensor's dtype and shape against that
document and refuses tensors the format does not name.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import threading
from pathlib import Path

import numpy as np

from numbamlp.diagnostics import installed_version
from numbamlp.encoding import TableEncoder
from numbamlp.transforms import Standardizer
from numbamlp.kernels import ACTIVATION_NAMES, activation_spec
from numbamlp.model import MLP, TASK_LOSSES

MODEL_FORMAT = "numbamlp-model"
CHECKPOINT_FORMAT = "numbamlp-checkpoint"
FORMAT_VERSION = 1
DIRECTORY_MODEL_FILE = "model.safetensors"  # a model's name in a directory: load_model(DIR) reads DIR/this


class ModelFileError(ValueError):
    """A model or checkpoint file that cannot be used, with a message for the user."""


# ---------------------------------------------------------------- atomic writes
def atomic_write_bytes(path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` via a fsynced temporary file and a rename (inside
    ``one_sync``, without the fsyncs).  ``mode`` (0o600, say): the file's permissions from
    its creation on, whatever the umask (None: the umask's)."""
    path = Path(path)
    # (said here: the temporary's name would otherwise be the one an error names)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: no folder {path.parent}")
    deferred = getattr(_sync_later, "active", False)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if mode is not None:
        tmp.unlink(missing_ok=True)  # (a dead writer's, whatever its mode: O_EXCL makes this one with ours)
    try:
        with (open(tmp, "wb") if mode is None else
              os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb")) as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)  # (the umask narrows os.open's mode; this is the mode asked)
            f.write(data)
            f.flush()
            if not deferred:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    if not deferred:
        _fsync_directory(path.parent)
    _remove_stale_temporaries(path)


_sync_later = threading.local()


@contextlib.contextmanager
def one_sync():
    """Inside this block, this thread's atomic writes skip their fsyncs (the file's and its
    folder's); leaving it flushes everything with one ``os.sync()``.  For many small files
    whose commit point comes after the block — a stack's run directories, committed by a
    sweep's results row or a job's status — where two fsyncs a file (~4 ms here) cost more
    than training the member (bench/README.md)."""
    _sync_later.active = True
    try:
        yield
    finally:
        _sync_later.active = False
        os.sync()


def _remove_stale_temporaries(path: Path) -> None:
    """Delete ``path``'s temporary files left by writers that died mid-write (kill -9):
    those whose process is gone.  A live writer's file is never touched."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _process_exists(int(pid)):
            stale.unlink(missing_ok=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # exists, but belongs to someone else (or cannot be asked)
        return True
    return True


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_json(path, document) -> None:
    atomic_write_bytes(path, (json_text(document, indent=1) + "\n").encode())


def json_text(document, **options) -> str:
    """``document`` as standard JSON: numpy numbers as numbers, and a value that is not a
    finite number (a diverged run's loss) as null — Python's json would write NaN and
    Infinity, which jq, JavaScript and strict parsers refuse."""
    return json.dumps(_finite_or_null(document), allow_nan=False, default=_json_default, **options)


def _finite_or_null(value):
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_safetensors(path, tensors: dict, metadata: dict) -> None:
    from safetensors.numpy import save

    blob = save({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                metadata={"numbamlp": json.dumps(metadata, default=_json_default)})
    atomic_write_bytes(path, blob)


def read_safetensors(path, expected_format: str) -> tuple[dict, dict]:
    """(tensors, metadata) from a numbamlp safetensors file; ModelFileError if unusable."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"file not found: {path}")
    try:
        with safe_open(str(path), framework="np") as f:
            raw = (f.metadata() or {}).get("numbamlp")
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path} is not a valid safetensors file ({_first_line(err)})") from None
    try:
        meta = json.loads(raw) if raw is not None else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != expected_format:
        raise ModelFileError(f"{path} is not a {expected_format} file (metadata missing or of another kind)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: unsupported format_version {meta.get('format_version')!r}")
    return tensors, meta


def _first_line(err) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


# ---------------------------------------------------------------- models
def _versions() -> dict:
    """The versions a model file records (None: not installed)."""
    return {package: installed_version(package) for package in ("numbamlp", "numba", "numpy")}


def save_model(model: MLP, path, config: dict | None = None) -> None:
    """Write ``model`` (weights, classes, input transform) and optional training config."""
    tensors = {}
    for i, (W, b) in enumerate(model.params):
        tensors[f"layers.{i}.W"], tensors[f"layers.{i}.b"] = W, b
    for kind, transform in (("input_transform", model.input_transform), ("target_transform", model.target_transform)):
        if transform is not None:
            tensors[f"{kind}.mean"] = np.asarray(transform.mean, dtype=np.float64)
            tensors[f"{kind}.scale"] = np.asarray(transform.scale, dtype=np.float64)
    meta = {
        "format": MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        "task": model.task,
        "layers": model.layers,
        "activation": model.activation,
        "activation_alpha": activation_spec(model.activation).alpha,
        "dtype": model.dtype.name,
        "classes": None if model.classes is None else np.asarray(model.classes).tolist(),
        "feature_names": model.feature_names,
        "feature_dtypes": model.feature_dtypes,
        "table": None if model.table is None else model.table.to_json(),
        "threshold": model.threshold,
        "versions": _versions(),
        "config": config,
    }
    write_safetensors(path, tensors, meta)


# The standardisation a model file may carry: both or neither, float64 (D,) whatever the
# model's dtype (it is applied to the raw features before they are cast to it).
TRANSFORM_TENSORS = ("input_transform.mean", "input_transform.scale")
# A regressor's target standardisation: both or neither, float64 (K,).
TARGET_TENSORS = ("target_transform.mean", "target_transform.scale")


def _check_model_tensors(path, tensors: dict, layers: list, dtype: str) -> None:
    """Every tensor of a model file against what its metadata says: each layer's W (out, in)
    and b (out,) in the model's dtype, the input transform's two float64 (D,) vectors, and
    nothing else.  A tensor the format does not know is refused rather than ignored: it means
    the metadata and the tensors disagree (e.g. layers cut from the metadata, whose weights
    are still there), and a model built from half of a file is not the model that was saved."""
    expected = {}
    for i, (n_in, n_out) in enumerate(zip(layers[:-1], layers[1:])):
        expected[f"layers.{i}.W"] = (dtype, (n_out, n_in))
        expected[f"layers.{i}.b"] = (dtype, (n_out,))
    if any(name in tensors for name in TRANSFORM_TENSORS):
        expected.update({name: ("float64", (layers[0],)) for name in TRANSFORM_TENSORS})
    if any(name in tensors for name in TARGET_TENSORS):
        expected.update({name: ("float64", (layers[-1],)) for name in TARGET_TENSORS})
    for name, (want_dtype, shape) in expected.items():
        array = tensors.get(name)
        if array is None or array.shape != shape or array.dtype.name != want_dtype:
            got = "missing" if array is None else f"{array.dtype.name} {array.shape}"
            raise ModelFileError(f"{path}: tensor {name} should be {want_dtype} {shape}, found {got}")
    unknown = sorted(set(tensors) - set(expected))
    if unknown:
        raise ModelFileError(f"{path}: unexpected tensors {', '.join(unknown)} for a model with layers {layers}")
    for name in expected:
        if not np.isfinite(tensors[name]).all():
            raise ModelFileError(f"{path}: tensor {name} holds NaN or infinite values")
    if TRANSFORM_TENSORS[1] in tensors and not (tensors[TRANSFORM_TENSORS[1]] > 0).all():
        raise ModelFileError(f"{path}: tensor {TRANSFORM_TENSORS[1]} must be positive (it divides the features)")
    if TARGET_TENSORS[1] in tensors and not (tensors[TARGET_TENSORS[1]] > 0).all():
        raise ModelFileError(f"{path}: tensor {TARGET_TENSORS[1]} must be positive (it scales the targets)")


def load_model(path):
    """Read a model written by ``save_model`` (``numbamlp.save_model``, ``numbamlp train``), from its
    file or a directory that holds one (a run directory: its model.safetensors); checks
    everything before use.  (numbamlp.layout.load_model, above, also tells a sweep directory.)"""
    path = Path(path)
    if path.is_dir():
        path = path / DIRECTORY_MODEL_FILE
    tensors, meta = read_safetensors(path, MODEL_FORMAT)
    layers, activation, dtype = meta.get("layers"), meta.get("activation"), meta.get("dtype")
    if not (isinstance(layers, list) and len(layers) >= 2 and all(isinstance(n, int) and n >= 1 for n in layers)):
        raise ModelFileError(f"{path}: invalid layer sizes {layers!r}")
    if activation not in ACTIVATION_NAMES:
        raise ModelFileError(f"{path}: unknown activation {activation!r}")
    if dtype not in ("float32", "float64"):
        raise ModelFileError(f"{path}: unsupported dtype {dtype!r}")
    task = meta.get("task", "classification")  # files from before regression: classifiers
    if task not in TASK_LOSSES:
        raise ModelFileError(f"{path}: unknown task {task!r}")
    if task == "classification" and TARGET_TENSORS[0] in tensors:
        raise ModelFileError(f"{path}: a classifier's file holds a target standardisation")
    _check_model_tensors(path, tensors, layers, dtype)
    params = [(tensors[f"layers.{i}.W"], tensors[f"layers.{i}.b"]) for i in range(len(layers) - 1)]
    model = MLP.from_params(params, activation=activation, dtype=dtype, task=task)
    classes = meta.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or len(classes) != layers[-1]:  # one label per output
            raise ModelFileError(f"{path}: class labels do not match {layers[-1]} outputs")
        model.classes = np.asarray(classes)
    threshold = meta.get("threshold")  # (files from before thresholds: None)
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1 \
                or task != "classification" or layers[-1] != 2:
            raise ModelFileError(f"{path}: a decision threshold {threshold!r} needs a binary classifier and a "
                                 "probability in [0, 1]")
        model.threshold = float(threshold)
    if meta.get("table") is not None:  # (a table's encoding: its raw columns are the features named)
        try:
            model.table = TableEncoder.from_json(meta["table"])
        except ValueError as err:
            raise ModelFileError(f"{path}: {err}") from None
        if model.table.width != layers[0]:
            raise ModelFileError(f"{path}: the table encoding makes {model.table.width} inputs, not {layers[0]}")
    columns = layers[0] if model.table is None else len(model.table.columns)  # (the features a caller gives)
    names = meta.get("feature_names")  # (files from before names: None)
    if names is not None:
        if not (isinstance(names, list) and len(names) == columns and all(isinstance(n, str) for n in names)
                and len(set(names)) == len(names)) or (model.table is not None and names != model.table.columns):
            raise ModelFileError(f"{path}: feature names do not match {columns} inputs")
        model.feature_names = names
    dtypes = meta.get("feature_dtypes")  # (files from before dtypes: None)
    if dtypes is not None:
        if not (isinstance(dtypes, list) and len(dtypes) == columns and all(isinstance(d, str) for d in dtypes)):
            raise ModelFileError(f"{path}: feature dtypes do not match {columns} inputs")
        model.feature_dtypes = dtypes
    if TRANSFORM_TENSORS[0] in tensors:
        model.input_transform = Standardizer(*(tensors[name] for name in TRANSFORM_TENSORS))
    if TARGET_TENSORS[0] in tensors:
        model.target_transform = Standardizer(*(tensors[name] for name in TARGET_TENSORS))
    model.metadata = meta
    return model


# ---------------------------------------------------------------- checkpoints
def save_checkpoint(directory, trainer, config: dict) -> None:
    """Everything ``Trainer.restore`` needs, in ``directory/state.safetensors``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays, meta = trainer.state()
    meta.update(format=CHECKPOINT_FORMAT, format_version=FORMAT_VERSION, config=config,
                classes=np.asarray(trainer.classes_).tolist(), activation=trainer.model.activation,
                dtype=trainer.model.dtype.name)
    write_safetensors(directory / "state.safetensors", arrays, meta)


def load_checkpoint(directory) -> tuple[dict, dict]:
    """(arrays, metadata) of a checkpoint directory."""
    return read_safetensors(Path(directory) / "state.safetensors", CHECKPOINT_FORMAT)
