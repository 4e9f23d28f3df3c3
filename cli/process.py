"""The console process around a command: Python's garbage collector held off while the
command starts up, standard output that outlives its reader, and the library's data notes
as plain lines on stderr.

cli/main.py's ``command_line`` and root group set these up; train ends the start-up after its
first epoch (``StartupEnds``), every other command as it starts.
"""

from __future__ import annotations

import gc
import os

import click

# The console script holds Python's garbage collector off while the command starts up.
# Start-up (importing Numba, loading the compiled kernels from the cache) allocates several
# hundred thousand objects that live until exit, and none of them is garbage, yet the
# collector walks them again and again as they pile up: ~0.1 s of a warm `numbamlp train`
# (bench/README.md).  When start-up is over they are frozen (left out of every later
# collection) and the collector runs as usual.
_collector_held_off = False


def hold_collector_off() -> None:
    """No garbage collection until ``end_of_startup`` (where the collector runs at all)."""
    global _collector_held_off
    if gc.isenabled():
        _collector_held_off = True
        gc.disable()


def end_of_startup() -> None:
    """Start-up is over: what it allocated is frozen and the collector runs again."""
    global _collector_held_off
    if _collector_held_off:
        _collector_held_off = False
        gc.freeze()
        gc.enable()


class StartupEnds:
    """Training callback: start-up is over when the first epoch ends."""

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        end_of_startup()

    def close(self) -> None:
        pass


class OutputThatOutlivesItsReader:
    """The console script's stdout: when its reader goes away (``numbamlp train | head -2``),
    the rest goes to /dev/null and the command carries on — a run finishes and writes its
    directory — instead of dying half-way, silently, on a BrokenPipeError.  Everything
    else is the real stream's."""

    def __init__(self, stream):
        self._stream = stream

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._to_devnull()

    def _to_devnull(self) -> None:
        # (onto the descriptor itself: what the stream still buffers then flushes there, at exit too)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)


def say_data_notes() -> None:
    """numbamlp.data's DataNotes as "note: ..." lines on stderr (not Python's warning format,
    with its file and line of numbamlp's code)."""
    import warnings

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__name__ == "DataNote":
            click.echo(f"note: {message}", err=True)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
