"""How ``update_job`` and ``retry_job`` change a stored job: pure plans, no I/O.

A plan says which status the job must still have when the write lands, what to set and unset,
and which dedupe key to take back first when the change makes a finished job pending again.
The callers read the job, plan, reserve the key, then write only if the status is unchanged,
re-reading up to :data:`UPDATE_ATTEMPTS` times when it changed meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._documents import JobChanges
from ._errors import InvalidJobState

__all__ = [
    "UPDATE_ATTEMPTS",
    "UpdatePlan",
    "plan_retry",
    "plan_update",
    "update_gave_up",
]

UPDATE_ATTEMPTS = 5
"""How often ``update_job`` and ``retry_job`` re-read a job whose status changed under them
before giving up."""


@dataclass(frozen=True)
class UpdatePlan:
    """How ``update_job`` or ``retry_job`` changes a job seen in status ``expect_status``: the
    write to apply if the status is still that one, and the dedupe key to take back first
    (reviving a job)."""

    expect_status: str
    set: dict[str, Any]
    unset: list[str]
    reserve_dedupe_key: str | None = None

    def dedupe_conflict(self, job_id: Any) -> InvalidJobState:
        """The error when :attr:`reserve_dedupe_key` is held by another active job."""
        return InvalidJobState(
            f"job {job_id} cannot run again: another active job holds its dedupe key"
        )


def plan_update(job_id: Any, current: Mapping[str, Any], changes: JobChanges) -> UpdatePlan:
    """Decide how ``changes`` apply to the stored job ``current``: cancelled jobs refuse every
    change, running ones refuse ``run_at``; a new ``repeat`` moves a pending job to its first
    slot; ``run_at`` on a completed or failed job makes it pending again (fresh attempts)."""
    status = str(current.get("status"))
    fields = dict(changes.set)
    if status == "cancelled":
        raise InvalidJobState(f"job {job_id} is cancelled; cancelled jobs never run again")
    if status == "running" and changes.reschedules:
        raise InvalidJobState(
            f"job {job_id} is running; wait for it to finish before changing run_at"
        )
    if current.get("dependsOn") and "repeat" in fields:
        raise InvalidJobState(f"job {job_id} waits for other jobs; it cannot repeat")
    if changes.reschedules and (current.get("repeat") or "repeat" in fields):
        fields["lastScheduledAt"] = fields["nextRunAt"]  # the new due time starts the grid
    if status == "pending" and changes.repeat_first_slot is not None:
        fields["nextRunAt"] = changes.repeat_first_slot
        fields["lastScheduledAt"] = changes.repeat_first_slot
    reserve = None
    if status in ("completed", "failed") and changes.reschedules:
        key = current.get("dedupeKey")
        reserve = None if key is None else str(key)
        fields.update(status="pending", attempts=0, leaseExpiries=0)
        return UpdatePlan(status, fields, [*changes.unset, "expireAt"], reserve)
    return UpdatePlan(status, fields, list(changes.unset), reserve)


def update_gave_up(job_id: Any) -> InvalidJobState:
    """The error when a job kept changing state for :data:`UPDATE_ATTEMPTS` tries."""
    return InvalidJobState(f"job {job_id} kept changing state; update not applied")


def plan_retry(job_id: Any, current: Mapping[str, Any], now: datetime) -> UpdatePlan:
    """Decide how ``retry_job`` runs the stored job ``current`` again at ``now``: only a
    failed or cancelled job may be retried; it becomes pending, due at ``now``, with fresh
    attempts and lease expiries, a repeating job's schedule restarts at ``now``, any retention
    deadline (``expireAt``) is removed, and its dedupe key is taken back first. A job with
    dependencies (``dependsOn``) waits for them again instead of becoming pending."""
    status = str(current.get("status"))
    if status not in ("failed", "cancelled"):
        raise InvalidJobState(
            f"job {job_id} is {status}; only failed or cancelled jobs can be retried"
        )
    fields: dict[str, Any] = {
        "status": "waiting" if current.get("dependsOn") else "pending",
        "nextRunAt": now,
        "attempts": 0,
        "leaseExpiries": 0,
    }
    if current.get("repeat"):
        fields["lastScheduledAt"] = now
    key = current.get("dedupeKey")
    return UpdatePlan(status, fields, ["expireAt"], None if key is None else str(key))
