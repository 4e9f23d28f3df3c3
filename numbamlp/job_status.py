"""The statuses of a training service job, stated once for the service (its store, schemas
and routes), its client and the command line.

A job goes queued → running → succeeded | failed | cancelled (queued → cancelled too).

A search's trial is a job too (the service keeps a search's trials as jobs), queued from
when its search asks it until its first epoch, and says more as a trial: a succeeded trial
is ``finished``, or ``pruned`` when the search's pruner stopped it early (it succeeded with
the model of the epoch it stopped at).
"""

from __future__ import annotations

from typing import Literal

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL = STATUSES[2:]  # succeeded, failed, cancelled: a job in one of these changes no more

JobStatus = Literal[STATUSES]  # (the statuses as a type: a status parameter and Job.status)

TRIAL_STATUSES = ("queued", "running", "pruned", "finished", "failed", "cancelled")
TrialStatus = Literal[TRIAL_STATUSES]


def trial_status(status: str, pruned_epoch: int | None) -> str:
    """A trial's status (TRIAL_STATUSES) from its job's ``status`` and the epoch its search's
    pruner stopped it at (None: not pruned)."""
    if status == "succeeded":
        return "finished" if pruned_epoch is None else "pruned"
    return status
