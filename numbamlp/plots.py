"""Training curves of a run directory (matplotlib, an optional extra)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from numbamlp.layout import CONFIG_FILE, METRICS_FILE, sweep_directory_note


class PlotError(ValueError):
    """The plot cannot be made, with a message for the user."""


def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise PlotError(sweep_directory_note(run_dir)
                        or f"{run_dir} has no {METRICS_FILE} (is it a numbamlp run directory?)")
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise PlotError(f"{path} is not valid JSON lines ({err.msg} at line {err.lineno})") from None
    if not rows:
        raise PlotError(f"{path} holds no epochs yet")
    return rows


def _task(run_dir, rows: list[dict]) -> str:
    """The run's task: its config.json's, else what its metrics show (val_r2: regression)."""
    try:
        return json.loads((Path(run_dir) / CONFIG_FILE).read_text()).get("task", "classification")
    except (OSError, ValueError, AttributeError):
        return "regression" if any("val_r2" in r for r in rows) else "classification"


def default_plot_path(run_dir) -> Path:
    """Where ``plot_run`` writes without ``out``: RUN_DIR/curves.png."""
    return Path(run_dir) / "curves.png"


def plot_run(run_dir, out=None) -> Path:
    """Loss (train, validation) and validation accuracy (a regressor's: R²) per epoch, written
    as an image in the format ``out``'s suffix names (default RUN_DIR/curves.png)."""
    rows = read_metrics(run_dir)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("plot needs matplotlib: pip install 'numbamlp[plot]'") from None
    from numbamlp.io import atomic_write_bytes

    path = Path(out) if out else default_plot_path(run_dir)
    fig, image_format = plt.figure(), path.suffix.lower().lstrip(".")
    formats = fig.canvas.get_supported_filetypes()
    plt.close(fig)
    if image_format not in formats:
        raise PlotError(f"cannot write {path}: {path.suffix or 'no suffix'} is not an image format matplotlib "
                        f"writes; use one of {', '.join('.' + f for f in sorted(formats))}")
    epochs = [r["epoch"] for r in rows]
    regression = _task(run_dir, rows) == "regression"
    has_val = all("val_loss" in r for r in rows)
    fig, axes = plt.subplots(1, 2 if has_val else 1, figsize=(10 if has_val else 5, 4), squeeze=False)
    loss_ax = axes[0][0]
    loss_ax.plot(epochs, [r["loss"] for r in rows], label="train loss")
    if has_val:
        loss_ax.plot(epochs, [r["val_loss"] for r in rows], label="validation loss")
        score, title = ("val_r2", "R²") if regression else ("val_accuracy", "accuracy")
        score_ax = axes[0][1]
        score_ax.plot(epochs, [r.get(score) for r in rows], color="tab:green")
        score_ax.set(xlabel="epoch", ylabel=f"validation {title}", title=title)
    loss_ax.set(xlabel="epoch", ylabel="½ squared error (standardised targets)" if regression else "cross-entropy",
                title="loss", yscale="log")
    loss_ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format=image_format, dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path
