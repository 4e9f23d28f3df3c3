"""The sweeps.  POST /v1/sweeps: a base config and a grid (or random draws from it) → a job
per member, all submitted at once under one sweep id, each member checked as a job is
first; or, with ``search``, a search (numbamlp.service.searches), queued for the scheduler,
whose trials become jobs as they are asked.  GET /v1/sweeps lists them, newest first, GET
/v1/sweeps/{sweep_id} shows one with its members, and POST /v1/sweeps/{sweep_id}/cancel
cancels it.

Every sweep has a record in the store (its id, owner and submission; a search's settings
and state too).  A grid sweep is its jobs (those that share its sweep_id, in submission
order: the member order), and what the API says of it is derived from them
(``sweep_view``): its members' counts by status, its state, and its best member so far,
ranked by the sweep's metric as `numbamlp sweep` ranks its members
(numbamlp.sweeps.results).  A search's state is its record's; its members are its trials,
by number."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, HTTPException, Query

from numbamlp.job_status import FINAL, STATUSES, TRIAL_STATUSES, trial_status
from numbamlp.service.dependencies import (DataDirDep, LimitsDep, SchedulerDep, StoreDep, Submitter, may_read,
                                           page_position, page_token_before, room_for_work)
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
    from numbamlp.sweeps.grid import grid_size

    room_for_work(store)

    try:
        grid = normalise_grid({k: [parse_value(v) if isinstance(v, str) else v for v in values]
                               if isinstance(values, list) else [parse_value(values)]
                               for k, values in body.grid.items()})
        document = base_document(job_config(body.config, store, data_dir, limits))
        if body.search is not None:
            return _submit_search(body, grid, document, caller.name, store, data_dir, limits)
        if _search_settings_given(body):
            raise SweepError("trials, prune, min_epochs, reduction_factor and stack_size go with search")
        if grid_size(grid, body.random) > DEFAULT_MAX_MEMBERS:  # (counted before the members are made)
            raise SweepError(f"the grid has {grid_size(grid, body.random)} members, more than {DEFAULT_MAX_MEMBERS}")
        settings = member_settings(grid, body.random, validate_base(document).seed)
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


def _search_settings_given(body: SweepRequest) -> bool:
    """Whether a request without ``search`` sets what only a search takes (as
    numbamlp.sweeps.sweep refuses them without one)."""
    defaults = SweepRequest.model_fields
    return any(getattr(body, name) != defaults[name].default
               for name in ("trials", "prune", "min_epochs", "reduction_factor", "stack_size"))


def _submit_search(body: SweepRequest, grid: dict, document: dict, owner: str, store, data_dir, limits) -> dict:
    """A search queued (its trials become jobs as the scheduler's search asks them): its
    settings checked as numbamlp.sweeps.sweep checks them, and every value a trial may take
    (each choice, each range's ends) as a job's config, before anything is stored
    (SweepError or 422 naming the value).  Returns {id, jobs: []}."""
    import secrets

    from numbamlp.sweeps import DEFAULT_SEARCH_STACK, SweepError, member_configs, search_space
    from numbamlp.sweeps.grid import grid_size
    from numbamlp.sweeps.search import check_search, optuna_module, trial_values, written_grid

    optuna_module()  # (without Optuna: said first)
    if "task" in grid:  # (as sweep refuses it: a search's trials share one task, and its data)
        raise SweepError("task cannot vary within a search: submit one search per task")
    space = search_space(grid, body.search)
    size = grid_size({d.path: d.choices for d in space}) if body.search == "grid" else None
    settings = check_search(body.search, body.trials, body.prune, body.min_epochs, body.reduction_factor, None,
                            body.random, size)
    values = trial_values(space)
    for value, config in zip(values, member_configs(json.loads(json.dumps(document)), values)):
        problem = data_problem(config, store, data_dir, limits)
        if problem is not None:
            shown = ", ".join(f"{path}={one!r}" for path, one in value.items())
            raise HTTPException(422, f"the trial value {shown}: {problem}")
    stored_grid = written_grid(grid)
    sweep_id = secrets.token_hex(6)
    store.add_search(sweep_id, owner, document, stored_grid, {
        "search": settings.search, "trials": settings.trials, "prune": settings.prune,
        "min_epochs": settings.min_epochs, "reduction_factor": settings.reduction_factor,
        "stack_size": DEFAULT_SEARCH_STACK if body.stack_size is None else body.stack_size})
    return {"id": sweep_id, "jobs": []}


@router.get("/v1/sweeps", response_model=SweepList, dependencies=[Depends(may_read)])
def list_sweeps(store: StoreDep, limit: int = Query(50, ge=1, le=1000), page_token: str | None = None,
                owner: str | None = Query(None, description="Only the sweeps this token name submitted.")) -> dict:
    before = page_position(page_token) if page_token else None
    records = store.sweeps(limit=limit + 1, before_seq=before, owner=owner)
    more = len(records) > limit
    records = records[:limit]
    members: dict[str, list[dict]] = {record["id"]: [] for record in records}
    for job in store.sweep_members(members):
        members[job["sweep_id"]].append(job)
    token_next = page_token_before(records[-1]["seq"]) if more else None
    return {"sweeps": [sweep_view(record, members[record["id"]], sweep_metric(record["config"]))
                       for record in records], "next_page_token": token_next}


@router.get("/v1/sweeps/{sweep_id}", response_model=SweepDetail, dependencies=[Depends(may_read)])
def show_sweep(sweep_id: str, store: StoreDep) -> dict:
    return sweep_detail(store, existing_sweep(store, sweep_id))


@router.post("/v1/sweeps/{sweep_id}/cancel", response_model=SweepDetail)
def cancel_sweep(sweep_id: str, caller: Submitter, store: StoreDep, scheduler: SchedulerDep) -> dict:
    """A search: queued, it never starts; running, it stops after its current step (the
    trials in flight are cancelled, no more are asked).  A grid sweep: each member not yet
    ended is cancelled as its job's cancel does.  409 for a sweep that already ended
    otherwise."""
    record = existing_sweep(store, sweep_id)
    if record["owner"] != caller.name and not caller.may("admin"):
        raise HTTPException(403, f"sweep {sweep_id} is {record['owner'] or 'nobody'}'s: a {caller.role} token "
                            "cancels only its own sweeps")
    if record["search"] is not None:
        if record["state"] in ("done", "failed"):
            raise HTTPException(409, f"sweep {sweep_id} already {record['state']}")
        record = store.request_search_cancel(sweep_id)
        scheduler.cancel_search(sweep_id)
        return sweep_detail(store, record)
    jobs = [job for job in store.sweep_jobs(sweep_id) if job["status"] not in FINAL]
    if not jobs:
        raise HTTPException(409, f"sweep {sweep_id} already done")
    for job in jobs:
        store.request_cancel(job["id"])
    if any(job["stack_id"] and job["status"] == "queued" for job in jobs):  # (a paused stack's: see cancel_job)
        scheduler.forget_checkpoints()
    return sweep_detail(store, record)


def existing_sweep(store, sweep_id: str) -> dict:
    """The record of the sweep ``sweep_id``; 404 if there is none."""
    record = store.sweep(sweep_id)
    if record is None:
        raise HTTPException(404, f"no sweep {cut(sweep_id, 80)}")
    return record


def sweep_detail(store, record: dict) -> dict:
    """A sweep as GET /v1/sweeps/{id} shows it (schemas.SweepDetail): its record and its
    members, in the sweep's order (a search's: by trial number)."""
    jobs = store.sweep_jobs(record["id"])
    if record["search"] is not None:
        jobs.sort(key=lambda job: job["trial"]["number"])
    metric = sweep_metric(record["config"])
    epochs = store.last_epochs(record["id"])
    members = [job_view(job) | {"member": _member(index, job), "grid": job["grid"],
                                "metric_value": _scores(job).get(metric), "epochs": epochs.get(job["id"])}
               for index, job in enumerate(jobs)]
    return sweep_view(record, jobs, metric) | {"members": members}


def sweep_metric(config: dict) -> str:
    """The metric that ranks a sweep's members, from its ``config`` (a search's base, a grid
    sweep's first member's): its early_stopping.metric (the one that picks each member's
    best epoch), else its task's default, as `numbamlp sweep` chooses it (metric_for)."""
    from numbamlp.config import TrainConfig
    from numbamlp.sweeps.results import metric_for

    return metric_for(TrainConfig.model_validate(config), None)


def sweep_view(record: dict, jobs: list[dict], metric: str) -> dict:
    """A sweep as the API shows it (schemas.Sweep), from its record (store.sweep's) and its
    jobs in member order (each with at least id, sweep_id, owner, status, created_at,
    started_at, finished_at, scores and trial).

    A grid sweep's state: ``done`` when every member has ended (succeeded, failed or
    cancelled); else ``running`` when a member has started (it trains, waits paused between
    time slices, or has ended after training); else ``queued`` (no member has started: each
    waits, or was cancelled before it started).  A search's: its record's.  The best
    member: numbamlp.sweeps.results' best_row over the succeeded members (a search's
    finished trials), by ``metric``."""
    from numbamlp.sweeps.results import best_row

    counts = dict.fromkeys(STATUSES, 0)
    for job in jobs:
        counts[job["status"]] += 1
    best = best_row([_ranking_row(_member(index, job), job, metric) for index, job in enumerate(jobs)], metric)
    search = record["search"]
    if search is None:
        done = all(job["status"] in FINAL for job in jobs)
        started = any(job["started_at"] is not None for job in jobs)
        state = "done" if done else "running" if started else "queued"
        finished_at = max((job["finished_at"] for job in jobs if job["finished_at"] is not None),
                          default=None) if done else None
    else:
        state, finished_at = record["state"], record["finished_at"]
        trials = dict.fromkeys(TRIAL_STATUSES, 0)
        for job in jobs:
            trials[trial_status(job["status"], job["trial"]["pruned_epoch"])] += 1
        search = {**search, "trials_by_status": trials, "cancel_requested": record["cancel_requested"],
                  "error": record["error"]}
    return {
        "id": record["id"], "owner": record["owner"], "created_at": record["created_at"], "finished_at": finished_at,
        "size": len(jobs), "counts": counts, "state": state, "metric": metric,
        "best": None if best is None else {"job_id": best["job_id"], "member": best["member"], "metric": metric,
                                           "value": best[metric]},
        "search": search,
    }


def _member(index: int, job: dict) -> int:
    """A member's index: a search's trial's number, else its place in the grid's order."""
    return index if job.get("trial") is None else job["trial"]["number"]


def _ranking_row(member: int, job: dict, metric: str) -> dict:
    """A member as a row of `numbamlp sweep`'s results table, as far as ranking reads one:
    its status there (a succeeded job is a "done" row, results.FINISHED; a pruned trial a
    "pruned" one, never the best), the metric's value and val_loss (the tie-break)."""
    scores = _scores(job)
    pruned = job.get("trial") is not None and job["trial"]["pruned_epoch"] is not None
    status = "pruned" if pruned else "done" if job["status"] == "succeeded" else job["status"]
    return {"member": member, "job_id": job["id"], "status": status, "val_loss": scores.get("val_loss"),
            metric: scores.get(metric)}


def _scores(job: dict) -> dict:
    """A job's saved model's metrics ({} until it has succeeded)."""
    return job["scores"] or {}
