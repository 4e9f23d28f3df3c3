"""``numbamlp jobs``: a numbamlp service's client on the command line: submit, list, show,
cancel, logs, download, and predict with a job's model on the service (the same CSV as
`numbamlp predict`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from numbamlp.cli.common import CliError, check_output_file
from numbamlp.cli.config_flags import one_run_config, train_flags, validated, with_flags
from numbamlp.cli.predictions import finite_outputs, prediction_flags, trained_label_column, write_predictions
from numbamlp.cli.progress import epoch_text
from numbamlp.job_status import STATUSES


@click.group()
@click.option("--url", envvar="NUMBAMLP_URL", default="http://127.0.0.1:8000", show_default=True,
              help="The service's address (also NUMBAMLP_URL).")
@click.option("--token-file", type=click.Path(dir_okay=False), help="File holding the token (default: NUMBAMLP_TOKEN).")
@click.pass_context
def jobs(ctx, url, token_file):
    """Submit, list, watch, cancel and download training jobs of a numbamlp service, and predict with them."""
    token = os.environ.get("NUMBAMLP_TOKEN")
    if token_file is not None:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as err:
            raise CliError(f"cannot read the token file {token_file}: {err.strerror}") from None
    from numbamlp.client import Client

    try:
        ctx.obj = Client(url, token)
    except ValueError as err:  # (an address that is no URL)
        raise CliError(f"--url: {err}") from None


def _service_call(call):
    from numbamlp.client import ServiceError

    try:
        return call()
    except (ServiceError, ValueError) as err:  # (ValueError: a job id that is no id)
        raise CliError(str(err)) from None


@jobs.command("submit")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML or JSON config file.")
@train_flags
@click.option("--idempotency-key", help="Retrying with the same key returns the same job.")
@click.pass_obj
def jobs_submit(client, config_file, idempotency_key, **flags):
    """Submit a job (train's flags and config file); prints its id.  A local data file
    (--data, --test, --val: .npz, .parquet or .csv) is uploaded first and named by its
    dataset id, since the service reads only builtin and uploaded data."""
    flags = {name.replace("__", "."): value for name, value in flags.items()}
    document = with_flags(one_run_config(config_file), flags)
    validated(document, flags)
    document = _with_uploaded_data(client, document)
    job = _service_call(lambda: client.submit(document, idempotency_key))
    click.echo(job["id"])


def _with_uploaded_data(client, document: dict) -> dict:
    """The config with every local file among data.train, data.test and data.val uploaded
    (POST /v1/datasets, stored by content, so a second upload costs the transfer only) and
    replaced by dataset:<id>."""
    from numbamlp.config import names_a_file

    data = dict(document.get("data") or {})
    for key, flag in (("train", "--data"), ("test", "--test"), ("val", "--val")):
        source = data.get(key)
        if not names_a_file(source):
            continue
        path = Path(source)
        if path.is_dir():
            raise CliError(f"{flag} {source}: a folder cannot be sent to the service; send it as an .npz, "
                           ".parquet or .csv file")
        if not path.is_file():
            raise CliError(f"{flag} {source}: data file not found")
        uploaded = _service_call(lambda: client.upload_dataset(path, data.get("label_column")))
        data[key] = f"dataset:{uploaded['id']}"
    return {**document, "data": data} if data else document


@jobs.command("list")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--owner", metavar="NAME", help="Only the jobs of this token name ('numbamlp serve token list').")
@click.option("--json", "as_json", is_flag=True, help="Print the page as JSON.")
@click.pass_obj
def jobs_list(client, status, limit, owner, as_json):
    """The newest jobs: id, owner, status, stack, test accuracy."""
    page = _service_call(lambda: client.jobs(status, limit, owner=owner))
    if as_json:
        click.echo(json.dumps(page))
        return
    for job in page["jobs"]:
        stack = f"stack {job['stack']['id']} ({job['stack']['size']})" if job["stack"] else ""
        scores = job["scores"] or {}
        accuracy = next((f"{name} {scores[name]:.4f}" for name in ("test_accuracy", "test_r2")
                         if scores.get(name) is not None), "")
        click.echo(f"{job['id']}  {job['owner'] or '-':<12}  {job['status']:<9}  {stack:<20}  {accuracy}".rstrip())


@jobs.command("show")
@click.argument("job_id")
@click.pass_obj
def jobs_show(client, job_id):
    """One job as JSON."""
    click.echo(json.dumps(_service_call(lambda: client.job(job_id)), indent=1))


@jobs.command("cancel")
@click.argument("job_id")
@click.pass_obj
def jobs_cancel(client, job_id):
    """Cancel a queued or running job."""
    job = _service_call(lambda: client.cancel(job_id))
    click.echo(f"{job['id']}  {job['status']}{' (cancelling)' if job['cancel_requested'] and job['status'] == 'running' else ''}")


@jobs.command("logs")
@click.argument("job_id")
@click.pass_obj
def jobs_logs(client, job_id):
    """Follow a job's epochs until it ends (a finished job's history at once)."""
    def follow():
        epochs = client.job(job_id)["config"]["epochs"]
        for epoch, metrics in client.events(job_id):
            if epoch != "end":
                click.echo(epoch_text(metrics, len(str(epochs)), epochs))
                continue
            scores = metrics.get("scores") or {}
            score = next((f"  test {name[5:].replace('_', ' ')} {scores[name]:.4f}"
                          for name in ("test_accuracy", "test_r2") if scores.get(name) is not None), "")
            click.echo(f"{metrics['status']}{score}" + (f"  {metrics['error']}" if metrics.get("error") else ""))

    _service_call(follow)


@jobs.command("download")
@click.argument("job_id")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), required=True, help="Where to write the model.")
@click.option("--overwrite", is_flag=True, help="Allow --out to replace an existing file.")
@click.pass_obj
def jobs_download(client, job_id, out_file, overwrite):
    """Download a succeeded job's model file."""
    check_output_file(out_file, overwrite)
    click.echo(str(_service_call(lambda: client.download(job_id, out_file, overwrite=overwrite))))


REQUEST_BYTES = 16_000_000  # jobs predict: this much JSON a request at most (the service's --max-request-mb: 64)


@jobs.command("predict")
@click.argument("job_id")
@click.option("--data", required=True, help="builtin:NAME, .npz (X), a folder holding X.npy, or .csv or .parquet, "
              "read as `numbamlp predict` reads it (the model's features by name when it knows them).")
@prediction_flags
@click.option("--rows-per-request", type=click.IntRange(min=1), default=8192, show_default=True,
              help="Rows sent in one request at most: fewer for wide rows (16 MB of JSON at most), and half as "
              "many while the service refuses a request as too large.")
@click.pass_obj
def jobs_predict(client, job_id, data, header, label_column, proba, out_file, overwrite, rows_per_request):
    """Predict with a succeeded job's model on the service, for the rows of --data: the same
    CSV as `numbamlp predict` writes.  The model's features, classes and label column come
    from its file's header (GET /v1/jobs/JOB/model, read up to its weights, which are not
    downloaded); the rows go to POST /v1/jobs/JOB/predict a chunk at a time."""
    import numpy as np

    from numbamlp.client import ServiceError
    from numbamlp.data import check_header_applies, check_label_column_applies, header_for_model, read_features

    if out_file == "-":  # (the usual name of standard output)
        out_file = None
    if out_file:
        check_output_file(out_file, overwrite)
    metadata = _service_call(lambda: client.model_metadata(job_id))
    task, layers = metadata.get("task", "classification"), metadata["layers"]
    if proba and task == "regression":
        raise CliError("--proba is for classifiers; this model is a regressor (its predictions are values)")
    table = _table_encoding(metadata)
    try:
        check_label_column_applies(label_column, data)
        check_header_applies(header, data)
        if table is not None:  # (as numbamlp predict: whether the first row is a header, for its names)
            header = header_for_model(data, metadata.get("feature_names"), header)
        X = read_features(data, layers[0], label_column, task=task, trained_label=trained_label_column(metadata),
                          names=metadata.get("feature_names"), header=header, dtypes=metadata.get("feature_dtypes"),
                          table=table)
    except ValueError as err:
        raise CliError(str(err)) from None
    if table is not None:  # (a table's raw columns, sent as rows by column name: the service encodes them)
        X = _TableRows(X)
        fit = max(1, REQUEST_BYTES // X.row_bytes)
    else:
        fit = max(1, REQUEST_BYTES // (26 * layers[0]))  # (26 bytes: a float's JSON at most, with its ", ")
    step, answers, lo = _scored_together(min(rows_per_request, fit)), [], 0
    while lo < len(X):
        try:
            answers.append(client.predict(job_id, X[lo : lo + step], proba))
        except ServiceError as err:
            # a service with a smaller --max-request-mb answers 413, or, to a body much larger,
            # closes the connection mid-send: while it still answers, send fewer rows
            if step == 1 or not (err.status == 413 or (err.status is None and _answers(client))):
                raise CliError(str(err)) from None
            step = _scored_together(max(1, min(step, len(X) - lo) // 2))
            continue
        lo += step
    if task == "regression":
        values = finite_outputs(np.array([v for answer in answers for v in answer["values"]], dtype=np.float64))
        write_predictions(out_file, outputs=layers[-1], values=values)
        return
    P = finite_outputs(np.array([p for answer in answers for p in answer["proba"]])) if proba else None
    write_predictions(out_file, classes=metadata.get("classes") or list(range(layers[-1])),
                      labels=[label for answer in answers for label in answer["labels"]], proba=P)


def _table_encoding(metadata: dict):
    """The model's table encoding (numbamlp.encoding.TableEncoder) from its file's metadata
    (its ``table`` key), or None for a model of numbers."""
    if metadata.get("table") is None:
        return None
    from numbamlp.encoding import TableEncoder

    try:
        return TableEncoder.from_json(metadata["table"])
    except ValueError as err:
        raise CliError(f"the job's model file holds a table encoding numbamlp cannot read ({err})") from None


class _TableRows:
    """A table's raw columns ({name: float64 (N,) with NaN where missing, or a TextColumn},
    as read_features reads them for the model) as rows by column name: ``rows[lo:hi]`` is
    the list of {column: number, text or None} that POST /v1/jobs/JOB/predict takes (numbers
    as Python's repr writes them, which reads back to the same float64)."""

    def __init__(self, columns: dict):
        import json
        import math

        from numbamlp.encoding import TextColumn

        self.names = list(columns)
        self.values, self.row_bytes = [], 2
        for name, column in columns.items():
            if isinstance(column, TextColumn):
                texts = [*column.texts, None]  # (code -1: missing, the last entry)
                self.values.append([texts[code] for code in column.codes.tolist()])
                widest = max((len(json.dumps(text)) for text in column.texts), default=4)
            else:
                self.values.append([None if math.isnan(v) else v for v in column.tolist()])
                widest = 26  # (a float's JSON at most)
            self.row_bytes += len(json.dumps(name)) + 4 + max(widest, 4)  # (the name, ": ", ", ", the value)
        self.n = len(self.values[0]) if self.values else 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, rows: slice) -> list[dict]:
        return [dict(zip(self.names, cells)) for cells in zip(*(values[rows] for values in self.values))]


def _scored_together(rows: int) -> int:
    """``rows`` rounded down to a multiple of the rows a model scores at a time, where it has
    that many: each request's rows are then scored in the pieces `numbamlp predict` scores
    the file in, to the same bits (a float32 product can round its last bit otherwise by
    where in a piece a row falls)."""
    from numbamlp.model import SCORING_ROWS

    return rows // SCORING_ROWS * SCORING_ROWS if rows >= SCORING_ROWS else rows


def _answers(client) -> bool:
    """Whether the service answers (its /healthz)."""
    from numbamlp.client import ServiceError

    try:
        client.health()
    except ServiceError:
        return False
    return True
