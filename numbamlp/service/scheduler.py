"""The service's scheduler: queued jobs that can share a step are trained together.

Every queued job waits at most ``batch_window`` seconds for company: when the oldest
queued job is that old (at once with a window of 0), every queued job is grouped by stack
key (numbamlp.stack.STACK_KEY) into stacks of at most ``max_stack`` members, and each
stack is one task — a thread of this process (``slots`` at a time), or a Dask task with
``workers``/``scheduler`` (numbamlp.sweeps' executor).  Stacks report each epoch as it ends
(the jobs' event streams) and stop a cancelled member after the step in progress; on Dask
the epochs come back through a Dask queue, and cancels reach the task through a Dask
variable it reads after its steps.

An in-process stack trains an epoch at a time (numbamlp.stack.StackFit): a job ends as soon
as its member does (done, stopped early, diverged, cancelled, past its wall time), and at
the next epoch boundary a queued job that fits the stack (the same stack key and data
split, numbamlp.sweeps.stack_key_text) takes the slot it left: a new member, trained as
``numbamlp train`` alone; its record keeps the stack's epoch count then (joined_at_epoch).

Shutdown (SIGTERM) stops in-process stacks after their current step and checkpoints them
under ``stacks/<stack id>/``; the next start continues them from there (a stack on Dask is
dropped instead, and its jobs train again at the next start).  While other jobs wait, an
in-process stack trains ``time_slice_s`` at a time: then it is checkpointed the same way
and its jobs wait in the queue (status queued, their stack kept) until its next turn.
After a kill -9, the jobs that were running go on from their stack's last checkpoint if it
has one (a pause's), else train again from the start: to the same results either way
(training is deterministic per member), listed once, as before.

A search (numbamlp.service.searches) runs beside the slots, SEARCH_SLOTS at a time, oldest
first: its stacks train in a thread of its own (on Dask, on the workers), sharing the cores
with the jobs' stacks (each training thread takes its share, kernels/pool.py), so a long
search never holds the jobs' queue.  Shutdown stops it after its current step, and the next
start goes on with it.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import secrets
import shutil
import threading
import time
from pathlib import Path

from numbamlp.config import TrainConfig
from numbamlp.job_status import FINAL
from numbamlp.service import DEFAULT_BATCH_WINDOW_S
from numbamlp.service.events import EpochEvents
from numbamlp.service.files import dataset_path, hide_dataset_paths, job_directory, succeeded_columns
from numbamlp.service.limits import Limits
from numbamlp.service.searches import CANCELLED, SHUTDOWN, TrialJobs, run_search
from numbamlp.service.store import DiskReserve, StorageFull, Store
from numbamlp.sweeps import DEFAULT_STACK_SIZE

log = logging.getLogger("numbamlp.service")
DISK_CHECK_S = 2.0  # while the disk is full: how often to look for room again
SERVICE_STATE = "service.json"  # in a stack's checkpoint: what the service keeps of it (seconds trained)
NEW_CHECKPOINT = ".new"  # a checkpoint being written beside the last one
DATA_CACHE_SIZE = 4
QUEUE_LOOKAHEAD = 8  # queued jobs grouped per free slot, in full stacks: bounds a tick's work
REFUSED = "refused"  # a queued job's key, to a stack that could not seat it
JOINER_KEYS = 10_000  # queued jobs' stack keys a running stack remembers (then it forgets them all)
SEARCH_SLOTS = 1  # searches running at once, beside the jobs' slots (the others wait, oldest first)


class Scheduler:
    """Runs the queued jobs of ``store``; files go under ``data_dir`` (jobs/<id>/ run
    directories, stacks/<id>/ checkpoints, datasets/<id>.<ext>)."""

    def __init__(self, store: Store, data_dir: Path, batch_window: float = DEFAULT_BATCH_WINDOW_S,
                 max_stack: int = DEFAULT_STACK_SIZE,
                 slots: int = 1, workers: int | None = None, scheduler_address: str | None = None,
                 limits: Limits = Limits()):
        self.store, self.data_dir, self.limits = store, Path(data_dir), limits
        self.reserve = DiskReserve(self.data_dir / ".reserve")
        self._unrecorded: list[tuple] = []  # final statuses a full disk kept out of the store, to retry
        self._paused_at: dict[str, float] = {}  # stack id → when it was paused (none: before this start)
        self._disk_checked = 0.0
        self.batch_window, self.max_stack, self.slots = batch_window, max_stack, slots
        self.dask = None
        if workers is not None or scheduler_address is not None:
            from numbamlp.sweeps import DaskRunner

            self.dask = DaskRunner(workers, scheduler_address, None)
            self.slots = self.dask.parallel
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="stack")
        self._search_pool = concurrent.futures.ThreadPoolExecutor(max_workers=SEARCH_SLOTS, thread_name_prefix="search")
        # stack id → {"ids": its slots' job ids (None: vacant; an in-process stack's _StackRun.ids), "stack"}
        self._running: dict[str, dict] = {}
        self._searches: dict[str, TrialJobs] = {}  # sweep id → the running search's watch
        self._data: dict[str, object] = {}  # the last DATA_CACHE_SIZE data sets' splits, oldest first
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._recovered = threading.Event()  # (set after _recover: no stack takes joiners before)
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Continue the stacks a graceful shutdown checkpointed, requeue the jobs a crash left
        running, then start scheduling."""
        self.reserve.make()
        self._recover()
        self.forget_checkpoints()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop scheduling; stop running in-process stacks after their current step and
        checkpoint them (their jobs stay "running" and continue at the next start), and
        running searches after their current step (they go on at the next start)."""
        self._stopping.set()
        with self._lock:
            for entry in self._running.values():
                if entry.get("stack") is not None:
                    entry["stack"].request_stop("server shutdown")
            searches = list(self._searches.values())
        for watch in searches:
            watch.stop(SHUTDOWN)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._search_pool.shutdown(wait=True, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(timeout)
        if self.dask is not None:
            self.dask.close()

    def _recover(self) -> None:
        resumable = {job["stack_id"] for job in self.store.jobs(status="running", limit=1_000_000) if job["stack_id"]}
        for stack_id in sorted(resumable):
            checkpoint, jobs = self._checkpoint(stack_id)
            if checkpoint is not None:
                self._launch(stack_id, jobs, resume=checkpoint)
        # every other running job was cut off by a crash: from the start again
        with self._lock:
            continuing = [job_id for entry in self._running.values() for job_id in entry["ids"] if job_id is not None]
        self.store.requeue_running(keep=continuing)
        self._recovered.set()  # (a joiner moved to running before this would have been requeued)
        for sweep_id in self.store.running_searches():  # (their trials go on with them)
            self._launch_search(sweep_id)

    def _checkpoint(self, stack_id: str) -> tuple[Path | None, list[dict | None]]:
        """A stopped stack's checkpoint (None: it has none that fits its jobs, and it is
        removed) and its jobs slot by slot: every member's, a cancelled one's too, which the
        checkpoint keeps frozen as the stack left it (None: a slot whose job had left; without
        a checkpoint, the stack's jobs that have not ended)."""
        checkpoint = self.data_dir / "stacks" / stack_id
        written = checkpoint.with_name(stack_id + NEW_CHECKPOINT)
        if not checkpoint.exists() and (written / SERVICE_STATE).is_file():
            written.rename(checkpoint)  # (a kill -9 between the two steps of _save_checkpoint)
        if (checkpoint / "stack.json").is_file():
            slots = _service_state(checkpoint).get("slots")
            jobs = [None if job_id is None else self.store.job(job_id) for job_id in slots] if slots is not None \
                else self.store.stack_jobs(stack_id)  # (a checkpoint of a version before stacks took joiners)
            members = json.loads((checkpoint / "stack.json").read_text())["members"]
            if len(jobs) == members and all(job is None or job["stack_id"] == stack_id for job in jobs):
                return checkpoint, jobs
            shutil.rmtree(checkpoint, ignore_errors=True)  # (its jobs train again instead)
        return None, [job for job in self.store.stack_jobs(stack_id) if job["status"] not in FINAL]

    # ------------------------------------------------------------ scheduling
    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.store.full or self._unrecorded:
                    self._after_a_full_disk()
                self._schedule()
            except Exception:  # noqa: BLE001 — the loop must survive a bad tick (said once a minute: SaidOnce)
                log.exception("the scheduler's tick failed")
            self._stopping.wait(0.02)

    def _after_a_full_disk(self) -> None:
        """Record the statuses a full disk held back, and take work again once the disk
        has room for the reserve."""
        now = time.monotonic()
        if now - self._disk_checked < DISK_CHECK_S:
            return
        self._disk_checked = now
        with self._lock:
            waiting, self._unrecorded = self._unrecorded, []
        for job_ids, status, fields in waiting:
            self._record(job_ids, status, **fields)
        if self.store.full and not self._unrecorded and self.reserve.make():
            self.store.full = False
            log.warning("the disk has room again: taking new jobs")

    def _record(self, job_ids: list[str], status: str, **fields) -> None:
        """Move running jobs to a final status; on a full disk, give up the reserve to make
        room and try again, or keep it to retry when there is room."""
        for attempt in range(2):
            try:
                self.store.set_status(job_ids, status, expected=("running",), **fields)
                return
            except StorageFull:
                if attempt == 0:
                    log.error("the disk is full: jobs that cannot write their files fail, and new jobs are "
                              "refused (507) until there is room")
                    if self.reserve.release():
                        continue
                with self._lock:
                    self._unrecorded.append((job_ids, status, fields))
                return

    def _schedule(self) -> None:
        """Start the oldest queued search when fewer than SEARCH_SLOTS run; fill a free slot
        with the stack that has waited longest, whether paused (to let others train) or new
        (its oldest job past the batch window)."""
        if self.store.full:  # (a stack or a search started now could not write its files)
            return
        with self._lock:
            free = self.slots - len(self._running)
            search_free = len(self._searches) < SEARCH_SLOTS
        search = self.store.oldest_queued_search() if search_free else None
        if search is not None and self.store.start_search(search["id"]):  # (unless cancelled meanwhile)
            self._launch_search(search["id"])
        if free <= 0:
            return
        oldest = self.store.oldest_queued_at()
        new_ready = oldest is not None and time.time() - oldest >= self.batch_window
        paused = sorted((self._paused_at.get(stack_id, 0.0), stack_id) for stack_id in self.store.paused_stacks())
        if paused and (not new_ready or paused[0][0] <= oldest):
            self._resume(paused[0][1])  # (one a tick: the next fills the next slot)
            return
        if not new_ready:
            return
        # the oldest jobs, enough to fill every free slot with full stacks many times over
        queued = self.store.queued(limit=free * self.max_stack * QUEUE_LOOKAHEAD)
        for group in self._stacks(queued)[:free]:
            stack_id = secrets.token_hex(6)
            moved = set(self.store.set_status([j["id"] for j in group], "running", expected=("queued",),
                                              stack_id=stack_id, stack_size=len(group)))
            jobs = [j for j in group if j["id"] in moved]  # (a job cancelled meanwhile stays so)
            if len(jobs) != len(group):
                self.store.set_status([j["id"] for j in jobs], "running", stack_size=len(jobs))
            if jobs:
                self._launch(stack_id, jobs)

    def _resume(self, stack_id: str) -> None:
        """Go on with a paused stack from its checkpoint (without one, its jobs start again)."""
        self._paused_at.pop(stack_id, None)
        checkpoint, jobs = self._checkpoint(stack_id)
        waiting = [j["id"] for j in jobs if j is not None and j["status"] == "queued"]
        if checkpoint is None:
            self.store.requeue(waiting)
            return
        if self.store.set_status(waiting, "running", expected=("queued",)):
            self._launch(stack_id, jobs, resume=checkpoint)

    def forget_checkpoints(self) -> None:
        """Remove the checkpoints no job will go on from: of stacks whose every job ended
        (all cancelled while paused, say), and half-written ones a kill -9 left."""
        folder = self.data_dir / "stacks"
        if not folder.is_dir():
            return
        for checkpoint in folder.iterdir():
            stack_id = checkpoint.name.removesuffix(NEW_CHECKPOINT)
            with self._lock:
                if stack_id in self._running:
                    continue
            if all(job["status"] in FINAL for job in self.store.stack_jobs(stack_id)):
                shutil.rmtree(checkpoint, ignore_errors=True)

    def _stacks(self, queued: list[dict]) -> list[list[dict]]:
        """Queued jobs grouped by stack key and data split (stack_key_text), oldest first, at
        most max_stack each."""
        from numbamlp.sweeps import stack_groups

        configs = [TrainConfig.model_validate(job["config"]) for job in queued]
        return [[queued[k] for k in group] for group in stack_groups(configs, self.max_stack)]

    def _launch(self, stack_id: str, jobs: list[dict], resume: Path | None = None) -> None:
        with self._lock:
            self._running[stack_id] = {"ids": [None if job is None else job["id"] for job in jobs], "stack": None}
        future = self._pool.submit(self._train, stack_id, jobs, resume)
        future.add_done_callback(lambda f: self._finished(stack_id, f))

    def _launch_search(self, sweep_id: str) -> None:
        """Run a search (running in the store) in a slot, until it ends or the server stops."""
        watch = TrialJobs(self.store, self.store.sweep(sweep_id), self.data_dir, self._stopping)
        with self._lock:
            self._searches[sweep_id] = watch
        client = None if self.dask is None else self.dask.client
        future = self._search_pool.submit(run_search, self.store, self.data_dir, watch, client)
        future.add_done_callback(lambda f: self._search_finished(sweep_id, f))

    def _search_finished(self, sweep_id: str, future) -> None:
        with self._lock:
            self._searches.pop(sweep_id, None)
        error = future.exception() if not future.cancelled() else None
        if error is not None:  # (run_search records every failure of the search: here, of the store itself)
            log.error("the search %s failed: %s: %s", sweep_id, type(error).__name__, error)

    def cancel_search(self, sweep_id: str) -> None:
        """Stop a running search after its current step (its store record asks for the
        cancel already: run_search then records it cancelled)."""
        with self._lock:
            watch = self._searches.get(sweep_id)
        if watch is not None:
            watch.stop(CANCELLED)

    def _finished(self, stack_id: str, future) -> None:
        with self._lock:
            entry = self._running.pop(stack_id, None)
        error = future.exception() if not future.cancelled() else None
        if error is not None and entry is not None:  # a bug in the service itself: the jobs fail, the server goes on
            from numbamlp.sweeps.task import error_text

            message = hide_dataset_paths(error_text(error), self.data_dir)
            log.error("a stack failed: %s", message)
            self._record([job_id for job_id in entry["ids"] if job_id is not None], "failed", error=message)

    # ------------------------------------------------------------ one stack
    def _train(self, stack_id: str, jobs: list[dict | None], resume: Path | None) -> None:
        """Train a stack: its ``jobs`` slot by slot (None: a slot a job had left before the
        stack was paused), from ``resume``'s checkpoint when given; in this process, or as
        one Dask task."""
        if self.dask is not None:  # (from a checkpoint of a stack trained in this process: its jobs start again)
            shutil.rmtree(self.data_dir / "stacks" / stack_id, ignore_errors=True)
            jobs = [job for job in jobs if job is not None and job["status"] not in FINAL]
            if jobs:
                self._train_on_dask(stack_id, jobs)
        else:
            self._train_here(stack_id, jobs, resume)

    def _train_here(self, stack_id: str, jobs: list[dict | None], resume: Path | None) -> None:
        """An in-process stack, an epoch at a time (numbamlp.stack.StackFit): a job ends as
        soon as its member does, and at the next epoch boundary a queued job that fits the
        stack (stack_key_text) takes the slot it left (_seat_joiners).  A stop (shutdown, or a
        pause for others) ends the jobs whose members ended in the epoch it cut, then
        checkpoints the stack with its slots' jobs (_StackRun.state)."""
        from numbamlp.member import TrainingInterrupted
        from numbamlp.stack import StackTrainer
        from numbamlp.sweeps import SweepData
        from numbamlp.sweeps.task import error_text
        from numbamlp.threads import quiet_blas

        run = _StackRun.of(stack_id, jobs, resume)
        with self._lock:  # (the slots' jobs as they change: a failed stack fails those in it, _finished)
            self._running[stack_id]["ids"] = run.ids
        splits = self._splits(run.config)
        data = SweepData.of(splits)
        run.events = EpochEvents(self.store, run.ids)
        run.watch = _CancelWatch(self.store, run.ids, run.events, self.limits, run.trained_s, self._stopping,
                                 self._others_ready, run.seated_s, run.over_time)
        fit = None
        try:
            try:
                stack = StackTrainer.from_checkpoint(resume) if resume is not None else \
                    StackTrainer([job["config"] for job in jobs])
                self._started(stack_id, run.ids, stack, run.watch)
                for slot in run.stale:  # (jobs that ended after the checkpoint: their members stop at once)
                    stack.cancel_member(slot)
                fit = stack.open_fit(data.X_train, data.y_train, data.X_val, data.y_val, callbacks=[run.events],
                                     warm_start=resume is not None)
                with quiet_blas(run.config.backend):  # (held across the epochs, as fit holds it: each epoch's
                    while True:                        # own costs microseconds an epoch)
                        self._members_left(run, fit, data, splits)
                        self._seat_joiners(run, fit)
                        if not fit.running():
                            break
                        try:
                            fit.run_epoch()
                        except TrainingInterrupted:
                            self._members_left(run, fit, data, splits)  # (not left waiting in the checkpoint)
                            raise
                        run.epochs += 1
            finally:
                if fit is not None:
                    fit.close()
        except TrainingInterrupted:  # shutdown, or paused for others: checkpoint, go on later
            run.events.flush()
            self._save_checkpoint(stack_id, stack, run.state())
            if not self._stopping.is_set():  # (paused: its jobs wait in the queue, keeping their stack)
                self._paused_at[stack_id] = time.time()
                if not self.store.set_status(run.seated(), "queued", expected=("running",)):
                    self.forget_checkpoints()  # (none was running still: nobody goes on from it)
            return
        except Exception as err:  # noqa: BLE001 — a stack that fails as a whole fails its jobs, the server goes on
            run.events.flush()
            self._record(run.seated(), "failed", error=hide_dataset_paths(error_text(err), self.data_dir))
        shutil.rmtree(self.data_dir / "stacks" / stack_id, ignore_errors=True)  # (its last pause's checkpoint)

    def _members_left(self, run: "_StackRun", fit, data, splits) -> None:
        """The members that ended leave the stack (StackFit.release), and their jobs end
        together: their files, then one flush."""
        from numbamlp.sweeps.task import member_outcome

        slots = fit.ended()
        left = [fit.release(slot) for slot in slots]
        # (a slot without a job: its member had left, or its job had ended, before the stack was paused)
        ending = [(slot, one) for slot, one in zip(slots, left) if run.ids[slot] is not None]
        for slot, _ in ending:
            run.events.flush(slot)
        ended = [run.ids[slot] for slot, _ in ending]
        self._jobs_ended(ended, [one["trainer"].config for _, one in ending],
                         [member_outcome(one["trainer"], one["status"], one["error"], data) for _, one in ending],
                         splits, run.watch)
        run.watch.over_time.difference_update(ended)
        for slot in slots:
            run.ids[slot] = None

    def _seat_joiners(self, run: "_StackRun", fit) -> None:
        """Queued jobs that fit the stack (stack_key_text; not yet in a stack, oldest first,
        past the batch window as a new stack's jobs are: jobs arriving together join
        together) into its vacant slots, to start at the next epoch; the queue is read at
        most every _CancelWatch.INTERVAL_S.  A joiner's record says at which of the stack's
        epochs it joined.  (Stacks are opened with their jobs' slots only, none kept empty
        for joiners: a job alone trains as a stack of one.)"""
        from numbamlp.sweeps import stack_key_text
        from numbamlp.sweeps.task import error_text

        vacant = fit.vacant()
        now = time.monotonic()
        if not vacant or not self._recovered.is_set() or self._stopping.is_set() or self.store.full \
                or now - run.looked < _CancelWatch.INTERVAL_S:
            return
        run.looked = now
        ready_before = time.time() - self.batch_window
        queued = self.store.queued(limit=len(vacant) * QUEUE_LOOKAHEAD)
        if len(run.keys) > JOINER_KEYS:
            run.keys.clear()
        for job in queued:  # (each queued job's key worked out once: a look every 0.2 s reads the same jobs)
            if job["id"] not in run.keys:
                run.keys[job["id"]] = stack_key_text(TrainConfig.model_validate(job["config"]))
        waiting = [job for job in queued
                   if job["created_at"] <= ready_before and run.keys[job["id"]] == run.key][:len(vacant)]
        moved = set(self.store.set_status([job["id"] for job in waiting], "running", expected=("queued",),
                                          stack_id=run.stack_id, stack_size=len(fit.members),
                                          joined_at_epoch=run.epochs))
        joining = [job for job in waiting if job["id"] in moved]  # (not one cancelled meanwhile, or started alone)
        for slot, job in zip(vacant, joining):
            try:
                fit.seat(slot, job["config"])
            except Exception as err:  # noqa: BLE001 — (one this stack refuses: it trains in a stack of its own)
                log.info("the running stack %s refused job %s (%s): it waits for a stack of its own", run.stack_id,
                         job["id"], hide_dataset_paths(error_text(err), self.data_dir))
                run.keys[job["id"]] = REFUSED  # (not asked again by this stack)
                self.store.requeue([job["id"]], "running")
                continue
            run.ids[slot] = job["id"]
            run.seated_s[slot] = run.watch.trained()
            run.events.forget(slot)
            log.info("job %s took slot %d of the running stack %s at its epoch %d", job["id"], slot, run.stack_id,
                     run.epochs)

    def _jobs_ended(self, ids: list[str], configs: list[TrainConfig], outcomes: list[dict], splits,
                    watch: "_CancelWatch") -> None:
        """Each job to its final status from its member's ``outcome`` (train_stack's, or
        member_outcome's), its run files written first (a full disk fails it, saying why)."""
        from numbamlp.io import one_sync
        from numbamlp.sweeps import write_run_files

        cancelled = self.store.cancel_requested(ids)
        finished = {job_id: outcome for job_id, outcome in zip(ids, outcomes)
                    if job_id not in cancelled and outcome["status"] in ("done", "stopped early")}
        model_paths, unwritten = {}, {}
        with one_sync():  # the run files of the jobs, then one flush (a job's status commits it)
            for job_id, config in zip(ids, configs):
                if job_id in finished:
                    try:
                        model_paths[job_id] = write_run_files(job_directory(self.data_dir, job_id), config,
                                                              finished[job_id], splits)
                    except OSError as err:  # (a full disk: this job fails, and says why)
                        unwritten[job_id] = f"cannot write the job's files: {err.strerror or err}"
                        self.store.noted_full(err)
        for job_id, outcome in zip(ids, outcomes):
            if job_id in model_paths:
                self._record([job_id], "succeeded", **succeeded_columns(outcome, model_paths[job_id]))
            elif job_id in unwritten:
                self._record([job_id], "failed", error=unwritten[job_id])
            elif job_id in watch.over_time and outcome["status"] == "cancelled" and job_id not in cancelled:
                self._record([job_id], "failed", error=watch.over_time_reason())
            elif job_id in cancelled or outcome["status"] == "cancelled":
                self._record([job_id], "cancelled")
            else:
                error = outcome["error"] and hide_dataset_paths(outcome["error"], self.data_dir)
                self._record([job_id], "failed", error=error)

    def _save_checkpoint(self, stack_id: str, stack, state: dict) -> None:
        """The stack's checkpoint, with what the service keeps of it (_StackRun.state: the
        seconds it has trained, for the wall-time limit, and its slots' jobs), written beside
        the last one and then put in its place: a kill -9 meanwhile leaves one whole
        checkpoint (_checkpoint takes the new one if the old one is already gone)."""
        from numbamlp.io import atomic_write_json

        checkpoint = self.data_dir / "stacks" / stack_id
        written = checkpoint.with_name(stack_id + NEW_CHECKPOINT)
        shutil.rmtree(written, ignore_errors=True)
        stack.save_checkpoint(written)
        atomic_write_json(written / SERVICE_STATE, state)
        shutil.rmtree(checkpoint, ignore_errors=True)
        written.rename(checkpoint)

    def _others_ready(self) -> bool:
        """Whether a stack other than the running ones could start now: a paused one, or new
        jobs past their batch window (a pause for jobs still in theirs would only resume).
        (A search waits for a search, not for a slot.)"""
        oldest = self.store.oldest_queued_at()
        return bool(self.store.paused_stacks()) or (oldest is not None and time.time() - oldest >= self.batch_window)

    def _train_on_dask(self, stack_id: str, jobs: list[dict]) -> None:
        """The stack as one Dask task.  Its epochs come back through a Dask queue as they end
        (the jobs' events), and cancels go out through a Dask variable that the task reads
        after its steps, as an in-process stack's cancel watch does.  (Stacks on Dask are
        not paused for others: the cluster runs several at once; nor do queued jobs join
        them: their jobs end together, with the task.)"""
        from distributed import Queue, Variable

        from numbamlp.sweeps import SweepData

        configs = [TrainConfig.model_validate(job["config"]) for job in jobs]
        splits = self._splits(configs[0])
        dumps = [c.model_dump(mode="json", by_alias=True) for c in configs]
        ids = [job["id"] for job in jobs]
        events = EpochEvents(self.store, ids)
        watch = _CancelWatch(self.store, ids, events, self.limits, 0.0, self._stopping, self._others_ready)
        client = self.dask.client
        epochs = Queue(f"numbamlp-epochs-{stack_id}", client=client)
        cancels = Variable(f"numbamlp-cancels-{stack_id}", client=client)
        cancels.set([])
        future = client.submit(_service_stack_on_worker, dumps, SweepData.of(splits), stack_id, pure=False)
        sent: set[str] = set()
        while True:
            finished = future.done()  # (before draining: every epoch of a finished task is queued)
            for member, epoch, metrics in epochs.get(batch=True):
                events.on_epoch_end(epoch, {**metrics, "member": member})
            stopped = watch.members_to_stop() - sent
            if stopped:
                sent |= stopped
                cancels.set(sorted(ids.index(job_id) for job_id in sent))
            if finished:
                break
            if self._stopping.is_set():  # shutdown: the task is dropped, its jobs train again at the next start
                future.cancel()
                cancels.delete()
                return
            time.sleep(_CancelWatch.INTERVAL_S)
        cancels.delete()
        outcomes = future.result()
        events.flush()
        self._jobs_ended(ids, configs, outcomes, splits, watch)

    def _splits(self, config: TrainConfig):
        """The data splits of a stack's jobs, kept for the next stacks on the same data (the
        sources a job can name, builtin:NAME and content-addressed dataset:<id>, never change)."""
        from numbamlp.data import split_key

        key = split_key(config)
        with self._lock:
            if key in self._data:
                return self._data[key]
        splits = prepare_job_data(config, self.data_dir)
        with self._lock:
            self._data[key] = splits
            while len(self._data) > DATA_CACHE_SIZE:
                self._data.pop(next(iter(self._data)))
        return splits

    def _started(self, stack_id: str, ids: list[str], stack, watch) -> None:
        """The stack is built: register it for shutdown, freeze the members cancelled while
        it was paused, and let ``watch`` look after it after every step."""
        with self._lock:
            self._running[stack_id]["stack"] = stack
        for member, job_id in enumerate(ids):
            if job_id is not None and self.store.job(job_id)["status"] != "running":
                stack.cancel_member(member)
        watch.stack = stack
        stack.add_step_hook(watch)


class _CancelWatch:
    """Called after every step of the stack (reading the store at most every 0.2 s):

    - stops the members whose jobs were cancelled, and marks those jobs cancelled at once
      (their last epochs stored first);
    - past the server's wall time a job (max_job_minutes of training: the stack's seconds,
      ``trained_s`` of them before this run, kept with its checkpoints, less ``seated_s``,
      the stack's seconds when the job took its slot), stops its member (``over_time``: it
      fails, saying why, unless it had ended);
    - after ``time_slice_s`` of this run, while ``others_ready()``, stops the stack (it is
      checkpointed, paused, and goes on after them);
    - once the server is ``stopping``, stops the stack (as Scheduler.stop does, which misses
      a stack still being built, and fit forgets a stop asked for before it starts).

    ``ids`` is the stack's slot → job id list (None: a vacant slot), which changes as jobs
    leave and join.  ``stack`` is set once the stack is built; on Dask there is none, and
    members_to_stop says which members to stop."""

    INTERVAL_S = 0.2

    def __init__(self, store: Store, ids: list[str | None], events: "EpochEvents", limits: Limits, trained_s: float,
                 stopping: threading.Event, others_ready, seated_s: list[float] | None = None,
                 over_time: set[str] | None = None):
        self.store, self.ids, self.events, self.limits = store, ids, events, limits
        self.trained_s, self.stopping, self.others_ready = trained_s, stopping, others_ready
        self.seated_s = [0.0] * len(ids) if seated_s is None else seated_s
        self.stack = None
        self.checked = 0.0
        self.started = time.monotonic()
        self.over_time: set[str] = set() if over_time is None else over_time  # seated jobs past the wall time

    def trained(self) -> float:
        """Seconds the stack has trained, this run and before."""
        return self.trained_s + time.monotonic() - self.started

    def over_time_reason(self) -> str:
        return f"stopped after this server's limit of {self.limits.max_job_minutes:g} minutes a job (--max-job-minutes)"

    def __call__(self) -> None:
        if self.stopping.is_set():
            self.stack.request_stop("server shutdown")
            return
        now = time.monotonic()
        if now - self.checked < self.INTERVAL_S:
            return
        self.checked = now
        for job_id in self.members_to_stop():
            self.stack.cancel_member(self.ids.index(job_id))  # stops after this step
        if now - self.started > self.limits.time_slice_s and not self.over_time and self.others_ready():  # (while
            # a job is being stopped for its time, not: it is to fail, not to wait in a checkpoint)
            self.stack.request_stop("paused: other jobs wait")

    def members_to_stop(self) -> set[str]:
        """The stack's jobs cancelled since (marked so), and those past the wall time."""
        trained, limit = self.trained(), 60 * self.limits.max_job_minutes
        seated = {job_id: trained - since for job_id, since in zip(self.ids, self.seated_s) if job_id is not None}
        self.over_time |= {job_id for job_id, seconds in seated.items() if seconds > limit}
        cancelled = self.store.cancel_requested(seated) - self.over_time
        if cancelled:
            self.events.flush()  # (their last epochs before their end: a stream ends with them)
            self.store.set_status(sorted(cancelled), "cancelled", expected=("running",))
        return cancelled | (self.over_time & seated.keys())


class _StackRun:
    """An in-process stack's books while it trains (Scheduler._train_here): its slots' jobs
    ``ids`` (slot → job id; None: vacant), each slot's ``seated_s`` (the stack's trained
    seconds when its job took the slot; 0 for those it started with), the stack's
    ``epochs`` run (a joiner's joined_at_epoch), its jobs ``over_time`` (the wall time's),
    and ``key``, what a queued job must share with it to join
    (numbamlp.sweeps.stack_key_text), with ``keys``, the queued jobs' keys worked out so
    far.  ``state()`` is what its checkpoint keeps of them (SERVICE_STATE), which ``of``
    reads back; ``stale``: the slots whose job had ended after the checkpoint was written
    (a kill -9 since): their members stop, and nothing of them is recorded again."""

    def __init__(self, stack_id: str, ids: list[str | None], config: TrainConfig, state: dict, stale: list[int]):
        from numbamlp.sweeps import stack_key_text

        self.stack_id, self.ids, self.config, self.stale = stack_id, ids, config, stale
        self.trained_s: float = state.get("trained_s", 0.0)
        self.seated_s: list[float] = state.get("seated_s", [0.0] * len(ids))
        self.epochs: int = state.get("epochs", 0)
        self.over_time: set[str] = set(state.get("over_time", ()))
        self.key = stack_key_text(config)
        self.keys: dict[str, str] = {}
        self.looked = 0.0  # (when the queue was last read for joiners)
        self.events: EpochEvents | None = None
        self.watch: _CancelWatch | None = None

    @classmethod
    def of(cls, stack_id: str, jobs: list[dict | None], resume: Path | None) -> "_StackRun":
        state = {} if resume is None else _service_state(resume)
        live = [job is not None and job["status"] not in FINAL for job in jobs]
        ids = [job["id"] if alive else None for job, alive in zip(jobs, live)]
        stale = [slot for slot, (job, alive) in enumerate(zip(jobs, live)) if job is not None and not alive]
        config = TrainConfig.model_validate(next(job for job in jobs if job is not None)["config"])
        return cls(stack_id, ids, config, state, stale)

    def seated(self) -> list[str]:
        """The jobs in the stack's slots now."""
        return [job_id for job_id in self.ids if job_id is not None]

    def state(self) -> dict:
        return {"trained_s": self.watch.trained(), "slots": self.ids, "seated_s": self.seated_s, "epochs": self.epochs,
                "over_time": sorted(self.watch.over_time)}


def _service_state(checkpoint: Path) -> dict:
    """What a stack's checkpoint keeps for the service (_StackRun.state; {} for one without:
    a checkpoint of a version before stacks took joiners keeps only trained_s, or none)."""
    path = checkpoint / SERVICE_STATE
    return json.loads(path.read_text()) if path.is_file() else {}


def _service_stack_on_worker(configs: list[dict], data, stack_id: str) -> list[dict]:
    """A service stack on a Dask worker: each member's epoch goes to the stack's queue as it
    ends, and the members the service lists in the stack's cancel variable stop."""
    from distributed import Queue, Variable

    from numbamlp.sweeps import worker_threads, train_stack

    epochs, cancels = Queue(f"numbamlp-epochs-{stack_id}"), Variable(f"numbamlp-cancels-{stack_id}")

    class Epochs:
        def on_epoch_end(self, epoch: int, metrics: dict) -> None:
            epochs.put([metrics["member"], epoch, {k: v for k, v in metrics.items() if k != "member"}])

    def watch(stack):
        checked = [0.0]

        def hook():
            if time.monotonic() - checked[0] >= _CancelWatch.INTERVAL_S:
                checked[0] = time.monotonic()
                for member in cancels.get(timeout=5):
                    stack.cancel_member(member)

        stack.add_step_hook(hook)

    return train_stack(configs, data, threads=worker_threads(), callbacks=[Epochs()], on_start=watch)


def prepare_job_data(config: TrainConfig, data_dir: Path):
    """The splits of a job's data, its ``dataset:<id>`` sources read from the data directory."""
    from numbamlp.data import prepare_for

    data = config.data
    resolved = data.model_copy(update={k: dataset_path(data_dir, getattr(data, k))
                                       for k in ("train", "test", "val") if getattr(data, k) is not None})
    return prepare_for(config, resolved)
