"""numpy's files: an ``.npz`` archive of arrays ``X``, ``y`` and optionally ``X_test``,
``y_test`` (never unpickled; X streamed out of the archive into the array it ends up in),
and a folder holding ``X.npy`` and ``y.npy`` (optionally ``X_test.npy``, ``y_test.npy``;
X memory-mapped, read through the map, never loaded whole).

Symbols: N rows, D features.  X (N, D), y (N,).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from numbamlp.arrays import DataError, array_dtypes, row_chunks
from numbamlp.data.checks import check_arrays
from numbamlp.data.dataset import Dataset, _reason
from numbamlp.data.memory import allocate_features


def _read_npz(path: Path, dtype, labels: bool = True) -> Dataset:
    """An .npz archive: X and X_test streamed into arrays of ``dtype``, y and y_test loaded.
    labels False (prediction): X alone is needed and read (y None)."""
    import zipfile

    # numpy reads a file that is not a zip archive as a pickle (and then says so): look first
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path} is not a valid .npz archive (not a zip file)")
    try:
        with zipfile.ZipFile(path) as archive, np.load(path, allow_pickle=False) as lazy:
            keys = lazy.files
            for key in ("X", "y") if labels else ("X",):
                if key not in keys:
                    raise DataError(f"{path} has no array {key!r} (found: {', '.join(keys) or 'none'})")
            if labels and ("X_test" in keys) != ("y_test" in keys):
                raise DataError(f"{path} has only one of X_test and y_test")
            arrays = {}
            for key in ("X", "y", "X_test", "y_test") if labels else ("X",):
                if key in keys:
                    streamed = _stream_npy(archive, f"{key}.npy", dtype, str(path)) if key.startswith("X") else None
                    arrays[key] = streamed if streamed is not None else lazy[key]
            file_dtypes = _npz_feature_dtypes(archive, arrays["X"]) if labels else None
    except DataError:
        raise
    except ValueError as err:
        if "pickle" in str(err):
            raise DataError(f"{path} holds object arrays (pickled data), which numbamlp never loads") from None
        raise DataError(f"cannot read {path} as .npz ({_reason(err)})") from None
    except Exception as err:  # a corrupt or truncated archive or member
        raise DataError(f"cannot read {path} as .npz ({_reason(err)})") from None
    return Dataset(arrays["X"], arrays.get("y"), arrays.get("X_test"), arrays.get("y_test"), name=str(path),
                   owned=True, feature_dtypes=file_dtypes)


def _npy_header(f) -> tuple | None:
    """(shape, fortran_order, dtype) of the .npy file ``f`` opens at its start, ``f`` then
    at its data; None for a format version numpy's readers here do not know."""
    from numpy.lib import format as npy

    version = npy.read_magic(f)
    readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    return readers[version](f) if version in readers else None


def _npz_feature_dtypes(archive, X: np.ndarray) -> list[str] | None:
    """The dtype of each column of an archive's X.npy as the file holds it (X, the array
    read from it, may be of the training dtype)."""
    with archive.open("X.npy") as f:
        header = _npy_header(f)
    if header is None or len(header[0]) != 2:
        return array_dtypes(X)
    return [header[2].name] * header[0][1]


def _stream_npy(archive, member: str, dtype, source: str) -> np.ndarray | None:
    """A 2-D numeric .npy member of a zip archive read in chunks into a new (N, D) array of
    ``dtype`` (never a whole copy in the file's dtype); None for anything else (the caller
    loads it as numpy would, and check_arrays says what is wrong with it)."""
    with archive.open(member) as f:
        header = _npy_header(f)
        if header is None:
            return None
        shape, fortran_order, file_dtype = header
        if len(shape) != 2 or 0 in shape or file_dtype.kind not in "biuf" or file_dtype.hasobject:
            return None
        n, d = shape
        X = allocate_features(n, d, dtype, source)
        if fortran_order:  # column after column
            for j in range(d):
                X[:, j] = _read_exactly(f, n, file_dtype, member)
        else:
            for lo, hi in row_chunks(n, d):
                X[lo:hi] = _read_exactly(f, (hi - lo) * d, file_dtype, member).reshape(hi - lo, d)
    return X


def _read_exactly(f, count: int, dtype, member: str) -> np.ndarray:
    data = f.read(count * dtype.itemsize)
    if len(data) != count * dtype.itemsize:
        raise ValueError(f"{member} is truncated")
    return np.frombuffer(data, dtype=dtype)


NPY_FOLDER_FILES = ("X.npy", "y.npy", "X_test.npy", "y_test.npy")


def _read_npy_folder(path: Path, task: str = "classification", labels: bool = True) -> Dataset:
    """A folder holding X.npy and y.npy (optionally X_test.npy and y_test.npy): the X arrays
    memory-mapped read-only (their pages are read as they are used), the labels loaded.
    labels False (prediction): X.npy alone is needed and mapped (y None, X unchecked)."""
    present = {name[:-4]: path / name for name in NPY_FOLDER_FILES if (path / name).exists()}
    if not labels:
        present = {"X": present["X"]} if "X" in present else {}
    for key in ("X", "y") if labels else ("X",):
        if key not in present:
            raise DataError(f"{path} holds no {key}.npy (found: {', '.join(sorted(p.name for p in path.glob('*.npy'))) or 'no .npy files'})")
    if ("X_test" in present) != ("y_test" in present):
        raise DataError(f"{path} holds only one of X_test.npy and y_test.npy")
    arrays = {}
    for key, file in present.items():
        try:
            arrays[key] = np.load(file, mmap_mode="r" if key.startswith("X") else None, allow_pickle=False)
        except ValueError as err:
            if "pickle" in str(err):
                raise DataError(f"{file} holds object arrays (pickled data), which numbamlp never loads") from None
            raise DataError(f"cannot read {file} as .npy ({_reason(err)}; a file shorter than its header "
                            "says is truncated)") from None
        except OSError as err:  # e.g. mmap failing for lack of address space
            raise DataError(f"cannot map {file} into memory ({_reason(err)}); check `ulimit -v`, or "
                            "convert it to a smaller dtype (float32)") from None
    for X_key, y_key in (("X", "y"), ("X_test", "y_test")):
        if X_key in arrays and y_key in arrays and np.ndim(arrays[X_key]) >= 1 and np.ndim(arrays[y_key]) >= 1 \
                and len(arrays[X_key]) != len(arrays[y_key]):
            raise DataError(f"{path}: {X_key}.npy has {len(arrays[X_key])} rows but {y_key}.npy has "
                            f"{len(arrays[y_key])} labels")
    data = Dataset(arrays["X"], arrays.get("y"), arrays.get("X_test"), arrays.get("y_test"), name=str(path),
                   feature_dtypes=array_dtypes(arrays["X"]))
    if not labels:
        return data
    data.X, data.y = check_arrays(data.X, data.y, str(path), None, task)
    if data.X_test is not None:
        data.X_test, data.y_test = check_arrays(data.X_test, data.y_test, f"{path} (X_test, y_test)", None, task)
    return data
