"""GET /v1/me: whose token a request carries, and its role (the dashboard asks, to show
what the token may do)."""

from __future__ import annotations

from fastapi import APIRouter

from numbamlp.service.dependencies import Reader
from numbamlp.service.schemas import Me

router = APIRouter(tags=["service"])


@router.get("/v1/me", response_model=Me)
def me(caller: Reader) -> dict:
    """Whose token this is, and its role."""
    return {"name": caller.name, "role": caller.role}
