"""The service's state in SQLite (WAL): jobs, their status history, per-epoch metrics,
uploaded data sets.

One connection, shared by the server's threads behind a lock (SQLite serialises writers
anyway, and the service's statements are small).  Every change is one transaction, so a
kill -9 at any moment leaves either the state before it or after it.

Job statuses: queued → running → succeeded | failed | cancelled (queued → cancelled too).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from pathlib import Path

from numbamlp.io import json_text

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL = ("succeeded", "failed", "cancelled")

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
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS job_status_history (
    job_id TEXT NOT NULL, status TEXT NOT NULL, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS job_events (
    job_id TEXT NOT NULL, epoch INTEGER NOT NULL, metrics TEXT NOT NULL,
    PRIMARY KEY (job_id, epoch)
);
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY, format TEXT NOT NULL, size INTEGER NOT NULL, rows INTEGER NOT NULL,
    features INTEGER NOT NULL, created_at REAL NOT NULL
);
"""

JOB_COLUMNS = ("seq", "id", "status", "config", "idempotency_key", "sweep_id", "created_at", "started_at",
               "finished_at", "stack_id", "stack_size", "cancel_requested", "test_accuracy", "test_loss",
               "val_accuracy", "val_loss", "model_sha256", "scores", "error")


class Store:
    """The service's SQLite database at ``path``."""

    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
        with self._lock:
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, statements):
        """Run [(sql, parameters), ...] as one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, parameters in statements:
                    self._db.execute(sql, parameters)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _rows(self, sql, parameters=()) -> list[dict]:
        with self._lock:
            cursor = self._db.execute(sql, parameters)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    # ------------------------------------------------------------ jobs
    def add_jobs(self, configs: list[dict], idempotency_key: str | None = None,
                 sweep_id: str | None = None) -> list[dict]:
        """Queue one job per config (one transaction); with an idempotency key already used,
        the job it made instead (a retried request).  Returns the jobs."""
        if idempotency_key is not None:
            existing = self._rows("SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,))
            if existing:
                return [_job(existing[0])]
        now = time.time()
        ids = [secrets.token_hex(8) for _ in configs]
        statements = []
        for job_id, config in zip(ids, configs):
            # as UTF-8, not \u-escaped: SQLite then refuses text UTF-8 cannot encode (a lone
            # surrogate), which, stored escaped, would make every listing fail to encode
            statements.append(("INSERT INTO jobs (id, status, config, idempotency_key, sweep_id, created_at) "
                               "VALUES (?, 'queued', ?, ?, ?, ?)",
                               (job_id, json.dumps(config, ensure_ascii=False), idempotency_key, sweep_id, now)))
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

    def jobs(self, status: str | None = None, limit: int = 50, before_seq: int | None = None) -> list[dict]:
        """Newest first; ``before_seq`` continues a listing after its last job."""
        where, parameters = [], []
        if status is not None:
            where.append("status = ?")
            parameters.append(status)
        if before_seq is not None:
            where.append("seq < ?")
            parameters.append(before_seq)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        return [_job(r) for r in self._rows(sql + " ORDER BY seq DESC LIMIT ?", (*parameters, limit))]

    def stack_jobs(self, stack_id: str) -> list[dict]:
        """Every job a stack trained (or trains), in any status, in the stack's order (seq)."""
        return [_job(r) for r in self._rows("SELECT * FROM jobs WHERE stack_id = ? ORDER BY seq", (stack_id,))]

    def queued(self, limit: int = -1) -> list[dict]:
        """Queued jobs, oldest first (at most ``limit``; -1: all)."""
        return [_job(r) for r in self._rows("SELECT * FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT ?",
                                            (limit,))]

    def oldest_queued_at(self) -> float | None:
        """When the oldest queued job was submitted (None: nothing queued): the scheduler's
        cheap look at every tick, whatever the queue's length."""
        rows = self._rows("SELECT created_at FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1")
        return rows[0]["created_at"] if rows else None

    def set_status(self, job_ids, status: str, expected: tuple = (), **fields) -> list[str]:
        """Move jobs to ``status`` (only those now in ``expected``, when given), setting the
        named columns too; returns the ids that moved."""
        job_ids = list(job_ids)
        if not job_ids:
            return []
        now = time.time()
        if status == "running":
            fields.setdefault("started_at", now)
        if status in FINAL:
            fields.setdefault("finished_at", now)
        moved = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for job_id in job_ids:
                    row = self._db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
                    if row is None or (expected and row[0] not in expected):
                        continue
                    assignments = ", ".join(f"{name} = ?" for name in ("status", *fields))
                    self._db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?",
                                     (status, *fields.values(), job_id))
                    self._db.execute("INSERT INTO job_status_history VALUES (?, ?, ?)", (job_id, status, now))
                    moved.append(job_id)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return moved

    def request_cancel(self, job_id: str) -> dict | None:
        """Cancel a job: a queued one at once, a running one at its stack's next step (the
        trainer reads the flag).  Returns the job as it is now."""
        self.set_status([job_id], "cancelled", expected=("queued",))
        self._write([("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", (job_id,))])
        return self.job(job_id)

    def cancel_requested(self, job_ids) -> set[str]:
        job_ids = list(job_ids)
        marks = ",".join("?" * len(job_ids))
        rows = self._rows(f"SELECT id FROM jobs WHERE cancel_requested = 1 AND id IN ({marks})", job_ids)
        return {r["id"] for r in rows}

    def requeue_running(self, keep=()) -> list[str]:
        """After a restart: jobs that were running (but those in ``keep``) go back to the
        queue; their epochs so far are forgotten, and they train again from the start, to
        the same results."""
        running = [r["id"] for r in self._rows("SELECT id FROM jobs WHERE status = 'running'")
                   if r["id"] not in set(keep)]
        for job_id in running:
            self._write([("DELETE FROM job_events WHERE job_id = ?", (job_id,))])
        return self.set_status(running, "queued", expected=("running",), stack_id=None, stack_size=None,
                               started_at=None)

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

    # ------------------------------------------------------------ data sets
    def add_dataset(self, dataset_id: str, format: str, size: int, rows: int, features: int) -> dict:
        self._write([("INSERT OR IGNORE INTO datasets VALUES (?, ?, ?, ?, ?, ?)",
                      (dataset_id, format, size, rows, features, time.time()))])
        return self.dataset(dataset_id)

    def dataset(self, dataset_id: str) -> dict | None:
        rows = self._rows("SELECT * FROM datasets WHERE id = ?", (dataset_id,))
        return rows[0] if rows else None


def _job(row: dict) -> dict:
    row = dict(row)
    row["config"] = json.loads(row["config"])
    row["scores"] = json.loads(row["scores"]) if row["scores"] else None
    row["cancel_requested"] = bool(row["cancel_requested"])
    return row
