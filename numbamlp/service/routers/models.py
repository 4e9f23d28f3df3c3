"""A succeeded job's model: download its file (GET /v1/jobs/{job_id}/model, ETag = its
sha256) and predict with it (POST /v1/jobs/{job_id}/predict), the model loaded once and
kept while it is among the most recently used (``LoadedModels``, one per app)."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi.responses import FileResponse

from numbamlp.service.dependencies import DataDirDep, StoreDep, existing_job, may_read
from numbamlp.service.files import model_file
from numbamlp.service.schemas import Prediction, PredictRequest

PREDICT_MODELS_KEPT = 16  # loaded models kept for predict, the most recently used

router = APIRouter(tags=["jobs"])


def existing_model_file(data_dir: Path, job: dict, unfinished: int) -> Path:
    """A succeeded job's model file; 404 if it is gone, ``unfinished`` (the status code)
    for a job that is not succeeded."""
    if job["status"] != "succeeded":
        raise HTTPException(unfinished, f"job {job['id']} has no model ({job['status']})")
    path = model_file(data_dir, job)
    if not path.is_file():
        raise HTTPException(404, f"job {job['id']}'s model file is gone from the server (deleted?)")
    return path


class LoadedModels:
    """Models loaded for predict, by job id: the PREDICT_MODELS_KEPT most recently used."""

    def __init__(self):
        self._models: collections.OrderedDict[str, Any] = collections.OrderedDict()  # job id → MLP

    def get(self, job_id: str, path: Path):
        """The job's model, loaded from ``path`` unless kept; 404 if the file cannot be read."""
        if job_id not in self._models:
            from numbamlp.io import ModelFileError, load_model

            try:
                self._models[job_id] = load_model(path)
            except ModelFileError as err:
                raise HTTPException(404, f"job {job_id}'s model file cannot be read: {err}") from None
            while len(self._models) > PREDICT_MODELS_KEPT:  # (the least recently used goes)
                self._models.popitem(last=False)
        self._models.move_to_end(job_id)
        return self._models[job_id]


async def loaded_models(request: Request) -> LoadedModels:
    return request.app.state.loaded_models


@router.get("/v1/jobs/{job_id}/model", dependencies=[Depends(may_read)],
            responses={200: {"content": {"application/octet-stream": {}}}, 304: {"description": "not modified"}})
def download_model(job_id: str, store: StoreDep, data_dir: DataDirDep,
                   if_none_match: str | None = Header(None, alias="If-None-Match")):
    job = existing_job(store, job_id)
    path = existing_model_file(data_dir, job, unfinished=404)
    etag = f'"{job["model_sha256"]}"'
    if if_none_match == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return FileResponse(path, media_type="application/octet-stream", filename=f"{job_id}.safetensors",
                        headers={"ETag": etag})


@router.post("/v1/jobs/{job_id}/predict", response_model=Prediction, dependencies=[Depends(may_read)])
def predict(job_id: str, body: PredictRequest, store: StoreDep, data_dir: DataDirDep,
            models: Annotated[LoadedModels, Depends(loaded_models)]) -> dict:
    """The model's predictions for X (rows of numbers) or rows (by column name), as
    `numbamlp predict` and the model's own predict_proba give them.  A model of a table
    takes its raw columns (numbers, strings, null) and encodes them itself."""
    from numbamlp.metrics import predicted_classes

    job = existing_job(store, job_id)
    model = models.get(job_id, existing_model_file(data_dir, job, unfinished=409))
    if body.rows is not None:
        X = table_rows(body.rows, model) if model.table is not None else number_rows(body.rows, model)
    else:
        X = number_matrix(body, model)
        if model.table is not None:  # (the table's raw columns, in its order: the model encodes them)
            X = {name: X[:, j] for j, name in enumerate(model.table.columns)}
    if model.task == "regression" and body.proba:
        raise HTTPException(422, "a regressor has no class probabilities: leave proba false")
    try:  # (values the model's dtype cannot hold, said as numbamlp predict says them)
        if model.task == "regression":
            return {"labels": None, "proba": None, "values": model.predict(X).tolist()}
        probabilities = model.predict_proba(X)
    except ValueError as err:
        raise HTTPException(422, str(err)) from None
    predicted = predicted_classes(probabilities, model.threshold)  # (a binary model's decision threshold applied)
    labels = model.classes[predicted] if model.classes is not None else predicted
    return {"labels": labels.tolist(), "proba": probabilities.tolist() if body.proba else None}


def number_matrix(body: PredictRequest, model):
    """X (N, D) float64 of the request's X: its columns by name (``columns``) when the model
    knows its features' names, else by position; D the model's features (a table's raw
    columns).  422 for rows of another width, or names the model lacks."""
    import numpy as np

    features = model.n_features if model.table is None else len(model.table.columns)
    width, by_name = features, body.columns is not None and model.feature_names is not None
    if by_name:
        from numbamlp.data import DataError, feature_columns

        if len(set(body.columns)) != len(body.columns):
            raise HTTPException(422, "columns names a column twice")
        try:
            chosen = feature_columns(body.columns, model.feature_names, "columns")
        except DataError as err:
            raise HTTPException(422, str(err)) from None
        width = len(body.columns)
    widths = sorted({len(row) for row in body.X})
    if widths != [width]:
        got = f"rows of {' and '.join(map(str, widths))}" if widths else "no rows"
        what = f"{width} values, one per column" if width != features else f"{width} features"
        raise HTTPException(422, f"X must have rows of {what}, got {got}")
    X = np.asarray(body.X, dtype=np.float64)
    return X[:, chosen] if by_name else X


def _named(rows: list[dict], model) -> list[str]:
    """The model's features' names, each of which every row must hold (422 naming the first
    row and column that lack one; for a model that knows no names, 422 saying to send X)."""
    if not rows:
        raise HTTPException(422, "rows holds no rows")
    names = model.feature_names
    if names is None:
        raise HTTPException(422, f"this model knows no names for its {model.n_features} features (it was trained on "
                            "data without column names): send X, rows of numbers in its features' order")
    for i, row in enumerate(rows):
        absent = next((name for name in names if name not in row), None)
        if absent is not None:
            raise HTTPException(422, f"rows[{i}] has no column {absent!r}, which the model was trained with"
                                + (" (null: a missing value)" if model.table is not None else ""))
    return names


def table_rows(rows: list[dict], model) -> dict:
    """A table model's raw columns {name: [value per row]} from rows by column name, as its
    predict_proba takes them (numbamlp.encoding.table_columns: null or NaN missing, a
    categorical column's values as their text); 422 naming the column whose value is
    infinite.  A text where a number column is: predict_proba's ValueError names it."""
    columns = {}
    for name in _named(rows, model):
        values = columns[name] = [row[name] for row in rows]
        if name not in model.table.categorical:
            infinite = next((i for i, v in enumerate(values) if not isinstance(v, (str, type(None))) and not _finite(v)),
                            None)
            if infinite is not None:
                raise HTTPException(422, f"column {name!r} holds {values[infinite]} in rows[{infinite}]; features "
                                    "must be finite numbers (null: a missing value)")
    return columns


def _finite(value) -> bool:
    """Whether a number (a bool, an int, a float) is finite as a float64 (NaN counts: a
    table's missing value); an int past float64's range is not."""
    import math

    try:
        return not math.isinf(float(value))
    except OverflowError:
        return False


def number_rows(rows: list[dict], model):
    """X (N, D) float64 of a model of numbers from rows by column name (its features' names,
    in its order): 422 naming the column of a value that is not a finite number."""
    import numpy as np

    names = _named(rows, model)
    X = np.empty((len(rows), len(names)))
    for j, name in enumerate(names):
        for i, row in enumerate(rows):
            value = row[name]
            if isinstance(value, str) or value is None or not _finite(value) or value != value:
                shown = "null" if value is None else repr(value)
                raise HTTPException(422, f"column {name!r} holds {shown} in rows[{i}]; this model was trained on "
                                    "finite numbers there")
            X[i, j] = value
    return X
