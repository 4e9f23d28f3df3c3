"""Where a sweep's tasks run: one after another in this process (all cores; no Dask
import), or on a Dask cluster — a ``LocalCluster`` of ``workers`` processes the sweep starts,
one at a ``scheduler`` address, or a ``client`` given.

A runner's ``run(tasks, data)`` yields (index, outcomes) as each task finishes; ``close()``
stops what the runner started.
"""

from __future__ import annotations

import contextlib
import gc
import logging

from numbamlp.sweeps.errors import SweepError
from numbamlp.sweeps.task import SweepData, signals_are_ours, train_stack, train_stack_on_worker

SCHEDULER_TIMEOUT_S = 3  # to reach a Dask scheduler by address before the sweep says it cannot
EPOCH_POLL_S = 0.002  # how often a search on Dask looks for its stacks' ended epochs


class InProcessRunner:
    """Tasks one after another in this process; a search's stacks too, each epoch when the
    search waits for it."""

    parallel = 1

    def share(self, data: SweepData) -> SweepData:
        return data

    def open_slot_stack(self, config, slots: int, data: SweepData):
        """A search's stack (numbamlp.sweeps.slots), its first member from ``config``."""
        from numbamlp.sweeps.slots import LocalSlots, SlotStack

        return LocalSlots(SlotStack(config, slots, data))

    def first_done(self, pending: list):
        """Of the epochs started (in the order the search takes them), the one to take
        next: here, the first (it runs when its result is asked for)."""
        return pending[0]

    def run(self, tasks: list[list[dict]], data: list[SweepData]):
        """Yields (index, outcomes) of each task (its configs, trained on data[index])."""
        with signals_are_ours():
            for index, configs in enumerate(tasks):
                yield index, train_stack(configs, data[index])

    def close(self) -> None:
        pass


def _freeze_at_exit_plugin():
    """A Dask worker plugin (made here: distributed is imported only for a sweep on Dask)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class FreezeAtExit(WorkerPlugin):
        """On the workers of the sweep's own LocalCluster: when a worker closes, its objects
        are frozen (gc.freeze) so that the exiting process does not walk them all in a last
        garbage collection, ~0.25 s after Numba's kernels (closing the 2-worker cluster took
        0.30 s, 0.04 s with this; the CLI does the same for its own process)."""

        def teardown(self, worker) -> None:
            gc.freeze()

    return FreezeAtExit()


class DaskRunner:
    """Tasks on a Dask cluster: the data scattered to every worker once, one task per stack,
    results taken as they complete.  Dask reruns a task whose worker was lost."""

    def __init__(self, workers: int | None, scheduler: str | None, client):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise SweepError("running a sweep on Dask needs the dask extra: pip install 'numbamlp[dask]'") from None
        self.cluster = None
        self.own_client = client is None
        if client is not None:
            self.client = client
        elif scheduler is not None:
            try:
                self.client = Client(scheduler, timeout=f"{SCHEDULER_TIMEOUT_S}s")
            except (OSError, TimeoutError, ValueError) as err:
                raise SweepError(f"cannot reach the Dask scheduler at {scheduler}: {str(err).splitlines()[0]}") from None
        else:
            from numbamlp.kernels import usable_cores

            cores = usable_cores()
            # one task at a time per worker process, with its share of the cores for Numba
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        # (the scheduler's HTTP server on a free port: the default 8787
                                        # warns on the terminal when another cluster holds it)
                                        dashboard_address=":0",
                                        # (a Ctrl-C cancels the running tasks: each worker would log a
                                        # multi-line warning for it under the one-line report, and
                                        # under load a worker's heartbeat to the closing scheduler an
                                        # error with a traceback; the sweep reports failures itself)
                                        silence_logs=logging.CRITICAL,
                                        env={"NUMBA_NUM_THREADS": str(max(1, cores // workers))})
            self.client = Client(self.cluster)
            self.client.register_plugin(_freeze_at_exit_plugin(), name="numbamlp-freeze-at-exit")

    @property
    def parallel(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def run(self, tasks: list[list[dict]], data: list[SweepData]):
        """As InProcessRunner.run: each data set goes to every worker once."""
        from distributed import as_completed

        # a key of its own (hash=False): a key named by the data's hash would be shared with an
        # earlier sweep's scatter of the same data, which the scheduler may be releasing now
        distinct = {id(one): one for one in data}  # (data has an entry per task; most share one data set)
        shared = {key: self.client.scatter(one, broadcast=True, hash=False) for key, one in distinct.items()}
        futures = {self.client.submit(train_stack_on_worker, configs, shared[id(data[index])], pure=False): index
                   for index, configs in enumerate(tasks)}
        try:
            with _interrupt_on_signals():
                for future in as_completed(futures):
                    yield futures[future], future.result()
        finally:
            self.client.cancel(list(futures))

    def share(self, data: SweepData):
        """``data`` on every worker, once (a future the stacks are built with)."""
        return self.client.scatter(data, broadcast=True, hash=False)

    def open_slot_stack(self, config, slots: int, data):
        """A search's stack as a Dask actor (numbamlp.sweeps.slots.WorkerSlotStack), where
        Dask places it; StackLost when its worker is lost before it is built."""
        from numbamlp.sweeps.slots import WorkerSlotStack

        future = self.client.submit(WorkerSlotStack, _as_dict(config), slots, data, actor=True, pure=False)
        return _ActorSlots(self.client, future)

    def first_done(self, pending: list):
        """Of the epochs started (futures, in the order the search takes them), the first
        that has ended, once one has (looked at every EPOCH_POLL_S: an actor's future has no
        wait for the first of several, and a thread blocked on one would hold the process at
        its exit)."""
        import time

        with _interrupt_on_signals():
            while True:
                for future in pending:
                    if future.done():
                        return future
                time.sleep(EPOCH_POLL_S)

    def close(self) -> None:
        if self.own_client:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


@contextlib.contextmanager
def _interrupt_on_signals():
    """While a sweep's process waits for Dask's tasks (in its main thread): SIGINT and
    SIGTERM interrupt the wait (KeyboardInterrupt, which the sweep reports as interrupted,
    its finished members kept), as in-process training stops on them.  Set here, not
    inherited: a process started in the background by a shell ignores SIGINT."""
    from numbamlp.run import on_signals

    def interrupt(signal_number):
        raise KeyboardInterrupt

    with on_signals(interrupt):
        yield


class _ActorSlots:
    """A search's stack on a Dask worker: a WorkerSlotStack actor, with the calls of
    numbamlp.sweeps.slots.LocalSlots; an error that says the actor's worker is gone comes
    out as StackLost."""

    def __init__(self, client, future):
        self.client, self.future = client, future
        try:
            self.actor = future.result()
        except Exception as err:  # noqa: BLE001 — (sorted by _loss_or)
            client.cancel(future)
            raise _loss_or(err, future) from None

    def start_epoch(self, seats: dict) -> "_ActorAnswer":
        seats = {slot: _as_dict(config) for slot, config in seats.items()}
        return _ActorAnswer(self.future, lambda: self.actor.epoch(seats))

    def leave(self, statuses: dict) -> dict:
        return _ActorAnswer(self.future, lambda: self.actor.leave(statuses)).result()

    def stop(self, reason: str) -> None:
        """Asked of the worker's event loop, not its actor thread (busy with the epoch)."""
        with contextlib.suppress(Exception):
            self.actor.stop(reason, separate_thread=False)

    def close(self) -> None:
        """Closed (its fit's end), then the actor let go."""
        try:
            with contextlib.suppress(Exception):
                self.actor.close().result(timeout=SCHEDULER_TIMEOUT_S)
        finally:
            self.client.cancel(self.future)


class _ActorAnswer:
    """An actor call's future (``done``, ``result``), whose result raises StackLost when
    the actor's worker is gone, however distributed says so: the call refused at once
    (RuntimeError "Worker holding Actor was lost"), or failed (OSError "Unable to contact
    Actor's worker", a closed comm, a cancelled future)."""

    def __init__(self, actor_future, call):
        self.actor_future, self.error, self.answer = actor_future, None, None
        try:
            self.answer = call()
        except Exception as err:  # noqa: BLE001 — (raised by result)
            self.error = err

    def done(self) -> bool:
        return self.answer is None or self.answer.done()

    def result(self):
        try:
            if self.error is not None:
                raise self.error
            return self.answer.result()
        except Exception as err:  # noqa: BLE001 — (a loss, or the stack's own error)
            raise _loss_or(err, self.actor_future) from None


def _loss_or(err: Exception, actor_future) -> Exception:
    """StackLost for an error that says the actor's worker is gone, else ``err`` itself."""
    import concurrent.futures

    from numbamlp.sweeps.slots import StackLost
    from numbamlp.sweeps.task import error_text

    gone = isinstance(err, (OSError, concurrent.futures.CancelledError)) or \
        (isinstance(err, RuntimeError) and actor_future.status != "finished")
    return StackLost(error_text(err)) if gone else err


def _as_dict(config) -> dict:
    """A TrainConfig as the dict a Dask worker is sent."""
    return config if isinstance(config, dict) else config.model_dump(mode="json", by_alias=True)
