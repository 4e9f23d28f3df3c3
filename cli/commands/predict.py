"""``numbamlp predict``: a model's predictions (and probabilities) for the rows of a file, as
CSV on stdout or in a file.
"""

from __future__ import annotations

import click

from numbamlp.cli.common import CliError, check_output_file, load_model
from numbamlp.cli.predictions import finite_outputs, prediction_flags, trained_label_column, write_predictions


@click.command()
@click.argument("model_path", metavar="MODEL")
@click.option("--data", required=True, help="builtin:NAME, .npz (X), a folder holding X.npy, or .csv or .parquet: "
              "the model's features by name when it knows them; otherwise a file with one column more leaves out "
              "the label column (--label-column, or the one the model was trained with); labels are never needed.")
@prediction_flags
@click.option("--keep", "keep", multiple=True, metavar="COLUMN",
              help="Copy this column of a CSV or Parquet file (an id, say) into the output, before the "
                   "predictions; repeat for more.")
def predict(model_path, data, header, label_column, proba, out_file, overwrite, keep):
    """Predict labels (and probabilities) for the rows of --data with MODEL, as CSV.

    MODEL is a .safetensors model file or a run directory (its model.safetensors).
    """
    import numpy as np

    from numbamlp.data import (check_header_applies, check_label_column_applies, header_for_model, read_columns,
                               read_features)
    from numbamlp.metrics import predicted_classes
    from numbamlp.model import softmax

    if out_file == "-":  # (the usual name of standard output)
        out_file = None
    if out_file:
        check_output_file(out_file, overwrite)
    model = load_model(model_path)
    kept = None
    if proba and model.task == "regression":
        raise CliError("--proba is for classifiers; this model is a regressor (its predictions are values)")
    try:
        check_label_column_applies(label_column, data)
        check_header_applies(header, data)
        header = header_for_model(data, model.feature_names, header)
        if keep:
            kept = read_columns(data, list(keep), header)
        X = read_features(data, model.n_features, label_column, task=model.task,
                          trained_label=trained_label_column(model.metadata), names=model.feature_names,
                          header=header, dtypes=model.feature_dtypes, table=model.table)
        S = finite_outputs(model.scores(X))
        P = model.values(S) if model.task == "regression" else softmax(S)
    except ValueError as err:
        raise CliError(str(err)) from None
    if model.task == "regression":
        write_predictions(out_file, outputs=model.n_classes, values=P, kept=kept)
        return
    classes = model.classes if model.classes is not None else np.arange(model.n_classes)
    labels = classes[predicted_classes(P, model.threshold)]  # (a binary model's decision threshold applied)
    write_predictions(out_file, classes=classes.tolist(), labels=labels.tolist(), proba=P if proba else None, kept=kept)
