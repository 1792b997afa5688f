"""``Scheduler``: the public, asyncio API — produce jobs, administer them, and run workers."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any

from ._config import SchedulerConfig
from ._documents import (
    UNSET,
    DedupeScope,
    NewJob,
    build_bulk,
    build_changes,
    build_new_job,
    build_query,
    parse_job_id,
)
from ._durations import Duration, to_seconds
from ._errors import ConfigurationError, JobNotFound
from ._periodic import Declaration, declare, update_for
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
    run_async,
    settle_dependants,
    wait_finished,
)
from ._updates import plan_update
from ._workflows import DEPENDANTS_OPEN
from .events import EventEmitter, Listener
from .fleet import WorkerInfo
from .job import Job, JobStatus, StopReason
from .rate_limit import RateLimit
from .repeat import Misfire, Repeat
from .retry import Retry
from .stats import Activity, SchedulerStats, Throughput
from .stores.base import JobStore
from .tasks import BackoffFn, Executor, Handler, P, R, TaskHandle, TaskRegistry
from .worker import Worker

__all__ = ["Scheduler"]

logger = logging.getLogger("mongo_job_scheduler")


def _checked_store(store: Any) -> JobStore | None:
    if store is not None and not isinstance(store, JobStore):
        raise ConfigurationError(
            "store",
            f"expected a JobStore (MongoJobStore or InMemoryJobStore), got {type(store).__name__}",
        )
    return store


class Scheduler:
    """A MongoDB-backed job scheduler (asyncio).

    ``store`` holds the jobs (:class:`MongoJobStore` or :class:`InMemoryJobStore`); ``handler``
    runs jobs whose name has no handler registered with :meth:`task`. ``workers`` is how many
    jobs this process runs at once. Durations are ``timedelta`` or seconds: ``poll_interval``
    (idle polling), ``lock_timeout`` (lease length, renewed while a handler runs),
    ``max_execution`` (stop renewing and emit ``job:stalled`` after this long),
    ``heartbeat_interval`` (default: a third of the lease, at most 5 s). ``max_lease_expiries``
    is how often a job's lease may expire before it is failed as a poison job. ``id`` names this
    instance in ``lockedBy`` (a unique suffix is added per start, so equal ids never collide).

    ``executor`` is where handlers run unless their task says otherwise: ``"auto"`` (async
    functions on the event loop, plain ones in a thread pool) or ``"process"`` (a pool of child
    processes that can be stopped for real and whose crash fails only their own job; the
    handler must be a module-level function). The pool runs up to ``process_pool`` handlers at
    once (default: the number of CPUs), replaces a child after ``max_tasks_per_child`` jobs, or
    when its resident memory exceeds ``max_memory_per_child`` bytes after a job.

    Use ``async with Scheduler(...) as scheduler:`` or :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        store: JobStore | None = None,
        handler: Handler | None = None,
        *,
        workers: int = 1,
        poll_interval: Duration = 0.5,
        lock_timeout: Duration = 600,
        default_timezone: str = "UTC",
        max_execution: Duration | None = None,
        id: str | None = None,
        heartbeat_interval: Duration | None = None,
        max_lease_expiries: int = 3,
        retention: Mapping[str, Duration] | None = None,
        executor: Executor = "auto",
        process_pool: int | None = None,
        max_tasks_per_child: int | None = None,
        max_memory_per_child: int | None = None,
    ) -> None:
        self._store = _checked_store(store)
        if handler is not None and not callable(handler):
            raise ConfigurationError("handler", "must be callable")
        self.config = SchedulerConfig.from_options(
            workers=workers,
            poll_interval=poll_interval,
            lock_timeout=lock_timeout,
            default_timezone=default_timezone,
            max_execution=max_execution,
            id=id,
            heartbeat_interval=heartbeat_interval,
            max_lease_expiries=max_lease_expiries,
            retention=retention,
            executor=executor,
            process_pool=process_pool,
            max_tasks_per_child=max_tasks_per_child,
            max_memory_per_child=max_memory_per_child,
        )
        """The validated options (handed to the workers at each :meth:`start`)."""
        self._tasks = TaskRegistry(handler, self.config.executor)
        self._periodic: dict[str, Declaration] = {}
        self.events = EventEmitter()
        self._worker: Worker | None = None
        self._stopping: Worker | None = None
        self._running = False

    # -- options ----------------------------------------------------------------------------

    @property
    def store(self) -> JobStore | None:
        """Where the jobs live (set it with :meth:`configure` before :meth:`start`)."""
        return self._store

    @property
    def handler(self) -> Handler | None:
        """The catch-all handler: runs jobs whose name has no :meth:`task` of its own."""
        return self._tasks.catch_all

    @handler.setter
    def handler(self, handler: Handler | None) -> None:
        self._tasks.catch_all = handler

    @property
    def id(self) -> str:
        """This instance's name in ``lockedBy`` (a unique suffix is added per start)."""
        return self.config.id

    @property
    def workers(self) -> int:
        """How many jobs this process runs at once."""
        return self.config.workers

    @property
    def poll_interval(self) -> float:
        """Seconds between two polls of an idle worker."""
        return self.config.poll_interval

    @property
    def lock_timeout(self) -> float:
        """The lease length in seconds."""
        return self.config.lease.total_seconds()

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between two lease renewals while handlers run."""
        return self.config.heartbeat_interval

    @property
    def max_execution(self) -> timedelta | None:
        """After this long a run's lease is no longer renewed (``job:stalled``)."""
        return self.config.max_execution

    @property
    def max_lease_expiries(self) -> int:
        """How often a job's lease may expire before it is failed as a poison job."""
        return self.config.max_lease_expiries

    @property
    def default_timezone(self) -> str:
        """The zone of cron schedules that name none."""
        return self.config.default_timezone

    @property
    def retention(self) -> Mapping[str, timedelta]:
        """How long finished one-off jobs are kept, by final status (absent: forever)."""
        return self.config.retention

    def configure(self, *, store: JobStore | None = None, workers: int | None = None) -> None:
        """Give the scheduler a store, or change how many jobs it runs at once, before
        :meth:`start` (a command-line runner does this for the scheduler it loaded). Raises
        :class:`ConfigurationError` for a bad value or while the scheduler is running."""
        if self._running:
            raise ConfigurationError("configure", "stop the scheduler before changing it")
        if store is not None:
            self._store = _checked_store(store)
        if workers is not None:
            self.config = self.config.with_workers(workers)

    def handled_names(self) -> list[str] | None:
        """The job names this scheduler's workers claim: ``None`` means any name (there is a
        catch-all ``handler``); otherwise the names registered with :meth:`task`, sorted, so a
        fleet can split names across processes."""
        return self._tasks.claimable_names()

    # -- configuration ----------------------------------------------------------------------

    def task(
        self,
        name: str,
        *,
        retry: int | Mapping[str, Any] | Retry | None = None,
        timeout: Duration | None = None,
        backoff: BackoffFn | None = None,
        rate_limit: Mapping[str, Any] | RateLimit | None = None,
        executor: Executor | None = None,
    ) -> Callable[[Callable[P, R]], TaskHandle[P, R]]:
        """Register the decorated function as the handler of jobs named ``name``; it becomes a
        :class:`~mongo_job_scheduler.tasks.TaskHandle`, still callable as before, with
        ``await handle.schedule(data, **options)`` and ``schedule_bulk``.

        ``retry`` and ``timeout`` override the job's own; ``backoff(attempt) -> seconds |
        timedelta`` computes retry delays in code (attempt is 1 after the first failure);
        ``rate_limit={"limit": n, "period": seconds}`` caps starts of this name fleet-wide.
        ``executor`` (default: the scheduler's) is ``"auto"`` (async functions run on the event
        loop, plain functions in a thread pool) or ``"process"`` (a child process of the
        worker's pool, stopped for real on timeout, cancel or a lost lease; the function must
        be defined at the top level of a module, else :class:`ValidationError`).
        """
        register = self._tasks.decorator(
            name,
            retry=retry,
            timeout=timeout,
            backoff=backoff,
            rate_limit=rate_limit,
            executor=executor,
        )

        def decorate(fn: Callable[P, R]) -> TaskHandle[P, R]:
            register(fn)
            return TaskHandle(self, name, fn.fn if isinstance(fn, TaskHandle) else fn)

        return decorate

    def periodic(
        self,
        name: str,
        *,
        cron: str | None = None,
        every: Duration | None = None,
        timezone: str | None = None,
        misfire: Misfire = "once",
        catch_up_limit: int = 100,
        data: Any = None,
        retry: int | Mapping[str, Any] | Retry | None = None,
        priority: int = 5,
        concurrency: int | None = None,
        max_execution: Duration | None = None,
        timeout: Duration | None = None,
        backoff: BackoffFn | None = None,
        rate_limit: Mapping[str, Any] | RateLimit | None = None,
        executor: Executor | None = None,
    ) -> Callable[[Callable[P, R]], TaskHandle[P, R]]:
        """Declare a repeating job in code and register the decorated function as its handler
        (like :meth:`task`, whose ``backoff``, ``rate_limit`` and ``executor`` it takes).

        ``cron`` (with ``timezone``, default ``default_timezone``) or ``every`` (seconds or a
        ``timedelta``) is the schedule; ``data``, ``retry``, ``priority``, ``concurrency``,
        ``max_execution`` and ``timeout`` are stored on the job as with :meth:`schedule`. When
        the scheduler starts, exactly one active job exists for the declaration fleet-wide:
        processes starting at once create one between them; a declaration changed in code
        updates that job in place at the next start (same id); a restart with the same
        declaration changes nothing. To retire it, remove the declaration and cancel its job
        (a cancelled periodic job is left cancelled at later starts; ``retry_job`` revives
        it). Invalid options raise :class:`ValidationError` here, before anything is written.
        """
        declaration = declare(
            name,
            cron=cron,
            every=every,
            timezone_name=timezone,
            misfire=misfire,
            catch_up_limit=catch_up_limit,
            data=data,
            retry=retry,
            priority=priority,
            concurrency=concurrency,
            max_execution=max_execution,
            timeout=timeout,
        )
        register = self.task(name, backoff=backoff, rate_limit=rate_limit, executor=executor)

        def decorate(fn: Callable[P, R]) -> TaskHandle[P, R]:
            handle = register(fn)
            self._periodic[name] = declaration
            return handle

        return decorate

    def on(self, event: str, listener: Listener) -> None:
        """Call ``listener`` on ``event`` (see :data:`~mongo_job_scheduler.events.EVENTS`).
        ``job:fail`` listeners receive ``(job, error)``; ``worker:*`` ones the worker id;
        ``scheduler:error`` the exception; job events the :class:`Job`."""
        self.events.on(event, listener)

    def off(self, event: str, listener: Listener) -> None:
        """Remove a listener added with :meth:`on`."""
        self.events.off(event, listener)

    def _need_store(self) -> JobStore:
        if self.store is None:
            raise ConfigurationError("store", "this Scheduler has no store configured")
        return self.store

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """Whether :meth:`start` ran and :meth:`stop` has not."""
        return self._running

    @property
    def in_progress(self) -> int:
        """How many jobs this scheduler's workers are still busy with: claimed and running,
        finished with their outcome still being written or their events still being emitted,
        or finished with the jobs waiting for them still being released or cancelled. ``0``
        once :meth:`stop` has returned."""
        return sum(w.in_progress for w in (self._worker, self._stopping) if w is not None)

    async def start(self) -> None:
        """Create indexes, make sure each :meth:`periodic` declaration has its job, and start
        the workers (a no-op if already started). Without a store the scheduler starts in
        lifecycle-only mode (events only)."""
        if self._running:
            return
        if self.store is not None:
            await self.store.setup()
            await self._ensure_periodic(self.store)
        self._running = True
        self.events.emit("scheduler:start")
        if self.store is not None:
            owner = f"{self.id}-{uuid.uuid4().hex[:12]}"
            self._worker = Worker(self.store, self.config, owner, self._tasks, self.events)
            self._worker.start()

    async def _ensure_periodic(self, store: JobStore) -> None:
        """One active job per periodic declaration: create it, or bring it in line."""
        for declaration in list(self._periodic.values()):
            new = declaration.new_job(await store.now(), self.default_timezone)
            job, created = await self._store_new(store, new)
            if created:
                continue
            if job.status is JobStatus.CANCELLED:
                logger.info(
                    "periodic job %r (%s) is cancelled: left cancelled (retry_job revives it)",
                    declaration.name,
                    job.id,
                    extra={"job_id": str(job.id), "job_name": declaration.name},
                )
                continue
            changes = update_for(declaration, job.document, self.default_timezone)
            if changes:
                await self.update_job(job.id, **changes)
                logger.info(
                    "periodic job %r (%s) updated to its declaration: %s",
                    declaration.name,
                    job.id,
                    ", ".join(sorted(changes)),
                    extra={"job_id": str(job.id), "job_name": declaration.name},
                )

    async def stop(self, graceful: bool = True, timeout: Duration = 30) -> None:
        """Stop claiming. If ``graceful``, let running jobs finish for up to ``timeout``
        seconds; then stop the remaining handlers and give their jobs back so other workers
        take them at once. ``graceful=False`` does that immediately (also while a graceful stop
        is waiting for running jobs: it stops them now)."""
        if not self._running:
            stopping = self._stopping
            if stopping is not None and not graceful:
                for job_id in list(stopping.executions):
                    stopping.request_stop(job_id, StopReason.SHUTDOWN)
            return
        wait = to_seconds("timeout", timeout, allow_zero=True)
        self._running = False
        worker, self._worker = self._worker, None
        if worker is not None:
            self._stopping = worker
            try:
                await worker.stop(graceful, wait if graceful else 0.0)
            finally:
                self._stopping = None
        self.events.emit("scheduler:stop")

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop(graceful=True)

    # -- producing --------------------------------------------------------------------------

    async def schedule(
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
        """Store a new job and return it.

        ``run_at`` (aware datetime) or ``delay`` sets the first run; without them a one-off job
        is due now and a repeating job at its first slot after now. With ``dedupe_key``, an
        active job with that key is returned instead of creating a second one (``dedupe=
        "forever"``: any job with that key; ``dedupe_window``: also a job that finished less
        than that long ago, for throttling). ``priority`` runs 1 (first) to 10 (last).
        ``concurrency`` caps how many jobs of this name run at once across all workers.
        ``timeout`` cancels a run that takes longer (the attempt fails); ``max_execution`` stops
        renewing its lease instead (``job:stalled``). With ``depends_on`` (jobs or their ids)
        the job is ``waiting`` until every one of them has completed, then due (at once, or at
        ``run_at`` if later); if one fails or is cancelled, this job is cancelled too, unless
        ``run_on_failure`` (then it runs once they have all finished). Invalid input raises
        :class:`ValidationError` and writes nothing.
        """
        store = self._need_store()
        new = build_new_job(
            name,
            data,
            now=await store.now(),
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
        job, _ = await self._store_new(store, new, session)
        return job

    async def _store_new(
        self, store: JobStore, new: NewJob, session: Any = None
    ) -> tuple[Job, bool]:
        """Insert one validated job (or find its dedupe holder): the job and whether it was
        created (then ``job:created`` is emitted and the local worker woken if it is due)."""
        [(doc, created)] = await run_async(insert_jobs([new], session), store)
        job = Job.from_document(doc)
        if created:
            self.events.emit("job:created", job)
            await self._wake_if_due(job)
        return job, created

    async def schedule_bulk(
        self, items: Sequence[Mapping[str, Any]], *, session: Any = None
    ) -> list[Job]:
        """Store many jobs in few round trips. Each item takes :meth:`schedule`'s arguments as
        keys (``name`` required). Every item is validated before anything is written; dedupe
        keys dedupe as in :meth:`schedule` (also between items of the same call)."""
        store = self._need_store()
        news = build_bulk(items, now=await store.now(), default_timezone=self.default_timezone)
        stored = await run_async(insert_jobs(news, session, bulk=True), store)
        jobs = []
        created_jobs = []
        for doc, created in stored:
            job = Job.from_document(doc)
            jobs.append(job)
            if created:
                created_jobs.append(job)
                self.events.emit("job:created", job)
        if created_jobs:
            first = min(created_jobs, key=lambda j: j.next_run_at or _far_future())
            await self._wake_if_due(first)
        return jobs

    async def _wake_if_due(self, job: Job) -> None:
        """Tell the local worker when a job it may run becomes due (now, or at its time)."""
        if self._worker is None or self.store is None or job.status is not JobStatus.PENDING:
            return
        if job.next_run_at is None:
            self._worker.wake()
            return
        self._worker.wake_in((job.next_run_at - await self.store.now()).total_seconds())

    # -- reading ----------------------------------------------------------------------------

    async def wait(self, job_id: Any, timeout: Duration | None = None) -> Job:
        """Wait until the job has finished (completed, failed or cancelled) and return it;
        ``job.result`` holds what its handler returned. Raises :class:`JobNotFound` if there
        is no such job and ``TimeoutError`` if ``timeout`` seconds pass first. Works for jobs
        run by any worker (it polls the store, quickly at first)."""
        return await run_async(wait_finished(job_id, timeout), self._need_store())

    async def get_job(self, job_id: Any) -> Job | None:
        """The job with this id (an ``ObjectId`` or its 24-hex string), or ``None``."""
        doc = await self._need_store().get(parse_job_id(job_id))
        return None if doc is None else Job.from_document(doc)

    async def get_jobs(
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
        """Jobs matching every given filter: exact ``name``, one or several ``status`` values,
        ``data`` keys equal to plain values (dotted keys reach nested fields), and ``ids`` (jobs
        or their ids: e.g. ``job.depends_on`` to read the results of what a job waited for, in
        one round trip). ``sort`` is ``(field, "asc" | "desc")``; ``limit`` defaults to 100, or
        to the number of ``ids`` (at most 10,000). ``fields`` reads only those top-level stored
        fields of each job (``["name", "status", "data"]``; its id always; the others read as
        their defaults); with ``max_value_size``, a field whose value takes more than that many
        BSON bytes is left out too, so a listing never carries large ``data`` or ``result``
        values."""
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
        return [Job.from_document(doc) for doc in await self._need_store().find(query)]

    async def dependants(self, job_id: Any, *, limit: int = 100) -> list[Job]:
        """The jobs that wait (or waited) for this one (``depends_on``), up to ``limit``."""
        return await run_async(list_dependants(job_id, limit), self._need_store())

    # -- administering ----------------------------------------------------------------------

    async def update_job(
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
        store = self._need_store()
        oid = parse_job_id(job_id)
        changes = build_changes(
            now=await store.now(),
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
        doc = await run_async(
            apply_update(job_id, oid, lambda current, _: plan_update(job_id, current, changes)),
            store,
        )
        job = Job.from_document(doc)
        if job.status is JobStatus.PENDING:
            await self._wake_if_due(job)
        return job

    async def cancel(self, job_id: Any) -> bool:
        """Cancel a pending or running job; a running handler is asked to stop and the job ends
        ``cancelled``. Returns ``False`` (and changes nothing) if the job had already finished.
        Raises :class:`JobNotFound` if there is no such job."""
        store = self._need_store()
        oid = parse_job_id(job_id)
        doc, changed = await store.cancel(oid)
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
        keep = self.retention.get("cancelled")
        if keep is not None and not doc.get("repeat"):
            expire = {"expireAt": await store.now() + keep}
            doc = await store.update(oid, expect_status=["cancelled"], set=expire) or doc
        if self._worker is not None:
            self._worker.request_stop(oid, StopReason.CANCELLED)
        self.events.emit("job:cancel", Job.from_document(doc))
        if doc.get("dependants") == DEPENDANTS_OPEN:  # the jobs waiting for it are cancelled
            for dependant in await run_async(settle_dependants([doc]), store):
                self.events.emit("job:cancel", Job.from_document(dependant))
        return True

    async def retry_job(self, job_id: Any) -> Job:
        """Run a ``failed`` or ``cancelled`` job again now, with fresh attempts (an operator's
        explicit decision: a cancelled job never runs again by itself). Other statuses raise
        :class:`InvalidJobState`; re-running a completed job is ``update_job(run_at=...)``."""
        job = await run_async(retry(job_id), self._need_store())
        await self._wake_if_due(job)
        return job

    async def delete_job(self, job_id: Any) -> bool:
        """Delete a pending, waiting or finished job for good. Its dedupe key is given back as
        by :meth:`cancel`, and the jobs waiting for it (``depends_on``) are settled as if it
        had been cancelled (they are cancelled, unless they run on failure), or as it ended if
        it had finished. A running job is refused with :class:`InvalidJobState`: cancel it
        first. Returns ``False`` (and changes nothing) if there is no such job."""
        deleted, cancelled = await run_async(delete_job(job_id), self._need_store())
        for dependant in cancelled:
            self.events.emit("job:cancel", Job.from_document(dependant))
        return deleted

    async def purge(
        self,
        older_than: Any,
        *,
        statuses: Sequence[str | JobStatus] = ("completed", "failed", "cancelled"),
    ) -> int:
        """Delete finished jobs (``completed``, ``failed``, ``cancelled`` by default) last
        updated before ``older_than`` (an aware datetime, or a duration back from now).
        Pending and running jobs are never purged. Returns how many were deleted."""
        return await run_async(purge_finished(older_than, statuses), self._need_store())

    async def pause(self, name: str) -> bool:
        """Stop every worker, everywhere, from starting jobs named ``name`` (running ones
        finish; other processes notice within a second). The pause survives restarts.
        Returns ``False`` if it was already paused."""
        return await run_async(pause_name(name), self._need_store())

    async def resume(self, name: str) -> bool:
        """Let workers start jobs named ``name`` again. Returns ``False`` if it was not
        paused."""
        resumed = await run_async(resume_name(name), self._need_store())
        if resumed and self._worker is not None:
            self._worker.wake()
        return resumed

    async def paused_names(self) -> list[str]:
        """The paused job names, sorted."""
        return await run_async(list_paused(), self._need_store())

    async def stats(self) -> SchedulerStats:
        """Counts by status and name, the due backlog and its lag, failures in the last hour,
        and the due jobs whose name no live worker handles."""
        return await run_async(read_stats(), self._need_store())

    async def throughput(self, *, minutes: int = 60) -> Throughput:
        """The jobs that finished (completed, failed, cancelled) in each of the last
        ``minutes`` wall-clock minutes (1 to 1440; the current minute included, so far), by
        outcome, with how long their runs waited between due time and start. Repeating jobs,
        which go back to pending after a run, are not counted. It reads an index only, at
        most the newest 100,000 finished jobs (``truncated`` says when there were more)."""
        return await run_async(read_throughput(minutes), self._need_store())

    async def job_names(self, *, limit: int = 1000) -> list[str]:
        """The distinct names of the stored jobs, sorted, the first ``limit`` (1 to 10,000);
        one index key per distinct name is read."""
        return await run_async(list_job_names(limit), self._need_store())

    async def activity(self, *, minutes: int = 60) -> Activity:
        """What each job name is doing: its pending, running and waiting jobs now, and its
        jobs that finished in the last ``minutes`` wall-clock minutes (1 to 1440; the window
        of :meth:`throughput`), by status; the due jobs and the lag, the paused names and the
        due jobs no live worker handles. Unlike :meth:`stats`, it never reads every job: a
        few index reads, each of at most 10,000 jobs of an active status (or due), or the
        newest 100,000 of a finished status (``capped`` says which counts stopped there). Cheap
        enough for a page that refreshes every few seconds over millions of jobs."""
        return await run_async(read_activity(minutes), self._need_store())

    async def live_workers(self) -> list[WorkerInfo]:
        """The workers running now, in every process on this store (each registers itself
        every few seconds while it runs), oldest start first."""
        return await run_async(list_live_workers(), self._need_store())


def _far_future() -> datetime:
    return datetime.max.replace(tzinfo=timezone.utc)
