"""The service's routes, one module per resource, each an ``APIRouter`` that create_app
includes:

    public     GET /healthz, GET /              no token: liveness, the dashboard page
    datasets   POST /v1/datasets                uploads
    jobs       /v1/jobs, /v1/jobs/{job_id}      submit, list, show, cancel, follow (events)
    callers    GET /v1/me                       whose token this is
    models     /v1/jobs/{job_id}/model, /predict   a succeeded job's model: download, predict
    sweeps     /v1/sweeps, /v1/sweeps/{sweep_id}   submit a grid of jobs at once, or a search; list, show (with
                                                its members), cancel

The OpenAPI document lists the paths in the order they are included (see create_app).
"""
