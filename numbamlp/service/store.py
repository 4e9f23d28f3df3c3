"""The service's state in SQLite (WAL): jobs, their status history, per-epoch metrics,
sweeps, uploaded data sets.

One connection, shared by the server's threads behind a lock (SQLite serialises writers
anyway, and the service's statements are small), and one more for token look-ups, so that
authenticating a request never waits for a writer.  Every change is one transaction, so a
kill -9 at any moment leaves either the state before it or after it.

A job's status is one of numbamlp.job_status.STATUSES.  A sweep has a record (the sweeps
table): a grid sweep's is its id, owner and submission (its jobs, made at once, say the
rest); a search's also holds its settings, base config, grid and state (SEARCH_STATES),
since its trials become jobs only as they are asked.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path

from numbamlp.io import json_text
from numbamlp.job_status import FINAL, STATUSES  # noqa: F401 (STATUSES: what a job row's status holds)

# A search's state: queued (waiting for its turn: one search runs at a time), running (or to go on
# at the next start), and how it ended: done (every trial asked and ended), cancelled, failed.
SEARCH_STATES = ("queued", "running", "done", "cancelled", "failed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,     -- submission order (pagination)
    id TEXT UNIQUE NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,                      -- the resolved TrainConfig as JSON
    idempotency_key TEXT UNIQUE,
    sweep_id TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    stack_id TEXT,
    stack_size INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    test_accuracy REAL,
    test_loss REAL,
    val_accuracy REAL,
    val_loss REAL,
    model_sha256 TEXT,
    scores TEXT,                               -- every val_*/test_* metric of the saved model, JSON
    error TEXT,
    owner TEXT,                                -- the name of the token that submitted it
    grid TEXT,                                 -- a sweep member's grid values {setting: value}, JSON
    trial TEXT,                                -- a search's trial: {number, pruned_epoch, repeat_of}, JSON
    joined_at_epoch INTEGER                    -- the stack's epochs run when the job took a free slot in it
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS job_status_history (
    job_id TEXT NOT NULL, status TEXT NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS job_events (
    job_id TEXT NOT NULL, epoch INTEGER NOT NULL, metrics TEXT NOT NULL,
    PRIMARY KEY (job_id, epoch)
);
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, sha256 TEXT UNIQUE NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sweeps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,     -- submission order (pagination)
    id TEXT UNIQUE NOT NULL,
    owner TEXT,
    created_at REAL NOT NULL,
    search TEXT,                               -- a search's settings, JSON; NULL: a grid sweep
    config TEXT,                               -- a search's base TrainConfig, JSON
    grid TEXT,                                 -- a search's grid {setting: [values] or [a range's text]}, JSON
    state TEXT,                                -- a search's: one of SEARCH_STATES
    started_at REAL,
    finished_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT                                 -- why a failed search failed
);
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY, format TEXT NOT NULL, size INTEGER NOT NULL, rows INTEGER NOT NULL,
    features INTEGER NOT NULL, created_at REAL NOT NULL
);
"""


def is_sqlite_integer(value) -> bool:
    """Whether ``value`` is an int ≥ 0 that SQLite can compare (a 64-bit integer): what a
    client may name a position by (a job's seq in a page token, an epoch in Last-Event-ID)."""
    return type(value) is int and 0 <= value < 1 << 63


class StoreError(RuntimeError):
    """The database cannot be used (damaged, not a database): one line naming the file."""


class StorageFull(OSError):
    """The disk (or the database's file) is full: nothing was written."""

    def __init__(self):
        super().__init__(errno.ENOSPC, "the server's disk is full")


class Store:
    """The service's SQLite database at ``path``.  StoreError if it is damaged.

    ``full`` is set when a write meets a full disk, and cleared by whoever frees space
    (the scheduler's DiskReserve): meanwhile the service takes no new work."""

    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.full = False
        try:
            self._db = self._connect()
            self._check_integrity()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
            with self._lock:
                self._db.executescript(SCHEMA)
                self._add_missing_columns()
                self._add_sweep_records()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path} cannot be used ({err}): restore it from a backup, or move it away to "
                             "start with no jobs (the files under jobs/ stay)") from None
        # token look-ups read on a connection of their own: a request is authenticated
        # without waiting for a writer (WAL lets readers go on beside it)
        self._token_lock = threading.Lock()
        self._token_db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)

    def _check_integrity(self) -> None:
        """A damaged file is refused at start, not met mid-way through an event stream."""
        problems = [row[0] for row in self._db.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError(f"damaged: {problems[0][:200]}")

    def _add_missing_columns(self) -> None:
        """Columns newer than a database made by an earlier version."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for column, kind in (("owner", "TEXT"), ("grid", "TEXT"), ("trial", "TEXT"),
                             ("joined_at_epoch", "INTEGER")):  # (in the order the table names them)
            if column not in have:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
        self._db.execute("CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, seq)")
        self._db.execute("CREATE INDEX IF NOT EXISTS jobs_by_sweep ON jobs (sweep_id, seq)")
        self._db.execute("CREATE INDEX IF NOT EXISTS sweeps_by_owner ON sweeps (owner, seq)")
        self._db.execute("CREATE INDEX IF NOT EXISTS sweeps_by_state ON sweeps (state, seq)")

    def _add_sweep_records(self) -> None:
        """The records of the sweeps whose jobs have none, in the order they were submitted
        (their first jobs'): a database of an earlier version kept none (a sweep was its
        jobs).  At every start, so that a start cut off between the table and its records
        leaves none without (the next start adds them)."""
        self._db.execute("INSERT INTO sweeps (id, owner, created_at) SELECT sweep_id, owner, created_at FROM jobs "
                         "WHERE seq IN (SELECT MIN(seq) FROM jobs WHERE sweep_id IS NOT NULL AND sweep_id NOT IN "
                         "(SELECT id FROM sweeps) GROUP BY sweep_id) ORDER BY seq")

    def close(self) -> None:
        with self._lock:
            self._db.close()
        with self._token_lock:
            self._token_db.close()

    def _write(self, statements):
        """Run [(sql, parameters), ...] as one transaction (StorageFull: the disk is full,
        and nothing was written)."""
        with self._lock:
            self._transaction(lambda: [self._db.execute(sql, parameters) for sql, parameters in statements])

    def _transaction(self, body):
        """``body()`` inside BEGIN IMMEDIATE ... COMMIT, the caller holding the lock; rolled
        back on any error (unless SQLite has already rolled it back, as it does when the
        disk fills: a second ROLLBACK would only hide why)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            result = body()
            self._db.execute("COMMIT")
            return result
        except BaseException as err:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            if self.noted_full(err):
                raise StorageFull() from err
            raise

    def noted_full(self, err: BaseException) -> bool:
        """Whether ``err`` says the disk (or the database) is full; if it does, the service
        takes no new work (``full``) until there is room again."""
        full = (getattr(err, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL if isinstance(err, sqlite3.Error)
                else isinstance(err, OSError) and err.errno == errno.ENOSPC)
        self.full = self.full or full
        return full

    def _rows(self, sql, parameters=()) -> list[dict]:
        with self._lock:
            cursor = self._db.execute(sql, parameters)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    # ------------------------------------------------------------ jobs
    def add_jobs(self, configs: list[dict], idempotency_key: str | None = None, sweep_id: str | None = None,
                 owner: str | None = None, grids: list[dict] | None = None,
                 trials: list[dict] | None = None) -> list[dict]:
        """Queue one job per config (one transaction), submitted by ``owner``; with an
        idempotency key this owner already used, the job it made instead (a retried
        request).  A sweep's members come with their ``grids``, each member's grid values
        {setting: value}, and the sweep's record (a grid sweep's); a search's trials with
        their ``trials``, {number, pruned_epoch, repeat_of} each (queued until they train,
        but not in the queue the scheduler stacks: their search trains them).  Returns the
        jobs, in the order given (their seq's: a sweep's member order)."""
        if idempotency_key is not None:
            # keys are the owner's own: another person's same key is another job
            idempotency_key = json.dumps([owner, idempotency_key])
            existing = self._rows("SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,))
            if existing:
                return [_job(existing[0])]
        now = time.time()
        ids = [secrets.token_hex(8) for _ in configs]
        statements = []
        if sweep_id is not None:  # (a grid sweep's record, with its jobs; a search has its own)
            statements.append(("INSERT OR IGNORE INTO sweeps (id, owner, created_at) VALUES (?, ?, ?)",
                               (sweep_id, owner, now)))
        for job_id, config, grid, trial in zip(ids, configs, grids or [None] * len(configs),
                                               trials or [None] * len(configs)):
            # as UTF-8, not \u-escaped: SQLite then refuses text UTF-8 cannot encode (a lone
            # surrogate), which, stored escaped, would make every listing fail to encode
            statements.append(("INSERT INTO jobs (id, status, config, idempotency_key, sweep_id, created_at, owner, "
                               "grid, trial) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                               (job_id, json.dumps(config, ensure_ascii=False), idempotency_key, sweep_id, now,
                                owner, None if grid is None else json_text(grid, ensure_ascii=False),
                                None if trial is None else json_text(trial))))
            statements.append(("INSERT INTO job_status_history VALUES (?, 'queued', ?)", (job_id, now)))
        try:
            self._write(statements)
        except sqlite3.IntegrityError:  # the same key, raced by a concurrent retry
            if idempotency_key is None:
                raise
            return [_job(self._rows("SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,))[0])]
        return [self.job(job_id) for job_id in ids]

    def job(self, job_id: str) -> dict | None:
        rows = self._rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def jobs(self, status: str | None = None, limit: int = 50, before_seq: int | None = None,
             owner: str | None = None, stack_id: str | None = None) -> list[dict]:
        """Newest first (of ``owner``'s, of the stack ``stack_id``'s, when given);
        ``before_seq`` continues a listing after its last job."""
        where, parameters = [], []
        for column, value in (("status", status), ("owner", owner), ("stack_id", stack_id)):
            if value is not None:
                where.append(f"{column} = ?")
                parameters.append(value)
        if before_seq is not None:
            where.append("seq < ?")
            parameters.append(before_seq)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        return [_job(r) for r in self._rows(sql + " ORDER BY seq DESC LIMIT ?", (*parameters, limit))]

    def sweeps(self, limit: int = 50, before_seq: int | None = None, owner: str | None = None) -> list[dict]:
        """Sweep records (``sweep``'s), newest first (``owner``'s, when given); ``before_seq``
        continues a listing after the sweep of that seq."""
        where, parameters = [], []
        for condition, value in (("owner = ?", owner), ("seq < ?", before_seq)):
            if value is not None:
                where.append(condition)
                parameters.append(value)
        sql = _SWEEP_RECORD + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq DESC LIMIT ?"
        return [_sweep(r) for r in self._rows(sql, (*parameters, limit))]

    def sweep(self, sweep_id: str) -> dict | None:
        """A sweep's record: seq, id, owner, created_at, and ``config``: a search's base, a
        grid sweep's first member's (what the sweep's metric is read from); a search's
        ``search`` settings, ``grid``, ``state``, started_at, finished_at, cancel_requested
        and error (a grid sweep's are None: its jobs say them).  None for a sweep there is not."""
        rows = self._rows(_SWEEP_RECORD + " WHERE id = ?", (sweep_id,))
        return _sweep(rows[0]) if rows else None

    # ------------------------------------------------------------ searches
    def add_search(self, sweep_id: str, owner: str | None, config: dict, grid: dict, settings: dict) -> dict:
        """Queue a search: its base ``config``, ``grid`` (a range as its text) and search
        ``settings`` (numbamlp.sweeps.sweep's names); returns its record."""
        self._write([("INSERT INTO sweeps (id, owner, created_at, search, config, grid, state) "
                      "VALUES (?, ?, ?, ?, ?, ?, 'queued')",
                      (sweep_id, owner, time.time(), json_text(settings), json.dumps(config, ensure_ascii=False),
                       json_text(grid, ensure_ascii=False)))])
        return self.sweep(sweep_id)

    def oldest_queued_search(self) -> dict | None:
        """The search that has waited longest for its turn: {id, created_at}, or None."""
        rows = self._rows("SELECT id, created_at FROM sweeps WHERE state = 'queued' ORDER BY seq LIMIT 1")
        return rows[0] if rows else None

    def running_searches(self) -> list[str]:
        """The searches a stopped server was running (to go on), in submission order."""
        return [r["id"] for r in self._rows("SELECT id FROM sweeps WHERE state = 'running' ORDER BY seq")]

    def start_search(self, sweep_id: str) -> bool:
        """A queued search to running; False if it is not queued (cancelled meanwhile)."""
        with self._lock:
            return self._transaction(lambda: self._db.execute(
                "UPDATE sweeps SET state = 'running', started_at = COALESCE(started_at, ?) WHERE id = ? AND "
                "state = 'queued'", (time.time(), sweep_id)).rowcount) > 0

    def end_search(self, sweep_id: str, state: str, error: str | None = None) -> None:
        """A running search ended (``state``: done, cancelled or failed, with its ``error``),
        and with it, in one transaction, its trials not ended (queued or running):
        cancelled with a cancelled search, else failed (saying why)."""
        now = time.time()
        trials_status = "cancelled" if state == "cancelled" else "failed"
        trials_error = None if state == "cancelled" else error or "the search ended before this trial did"

        def end():
            left = [r[0] for r in self._db.execute("SELECT id FROM jobs WHERE sweep_id = ? AND status IN ('queued', "
                                                   "'running')", (sweep_id,))]
            self._move(left, trials_status, ("queued", "running"), "status = ?, finished_at = ?, error = ?",
                       {"finished_at": now, "error": trials_error}, now)
            self._db.execute("UPDATE sweeps SET state = ?, finished_at = ?, error = ? WHERE id = ? AND state = "
                             "'running'", (state, now, error, sweep_id))

        with self._lock:
            self._transaction(end)

    def request_search_cancel(self, sweep_id: str) -> dict | None:
        """Cancel a search: a queued one at once, a running one after its current step (its
        scheduler stops it; its watch also reads the flag).  Returns the record as it is now."""
        now = time.time()

        def cancel():
            self._db.execute("UPDATE sweeps SET cancel_requested = 1 WHERE id = ? AND state IN ('queued', 'running')",
                             (sweep_id,))
            self._db.execute("UPDATE sweeps SET state = 'cancelled', finished_at = ? WHERE id = ? AND state = "
                             "'queued'", (now, sweep_id))

        with self._lock:
            self._transaction(cancel)
        return self.sweep(sweep_id)

    def copy_events(self, from_job: str, to_job: str) -> None:
        """Another job's epochs as ``to_job``'s (a trial that repeats an earlier one's settings)."""
        self._write([("INSERT OR REPLACE INTO job_events SELECT ?, epoch, metrics FROM job_events WHERE job_id = ?",
                      (to_job, from_job))])

    def sweep_jobs(self, sweep_id: str) -> list[dict]:
        """Every job of the sweep ``sweep_id``, in submission order (seq: its member order);
        [] for a sweep there is not."""
        return [_job(r) for r in self._rows("SELECT * FROM jobs WHERE sweep_id = ? ORDER BY seq", (sweep_id,))]

    def sweep_members(self, sweep_ids) -> list[dict]:
        """What a summary of each of the sweeps ``sweep_ids`` needs of its jobs (no configs):
        {id, sweep_id, status, created_at, started_at, finished_at, owner, scores, trial}, in
        submission order (seq: each sweep's member order)."""
        sweep_ids = list(sweep_ids)
        if not sweep_ids:
            return []
        marks = ",".join("?" * len(sweep_ids))
        rows = self._rows("SELECT id, sweep_id, status, created_at, started_at, finished_at, owner, scores, trial "
                          f"FROM jobs WHERE sweep_id IN ({marks}) ORDER BY seq", sweep_ids)
        return [row | {"scores": json.loads(row["scores"]) if row["scores"] else None,
                       "trial": json.loads(row["trial"]) if row["trial"] else None} for row in rows]

    def last_epochs(self, sweep_id: str) -> dict[str, int]:
        """The last epoch stored of each job of a sweep that has one: {job id: epoch} (a
        job's last epoch is always stored; a job that trains again from the start, after a
        crash, has none until its first)."""
        rows = self._rows("SELECT e.job_id AS id, MAX(e.epoch) AS epoch FROM job_events e JOIN jobs j ON j.id = "
                          "e.job_id WHERE j.sweep_id = ? GROUP BY e.job_id", (sweep_id,))
        return {r["id"]: r["epoch"] for r in rows}

    def stack_jobs(self, stack_id: str) -> list[dict]:
        """Every job a stack trained (or trains), in any status, in the stack's order (seq)."""
        return [_job(r) for r in self._rows("SELECT * FROM jobs WHERE stack_id = ? ORDER BY seq", (stack_id,))]

    def queued(self, limit: int = -1) -> list[dict]:
        """Queued jobs that have not started, oldest first (at most ``limit``; -1: all); not
        a search's trials, which their search trains."""
        return [_job(r) for r in self._rows("SELECT * FROM jobs WHERE status = 'queued' AND stack_id IS NULL AND "
                                            "trial IS NULL ORDER BY seq LIMIT ?", (limit,))]

    def oldest_queued_at(self) -> float | None:
        """When the oldest queued job that has not started (not a trial) was submitted (None:
        there is none): the scheduler's cheap look at every tick, whatever the queue's length."""
        rows = self._rows("SELECT created_at FROM jobs WHERE status = 'queued' AND stack_id IS NULL AND trial IS NULL "
                          "ORDER BY seq LIMIT 1")
        return rows[0]["created_at"] if rows else None

    def paused_stacks(self) -> list[str]:
        """Stacks paused to let other jobs train (their jobs queued, with the stack's id)."""
        return [r["stack_id"] for r in self._rows("SELECT DISTINCT stack_id FROM jobs WHERE status = 'queued' AND "
                                                  "stack_id IS NOT NULL ORDER BY stack_id")]

    def waiting(self) -> bool:
        """Whether any job is queued, new or paused."""
        return bool(self._rows("SELECT 1 FROM jobs WHERE status = 'queued' LIMIT 1"))

    def set_status(self, job_ids, status: str, expected: tuple = (), **fields) -> list[str]:
        """Move jobs to ``status`` (only those now in ``expected``, when given), setting the
        named columns too; returns the ids that moved."""
        job_ids = list(job_ids)
        if not job_ids:
            return []
        now = time.time()
        # a job's first start is kept: a paused stack going on again does not restart the clock
        first_start = status == "running" and "started_at" not in fields
        if first_start:
            fields["started_at"] = now
        if status in FINAL:
            fields.setdefault("finished_at", now)
        assignments = ", ".join("started_at = COALESCE(started_at, ?)" if name == "started_at" and first_start
                                else f"{name} = ?" for name in ("status", *fields))
        with self._lock:
            return self._transaction(lambda: self._move(job_ids, status, expected, assignments, fields, now))

    def _move(self, job_ids, status, expected, assignments, fields, now) -> list[str]:
        """set_status's statements, inside the caller's transaction."""
        moved = []
        for job_id in job_ids:
            row = self._db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or (expected and row[0] not in expected):
                continue
            self._db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (status, *fields.values(), job_id))
            self._db.execute("INSERT INTO job_status_history VALUES (?, ?, ?)", (job_id, status, now))
            moved.append(job_id)
        return moved

    def request_cancel(self, job_id: str) -> dict | None:
        """Cancel a job: a queued one at once (a paused stack's too), a running one at its
        stack's next step (the trainer reads the flag); one transaction, so a stack pausing
        meanwhile cannot make it miss both.  Returns the job as it is now."""
        now = time.time()

        def cancel():
            self._db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status IN ('queued', 'running')",
                             (job_id,))
            self._move([job_id], "cancelled", ("queued",), "status = ?, finished_at = ?", {"finished_at": now}, now)

        with self._lock:
            self._transaction(cancel)
        return self.job(job_id)

    def cancel_requested(self, job_ids) -> set[str]:
        job_ids = list(job_ids)
        marks = ",".join("?" * len(job_ids))
        rows = self._rows(f"SELECT id FROM jobs WHERE cancel_requested = 1 AND id IN ({marks})", job_ids)
        return {r["id"] for r in rows}

    def requeue_running(self, keep=()) -> list[str]:
        """After a restart: jobs that were running (but those in ``keep``, and a search's
        trials, which their search trains again) go back to the queue; their epochs so far
        are forgotten, and they train again from the start, to the same results."""
        keep = set(keep)
        return self.requeue([r["id"] for r in self._rows("SELECT id FROM jobs WHERE status = 'running' AND trial IS "
                                                         "NULL") if r["id"] not in keep], "running")

    def requeue(self, job_ids, status: str = "queued") -> list[str]:
        """Jobs in ``status`` (running after a crash; queued in a paused stack whose
        checkpoint is gone) start again as new jobs: no stack, no epochs; one transaction."""
        job_ids = list(job_ids)
        now = time.time()
        fields = {"stack_id": None, "stack_size": None, "started_at": None, "joined_at_epoch": None}
        assignments = ", ".join(f"{name} = ?" for name in ("status", *fields))

        def again():
            moved = self._move(job_ids, "queued", (status,), assignments, fields, now)
            for job_id in moved:
                self._db.execute("DELETE FROM job_events WHERE job_id = ?", (job_id,))
            return moved

        with self._lock:
            return self._transaction(again)

    def status_history(self, job_id: str) -> list[dict]:
        return self._rows("SELECT status, at FROM job_status_history WHERE job_id = ? ORDER BY rowid", (job_id,))

    def count(self) -> int:
        return self._rows("SELECT COUNT(*) AS n FROM jobs")[0]["n"]

    # ------------------------------------------------------------ events
    def add_event(self, job_id: str, epoch: int, metrics: dict) -> None:
        # (a diverged loss: null, not NaN, which is not JSON)
        self._write([("INSERT OR REPLACE INTO job_events VALUES (?, ?, ?)", (job_id, epoch, json_text(metrics)))])

    def events(self, job_id: str, after: int = 0) -> list[tuple[int, dict]]:
        rows = self._rows("SELECT epoch, metrics FROM job_events WHERE job_id = ? AND epoch > ? ORDER BY epoch",
                          (job_id, after))
        return [(r["epoch"], json.loads(r["metrics"])) for r in rows]

    # ------------------------------------------------------------ tokens
    def put_token(self, name: str, role: str, token: str) -> None:
        """Keep ``token``'s hash as ``name``'s (replacing the one it had)."""
        from numbamlp.service.auth import token_sha256

        self._write([("DELETE FROM tokens WHERE name = ?", (name,)),
                     ("INSERT INTO tokens VALUES (?, ?, ?, ?)", (name, role, token_sha256(token), time.time()))])

    def add_token(self, name: str, role: str, token: str) -> bool:
        """Keep a new token for ``name``; False if the name has one."""
        from numbamlp.service.auth import token_sha256

        try:
            self._write([("INSERT INTO tokens VALUES (?, ?, ?, ?)", (name, role, token_sha256(token), time.time()))])
        except sqlite3.IntegrityError:
            return False
        return True

    def revoke_token(self, name: str) -> bool:
        """Forget ``name``'s token (False: there was none); its jobs stay."""
        with self._lock:
            return self._transaction(lambda: self._db.execute("DELETE FROM tokens WHERE name = ?", (name,)).rowcount) > 0

    def tokens(self) -> list[dict]:
        """Every token's name, role and creation time (never the token), by name."""
        return self._rows("SELECT name, role, created_at FROM tokens ORDER BY name")

    def caller(self, token: str):
        """The Caller whose token this is, or None."""
        from numbamlp.service.auth import Caller, token_sha256

        with self._token_lock:
            row = self._token_db.execute("SELECT name, role FROM tokens WHERE sha256 = ?",
                                         (token_sha256(token),)).fetchone()
        return Caller(*row) if row else None

    # ------------------------------------------------------------ data sets
    def add_dataset(self, dataset_id: str, format: str, size: int, rows: int, features: int) -> dict:
        self._write([("INSERT OR IGNORE INTO datasets VALUES (?, ?, ?, ?, ?, ?)",
                      (dataset_id, format, size, rows, features, time.time()))])
        return self.dataset(dataset_id)

    def dataset(self, dataset_id: str) -> dict | None:
        rows = self._rows("SELECT * FROM datasets WHERE id = ?", (dataset_id,))
        return rows[0] if rows else None


class DiskReserve:
    """A file of ``size`` bytes kept in the data directory, given up when the disk fills so
    that the jobs cut off can still be recorded as failed (and why), and made again once
    the disk has room."""

    def __init__(self, path, size: int = 8 << 20):
        self.path, self.size = Path(path), size

    def make(self) -> bool:
        """Write the reserve if it is not there and there is room for it twice over; whether
        it is there now with as much again free (the disk has room for work)."""
        import shutil

        if shutil.disk_usage(self.path.parent).free < (1 if self.path.is_file() else 2) * self.size:
            return False
        if self.path.is_file():
            return True
        try:
            with open(self.path, "wb") as file:
                file.write(bytes(self.size))  # (written, not sparse: the space is really taken)
                file.flush()
                os.fsync(file.fileno())
        except OSError:
            self.path.unlink(missing_ok=True)
            return False
        return True

    def release(self) -> bool:
        """Free the reserve's space; whether there was one to free."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True


def _job(row: dict) -> dict:
    row = dict(row)
    row["config"] = json.loads(row["config"])
    row["scores"] = json.loads(row["scores"]) if row["scores"] else None
    for column in ("grid", "trial"):
        row[column] = json.loads(row[column]) if row[column] is not None else None
    row["cancel_requested"] = bool(row["cancel_requested"])
    return row


# A sweep's record, its config a search's base or a grid sweep's first member's
_SWEEP_RECORD = ("SELECT seq, id, owner, created_at, search, grid, state, started_at, finished_at, cancel_requested, "
                 "error, COALESCE(config, (SELECT j.config FROM jobs j WHERE j.sweep_id = sweeps.id ORDER BY j.seq "
                 "LIMIT 1)) AS config FROM sweeps")


def _sweep(row: dict) -> dict:
    row = dict(row)
    for column in ("search", "grid", "config"):
        row[column] = json.loads(row[column]) if row[column] is not None else None
    row["cancel_requested"] = bool(row["cancel_requested"])
    return row
