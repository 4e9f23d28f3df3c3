"""``numbamlp eval``: a model scored on labelled rows (a run directory: the test rows it held
out): for a classifier, loss, accuracy, balanced accuracy, macro F1, per-class precision and
recall, and the confusion matrix; for a regressor, R², MSE and MAE.
"""

from __future__ import annotations

from pathlib import Path

import click

from numbamlp.cli.common import CliError, load_model
from numbamlp.cli.config_flags import header_option
from numbamlp.cli.predictions import finite_outputs, trained_label_column


@click.command("eval")
@click.argument("model_path", metavar="MODEL")
@click.option("--data", help="builtin:NAME, .csv or .parquet with labels, .npz (X, y) or a folder of X.npy "
              "and y.npy; default for a run directory: the test rows that run held out.")
@click.option("--label-column", help="CSV or Parquet label column by name or 0-based index (default: the one the "
              "model was trained with, when the file has it, else the last).")
@header_option
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
def evaluate(model_path, data, label_column, header, as_json):
    """Loss, accuracy, balanced accuracy, macro F1, per-class precision/recall and the
    confusion matrix of MODEL on --data (a run directory: on its held-out test rows); for a
    regressor, R², MSE and MAE in the targets' units.

    MODEL is a .safetensors model file or a run directory (its model.safetensors).
    """
    import numpy as np
    from sklearn.metrics import balanced_accuracy_score, f1_score

    from numbamlp.data import (check_feature_count, check_header_applies, check_label_column_applies,
                               evaluation_label, feature_columns, feature_names, header_for_model, load_dataset)
    from numbamlp.io import json_text
    from numbamlp.model import mean_cross_entropy
    from numbamlp.run import held_out_test_split

    model = load_model(model_path)
    try:
        if data is not None:
            check_label_column_applies(label_column, data)
            check_header_applies(header, data)
            header = header_for_model(data, model.feature_names, header)
            column = evaluation_label(data, label_column, trained_label_column(model.metadata))
            dataset = load_dataset(data, label_column=column, task=model.task, header=header)
            X, labels, source = dataset.X, dataset.y, data
            named = feature_names(data, column, header) if model.feature_names is not None else None
            if named is not None:  # (the file's features by name, in the model's order)
                X = X[:, feature_columns(named, model.feature_names, data)]
        elif header is not None:
            raise CliError("--header/--no-header are for --data (a run's held-out test rows are read as it read them)")
        elif Path(model_path).is_dir():
            X, labels = held_out_test_split(model_path)
            source = f"the test rows {model_path} held out"
        else:
            raise CliError("--data is needed with a model file (a run directory defaults to its held-out test rows)")
        check_feature_count(X, model.n_features, source)
        S = finite_outputs(model.scores(X))
    except ValueError as err:
        raise CliError(str(err)) from None
    if model.task == "regression":
        targets = 1 if labels.ndim == 1 else labels.shape[1]
        if targets != model.n_classes:
            raise CliError(f"{source} has {targets} target column{'s' if targets != 1 else ''} but the model has "
                           f"{model.n_classes} outputs")
        _evaluate_regressor(model, S, labels, as_json)
        return
    classes = model.classes if model.classes is not None else np.arange(model.n_classes)
    lookup = {label: i for i, label in enumerate(classes.tolist())}
    unknown = sorted({str(v) for v in labels.tolist() if v not in lookup})
    if unknown:
        raise CliError(f"{source} has labels the model does not know: {', '.join(unknown[:5])}")
    y = np.array([lookup[v] for v in labels.tolist()])
    predicted = np.argmax(S, axis=1)
    loss = mean_cross_entropy(S, y)
    confusion = _confusion_matrix(y, predicted, len(classes))
    per_class = _per_class_scores(confusion, classes.tolist())
    result = {"loss": loss, "accuracy": float(np.mean(predicted == y)),
              "balanced_accuracy": _quietly(balanced_accuracy_score, y, predicted),
              "macro_f1": _quietly(f1_score, y, predicted, average="macro", zero_division=0),
              "rows": int(len(y)), "data": source, "per_class": per_class, "confusion_matrix": confusion.tolist()}
    if as_json:
        click.echo(json_text(result))
        return
    click.echo(f"accuracy {result['accuracy']:.4f}  balanced accuracy {result['balanced_accuracy']:.4f}  "
               f"macro F1 {result['macro_f1']:.4f}  loss {loss:.4f}  ({len(y)} rows: {source})")
    click.echo(f"{'class':>12} {'precision':>9} {'recall':>7} {'support':>8}")
    for row in per_class:
        click.echo(f"{str(row['class']):>12} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['support']:>8}")
    click.echo("confusion matrix (rows: true class, columns: predicted)")
    cell = max(len(str(confusion.max())), max(len(str(c)) for c in classes.tolist()))
    click.echo(" " * (cell + 1) + " ".join(f"{str(c):>{cell}}" for c in classes.tolist()))
    for label, row in zip(classes.tolist(), confusion):
        click.echo(f"{str(label):>{cell}} " + " ".join(f"{v:>{cell}}" for v in row))


# The one confusion matrix in numbamlp: the library computes none (numbamlp.metrics holds
# the regression metrics only), so eval keeps it here; it belongs in numbamlp.metrics.
def _confusion_matrix(y, predicted, n_classes: int):
    """(C, C) int counts: row = true class index, column = predicted class index."""
    import numpy as np

    confusion = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(confusion, (y, predicted), 1)
    return confusion


def _per_class_scores(confusion, classes: list) -> list[dict]:
    """Each class's support, precision and recall from the confusion matrix (0.0 where a
    class is never predicted, or never present)."""
    per_class = []
    for k, label in enumerate(classes):
        predicted_k, actual_k = confusion[:, k].sum(), confusion[k, :].sum()
        per_class.append({
            "class": label, "support": int(actual_k),
            "precision": float(confusion[k, k] / predicted_k) if predicted_k else 0.0,
            "recall": float(confusion[k, k] / actual_k) if actual_k else 0.0,
        })
    return per_class


def _quietly(metric, *args, **kwargs) -> float:
    """A scikit-learn metric without its warnings (a class the data lacks is a normal case
    for eval: the score says so; stderr stays one line per error)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(metric(*args, **kwargs))


def _evaluate_regressor(model, S, targets, as_json: bool) -> None:
    """eval's report for a regressor: R², MSE, MAE (numbamlp.metrics.regression_metrics) of
    its predictions from outputs S (N, K) against the targets."""
    from numbamlp.io import json_text
    from numbamlp.metrics import regression_metrics

    result = {"rows": len(S), **regression_metrics(targets, model.values(S))}
    if as_json:
        click.echo(json_text(result))
        return
    click.echo(f"R² {result['r2']:.4f}  MSE {result['mse']:.6g}  MAE {result['mae']:.6g}  ({result['rows']} rows)")
