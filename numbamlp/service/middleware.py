"""The service's own ASGI middleware, which act before any route does: ``BodyLimit`` (413
for a body over --max-request-mb, before it is read whole) and ``HeadAsGet`` (HEAD wherever
GET is).  The third, ``Authenticate`` (401 without a token), lives with the tokens in
auth.py; create_app stacks all three."""

from __future__ import annotations

import json


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_mb`` MB — at once by its Content-Length,
    or as soon as a streamed body passes the limit — so no handler reads it whole."""

    def __init__(self, app, max_mb: float):
        self.app, self.max_mb, self.limit = app, max_mb, int(max_mb * (1 << 20))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._refuse(send)
        seen = 0
        started = refused = False

        async def limited_receive():
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                # answered here: FastAPI turns any error while it reads a JSON body into a 400
                if not started and not refused:
                    refused = True
                    await self._refuse(send)
                raise _TooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if refused:  # (the app's answer to the body it could not read: the 413 went instead)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            pass  # (the 413 has gone out, or the app had begun its answer)

    async def _refuse(self, send):
        body = json.dumps({"detail": f"request body larger than {self.max_mb:g} MB"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    """Raised into the app when its body passes the limit: it stops reading."""


class HeadAsGet:
    """ASGI middleware: HEAD wherever GET is (RFC 9110; uptime checks send HEAD /healthz),
    answered as the GET is, headers only.  The GET's body is dropped, and a streamed one
    (a job's events) is told the client left once the headers are out."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)
        answered = False

        async def headers_only(message):
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:  # the headers end the answer
                answered = True
                await send(message)
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def leaves_after_headers():
            if answered:
                return {"type": "http.disconnect"}
            return await receive()

        await self.app(dict(scope, method="GET"), leaves_after_headers, headers_only)
