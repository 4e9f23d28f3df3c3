"""Paths a user names for numbamlp to write: checked before any work starts, claimed atomically.

Every command that writes checks its output paths first with ``check_output_file`` or
``check_output_directory``, so a typo in ``--out`` costs a one-line error, not a
finished training run.  A new run directory is created with ``claim_run_directory``:
choosing the name and creating it is one step, so two runs started together never share
a directory.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path


class OutputPathError(ValueError):
    """A path numbamlp was asked to write that cannot be written, with a message for the user."""


class RunDirectoryTaken(OutputPathError):
    """The named run directory already holds a run."""

    def __init__(self, directory):
        super().__init__(f"{directory} already holds a run; choose another --out or pass --overwrite")


def _probe_writable(folder: Path, what: str) -> None:
    """Create and remove a file in ``folder``: the only check that sees read-only mounts,
    /proc, permissions and root alike."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".numbamlp-probe-")
    except OSError as err:
        raise OutputPathError(f"cannot write {what}: cannot create files in {folder} ({err.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def _nearest_existing(path: Path) -> Path:
    """The deepest existing ancestor of ``path`` (``path`` itself if it exists)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def check_output_file(path, overwrite: bool = False, what: str = "the output file") -> Path:
    """``path`` can be written as a new file: its folder exists and is writable, and it is
    not a directory (nor an existing file, unless ``overwrite``)."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a directory; name a file")
    folder = path.parent
    if not folder.exists():
        raise OutputPathError(f"cannot write {what} {path}: folder {folder} does not exist")
    if not folder.is_dir():
        raise OutputPathError(f"cannot write {what} {path}: {folder} is a file, not a folder")
    if path.exists() and not overwrite:
        raise OutputPathError(f"{what} {path} exists; choose another name or pass --overwrite")
    _probe_writable(folder, f"{what} {path}")
    return path


def check_output_directory(path, what: str = "the run directory") -> Path:
    """``path`` is, or can be created as, a directory: no file stands in its way and its
    nearest existing ancestor is a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{what} {path} exists and is a file, not a directory")
    ancestor = _nearest_existing(path)
    if not ancestor.is_dir():
        raise OutputPathError(f"cannot create {what} {path}: {ancestor} is a file, not a folder")
    _probe_writable(ancestor, f"{what} {path}")
    return path


def default_run_name(parent: str = "runs") -> Path:
    """runs/<UTC timestamp> (or sweeps/...): the first candidate ``claim_run_directory`` tries."""
    return Path(parent) / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def claim_run_directory(path, claim_file: str, overwrite: bool = False, parent: str = "runs") -> Path:
    """Create the run directory and claim it for this run; returns it.

    ``path`` None: <parent>/<UTC timestamp>, created exclusively, or the next free name
    (``-2``, ``-3``, ...) when another run has it.  A named ``path`` may exist (empty, or
    holding a run when ``overwrite``); the claim is ``claim_file`` created exclusively in it,
    so of two runs started together on the same directory, one is refused.
    """
    try:
        if path is None:
            base = default_run_name(parent)
            base.parent.mkdir(parents=True, exist_ok=True)
            n = 1
            while True:
                candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
                try:
                    candidate.mkdir()
                    return candidate
                except FileExistsError:
                    n += 1
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(directory / claim_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            if not overwrite:
                raise RunDirectoryTaken(directory) from None
        return directory
    except OSError as err:
        raise OutputPathError(f"cannot create the run directory {path or base}: {err.strerror or err}") from None


@contextlib.contextmanager
def directory_lock(directory: Path, in_use: Exception):
    """Held while a process works in ``directory`` (a run training, a server serving): a
    second one meanwhile gets ``in_use`` (the caller's error, saying what uses it) rather than
    both writing its files.  An OS lock (flock on ``directory/.lock``), so a process that
    crashed holds nothing.  (Without fcntl, as on Windows: no lock.)"""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(Path(directory) / ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise in_use from None
        yield
