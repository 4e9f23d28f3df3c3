"""How the service answers an error: always {"detail": "one line"}, cut short.  The
exception handlers create_app installs (``add_error_handlers``), and ``cut``, which keeps a
message quoting a huge input one short line."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from numbamlp.service.store import StorageFull


def cut(text: str, limit: int = 1000) -> str:
    """``text`` at most ``limit`` characters: an error quoting a huge input stays one short line."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


async def one_line_422(request: Request, err: RequestValidationError) -> JSONResponse:
    """A malformed request body as one line naming where, like every other 422."""
    problems = "; ".join(f"{'.'.join(cut(str(p), 60) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
                         for e in err.errors())
    return JSONResponse({"detail": cut(f"invalid request: {problems}")}, status_code=422)


async def short_detail(request: Request, err: StarletteHTTPException) -> JSONResponse:
    """Every error as {"detail": one line}, cut short: a message quoting a huge input
    (a 100,000-character key, say) must not send it back whole.  FastAPI's 400 for a
    body that is not UTF-8 is a 422, as every other malformed body is."""
    if err.status_code == 400:
        return JSONResponse({"detail": "invalid request: the body is not JSON (UTF-8 text)"}, status_code=422)
    return JSONResponse({"detail": cut(str(err.detail))}, status_code=err.status_code, headers=err.headers)


async def disk_full(request: Request, err: StorageFull) -> JSONResponse:
    """A full disk (StorageFull) as 507, and said in the log: new work is refused until there is room."""
    logging.getLogger("numbamlp.service").error("the disk is full: new jobs and uploads are refused (507) until "
                                                "there is room")
    return JSONResponse({"detail": "the server's disk is full: nothing was stored; try again later"},
                        status_code=507)


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error as this module says, whichever part of the app raised it."""
    app.add_exception_handler(RequestValidationError, one_line_422)
    app.add_exception_handler(StarletteHTTPException, short_detail)
    app.add_exception_handler(StorageFull, disk_full)
