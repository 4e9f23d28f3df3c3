"""A sweep's results: the row of each member, the metric that ranks them, the best one,
the table as CSV, the summary, and ``SweepResult`` (what ``sweep`` returns).

Symbols: K members.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from numbamlp.config import TrainConfig
from numbamlp.metrics import HIGHER_IS_BETTER, TASK_METRICS, check_metric_applies
from numbamlp.sweeps.errors import SweepError

# What a row holds per task: the saved weights' validation metrics (numbamlp.metrics.TASK_METRICS:
# which can rank the members, and which way each is better) and their test metrics.
TASK_COLUMNS = {
    "classification": ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "val_balanced_accuracy", "val_f1",
                       "val_macro_f1", "val_roc_auc", "val_average_precision", "test_balanced_accuracy", "test_f1",
                       "test_macro_f1", "test_roc_auc", "test_average_precision", "test_log_loss"),
    "regression": ("val_r2", "val_mse", "val_loss", "test_r2", "test_mse", "test_mae", "test_loss"),
}
RUN_COLUMNS = ("epochs", "best_epoch", "status", "error", "seconds", "model_path")
# A search's rows: the epoch a pruned trial stopped at, and the earlier trial whose settings
# (and so whose outcome) a trial repeats, when it does (else null).
SEARCH_COLUMNS = ("pruned_epoch", "repeat_of")
RESULT_COLUMNS = (*dict.fromkeys(c for columns in TASK_COLUMNS.values() for c in columns), *RUN_COLUMNS,
                  *SEARCH_COLUMNS)
FINISHED = ("done", "stopped early")  # the statuses whose members can be the best


def metric_for(base: TrainConfig, metric: str | None) -> str:
    """The metric that picks the best member: ``metric``, else the base config's
    early_stopping.metric (the one metric that picks a member's best epoch and the best
    member), else the task's default (TASK_METRICS' first); SweepError for one the task has
    not, or for a ``metric`` other than the base's early_stopping.metric."""
    stopping = base.early_stopping.metric
    if metric is not None and stopping is not None and metric != stopping:
        raise SweepError(f"metric {metric} and the base config's early_stopping.metric {stopping} differ: one metric "
                         "picks each member's best epoch and the best member")
    chosen = metric or stopping or TASK_METRICS[base.task][0]
    try:
        check_metric_applies(chosen, base.task)
    except ValueError as err:
        raise SweepError(str(err)) from None
    return chosen


class SweepResult:
    """What a sweep produced: ``table`` (one row per member, in member order), ``best``
    (the best finished member's row by the metric, None when none finished), ``models``
    (each member's MLP, None where it failed), ``best_model`` and ``summary``."""

    def __init__(self, table: list[dict], models: list, metric: str, summary: dict):
        self.table, self._models, self.metric, self.summary = table, models, metric, summary
        self.best = best_row(table, metric)

    @property
    def models(self) -> list:
        """Each member's MLP, None where it has none (failed, diverged)."""
        return [self._model(member) for member in range(len(self.table))]

    @property
    def best_model(self):
        return None if self.best is None else self._model(self.best["member"])

    def _model(self, member: int):
        """Member ``member``'s MLP: as trained, or, for one an earlier run of a resumed sweep
        trained, read from its model file (once)."""
        path = self.table[member].get("model_path")
        if self._models[member] is None and path:
            from numbamlp.io import load_model

            self._models[member] = load_model(path)
        return self._models[member]

    def to_csv(self, path) -> None:
        from numbamlp.io import atomic_write_bytes

        atomic_write_bytes(Path(path), table_csv(self.table).encode())


def ranked(table: list[dict], metric: str) -> list[dict]:
    """The rows best first: finished members by ``metric`` (higher or lower, as
    HIGHER_IS_BETTER says), ties to the lower validation loss, then the lower member number;
    the others (and those without the metric) last."""
    sign = -1.0 if HIGHER_IS_BETTER[metric] else 1.0

    def order(row):
        loss = row.get("val_loss")
        loss = math.inf if loss is None else loss
        if row["status"] not in FINISHED or row.get(metric) is None:
            return (1, 0.0, loss, row["member"])
        return (0, sign * row[metric], loss, row["member"])

    return sorted(table, key=order)


def best_row(table: list[dict], metric: str) -> dict | None:
    """The best finished row (see ``ranked``); None when no member finished."""
    first = next(iter(ranked(table, metric)), None)
    return first if first is not None and first["status"] in FINISHED and first.get(metric) is not None else None


def grid_column(key: str) -> str:
    """The results column of grid key ``key``: the key itself, or ``grid.<key>`` for a key
    that is also a result's name (``epochs``: the grid's value beside the epochs trained)."""
    return f"grid.{key}" if key in RESULT_COLUMNS else key


def grid_keys(row: dict) -> list[str]:
    """The grid's settings among a row's columns (grid_column's names)."""
    return [key for key in row if key != "member" and key not in RESULT_COLUMNS]


def table_csv(table: list[dict]) -> str:
    """The rows as CSV: a list as JSON text, and an empty cell for None, for a number that is
    not finite (a diverged member's loss) and for a column a row lacks (one a resumed sweep's
    earlier run did not write), as results.jsonl has null."""
    if not table:
        return ""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(column for row in table for column in row)),
                            lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: json.dumps(v) if isinstance(v, list)
                         else None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()})
    return text.getvalue()


def sweep_summary(table: list[dict], metric: str, directory: Path | None, configs: list[TrainConfig]) -> dict[str, Any]:
    """The sweep's summary.json: the best row and its config, counts by status, where the results are."""
    from numbamlp.layout import RESULTS_CSV  # (here: the command line reads METRICS without the file layer)

    best = best_row(table, metric)
    counts: dict[str, int] = {}
    for row in table:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return {
        "members": len(table),
        "task": configs[0].task,
        "metric": metric,
        "best": None if best is None else {
            "row": best, "config": configs[best["member"]].model_dump(mode="json", by_alias=True)},
        "statuses": counts,
        "results_path": None if directory is None else str(directory / RESULTS_CSV),
        "sweep_dir": None if directory is None else str(directory),
    }
