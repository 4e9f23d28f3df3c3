"""POST /v1/datasets: upload a data set (the body is the file), which jobs then name as
dataset:<id>; the checks and the keeping are uploads.py's.  The answer says what the server
read, each column a job would train on with its type (the dashboard shows them back)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Query, Request

from numbamlp.service.dependencies import DataDirDep, LimitsDep, StoreDep, may_submit, room_for_work
from numbamlp.service.schemas import UploadedDataset
from numbamlp.service.uploads import store_dataset

router = APIRouter(tags=["data"])


@router.post("/v1/datasets", response_model=UploadedDataset, status_code=201, dependencies=[Depends(may_submit)],
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                 "text/csv": {"schema": {"type": "string"}}}}})
async def upload_dataset(request: Request, store: StoreDep, data_dir: DataDirDep, limits: LimitsDep,
                         label_column: str | None = Query(
                             None, description="A .csv or .parquet file's label column, by name or 0-based index "
                             "(default: the last), as the jobs that name this dataset will give it in "
                             "data.label_column.")) -> dict:
    """The body is the file: an .npz (X, y), a .parquet or a .csv with a label column."""
    body = await request.body()
    room_for_work(store)
    return await asyncio.to_thread(store_dataset, store, data_dir, body, label_column, limits)
