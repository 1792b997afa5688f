"""``InMemoryJobStore``: the whole contract in one process's memory, for tests and demos.

Every operation runs without awaiting in between, so on one event loop each is atomic, which
gives the same semantics as the MongoDB store (one contract suite checks both).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from .._dedupe import DedupeDecision, decide_dedupe, released_on_finish
from .._documents import JobQuery, NewJob
from .._durations import utcnow
from .._history import Ending, appended, entry
from .._workflows import DEPENDANTS_OPEN, DEPENDANTS_SETTLED, FINISHED
from ..job import ACTIVE_STATUSES, AttemptOutcome
from ..rate_limit import RateLimit, rate_limit_for
from .base import (
    LOCK_FIELDS,
    Claimed,
    ClaimResult,
    ClaimState,
    Fence,
    Finish,
    JobStore,
    shows_release,
)

__all__ = ["InMemoryJobStore"]

LEASE_LOST = Ending(AttemptOutcome.LEASE_LOST)
STOPPED = Ending(AttemptOutcome.STOPPED)
CANCELLED = Ending(AttemptOutcome.CANCELLED)


def _record(doc: dict[str, Any], ending: Ending, ended_at: datetime) -> None:
    """Append the entry of the attempt ``doc`` is running to its ``history`` (before the write
    that ends it changes the lock fields)."""
    doc["history"] = appended(doc.get("history"), entry(doc, ending, ended_at))


def _sort_key(doc: Mapping[str, Any]) -> tuple[int, datetime, ObjectId]:
    return (int(doc.get("priority") or 5), doc["nextRunAt"], doc["_id"])


def _by_name(docs: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many of ``docs`` each name has."""
    counts: dict[str, int] = {}
    for doc in docs:
        counts[str(doc.get("name"))] = counts.get(str(doc.get("name")), 0) + 1
    return counts


_MISSING = object()


def _values_at(value: Any, parts: Sequence[str]) -> Iterator[Any]:
    """The values a MongoDB dotted path reaches (through arrays of documents, or an index)."""
    if not parts:
        yield value
    elif isinstance(value, Mapping):
        yield from _values_at(value[parts[0]], parts[1:]) if parts[0] in value else [_MISSING]
    elif isinstance(value, list):
        if parts[0].isdigit() and int(parts[0]) < len(value):
            yield from _values_at(value[int(parts[0])], parts[1:])
        for item in value:
            if isinstance(item, Mapping):
                yield from _values_at(item, parts)
    else:
        yield _MISSING


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):  # BSON booleans never equal numbers
        return type(a) is type(b) and a == b
    return bool(a == b)


def _data_matches(data: Any, key: str, value: Any) -> bool:
    """``{"data.<key>": value}`` as MongoDB evaluates it: equality, an array containing the
    value, and ``None`` matching a missing field."""
    for found in _values_at(data, key.split(".")):
        if found is _MISSING:
            if value is None:
                return True
        elif _equal(found, value) or (
            isinstance(found, list) and any(_equal(item, value) for item in found)
        ):
            return True
    return False


class InMemoryJobStore(JobStore):
    """A job store held in a dict. Not shared between processes; lost when the process ends."""

    def __init__(self) -> None:
        self._jobs: dict[ObjectId, dict[str, Any]] = {}
        self._dedupe: dict[str, tuple[ObjectId, datetime]] = {}
        self._slots: dict[str, dict[tuple[Any, str], datetime]] = {}
        self._paused: set[str] = set()
        self._rates: dict[str, list[datetime]] = {}
        self._workers: dict[str, dict[str, Any]] = {}
        self._edges: dict[tuple[Any, Any], bool] = {}  # (job, on) -> open

    async def setup(self) -> None:
        return None

    async def now(self) -> datetime:
        return utcnow()

    def clock(self) -> datetime:
        return utcnow()

    # -- producers --------------------------------------------------------------------------

    async def insert(
        self, jobs: Sequence[NewJob], *, session: Any = None
    ) -> list[tuple[dict[str, Any], bool]]:
        if session is not None:
            raise TypeError("InMemoryJobStore does not support sessions")
        now = utcnow()
        out: list[tuple[dict[str, Any], bool]] = []
        for new in jobs:
            key = new.dedupe_key
            if key is not None and key in self._dedupe:
                holder_id, registered = self._dedupe[key]
                holder = self._jobs.get(holder_id)
                decision = decide_dedupe(holder, registered, now, new.dedupe_scope)
                if decision is DedupeDecision.RETURN_EXISTING and holder is not None:
                    out.append((copy.deepcopy(holder), False))
                    continue
            doc = copy.deepcopy(new.document)
            if key is not None:
                self._dedupe[key] = (doc["_id"], now)
            self._jobs[doc["_id"]] = doc
            out.append((copy.deepcopy(doc), True))
        return out

    async def reserve_dedupe_key(self, key: str, job_id: Any) -> bool:
        entry = self._dedupe.get(key)
        if entry is not None and entry[0] != job_id:
            holder = self._jobs.get(entry[0])
            if decide_dedupe(holder, entry[1], utcnow(), "active") is not DedupeDecision.TAKE_OVER:
                return False
        self._dedupe[key] = (job_id, utcnow())
        return True

    # -- reads ------------------------------------------------------------------------------

    def _expire(self) -> None:
        """Delete jobs whose retention ran out (what MongoDB's TTL index does)."""
        now = utcnow()
        for job_id in [i for i, d in self._jobs.items() if d.get("expireAt", now) < now]:
            del self._jobs[job_id]

    async def get(self, job_id: Any) -> dict[str, Any] | None:
        self._expire()
        doc = self._jobs.get(job_id)
        return copy.deepcopy(doc) if doc is not None else None

    async def find(self, query: JobQuery) -> list[dict[str, Any]]:
        self._expire()

        def matches(doc: Mapping[str, Any]) -> bool:
            if query.name is not None and doc.get("name") != query.name:
                return False
            if query.statuses is not None and doc.get("status") not in query.statuses:
                return False
            if query.ids is not None and doc["_id"] not in query.ids:
                return False
            return all(_data_matches(doc.get("data"), k, v) for k, v in query.data.items())

        found = [d for d in self._jobs.values() if matches(d)]
        missing_last = query.sort_direction == 1
        fields = [name for name, _ in query.order()]

        def key(doc: Mapping[str, Any]) -> tuple[tuple[int, Any], ...]:
            return tuple(
                (1 if missing_last else -1, 0) if doc.get(name) is None else (0, doc[name])
                for name in fields
            )

        found.sort(key=key, reverse=query.sort_direction == -1)
        page = found[query.skip : query.skip + query.limit]
        return [copy.deepcopy(query.project(d)) for d in page]

    # -- workers ----------------------------------------------------------------------------

    def _take_slot(
        self, doc: Mapping[str, Any], owner: str, until: datetime, now: datetime
    ) -> bool:
        limit = doc.get("concurrency")
        if not isinstance(limit, int) or limit < 1:
            return True
        holders = self._slots.setdefault(doc["name"], {})
        for holder, expiry in list(holders.items()):
            if expiry <= now or holder == (doc["_id"], owner):
                del holders[holder]
        if len(holders) >= limit:
            return False
        holders[(doc["_id"], owner)] = until
        return True

    def _take_rate(self, doc: Mapping[str, Any], rate: RateLimit | None, now: datetime) -> bool:
        """Record a start of ``doc``'s name if its sliding window has room."""
        if rate is None:
            return True
        name = str(doc["name"])
        starts = [t for t in self._rates.get(name, []) if t > now - rate.period]
        self._rates[name] = starts
        if len(starts) >= rate.limit:
            return False
        starts.append(now)
        return True

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
        now = utcnow()
        due = [
            d
            for d in self._jobs.values()
            if (names is None or d.get("name") in names)
            and d.get("name") not in self._paused
            and (
                (d["status"] == "pending" and d["nextRunAt"] <= now)
                or (
                    d["status"] == "running"
                    and d.get("lockUntil") is not None
                    and d["lockUntil"] < now
                )
            )
        ]
        due.sort(key=_sort_key)
        claimed: list[Claimed] = []
        until = now + lease
        held_back = bool(self._paused)
        for doc in due:
            if len(claimed) >= limit:
                break
            if not self._take_slot(doc, owner, until, now):
                held_back = True
                continue
            if not self._take_rate(doc, rate_limit_for(doc, rate_limits), now):
                self._free_slot(Fence(doc["_id"], owner, 0, doc["name"]))
                held_back = True
                continue
            if doc["status"] == "running":
                doc["leaseExpiries"] = int(doc.get("leaseExpiries") or 0) + 1
                ran_out = doc.get("lockUntil")
                _record(doc, LEASE_LOST, ran_out if isinstance(ran_out, datetime) else now)
            doc.update(
                status="running",
                lockedBy=owner,
                lockedAt=now,
                lockUntil=until,
                lockVersion=int(doc.get("lockVersion") or 0) + 1,
                lastRunAt=now,
                updatedAt=now,
            )
            claimed.append(Claimed.taken(copy.deepcopy(doc), max_lease_expiries))
        return ClaimResult(claimed, held_back=held_back)  # atomic here: no races to lose

    async def next_due(
        self, names: Sequence[str] | None, within: timedelta, since: datetime | None = None
    ) -> float | None:
        now = utcnow()
        after = now if since is None else min(since, now)
        field = {"pending": "nextRunAt", "running": "lockUntil"}
        upcoming = [
            moment
            for d in self._jobs.values()
            if d["status"] in field
            and (moment := d.get(field[d["status"]])) is not None
            and after < moment <= now + within
            and (names is None or d.get("name") in names)
            and d.get("name") not in self._paused
        ]
        return max((min(upcoming) - now).total_seconds(), 0.0) if upcoming else None

    def _owned(self, fence: Fence) -> dict[str, Any] | None:
        doc = self._jobs.get(fence.job_id)
        if (
            doc is None
            or doc.get("status") != "running"
            or doc.get("lockedBy") != fence.owner
            or int(doc.get("lockVersion") or 0) != fence.token
        ):
            return None
        return doc

    async def renew(self, fences: Sequence[Fence], lease: timedelta) -> set[Any]:
        now = utcnow()
        lost: set[Any] = set()
        for fence in fences:
            doc = self._owned(fence)
            if doc is None:
                lost.add(fence.job_id)
                continue
            doc["lockUntil"] = now + lease
            if fence.slot_name is not None:
                holders = self._slots.get(fence.slot_name, {})
                if (fence.job_id, fence.owner) in holders:
                    holders[(fence.job_id, fence.owner)] = now + lease
        return lost

    async def record_progress(self, items: Sequence[tuple[Fence, dict[str, Any]]]) -> None:
        for fence, progress in items:
            doc = self._owned(fence)
            if doc is not None:
                doc["progress"] = copy.deepcopy(progress)

    async def free_slot(self, fence: Fence) -> None:
        self._free_slot(fence)

    def _free_slot(self, fence: Fence) -> None:
        if fence.slot_name is not None:
            self._slots.get(fence.slot_name, {}).pop((fence.job_id, fence.owner), None)

    async def finish(self, fence: Fence, finish: Finish) -> bool:
        doc = self._owned(fence)
        self._free_slot(fence)
        if doc is None:
            return False
        if finish.expect and any(doc.get(k) != v for k, v in finish.expect.items()):
            return False
        now = utcnow()
        if finish.attempt is not None:
            _record(doc, finish.attempt, now)
        for key in (*LOCK_FIELDS, *finish.unset):
            doc.pop(key, None)
        doc.update(copy.deepcopy(finish.set))
        doc["updatedAt"] = now
        released = finish.release_dedupe_key
        if released is not None and self._dedupe.get(released, (None,))[0] == fence.job_id:
            del self._dedupe[released]
        return True

    async def release(self, fence: Fence) -> bool:
        doc = self._owned(fence)
        self._free_slot(fence)
        if doc is None:
            return shows_release(self._jobs.get(fence.job_id), fence)
        now = utcnow()
        _record(doc, STOPPED, now)
        for key in LOCK_FIELDS:
            doc.pop(key, None)
        doc.update(status="pending", nextRunAt=min(doc["nextRunAt"], now), updatedAt=now)
        return True

    # -- admin ------------------------------------------------------------------------------

    async def cancel(self, job_id: Any) -> tuple[dict[str, Any] | None, bool]:
        doc = self._jobs.get(job_id)
        if doc is None:
            return None, False
        if doc["status"] not in ACTIVE_STATUSES:
            return copy.deepcopy(doc), False
        now = utcnow()
        if doc["status"] == "running":
            _record(doc, CANCELLED, now)
        for key in LOCK_FIELDS:
            doc.pop(key, None)
        doc.update(status="cancelled", updatedAt=now)
        self._release_key(doc)
        return copy.deepcopy(doc), True

    def _release_key(self, doc: Mapping[str, Any]) -> None:
        """Give back the dedupe key of a job that ended (or is deleted), if its scope lets it
        go and it still holds it."""
        released = released_on_finish(doc)
        if released is not None and self._dedupe.get(released, (None,))[0] == doc["_id"]:
            del self._dedupe[released]

    async def delete(self, job_id: Any, statuses: Sequence[str]) -> dict[str, Any] | None:
        doc = self._jobs.get(job_id)
        if doc is None or doc["status"] not in statuses:
            return None
        del self._jobs[job_id]
        self._release_key(doc)
        for edge in [edge for edge in self._edges if edge[0] == job_id]:
            del self._edges[edge]
        return doc

    async def delete_finished(self, before: datetime, statuses: Sequence[str]) -> int:
        doomed = [
            job_id
            for job_id, doc in self._jobs.items()
            if doc.get("status") in statuses and doc.get("updatedAt", before) < before
        ]
        for job_id in doomed:
            del self._jobs[job_id]
        return len(doomed)

    async def pause(self, name: str) -> bool:
        new = name not in self._paused
        self._paused.add(name)
        return new

    async def resume(self, name: str) -> bool:
        was = name in self._paused
        self._paused.discard(name)
        return was

    async def paused_names(self) -> list[str]:
        return sorted(self._paused)

    # -- jobs that wait for other jobs -------------------------------------------------------

    async def get_many(
        self,
        job_ids: Sequence[Any],
        projection: Mapping[str, Any] | None = None,
        *,
        session: Any = None,
    ) -> list[dict[str, Any]]:
        self._refuse(session)
        self._expire()
        return [copy.deepcopy(self._jobs[i]) for i in dict.fromkeys(job_ids) if i in self._jobs]

    async def add_dependencies(
        self, job_id: Any, dependency_ids: Sequence[Any], *, session: Any = None
    ) -> None:
        self._refuse(session)
        await self.reopen_dependencies(job_id, dependency_ids)

    async def reopen_dependencies(self, job_id: Any, dependency_ids: Sequence[Any]) -> None:
        for on in dependency_ids:
            self._edges[(job_id, on)] = True
            doc = self._jobs.get(on)
            if doc is not None and doc["status"] not in FINISHED:
                doc.update(dependants=DEPENDANTS_OPEN, updatedAt=utcnow())

    async def close_dependencies(self, dependency_ids: Sequence[Any]) -> list[tuple[Any, Any]]:
        ended = set(dependency_ids)
        pairs = [(job, on) for (job, on) in self._edges if on in ended]
        for pair in pairs:
            self._edges[pair] = False
        return pairs

    async def has_open_dependencies(self, job_id: Any) -> bool:
        return any(open_ and job == job_id for (job, _), open_ in self._edges.items())

    async def release_waiting(self, job_id: Any) -> dict[str, Any] | None:
        doc = self._jobs.get(job_id)
        if doc is None or doc["status"] != "waiting":
            return None
        now = utcnow()
        doc.update(status="pending", nextRunAt=max(doc["nextRunAt"], now), updatedAt=now)
        return copy.deepcopy(doc)

    async def cancel_waiting(self, job_id: Any, fields: Mapping[str, Any]) -> dict[str, Any] | None:
        doc = self._jobs.get(job_id)
        if doc is None or doc["status"] != "waiting":
            return None
        doc.update(copy.deepcopy(dict(fields)), status="cancelled", updatedAt=utcnow())
        self._release_key(doc)
        return copy.deepcopy(doc)

    async def dependants_settled(self, dependency_ids: Sequence[Any]) -> None:
        for dependency_id in dependency_ids:
            doc = self._jobs.get(dependency_id)
            if doc is not None and doc["status"] in FINISHED:
                doc["dependants"] = DEPENDANTS_SETTLED

    async def unsettled(self, before: datetime, limit: int) -> list[dict[str, Any]]:
        found = [
            d
            for d in self._jobs.values()
            if d.get("dependants") == DEPENDANTS_OPEN
            and d["status"] in FINISHED
            and d["updatedAt"] < before
        ]
        return copy.deepcopy(found[:limit])

    async def dependants(self, job_id: Any, limit: int) -> list[Any]:
        return [job for (job, on) in self._edges if on == job_id][:limit]

    @staticmethod
    def _refuse(session: Any) -> None:
        if session is not None:
            raise TypeError("InMemoryJobStore does not support sessions")

    async def due_by_name(self, now: datetime, head: int | None = None) -> dict[str, int]:
        return _by_name(self._due_in_claim_order(now, head))

    def _due_in_claim_order(self, now: datetime, head: int | None) -> list[dict[str, Any]]:
        """The pending jobs due by ``now`` in the claim order (the first ``head`` if given)."""
        due = sorted(
            (d for d in self._jobs.values() if d["status"] == "pending" and d["nextRunAt"] <= now),
            key=_sort_key,
        )
        return due if head is None else due[:head]

    async def register_worker(self, worker_id: str, fields: Mapping[str, Any]) -> None:
        entry = self._workers.setdefault(worker_id, {"_id": worker_id})
        entry.update(copy.deepcopy(dict(fields)), lastSeen=utcnow())

    async def unregister_worker(self, worker_id: str) -> None:
        self._workers.pop(worker_id, None)

    async def live_workers(self, since: datetime) -> list[dict[str, Any]]:
        live = [w for w in self._workers.values() if w["lastSeen"] >= since]
        live.sort(key=lambda w: w.get("startedAt") or w["lastSeen"])
        return copy.deepcopy(live)

    async def stats(self, now: datetime) -> dict[str, Any]:
        self._expire()
        by_name: dict[str, dict[str, int]] = {}
        due = [
            d["nextRunAt"]
            for d in self._jobs.values()
            if d.get("status") == "pending" and d["nextRunAt"] <= now
        ]
        hour_ago = now - timedelta(hours=1)
        failed = 0
        for doc in self._jobs.values():
            counts = by_name.setdefault(str(doc.get("name")), {})
            status = str(doc.get("status"))
            counts[status] = counts.get(status, 0) + 1
            if status == "failed" and doc.get("updatedAt", now) >= hour_ago:
                failed += 1
        return {
            "by_name": by_name,
            "due": len(due),
            "oldest_due": min(due) if due else None,
            "failed_since_hour": failed,
        }

    async def finished_per_minute(self, since: datetime, limit: int) -> list[dict[str, Any]]:
        self._expire()
        done = [
            d
            for d in self._jobs.values()
            if d.get("status") in FINISHED and d.get("updatedAt") is not None
            if d["updatedAt"] >= since
        ]
        done.sort(key=lambda d: d["updatedAt"], reverse=True)
        rows: dict[tuple[datetime, str], dict[str, Any]] = {}
        for doc in done[:limit]:
            minute = doc["updatedAt"].replace(second=0, microsecond=0)
            row = rows.setdefault(
                (minute, doc["status"]),
                {"minute": minute, "status": doc["status"], "n": 0, "waitMax": None},
            )
            row["n"] += 1
            started, due = doc.get("lastRunAt"), doc.get("nextRunAt")
            if started is None or due is None or started < due:
                continue
            wait = (started - due) // timedelta(milliseconds=1)
            row["waitMax"] = max(wait, row["waitMax"] or 0)
            row["waitSum"] = row.get("waitSum", 0) + wait
            row["waitN"] = row.get("waitN", 0) + 1
        return [{"waitSum": 0, "waitN": 0, **row} for row in rows.values()]

    async def job_names(self, limit: int) -> list[str]:
        return sorted({str(d.get("name")) for d in self._jobs.values()})[:limit]

    async def activity(
        self, now: datetime, since: datetime, limit: int, active_limit: int
    ) -> dict[str, Any]:
        self._expire()
        jobs = list(self._jobs.values())
        orders: dict[str, Any] = {  # the orders of MongoDB's indexes (see ACTIVE_READS)
            "pending": _sort_key,
            "running": lambda d: (d.get("lockUntil") is not None, d.get("lockUntil") or now),
            "waiting": lambda d: str(d.get("name")),
        }
        counts: list[dict[str, Any]] = []
        for status, order in orders.items():
            first = sorted((d for d in jobs if d.get("status") == status), key=order)
            for name, n in _by_name(first[:active_limit]).items():
                counts.append({"name": name, "status": status, "n": n})
        done = [
            d
            for d in jobs
            if d.get("status") in FINISHED and d.get("updatedAt") is not None
            if d["updatedAt"] >= since
        ]
        done.sort(key=lambda d: d["updatedAt"], reverse=True)
        for status in FINISHED:
            newest = [d for d in done if d["status"] == status][:limit]
            for name, n in _by_name(newest).items():
                counts.append({"name": name, "status": status, "n": n})
        due = self._due_in_claim_order(now, active_limit)
        oldest = min((d["nextRunAt"] for d in due), default=None)
        return {"counts": counts, "due": _by_name(due), "oldest_due": oldest}

    async def update(
        self,
        job_id: Any,
        *,
        expect_status: Sequence[str],
        set: Mapping[str, Any],
        unset: Sequence[str] = (),
    ) -> dict[str, Any] | None:
        doc = self._jobs.get(job_id)
        if doc is None or doc["status"] not in expect_status:
            return None
        for key in unset:
            doc.pop(key, None)
        doc.update(copy.deepcopy(dict(set)))
        doc["updatedAt"] = utcnow()
        return copy.deepcopy(doc)
