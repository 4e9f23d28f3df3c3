"""The jobs: submit and list them (``collection``, /v1/jobs), and show, cancel and follow
one (``single``, /v1/jobs/{job_id}).  Two routers, because create_app includes GET /v1/me
between them, where the API has always listed it.  A job's model is models.py's."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse

from numbamlp.service.dependencies import (DataDirDep, LimitsDep, SchedulerDep, StoreDep, Submitter, existing_job,
                                           may_read, page_position, page_token_before, room_for_work)
from numbamlp.service.events import event_position, event_stream
from numbamlp.service.schemas import Job, JobList, JobRequest, JobStatus, job_view
from numbamlp.service.validation import job_config

collection = APIRouter(tags=["jobs"])
single = APIRouter(tags=["jobs"])


# ---------------------------------------------------------------- /v1/jobs
@collection.post("/v1/jobs", response_model=Job, status_code=201)
def submit_job(body: JobRequest, response: Response, caller: Submitter, store: StoreDep, data_dir: DataDirDep,
               limits: LimitsDep, idempotency_key: str | None = Header(None, alias="Idempotency-Key")) -> dict:
    room_for_work(store)
    config = job_config(body.config, store, data_dir, limits)
    job = store.add_jobs([config], idempotency_key=idempotency_key, owner=caller.name)[0]
    if idempotency_key is not None and job["config"] != config:
        raise HTTPException(422, "Idempotency-Key was used for a different job")
    return job_view(job)


@collection.get("/v1/jobs", response_model=JobList, dependencies=[Depends(may_read)])
def list_jobs(store: StoreDep, status: JobStatus | None = None, limit: int = Query(50, ge=1, le=1000),
              page_token: str | None = None,
              owner: str | None = Query(None, description="Only the jobs this token name submitted."),
              stack: str | None = Query(None, description="Only the jobs of this stack (a job's stack.id): its "
                                        "stack-mates.")) -> dict:
    before = page_position(page_token) if page_token else None
    jobs = store.jobs(status=status, limit=limit + 1, before_seq=before, owner=owner, stack_id=stack)
    more = len(jobs) > limit
    jobs = jobs[:limit]
    token_next = page_token_before(jobs[-1]["seq"]) if more else None
    return {"jobs": [job_view(j) for j in jobs], "next_page_token": token_next}


# ---------------------------------------------------------------- /v1/jobs/{job_id}
@single.get("/v1/jobs/{job_id}", response_model=Job, dependencies=[Depends(may_read)])
def show_job(job_id: str, store: StoreDep) -> dict:
    return job_view(existing_job(store, job_id))


@single.post("/v1/jobs/{job_id}/cancel", response_model=Job)
def cancel_job(job_id: str, caller: Submitter, store: StoreDep, scheduler: SchedulerDep) -> dict:
    job = existing_job(store, job_id)
    if job["owner"] != caller.name and not caller.may("admin"):
        raise HTTPException(403, f"job {job_id} is {job['owner'] or 'nobody'}'s: a {caller.role} token cancels "
                            "only its own jobs")
    if job["status"] in ("succeeded", "failed"):
        raise HTTPException(409, f"job {job_id} already {job['status']}")
    cancelled = store.request_cancel(job_id)
    if job["stack_id"] and job["status"] == "queued":  # (a paused stack's: its checkpoint may be no one's now)
        scheduler.forget_checkpoints()
    return job_view(cancelled)


@single.get("/v1/jobs/{job_id}/events", dependencies=[Depends(may_read)],
            responses={200: {"content": {"text/event-stream": {}}, "description": "one event per epoch, then end"}})
async def job_events(job_id: str, request: Request, store: StoreDep,
                     last_event_id: str | None = Header(None, alias="Last-Event-ID")):
    existing_job(store, job_id)
    after = event_position(last_event_id) if last_event_id else 0
    return StreamingResponse(event_stream(store, job_id, after, request), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
