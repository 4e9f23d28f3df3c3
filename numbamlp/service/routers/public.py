"""The routes anyone may call, without a token (auth.PUBLIC_PATHS): liveness, and the
dashboard's page (it asks for a token itself).

The dashboard is a few plain files in numbamlp/service/static: index.html names its style
sheets and scripts, and the page is served as one document with each of them written in
place.  Only "/" is public (auth.PUBLIC_PATHS is a set of exact paths), and a browser
cannot send a bearer token for a <script src>, so the files are not served one by one;
one response also makes the first load a single request."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

STATIC = Path(__file__).parents[1] / "static"  # (numbamlp/service/static: the dashboard)
# index.html's references to its own files, each on a line of its own
ASSET = re.compile(r'^<link rel="stylesheet" href="([\w-]+\.css)">$|^<script src="([\w-]+\.js)"></script>$', re.M)

router = APIRouter()


@router.get("/healthz", tags=["service"])
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def dashboard() -> HTMLResponse:
    # (read at each request, as before: an edited file shows at the next reload)
    return HTMLResponse(dashboard_page(), headers={"Cache-Control": "no-cache"})


def dashboard_page() -> str:
    """index.html with the style sheets and scripts it names written in place."""
    return ASSET.sub(_inlined, (STATIC / "index.html").read_text())


def _inlined(reference: re.Match) -> str:
    style, script = reference.groups()
    text = (STATIC / (style or script)).read_text()
    closing = "</style" if style else "</script"
    if closing in text.lower():  # (it would end the element early: the rest would be read as HTML)
        raise ValueError(f"numbamlp/service/static/{style or script} holds {closing!r}")
    return f"<style>\n{text}</style>" if style else f"<script>\n{text}</script>"
