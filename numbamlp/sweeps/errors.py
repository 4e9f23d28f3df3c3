"""The two ways a sweep ends without its result: refused before it starts, or interrupted."""

from __future__ import annotations

from pathlib import Path


class SweepError(ValueError):
    """A sweep that cannot run as asked; the message is one line for the user."""


class SweepInterrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped the sweep: the members finished before it are kept."""

    def __init__(self, directory: Path | None, done: int, total: int):
        kept = f"; their results are in {directory}" if directory is not None else ""
        super().__init__(f"sweep interrupted with {done} of {total} members done{kept}")
        self.directory = directory
