"""Connections the server holds, and a log that says a repeated error once.

uvicorn holds a connection for as long as its client keeps sending a header line now and
then, and never closes one whose headers stop half-way: 3,000 such connections were all
held, and past the open-file limit the accept loop logged "Too many open files" tens of
megabytes a minute.  `guarded_h11` is uvicorn's HTTP/1.1 protocol with three more rules:

- at most ``limits.max_connections`` open at once (kept under the process's open-file
  limit); one more gets a 503 and is closed at once;
- a request's headers must be in within ``header_timeout_s`` of the connection opening (or of
  the previous response on a kept-alive connection), and its body within
  ``body_timeout_s`` of its headers; otherwise the connection is closed;
- a request whose body is in is never timed out: an event stream may run for hours.
"""

from __future__ import annotations

import json
import logging
import resource
import time

from numbamlp.service.limits import Limits

FILES_KEPT_FOR_THE_SERVER = 128  # open files besides connections: the database, models, data, Dask
_BUSY_BODY = json.dumps({"detail": "the server has too many open connections: try again shortly"}).encode()
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
        b"connection: close\r\ncontent-length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY)


def connection_cap(limits: Limits) -> int:
    """How many connections may be open: the limit, and below the open-file limit, which is
    first raised as far as the system lets this process raise it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return max(1, min(limits.max_connections, soft - FILES_KEPT_FOR_THE_SERVER))


def guarded_h11(limits: Limits, cap: int):
    """uvicorn's H11Protocol with the connection cap and the header and body timeouts."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11(H11Protocol):
        _deadline = None   # the pending TimerHandle
        _waiting = None    # "headers" or "body": what must arrive before the deadline
        _answered = None   # the request/response cycle that was current when headers were awaited

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > cap:
                transport.write(BUSY)
                transport.close()
                return
            self._await("headers")

        def _await(self, what: str | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._waiting, self._deadline = what, None
            if what is not None:
                self._answered = self.cycle
                seconds = limits.header_timeout_s if what == "headers" else limits.body_timeout_s
                self._deadline = self.loop.call_later(seconds, self._too_slow)

        def handle_events(self) -> None:
            super().handle_events()
            if self._waiting == "headers" and self.cycle is not None and self.cycle is not self._answered:
                self._await("body" if self.cycle.more_body else None)  # a new request's headers are in
            elif self._waiting == "body" and not self.cycle.more_body:
                self._await(None)  # the whole request is in: what follows is the response's time

        def on_response_complete(self) -> None:
            if not self.transport.is_closing():  # (first: a pipelined request is read inside super's)
                self._await("headers")
            super().on_response_complete()

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc) -> None:
            self._await(None)
            super().connection_lost(exc)

    return GuardedH11


class SaidOnce(logging.Filter):
    """Lets a message through once per ``interval_s``; the next time it is let through, it
    says how many times it came meanwhile.  Put on the loggers an error can repeat on
    (asyncio's accept loop, uvicorn's, the scheduler's), so a fault fills no disk."""

    def __init__(self, interval_s: float = 60.0):
        super().__init__()
        self.interval_s, self.seen = interval_s, {}  # message → [last let through, repeats since]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage()[:200])  # (formatted: "failed: %s" is many messages)
        now = time.monotonic()
        entry = self.seen.get(key)
        if entry is not None and now - entry[0] < self.interval_s:
            entry[1] += 1
            return False
        repeats = entry[1] if entry is not None else 0
        self.seen[key] = [now, 0]
        if len(self.seen) > 1000:  # (distinct messages are few; this only bounds the memory)
            self.seen.clear()
        if repeats:
            record.msg = f"{record.msg} (and {repeats} more times in the last {self.interval_s:g} s)"
        return True


SERVICE_LOGGERS = ("asyncio", "uvicorn.error", "numbamlp.service")


def say_repeats_once() -> None:
    for name in SERVICE_LOGGERS:
        logging.getLogger(name).addFilter(SaidOnce())
