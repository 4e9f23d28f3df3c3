"""A job's progress as events: stored as its epochs end (``EpochEvents``, a stack's or a
search's), and streamed as Server-Sent Events (GET /v1/jobs/{id}/events): one ``epoch``
event per stored epoch (``id:`` the epoch number), then an ``end`` event with the final
status.  A client that reconnects sends the last id it saw as Last-Event-ID and resumes
after it."""

from __future__ import annotations

import asyncio
import json
import logging
import time

from fastapi import HTTPException, Request

from numbamlp.job_status import FINAL
from numbamlp.service.store import StorageFull, Store, is_sqlite_integer

SSE_POLL_S = 0.1  # how often a stream looks for new epochs
# An event stream with nothing to say sends a comment this often (and one at once), so that
# proxies and clients see a live connection while a job waits in the queue.
SSE_HEARTBEAT_S = 15.0


async def event_stream(store: Store, job_id: str, after: int, request: Request):
    """SSE: the job's epochs after ``after`` (the history of a finished job too), as they
    come, then an ``end`` event with the final status."""
    last = after
    yield ": open\n\n"
    said = time.monotonic()
    while True:
        # the status first: a job's last epoch is stored before it is final (EpochEvents.flush first)
        job = await asyncio.to_thread(store.job, job_id)
        for epoch, metrics in await asyncio.to_thread(store.events, job_id, last):
            yield f"id: {epoch}\nevent: epoch\ndata: {json.dumps(metrics)}\n\n"
            last, said = epoch, time.monotonic()
        if time.monotonic() - said >= SSE_HEARTBEAT_S:
            yield ": heartbeat\n\n"
            said = time.monotonic()
        if job["status"] in FINAL:
            end = {"status": job["status"], "test_accuracy": job["test_accuracy"], "scores": job["scores"],
                   "error": job["error"]}
            yield f"event: end\ndata: {json.dumps(end)}\n\n"
            return
        if await request.is_disconnected() or request.app.state.stopping.is_set():
            return  # (a stream held open would keep a stopping server from stopping: the client resumes later)
        await asyncio.sleep(SSE_POLL_S)


def event_position(last_event_id: str) -> int:
    """The epoch a Last-Event-ID names; anything but an epoch number is refused (422), as a
    page token that this server did not give is."""
    # (at most 19 digits: int() of over 4,300 would raise, and SQLite holds no more anyway)
    digits = last_event_id.isdigit() and last_event_id.isascii() and len(last_event_id) <= 19
    after = int(last_event_id) if digits else None
    if not is_sqlite_integer(after):
        raise HTTPException(422, f"Last-Event-ID {last_event_id[:40]!r} is not an epoch number this server sent")
    return after


class EpochEvents:
    """StackTrainer callback: each member's epoch metrics become its job's events; ``ids``
    says whose, member → job id (a stack's list, whose slots change hands as jobs leave and
    join, or a search's dict of trials, which grows as trials start).

    Each job may store a burst of BURST events, then PER_SECOND a second: a job whose epochs
    take microseconds (epochs 1e9) stores events as time passes, not as epochs do.  An
    epoch not stored is remembered, and the latest one is stored as soon as the job may
    store again, and at the end (``flush``): a job's last epoch is always there.  A full
    disk drops events (the job goes on)."""

    BURST, PER_SECOND = 100, 10.0

    def __init__(self, store: Store, ids):
        self.store, self.ids = store, ids
        self.allowance: dict[int, float] = {}  # member → events it may store now (BURST at first)
        self.refilled: dict[int, float] = {}  # member → when its allowance was last topped up
        self.unsaved: dict[int, tuple[int, dict]] = {}

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        member = metrics["member"]
        now = time.monotonic()
        since = now - self.refilled.get(member, now)
        self.allowance[member] = min(self.BURST, self.allowance.get(member, self.BURST) + since * self.PER_SECOND)
        self.refilled[member] = now
        self.unsaved[member] = (epoch, {k: v for k, v in metrics.items() if k != "member"})
        if self.allowance[member] >= 1:
            self.allowance[member] -= 1
            self._save(member)

    def flush(self, member: int | None = None) -> None:
        """Store the last epoch not yet stored of ``member`` (of every member: None)."""
        members = list(self.unsaved) if member is None else [m for m in (member,) if m in self.unsaved]
        for one in members:
            self._save(one)

    def forget(self, member: int) -> None:
        """A new job in ``member``'s slot (a stack's free slot taken): its allowance starts
        anew (flush the job that left first)."""
        self.allowance.pop(member, None)
        self.refilled.pop(member, None)
        self.unsaved.pop(member, None)

    def _save(self, member: int) -> None:
        epoch, metrics = self.unsaved.pop(member)
        if self.store.full:
            return
        try:
            self.store.add_event(self.ids[member], epoch, metrics)
        except StorageFull:
            logging.getLogger("numbamlp.service").error("the disk is full: epoch events are not stored until there "
                                                        "is room")
