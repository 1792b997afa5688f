"""Operations of the public API written once for the asyncio and the blocking scheduler.

A procedure is a generator that yields the store calls it needs (:class:`Call`) and receives
their results; it holds the logic (loops, checks, errors) and no I/O. ``run_async`` carries it
out on a :class:`~.stores.base.JobStore`, ``run_sync`` on a
:class:`~.stores.base.SyncJobStore`: both stores have the same method names and arguments, so
``mongo_job_scheduler.Scheduler`` and ``mongo_job_scheduler.sync.Scheduler`` behave alike
without two copies of each operation.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from ._errors import JobNotFound
from ._updates import UPDATE_ATTEMPTS, UpdatePlan, update_gave_up

__all__ = ["Call", "Procedure", "apply_update", "run_async", "run_sync"]

T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One store call: ``store.<method>(*args, **kwargs)``."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


Procedure = Generator[Call, Any, T]


async def run_async(procedure: Procedure[T], store: Any) -> T:
    """Carry out ``procedure`` on an asyncio store."""
    result: Any = None
    while True:
        try:
            call = procedure.send(result)
        except StopIteration as done:
            value: T = done.value
            return value
        result = await getattr(store, call.method)(*call.args, **call.kwargs)


def run_sync(procedure: Procedure[T], store: Any) -> T:
    """Carry out ``procedure`` on a blocking store."""
    result: Any = None
    while True:
        try:
            call = procedure.send(result)
        except StopIteration as done:
            value: T = done.value
            return value
        result = getattr(store, call.method)(*call.args, **call.kwargs)


def apply_update(
    job_id: Any, oid: Any, plan_for: Callable[[Mapping[str, Any], datetime], UpdatePlan]
) -> Procedure[dict[str, Any]]:
    """Change a job optimistically: read it, plan the change for its current status
    (``plan_for(document, now)`` raises if the status allows none), take back its dedupe key
    if the change revives it, and write only if the status is still the one planned for;
    read again when it changed meanwhile, at most :data:`UPDATE_ATTEMPTS` times. Returns the
    document after the write."""
    for _ in range(UPDATE_ATTEMPTS):
        current = yield Call("get", (oid,))
        if current is None:
            raise JobNotFound(job_id)
        plan = plan_for(current, (yield Call("now")))
        key = plan.reserve_dedupe_key
        if key is not None and not (yield Call("reserve_dedupe_key", (key, oid))):
            raise plan.dedupe_conflict(job_id)
        doc = yield Call(
            "update",
            (oid,),
            {"expect_status": [plan.expect_status], "set": plan.set, "unset": plan.unset},
        )
        if doc is not None:
            after: dict[str, Any] = doc
            return after
    raise update_gave_up(job_id)
