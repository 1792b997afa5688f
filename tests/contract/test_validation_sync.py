"""The bad-input table of ``test_validation`` (``CASES``) run through the blocking facade
``mongo_job_scheduler.sync`` on the real mongod.

For every case the sync call must raise the error the asyncio API raises for the same input
(same class, same ``field``, same message) and write nothing:

- on a store whose collection has never been touched, nothing is created at all (no collection,
  no index, no dedupe registry): validation happens before the first round trip that writes;
- on a store holding a job (with a registered dedupe key), every collection of the database,
  its documents and its indexes are identical before and after the call;
- no ``job:created`` / ``job:cancel`` event is emitted.

Every case of the table applies to the sync facade (``SYNC_NOT_APPLICABLE`` is empty, and a test
keeps it honest). Of the ``Scheduler(...)`` option cases, only the ones for options the sync
``Scheduler`` has apply; the others are listed in ``OPTIONS_NOT_APPLICABLE`` with the reason,
and a test checks the sync ``Scheduler`` refuses them (``TypeError``) rather than ignoring them.

``BEYOND_INT64`` adds integers too large for BSON (a gap of the shared validation, found here).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient

from mongo_job_scheduler import ConfigurationError, InMemoryJobStore, ValidationError
from mongo_job_scheduler import MongoJobStore as AsyncMongoJobStore
from mongo_job_scheduler import Scheduler as AsyncScheduler
from mongo_job_scheduler.sync import MongoJobStore, Scheduler
from tests.contract.test_validation import AWARE, CASES, OPTION_CASES, case
from tests.contract.test_validation import run as run_async

SYNC_NOT_APPLICABLE: dict[str, str] = {}
"""Case ids of ``CASES`` that cannot apply to the sync facade, with the reason (none so far:
the sync ``Scheduler`` has every producer and admin method the table exercises)."""

OPTIONS_NOT_APPLICABLE: dict[str, str] = {
    "workers-0": "the sync Scheduler runs no workers (no `workers` option)",
    "workers-negative": "the sync Scheduler runs no workers (no `workers` option)",
    "workers-string": "the sync Scheduler runs no workers (no `workers` option)",
    "workers-bool": "the sync Scheduler runs no workers (no `workers` option)",
    "workers-float": "the sync Scheduler runs no workers (no `workers` option)",
    "poll-0": "no claim loop, so no `poll_interval`",
    "poll-negative": "no claim loop, so no `poll_interval`",
    "poll-nan": "no claim loop, so no `poll_interval`",
    "poll-inf": "no claim loop, so no `poll_interval`",
    "poll-string": "no claim loop, so no `poll_interval`",
    "lock-0": "no leases taken, so no `lock_timeout`",
    "lock-negative": "no leases taken, so no `lock_timeout`",
    "heartbeat-ge-lock": "no leases renewed, so no `heartbeat_interval`",
    "heartbeat-0": "no leases renewed, so no `heartbeat_interval`",
    "lease-expiries-0": "no claims, so no `max_lease_expiries`",
    "max-execution-negative": "no runs, so no scheduler-wide `max_execution` (per job it is "
    "validated by the CASES table)",
    "empty-id": "no worker owner ids, so no `id`",
    "int-id": "no worker owner ids, so no `id`",
    "escape-in-id": "no worker owner ids, so no `id`",
    "handler-not-callable": "no handlers run here, so no `handler`",
}
"""``test_validation.OPTION_CASES`` ids for options only the asyncio ``Scheduler`` has."""

EXISTING_KEY = "existing"


@pytest.fixture(scope="module")
def table_db(mongodb_uri: str) -> Iterator[Any]:
    """One database for the whole table (each case gets its own collections in it), so the
    table's cases do not pay a database drop each."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri)
    name = f"mjs_test_{uuid.uuid4().hex[:12]}"
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()


def _snapshot(db: Any, prefix: str) -> dict[str, Any]:
    """Every collection name in the database, and each of this case's collections' documents
    (by ``_id``) and indexes."""
    names = sorted(db.list_collection_names())
    return {
        "collections": names,
        **{
            name: {
                "docs": list(db[name].find({}).sort("_id", 1)),
                "indexes": db[name].index_information(),
            }
            for name in names
            if name.startswith(prefix)
        },
    }


def _run_sync(scheduler: Scheduler, target: str, kwargs: dict[str, Any], existing: Any) -> Any:
    """The sync call equivalent to ``test_validation.run``'s async one."""
    kwargs = dict(kwargs)
    if target == "schedule":
        name = kwargs.pop("name", "job")
        return scheduler.schedule(name, **kwargs)
    if target == "bulk":
        return scheduler.schedule_bulk(kwargs["items"])
    if target == "update":
        job_id = kwargs.pop("job_id", existing)
        return scheduler.update_job(job_id, **kwargs)
    if target == "get_jobs":
        return scheduler.get_jobs(**kwargs)
    if target == "get_job":
        return scheduler.get_job(kwargs["job_id"])
    if target == "cancel":
        return scheduler.cancel(kwargs["job_id"])
    raise AssertionError(target)


def _async_error(target: str, kwargs: dict[str, Any]) -> ValidationError:
    """The error the asyncio API raises for this case (on the memory store: the reference)."""

    async def go() -> ValidationError:
        scheduler = AsyncScheduler(InMemoryJobStore())
        existing = None
        if target == "update":
            job = await scheduler.schedule(
                "existing",
                {"v": 1},
                retry=2,
                dedupe_key=EXISTING_KEY,
                run_at=datetime.now(timezone.utc) + timedelta(hours=1),
            )
            existing = job.id
        with pytest.raises(ValidationError) as info:
            await run_async(scheduler, target, kwargs, existing)
        return info.value

    return asyncio.run(go())


def _expect_same_error(
    scheduler: Scheduler, target: str, kwargs: dict[str, Any], existing: Any, field: str
) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        _run_sync(scheduler, target, kwargs, existing)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.field == field, str(error)
    assert str(error).startswith(f"{field}:")
    return error


def _listening(scheduler: Scheduler) -> list[Any]:
    seen: list[Any] = []
    scheduler.on("job:created", lambda job: seen.append(("job:created", job.id)))
    scheduler.on("job:cancel", lambda job: seen.append(("job:cancel", job.id)))
    return seen


@pytest.mark.parametrize(("target", "kwargs", "field"), CASES)
def test_invalid_input_is_rejected_by_the_sync_facade_and_nothing_changes(
    request: pytest.FixtureRequest,
    table_db: Any,
    target: str,
    kwargs: dict[str, Any],
    field: str,
) -> None:
    case_id = request.node.callspec.id
    if case_id in SYNC_NOT_APPLICABLE:  # pragma: no cover - the list is empty
        pytest.skip(SYNC_NOT_APPLICABLE[case_id])
    prefix = f"c{uuid.uuid4().hex[:12]}"

    # 1. A store never written to: the call creates nothing, not even the collection.
    collections = set(table_db.list_collection_names())
    fresh = Scheduler(MongoJobStore(table_db, f"{prefix}_fresh"))
    fresh_events = _listening(fresh)
    _expect_same_error(fresh, target, kwargs, ObjectId(), field)
    assert set(table_db.list_collection_names()) == collections
    assert fresh_events == []

    # 2. A store holding a job with a dedupe key: everything stays as it was.
    jobs, registry = f"{prefix}_jobs", f"{prefix}_jobs_dedupe"
    scheduler = Scheduler(MongoJobStore(table_db, jobs))
    existing = scheduler.schedule(
        "existing",
        {"v": 1},
        retry=2,
        dedupe_key=EXISTING_KEY,
        run_at=datetime.now(timezone.utc) + timedelta(hours=1),
    ).id
    events = _listening(scheduler)
    before = _snapshot(table_db, prefix)
    assert set(before) == {"collections", jobs, registry}
    assert [d["_id"] for d in before[jobs]["docs"]] == [existing]
    assert [e["_id"] for e in before[registry]["docs"]] == [EXISTING_KEY]
    assert len(before[jobs]["indexes"]) > 1
    error = _expect_same_error(scheduler, target, kwargs, existing, field)
    assert _snapshot(table_db, prefix) == before
    assert events == []

    # 3. The same error as the asyncio API: class, field and message.
    reference = _async_error(target, kwargs)
    assert type(error) is type(reference)
    assert (error.field, str(error)) == (reference.field, str(reference))


# -- integers beyond what BSON stores (found while writing this file) --------------------------

HUGE = 2**63
"""One more than the largest 64-bit integer: BSON cannot store it."""

BEYOND_INT64 = [
    case("schedule", {"concurrency": HUGE}, "concurrency", "huge-concurrency"),
    case("schedule", {"retry": HUGE}, "retry.maxAttempts", "huge-retry"),
    case("schedule", {"retry": {"maxAttempts": HUGE}}, "retry.maxAttempts", "huge-max-attempts"),
    case(
        "schedule",
        {"rate_limit": {"limit": HUGE, "period": 1}},
        "rate_limit.limit",
        "huge-rate-limit",
    ),
    case(
        "schedule",
        {"repeat": {"every": 60, "catchUpLimit": HUGE}},
        "repeat.catchUpLimit",
        "huge-catch-up",
    ),
    case(
        "bulk",
        {"items": [{"name": "a"}, {"name": "b", "concurrency": HUGE}]},
        "items[1].concurrency",
        "huge-item-concurrency",
    ),
    case("update", {"concurrency": HUGE}, "concurrency", "huge-concurrency"),
    case("update", {"retry": HUGE}, "retry.maxAttempts", "huge-retry"),
    case("update", {"retry": {"maxAttempts": 10**20}}, "retry.maxAttempts", "huge-max-attempts"),
    case(
        "update",
        {"repeat": {"every": 60, "catchUpLimit": HUGE}},
        "repeat.catchUpLimit",
        "huge-catch-up",
    ),
    case("get_jobs", {"skip": HUGE}, "skip", "huge-skip"),
]
"""Before the fix, ``schedule`` named the field ``job`` (the whole-document check) and
``update_job`` / ``get_jobs`` raised pymongo's ``OverflowError`` on MongoDB (both APIs) while
the memory store accepted the value."""


@pytest.mark.parametrize(("target", "kwargs", "field"), BEYOND_INT64)
def test_integers_beyond_int64_are_rejected_naming_the_field(
    table_db: Any, target: str, kwargs: dict[str, Any], field: str
) -> None:
    prefix = f"c{uuid.uuid4().hex[:12]}"
    scheduler = Scheduler(MongoJobStore(table_db, f"{prefix}_jobs"))
    existing = scheduler.schedule("existing", dedupe_key=EXISTING_KEY).id
    before = _snapshot(table_db, prefix)
    error = _expect_same_error(scheduler, target, kwargs, existing, field)
    assert _snapshot(table_db, prefix) == before
    reference = _async_error(target, kwargs)
    assert (type(reference), reference.field) == (type(error), error.field)


def test_the_largest_int64_is_still_accepted(sync_db: Any) -> None:
    scheduler = Scheduler(MongoJobStore(sync_db))
    top = 2**63 - 1
    job = scheduler.schedule(
        "top",
        concurrency=top,
        retry={"maxAttempts": top},
        rate_limit={"limit": top, "period": 1},
        repeat={"every": 60, "catchUpLimit": top},
    )
    assert job.concurrency == top
    updated = scheduler.update_job(job.id, concurrency=top, retry=top)
    assert updated.concurrency == top
    assert scheduler.get_jobs(skip=top) == []


def test_every_case_of_the_table_runs_or_is_listed() -> None:
    ids = {str(param.id) for param in CASES}
    assert len(ids) == len(CASES) >= 100
    assert set(SYNC_NOT_APPLICABLE) <= ids
    option_ids = {str(param.id) for param in OPTION_CASES}
    assert set(OPTIONS_NOT_APPLICABLE) <= option_ids
    applicable = option_ids - set(OPTIONS_NOT_APPLICABLE)
    assert applicable == {"zone", "empty-zone", "store-string"}


# -- Scheduler(...) and store options -------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [p for p in OPTION_CASES if str(p.id) not in OPTIONS_NOT_APPLICABLE],
)
def test_applicable_option_cases_are_rejected(
    sync_db: Any, options: dict[str, Any], field: str
) -> None:
    options = dict(options)
    store = options.pop("store", None) or MongoJobStore(sync_db)
    with pytest.raises(ConfigurationError) as info:
        Scheduler(store, **options)
    assert isinstance(info.value, ValidationError)
    assert info.value.field == field
    assert sync_db.list_collection_names() == []


@pytest.mark.parametrize(
    ("options", "field"), [p for p in OPTION_CASES if str(p.id) in OPTIONS_NOT_APPLICABLE]
)
def test_async_only_options_are_refused_not_ignored(
    sync_db: Any, options: dict[str, Any], field: str
) -> None:
    assert field in {"workers", "poll_interval", "lock_timeout", "heartbeat_interval"} | {
        "max_lease_expiries",
        "max_execution",
        "id",
        "handler",
    }
    with pytest.raises(TypeError, match="unexpected keyword"):
        Scheduler(MongoJobStore(sync_db), **options)


async def test_stores_of_the_wrong_kind_are_rejected(sync_db: Any, mongo_db: Any) -> None:
    for wrong in (InMemoryJobStore(), AsyncMongoJobStore(mongo_db), sync_db):
        with pytest.raises(ConfigurationError) as info:
            Scheduler(wrong)
        assert info.value.field == "store"
    for database in (mongo_db, "mongodb://localhost", None):
        with pytest.raises(ConfigurationError) as info:
            MongoJobStore(database)
        assert info.value.field == "database"
    for collection in ("", "a$b", 5):
        with pytest.raises(ConfigurationError) as info:
            MongoJobStore(sync_db, collection)
        assert info.value.field == "collection"
    assert sync_db.list_collection_names() == []


def test_events_the_sync_facade_cannot_emit_are_rejected(sync_db: Any) -> None:
    scheduler = Scheduler(MongoJobStore(sync_db))

    async def coroutine_listener(job: Any) -> None:
        return None

    for event in ("job:exploded", "job:complete", "worker:error", ""):
        with pytest.raises(ValidationError) as info:
            scheduler.on(event, lambda job: None)
        assert info.value.field == "event"
    with pytest.raises(ValidationError) as info:
        scheduler.on("job:created", coroutine_listener)
    assert info.value.field == "listener"


# -- valid counterparts ---------------------------------------------------------------------


def test_valid_counterparts_are_accepted_by_the_sync_facade(sync_db: Any) -> None:
    """Edge values on the valid side of the table's limits are accepted through the sync
    facade too (the table is not rejecting everything)."""
    scheduler = Scheduler(MongoJobStore(sync_db))
    ok = [
        scheduler.schedule("n" * 200),
        scheduler.schedule("p", priority=1),
        scheduler.schedule("p", priority=10),
        scheduler.schedule("every", repeat={"every": 0.1}),
        scheduler.schedule("cron6", repeat={"cron": "*/5 * * * * *"}),
        scheduler.schedule("zone", repeat={"cron": "@daily", "timezone": "Asia/Kolkata"}),
        scheduler.schedule("delay0", delay=0),
        scheduler.schedule("aware", run_at=AWARE),
        scheduler.schedule("retry0", retry=0),
        scheduler.schedule("retry", retry={"maxAttempts": 3, "delay": 0, "backoff": "linear"}),
        scheduler.schedule("conc", concurrency=1, timeout=0.5, max_execution=timedelta(hours=1)),
        scheduler.schedule("key", dedupe_key="k" * 512, dedupe="forever"),
        scheduler.schedule("data", {"nested": {"list": [1, "a", None, 2.5]}, "dotted": 1}),
        scheduler.schedule("big", {"blob": "x" * (8 * 1024 * 1024)}),
        scheduler.schedule("int64", {"big": 2**63 - 1}),
    ]
    bulk = scheduler.schedule_bulk(
        [{"name": "b1", "dedupe_key": "bk"}, {"name": "b2", "priority": 1, "data": {"a": 1}}]
    )
    ok += bulk
    assert len({job.id for job in ok}) == len(ok)
    assert len(scheduler.get_jobs(limit=10_000)) == len(ok)
    assert len(scheduler.get_jobs(status=["pending"], data={"nested.list": 1})) == 1
    assert (
        scheduler.get_jobs(name="p", sort=("priority", "desc"), skip=0, limit=1)[0].priority == 10
    )
    assert sync_db["scheduler_jobs_dedupe"].count_documents({}) == 2

    # update_job on an existing job: valid values of the fields the table rejects.
    target = bulk[1]
    updated = scheduler.update_job(
        str(target.id),
        priority=1,
        run_at=AWARE,
        retry={"maxAttempts": 2},
        data={"ok": {"nested": [1]}},
        concurrency=1,
        timeout=1,
        max_execution=None,
    )
    assert updated.priority == 1
    assert updated.data == {"ok": {"nested": [1]}}
    assert updated.next_run_at == AWARE
    updated = scheduler.update_job(target.id, repeat={"every": 0.1})
    assert updated.repeat is not None

    # ids as ObjectId or 24-hex string.
    got = scheduler.get_job(str(target.id))
    assert got is not None and got.id == target.id
    assert scheduler.get_job(ObjectId()) is None
    assert scheduler.cancel(str(target.id)) is True
