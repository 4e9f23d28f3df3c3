"""What a route is handed besides its request: the caller, checked against the role the
route needs, and the service's shared state, which create_app keeps in ``app.state``
(store, scheduler, data directory, limits) — as FastAPI dependencies, so a route names
what it uses in its signature:

    def cancel_job(job_id: str, caller: Submitter, store: StoreDep) -> dict: ...

And the checks the routes call in their bodies, not as dependencies: ``existing_job`` (404),
``room_for_work`` (507) and ``page_position`` (a listing's page token, which
``page_token_before`` makes: 422 for one this server did not give).  A dependency runs
before the request is validated, and these must not: a malformed body is a 422 whether or
not its job exists or the disk is full, and an upload's body is read (413 if too large)
before the disk is asked about.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from numbamlp.service.auth import Caller
from numbamlp.service.errors import cut
from numbamlp.service.limits import Limits
from numbamlp.service.scheduler import Scheduler
from numbamlp.service.store import StorageFull, Store, is_sqlite_integer


# ---------------------------------------------------------------- who calls
def caller_who_may(role: str):
    """A dependency: the caller (authenticated by the Authenticate middleware), 403 unless
    its role may do what ``role`` may."""

    async def authorised_caller(request: Request) -> Caller:  # (async, as all here: no trip through the thread pool)
        caller = request.state.caller
        if not caller.may(role):
            raise HTTPException(403, f"the token {caller.name!r} has the role {caller.role}: this needs {role}")
        return caller

    return authorised_caller


may_read, may_submit = caller_who_may("read"), caller_who_may("submit")  # (for a route's dependencies=[...])
Reader = Annotated[Caller, Depends(may_read)]  # (a route's parameter: the caller, who may read)
Submitter = Annotated[Caller, Depends(may_submit)]


# ---------------------------------------------------------------- the shared state
async def service_store(request: Request) -> Store:
    return request.app.state.store


async def service_scheduler(request: Request) -> Scheduler:
    return request.app.state.scheduler


async def service_data_dir(request: Request) -> Path:
    return request.app.state.data_dir


async def service_limits(request: Request) -> Limits:
    return request.app.state.limits


StoreDep = Annotated[Store, Depends(service_store)]
SchedulerDep = Annotated[Scheduler, Depends(service_scheduler)]
DataDirDep = Annotated[Path, Depends(service_data_dir)]
LimitsDep = Annotated[Limits, Depends(service_limits)]


# ---------------------------------------------------------------- checks inside a route
def existing_job(store: Store, job_id: str) -> dict:
    """The stored job ``job_id``; 404 if there is none."""
    job = store.job(job_id)
    if job is None:
        raise HTTPException(404, f"no job {cut(job_id, 80)}")
    return job


def room_for_work(store: Store) -> None:
    """StorageFull (507) while the disk is full: new work would only fail later."""
    if store.full:
        raise StorageFull()


# ---------------------------------------------------------------- a listing's pages (jobs, sweeps)
def page_token_before(seq: int) -> str:
    """The page token of a listing's next page: what was submitted before the job ``seq``
    (the last job listed, or the first job of the last sweep listed)."""
    return base64.urlsafe_b64encode(json.dumps({"before": seq}).encode()).decode().rstrip("=")


def page_position(page_token: str) -> int:
    """The job seq a page token names; 422 for one this server did not give."""
    try:
        padded = page_token + "=" * (-len(page_token) % 4)
        before = json.loads(base64.urlsafe_b64decode(padded))["before"]
    except (ValueError, KeyError, TypeError):
        before = None
    if not is_sqlite_integer(before):  # (a float, or one SQLite cannot hold: never a token of ours)
        raise HTTPException(422, "page_token is not one this server gave")
    return before
