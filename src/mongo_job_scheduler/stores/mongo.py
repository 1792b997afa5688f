"""``MongoJobStore``: the job store on MongoDB, with PyMongo's native asyncio API."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from bson import ObjectId, encode
from pymongo import ReturnDocument, UpdateMany, UpdateOne, WriteConcern
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from .._clock import ServerClock
from .._dedupe import Procedure, insert_jobs, reserve_key
from .._documents import JobQuery, NewJob
from .._durations import as_aware_utc, utcnow
from .._errors import ConfigurationError
from ..job import ACTIVE_STATUSES
from ..rate_limit import RateLimit, rate_limit_for
from . import _mongo_common as q
from ._mongo_watch import watch_pending
from .base import (
    Announced,
    Claimed,
    ClaimResult,
    ClaimState,
    Fence,
    Finish,
    JobStore,
    Ownership,
    concurrency_limit,
    ownership_of,
    shows_release,
)

__all__ = ["MongoJobStore"]

Doc = dict[str, Any]
T = TypeVar("T")
logger = logging.getLogger("mongo_job_scheduler")

CLOCK_SAMPLES = 3
"""``hello`` round trips that measure the server's clock at setup (see ``ServerClock.record``)."""

PAUSED_REFRESH = 1.0
"""Seconds a worker may keep using its list of paused names before reading it again."""

EXPIRED_SCAN_EVERY = 1.0
"""Seconds between two looks for expired leases while due jobs keep every worker busy."""

LANES = 4
"""Under contention the head of the queue is shared out in LANES batches: a claim in lane k
skips k batches (see :meth:`MongoJobStore.claim`)."""

CONTENDED_FOR = 1.0
"""Seconds a store keeps claiming from its lane after it last lost a race."""

READ_BACK_MARGIN = timedelta(milliseconds=50)
"""A batch claim reads its jobs back unless each was last written at least this long before
the claim read it: a later write always stamps a later ``updatedAt`` then, so the claim can
tell the job is unchanged (the margin covers the error of the store's server-clock estimate)."""


class MongoJobStore(JobStore):
    """Jobs in one MongoDB collection (default ``scheduler_jobs``) of an ``AsyncDatabase``.

    Small side collections sit beside it, each keyed by ``_id``: ``<collection>_dedupe`` (one
    document per taken dedupe key), ``_slots`` (one per concurrency-limited name), ``_rates``
    (one rate-limit window per name), ``_paused`` (one per paused name), ``_deps`` (one edge per
    job a waiting job depends on) and ``_workers`` (one registration per running worker).
    Indexes are created by :meth:`setup`, which ``Scheduler.start()`` and the first
    ``schedule()`` call run.
    """

    def __init__(
        self, database: AsyncDatabase[Any], collection: str = q.DEFAULT_COLLECTION
    ) -> None:
        if not isinstance(database, AsyncDatabase):
            raise ConfigurationError(
                "database",
                "MongoJobStore needs a pymongo AsyncDatabase (AsyncMongoClient(...)['name']); "
                "for a sync pymongo Database use mongo_job_scheduler.sync.MongoJobStore",
            )
        if not isinstance(collection, str) or not collection or "$" in collection:
            raise ConfigurationError("collection", f"invalid collection name {collection!r}")
        self.database = database
        self.collection_name = collection
        options = q.CODEC_OPTIONS
        self.jobs: AsyncCollection[Doc] = database.get_collection(collection, codec_options=options)
        dedupe, slots = q.side_collection_names(collection)
        self.dedupe: AsyncCollection[Doc] = database.get_collection(dedupe, codec_options=options)
        self.slots: AsyncCollection[Doc] = database.get_collection(slots, codec_options=options)
        self.paused: AsyncCollection[Doc] = database.get_collection(
            q.paused_collection_name(collection), codec_options=options
        )
        self._paused_cache: tuple[float, list[str]] | None = None
        self.rates: AsyncCollection[Doc] = database.get_collection(
            q.rates_collection_name(collection), codec_options=options
        )
        self.workers: AsyncCollection[Doc] = database.get_collection(
            q.workers_collection_name(collection), codec_options=options
        )
        self.deps: AsyncCollection[Doc] = database.get_collection(
            q.deps_collection_name(collection), codec_options=options
        )
        self._registrations = self.workers.with_options(write_concern=WriteConcern(w=1))
        self._clock = ServerClock()
        self._clock_task: asyncio.Task[None] | None = None
        self._ready = False
        self._setup_lock = asyncio.Lock()

    async def setup(self) -> None:
        if self._ready:
            return
        async with self._setup_lock:
            if not self._ready:
                await self.jobs.create_indexes(q.JOB_INDEXES)
                await self.workers.create_indexes(q.WORKER_INDEXES)
                await self.deps.create_indexes(q.DEPS_INDEXES)
                for _ in range(CLOCK_SAMPLES):  # the one with the shortest round trip counts
                    await self._refresh_clock()
                self._ready = True

    async def _refresh_clock(self) -> None:
        sent = utcnow()
        hello = await self.database.client.admin.command("hello")
        self._clock.record(sent, hello, utcnow())

    async def now(self) -> datetime:
        if self._clock.stale:
            await self._refresh_clock()
        return self._clock.now()

    def clock(self) -> datetime:
        return self._clock.now()

    # -- producers --------------------------------------------------------------------------

    async def insert(
        self, jobs: Sequence[NewJob], *, session: Any = None
    ) -> list[tuple[Doc, bool]]:
        await self.setup()
        return await self._run_dedupe(insert_jobs(jobs, q.in_transaction(session)), session)

    async def reserve_dedupe_key(self, key: str, job_id: Any) -> bool:
        return await self._run_dedupe(reserve_key(key, job_id))

    async def _run_dedupe(self, procedure: Procedure[T], session: Any = None) -> T:
        """Carry out a dedupe procedure on this store's collections, through ``session``."""
        result: Any = None
        while True:
            try:
                op = procedure.send(result)
            except StopIteration as done:
                value: T = done.value
                return value
            step = q.dedupe_step(op, self.jobs, self.dedupe, session, self.now, asyncio.sleep)
            try:
                result = step.result(await step.call())
            except DuplicateKeyError as exc:
                result = step.refused(exc)

    # -- reads ------------------------------------------------------------------------------

    async def get(self, job_id: Any) -> Doc | None:
        return await self.jobs.find_one({"_id": job_id})

    async def find(self, query: JobQuery) -> list[Doc]:
        cursor = (
            self.jobs.find(query.to_filter(), q.find_projection(query))
            .sort(q.find_sort(query))
            .skip(query.skip)
            .limit(query.limit)
        )
        found: list[Doc] = await cursor.to_list()
        return found

    # -- workers ----------------------------------------------------------------------------

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
        await self.setup()
        state = ClaimState() if state is None else state
        # No round trip before the first query: the clock estimate and the paused names are
        # refreshed beside it when they are old (an idle worker woken after a long sleep
        # claims in two round trips: the candidates, then the claim write).
        now = self._estimate()
        cached = self._cached_paused()
        refresh: asyncio.Task[list[str]] | None = None
        if cached is None:
            saturated = await self._paused_now()
        else:
            saturated, stale = cached
            if stale:
                refresh = asyncio.create_task(self._read_paused())
        held_back = bool(saturated)  # paused names: a resume elsewhere notifies nobody
        claimed: list[Claimed] = []
        contended = in_contention(state, time.monotonic())
        state.lost_races = False
        while True:  # each blocked round saturates a new name, so this ends without a cap
            want = limit - len(claimed)
            # Under contention, take the batch at this store's lane of the queue's head (lane
            # k skips k batches), so competing workers spread over the head instead of all
            # racing for its first jobs; from the head itself when the queue is shorter.
            size = want + 4
            skip = state.lane * size if contended else 0
            due = q.due_filter(now, saturated, names)
            # Expired leases are looked for when there is spare capacity, and at least every
            # EXPIRED_SCAN_EVERY seconds under constant load (then beside the candidates).
            expired: list[Doc] | None = None
            if time.monotonic() >= state.next_expired_scan:
                state.next_expired_scan = time.monotonic() + EXPIRED_SCAN_EVERY
                candidates, expired = await asyncio.gather(
                    self._candidates(due, skip, size), self._expired(now, saturated, names, want)
                )
            else:
                candidates = await self._candidates(due, skip, size)
            if skip and len(candidates) < size:
                candidates = await self._candidates(due, 0, size)
            drained = len(candidates) < size
            if expired is None and drained:
                state.next_expired_scan = time.monotonic() + EXPIRED_SCAN_EVERY
                expired = await self._expired(now, saturated, names, want)
            if expired:
                candidates = sorted(candidates + expired, key=q.claim_order_key)
            if refresh is not None:
                # Names paused since the cached list are skipped now; jobs of names resumed
                # since were not read: the claim says it held jobs back (poll soon).
                fresh = await refresh
                refresh = None
                held_back = held_back or bool(fresh)
                saturated += [name for name in fresh if name not in saturated]
            blocked = False
            batch: list[Doc] = []  # jobs without a concurrency limit: claimed together
            for candidate in candidates:
                if len(claimed) + len(batch) >= limit:
                    break
                if candidate["name"] in saturated:
                    continue
                rate = rate_limit_for(candidate, rate_limits)
                if not candidate.get("concurrency") and rate is None:
                    batch.append(candidate)
                    continue
                result = await self._claim_one(
                    candidate, owner, lease, max_lease_expiries, state, rate
                )
                if result is None:
                    blocked = held_back = True
                    saturated.append(candidate["name"])
                else:
                    claimed.append(result)
            if batch:
                claimed += await self._claim_batch(
                    batch, owner, lease, max_lease_expiries, now, state
                )
            if len(claimed) >= limit or not blocked:
                break
        claimed.sort(key=lambda c: q.claim_order_key(c.document))
        return ClaimResult(claimed, state.lost_races, held_back, drained)

    async def claim_announced(
        self,
        owner: str,
        announced: Announced,
        lease: timedelta,
        max_lease_expiries: int,
        names: Sequence[str] | None = None,
        rate_limits: Mapping[str, RateLimit] | None = None,
    ) -> Claimed | None:
        # Like claim(): the cached paused names decide at once, and an old cache is read
        # again beside the claim; a job whose name turns out paused is given straight back.
        name = announced.name
        cached = self._cached_paused()
        if cached is None or name in cached[0]:
            return None
        if (names is not None and name not in names) or (rate_limits and name in rate_limits):
            return None
        refresh: asyncio.Task[list[str]] | None = None
        if cached[1]:
            refresh = asyncio.create_task(self._read_paused())
        try:
            doc = await self.jobs.find_one_and_update(
                q.announced_filter(announced),
                q.claim_update(owner, lease),
                return_document=ReturnDocument.AFTER,
            )
        finally:
            fresh = await _outcome_of(refresh)
        if doc is None:
            return None
        claimed = Claimed.taken(doc, max_lease_expiries)
        if refresh is not None and (fresh is None or name in fresh):
            await self.release(Fence(claimed.job_id, owner, claimed.token, None))
            return None
        return claimed

    def _estimate(self) -> datetime:
        """The clock estimate without a round trip; a stale one is measured again beside."""
        if self._clock.stale and (self._clock_task is None or self._clock_task.done()):
            self._clock_task = asyncio.create_task(self._refresh_clock_quietly())
        return self._clock.now()

    async def _refresh_clock_quietly(self) -> None:
        try:
            await self._refresh_clock()
        except PyMongoError as exc:  # the next claim or now() tries again
            logger.debug("could not measure the server clock: %r", exc)

    async def _expired(
        self, now: datetime, saturated: Sequence[str], names: Sequence[str] | None, want: int
    ) -> list[Doc]:
        """Running jobs whose lease expired, oldest lease first (projected)."""
        found: list[Doc] = await (
            self.jobs.find(q.expired_filter(now, saturated, names), q.CANDIDATE_PROJECTION)
            .sort("lockUntil", 1)
            .limit(want)
            .to_list()
        )
        return found

    async def _candidates(self, flt: Doc, skip: int, limit: int) -> list[Doc]:
        """Claimable-looking jobs in claim order: ``limit`` of them after the first ``skip``,
        whole (a batch claim that takes them all unchanged need not read them again)."""
        cursor = self.jobs.find(flt).sort(q.CLAIM_SORT)
        if skip:
            cursor = cursor.skip(skip)
        found: list[Doc] = await cursor.limit(limit).batch_size(limit).to_list()
        return found

    async def next_due(
        self, names: Sequence[str] | None, within: timedelta, since: datetime | None = None
    ) -> float | None:
        now = await self.now()
        after = now if since is None else min(as_aware_utc(since), now)
        paused = await self._paused_now()
        upcoming = q.upcoming_filter(after, now + within, paused, names)
        expiring = q.expiring_filter(after, now + within, paused, names)
        moments: list[datetime] = []
        for flt, field in ((upcoming, "nextRunAt"), (expiring, "lockUntil")):
            found = await (
                self.jobs.find(flt, {"_id": 0, field: 1}).sort(field, 1).limit(1).to_list()
            )
            moments += [as_aware_utc(doc[field]) for doc in found]
        if not moments:
            return None
        return max((min(moments) - now).total_seconds(), 0.0)

    async def _claim_batch(
        self,
        candidates: list[Doc],
        owner: str,
        lease: timedelta,
        max_lease_expiries: int,
        read_at: datetime,
        state: ClaimState,
    ) -> list[Claimed]:
        """Claim several jobs: one ``update_many`` takes those still claimable (each document
        atomically) and marks them with a fresh ``claimId``.

        ``read_at`` (the server time just before the candidates were read) allows the quick
        path: if every candidate is pending (so read whole: lease-expired candidates are
        running, and read with ``CANDIDATE_PROJECTION``) and was last written at least
        READ_BACK_MARGIN before ``read_at``, the update takes only documents still as they
        were read, and the claimed documents are the candidates it took with the claim's
        fields applied (:func:`~._mongo_common.claimed_as_read`); only when it took fewer than
        all does one ``find`` ask which (their ids). Otherwise one ``find`` reads back the
        marked documents as they are now, so a change that landed after the candidates were
        read is in them."""
        if len(candidates) == 1:
            one = await self._claim_one(candidates[0], owner, lease, max_lease_expiries, state)
            return [] if one is None else [one]
        claim_id = ObjectId()
        ids = [c["_id"] for c in candidates]
        flt = q.claim_many_filter(ids)
        quick = all(
            c.get("status") == "pending"
            and isinstance(written := c.get("updatedAt"), datetime)
            and written < read_at - READ_BACK_MARGIN
            for c in candidates
        )
        if quick:
            flt = q.unchanged_filter(flt, candidates)
        result = await self.jobs.update_many(flt, q.claim_update(owner, lease, claim_id))
        if result.modified_count < len(ids):
            state.lost_races = True
        if not result.modified_count:
            return []
        taken = {"_id": {"$in": ids}, "claimId": claim_id}
        if quick:
            if result.modified_count < len(ids):  # which ones: every one taken is as read
                found = await self.jobs.find(taken, {"_id": 1}).to_list()
                mine = {doc["_id"] for doc in found}
                candidates = [c for c in candidates if c["_id"] in mine]
            docs = [q.claimed_as_read(c, owner, lease, claim_id, read_at) for c in candidates]
        else:
            docs = await self.jobs.find(taken).to_list()
        return [Claimed.taken(doc, max_lease_expiries) for doc in docs]

    async def _claim_one(
        self,
        candidate: Doc,
        owner: str,
        lease: timedelta,
        max_lease_expiries: int,
        state: ClaimState,
        rate: RateLimit | None = None,
    ) -> Claimed | None:
        """Claim one job: first its concurrency slot and its rate-limit start, if it has
        them, then the job itself; if the job was taken meanwhile, give both back."""
        job_id = candidate["_id"]
        limit = concurrency_limit(candidate)
        if limit is not None:
            slots_doc = await self.slots.find_one_and_update(
                {"_id": candidate["name"]},
                q.slot_acquire_update(job_id, owner, limit, lease),
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            holders = (slots_doc or {}).get("holders", [])
            if not any(h.get("job") == job_id and h.get("owner") == owner for h in holders):
                return None
        start_id = None
        if rate is not None:
            start_id = ObjectId()
            rates_doc = await self.rates.find_one_and_update(
                {"_id": candidate["name"]},
                q.rate_acquire_update(start_id, rate.limit, rate.period_ms),
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            if not any(s.get("id") == start_id for s in (rates_doc or {}).get("starts", [])):
                if limit is not None:
                    await self.free_slot(Fence(job_id, owner, 0, candidate["name"]))
                return None
        doc = await self.jobs.find_one_and_update(
            q.claim_filter(job_id),
            q.claim_update(owner, lease),
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:  # another worker took it first
            state.lost_races = True
            if limit is not None:
                await self.free_slot(Fence(job_id, owner, 0, candidate["name"]))
            if start_id is not None:
                await self.rates.update_one(
                    {"_id": candidate["name"]}, {"$pull": {"starts": {"id": start_id}}}
                )
            return None
        return Claimed.taken(doc, max_lease_expiries)

    async def renew(self, fences: Sequence[Fence], lease: timedelta) -> set[Any]:
        if not fences:
            return set()
        result = await self.jobs.update_many(q.renew_filter(fences), q.renew_update(lease))
        lost: set[Any] = set()
        if result.matched_count < len(fences):
            owned = await self.jobs.find(
                {
                    "_id": {"$in": [f.job_id for f in fences]},
                    "status": "running",
                    "lockedBy": fences[0].owner,
                },
                {"lockVersion": 1},
            ).to_list()
            tokens = {d["_id"]: d.get("lockVersion") for d in owned}
            lost = {f.job_id for f in fences if tokens.get(f.job_id) != f.token}
        by_name: dict[str, list[Fence]] = {}
        for fence in fences:
            if fence.slot_name is not None and fence.job_id not in lost:
                by_name.setdefault(fence.slot_name, []).append(fence)
        for name, group in by_name.items():
            await self.slots.update_one({"_id": name}, q.slot_renew_update(group, lease))
        return lost

    async def record_progress(self, items: Sequence[tuple[Fence, dict[str, Any]]]) -> None:
        if items:
            await self.jobs.bulk_write(
                [UpdateOne(q.fence_filter(f), {"$set": {"progress": p}}) for f, p in items],
                ordered=False,
            )

    async def free_slot(self, fence: Fence) -> None:
        if fence.slot_name is not None:
            await self.slots.update_one(
                {"_id": fence.slot_name},
                {"$pull": {"holders": {"job": fence.job_id, "owner": fence.owner}}},
            )

    async def finish(self, fence: Fence, finish: Finish) -> bool:
        result = await self.jobs.update_one(
            q.fence_filter(fence, finish.expect),
            q.finish_update(finish.set, finish.unset, finish.attempt),
        )
        await self.free_slot(fence)
        if result.matched_count and finish.release_dedupe_key is not None:
            await self.dedupe.delete_one({"_id": finish.release_dedupe_key, "jobId": fence.job_id})
        return bool(result.matched_count)

    async def finish_many(self, items: Sequence[tuple[Fence, Finish]]) -> list[bool]:
        if len(items) == 1:
            fence, finish = items[0]
            if await self.finish(fence, finish):
                return [True]
            return [await self._shows_outcome(fence, finish)]
        result = await self.jobs.bulk_write(_grouped_finishes(items), ordered=False)
        if result.matched_count == len(items):
            applied = [True] * len(items)
        else:  # some were refused (or applied by an earlier try): read back which
            docs = await self.jobs.find(
                {"_id": {"$in": [f.job_id for f, _ in items]}}, q.OUTCOME_PROJECTION
            ).to_list()
            by_id = {d["_id"]: d for d in docs}
            applied = [q.shows_outcome(by_id.get(f.job_id), f, fin) for f, fin in items]
        by_name: dict[str, list[Any]] = {}
        for fence, _ in items:
            if fence.slot_name is not None:
                by_name.setdefault(fence.slot_name, []).append(fence.job_id)
        owner = items[0][0].owner
        for name, ids in by_name.items():
            await self.slots.update_one(
                {"_id": name}, {"$pull": {"holders": {"owner": owner, "job": {"$in": ids}}}}
            )
        released = [
            {"_id": fin.release_dedupe_key, "jobId": f.job_id}
            for (f, fin), ok in zip(items, applied, strict=True)
            if ok and fin.release_dedupe_key is not None
        ]
        if released:
            await self.dedupe.delete_many({"$or": released})
        return applied

    async def _shows_outcome(self, fence: Fence, finish: Finish) -> bool:
        doc = await self.jobs.find_one({"_id": fence.job_id}, q.OUTCOME_PROJECTION)
        return q.shows_outcome(doc, fence, finish)

    async def watch(
        self,
        notify: Callable[..., None],
        ready: Callable[[], None] | None = None,
        health: Callable[[bool], None] | None = None,
    ) -> bool:
        """Follow a change stream of jobs becoming pending (replica sets and sharded clusters)
        until cancelled: one stream per process for every store on this client and collection
        (:mod:`._mongo_watch`), reopened from its resume token after errors and stalls; return
        ``False`` at once on a standalone server."""
        return await watch_pending(self.jobs, self._clock, notify, ready, health)

    async def release(self, fence: Fence) -> bool:
        result = await self.jobs.update_one(q.fence_filter(fence), q.release_update())
        await self.free_slot(fence)
        if result.matched_count:
            return True
        # Refused: released already, if an earlier try was applied before its reply was lost.
        doc = await self.jobs.find_one({"_id": fence.job_id}, q.OUTCOME_PROJECTION)
        return shows_release(doc, fence)

    async def ownership(self, fence: Fence) -> Ownership:
        doc = await self.jobs.find_one({"_id": fence.job_id}, q.OWNERSHIP_PROJECTION)
        return ownership_of(doc, fence)

    def is_transient(self, exc: BaseException) -> bool:
        return q.is_transient(exc)

    # -- admin ------------------------------------------------------------------------------

    async def cancel(self, job_id: Any) -> tuple[Doc | None, bool]:
        doc = await self.jobs.find_one_and_update(
            q.status_filter(job_id, ACTIVE_STATUSES),
            q.cancel_update(),
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            return await self.get(job_id), False
        await self._perform(q.release_key(self.dedupe, doc))
        return doc, True

    async def delete(self, job_id: Any, statuses: Sequence[str]) -> Doc | None:
        deleted: Doc | None = await self._perform(
            q.delete_job(self.jobs, self.dedupe, self.deps, job_id, statuses)
        )
        return deleted

    async def delete_finished(self, before: datetime, statuses: Sequence[str]) -> int:
        result = await self.jobs.delete_many(q.finished_before_filter(before, statuses))
        return int(result.deleted_count)

    async def pause(self, name: str) -> bool:
        flt, update = q.pause_upsert(name, await self.now())
        result = await self.paused.update_one(flt, update, upsert=True)
        self._paused_cache = None
        return result.upserted_id is not None

    async def resume(self, name: str) -> bool:
        result = await self.paused.delete_one({"_id": name})
        self._paused_cache = None
        return bool(result.deleted_count)

    async def paused_names(self) -> list[str]:
        return q.sorted_names(await self.paused.find({}, q.NAME_ONLY).to_list())

    async def _paused_now(self) -> list[str]:
        """Paused names for a claim, read at most every PAUSED_REFRESH seconds (a pause made
        in another process takes effect within that time; one made here, at once)."""
        cached = self._cached_paused()
        if cached is None or cached[1]:
            return await self._read_paused()
        return cached[0]

    def _cached_paused(self) -> tuple[list[str], bool] | None:
        """The paused names as last read (a copy), and whether that read is older than
        PAUSED_REFRESH; ``None`` before the first read."""
        cached = self._paused_cache
        if cached is None:
            return None
        return list(cached[1]), time.monotonic() - cached[0] > PAUSED_REFRESH

    async def _read_paused(self) -> list[str]:
        names = await self.paused_names()
        self._paused_cache = (time.monotonic(), names)
        return list(names)

    # -- jobs that wait for other jobs -------------------------------------------------------

    async def get_many(
        self,
        job_ids: Sequence[Any],
        projection: Mapping[str, Any] | None = None,
        *,
        session: Any = None,
    ) -> list[Doc]:
        found: list[Doc] = await self._perform(q.get_many(self.jobs, job_ids, projection, session))
        return found

    async def add_dependencies(
        self, job_id: Any, dependency_ids: Sequence[Any], *, session: Any = None
    ) -> None:
        await self._perform(
            q.add_dependencies(self.jobs, self.deps, job_id, dependency_ids, session)
        )

    async def reopen_dependencies(self, job_id: Any, dependency_ids: Sequence[Any]) -> None:
        await self._perform(q.reopen_dependencies(self.jobs, self.deps, job_id, dependency_ids))

    async def close_dependencies(self, dependency_ids: Sequence[Any]) -> list[tuple[Any, Any]]:
        return list(await self._perform(q.close_dependencies(self.deps, dependency_ids)))

    async def has_open_dependencies(self, job_id: Any) -> bool:
        return bool(await self._perform(q.has_open_dependencies(self.deps, job_id)))

    async def release_waiting(self, job_id: Any) -> Doc | None:
        released: Doc | None = await self._perform(q.release_waiting(self.jobs, job_id))
        return released

    async def cancel_waiting(self, job_id: Any, fields: Mapping[str, Any]) -> Doc | None:
        cancelled: Doc | None = await self._perform(
            q.cancel_waiting(self.jobs, self.dedupe, job_id, fields)
        )
        return cancelled

    async def dependants_settled(self, dependency_ids: Sequence[Any]) -> None:
        await self._perform(q.dependants_settled(self.jobs, dependency_ids))

    async def unsettled(self, before: datetime, limit: int) -> list[Doc]:
        found: list[Doc] = await (
            self.jobs.find(q.unsettled_filter(before), {"status": 1, "name": 1})
            .limit(limit)
            .to_list()
        )
        return found

    async def dependants(self, job_id: Any, limit: int) -> list[Any]:
        return list(await self._perform(q.dependants(self.deps, job_id, limit)))

    async def _perform(self, calls: q.Calls) -> Any:
        """Make the calls of a store operation written once in ``_mongo_common``."""
        result: Any = None
        while True:
            try:
                call = calls.send(result)
            except StopIteration as done:
                return done.value
            result = await call()

    async def due_by_name(self, now: datetime, head: int | None = None) -> dict[str, int]:
        rows = await (await self.jobs.aggregate(q.due_by_name_pipeline(now, head))).to_list()
        return q.due_counts(rows)

    async def register_worker(self, worker_id: str, fields: Mapping[str, Any]) -> None:
        # Acknowledged by the primary alone: a registration lost in a failover is written
        # again within REGISTER_EVERY, and the journal flush that majority asks for costs the
        # server more than the write itself, once per idle process every REGISTER_EVERY.
        await self._registrations.update_one(
            {"_id": worker_id},
            {"$set": dict(fields), "$currentDate": {"lastSeen": True}},
            upsert=True,
        )

    async def unregister_worker(self, worker_id: str) -> None:
        await self.workers.delete_one({"_id": worker_id})

    async def live_worker_count(self, since: datetime) -> int:
        return int(await self.workers.count_documents({"lastSeen": {"$gte": since}}))

    async def live_workers(self, since: datetime) -> list[Doc]:
        found: list[Doc] = await self.workers.find(q.live_filter(since)).sort(q.LIVE_SORT).to_list()
        return found

    async def stats(self, now: datetime) -> dict[str, Any]:
        rows = await (await self.jobs.aggregate(q.COUNT_BY_NAME_AND_STATUS)).to_list()
        due = await self.jobs.count_documents(q.due_filter(now))
        oldest = await self.jobs.find_one(
            q.due_filter(now), q.OLDEST_DUE_PROJECTION, sort=q.OLDEST_DUE_SORT
        )
        failed = await self.jobs.count_documents(q.failed_since_filter(now))
        return q.stats_counts(rows, due, oldest, failed)

    async def finished_per_minute(self, since: datetime, limit: int) -> list[Doc]:
        pipeline = q.finished_per_minute_pipeline(since, limit)
        return q.minute_rows(await (await self.jobs.aggregate(pipeline)).to_list())

    async def job_names(self, limit: int) -> list[str]:
        rows = await (await self.jobs.aggregate(q.job_names_pipeline(limit))).to_list()
        return [str(row["_id"]) for row in rows]

    async def activity(
        self, now: datetime, since: datetime, limit: int, active_limit: int
    ) -> dict[str, Any]:
        found: dict[str, Any] = await self._perform(
            q.activity(self.jobs, now, since, limit, active_limit)
        )
        return found

    async def update(
        self,
        job_id: Any,
        *,
        expect_status: Sequence[str],
        set: Mapping[str, Any],
        unset: Sequence[str] = (),
    ) -> Doc | None:
        return await self.jobs.find_one_and_update(
            q.status_filter(job_id, expect_status),
            q.user_update(set, unset),
            return_document=ReturnDocument.AFTER,
        )


def _grouped_finishes(items: Sequence[tuple[Fence, Finish]]) -> list[UpdateOne | UpdateMany]:
    """The writes of a batch of outcomes: outcomes that are identical and whose fences share
    the owner and the token go out as one ``update_many`` over their ids (still exact: each
    document must match its ``_id``, owner and token), the others one ``update_one`` each. A
    burn-down of plain jobs acknowledges a whole batch in one statement."""
    groups: dict[tuple[bytes, str, int], list[int]] = {}
    for index, (fence, finish) in enumerate(items):
        attempt = None if finish.attempt is None else finish.attempt.fields()
        outcome = {"s": finish.set, "u": list(finish.unset), "e": dict(finish.expect or {})}
        shape = encode({**outcome, "a": attempt})
        groups.setdefault((shape, fence.owner, fence.token), []).append(index)
    writes: list[UpdateOne | UpdateMany] = []
    for members in groups.values():
        fence, finish = items[members[0]]
        update = q.finish_update(finish.set, finish.unset, finish.attempt)
        if len(members) == 1:
            writes.append(UpdateOne(q.fence_filter(fence, finish.expect), update))
        else:
            ids = [items[i][0].job_id for i in members]
            writes.append(UpdateMany(q.fences_filter(ids, fence, finish.expect), update))
    return writes


def in_contention(
    state: ClaimState, now: float, choose: Callable[[list[int]], int] | None = None
) -> bool:
    """Whether a worker's next claim takes its batch from its lane of the queue's head rather
    than the head itself (it lost a race within CONTENDED_FOR), after moving lanes if its last
    claim lost races. Other workers took jobs it had chosen: it moves to another lane, so
    competing processes settle on different lanes; a worker away from the head (lane 0) for
    CONTENDED_FOR goes back to it, so the first jobs of the queue never wait much longer than
    that while every worker sits in other lanes. ``now`` is ``time.monotonic()``."""
    if state.lost_races:
        if state.lane and now - state.left_head_at >= CONTENDED_FOR:
            state.lane = 0
        else:
            if not state.lane:
                state.left_head_at = now
            others = [lane for lane in range(LANES) if lane != state.lane]
            state.lane = (choose or random.choice)(others)
        state.contended_until = now + CONTENDED_FOR
    if now < state.contended_until:
        return True
    state.lane = 0  # the next contention starts from the head
    return False


async def _outcome_of(task: asyncio.Task[list[str]] | None) -> list[str] | None:
    """The paused names a refresh read, or ``None`` (no refresh, or it failed)."""
    if task is None:
        return None
    try:
        return await task
    except Exception:
        return None
