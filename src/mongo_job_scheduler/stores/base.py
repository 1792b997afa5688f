"""The seam between the scheduling logic and a database: the store contracts.

A store keeps job documents (docs/schema.md) and performs the few operations that must be
atomic: creating with dedupe, claiming due jobs under a lease, renewing leases, and fenced writes
that only the current owner may make. Scheduling maths, retries, dedupe and update rules and the
worker loop live elsewhere and call these methods. ``JobStore`` is the asyncio contract, which
``MongoJobStore`` and ``InMemoryJobStore`` fulfil (they pass the same contract suite);
``SyncJobStore`` is the blocking one behind :mod:`mongo_job_scheduler.sync`, producer and admin
operations only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Protocol

from .._documents import JobQuery, NewJob
from .._history import Ending
from ..job import Job, RunContext
from ..rate_limit import RateLimit

__all__ = [
    "LOCK_FIELDS",
    "Announced",
    "ClaimResult",
    "ClaimState",
    "Claimed",
    "Fence",
    "JobStore",
    "Ownership",
    "SyncJobStore",
    "concurrency_limit",
    "ownership_of",
    "shows_release",
]

LOCK_FIELDS = ("lockedBy", "lockedAt", "lockUntil")
"""The fields of a job's current lease, removed when the job is released or finished."""


def concurrency_limit(document: Mapping[str, Any]) -> int | None:
    """The job's ``concurrency`` limit when it has one (an integer from 1; a boolean is
    none), else ``None``: such a job runs only with one of its name's slots."""
    limit = document.get("concurrency")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1:
        return limit
    return None


@dataclass(frozen=True)
class Announced:
    """A job that a change notification announced as just created and due, with no
    concurrency or rate limit of its own: a worker with every place free may take it alone by
    its id (:meth:`JobStore.claim_announced`), without first reading the queue."""

    job_id: Any
    name: str


@dataclass(frozen=True)
class Claimed:
    """A job this worker now owns. ``poisoned`` means its lease expired too many times: the
    worker must fail it without running the handler."""

    document: dict[str, Any]
    poisoned: bool = False

    @classmethod
    def taken(cls, document: dict[str, Any], max_lease_expiries: int) -> Claimed:
        """The claim of ``document`` as a claim wrote it: poisoned once its lease expired
        ``max_lease_expiries`` times."""
        return cls(document, int(document.get("leaseExpiries") or 0) >= max_lease_expiries)

    @property
    def token(self) -> int:
        """The claim's fencing token (the ``lockVersion`` it wrote)."""
        return int(self.document.get("lockVersion") or 0)

    @property
    def job_id(self) -> Any:
        """The claimed job's id."""
        return self.document["_id"]

    @property
    def slot_name(self) -> str | None:
        """The name whose concurrency slot the claim took (jobs with a ``concurrency``
        limit), else ``None``."""
        if concurrency_limit(self.document) is not None:
            return str(self.document["name"])
        return None

    def job(self, run: RunContext | None = None) -> Job:
        """The claimed job's view (with ``run``, the view its handler gets)."""
        return Job.from_document(self.document, run)


@dataclass
class ClaimState:
    """What one worker's claims remember between calls. Each worker owns one and passes it
    to every :meth:`JobStore.claim`; a store object may serve several workers, so it keeps no
    such state itself. A store may use the fields it needs and ignore the rest."""

    lost_races: bool = False
    """The last claim came back short because other workers took jobs it had chosen."""
    lane: int = 0
    """Which part of the queue's head to claim from while contended (0: the head itself)."""
    left_head_at: float = 0.0
    """When (``time.monotonic()``) the claims last moved away from lane 0."""
    contended_until: float = 0.0
    """Claims stay in their lane until then (``time.monotonic()``)."""
    next_expired_scan: float = 0.0
    """When (``time.monotonic()``) to look for expired leases again under constant load."""


@dataclass(frozen=True)
class ClaimResult:
    """What one :meth:`JobStore.claim` took, in the claim order, and whether it came back
    short because other workers took jobs it had chosen (more may be due: claim again at once
    rather than wait as when the queue is drained)."""

    jobs: list[Claimed]
    lost_races: bool = False
    held_back: bool = False
    """Due jobs may be waiting that no change notification will announce: a name was
    paused, or a concurrency or rate limit held a job back. An idle worker then polls at its
    ``poll_interval`` rather than trusting notifications."""
    drained: bool = False
    """The claim read every job that looked due (fewer than it asked for): races it lost
    were for the last due jobs, so nothing more is known to be due. The worker then claims
    once more shortly (the server may have refused a job not quite due yet by its clock)
    rather than at once."""


class Ownership(Enum):
    """Who has a claimed job now, as its execution's fence sees it."""

    OWNED = "owned"
    """Still this execution's: running, same owner, same token."""
    CANCELLED = "cancelled"
    """Cancelled (by an operator or another process): nothing more is written for it."""
    LOST = "lost"
    """Anything else: taken over after its lease expired, finished, released or deleted."""


def ownership_of(doc: Mapping[str, Any] | None, fence: Fence) -> Ownership:
    """Who has the job ``doc`` (as stored now) from the point of view of ``fence``."""
    if doc is None:
        return Ownership.LOST
    if doc.get("status") == "cancelled":
        return Ownership.CANCELLED
    if (
        doc.get("status") == "running"
        and doc.get("lockedBy") == fence.owner
        and doc.get("lockVersion") == fence.token
    ):
        return Ownership.OWNED
    return Ownership.LOST


def shows_release(doc: Mapping[str, Any] | None, fence: Fence) -> bool:
    """Whether ``doc`` shows the release written under ``fence`` (pending, lock cleared, the
    fence's token): a retried release whose first try was applied before its reply was lost."""
    return (
        doc is not None
        and doc.get("lockVersion") == fence.token
        and doc.get("lockedBy") is None
        and doc.get("status") == "pending"
    )


@dataclass(frozen=True)
class Fence:
    """Who may write a claimed job: the owner id and the claim's token (``lockVersion``)."""

    job_id: Any
    owner: str
    token: int
    slot_name: str | None = None
    """The concurrency-limited name whose slot this execution holds, if any."""


@dataclass
class Finish:
    """A fenced write that ends an execution: the fields to set and unset, and side effects."""

    set: dict[str, Any]
    unset: list[str] = field(default_factory=list)
    expect: Mapping[str, Any] | None = None
    """Extra equality conditions (e.g. the ``repeat`` the worker computed from)."""
    release_dedupe_key: str | None = None
    """Free this dedupe key (the job reached a terminal state and its scope is "active")."""
    attempt: Ending | None = None
    """How the attempt ended: the store appends its entry to the job's ``history`` (built from
    the document's ``lastRunAt``, ``lockedBy`` and ``lockVersion`` before the write)."""


class JobStore(ABC):
    """Where jobs live. All methods are coroutines; documents use the stored field names."""

    @abstractmethod
    async def setup(self) -> None:
        """Create the indexes the store relies on (idempotent); side collections come into
        being with their first write."""

    @abstractmethod
    async def now(self) -> datetime:
        """The store's clock (the database server's, for MongoDB)."""

    @abstractmethod
    def clock(self) -> datetime:
        """The store's clock as last measured, without a round trip (:meth:`now` measures
        it again when the measurement is old; a worker's claims keep it fresh)."""

    @abstractmethod
    async def insert(
        self, jobs: Sequence[NewJob], *, session: Any = None
    ) -> list[tuple[dict[str, Any], bool]]:
        """Store new jobs, deduping by key; returns ``(document, created)`` per job, in order.
        A deduped job returns the existing holder's document and ``created=False``."""

    @abstractmethod
    async def get(self, job_id: Any) -> dict[str, Any] | None:
        """The document with this id, or ``None``."""

    @abstractmethod
    async def find(self, query: JobQuery) -> list[dict[str, Any]]:
        """Documents matching a validated query."""

    @abstractmethod
    async def claim(
        self,
        owner: str,
        limit: int,
        lease: timedelta,
        max_lease_expiries: int,
        names: Sequence[str] | None = None,
        rate_limits: Mapping[str, RateLimit] | None = None,
        *,
        state: ClaimState | None = None,
    ) -> ClaimResult:
        """Atomically take up to ``limit`` due jobs for ``owner`` in the global order (priority,
        then due time, then insertion): pending jobs whose ``nextRunAt`` has passed, and running
        jobs whose lease expired (counting the expiry in ``leaseExpiries``). Each claim bumps
        ``lockVersion`` (the fencing token) and sets ``lockUntil`` to now + ``lease`` on the
        store's clock. Jobs with a ``concurrency`` limit are claimed only with a free slot.
        ``names`` restricts the claim to those job names (``None``: any name). A job is
        started only within its name's rate limit (``rate_limits[name]``, else the job's own
        ``rateLimit``): each start is recorded; a claim that then fails gives it back.
        ``state`` is the calling worker's memory between claims (none: a fresh one)."""

    async def claim_announced(
        self,
        owner: str,
        announced: Announced,
        lease: timedelta,
        max_lease_expiries: int,
        names: Sequence[str] | None = None,
        rate_limits: Mapping[str, RateLimit] | None = None,
    ) -> Claimed | None:
        """Take the one job ``announced`` for ``owner`` in a single round trip, exactly as
        :meth:`claim` would take it, if it is still pending and due on the store's clock,
        among ``names``, not paused, and without a concurrency or rate limit (its own, or its
        name's in ``rate_limits``); otherwise write nothing and return ``None``, and the
        worker claims as usual. Stores may always return ``None``."""
        return None

    @abstractmethod
    async def renew(self, fences: Sequence[Fence], lease: timedelta) -> set[Any]:
        """Extend the leases (and concurrency slots) of these executions to now + ``lease`` in
        one write where possible; return the ids whose lease this owner no longer holds."""

    @abstractmethod
    async def finish(self, fence: Fence, finish: Finish) -> bool:
        """End an execution: apply ``finish`` and clear the lock, only if ``fence`` still owns
        the job (and ``finish.expect`` holds). Frees the execution's concurrency slot either way.
        Returns whether the write was applied."""

    async def watch(
        self,
        notify: Callable[..., None],
        ready: Callable[[], None] | None = None,
        health: Callable[[bool], None] | None = None,
    ) -> bool:
        """Call ``notify(seconds_until_due)`` whenever a job becomes pending (created,
        retried, rescheduled or released), until cancelled; for a job created due with no
        limits, a store may call ``notify(seconds_until_due, announced)`` with an
        :class:`Announced` (if ``notify`` takes it). Call ``ready()`` each time the
        notifications (re)start, since changes just before it may have been missed. Call
        ``health(True)`` while notifications arrive promptly, and ``health(False)`` as soon as
        they may be late or lost (an error, or no answer from the server in time): an idle
        worker trusts notifications, and polls rarely, only while they are healthy. Stores
        without push notifications return ``False`` at once, and workers rely on polling."""
        return False

    async def next_due(
        self, names: Sequence[str] | None, within: timedelta, since: datetime | None = None
    ) -> float | None:
        """Seconds until the earliest moment after ``since`` (default: now; a worker passes
        the store's clock from just before its last claim) and within ``within`` from now at
        which a job (of ``names``; not paused) becomes claimable: a pending job becomes due,
        or a running job's lease runs out; 0 if that moment has passed already (the job
        became claimable after the claim looked), ``None`` if there is none. An idle worker
        arms a timer with it after an empty claim, so such a job starts on time between two
        polls. Stores may return ``None`` always (workers then rely on polling)."""
        return None

    async def finish_many(self, items: Sequence[tuple[Fence, Finish]]) -> list[bool]:
        """:meth:`finish` for several executions, in as few round trips as the store allows;
        returns, per item, whether its write was applied. If a previous try of the same batch
        was applied before its reply was lost, those items count as applied."""
        return [await self.finish(fence, finish) for fence, finish in items]

    @abstractmethod
    async def record_progress(self, items: Sequence[tuple[Fence, dict[str, Any]]]) -> None:
        """Store each execution's latest ``progress`` if it still owns its job."""

    @abstractmethod
    async def free_slot(self, fence: Fence) -> None:
        """Free the execution's concurrency slot without touching the job (used when the job is
        no longer this worker's: cancelled, or its lease lost)."""

    @abstractmethod
    async def release(self, fence: Fence) -> bool:
        """Give a claimed job back without counting an attempt: pending, due now, unlocked.
        Returns whether the job is released by this fence: now, or by an earlier try of the
        same release whose reply was lost."""

    async def ownership(self, fence: Fence) -> Ownership:
        """Who has the job of ``fence`` now (one read)."""
        return ownership_of(await self.get(fence.job_id), fence)

    def is_transient(self, exc: BaseException) -> bool:
        """Whether an error this store raised may pass if the operation is tried again
        (network trouble, an election, a timeout); a refused document or a bad operation will
        not. Stores that never fail that way keep the default, ``False``."""
        return False

    @abstractmethod
    async def cancel(self, job_id: Any) -> tuple[dict[str, Any] | None, bool]:
        """Cancel a pending or running job. Returns ``(document after, changed)``; the
        document is ``None`` if the job does not exist."""

    @abstractmethod
    async def update(
        self,
        job_id: Any,
        *,
        expect_status: Sequence[str],
        set: Mapping[str, Any],
        unset: Sequence[str] = (),
    ) -> dict[str, Any] | None:
        """Apply a user's change if the job's status is one of ``expect_status``; returns the
        document after, or ``None`` if it did not match."""

    @abstractmethod
    async def delete(self, job_id: Any, statuses: Sequence[str]) -> dict[str, Any] | None:
        """Delete the job if its status is one of ``statuses``, in one atomic step; give back
        its dedupe key as :meth:`cancel` does and forget the dependencies it waited for.
        Returns the deleted document (at least its ``_id``, ``name``, ``status``, dedupe
        fields and ``dependants``), or ``None`` if no job with that id is in those statuses."""

    @abstractmethod
    async def delete_finished(self, before: datetime, statuses: Sequence[str]) -> int:
        """Delete jobs in one of ``statuses`` (terminal ones) last updated before ``before``;
        returns how many were deleted."""

    @abstractmethod
    async def pause(self, name: str) -> bool:
        """Stop claiming jobs of ``name`` everywhere (running ones finish); returns whether
        it was not paused before. Survives restarts."""

    @abstractmethod
    async def resume(self, name: str) -> bool:
        """Claim jobs of ``name`` again; returns whether it was paused."""

    @abstractmethod
    async def paused_names(self) -> list[str]:
        """The paused job names, sorted."""

    @abstractmethod
    async def stats(self, now: datetime) -> dict[str, Any]:
        """Counts for operators: ``by_name`` ({name: {status: n}}), ``due`` (pending jobs due
        by ``now``), ``oldest_due`` (the earliest ``nextRunAt`` among them, or ``None``) and
        ``failed_since_hour`` (jobs failed in the hour before ``now``)."""

    @abstractmethod
    async def finished_per_minute(self, since: datetime, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` jobs that finished (completed, failed, cancelled) at or after
        ``since``, counted by minute of ``updatedAt`` and status: one row per minute and
        status, ``{minute, status, n, waitMax, waitSum, waitN}``, where the waits are
        ``lastRunAt - nextRunAt`` in milliseconds over the ``waitN`` jobs that have both and
        did not start early (``waitMax`` ``None`` when there are none)."""

    @abstractmethod
    async def job_names(self, limit: int) -> list[str]:
        """The first ``limit`` distinct job names, sorted."""

    @abstractmethod
    async def activity(
        self, now: datetime, since: datetime, limit: int, active_limit: int
    ) -> dict[str, Any]:
        """What each job name is doing, in reads bounded by the limits: ``counts``, rows
        ``{name, status, n}`` of the first ``active_limit`` jobs of each active status
        (pending ones in the claim order, running ones by ``lockUntil``, waiting ones by
        name) and of the newest ``limit`` jobs of each finished status that finished at or
        after ``since`` (by ``updatedAt``); ``due``, ``{name: n}`` of the first
        ``active_limit`` pending jobs due by ``now`` in the claim order, and ``oldest_due``,
        the earliest ``nextRunAt`` among them (``None`` when none is due)."""

    # -- jobs that wait for other jobs (depends_on; rules in _workflows) -----------------------

    @abstractmethod
    async def get_many(
        self,
        job_ids: Sequence[Any],
        projection: Mapping[str, Any] | None = None,
        *,
        session: Any = None,
    ) -> list[dict[str, Any]]:
        """The documents with these ids that exist (any order), optionally projected."""

    @abstractmethod
    async def add_dependencies(
        self, job_id: Any, dependency_ids: Sequence[Any], *, session: Any = None
    ) -> None:
        """Open an edge from the new waiting job ``job_id`` to each dependency, and mark the
        dependencies that have not finished as having dependants to settle when they end."""

    @abstractmethod
    async def reopen_dependencies(self, job_id: Any, dependency_ids: Sequence[Any]) -> None:
        """Open again the edges of a job that waits again (it was retried), and mark those
        dependencies as in :meth:`add_dependencies`."""

    @abstractmethod
    async def close_dependencies(self, dependency_ids: Sequence[Any]) -> list[tuple[Any, Any]]:
        """Close every edge on these finished jobs; ``(dependant, dependency)`` for each edge
        on them (open or closed before)."""

    @abstractmethod
    async def has_open_dependencies(self, job_id: Any) -> bool:
        """Whether ``job_id`` still waits for a dependency (an open edge is left)."""

    @abstractmethod
    async def release_waiting(self, job_id: Any) -> dict[str, Any] | None:
        """A ``waiting`` job becomes ``pending`` (due now, or at its ``nextRunAt`` if later);
        the document after, or ``None`` if it was not waiting (released once, whoever asks)."""

    @abstractmethod
    async def cancel_waiting(self, job_id: Any, fields: Mapping[str, Any]) -> dict[str, Any] | None:
        """A ``waiting`` job is cancelled with ``fields`` (its error); the document after, or
        ``None`` if it was not waiting."""

    @abstractmethod
    async def dependants_settled(self, dependency_ids: Sequence[Any]) -> None:
        """Record that these finished jobs' dependants have all been looked at."""

    @abstractmethod
    async def unsettled(self, before: datetime, limit: int) -> list[dict[str, Any]]:
        """Finished jobs last written before ``before`` whose dependants were not settled (the
        process that finished them died first, or they ended outside this library)."""

    @abstractmethod
    async def dependants(self, job_id: Any, limit: int) -> list[Any]:
        """The ids of (up to ``limit``) jobs that wait or waited for ``job_id``."""

    @abstractmethod
    async def due_by_name(self, now: datetime, head: int | None = None) -> dict[str, int]:
        """How many pending jobs are due by ``now``, by name: all of them, or only among the
        first ``head`` in the claim order (a bounded look)."""

    @abstractmethod
    async def register_worker(self, worker_id: str, fields: Mapping[str, Any]) -> None:
        """Record that the worker ``worker_id`` is running (``fields``: who it is, what it
        handles, how busy it is), stamping ``lastSeen`` with the store's clock; once per
        registration interval while it runs."""

    @abstractmethod
    async def unregister_worker(self, worker_id: str) -> None:
        """Forget a worker that stopped."""

    @abstractmethod
    async def live_workers(self, since: datetime) -> list[dict[str, Any]]:
        """The registrations seen at or after ``since``, oldest start first."""

    async def live_worker_count(self, since: datetime) -> int:
        """How many registrations were seen at or after ``since`` (an idle worker spreads its
        claims after a notification over a time that grows with it)."""
        return len(await self.live_workers(since))

    @abstractmethod
    async def reserve_dedupe_key(self, key: str, job_id: Any) -> bool:
        """Register ``key`` for ``job_id`` (reviving a finished job); False if another job
        holds it."""


class SyncJobStore(Protocol):
    """Where the blocking :class:`mongo_job_scheduler.sync.Scheduler` keeps jobs: the producer
    and admin operations of :class:`JobStore`, as plain blocking methods, with the same
    documents and semantics (a job stored here is claimed by the asyncio workers of a
    ``JobStore`` on the same data). Running jobs is not part of it."""

    def setup(self) -> None:
        """Create indexes (idempotent)."""

    def now(self) -> datetime:
        """The store's clock (the database server's, for MongoDB)."""

    def insert(
        self, jobs: Sequence[NewJob], *, session: Any = None
    ) -> list[tuple[dict[str, Any], bool]]:
        """Store new jobs, deduping by key; returns ``(document, created)`` per job, in order.
        A deduped job returns the existing holder's document and ``created=False``."""

    def reserve_dedupe_key(self, key: str, job_id: Any) -> bool:
        """Register ``key`` for ``job_id`` (reviving a finished job); False if another job
        holds it."""

    def get(self, job_id: Any) -> dict[str, Any] | None:
        """The document with this id, or ``None``."""

    def find(self, query: JobQuery) -> list[dict[str, Any]]:
        """Documents matching a validated query."""

    def cancel(self, job_id: Any) -> tuple[dict[str, Any] | None, bool]:
        """Cancel a pending or running job. Returns ``(document after, changed)``; the
        document is ``None`` if the job does not exist."""

    def update(
        self,
        job_id: Any,
        *,
        expect_status: Sequence[str],
        set: Mapping[str, Any],
        unset: Sequence[str] = (),
    ) -> dict[str, Any] | None:
        """Apply a user's change if the job's status is one of ``expect_status``; returns the
        document after, or ``None`` if it did not match."""

    def delete(self, job_id: Any, statuses: Sequence[str]) -> dict[str, Any] | None:
        """As :meth:`JobStore.delete`."""

    def delete_finished(self, before: datetime, statuses: Sequence[str]) -> int:
        """Delete jobs in one of ``statuses`` (terminal ones) last updated before ``before``;
        returns how many were deleted."""

    def pause(self, name: str) -> bool:
        """Stop claiming jobs of ``name`` everywhere (running ones finish); returns whether
        it was not paused before. Survives restarts."""

    def resume(self, name: str) -> bool:
        """Claim jobs of ``name`` again; returns whether it was paused."""

    def paused_names(self) -> list[str]:
        """The paused job names, sorted."""

    def stats(self, now: datetime) -> dict[str, Any]:
        """The counts of :meth:`JobStore.stats`: ``by_name``, ``due``, ``oldest_due`` and
        ``failed_since_hour``."""

    def due_by_name(self, now: datetime, head: int | None = None) -> dict[str, int]:
        """How many pending jobs are due by ``now``, by name: all of them, or only among the
        first ``head`` in the claim order."""

    def finished_per_minute(self, since: datetime, limit: int) -> list[dict[str, Any]]:
        """As :meth:`JobStore.finished_per_minute`."""

    def job_names(self, limit: int) -> list[str]:
        """As :meth:`JobStore.job_names`."""

    def activity(
        self, now: datetime, since: datetime, limit: int, active_limit: int
    ) -> dict[str, Any]:
        """As :meth:`JobStore.activity`."""

    def live_workers(self, since: datetime) -> list[dict[str, Any]]:
        """The worker registrations seen at or after ``since``, oldest start first (the
        asyncio workers write them; nothing here does)."""

    def get_many(
        self,
        job_ids: Sequence[Any],
        projection: Mapping[str, Any] | None = None,
        *,
        session: Any = None,
    ) -> list[dict[str, Any]]:
        """As :meth:`JobStore.get_many`."""

    def add_dependencies(
        self, job_id: Any, dependency_ids: Sequence[Any], *, session: Any = None
    ) -> None:
        """As :meth:`JobStore.add_dependencies`."""

    def reopen_dependencies(self, job_id: Any, dependency_ids: Sequence[Any]) -> None:
        """As :meth:`JobStore.reopen_dependencies`."""

    def close_dependencies(self, dependency_ids: Sequence[Any]) -> list[tuple[Any, Any]]:
        """As :meth:`JobStore.close_dependencies`."""

    def has_open_dependencies(self, job_id: Any) -> bool:
        """As :meth:`JobStore.has_open_dependencies`."""

    def release_waiting(self, job_id: Any) -> dict[str, Any] | None:
        """As :meth:`JobStore.release_waiting`."""

    def cancel_waiting(self, job_id: Any, fields: Mapping[str, Any]) -> dict[str, Any] | None:
        """As :meth:`JobStore.cancel_waiting`."""

    def dependants_settled(self, dependency_ids: Sequence[Any]) -> None:
        """As :meth:`JobStore.dependants_settled`."""

    def dependants(self, job_id: Any, limit: int) -> list[Any]:
        """As :meth:`JobStore.dependants`."""
