"""A search's running stack behind one small interface, wherever it runs: ``SlotStack``
trains in the calling thread (a search in this process), and on Dask the same class lives
on a worker as an actor (``DaskRunner.open_slot_stack``) whose calls the search's process
makes.  The search (numbamlp.sweeps.search.TrialRunner) keeps the books of which trial sits
in which slot; the stack only trains, seats and lets go.

A call is one round trip: ``epoch(seats)`` seats the new trials, trains one epoch and says
what each trained member did; ``leave(statuses)`` takes members out and returns their
outcomes (numbamlp.sweeps.task.member_outcome).  A stack whose Dask worker is lost is not
built again (Dask marks an actor's task erred): its runner's handle raises StackLost.
"""

from __future__ import annotations

import contextlib

from numbamlp.sweeps.task import SweepData, error_text, member_outcome


class StackLost(Exception):
    """The stack is gone with its Dask worker: its trials train again elsewhere."""


class SlotStack:
    """A stack of ``slots`` slots of one stack key on ``data``, its first member from
    ``config`` (a TrainConfig's dict) in slot 0 and the others vacant until seated.
    ``threads``: Numba's threads for its epochs (a Dask worker's share of the cores; None:
    the calling thread's).  The fit is opened by the first call, in the thread that makes
    the calls (on a worker, its actor thread), which holds the fit's threads."""

    def __init__(self, config: dict, slots: int, data: SweepData, threads: int | None = None):
        self.config, self.slots, self.data, self.threads = config, slots, data, threads
        self.fit = None
        self.stop_reason = None

    def _open(self) -> None:
        from numbamlp.stack import StackTrainer

        if self.threads is not None:
            from numbamlp.threads import set_threads

            set_threads(self.threads, "cpu")
        stack = StackTrainer([self.config] * self.slots)
        data = self.data
        self.fit = stack.open_fit(data.X_train, data.y_train, data.X_val, data.y_val)
        for slot in range(1, self.slots):
            self.fit.release(slot, "vacant")
        if self.stop_reason is not None:
            stack.request_stop(self.stop_reason)

    def epoch(self, seats: dict) -> dict:
        """Seat ``seats`` {slot: config} (a config the stack refuses leaves its slot vacant:
        ``refused`` {slot: error}), then one epoch of every running member.

        Returns {"trained": {slot: [epochs, the epoch's metrics]} of the members that
        completed an epoch (not one that diverged in it), "ended": slots whose member
        stopped on its own, "refused"}.  Raises numbamlp.member.TrainingInterrupted after
        ``stop``."""
        if self.fit is None:
            self._open()
        fit = self.fit
        refused = {}
        for slot, config in seats.items():
            try:
                fit.seat(slot, config)
            except Exception as err:  # noqa: BLE001 — a trial the stack refuses is a failed row
                refused[slot] = error_text(err)
        before = {slot: fit.epochs_done(slot) for slot in fit.running()}
        fit.run_epoch()
        trained = {slot: fit.history(slot) for slot, done in before.items() if fit.epochs_done(slot) > done}
        return {"trained": {slot: [len(history), history[-1]] for slot, history in trained.items()},
                "ended": fit.ended(), "refused": refused}

    def leave(self, statuses: dict[int, str | None]) -> dict[int, dict]:
        """Each slot's member out ({slot: status}: None for one that ended on its own, else
        e.g. "pruned", "cancelled"), and its outcome (member_outcome; a pruned member's
        with ``pruned_epoch``)."""
        outcomes = {}
        for slot, status in statuses.items():
            left = self.fit.release(slot, status)
            outcome = member_outcome(left["trainer"], left["status"], left["error"], self.data)
            if left["status"] == "pruned":
                outcome["pruned_epoch"] = left["epochs"]
            outcomes[slot] = outcome
        return outcomes

    def stop(self, reason: str) -> None:
        """Stop after the current step (from any thread): the epoch raises TrainingInterrupted."""
        self.stop_reason = reason
        if self.fit is not None:
            self.fit.stack.request_stop(reason)

    def close(self) -> None:
        if self.fit is not None:
            self.fit.close()



class StackFailed(Exception):
    """A stack on a Dask worker failed: the error's one line (error_text), in an exception
    that any process can unpickle (an actor's error that cannot be unpickled is never
    answered)."""


class WorkerSlotStack(SlotStack):
    """A SlotStack on a Dask worker (an actor): its epochs on the worker's share of the
    cores; its errors as StackFailed (TrainingInterrupted and StackLost as they are)."""

    def _open(self) -> None:
        from numbamlp.sweeps.task import worker_threads

        self.threads = worker_threads()
        super()._open()

    def epoch(self, seats: dict) -> dict:
        with _failing_plainly():
            return super().epoch(seats)

    def leave(self, statuses: dict[int, str | None]) -> dict[int, dict]:
        with _failing_plainly():
            return super().leave(statuses)


@contextlib.contextmanager
def _failing_plainly():
    from numbamlp.member import TrainingInterrupted

    try:
        yield
    except TrainingInterrupted:
        raise
    except Exception as err:  # noqa: BLE001 — (sent back as one line the caller can read)
        raise StackFailed(error_text(err)) from None


class _Later:
    """A call made when its result is first asked for (an in-process stack's epoch: the
    search runs it when it waits for it), as a future's ``result``."""

    def __init__(self, call):
        self.call, self.value, self.error, self.ran = call, None, None, False

    def result(self):
        if not self.ran:
            self.ran = True
            try:
                self.value = self.call()
            except BaseException as err:
                self.error = err
        if self.error is not None:
            raise self.error
        return self.value


class LocalSlots:
    """An in-process runner's handle on a SlotStack (a Dask runner's handle has the same
    methods): ``start_epoch(seats)`` gives a future of ``epoch``'s report, run in this
    thread when waited for; ``leave``, ``stop`` and ``close`` as SlotStack's."""

    def __init__(self, stack: SlotStack):
        self.stack = stack

    def start_epoch(self, seats: dict) -> _Later:
        return _Later(lambda: self.stack.epoch(seats))

    def leave(self, statuses: dict) -> dict:
        return self.stack.leave(statuses)

    def stop(self, reason: str) -> None:
        self.stack.stop(reason)

    def close(self) -> None:
        self.stack.close()
