"""What predict, jobs predict and eval share about a model's predictions: the flags and the
CSV of predict and jobs predict (the same file, whether the model runs here or on the
service), the refusal of outputs that are not finite, and the label column a model was
trained with (left out of the features it reads).
"""

from __future__ import annotations

import click

from numbamlp.cli.common import CliError
from numbamlp.cli.config_flags import header_option


def prediction_flags(command):
    """The flags `predict` and `jobs predict` share: what the file holds, what to leave out,
    what to write, where."""
    for option in reversed([
            header_option,
            click.option("--label-column", help="CSV or Parquet column to ignore, by name or 0-based index."),
            click.option("--proba", is_flag=True, help="Also write the probability of every class."),
            click.option("--out", "out_file", type=click.Path(dir_okay=False),
                         help="Write CSV here instead of stdout ('-': stdout)."),
            click.option("--overwrite", is_flag=True, help="Allow --out to replace an existing file.")]):
        command = option(command)
    return command


def finite_outputs(values):
    """values, unless some are not finite: a model whose weights blew up (a diverged
    training's) gives NaN, which would be printed as predictions or scored as a class."""
    import numpy as np

    bad = int(np.sum(~np.isfinite(values).all(axis=tuple(range(1, np.ndim(values))))))
    if bad:
        raise CliError(f"the model's outputs are not finite for {bad} of {len(values)} rows: its weights have "
                       "blown up (a diverged training?)")
    return values


def trained_label_column(metadata):
    """The label column a model was trained with, as its file's metadata (``model.metadata``)
    records it in the config (None when it records none, or the data had none, as builtin
    sets and .npz files)."""
    config = (metadata or {}).get("config") or {}
    return (config.get("data") or {}).get("label_column")


def write_predictions(out_file, classes=None, labels=None, proba=None, outputs=1, values=None,
                      kept=None) -> None:
    """The CSV of `numbamlp predict` and `numbamlp jobs predict`, to ``out_file`` (atomically)
    or stdout (None).  A regressor's ``values`` (N,) or (N, outputs): a column per output
    (prediction, or prediction_0 ...), %.9g.  A classifier's ``labels`` in a prediction
    column and, with ``proba`` (N, C), the probability of each of ``classes`` in p_<class>
    columns, %.6g.  ``kept`` ({name: N cells}, --keep): columns written first, as given."""
    import csv
    import io as text_io

    import numpy as np

    buffer = text_io.StringIO()
    table = csv.writer(buffer, lineterminator="\n")  # quotes class names that hold commas or quotes
    kept = kept or {}
    names = list(kept)
    if values is not None:
        values = np.asarray(values, dtype=np.float64).reshape(-1, outputs)
        table.writerow(names + (["prediction"] if outputs == 1 else [f"prediction_{k}" for k in range(outputs)]))
        table.writerows([[kept[name][i] for name in names] + [f"{v:.9g}" for v in row]
                         for i, row in enumerate(values)])
        rows = len(values)
    else:
        table.writerow(names + ["prediction"] + ([f"p_{c}" for c in classes] if proba is not None else []))
        for i, label in enumerate(labels):
            table.writerow([kept[name][i] for name in names] + [label]
                           + ([f"{p:.6g}" for p in proba[i]] if proba is not None else []))
        rows = len(labels)
    if out_file:
        from numbamlp.io import atomic_write_bytes

        atomic_write_bytes(out_file, buffer.getvalue().encode())
        click.echo(f"wrote {rows} predictions to {out_file}", err=True)
    else:
        click.echo(buffer.getvalue(), nl=False)
