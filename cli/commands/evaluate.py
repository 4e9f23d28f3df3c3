"""``numbamlp eval``: a model scored on labelled rows (a run directory: the test rows it held
out): for a classifier, loss, accuracy, balanced accuracy, F1 (binary) and macro F1, ROC AUC,
average precision, log loss, per-class precision and recall, and the confusion matrix (the
classes predicted as predict predicts them: a binary model's decision threshold applied);
for a regressor, R², MSE and MAE.
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
    """Loss, accuracy, balanced accuracy, F1 (binary) and macro F1, ROC AUC, average
    precision, log loss, per-class precision/recall and the confusion matrix of MODEL on
    --data (a run directory: on its held-out test rows), the classes as predict predicts them
    (a binary model's decision threshold applied); for a regressor, R², MSE and MAE in the
    targets' units.

    MODEL is a .safetensors model file or a run directory (its model.safetensors).
    """
    from numbamlp.data import (check_feature_count, check_header_applies, check_label_column_applies,
                               evaluation_label, feature_columns, feature_names, header_for_model, load_dataset,
                               read_table_for_model)
    from numbamlp.run import held_out_test_split

    model = load_model(model_path)
    try:
        if data is not None:
            check_label_column_applies(label_column, data)
            check_header_applies(header, data)
            header = header_for_model(data, model.feature_names, header)
            column = evaluation_label(data, label_column, trained_label_column(model.metadata))
            if model.table is not None:  # (a table's raw columns, which the model encodes)
                X, labels = read_table_for_model(data, model.table, column, header, with_label=True, task=model.task)
            else:
                dataset = load_dataset(data, label_column=column, task=model.task, header=header)
                X, labels = dataset.X, dataset.y
                named = feature_names(data, column, header) if model.feature_names is not None else None
                if named is not None:  # (the file's features by name, in the model's order)
                    X = X[:, feature_columns(named, model.feature_names, data)]
            source = data
        elif header is not None:
            raise CliError("--header/--no-header are for --data (a run's held-out test rows are read as it read them)")
        elif Path(model_path).is_dir():
            X, labels = held_out_test_split(model_path)
            source = f"the test rows {model_path} held out"
        else:
            raise CliError("--data is needed with a model file (a run directory defaults to its held-out test rows)")
        if model.table is None:
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
    _evaluate_classifier(model, S, labels, source, as_json)


def _evaluate_classifier(model, S, labels, source: str, as_json: bool) -> None:
    """eval's report for a classifier: from its scores S (N, C) against the labels (N,), the
    loss (the mean cross-entropy), numbamlp.metrics.classification_metrics of the probabilities
    (two classes: F1, ROC AUC and average precision of the second, the positive class), the
    macro F1, each class's precision, recall and support, and the confusion matrix."""
    import numpy as np

    from numbamlp.io import json_text
    from numbamlp.metrics import (classification_metrics, confusion_matrix, cross_entropies_and_probabilities, macro_f1,
                                  predicted_classes)

    classes = model.classes if model.classes is not None else np.arange(model.n_classes)
    lookup = {label: i for i, label in enumerate(classes.tolist())}
    unknown = sorted({str(v) for v in labels.tolist() if v not in lookup})
    if unknown:
        raise CliError(f"{source} has labels the model does not know: {', '.join(unknown[:5])}")
    y = np.array([lookup[v] for v in labels.tolist()], dtype=np.int64)
    losses, probabilities = cross_entropies_and_probabilities(S[None], y)
    scores = classification_metrics(y, probabilities[0], len(classes), model.threshold)  # (what predict says)
    confusion = confusion_matrix(y, predicted_classes(probabilities[0], model.threshold), len(classes))
    per_class = _per_class_scores(confusion, classes.tolist())
    binary = len(classes) == 2
    result = {"loss": float(losses[0]), "accuracy": scores["accuracy"], "balanced_accuracy": scores["balanced_accuracy"],
              "macro_f1": macro_f1(confusion),
              **({"f1": scores["f1"], "positive_class": classes.tolist()[1]} if binary else {}),
              "roc_auc": scores["roc_auc"], "average_precision": scores["average_precision"],
              "log_loss": scores["log_loss"],
              "rows": int(len(y)), "data": source, "per_class": per_class, "confusion_matrix": confusion.tolist()}
    if as_json:
        click.echo(json_text(result))
        return
    click.echo(f"accuracy {_shown(result['accuracy'])}  balanced accuracy {_shown(result['balanced_accuracy'])}  "
               f"macro F1 {_shown(result['macro_f1'])}  loss {result['loss']:.4f}  ({len(y)} rows: {source})")
    of_what = (f"of class {result['positive_class']}, the positive class" if binary
               else "one-vs-rest: the mean over the classes present")
    click.echo(f"log loss {_shown(result['log_loss'])}  " + (f"F1 {_shown(result['f1'])}  " if binary else "")
               + f"ROC AUC {_shown(result['roc_auc'])}  average precision {_shown(result['average_precision'])}"
               f"  ({of_what})")
    click.echo(f"{'class':>12} {'precision':>9} {'recall':>7} {'support':>8}")
    for row in per_class:
        click.echo(f"{str(row['class']):>12} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['support']:>8}")
    click.echo("confusion matrix (rows: true class, columns: predicted)")
    cell = max(len(str(confusion.max())), max(len(str(c)) for c in classes.tolist()))
    click.echo(" " * (cell + 1) + " ".join(f"{str(c):>{cell}}" for c in classes.tolist()))
    for label, row in zip(classes.tolist(), confusion):
        click.echo(f"{str(label):>{cell}} " + " ".join(f"{v:>{cell}}" for v in row))


def _shown(value) -> str:
    """A metric as the report prints it: 4 decimals, "undefined" for None (a ROC AUC with one
    class present)."""
    return "undefined" if value is None else f"{value:.4f}"


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
