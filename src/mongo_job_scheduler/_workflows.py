"""Jobs that wait for other jobs (``depends_on``): the rules, pure, no I/O.

A job scheduled with ``depends_on`` is stored ``waiting``. Each job it waits for is an *edge*
(``<collection>_deps``: one document per pair, open until that dependency finishes) and is
marked as having dependants. When a dependency finishes, its edges are closed and each
dependant is looked at: a dependency that **completed** counts as met; one that **failed** or
was **cancelled** cancels the dependant (with a ``lastError`` naming it, and so on down the
graph), unless the dependant was scheduled with ``run_on_failure``, which counts any end as
met. A dependant with no open edge left is released: ``pending``, due at once or at its own
``run_at`` if that is later. Closing an edge and releasing are idempotent and the release is
conditional on ``waiting``, so it happens exactly once whichever process does it, and a
process that died half-way is followed by any other (the sweep of unsettled dependencies).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ._errors import ValidationError

__all__ = [
    "DEPENDANTS_OPEN",
    "DEPENDANTS_SETTLED",
    "FINISHED",
    "Verdict",
    "as_deleted",
    "cancellation_error",
    "check_dependencies",
    "verdict",
]

DEPENDANTS_OPEN = "open"
"""``dependants`` of a job that has dependants not yet settled for its current end."""
DEPENDANTS_SETTLED = "settled"
"""``dependants`` of a finished job whose dependants have all been looked at."""

FINISHED = ("completed", "failed", "cancelled")

DEPENDENCY_PROJECTION = {"status": 1, "name": 1, "repeat": 1}
"""What the rules read of a dependency."""
DEPENDANT_PROJECTION = {"status": 1, "runOnFailure": 1}
"""What settling reads of a dependant (never its ``dependsOn`` list, which may be long)."""


class Verdict(Enum):
    """What a dependency's state means for one dependant."""

    WAIT = "wait"
    """Not finished yet: the dependant keeps waiting for it."""
    MET = "met"
    """Completed (or finished at all, for a ``run_on_failure`` dependant)."""
    CANCEL = "cancel"
    """Failed or cancelled: the dependant is cancelled."""


def verdict(dependency_status: Any, run_on_failure: bool) -> Verdict:
    """What a dependency in ``dependency_status`` means for its dependant."""
    if dependency_status == "completed":
        return Verdict.MET
    if dependency_status in ("failed", "cancelled"):
        return Verdict.MET if run_on_failure else Verdict.CANCEL
    return Verdict.WAIT


def check_dependencies(
    wanted: Sequence[Any], found: Sequence[Mapping[str, Any]]
) -> dict[Any, Mapping[str, Any]]:
    """The dependencies of a new job by id, once each is known to exist and not to repeat
    (``ValidationError`` naming the first one that does not; nothing is written)."""
    by_id = {doc["_id"]: doc for doc in found}
    for index, job_id in enumerate(wanted):
        doc = by_id.get(job_id)
        if doc is None:
            raise ValidationError(f"depends_on[{index}]", f"no job {job_id} exists")
        if doc.get("repeat"):
            raise ValidationError(
                f"depends_on[{index}]",
                f"job {job_id} ({doc.get('name')!r}) repeats: it never finishes, so nothing "
                "can wait for it",
            )
    return by_id


@dataclass(frozen=True)
class Settlement:
    """A dependant's state given its dependencies: which are still open, and the dependency
    whose end cancels it (if any)."""

    open: list[Any]
    cancelled_by: Mapping[str, Any] | None = None


def settle(dependencies: Sequence[Mapping[str, Any]], run_on_failure: bool) -> Settlement:
    """Where a dependant stands with these dependencies (as stored now)."""
    still_open = []
    for doc in dependencies:
        seen = verdict(doc.get("status"), run_on_failure)
        if seen is Verdict.CANCEL:
            return Settlement([], doc)
        if seen is Verdict.WAIT:
            still_open.append(doc["_id"])
    return Settlement(still_open)


def as_deleted(dependency: Mapping[str, Any]) -> dict[str, Any]:
    """A deleted job as its dependants see it: ended as it was if it had finished, else
    cancelled (a dependant waiting for it is cancelled, or runs if it runs on failure)."""
    status = dependency.get("status")
    return {
        "_id": dependency["_id"],
        "name": dependency.get("name"),
        "status": status if status in FINISHED else "cancelled",
        "deletedWhile": status,
    }


def cancellation_error(dependency: Mapping[str, Any]) -> dict[str, Any]:
    """The error fields of a dependant cancelled because ``dependency`` did not complete."""
    status = dependency.get("status")
    ended = "failed" if status == "failed" else "was cancelled"
    if "deletedWhile" in dependency:
        finished = dependency["deletedWhile"] in FINISHED
        ended = f"{ended} and was deleted" if finished else "was deleted"
    return {
        "lastError": (
            f"dependency {dependency['_id']} ({dependency.get('name')!r}) {ended}, so this "
            "job will not run"
        ),
        "lastErrorType": "DependencyFailed",
    }
