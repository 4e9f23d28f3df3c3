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
from numbamlp.service.schemas import Prediction, PredictRequest

PREDICT_MODELS_KEPT = 16  # loaded models kept for predict, the most recently used

router = APIRouter(tags=["jobs"])


def model_file(data_dir: Path, job_id: str) -> Path:
    """Where a job's model file is, once it has succeeded."""
    from numbamlp.layout import MODEL_FILE

    return data_dir / "jobs" / job_id / MODEL_FILE


def existing_model_file(data_dir: Path, job: dict, unfinished: int) -> Path:
    """A succeeded job's model file; 404 if it is gone, ``unfinished`` (the status code)
    for a job that is not succeeded."""
    if job["status"] != "succeeded":
        raise HTTPException(unfinished, f"job {job['id']} has no model ({job['status']})")
    path = model_file(data_dir, job["id"])
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
    import numpy as np

    job = existing_job(store, job_id)
    model = models.get(job_id, existing_model_file(data_dir, job, unfinished=409))
    width, by_name = model.n_features, body.columns is not None and model.feature_names is not None
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
        what = f"{width} values, one per column" if width != model.n_features else f"{width} features"
        raise HTTPException(422, f"X must have rows of {what}, got {got}")
    X = np.asarray(body.X, dtype=np.float64)
    if by_name:
        X = X[:, chosen]
    if model.task == "regression" and body.proba:
        raise HTTPException(422, "a regressor has no class probabilities: leave proba false")
    try:  # (values the model's dtype cannot hold, said as numbamlp predict says them)
        if model.task == "regression":
            return {"labels": None, "proba": None, "values": model.predict(X).tolist()}
        probabilities = model.predict_proba(X)
    except ValueError as err:
        raise HTTPException(422, str(err)) from None
    labels = model.classes[np.argmax(probabilities, axis=1)] if model.classes is not None else \
        np.argmax(probabilities, axis=1)
    return {"labels": labels.tolist(), "proba": probabilities.tolist() if body.proba else None}
