"""The statuses of a training service job, stated once for the service (its store, schemas
and routes), its client and the command line.

A job goes queued → running → succeeded | failed | cancelled (queued → cancelled too).
"""

from __future__ import annotations

from typing import Literal

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL = STATUSES[2:]  # succeeded, failed, cancelled: a job in one of these changes no more

JobStatus = Literal[STATUSES]  # (the statuses as a type: a status parameter and Job.status)
