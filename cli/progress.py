"""Training progress as the terminal shows it: one line per epoch, or, on a terminal that
redraws, one line redrawn as training goes (train); the per-epoch line is also how
`numbamlp jobs logs` shows a service job's epochs.
"""

from __future__ import annotations

import os
import sys

import click


def progress_display(epochs: int):
    """train's display of its epochs: the redrawn line on a terminal, else plain lines."""
    # (a terminal that cannot redraw a line, TERM=dumb, gets the plain lines too)
    redraws = sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
    return ProgressBar(epochs) if redraws else EpochLines(epochs)


class EpochLines:
    """One plain line per epoch (when stdout is not a terminal that redraws)."""

    def __init__(self, epochs: int):
        self.width, self.epochs = len(str(epochs)), epochs

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        click.echo(epoch_text(metrics, self.width, self.epochs))

    def close(self) -> None:
        pass


class ProgressBar:
    """One line on the terminal, redrawn as training goes (the trainer reports within each
    epoch, at most ~10 times a second): epoch, a bar over all epochs, the running loss of
    the epoch, the last epoch's validation metrics and the time left."""

    WIDTH = 24

    def __init__(self, epochs: int):
        import time

        self.epochs, self.clock = epochs, time.perf_counter
        self.first = None  # (time, fraction done) at the first report: a resumed run starts late
        self.last_epoch_text = ""

    def _draw(self, epoch: int, done: float, loss: float) -> None:
        """done: the fraction of all epochs finished, in [0, 1]."""
        now = self.clock()
        if self.first is None:
            self.first = (now, done)
        start, done_at_start = self.first
        eta = (now - start) / (done - done_at_start) * (1.0 - done) if done > done_at_start else None
        filled = int(round(self.WIDTH * done))
        line = (f"epoch {epoch}/{self.epochs} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {100 * done:3.0f}%"
                f"  loss {loss:.4f}{self.last_epoch_text}  eta {_clock_text(eta)}")
        click.echo(f"\r{line}\x1b[K", nl=False)

    def on_progress(self, epoch: int, rows_done: int, rows_total: int, loss: float) -> None:
        self._draw(epoch, (epoch - 1 + rows_done / rows_total) / max(self.epochs, 1), loss)

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        if "val_accuracy" in metrics:
            self.last_epoch_text = f"  val_loss {metrics['val_loss']:.4f}  val_acc {metrics['val_accuracy']:.4f}"
        self._draw(epoch, epoch / max(self.epochs, 1), metrics["loss"])

    def close(self) -> None:
        if self.first is not None:
            click.echo()


def _clock_text(seconds) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes:02d}:{secs:02d}"


def epoch_text(metrics: dict, width: int, epochs: int) -> str:
    """One epoch's line: its number (right-aligned in ``width``) of ``epochs``, loss, validation
    metrics where there are any, and seconds."""
    line = f"epoch {metrics['epoch']:>{width}}/{epochs}  loss {metrics['loss']:.4f}"
    if "val_accuracy" in metrics:
        line += f"  val_loss {metrics['val_loss']:.4f}  val_acc {metrics['val_accuracy']:.4f}"
    return line + f"  ({metrics['seconds']:.2f}s)"
