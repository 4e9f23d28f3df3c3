"""The HTTP face of the training service: a FastAPI app over the store and the scheduler.

    POST /v1/datasets?label_column=   an .npz, .parquet or .csv body → {id, ...}; jobs name it dataset:<id>
    POST /v1/jobs                     {config} (+ Idempotency-Key) → 201 the job
    GET  /v1/jobs?status=&owner=&stack=&limit=&page_token=   newest first → {jobs, next_page_token}
    GET  /v1/jobs/{id}                the job
    POST /v1/jobs/{id}/cancel         queued: never starts; running: stops within a step batch
    GET  /v1/jobs/{id}/events         Server-Sent Events, one per stored epoch (id: = epoch; a burst of
                                      100, then 10 a second, the last always), then "end"; Last-Event-ID
                                      (an epoch number, else 422) resumes after it
    GET  /v1/jobs/{id}/model          the safetensors file (ETag = its sha256)
    POST /v1/jobs/{id}/predict        {X, proba} → {labels, proba}
    POST /v1/sweeps                   {config, grid, random} → the member jobs; with search (and trials,
                                      prune, min_epochs, reduction_factor, stack_size): a search, queued,
                                      whose trials become jobs as it asks them
    GET  /v1/sweeps?owner=&limit=&page_token=   newest first → {sweeps, next_page_token}: each sweep's
                                      counts by status, state (queued, running, done; a search's also
                                      cancelled, failed), best member, and a search's settings and trials
    GET  /v1/sweeps/{id}              the sweep, and its members (each its job, grid values, metric, epochs;
                                      a search's trials by number, each with its trial status)
    POST /v1/sweeps/{id}/cancel       a search stops after its step; a grid sweep's unfinished jobs cancelled
    GET  /v1/me                       whose token this is, and its role
    GET  /healthz, GET /              no token: liveness, and the dashboard page

Every other route needs ``Authorization: Bearer <token>`` (401 otherwise).  Bodies larger
than ``max_request_mb`` get 413 before they are read whole.  Bad input is 422 with one
line naming what is wrong, before anything is stored: unknown fields, text UTF-8 cannot
encode, data a job (or a sweep's member) could not load.

This module assembles the app (``create_app``); the parts are beside it: schemas.py (the
bodies), dependencies.py (what routes are handed), middleware.py and auth.py (what acts
before a route), errors.py and openapi.py (how errors are answered and documented), and
routers/ (the routes, one module per resource).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from numbamlp.diagnostics import installed_version
from numbamlp.job_status import STATUSES
from numbamlp.service import DEFAULT_BATCH_WINDOW_S
from numbamlp.service.auth import FILE_TOKEN_NAME, Authenticate
from numbamlp.service.errors import add_error_handlers
from numbamlp.service.files import model_file
from numbamlp.service.limits import Limits
from numbamlp.service.middleware import BodyLimit, HeadAsGet
from numbamlp.service.openapi import openapi_with_errors
from numbamlp.service.routers import callers, datasets, jobs, models, public, sweeps
from numbamlp.service.scheduler import Scheduler
from numbamlp.service.store import Store
from numbamlp.service.uploads import prepare_datasets_folder
from numbamlp.sweeps import DEFAULT_STACK_SIZE


def create_app(data_dir, token: str | None = None, batch_window: float = DEFAULT_BATCH_WINDOW_S,
               limits: Limits = Limits(), workers: int | None = None, scheduler_address: str | None = None,
               max_stack: int = DEFAULT_STACK_SIZE) -> FastAPI:
    """The service over ``data_dir``; ``token``, when given, is the admin token named "admin"
    (the token file's).  StoreError if the database is damaged."""
    data_dir = Path(data_dir)
    prepare_datasets_folder(data_dir)
    store = Store(data_dir / "numbamlp.sqlite")
    if token is not None:  # the token file's, which is the admin named "admin"
        store.put_token(FILE_TOKEN_NAME, "admin", token)
    _report_lost_models(store, data_dir)
    scheduler = Scheduler(store, data_dir, batch_window=batch_window, max_stack=max_stack, workers=workers,
                          scheduler_address=scheduler_address, limits=limits)

    app = FastAPI(title="numbamlp", version=installed_version("numbamlp") or "0", lifespan=_lifespan,
                  description="Training jobs over HTTP, batched into stacks.")
    # what the routes are handed (dependencies.py; predict's loaded models, routers/models.py)
    app.state.store, app.state.scheduler = store, scheduler
    app.state.data_dir, app.state.limits = data_dir, limits
    app.state.loaded_models = models.LoadedModels()
    # set when the server is asked to stop (serve's Server.handle_exit): event streams end then,
    # or uvicorn would wait for them (30 s) before the stacks stop and checkpoint
    app.state.stopping = threading.Event()

    add_error_handlers(app)
    app.openapi = lambda: openapi_with_errors(app)
    app.add_middleware(BodyLimit, max_mb=limits.max_request_mb)
    app.add_middleware(Authenticate, lookup=store.caller)  # (outside the body limit: no token, no body read)
    app.add_middleware(HeadAsGet)
    # in this order, the order of the OpenAPI document's paths
    for router in (public.router, datasets.router, jobs.collection, callers.router, jobs.single, models.router,
                   sweeps.router):
        app.include_router(router)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI):
    app.state.scheduler.start()
    yield
    await asyncio.to_thread(app.state.scheduler.stop)
    app.state.store.close()


def _report_lost_models(store: Store, data_dir: Path) -> None:
    """Say once at start which succeeded jobs have lost their model files (a run directory
    deleted by hand): their /model and /predict answer 404."""
    lost, before = [], None
    while True:
        page = store.jobs(status="succeeded", limit=1000, before_seq=before)
        lost += [job["id"] for job in page if not model_file(data_dir, job).is_file()]
        if len(page) < 1000:
            break
        before = page[-1]["seq"]
    if lost:
        shown = ", ".join(lost[:10]) + (f" and {len(lost) - 10} more" if len(lost) > 10 else "")
        logging.getLogger("numbamlp.service").warning(
            "%d succeeded jobs have no model file under %s (deleted?): %s", len(lost), data_dir / "jobs", shown)


__all__ = ["STATUSES", "create_app"]
