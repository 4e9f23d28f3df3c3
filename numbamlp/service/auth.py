"""Who may use the service: bearer tokens, one per person, each with a role.

    read     list and show jobs and sweeps, follow their events, download models, predict
    submit   read, and submit jobs, sweeps and data sets; cancel its own jobs and sweeps
    admin    submit, and cancel anyone's jobs and sweeps

The first start writes an admin token to ``DATA_DIR/token`` (mode 0600, written
atomically); it is the token named ``admin``.  More come from ``numbamlp serve token create
NAME --role ROLE``.  The database keeps each token's SHA-256, never the token: a token is
256 random bits, so its hash cannot be walked back and needs no slow key derivation.

Requests are authenticated by an ASGI middleware before any route runs, so a request
without a valid token costs a header lookup, never the reading or parsing of its body.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path


ROLES = ("read", "submit", "admin")  # each may do what the ones before it may
TOKEN_FILE = "token"
FILE_TOKEN_NAME = "admin"  # the token in DATA_DIR/token
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{32,256}")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# Routes anyone may call: liveness, the dashboard page (it asks for a token) and the API's
# own description.  Every other path, an unknown one too, needs a token.
PUBLIC_PATHS = frozenset({"/", "/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


class TokenFileError(RuntimeError):
    """The token file cannot be trusted (empty, malformed, readable by others): one line."""


@dataclass(frozen=True)
class Caller:
    """Whoever a request's token belongs to."""

    name: str
    role: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    """A token's name as given, or ValueError saying what names may be."""
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        raise ValueError(f"token name {name[:70]!r} is not 1-64 letters, digits, '.', '_' or '-' "
                         "(starting with a letter or digit)")
    return name


def read_or_create_token(data_dir) -> tuple[str, bool]:
    """The admin token in ``data_dir/token``, created on the first start; returns (token,
    created).  TokenFileError when the file is empty, malformed or open to others."""
    from numbamlp.io import atomic_write_bytes  # (here: `numbamlp serve --help` reads ROLES without it)

    path = Path(data_dir) / TOKEN_FILE
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        token = new_token()
        try:  # (0600, written to a temporary and renamed: never an empty or partial token file)
            atomic_write_bytes(path, (token + "\n").encode(), mode=0o600)
        except OSError as err:  # (a full disk: nothing is left behind, the next start tries again)
            raise TokenFileError(f"cannot write {path}: {err.strerror or err}") from None
        return token, True
    if mode & 0o077:
        raise TokenFileError(f"{path} is readable by others (mode {stat.S_IMODE(mode):04o}): run "
                             f"chmod 600 {path}, and consider the token known (delete the file and restart "
                             "for a new one)")
    text = path.read_text(errors="replace").strip()
    if TOKEN_PATTERN.fullmatch(text) is None:
        what = "empty" if not text else "not a token (32-256 letters, digits, '-' or '_')"
        raise TokenFileError(f"{path} is {what}: delete it and start again to make a new admin token")
    return text, False


def bearer_token(headers) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header among ASGI ``headers``
    ([(name, value) bytes]), or None (no header, another scheme, nothing after it)."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, given = value.decode("latin-1").partition(" ")
            given = given.strip()
            return given if scheme.lower() == "bearer" and given else None
    return None


class Authenticate:
    """ASGI middleware: every path but PUBLIC_PATHS needs a token that ``lookup`` (token →
    Caller or None) knows; 401 otherwise, answered before the body is read.  The caller
    goes into the request's state (``request.state.caller``)."""

    def __init__(self, app, lookup):
        self.app, self.lookup = app, lookup

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan" or (scope["type"] == "http" and scope["path"] in PUBLIC_PATHS):
            return await self.app(scope, receive, send)
        token = bearer_token(scope["headers"])
        caller = self.lookup(token) if token is not None else None
        if caller is None:
            if scope["type"] != "http":  # (a websocket, should a route ever take one: closed, policy violation)
                return await send({"type": "websocket.close", "code": 1008})
            return await _refuse(send)
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)


async def _refuse(send) -> None:
    body = json.dumps({"detail": "missing or wrong bearer token"}).encode()
    # (the body, if any, is never read: the connection closes after the answer)
    await send({"type": "http.response.start", "status": 401, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b"Bearer"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
