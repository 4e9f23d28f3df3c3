"""The service's scheduler: queued jobs that can share a step are trained together.

Every queued job waits at most ``batch_window`` seconds for company: when the oldest
queued job is that old (at once with a window of 0), every queued job is grouped by stack
key (numbamlp.stack.STACK_KEY) into stacks of at most ``max_stack`` members, and each
stack is one task — a thread of this process (``slots`` at a time), or a Dask task with
``workers``/``scheduler`` (numbamlp.sweeps' executor).  Stacks report each epoch as it ends
(the jobs' event streams) and stop a cancelled member after the step in progress; on Dask
the epochs come back through a Dask queue, and cancels reach the task through a Dask
variable it reads after its steps.

Shutdown (SIGTERM) stops in-process stacks after their current step and checkpoints them
under ``stacks/<stack id>/``; the next start continues them from there (a stack on Dask is
dropped instead, and its jobs train again at the next start).  After a kill -9,
the jobs that were running train again from the start, to the same results (training is
deterministic per member), and are listed once, as before.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import secrets
import shutil
import threading
import time
from pathlib import Path

from numbamlp.config import TrainConfig
from numbamlp.service.store import Store

DATASET_PREFIX = "dataset:"
DATA_CACHE_SIZE = 4
QUEUE_LOOKAHEAD = 8  # queued jobs grouped per free slot, in full stacks: bounds a tick's work


class Scheduler:
    """Runs the queued jobs of ``store``; files go under ``data_dir`` (jobs/<id>/ run
    directories, stacks/<id>/ checkpoints, datasets/<id>.<ext>)."""

    def __init__(self, store: Store, data_dir: Path, batch_window: float = 0.5, max_stack: int = 32,
                 slots: int = 1, workers: int | None = None, scheduler_address: str | None = None):
        self.store, self.data_dir = store, Path(data_dir)
        self.batch_window, self.max_stack, self.slots = batch_window, max_stack, slots
        self.dask = None
        if workers is not None or scheduler_address is not None:
            from numbamlp.sweeps import DaskRunner

            self.dask = DaskRunner(workers, scheduler_address, None)
            self.slots = self.dask.parallel
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="stack")
        self._running: dict[str, dict] = {}  # stack id → {"jobs": [...], "stack": StackTrainer | None}
        self._data: dict[str, object] = {}  # the last DATA_CACHE_SIZE data sets' splits, oldest first
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Continue the stacks a graceful shutdown checkpointed, requeue the jobs a crash left
        running, then start scheduling."""
        self._recover()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop scheduling; stop running in-process stacks after their current step and
        checkpoint them (their jobs stay "running" and continue at the next start)."""
        self._stopping.set()
        with self._lock:
            for entry in self._running.values():
                if entry.get("stack") is not None:
                    entry["stack"].request_stop("server shutdown")
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(timeout)
        if self.dask is not None:
            self.dask.close()

    def _recover(self) -> None:
        checkpoints = self.data_dir / "stacks"
        resumable = {job["stack_id"] for job in self.store.jobs(status="running", limit=1_000_000)
                     if job["stack_id"] and (checkpoints / job["stack_id"] / "stack.json").is_file()}
        for stack_id in sorted(resumable):
            # every member, a cancelled one too: the checkpoint keeps it frozen, as the stack left it
            jobs = self.store.stack_jobs(stack_id)
            if len(jobs) != json.loads((checkpoints / stack_id / "stack.json").read_text())["members"]:
                shutil.rmtree(checkpoints / stack_id, ignore_errors=True)  # (its jobs train again instead)
                continue
            self._launch(stack_id, jobs, resume=checkpoints / stack_id)
        # every other running job was cut off by a crash: from the start again
        with self._lock:
            continuing = [j["id"] for entry in self._running.values() for j in entry["jobs"]]
        self.store.requeue_running(keep=continuing)

    # ------------------------------------------------------------ scheduling
    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._schedule()
            except Exception:  # noqa: BLE001 — the loop must survive a bad tick
                import traceback

                traceback.print_exc()
            self._stopping.wait(0.02)

    def _schedule(self) -> None:
        with self._lock:
            free = self.slots - len(self._running)
        if free <= 0:
            return
        oldest = self.store.oldest_queued_at()
        if oldest is None or time.time() - oldest < self.batch_window:
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

    def _stacks(self, queued: list[dict]) -> list[list[dict]]:
        """Queued jobs grouped by stack key, oldest first, at most max_stack each."""
        from numbamlp.sweeps import stack_groups

        configs = [TrainConfig.model_validate(job["config"]) for job in queued]
        return [[queued[k] for k in group] for group in stack_groups(configs, self.max_stack)]

    def _launch(self, stack_id: str, jobs: list[dict], resume: Path | None = None) -> None:
        with self._lock:
            self._running[stack_id] = {"jobs": jobs, "stack": None}
        future = self._pool.submit(self._train, stack_id, jobs, resume)
        future.add_done_callback(lambda f: self._finished(stack_id, f))

    def _finished(self, stack_id: str, future) -> None:
        with self._lock:
            self._running.pop(stack_id, None)
        error = future.exception() if not future.cancelled() else None
        if error is not None:  # a bug in the service itself: the jobs fail, the server goes on
            message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            message = hide_dataset_paths(message, self.data_dir)
            self.store.set_status([j["id"] for j in self._jobs_of(stack_id)], "failed",
                                  expected=("running",), error=message)

    def _jobs_of(self, stack_id: str) -> list[dict]:
        return [j for j in self.store.jobs(status="running", limit=1_000_000) if j["stack_id"] == stack_id]

    # ------------------------------------------------------------ one stack
    def _train(self, stack_id: str, jobs: list[dict], resume: Path | None) -> None:
        from numbamlp.io import json_text, one_sync
        from numbamlp.sweeps import StackStopped, SweepData, train_stack, write_run_files

        configs = [TrainConfig.model_validate(job["config"]) for job in jobs]
        splits = self._splits(configs[0])
        data = SweepData.of(splits)
        dumps = [c.model_dump(mode="json", by_alias=True) for c in configs]
        ids = [job["id"] for job in jobs]
        if self.dask is not None:
            outcomes = self._train_on_dask(stack_id, ids, dumps, data)
            if outcomes is None:
                return
        else:
            stack = None
            if resume is not None:
                from numbamlp.stack import StackTrainer

                stack = StackTrainer.from_checkpoint(resume)
            try:
                outcomes = train_stack(dumps, data, callbacks=[_Events(self.store, ids)],
                                       on_start=lambda s: self._started(stack_id, ids, s), stack=stack)
            except StackStopped as stop:  # shutdown: checkpoint, go on at the next start
                stop.stack.save_checkpoint(self.data_dir / "stacks" / stack_id)
                return
        cancelled = self.store.cancel_requested(ids)
        succeeded = {job_id: outcome for job_id, outcome in zip(ids, outcomes)
                     if job_id not in cancelled and outcome["status"] in ("done", "stopped early")}
        model_paths = {}
        with one_sync():  # the run files of the whole stack, then one flush (a job's status commits it)
            for job_id, config in zip(ids, configs):
                if job_id in succeeded:
                    model_paths[job_id] = write_run_files(self.data_dir / "jobs" / job_id, config,
                                                          succeeded[job_id], splits.standardizer)
        for job_id, outcome in zip(ids, outcomes):
            if job_id in succeeded:
                scores = {k: v for k, v in outcome.items() if k.startswith(("val_", "test_"))}
                self.store.set_status([job_id], "succeeded", expected=("running",),
                                      **{k: scores.get(k) for k in ("test_accuracy", "test_loss", "val_accuracy",
                                                                    "val_loss")},
                                      scores=json_text(scores), model_sha256=_sha256(model_paths[job_id]))
            elif job_id in cancelled or outcome["status"] == "cancelled":
                self.store.set_status([job_id], "cancelled", expected=("running",))
            else:
                error = outcome["error"] and hide_dataset_paths(outcome["error"], self.data_dir)
                self.store.set_status([job_id], "failed", expected=("running",), error=error)
        shutil.rmtree(self.data_dir / "stacks" / stack_id, ignore_errors=True)

    def _train_on_dask(self, stack_id: str, ids: list[str], dumps: list[dict], data) -> list[dict]:
        """The stack as one Dask task.  Its epochs come back through a Dask queue as they end
        (the jobs' events), and cancels go out through a Dask variable that the task reads
        after its steps, as an in-process stack's cancel watch does."""
        from distributed import Queue, Variable

        client = self.dask.client
        epochs = Queue(f"numbamlp-epochs-{stack_id}", client=client)
        cancels = Variable(f"numbamlp-cancels-{stack_id}", client=client)
        cancels.set([])
        future = client.submit(_service_stack_on_worker, dumps, data, stack_id, pure=False)
        sent: set[str] = set()
        while True:
            finished = future.done()  # (before draining: every epoch of a finished task is queued)
            for member, epoch, metrics in epochs.get(batch=True):
                self.store.add_event(ids[member], epoch, metrics)
            asked = self.store.cancel_requested(ids) - sent
            if asked:
                sent |= asked
                cancels.set(sorted(ids.index(job_id) for job_id in sent))
                self.store.set_status(sorted(asked), "cancelled", expected=("running",))
            if finished:
                break
            if self._stopping.is_set():  # shutdown: the task is dropped, its jobs train again at the next start
                future.cancel()
                cancels.delete()
                return None
            time.sleep(_CancelWatch.INTERVAL_S)
        cancels.delete()
        return future.result()

    def _splits(self, config: TrainConfig):
        """The data splits of a stack's jobs, kept for the next stacks on the same data (the
        sources a job can name, builtin:NAME and content-addressed dataset:<id>, never change)."""
        key = json.dumps([config.data.model_dump(mode="json"), config.seed])
        with self._lock:
            if key in self._data:
                return self._data[key]
        splits = prepare_job_data(config, self.data_dir)
        with self._lock:
            self._data[key] = splits
            while len(self._data) > DATA_CACHE_SIZE:
                self._data.pop(next(iter(self._data)))
        return splits

    def _started(self, stack_id: str, ids: list[str], stack) -> None:
        """The stack is built: register it for shutdown, and watch its jobs for cancels."""
        with self._lock:
            self._running[stack_id]["stack"] = stack
        stack.add_step_hook(_CancelWatch(self.store, ids, stack))


class _Events:
    """StackTrainer callback: each member's epoch metrics become its job's events."""

    def __init__(self, store: Store, ids: list[str]):
        self.store, self.ids = store, ids

    def on_epoch_end(self, epoch: int, metrics: dict) -> None:
        member = metrics["member"]
        self.store.add_event(self.ids[member], epoch, {k: v for k, v in metrics.items() if k != "member"})


class _CancelWatch:
    """Called after every step of the stack: stops the members whose jobs were cancelled
    (reading the store at most every 0.2 s), and marks those jobs cancelled at once."""

    INTERVAL_S = 0.2

    def __init__(self, store: Store, ids: list[str], stack):
        self.store, self.ids, self.stack = store, ids, stack
        self.checked = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self.checked < self.INTERVAL_S:
            return
        self.checked = now
        for job_id in self.store.cancel_requested(self.ids):
            self.stack.cancel_member(self.ids.index(job_id))  # stops after this step
            self.store.set_status([job_id], "cancelled", expected=("running",))


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


def _sha256(path) -> str | None:
    if path is None:
        return None
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_path(data_dir: Path, source: str) -> str:
    """The file behind ``dataset:<id>`` (other sources as they are)."""
    if not source.startswith(DATASET_PREFIX):
        return source
    dataset_id = source[len(DATASET_PREFIX):]
    matches = sorted((Path(data_dir) / "datasets").glob(f"{dataset_id}.*"))
    if not matches:
        raise ValueError(f"unknown data set {source!r}")
    return str(matches[0])


def hide_dataset_paths(text: str, data_dir) -> str:
    """``text`` with each uploaded dataset's file path (also while it is checked, in a folder
    of its own) as "the uploaded dataset <id>": what a client reads never shows the server's
    files."""
    datasets = re.escape(str(Path(data_dir) / "datasets"))
    return re.sub(datasets + r"/(?:incoming-[^/]+/)?([0-9a-f]{64})\.(?:npz|parquet|csv)", r"the uploaded dataset \1",
                  text)


def prepare_job_data(config: TrainConfig, data_dir: Path):
    """The splits of a job's data, its ``dataset:<id>`` sources read from the data directory."""
    from numbamlp.data import prepare_for

    data = config.data
    resolved = data.model_copy(update={k: dataset_path(data_dir, getattr(data, k))
                                       for k in ("train", "test", "val") if getattr(data, k) is not None})
    return prepare_for(config, resolved)
