"""POST /v1/sweeps: a base config and a grid (or random draws from it) → a job per member,
all submitted at once under one sweep id, each member checked as a job is first."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from numbamlp.service.dependencies import DataDirDep, LimitsDep, StoreDep, Submitter, room_for_work
from numbamlp.service.schemas import SweepJobs, SweepRequest, job_view
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
    jobs = store.add_jobs(configs, sweep_id=sweep_id, owner=caller.name)
    return {"id": sweep_id, "jobs": [job_view(job) for job in jobs]}
