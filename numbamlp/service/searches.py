"""A search in the service (POST /v1/sweeps with ``search``): numbamlp.sweeps.sweep run in a
thread of the scheduler's beside its slots (scheduler.SEARCH_SLOTS), its directory DATA_DIR/sweeps/<sweep id>/ (files.search_directory),
and each of its trials kept as a job in the store (``TrialJobs``, the search's TrialWatch).

A trial's job is made when the search asks the trial (queued, but not in the scheduler's
queue; its grid values its settings, its config the search's base with them, the search's
sweep_id and owner, and ``trial`` {number, pruned_epoch, repeat_of}), and runs from its
first epoch on; its epochs become its events as a stack's jobs' do (events.EpochEvents);
when it ends, its row (results.jsonl's) says how: done or stopped early → succeeded (trial
"finished"), pruned → succeeded with the model of the epoch it stopped at (trial
"pruned"), cancelled → cancelled, diverged or failed → failed.  Its model file stays in the
trial's run directory, members/<number>/ (files.model_file).

Cancelling a trial's job stops that trial at its stack's next epoch boundary (TrialWatch
.cancelled); cancelling the search, or the server stopping, stops every stack after its
current step (the ``stop`` the search attaches).  A search the server stopped goes on at
the next start (``sweep(resume=...)``): the trials that were in flight train again from
their start under their numbers, in the jobs they had.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from numbamlp.io import json_text
from numbamlp.service.events import EpochEvents
from numbamlp.service.files import (hide_dataset_paths, model_file, search_directory, succeeded_columns,
                                    with_dataset_ids, with_dataset_paths)
from numbamlp.service.store import Store
from numbamlp.sweeps.search import TrialWatch
from numbamlp.sweeps.task import error_text

log = logging.getLogger("numbamlp.service")
CHECK_S = 0.2  # how often a search reads the store for cancels (each of its stacks' epochs asks)
SHUTDOWN, CANCELLED = "server shutdown", "the search was cancelled"  # why a search stops (TrialJobs.stop)
NOT_ENDED = ("queued", "running")  # a trial's job's statuses before it ends (queued: not yet trained, or a repeat)


def run_search(store: Store, data_dir: Path, watch: "TrialJobs", client=None) -> None:
    """Run (or, when its directory holds one, go on with) the search ``watch`` keeps, its
    stacks on Dask through ``client`` when given, and record how it ended: done; cancelled
    (asked, and stopped after its step); failed (why, in one line).  A search the server
    stopped stays running, to go on at the next start."""
    import shutil

    from numbamlp.layout import SWEEP_FILE
    from numbamlp.sweeps import SweepError, SweepInterrupted, normalise_grid, read_finished_rows, sweep

    search = watch.search
    directory = search_directory(data_dir, search["id"])
    settings = search["search"]
    resumed = (directory / SWEEP_FILE).is_file()
    if resumed:  # (trials whose rows were written before the server stopped end as their rows say)
        watch.settle(read_finished_rows(directory))
    if search["cancel_requested"]:  # (asked while the server was stopped)
        store.end_search(search["id"], "cancelled")
        return
    try:
        if resumed:
            sweep(resume=directory, watch=watch, client=client,
                  written=lambda config: with_dataset_ids(config, data_dir))
        else:
            shutil.rmtree(directory, ignore_errors=True)  # (a start cut off before it claimed the directory)
            directory.parent.mkdir(parents=True, exist_ok=True)
            base = with_dataset_paths(_copy(search["config"]), data_dir)
            sweep(base, normalise_grid(search["grid"]), search=settings["search"], trials=settings["trials"],
                  prune=settings["prune"], min_epochs=settings["min_epochs"],
                  reduction_factor=settings["reduction_factor"], stack_size=settings["stack_size"], out=directory,
                  watch=watch, client=client, written=lambda config: with_dataset_ids(config, data_dir))
    except SweepInterrupted:
        if watch.stop_reason == CANCELLED:
            store.end_search(search["id"], "cancelled")
        return  # (else the server stopped it: it goes on at the next start)
    except SweepError as err:
        store.end_search(search["id"], "failed", _shown(str(err), data_dir))
        return
    except Exception as err:  # noqa: BLE001 — a bug, a full disk: the search fails, the server goes on
        message = _shown(error_text(err), data_dir)
        log.error("the search %s failed: %s", search["id"], message)
        store.end_search(search["id"], "failed", message)
        return
    store.end_search(search["id"], "done")


class TrialJobs(TrialWatch):
    """A search's trials as jobs in ``store`` (see the module's docstring), and the search's
    stop: ``stop(reason)`` from any thread (the scheduler's shutdown, a cancel of the
    search), also before the search has attached, and when ``stopping`` is set or the
    search's record asks for a cancel (read every CHECK_S)."""

    def __init__(self, store: Store, search: dict, data_dir: Path, stopping: threading.Event):
        self.store, self.search, self.data_dir, self.stopping = store, search, data_dir, stopping
        self.jobs = {job["trial"]["number"]: job["id"] for job in store.sweep_jobs(search["id"])}
        self.events = EpochEvents(store, self.jobs)
        self.asked: set[int] = set()  # trials asked and not ended, this run
        self.training: set[int] = set()  # those of them that have trained an epoch (their jobs run)
        self.cancels: set[int] = set()
        self.checked = 0.0
        self.stop_reason: str | None = None
        self._stop = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ the search's stop
    def attach(self, stop) -> None:
        with self._lock:
            self._stop = stop
        if self.stopping.is_set():  # (the server began to stop while the search was being set up)
            self.stop(SHUTDOWN)
        elif self.stop_reason is not None:
            stop(self.stop_reason)

    def stop(self, reason: str) -> None:
        """Stop the search after its current step (SHUTDOWN: it goes on at the next start)."""
        with self._lock:
            if self.stop_reason is None:
                self.stop_reason = reason
            stop, reason = self._stop, self.stop_reason
        if stop is not None:
            stop(reason)

    # ------------------------------------------------------------ its trials
    def started(self, member: int, settings: dict) -> None:
        """Trial ``member``'s job, queued: made, or, for a trial that trains again after a
        restart, the one it had, its epochs forgotten."""
        from numbamlp.sweeps import member_configs

        self.asked.add(member)
        if member in self.jobs:
            self.store.requeue([self.jobs[member]], "running")  # (one that had not trained is queued still)
            return
        config = member_configs(_copy(self.search["config"]), [settings])[0].model_dump(mode="json", by_alias=True)
        job = self.store.add_jobs([config], sweep_id=self.search["id"], owner=self.search["owner"], grids=[settings],
                                  trials=[{"number": member, "pruned_epoch": None, "repeat_of": None}])[0]
        self.jobs[member] = job["id"]

    def epoch(self, member: int, metrics: dict) -> None:
        """Trial ``member``'s epoch as its job's event; its first, and the job runs."""
        if member not in self.training:
            self.training.add(member)
            self.store.set_status([self.jobs[member]], "running", expected=("queued",))
        self.events.on_epoch_end(metrics["epoch"], {**metrics, "member": member})

    def ended(self, member: int, row: dict) -> None:
        """Trial ``member``'s job to its final status, from its row (its last epoch stored
        first: an event stream ends with its job)."""
        from numbamlp.sweeps import FINISHED

        self.asked.discard(member)
        self.training.discard(member)
        job_id = self.jobs[member]
        repeated = self.jobs.get(row.get("repeat_of"))
        if repeated is not None and self.store.job(job_id)["status"] in NOT_ENDED:  # (not one cancelled meanwhile)
            self.store.copy_events(repeated, job_id)
        self.events.flush(member)
        trial = {"number": member, "pruned_epoch": row.get("pruned_epoch"), "repeat_of": row.get("repeat_of")}
        if row["status"] in (*FINISHED, "pruned") and row.get("model_path"):
            path = model_file(self.data_dir, {"sweep_id": self.search["id"], "trial": trial})
            self.store.set_status([job_id], "succeeded", expected=NOT_ENDED, trial=json_text(trial),
                                  **succeeded_columns(row, path))
        elif row["status"] == "cancelled":
            self.store.set_status([job_id], "cancelled", expected=NOT_ENDED, trial=json_text(trial))
        else:  # failed, diverged (no model), or a finished trial without one
            error = row.get("error") or f"the trial {row['status']}"
            self.store.set_status([job_id], "failed", expected=NOT_ENDED, trial=json_text(trial),
                                  error=hide_dataset_paths(error, self.data_dir))

    def cancelled(self) -> set[int]:
        """The trials whose jobs were cancelled (read every CHECK_S); and, when the search
        is cancelled or the server stops, the search stopped."""
        if self.stopping.is_set() and self.stop_reason is None:
            self.stop(SHUTDOWN)
        now = time.monotonic()
        if now - self.checked >= CHECK_S:
            self.checked = now
            if self.stop_reason is None and self.store.sweep(self.search["id"])["cancel_requested"]:
                self.stop(CANCELLED)
            asked = {self.jobs[member]: member for member in self.asked if member in self.jobs}
            if asked:
                self.cancels |= {asked[job_id] for job_id in self.store.cancel_requested(asked)}
        return self.cancels

    def settle(self, rows: list[dict]) -> None:
        """Before a search goes on: the trials whose rows were written but whose jobs have
        not ended (the server was killed between the two) end as their rows say."""
        not_ended = {job["id"] for job in self.store.sweep_jobs(self.search["id"]) if job["status"] in NOT_ENDED}
        for row in rows:
            if self.jobs.get(row["member"]) in not_ended:
                self.ended(row["member"], row)


def _shown(message: str, data_dir: Path) -> str:
    """An error as a client may read it: no upload's path (hide_dataset_paths), and the data
    directory (a search's own directory, say) as DATA_DIR."""
    return hide_dataset_paths(message, data_dir).replace(str(Path(data_dir).resolve()), "DATA_DIR") \
        .replace(str(data_dir), "DATA_DIR")


def _copy(document: dict) -> dict:
    """A deep copy of a JSON document (member_configs edits the one it is given)."""
    return json.loads(json.dumps(document))
