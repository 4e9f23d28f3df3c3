"""The HTTP face of the training service: a FastAPI app over the store and the scheduler.

    POST /v1/datasets?label_column=   an .npz, .parquet or .csv body → {id, ...}; jobs name it dataset:<id>
    POST /v1/jobs                     {config} (+ Idempotency-Key) → 201 the job
    GET  /v1/jobs?status=&limit=&page_token=   newest first → {jobs, next_page_token}
    GET  /v1/jobs/{id}                the job
    POST /v1/jobs/{id}/cancel         queued: never starts; running: stops within a step batch
    GET  /v1/jobs/{id}/events         Server-Sent Events, one per stored epoch (id: = epoch; a burst of
                                      100, then 10 a second, the last always), then "end"; Last-Event-ID
                                      (an epoch number, else 422) resumes after it
    GET  /v1/jobs/{id}/model          the safetensors file (ETag = its sha256)
    POST /v1/jobs/{id}/predict        {X, proba} → {labels, proba}
    POST /v1/sweeps                   {config, grid, random} → the member jobs
    GET  /healthz, GET /              no token: liveness, and the dashboard page

Every other route needs ``Authorization: Bearer <token>`` (401 otherwise).  Bodies larger
than ``max_request_mb`` get 413 before they are read whole.  Bad input is 422 with one
line naming what is wrong, before anything is stored: unknown fields, text UTF-8 cannot
encode, data a job (or a sweep's member) could not load.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import functools
import hashlib
import json
import logging
import shutil
import tempfile
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from numbamlp.data import file_kind
from numbamlp.service.auth import FILE_TOKEN_NAME, PUBLIC_PATHS, Authenticate, Caller
from numbamlp.service.limits import Limits, job_problem
from numbamlp.service.scheduler import DATASET_PREFIX, Scheduler, dataset_path, hide_dataset_paths
from numbamlp.service.store import STATUSES, StorageFull, Store

STATIC = Path(__file__).with_name("static")
SSE_POLL_S = 0.1
# An upload's kind, by its first bytes (a CSV's text has none), as its file's suffix
UPLOAD_MAGIC = ((b"PK\x03\x04", "npz"), (b"PAR1", "parquet"), (b"\x1f\x8b", "csv.gz"), (b"\x28\xb5\x2f\xfd", "csv.zst"),
                (b"BZh", "csv.bz2"))
PREDICT_MODELS_KEPT = 16  # loaded models kept for predict, the most recently used
# An event stream with nothing to say sends a comment this often (and one at once), so that
# proxies and clients see a live connection while a job waits in the queue.
SSE_HEARTBEAT_S = 15.0


# ---------------------------------------------------------------- request and response shapes
class _Body(BaseModel):
    """A request body.  Unknown fields are refused (a config sent without its {"config": ...}
    wrapper would otherwise train the defaults), and so is text UTF-8 cannot encode (a lone
    surrogate such as \\ud800, which JSON can spell): stored, it would make every later
    listing of the jobs fail to encode."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _utf8_only(cls, value):
        if not isinstance(value, dict):  # (e.g. curl -d's form encoding: FastAPI hands over the raw bytes)
            raise PydanticCustomError("json_object", "the body must be a JSON object, sent with Content-Type: "
                                      "application/json")
        try:
            json.dumps(value, ensure_ascii=False).encode()  # (the fast check, at C speed)
        except UnicodeEncodeError:
            raise PydanticCustomError("unencodable_text", "{where} is not UTF-8 text (it holds a lone surrogate "
                                      "such as \\ud800)", {"where": _unencodable(value)}) from None
        return value


def _unencodable(value, where: str = "") -> str | None:
    """Where in a parsed JSON document a string or key is not encodable as UTF-8, if anywhere."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return where or "the body"
    elif isinstance(value, dict):
        for key, item in value.items():
            if _unencodable(key) is not None:
                return f"a key of {where or 'the body'}"
            found = _unencodable(item, f"{where}.{key}" if where else key)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _unencodable(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


class JobRequest(_Body):
    config: dict[str, Any] = Field(default_factory=dict, description="A TrainConfig (partial: defaults fill the rest).")


class SweepRequest(_Body):
    config: dict[str, Any] = Field(default_factory=dict, description="The base TrainConfig.")
    grid: dict[str, list[Any] | str] = Field(description="Setting → values (lists; range strings with random).")
    random: int | None = Field(None, ge=1, description="Draw this many members instead of every combination.")


class PredictRequest(_Body):
    X: list[list[Annotated[float, Field(allow_inf_nan=False)]]] = Field(description="Rows of raw features (N, D).")
    columns: list[str] | None = Field(None, description="The names of X's columns: with a model that knows its "
                                      "features' names, X's columns are taken by name, in the model's order (others "
                                      "left out); without, X's columns are the model's features in order.")
    proba: bool = Field(False, description="Also return the probability of every class.")


class Stack(BaseModel):
    id: str
    size: int


class Job(BaseModel):
    id: str
    owner: str | None = Field(description="The name of the token that submitted the job.")
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    config: dict[str, Any]
    created_at: float
    started_at: float | None
    finished_at: float | None
    stack: Stack | None = Field(description="The stack that trained (trains) the job, and its size.")
    sweep_id: str | None
    cancel_requested: bool
    test_accuracy: float | None
    test_loss: float | None
    val_accuracy: float | None
    val_loss: float | None
    model_sha256: str | None
    scores: dict[str, float | None] | None = Field(
        description="Every validation and test metric of the saved model: accuracy and loss for a classifier, "
        "r2, mse, mae and loss for a regressor.")
    error: str | None


class JobList(BaseModel):
    jobs: list[Job]
    next_page_token: str | None = Field(description="Pass as page_token for the next page; null on the last.")


class SweepJobs(BaseModel):
    id: str
    jobs: list[Job]


class Dataset(BaseModel):
    id: str = Field(description="sha256 of the file; name it in a config as dataset:<id>.")
    format: Literal["npz", "parquet", "csv"]
    size: int
    rows: int
    features: int


class Prediction(BaseModel):
    labels: list[Any] | None = Field(description="A classifier's predicted labels (its class values).")
    proba: list[list[float]] | None = Field(description="A classifier's class probabilities, when asked for.")
    values: list[Any] | None = Field(None, description="A regressor's predictions, in its targets' units: a "
                                     "number per row, or a list of K per row.")


class Me(BaseModel):
    name: str = Field(description="The token's name (what jobs record as their owner).")
    role: Literal["read", "submit", "admin"]


def job_view(job: dict) -> dict:
    """A stored job as the API shows it."""
    stack = {"id": job["stack_id"], "size": job["stack_size"]} if job["stack_id"] else None
    return {k: job[k] for k in Job.model_fields if k != "stack"} | {"stack": stack}


# ---------------------------------------------------------------- the body limit
class _BodyLimit:
    """ASGI middleware: 413 for a body over ``max_mb`` MB — at once by its Content-Length,
    or as soon as a streamed body passes the limit — so no handler reads it whole."""

    def __init__(self, app, max_mb: float):
        self.app, self.max_mb, self.limit = app, max_mb, int(max_mb * (1 << 20))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(send)
        seen = 0
        started = refused = False

        async def limited_receive():
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                # answered here: FastAPI turns any error while it reads a JSON body into a 400
                if not started and not refused:
                    refused = True
                    await self._refuse(send)
                raise _TooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if refused:  # (the app's answer to the body it could not read: the 413 went instead)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            pass  # (the 413 has gone out, or the app had begun its answer)

    async def _refuse(self, send):
        body = json.dumps({"detail": f"request body larger than {self.max_mb:g} MB"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


# The errors every route may answer, as the server answers them: {"detail": "one line"}.
_ERRORS = {
    "401": "missing or wrong bearer token",
    "403": "the token's role may not do this (or not to another person's job)",
    "404": "no such job (or no model for it)",
    "409": "the job cannot do that in its status",
    "413": "request body over --max-request-mb",
    "422": "invalid request: one line naming what is wrong",
    "507": "the server's disk is full: nothing was stored",
}


def _openapi_with_errors(app) -> dict:
    """FastAPI's OpenAPI document, its error responses as the server sends them: FastAPI
    documents a 422 as a list of validation errors, but every error here is one line,
    {"detail": "..."} (one_line_422), and 401/404/409/413 are not documented at all."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components["Error"] = {"title": "Error", "type": "object", "required": ["detail"],
                           "properties": {"detail": {"title": "Detail", "type": "string"}}}
    schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            codes = {"422"} if "422" in operation["responses"] else set()
            if path not in PUBLIC_PATHS:
                codes.add("401")
                operation["security"] = [{"bearer": []}]
            if method == "post" and not path.endswith("/predict"):
                codes.add("403")
            if "{job_id}" in path:
                codes.add("404")
            if path.endswith(("/predict", "/cancel")):
                codes.add("409")
            if method == "post":
                codes |= {"413", "422"}
            if method == "post" and not path.endswith("/predict"):
                codes.add("507")
            for code in sorted(codes):
                operation["responses"][code] = {"description": _ERRORS[code], "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    app.openapi_schema = schema
    return schema


class _HeadAsGet:
    """ASGI middleware: HEAD wherever GET is (RFC 9110; uptime checks send HEAD /healthz),
    answered as the GET is, headers only.  The GET's body is dropped, and a streamed one
    (a job's events) is told the client left once the headers are out."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)
        answered = False

        async def headers_only(message):
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:  # the headers end the answer
                answered = True
                await send(message)
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def leaves_after_headers():
            if answered:
                return {"type": "http.disconnect"}
            return await receive()

        await self.app(dict(scope, method="GET"), leaves_after_headers, headers_only)


class _TooLarge(Exception):
    pass


# ---------------------------------------------------------------- the app
def create_app(data_dir, token: str | None = None, batch_window: float = 0.5, limits: Limits = Limits(),
               workers: int | None = None, scheduler_address: str | None = None, max_stack: int = 32) -> FastAPI:
    """The service over ``data_dir``; ``token``, when given, is the admin token named "admin"
    (the token file's).  StoreError if the database is damaged."""
    data_dir = Path(data_dir)
    (data_dir / "datasets").mkdir(parents=True, exist_ok=True)
    for leftover in (data_dir / "datasets").glob("incoming-*"):  # (uploads a kill -9 cut off mid-check)
        shutil.rmtree(leftover, ignore_errors=True)
    store = Store(data_dir / "numbamlp.sqlite")
    if token is not None:  # the token file's, which is the admin named "admin"
        store.put_token(FILE_TOKEN_NAME, "admin", token)
    _report_lost_models(store, data_dir)
    scheduler = Scheduler(store, data_dir, batch_window=batch_window, max_stack=max_stack, workers=workers,
                          scheduler_address=scheduler_address, limits=limits)

    def model_path(job: dict, unfinished: int) -> Path:
        """A succeeded job's model file; 404 if it is gone, ``unfinished`` (the status code)
        for a job that is not succeeded."""
        if job["status"] != "succeeded":
            raise HTTPException(unfinished, f"job {job['id']} has no model ({job['status']})")
        path = data_dir / "jobs" / job["id"] / "model.safetensors"
        if not path.is_file():
            raise HTTPException(404, f"job {job['id']}'s model file is gone from the server (deleted?)")
        return path
    models: collections.OrderedDict[str, Any] = collections.OrderedDict()  # job id → loaded MLP, for predict

    @asynccontextmanager
    async def lifespan(app):
        scheduler.start()
        yield
        await asyncio.to_thread(scheduler.stop)
        store.close()

    app = FastAPI(title="numbamlp", version=_version(), lifespan=lifespan,
                  description="Training jobs over HTTP, batched into stacks.")
    app.state.store, app.state.scheduler = store, scheduler
    # set when the server is asked to stop (serve's Server.handle_exit): event streams end then,
    # or uvicorn would wait for them (30 s) before the stacks stop and checkpoint
    app.state.stopping = threading.Event()

    @app.exception_handler(RequestValidationError)
    async def one_line_422(request: Request, err: RequestValidationError) -> JSONResponse:
        """A malformed request body as one line naming where, like every other 422."""
        problems = "; ".join(f"{'.'.join(_cut(str(p), 60) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
                             for e in err.errors())
        return JSONResponse({"detail": _cut(f"invalid request: {problems}")}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def short_detail(request: Request, err: StarletteHTTPException) -> JSONResponse:
        """Every error as {"detail": one line}, cut short: a message quoting a huge input
        (a 100,000-character key, say) must not send it back whole.  FastAPI's 400 for a
        body that is not UTF-8 is a 422, as every other malformed body is."""
        if err.status_code == 400:
            return JSONResponse({"detail": "invalid request: the body is not JSON (UTF-8 text)"}, status_code=422)
        return JSONResponse({"detail": _cut(str(err.detail))}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(StorageFull)
    async def disk_full(request: Request, err: StorageFull) -> JSONResponse:
        logging.getLogger("numbamlp.service").error("the disk is full: new jobs and uploads are refused (507) until "
                                                    "there is room")
        return JSONResponse({"detail": "the server's disk is full: nothing was stored; try again later"},
                            status_code=507)

    def room_for_work() -> None:
        """StorageFull (507) while the disk is full: new work would only fail later."""
        if store.full:
            raise StorageFull()

    def caller_with(role: str):
        """A route's dependency: the caller (authenticated by the Authenticate middleware),
        403 unless its role may do what ``role`` may."""

        async def dependency(request: Request) -> Caller:  # (async: no trip through the thread pool)
            caller = request.state.caller
            if not caller.may(role):
                raise HTTPException(403, f"the token {caller.name!r} has the role {caller.role}: this needs {role}")
            return caller

        return Depends(dependency)

    def existing_job(job_id: str) -> dict:
        job = store.job(job_id)
        if job is None:
            raise HTTPException(404, f"no job {_cut(job_id, 80)}")
        return job

    reader, submitter = caller_with("read"), caller_with("submit")
    secured = [reader]

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text())

    @app.post("/v1/datasets", response_model=Dataset, status_code=201, dependencies=[submitter], tags=["data"],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                  "text/csv": {"schema": {"type": "string"}}}}})
    async def upload_dataset(request: Request, label_column: str | None = Query(
            None, description="A .csv or .parquet file's label column, by name or 0-based index (default: "
            "the last), as the jobs that name this dataset will give it in data.label_column.")) -> dict:
        """The body is the file: an .npz (X, y), a .parquet or a .csv with a label column."""
        body = await request.body()
        room_for_work()
        return await asyncio.to_thread(_store_dataset, store, data_dir, body, label_column, limits)

    @app.post("/v1/jobs", response_model=Job, status_code=201, tags=["jobs"])
    def submit_job(request: JobRequest, response: Response, caller: Caller = submitter,
                   idempotency_key: str | None = Header(None, alias="Idempotency-Key")) -> dict:
        room_for_work()
        config = _job_config(request.config, store, data_dir, limits)
        job = store.add_jobs([config], idempotency_key=idempotency_key, owner=caller.name)[0]
        if idempotency_key is not None and job["config"] != config:
            raise HTTPException(422, "Idempotency-Key was used for a different job")
        return job_view(job)

    @app.get("/v1/jobs", response_model=JobList, dependencies=secured, tags=["jobs"])
    def list_jobs(status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
                  limit: int = Query(50, ge=1, le=1000), page_token: str | None = None,
                  owner: str | None = Query(None, description="Only the jobs this token name submitted.")) -> dict:
        before = _page_position(page_token) if page_token else None
        jobs = store.jobs(status=status, limit=limit + 1, before_seq=before, owner=owner)
        more = len(jobs) > limit
        jobs = jobs[:limit]
        token_next = _page_token(jobs[-1]["seq"]) if more else None
        return {"jobs": [job_view(j) for j in jobs], "next_page_token": token_next}

    @app.get("/v1/me", response_model=Me, tags=["service"])
    def me(caller: Caller = reader) -> dict:
        """Whose token this is, and its role."""
        return {"name": caller.name, "role": caller.role}

    @app.get("/v1/jobs/{job_id}", response_model=Job, dependencies=secured, tags=["jobs"])
    def show_job(job_id: str) -> dict:
        return job_view(existing_job(job_id))

    @app.post("/v1/jobs/{job_id}/cancel", response_model=Job, tags=["jobs"])
    def cancel_job(job_id: str, caller: Caller = submitter) -> dict:
        job = existing_job(job_id)
        if job["owner"] != caller.name and not caller.may("admin"):
            raise HTTPException(403, f"job {job_id} is {job['owner'] or 'nobody'}'s: a {caller.role} token cancels "
                                "only its own jobs")
        if job["status"] in ("succeeded", "failed"):
            raise HTTPException(409, f"job {job_id} already {job['status']}")
        cancelled = store.request_cancel(job_id)
        if job["stack_id"] and job["status"] == "queued":  # (a paused stack's: its checkpoint may be no one's now)
            scheduler.forget_checkpoints()
        return job_view(cancelled)

    @app.get("/v1/jobs/{job_id}/events", dependencies=secured, tags=["jobs"],
             responses={200: {"content": {"text/event-stream": {}}, "description": "one event per epoch, then end"}})
    async def job_events(job_id: str, request: Request,
                         last_event_id: str | None = Header(None, alias="Last-Event-ID")):
        existing_job(job_id)
        after = _event_position(last_event_id) if last_event_id else 0
        return StreamingResponse(_event_stream(store, job_id, after, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/v1/jobs/{job_id}/model", dependencies=secured, tags=["jobs"],
             responses={200: {"content": {"application/octet-stream": {}}}, 304: {"description": "not modified"}})
    def download_model(job_id: str, if_none_match: str | None = Header(None, alias="If-None-Match")):
        job = existing_job(job_id)
        path = model_path(job, unfinished=404)
        etag = f'"{job["model_sha256"]}"'
        if if_none_match == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return FileResponse(path, media_type="application/octet-stream", filename=f"{job_id}.safetensors",
                            headers={"ETag": etag})

    @app.post("/v1/jobs/{job_id}/predict", response_model=Prediction, dependencies=secured, tags=["jobs"])
    def predict(job_id: str, request: PredictRequest) -> dict:
        import numpy as np

        job = existing_job(job_id)
        path = model_path(job, unfinished=409)
        if job_id not in models:
            from numbamlp.io import ModelFileError, load_model

            try:
                models[job_id] = load_model(path)
            except ModelFileError as err:
                raise HTTPException(404, f"job {job_id}'s model file cannot be read: {err}") from None
            while len(models) > PREDICT_MODELS_KEPT:  # (the least recently used goes)
                models.popitem(last=False)
        models.move_to_end(job_id)
        model = models[job_id]
        width, by_name = model.n_features, request.columns is not None and model.feature_names is not None
        if by_name:
            from numbamlp.data import DataError, feature_columns

            if len(set(request.columns)) != len(request.columns):
                raise HTTPException(422, "columns names a column twice")
            try:
                chosen = feature_columns(request.columns, model.feature_names, "columns")
            except DataError as err:
                raise HTTPException(422, str(err)) from None
            width = len(request.columns)
        widths = sorted({len(row) for row in request.X})
        if widths != [width]:
            got = f"rows of {' and '.join(map(str, widths))}" if widths else "no rows"
            what = f"{width} values, one per column" if width != model.n_features else f"{width} features"
            raise HTTPException(422, f"X must have rows of {what}, got {got}")
        X = np.asarray(request.X, dtype=np.float64)
        if by_name:
            X = X[:, chosen]
        if model.task == "regression" and request.proba:
            raise HTTPException(422, "a regressor has no class probabilities: leave proba false")
        try:  # (values the model's dtype cannot hold, said as numbamlp predict says them)
            if model.task == "regression":
                return {"labels": None, "proba": None, "values": model.predict(X).tolist()}
            probabilities = model.predict_proba(X)
        except ValueError as err:
            raise HTTPException(422, str(err)) from None
        labels = model.classes[np.argmax(probabilities, axis=1)] if model.classes is not None else \
            np.argmax(probabilities, axis=1)
        return {"labels": labels.tolist(), "proba": probabilities.tolist() if request.proba else None}

    @app.post("/v1/sweeps", response_model=SweepJobs, status_code=201, tags=["jobs"])
    def submit_sweep(request: SweepRequest, caller: Caller = submitter) -> dict:
        import secrets

        from numbamlp.sweeps import (SweepError, base_document, member_configs, member_settings, normalise_grid,
                                     parse_value, validate_base)

        room_for_work()

        try:
            grid = normalise_grid({k: [parse_value(v) if isinstance(v, str) else v for v in values]
                                   if isinstance(values, list) else [parse_value(values)]
                                   for k, values in request.grid.items()})
            document = base_document(_job_config(request.config, store, data_dir, limits))
            settings = member_settings(grid, request.random, validate_base(document).seed)
            if len(settings) > 10_000:
                raise SweepError(f"the grid has {len(settings)} members, more than 10000")
            members = member_configs(document, settings)
        except SweepError as err:
            raise HTTPException(422, str(err)) from None
        for member, config in zip(settings, members):  # the grid may name data too: each member as a job
            problem = _data_problem(config, store, data_dir, limits)
            if problem is not None:
                shown = ", ".join(f"{path}={value!r}" for path, value in member.items())
                raise HTTPException(422, f"the member {shown}: {problem}")
        configs = [c.model_dump(mode="json", by_alias=True) for c in members]
        sweep_id = secrets.token_hex(6)
        return {"id": sweep_id, "jobs": [job_view(j) for j in store.add_jobs(configs, sweep_id=sweep_id, owner=caller.name)]}

    app.openapi = lambda: _openapi_with_errors(app)
    app.add_middleware(_BodyLimit, max_mb=limits.max_request_mb)
    app.add_middleware(Authenticate, lookup=store.caller)  # (outside the body limit: no token, no body read)
    app.add_middleware(_HeadAsGet)
    return app


async def _event_stream(store: Store, job_id: str, after: int, request: Request):
    """SSE: the job's epochs after ``after`` (the history of a finished job too), as they
    come, then an ``end`` event with the final status."""
    from numbamlp.service.store import FINAL

    last = after
    yield ": open\n\n"
    said = time.monotonic()
    while True:
        # the status first: a job's last epoch is stored before it is final (_Events.flush first)
        job = await asyncio.to_thread(store.job, job_id)
        for epoch, metrics in await asyncio.to_thread(store.events, job_id, last):
            yield f"id: {epoch}\nevent: epoch\ndata: {json.dumps(metrics)}\n\n"
            last, said = epoch, time.monotonic()
        if time.monotonic() - said >= SSE_HEARTBEAT_S:
            yield ": heartbeat\n\n"
            said = time.monotonic()
        if job["status"] in FINAL:
            end = {"status": job["status"], "test_accuracy": job["test_accuracy"], "scores": job["scores"],
                   "error": job["error"]}
            yield f"event: end\ndata: {json.dumps(end)}\n\n"
            return
        if await request.is_disconnected() or request.app.state.stopping.is_set():
            return  # (a stream held open would keep a stopping server from stopping: the client resumes later)
        await asyncio.sleep(SSE_POLL_S)


def _report_lost_models(store: Store, data_dir: Path) -> None:
    """Say once at start which succeeded jobs have lost their model files (a run directory
    deleted by hand): their /model and /predict answer 404."""
    import logging

    lost, before = [], None
    while True:
        page = store.jobs(status="succeeded", limit=1000, before_seq=before)
        lost += [job["id"] for job in page if not (data_dir / "jobs" / job["id"] / "model.safetensors").is_file()]
        if len(page) < 1000:
            break
        before = page[-1]["seq"]
    if lost:
        shown = ", ".join(lost[:10]) + (f" and {len(lost) - 10} more" if len(lost) > 10 else "")
        logging.getLogger("numbamlp.service").warning(
            "%d succeeded jobs have no model file under %s (deleted?): %s", len(lost), data_dir / "jobs", shown)


def _page_token(seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": seq}).encode()).decode().rstrip("=")


def _page_position(page_token: str) -> int:
    try:
        padded = page_token + "=" * (-len(page_token) % 4)
        before = json.loads(base64.urlsafe_b64decode(padded))["before"]
    except (ValueError, KeyError, TypeError):
        before = None
    if not _sqlite_integer(before):  # (a float, or one SQLite cannot hold: never a token of ours)
        raise HTTPException(422, "page_token is not one this server gave")
    return before


def _event_position(last_event_id: str) -> int:
    """The epoch a Last-Event-ID names; anything but an epoch number is refused (422), as a
    page token that this server did not give is."""
    # (at most 19 digits: int() of over 4,300 would raise, and SQLite holds no more anyway)
    digits = last_event_id.isdigit() and last_event_id.isascii() and len(last_event_id) <= 19
    after = int(last_event_id) if digits else None
    if not _sqlite_integer(after):
        raise HTTPException(422, f"Last-Event-ID {last_event_id[:40]!r} is not an epoch number this server sent")
    return after


def _cut(text: str, limit: int = 1000) -> str:
    """``text`` at most ``limit`` characters: an error quoting a huge input stays one short line."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _sqlite_integer(value) -> bool:
    """Whether ``value`` is an int ≥ 0 that SQLite can compare (a 64-bit integer)."""
    return type(value) is int and 0 <= value < 1 << 63


def _job_config(document: dict, store: Store, data_dir: Path, limits: Limits) -> dict:
    """A submitted config, validated (422 naming the field), its data and size checked
    (_data_problem), the data split's seed fixed (0 unless given: jobs that differ only in
    seed share a split, and so can share a stack)."""
    from pydantic import ValidationError

    from numbamlp.config import TrainConfig

    try:
        config = TrainConfig.model_validate(document)
    except ValidationError as err:
        problems = "; ".join((f"{'.'.join(_cut(str(p), 60) for p in e['loc'])}: " if e["loc"] else "")
                             + e["msg"].removeprefix("Value error, ") for e in err.errors())
        raise HTTPException(422, f"invalid configuration: {problems}") from None
    problem = _data_problem(config, store, data_dir, limits)
    if problem is not None:
        raise HTTPException(422, problem)
    if config.data.seed is None:
        config = config.model_copy(update={"data": config.data.model_copy(update={"seed": 0})})
    return config.model_dump(mode="json", by_alias=True)


def _data_problem(config, store: Store, data_dir: Path, limits: Limits) -> str | None:
    """What is wrong with a config's data, naming the field, if anything: every source is
    builtin:NAME or an uploaded dataset:<id> (the server reads no other path) that loads
    with the config's label column and task — checked now, not when the job runs; and
    then which of the server's limits the job passes (epochs, batch size, parameters)."""
    from numbamlp.data import DataError, check_label_column_applies

    data = config.data
    for key in ("train", "test", "val"):
        source = getattr(data, key)
        if source is None:
            continue
        uploaded = source.startswith(DATASET_PREFIX) and store.dataset(source[len(DATASET_PREFIX):]) is not None
        if not (uploaded or source.startswith("builtin:")):
            return f"data.{key}: {source!r} is not builtin:NAME or an uploaded dataset:<id>"
        path = dataset_path(data_dir, source)
        problem = _load_problem(path, data.label_column, config.task)
        if problem is not None:
            # the label column is to blame when the source loads with the default one
            label_fault = data.label_column is not None and _load_problem(path, None, config.task) is None
            return f"data.{'label_column' if label_fault else key}: {hide_dataset_paths(problem, data_dir)}"
    files = {key: dataset_path(data_dir, getattr(data, key)) for key in ("train", "test", "val")
             if getattr(data, key) is not None}
    try:  # (a label column with no CSV or Parquet source: refused as the command line refuses it)
        check_label_column_applies(data.label_column, *files.values())
    except DataError as err:
        return f"data.label_column: {hide_dataset_paths(str(err), data_dir)}"
    for key in ("test", "val"):  # (each loads, but with the training data's features and labels?)
        if key in files:
            problem = _unlike_training_problem(files["train"], files[key], data.label_column, config.task)
            if problem is not None:
                return f"data.{key}: {hide_dataset_paths(problem, data_dir)}"
    _, features, outputs = _loaded(files["train"], data.label_column, config.task)
    return job_problem(config, features, outputs, limits)


@functools.lru_cache(maxsize=64)
def _unlike_training_problem(train: str, other: str, label_column, task: str) -> str | None:
    """Why the data ``other`` cannot score a model trained on ``train`` (data.check_like_training:
    other features, labels training never shows), as `numbamlp train` refuses it; None if
    it can.  Kept, as _load_problem's."""
    from numbamlp.data import DataError, check_like_training, load_dataset

    try:
        training, held_out = (load_dataset(source, label_column=label_column, task=task) for source in (train, other))
        check_like_training(held_out.X, held_out.y, training.X, training.y, other, train, task == "regression")
    except DataError as err:
        return str(err)
    return None


def _load_problem(source: str, label_column, task: str = "classification") -> str | None:
    """Why ``source`` does not load with this label column and task (None: it does)."""
    return _loaded(source, label_column, task)[0]


@functools.lru_cache(maxsize=64)
def _loaded(source: str, label_column, task: str) -> tuple[str | None, int, int]:
    """(why ``source`` does not load with this label column and task, or None; its features;
    the model's outputs: classes, or regression targets).  Kept: builtin sets and
    content-addressed uploads never change, so each loads once."""
    import numpy as np

    from numbamlp.data import DataError, load_dataset

    try:
        data = load_dataset(source, label_column=label_column, task=task)
    except DataError as err:
        return str(err), 0, 0
    outputs = (1 if data.y.ndim == 1 else data.y.shape[1]) if task == "regression" else len(np.unique(data.y))
    return None, int(data.X.shape[1]), int(outputs)


def _store_dataset(store: Store, data_dir: Path, body: bytes, label_column: str | None, limits: Limits) -> dict:
    """Keep an uploaded file by content hash after checking that it loads with that label
    column and that it is no larger, decompressed, than the server takes (422 if not; the
    same content already kept is checked with the label column too)."""
    from numbamlp.data import DataError, load_dataset
    from numbamlp.io import atomic_write_bytes

    if not body:
        raise HTTPException(422, "the body is empty: send an .npz, .parquet or .csv file")
    digest = hashlib.sha256(body).hexdigest()
    existing = store.dataset(digest)
    if existing is not None:
        problem = _load_problem(dataset_path(data_dir, DATASET_PREFIX + digest), label_column)
        if problem is not None:
            raise HTTPException(422, hide_dataset_paths(problem, data_dir))
        return existing
    suffix = next((kind for magic, kind in UPLOAD_MAGIC if body.startswith(magic)), "csv")  # (by magic bytes)
    # checked in a folder of its own: a concurrent upload of the same bytes never sees a bad try
    incoming = Path(tempfile.mkdtemp(prefix="incoming-", dir=data_dir / "datasets"))
    try:
        trial = incoming / f"{digest}.{suffix}"
        _written(store, lambda: trial.write_bytes(body))
        problem = _decompressed_problem(trial, suffix, limits)
        if problem is not None:
            raise HTTPException(422, problem)
        try:
            data = load_dataset(str(trial), label_column=label_column)
        except DataError as err:
            raise HTTPException(422, hide_dataset_paths(str(err), data_dir)) from None
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
    _written(store, lambda: atomic_write_bytes(data_dir / "datasets" / f"{digest}.{suffix}", body))
    return store.add_dataset(digest, file_kind(trial), len(body), int(data.X.shape[0]), int(data.X.shape[1]))


def _decompressed_problem(path: Path, kind: str, limits: Limits) -> str | None:
    """Why an uploaded file is too large once decompressed, or cannot be measured, if it is
    either (measured without inflating it whole: limits.npz_decompressed_bytes,
    limits.parquet_decompressed_bytes, a compressed CSV streamed and counted).  A plain CSV
    is read as it comes: its size is the body's, under --max-request-mb."""
    from numbamlp.service.limits import (compressed_text_bytes, flag, npz_decompressed_bytes,
                                         parquet_decompressed_bytes)

    limit = int(limits.max_dataset_mb * (1 << 20))
    try:
        if kind == "npz":
            size = npz_decompressed_bytes(path)
        elif kind == "parquet":
            size = parquet_decompressed_bytes(path, limit)
        elif kind.startswith("csv."):
            size = compressed_text_bytes(path, limit)
        else:
            return None
    except Exception as err:  # noqa: BLE001 — refused when it cannot be measured: never inflated blind
        return f"the uploaded .{kind} cannot be read to measure it ({type(err).__name__}: {str(err)[:200]})"
    if size <= limit:
        return None
    return (f"the uploaded .{kind} holds {'' if kind == 'npz' else 'more than '}{size / (1 << 20):,.0f} MB "
            f"of data once decompressed, more than this server's limit of {limits.max_dataset_mb:g} MB "
            f"({flag('max_dataset_mb')})")


def _written(store: Store, write) -> None:
    """Run ``write()``; a full disk becomes StorageFull (507), not a 500, and the service
    takes no new work until there is room (Store.full)."""
    try:
        write()
    except OSError as err:
        if store.noted_full(err):
            raise StorageFull() from None
        raise


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("numbamlp")
    except PackageNotFoundError:
        return "0"


__all__ = ["STATUSES", "create_app"]
