"""The routes anyone may call, without a token (auth.PUBLIC_PATHS): liveness, and the
dashboard's page (it asks for a token itself)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

STATIC = Path(__file__).parents[1] / "static"  # (numbamlp/service/static: the dashboard)

router = APIRouter()


@router.get("/healthz", tags=["service"])
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def dashboard() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text())
