"""The sweeps.  POST /v1/sweeps: a base config and a grid (or random draws from it) → a job
per member, all submitted at once under one sweep id, each member checked as a job is
first.  GET /v1/sweeps lists them, newest first, and GET /v1/sweeps/{sweep_id} shows one
with its members.

A sweep is its jobs (those that share its sweep_id, in submission order: the member
order), and what the API says of it is derived from them (``sweep_view``): its members'
counts by status, its state, and its best member so far, ranked by the sweep's metric as
`numbamlp sweep` ranks its members (numbamlp.sweeps.results)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query

from numbamlp.job_status import FINAL, STATUSES
from numbamlp.service.dependencies import (DataDirDep, LimitsDep, StoreDep, Submitter, may_read, page_position,
                                           page_token_before, room_for_work)
from numbamlp.service.errors import cut
from numbamlp.service.schemas import SweepDetail, SweepJobs, SweepList, SweepRequest, job_view
from numbamlp.service.validation import data_problem, job_config

router = APIRouter(tags=["jobs"])


@router.post("/v1/sweeps", response_model=SweepJobs, status_code=201)
def submit_sweep(body: SweepRequest, caller: Submitter, store: StoreDep, data_dir: DataDirDep,
                 limits: LimitsDep) -> dict:
    import secrets

    from numbamlp.sweeps import (DEFAULT_MAX_MEMBERS, SweepError, base_document, member_configs, member_settings,
                                 normalise_grid, parse_value, validate_base)

    room_for_work(store)

    try:
        grid = normalise_grid({k: [parse_value(v) if isinstance(v, str) else v for v in values]
                               if isinstance(values, list) else [parse_value(values)]
                               for k, values in body.grid.items()})
        document = base_document(job_config(body.config, store, data_dir, limits))
        settings = member_settings(grid, body.random, validate_base(document).seed)
        if len(settings) > DEFAULT_MAX_MEMBERS:
            raise SweepError(f"the grid has {len(settings)} members, more than {DEFAULT_MAX_MEMBERS}")
        members = member_configs(document, settings)
    except SweepError as err:
        raise HTTPException(422, str(err)) from None
    for member, config in zip(settings, members):  # the grid may name data too: each member as a job
        problem = data_problem(config, store, data_dir, limits)
        if problem is not None:
            shown = ", ".join(f"{path}={value!r}" for path, value in member.items())
            raise HTTPException(422, f"the member {shown}: {problem}")
    configs = [c.model_dump(mode="json", by_alias=True) for c in members]
    sweep_id = secrets.token_hex(6)
    jobs = store.add_jobs(configs, sweep_id=sweep_id, owner=caller.name, grids=settings)
    return {"id": sweep_id, "jobs": [job_view(job) for job in jobs]}


@router.get("/v1/sweeps", response_model=SweepList, dependencies=[Depends(may_read)])
def list_sweeps(store: StoreDep, limit: int = Query(50, ge=1, le=1000), page_token: str | None = None,
                owner: str | None = Query(None, description="Only the sweeps this token name submitted.")) -> dict:
    before = page_position(page_token) if page_token else None
    firsts = store.sweeps(limit=limit + 1, before_seq=before, owner=owner)  # (each sweep's first job)
    more = len(firsts) > limit
    firsts = firsts[:limit]
    members: dict[str, list[dict]] = {first["sweep_id"]: [] for first in firsts}
    for job in store.sweep_members(members):
        members[job["sweep_id"]].append(job)
    token_next = page_token_before(firsts[-1]["seq"]) if more else None
    return {"sweeps": [sweep_view(members[first["sweep_id"]], sweep_metric(first["config"])) for first in firsts],
            "next_page_token": token_next}


@router.get("/v1/sweeps/{sweep_id}", response_model=SweepDetail, dependencies=[Depends(may_read)])
def show_sweep(sweep_id: str, store: StoreDep) -> dict:
    jobs = store.sweep_jobs(sweep_id)
    if not jobs:
        raise HTTPException(404, f"no sweep {cut(sweep_id, 80)}")
    metric = sweep_metric(jobs[0]["config"])
    epochs = store.last_epochs(sweep_id)
    members = [job_view(job) | {"member": member, "grid": job["grid"], "metric_value": _scores(job).get(metric),
                                "epochs": epochs.get(job["id"])} for member, job in enumerate(jobs)]
    return sweep_view(jobs, metric) | {"members": members}


def sweep_metric(config: dict) -> str:
    """The metric that ranks a sweep's members, from its first member's ``config``: its
    early_stopping.metric (the one that picks each member's best epoch), else its task's
    default, as `numbamlp sweep` chooses it (metric_for)."""
    from numbamlp.config import TrainConfig
    from numbamlp.sweeps.results import metric_for

    return metric_for(TrainConfig.model_validate(config), None)


def sweep_view(jobs: list[dict], metric: str) -> dict:
    """A sweep as the API shows it (schemas.Sweep), from its jobs in member order (each with
    at least id, sweep_id, owner, status, created_at, started_at, finished_at and scores).

    Its state: ``done`` when every member has ended (succeeded, failed or cancelled);
    else ``running`` when a member has started (it trains, waits paused between time
    slices, or has ended after training); else ``queued`` (no member has started: each
    waits, or was cancelled before it started).  Its best member: numbamlp.sweeps.results'
    best_row over the succeeded members, by ``metric``."""
    from numbamlp.sweeps.results import best_row

    counts = dict.fromkeys(STATUSES, 0)
    for job in jobs:
        counts[job["status"]] += 1
    done = all(job["status"] in FINAL for job in jobs)
    started = any(job["started_at"] is not None for job in jobs)
    best = best_row([_ranking_row(member, job, metric) for member, job in enumerate(jobs)], metric)
    return {
        "id": jobs[0]["sweep_id"], "owner": jobs[0]["owner"], "created_at": jobs[0]["created_at"],
        "finished_at": max((job["finished_at"] for job in jobs if job["finished_at"] is not None), default=None)
        if done else None,
        "size": len(jobs), "counts": counts, "state": "done" if done else "running" if started else "queued",
        "metric": metric,
        "best": None if best is None else {"job_id": best["job_id"], "member": best["member"], "metric": metric,
                                           "value": best[metric]},
    }


def _ranking_row(member: int, job: dict, metric: str) -> dict:
    """A member as a row of `numbamlp sweep`'s results table, as far as ranking reads one:
    its status there (a succeeded job is a "done" row: results.FINISHED), the metric's value
    and val_loss (the tie-break)."""
    scores = _scores(job)
    return {"member": member, "job_id": job["id"], "status": "done" if job["status"] == "succeeded" else job["status"],
            "val_loss": scores.get("val_loss"), metric: scores.get(metric)}


def _scores(job: dict) -> dict:
    """A job's saved model's metrics ({} until it has succeeded)."""
    return job["scores"] or {}
