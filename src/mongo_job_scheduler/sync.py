"""The blocking twin of :class:`mongo_job_scheduler.Scheduler`, for code that is not async
(Django views, Flask, scripts): the same producer and admin methods, without ``await``.

.. code-block:: python

    from pymongo import MongoClient
    from mongo_job_scheduler.sync import MongoJobStore, Scheduler

    scheduler = Scheduler(MongoJobStore(MongoClient(uri)["my-app"]))
    job = scheduler.schedule("send-email", {"userId": 123}, dedupe_key="email:user:123")
    finished = scheduler.wait(job.id, timeout=60)   # run by an asyncio worker elsewhere

It is built on PyMongo's sync ``MongoClient`` (no event loop runs behind it) and writes exactly
the documents the asyncio API writes: jobs scheduled here are run by the workers of an asyncio
``Scheduler`` on the same database and collection, and jobs scheduled there can be read,
updated, cancelled, retried and purged here. It runs no workers itself. The operations both
schedulers share are written once, in :mod:`._procedures`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ._documents import (
    UNSET,
    DedupeScope,
    build_bulk,
    build_changes,
    build_new_job,
    build_query,
    parse_job_id,
)
from ._durations import Duration
from ._errors import ConfigurationError, JobNotFound, ValidationError
from ._procedures import (
    apply_update,
    delete_job,
    insert_jobs,
    list_dependants,
    list_job_names,
    list_live_workers,
    list_paused,
    pause_name,
    purge_finished,
    read_activity,
    read_stats,
    read_throughput,
    resume_name,
    retry,
    run_sync,
    settle_dependants,
    wait_finished,
)
from ._updates import plan_update
from ._workflows import DEPENDANTS_OPEN
from .events import EventEmitter, Listener
from .fleet import WorkerInfo
from .job import Job, JobStatus
from .rate_limit import RateLimit
from .repeat import Repeat, _zone
from .retry import Retry
from .stats import Activity, SchedulerStats, Throughput
from .stores._mongo_sync import MongoJobStore
from .stores.base import SyncJobStore

__all__ = ["MongoJobStore", "Scheduler"]

logger = logging.getLogger("mongo_job_scheduler")

SYNC_EVENTS = frozenset({"job:created", "job:cancel"})
"""The events a blocking scheduler emits (it runs no workers, so no other event happens)."""


class Scheduler:
    """Schedule and administer jobs from blocking code, on a sync :class:`MongoJobStore`.

    Methods mirror the asyncio :class:`mongo_job_scheduler.Scheduler`'s producer and admin
    methods: same arguments, validation, stored documents and errors. ``default_timezone`` is
    the zone of cron schedules that name none (use the workers' setting). Safe to share between
    threads.
    """

    def __init__(self, store: MongoJobStore, *, default_timezone: str = "UTC") -> None:
        if not isinstance(store, MongoJobStore):
            raise ConfigurationError(
                "store",
                "expected a mongo_job_scheduler.sync.MongoJobStore (on a pymongo Database), got "
                f"{type(store).__name__}",
            )
        try:
            _zone(default_timezone, "default_timezone")
        except ValidationError as exc:
            raise ConfigurationError(exc.field, exc.reason) from None
        self.store: SyncJobStore = store
        self.default_timezone = default_timezone
        self.events = EventEmitter()

    def on(self, event: str, listener: Listener) -> None:
        """Call ``listener(job)`` on ``"job:created"`` (a job was stored; not for a deduped
        schedule) or ``"job:cancel"`` (a job was cancelled here). Listeners are plain
        functions; one that raises is logged and never breaks the call that emitted it."""
        if event not in SYNC_EVENTS:
            raise ValidationError(
                "event",
                f"the blocking scheduler emits only {sorted(SYNC_EVENTS)}, not {event!r}; "
                "worker and job-run events come from the asyncio Scheduler that runs the jobs",
            )
        if inspect.iscoroutinefunction(listener):
            raise ValidationError("listener", "must be a plain function (nothing awaits it here)")
        self.events.on(event, listener)

    def off(self, event: str, listener: Listener) -> None:
        """Remove a listener added with :meth:`on`."""
        self.events.off(event, listener)

    # -- producing --------------------------------------------------------------------------

    def schedule(
        self,
        name: str,
        data: Any = None,
        *,
        run_at: Any = None,
        delay: Duration | None = None,
        repeat: Mapping[str, Any] | Repeat | None = None,
        retry: int | Mapping[str, Any] | Retry | None = None,
        dedupe_key: str | None = None,
        dedupe: DedupeScope = "active",
        dedupe_window: Duration | None = None,
        priority: int = 5,
        concurrency: int | None = None,
        max_execution: Duration | None = None,
        timeout: Duration | None = None,
        rate_limit: Mapping[str, Any] | RateLimit | None = None,
        depends_on: Sequence[Any] | None = None,
        run_on_failure: bool = False,
        session: Any = None,
    ) -> Job:
        """Store a new job and return it (see :meth:`mongo_job_scheduler.Scheduler.schedule`).

        With ``dedupe_key``, the active job holding that key is returned instead of a second
        one (``dedupe="forever"``: any job with that key). ``session`` is a pymongo
        ``ClientSession`` to enqueue inside the caller's transaction. ``depends_on`` makes the
        job wait for other jobs (see the asyncio scheduler). Invalid input raises
        :class:`~mongo_job_scheduler.ValidationError` and writes nothing.
        """
        new = build_new_job(
            name,
            data,
            now=self.store.now(),
            default_timezone=self.default_timezone,
            run_at=run_at,
            delay=delay,
            repeat=repeat,
            retry=retry,
            dedupe_key=dedupe_key,
            dedupe=dedupe,
            dedupe_window=dedupe_window,
            priority=priority,
            concurrency=concurrency,
            max_execution=max_execution,
            timeout=timeout,
            rate_limit=rate_limit,
            depends_on=depends_on,
            run_on_failure=run_on_failure,
        )
        [(doc, created)] = run_sync(insert_jobs([new], session), self.store)
        job = Job.from_document(doc)
        if created:
            self.events.emit("job:created", job)
        return job

    def schedule_bulk(
        self, items: Sequence[Mapping[str, Any]], *, session: Any = None
    ) -> list[Job]:
        """Store many jobs in few round trips; each item takes :meth:`schedule`'s arguments as
        keys (``name`` required). Every item is validated before anything is written; dedupe
        keys dedupe as in :meth:`schedule` (also between items of the same call)."""
        news = build_bulk(items, now=self.store.now(), default_timezone=self.default_timezone)
        jobs = []
        for doc, created in run_sync(insert_jobs(news, session, bulk=True), self.store):
            job = Job.from_document(doc)
            jobs.append(job)
            if created:
                self.events.emit("job:created", job)
        return jobs

    # -- reading ----------------------------------------------------------------------------

    def wait(self, job_id: Any, timeout: Duration | None = None) -> Job:
        """Block until the job has finished (completed, failed or cancelled) and return it;
        ``job.result`` holds what its handler returned. Raises
        :class:`~mongo_job_scheduler.JobNotFound` if there is no such job and ``TimeoutError``
        if ``timeout`` seconds pass first. Works for jobs run by any worker (it polls the
        store, quickly at first)."""
        return run_sync(wait_finished(job_id, timeout), self.store)

    def get_job(self, job_id: Any) -> Job | None:
        """The job with this id (an ``ObjectId`` or its 24-hex string), or ``None``."""
        doc = self.store.get(parse_job_id(job_id))
        return None if doc is None else Job.from_document(doc)

    def get_jobs(
        self,
        *,
        name: str | None = None,
        status: str | JobStatus | Sequence[str | JobStatus] | None = None,
        data: Mapping[str, Any] | None = None,
        sort: tuple[str, str] | None = None,
        limit: int | None = None,
        skip: int = 0,
        ids: Sequence[Any] | None = None,
        fields: Sequence[str] | None = None,
        max_value_size: int | None = None,
    ) -> list[Job]:
        """Jobs matching every given filter, read as the asyncio
        :meth:`mongo_job_scheduler.Scheduler.get_jobs` reads them (the same filters, ``ids``,
        order, paging, ``fields`` and ``max_value_size``)."""
        query = build_query(
            name=name,
            status=status,
            data=data,
            sort=sort,
            limit=limit,
            skip=skip,
            ids=ids,
            fields=fields,
            max_value_size=max_value_size,
        )
        return [Job.from_document(doc) for doc in self.store.find(query)]

    def dependants(self, job_id: Any, *, limit: int = 100) -> list[Job]:
        """The jobs that wait (or waited) for this one (``depends_on``), up to ``limit``."""
        return run_sync(list_dependants(job_id, limit), self.store)

    # -- administering ----------------------------------------------------------------------

    def update_job(
        self,
        job_id: Any,
        *,
        data: Any = UNSET,
        run_at: Any = UNSET,
        repeat: Any = UNSET,
        retry: Any = UNSET,
        priority: Any = UNSET,
        concurrency: Any = UNSET,
        max_execution: Any = UNSET,
        timeout: Any = UNSET,
    ) -> Job:
        """Change a job and return it. Only the given fields change (``None`` clears an optional
        one). ``run_at`` reschedules a pending job, or runs a completed or failed job again; a
        running job keeps running undisturbed (``run_at`` is refused for it) and a new ``repeat``
        applies from its next occurrence. Cancelled jobs stay cancelled."""
        oid = parse_job_id(job_id)
        changes = build_changes(
            now=self.store.now(),
            default_timezone=self.default_timezone,
            data=data,
            run_at=run_at,
            repeat=repeat,
            retry=retry,
            priority=priority,
            concurrency=concurrency,
            max_execution=max_execution,
            timeout=timeout,
        )
        doc = run_sync(
            apply_update(job_id, oid, lambda current, _: plan_update(job_id, current, changes)),
            self.store,
        )
        return Job.from_document(doc)

    def cancel(self, job_id: Any) -> bool:
        """Cancel a pending or running job (a running one is stopped by its worker at its next
        heartbeat and ends ``cancelled``). Returns ``False`` (and changes nothing) if the job
        had already finished. Raises :class:`~mongo_job_scheduler.JobNotFound` if there is no
        such job. Unlike the asyncio ``Scheduler.cancel`` it sets no ``expireAt`` (this
        scheduler has no ``retention`` option): the job is kept until it is purged."""
        oid = parse_job_id(job_id)
        doc, changed = self.store.cancel(oid)
        if doc is None:
            raise JobNotFound(job_id)
        if not changed:
            logger.info(
                "job %s already %s; cancel changed nothing",
                job_id,
                doc.get("status"),
                extra={"job_id": str(oid)},
            )
            return False
        self.events.emit("job:cancel", Job.from_document(doc))
        if doc.get("dependants") == DEPENDANTS_OPEN:  # the jobs waiting for it are cancelled
            for dependant in run_sync(settle_dependants([doc]), self.store):
                self.events.emit("job:cancel", Job.from_document(dependant))
        return True

    def retry_job(self, job_id: Any) -> Job:
        """Run a ``failed`` or ``cancelled`` job again now, with fresh attempts (an operator's
        explicit decision: a cancelled job never runs again by itself). Other statuses raise
        :class:`~mongo_job_scheduler.InvalidJobState`; re-running a completed job is
        ``update_job(run_at=...)``."""
        return run_sync(retry(job_id), self.store)

    def delete_job(self, job_id: Any) -> bool:
        """Delete a pending, waiting or finished job for good (see
        :meth:`mongo_job_scheduler.Scheduler.delete_job`): its dedupe key is given back, the
        jobs waiting for it are settled as if it had been cancelled (or as it ended), a
        running job is refused with :class:`~mongo_job_scheduler.InvalidJobState`. Returns
        ``False`` (and changes nothing) if there is no such job."""
        deleted, cancelled = run_sync(delete_job(job_id), self.store)
        for dependant in cancelled:
            self.events.emit("job:cancel", Job.from_document(dependant))
        return deleted

    def purge(
        self,
        older_than: Any,
        *,
        statuses: Sequence[str | JobStatus] = ("completed", "failed", "cancelled"),
    ) -> int:
        """Delete finished jobs (``completed``, ``failed``, ``cancelled`` by default) last
        updated before ``older_than`` (an aware datetime, or a duration back from now).
        Pending and running jobs are never purged. Returns how many were deleted."""
        return run_sync(purge_finished(older_than, statuses), self.store)

    def pause(self, name: str) -> bool:
        """Stop every worker, everywhere, from starting jobs named ``name`` (running ones
        finish; workers notice within a second). The pause survives restarts. Returns
        ``False`` if it was already paused."""
        return run_sync(pause_name(name), self.store)

    def resume(self, name: str) -> bool:
        """Let workers start jobs named ``name`` again (they notice at a poll, within their
        poll interval plus a second). Returns ``False`` if it was not paused."""
        return run_sync(resume_name(name), self.store)

    def paused_names(self) -> list[str]:
        """The paused job names, sorted."""
        return run_sync(list_paused(), self.store)

    def stats(self) -> SchedulerStats:
        """Counts by status and name, the due backlog and its lag, failures in the last hour,
        and the due jobs whose name no live worker handles."""
        return run_sync(read_stats(), self.store)

    def throughput(self, *, minutes: int = 60) -> Throughput:
        """The jobs that finished in each of the last ``minutes`` minutes, by outcome, with the
        wait before their starts (see the asyncio ``Scheduler.throughput``)."""
        return run_sync(read_throughput(minutes), self.store)

    def job_names(self, *, limit: int = 1000) -> list[str]:
        """The distinct names of the stored jobs, sorted, the first ``limit`` (1 to 10,000)."""
        return run_sync(list_job_names(limit), self.store)

    def activity(self, *, minutes: int = 60) -> Activity:
        """What each job name is doing now and did in the last ``minutes`` minutes, in
        bounded index reads (see the asyncio ``Scheduler.activity``)."""
        return run_sync(read_activity(minutes), self.store)

    def live_workers(self) -> list[WorkerInfo]:
        """The asyncio workers running now, in every process on this database and collection
        (each registers itself every few seconds while it runs), oldest start first."""
        return run_sync(list_live_workers(), self.store)
