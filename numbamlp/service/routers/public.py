"""The routes anyone may call, without a token (auth.PUBLIC_PATHS): liveness, and the
dashboard's page (it asks for a token itself).

The dashboard is a few plain files in numbamlp/service/static: index.html names its style
sheets and scripts, and the page is served as one document with each of them written in
place.  Only "/" is public (auth.PUBLIC_PATHS is a set of exact paths), and a browser
cannot send a bearer token for a <script src>, so the files are not served one by one;
one response also makes the first load a single request.  Its Content-Security-Policy
allows those scripts and styles alone (by their SHA-256), requests to this server only,
and no framing (another site cannot put the page, which holds a token, in a frame)."""

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
    page, hashes = dashboard_page_and_hashes()
    sources = {kind: " ".join(f"'sha256-{digest}'" for digest in digests) for kind, digests in hashes.items()}
    policy = (f"default-src 'none'; script-src {sources['script']}; style-src {sources['style']}; "
              "connect-src 'self'; img-src 'self' data: blob:; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
    return HTMLResponse(page, headers={"Cache-Control": "no-cache", "Content-Security-Policy": policy,
                                       "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                                       "Referrer-Policy": "no-referrer"})


def dashboard_page() -> str:
    """index.html with the style sheets and scripts it names written in place."""
    return dashboard_page_and_hashes()[0]


def dashboard_page_and_hashes() -> tuple[str, dict[str, list[str]]]:
    """dashboard_page, and the base64 SHA-256 of each style and script element's text
    {"style": [...], "script": [...]} (what its Content-Security-Policy allows)."""
    import base64
    import hashlib

    hashes: dict[str, list[str]] = {"style": [], "script": []}

    def inlined(reference: re.Match) -> str:
        style, script = reference.groups()
        text = "\n" + (STATIC / (style or script)).read_text()
        kind = "style" if style else "script"
        if f"</{kind}" in text.lower():  # (it would end the element early: the rest would be read as HTML)
            raise ValueError(f"numbamlp/service/static/{style or script} holds '</{kind}'")
        hashes[kind].append(base64.b64encode(hashlib.sha256(text.encode()).digest()).decode())
        return f"<{kind}>{text}</{kind}>"

    return ASSET.sub(inlined, (STATIC / "index.html").read_text()), hashes
