"""The blocking job store behind :mod:`mongo_job_scheduler.sync`, on PyMongo's sync client: the
:class:`~.base.SyncJobStore` contract on MongoDB.

It reads and writes the same documents, side collections and indexes as the asyncio
:class:`~mongo_job_scheduler.stores.mongo.MongoJobStore`: every filter and update comes from
:mod:`._mongo_common`, and dedupe follows the same procedure from
:mod:`mongo_job_scheduler._dedupe`. So jobs produced here are run by async workers and jobs
produced there are administered here. Only the producer and admin operations exist: running
jobs (claims, leases, outcomes, worker registrations) is the async scheduler's business; the
operator calls read and write the side collections of paused names and worker registrations
the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from .._clock import ServerClock
from .._dedupe import Procedure, insert_jobs, reserve_key
from .._documents import JobQuery, NewJob
from .._durations import utcnow
from .._errors import ConfigurationError
from ..job import ACTIVE_STATUSES
from . import _mongo_common as q

__all__ = ["MongoJobStore"]

Doc = dict[str, Any]
T = TypeVar("T")


class MongoJobStore:
    """Jobs in one MongoDB collection (default ``scheduler_jobs``) of a sync pymongo
    ``Database``, with the side collections ``<collection>_dedupe`` (the dedupe registry),
    ``_paused`` (paused names), ``_deps`` (the edges of jobs that wait for others) and
    ``_workers`` (registrations of running async workers, read only here) beside it.

    The layout is the asyncio ``MongoJobStore``'s: point both at the same database and
    collection to produce jobs from blocking code and run them with async workers. Indexes are
    created on the first write. Safe to share between threads.
    """

    def __init__(self, database: Database[Any], collection: str = q.DEFAULT_COLLECTION) -> None:
        if not isinstance(database, Database):
            raise ConfigurationError(
                "database",
                "mongo_job_scheduler.sync.MongoJobStore needs a pymongo Database "
                "(MongoClient(...)['name']); for an AsyncDatabase use "
                "mongo_job_scheduler.MongoJobStore",
            )
        if not isinstance(collection, str) or not collection or "$" in collection:
            raise ConfigurationError("collection", f"invalid collection name {collection!r}")
        self.database = database
        self.collection_name = collection
        options = q.CODEC_OPTIONS
        self.jobs: Collection[Doc] = database.get_collection(collection, codec_options=options)
        dedupe, _slots = q.side_collection_names(collection)
        self.dedupe: Collection[Doc] = database.get_collection(dedupe, codec_options=options)
        self.paused: Collection[Doc] = database.get_collection(
            q.paused_collection_name(collection), codec_options=options
        )
        self.workers: Collection[Doc] = database.get_collection(
            q.workers_collection_name(collection), codec_options=options
        )
        self.deps: Collection[Doc] = database.get_collection(
            q.deps_collection_name(collection), codec_options=options
        )
        self._clock = ServerClock()
        self._ready = False
        self._setup_lock = threading.Lock()

    def setup(self) -> None:
        """Create the jobs collection's indexes (idempotent; the async store creates the same)."""
        if self._ready:
            return
        with self._setup_lock:
            if not self._ready:
                self.jobs.create_indexes(q.JOB_INDEXES)
                self._refresh_clock()
                self._ready = True

    def _refresh_clock(self) -> None:
        sent = utcnow()
        hello = self.database.client.admin.command("hello")
        self._clock.record(sent, hello, utcnow())

    def now(self) -> datetime:
        """The database server's clock (estimated from a measured offset)."""
        if self._clock.stale:
            self._refresh_clock()
        return self._clock.now()

    # -- producers --------------------------------------------------------------------------

    def insert(self, jobs: Sequence[NewJob], *, session: Any = None) -> list[tuple[Doc, bool]]:
        """Store new jobs, deduping by key; ``(document, created)`` per job, in order."""
        self.setup()
        return self._run_dedupe(insert_jobs(jobs, q.in_transaction(session)), session)

    def reserve_dedupe_key(self, key: str, job_id: Any) -> bool:
        """Register ``key`` for ``job_id`` (reviving a finished job); False if another job
        holds it."""
        return self._run_dedupe(reserve_key(key, job_id))

    def _run_dedupe(self, procedure: Procedure[T], session: Any = None) -> T:
        """Carry out a dedupe procedure on this store's collections, through ``session``."""
        result: Any = None
        while True:
            try:
                op = procedure.send(result)
            except StopIteration as done:
                value: T = done.value
                return value
            step = q.dedupe_step(op, self.jobs, self.dedupe, session, self.now, time.sleep)
            try:
                result = step.result(step.call())
            except DuplicateKeyError as exc:
                result = step.refused(exc)

    # -- reads ------------------------------------------------------------------------------

    def get(self, job_id: Any) -> Doc | None:
        """The document with this id, or ``None``."""
        return self.jobs.find_one({"_id": job_id})

    def find(self, query: JobQuery) -> list[Doc]:
        """Documents matching a validated ``get_jobs`` query."""
        cursor = (
            self.jobs.find(query.to_filter(), q.find_projection(query))
            .sort(q.find_sort(query))
            .skip(query.skip)
            .limit(query.limit)
        )
        return list(cursor)

    # -- admin ------------------------------------------------------------------------------

    def cancel(self, job_id: Any) -> tuple[Doc | None, bool]:
        """Cancel a pending or running job: ``(document after, changed)``; the document is
        ``None`` if the job does not exist."""
        doc = self.jobs.find_one_and_update(
            q.status_filter(job_id, ACTIVE_STATUSES),
            q.cancel_update(),
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return self.get(job_id), False
        self._perform(q.release_key(self.dedupe, doc))
        return doc, True

    def update(
        self,
        job_id: Any,
        *,
        expect_status: Sequence[str],
        set: Mapping[str, Any],
        unset: Sequence[str] = (),
    ) -> Doc | None:
        """Apply a user's change if the job's status is one of ``expect_status``; the document
        after, or ``None`` if it did not match."""
        return self.jobs.find_one_and_update(
            q.status_filter(job_id, expect_status),
            q.user_update(set, unset),
            return_document=ReturnDocument.AFTER,
        )

    def delete(self, job_id: Any, statuses: Sequence[str]) -> Doc | None:
        """Delete the job if its status is one of ``statuses``: the deleted document, or
        ``None`` (see :meth:`~.base.JobStore.delete`)."""
        deleted: Doc | None = self._perform(
            q.delete_job(self.jobs, self.dedupe, self.deps, job_id, statuses)
        )
        return deleted

    def delete_finished(self, before: datetime, statuses: Sequence[str]) -> int:
        """Delete jobs in one of ``statuses`` (terminal ones) last updated before ``before``;
        returns how many were deleted."""
        return int(self.jobs.delete_many(q.finished_before_filter(before, statuses)).deleted_count)

    def pause(self, name: str) -> bool:
        """Stop workers everywhere from claiming jobs of ``name``; ``False`` if it was paused
        already."""
        flt, update = q.pause_upsert(name, self.now())
        return self.paused.update_one(flt, update, upsert=True).upserted_id is not None

    def resume(self, name: str) -> bool:
        """Let workers claim jobs of ``name`` again; ``False`` if it was not paused."""
        return bool(self.paused.delete_one({"_id": name}).deleted_count)

    def paused_names(self) -> list[str]:
        """The paused job names, sorted."""
        return q.sorted_names(self.paused.find({}, q.NAME_ONLY))

    # -- operator reads ---------------------------------------------------------------------

    def stats(self, now: datetime) -> dict[str, Any]:
        """Counts by name and status, due jobs and the oldest one, failures in the last hour
        (see :meth:`~.base.JobStore.stats`)."""
        rows = self.jobs.aggregate(q.COUNT_BY_NAME_AND_STATUS)
        due = self.jobs.count_documents(q.due_filter(now))
        oldest = self.jobs.find_one(
            q.due_filter(now), q.OLDEST_DUE_PROJECTION, sort=q.OLDEST_DUE_SORT
        )
        failed = self.jobs.count_documents(q.failed_since_filter(now))
        return q.stats_counts(rows, due, oldest, failed)

    def finished_per_minute(self, since: datetime, limit: int) -> list[Doc]:
        """Finished jobs by minute and status (see :meth:`~.base.JobStore.finished_per_minute`)."""
        return q.minute_rows(self.jobs.aggregate(q.finished_per_minute_pipeline(since, limit)))

    def job_names(self, limit: int) -> list[str]:
        """The first ``limit`` distinct job names, sorted."""
        return [str(row["_id"]) for row in self.jobs.aggregate(q.job_names_pipeline(limit))]

    def activity(
        self, now: datetime, since: datetime, limit: int, active_limit: int
    ) -> dict[str, Any]:
        """Counts by name and status of active and recently finished jobs, and the due jobs
        by name, in bounded reads (see :meth:`~.base.JobStore.activity`)."""
        found: dict[str, Any] = self._perform(
            q.activity(self.jobs, now, since, limit, active_limit)
        )
        return found

    def due_by_name(self, now: datetime, head: int | None = None) -> dict[str, int]:
        """How many pending jobs are due by ``now``, by name (among the first ``head`` in the
        claim order if given)."""
        return q.due_counts(self.jobs.aggregate(q.due_by_name_pipeline(now, head)))

    def live_workers(self, since: datetime) -> list[Doc]:
        """The worker registrations seen at or after ``since``, oldest start first."""
        return list(self.workers.find(q.live_filter(since)).sort(q.LIVE_SORT))

    # -- jobs that wait for other jobs ----------------------------------------------------------

    def get_many(
        self,
        job_ids: Sequence[Any],
        projection: Mapping[str, Any] | None = None,
        *,
        session: Any = None,
    ) -> list[Doc]:
        """The documents with these ids that exist (any order), optionally projected."""
        found: list[Doc] = self._perform(q.get_many(self.jobs, job_ids, projection, session))
        return found

    def add_dependencies(
        self, job_id: Any, dependency_ids: Sequence[Any], *, session: Any = None
    ) -> None:
        """Open the edges of a new waiting job and mark its unfinished dependencies."""
        self._perform(q.add_dependencies(self.jobs, self.deps, job_id, dependency_ids, session))

    def reopen_dependencies(self, job_id: Any, dependency_ids: Sequence[Any]) -> None:
        """Open again the edges of a job that waits again (it was retried)."""
        self._perform(q.reopen_dependencies(self.jobs, self.deps, job_id, dependency_ids))

    def close_dependencies(self, dependency_ids: Sequence[Any]) -> list[tuple[Any, Any]]:
        """Close the edges on finished jobs; ``(dependant, dependency)`` per edge."""
        return list(self._perform(q.close_dependencies(self.deps, dependency_ids)))

    def has_open_dependencies(self, job_id: Any) -> bool:
        """Whether the job still waits for a dependency."""
        return bool(self._perform(q.has_open_dependencies(self.deps, job_id)))

    def release_waiting(self, job_id: Any) -> Doc | None:
        """A waiting job becomes pending; ``None`` if it was not waiting."""
        released: Doc | None = self._perform(q.release_waiting(self.jobs, job_id))
        return released

    def cancel_waiting(self, job_id: Any, fields: Mapping[str, Any]) -> Doc | None:
        """A waiting job is cancelled with ``fields``; ``None`` if it was not waiting."""
        cancelled: Doc | None = self._perform(
            q.cancel_waiting(self.jobs, self.dedupe, job_id, fields)
        )
        return cancelled

    def dependants_settled(self, dependency_ids: Sequence[Any]) -> None:
        """Record that finished jobs' dependants have all been looked at."""
        self._perform(q.dependants_settled(self.jobs, dependency_ids))

    def dependants(self, job_id: Any, limit: int) -> list[Any]:
        """The ids of (up to ``limit``) jobs that wait or waited for ``job_id``."""
        return list(self._perform(q.dependants(self.deps, job_id, limit)))

    @staticmethod
    def _perform(calls: q.Calls) -> Any:
        """Make the calls of a store operation written once in ``_mongo_common``."""
        result: Any = None
        while True:
            try:
                call = calls.send(result)
            except StopIteration as done:
                return done.value
            result = call()
