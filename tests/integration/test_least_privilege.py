"""Least privilege: the library needs nothing but ``readWrite`` on its own database, and of
that only the six actions of the custom role ``docs/deploying.md`` shows.

One ``mongod`` for the module, started with ``--keyFile`` (a single-node replica set with
authorization on, so change streams and transactions are covered too). The first user
(``root``) is created through the localhost exception; it then creates, in the application
database:

- ``app``: only ``readWrite`` on that database, and ``minimal``: only the custom role, read from
  the page (its ``db.createRole`` call). Everything runs as each of them: index creation,
  every producer option (dedupe keys, concurrency and rate limits, pause/resume, transactional
  enqueue, dependencies), workers running jobs to completion (a retry, a cron job, heartbeats,
  progress, retention, a dependant released), a change-stream wake-up, the operator calls
  (``stats``, ``purge``, ``retry_job``, ``delete_job``, ``get_jobs``, ``live_workers``), the
  dashboard's record of signed-out sessions, the sync facade and the CLI (``jobs list``,
  ``stats``, ``pause``) as subprocesses.
- ``reader``: only ``read`` on that database, the negative control: every write is refused
  with a clear "not authorized" error (so the passing tests above prove the role is enough, not
  that the server ignores roles), while the read-only operator views still work.
- For each action of the custom role, a user holding the role without it, refused the operation
  that needs it: the role has no action to spare.

Worker failures are reported as ``worker:error`` events rather than raised, so the worker tests
collect them and require none: a refused write anywhere in the engine would show up there.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
from pymongo import AsyncMongoClient, MongoClient
from pymongo.errors import OperationFailure
from tests.conftest import wait_for

from mongo_job_scheduler import Job, JobStatus, MongoJobStore, Scheduler
from mongo_job_scheduler import sync as mjs_sync
from mongo_job_scheduler._mongod import LocalMongod
from mongo_job_scheduler.dashboard._sessions import revocations_for
from mongo_job_scheduler.stores import _mongo_common as q

APP_DB = "mjs_least_privilege"
ROOT = ("root", "root-" + uuid.uuid4().hex)
APP = ("app", "app-" + uuid.uuid4().hex)
READER = ("reader", "reader-" + uuid.uuid4().hex)
MINIMAL = ("minimal", "minimal-" + uuid.uuid4().hex)
DEPLOYING = Path(__file__).resolve().parents[2] / "docs" / "deploying.md"
UNAUTHORIZED = 13  # the server's error code for a refused action
IDLE_POLL = 30.0  # the wake-up test's poll interval: only the change stream can be that quick
WAKE_WITHIN = 10.0  # wide: 2 cores shared with other test runs
CLI_TIMEOUT = 60


def documented_role() -> tuple[str, list[str]]:
    """The name and actions of the custom role of ``docs/deploying.md`` (its mongosh block)."""
    page = DEPLOYING.read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```js\n(.*?)```", page, re.DOTALL) if "createRole" in b]
    [name] = re.findall(r'role:\s*"(\w+)"', block)
    [actions] = re.findall(r"actions:\s*\[([^\]]*)\]", block)
    assert '"my-app"' in block and 'collection: ""' in block  # the whole app database
    return name, re.findall(r'"(\w+)"', actions)


ROLE, ACTIONS = documented_role()


def privileges(actions: Sequence[str]) -> list[dict[str, Any]]:
    return [{"resource": {"db": APP_DB, "collection": ""}, "actions": list(actions)}]


@dataclass(frozen=True)
class Secured:
    """The module's server with authorization on, and connection strings for its users."""

    port: int

    def uri(self, user: tuple[str, str], auth_source: str = APP_DB) -> str:
        name, password = user
        return (
            f"mongodb://{quote_plus(name)}:{quote_plus(password)}@127.0.0.1:{self.port}/"
            f"?directConnection=true&replicaSet=rs0&authSource={auth_source}"
        )

    @property
    def anonymous(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true&replicaSet=rs0"

    @property
    def app(self) -> str:
        return self.uri(APP)

    @property
    def reader(self) -> str:
        return self.uri(READER)

    @property
    def minimal(self) -> str:
        return self.uri(MINIMAL)

    @property
    def root(self) -> str:
        return self.uri(ROOT, "admin")


@pytest.fixture(scope="module")
def secured() -> Iterator[Secured]:
    keydir = tempfile.mkdtemp(prefix="mjs-keyfile-")
    keyfile = os.path.join(keydir, "keyfile")
    with open(keyfile, "w", encoding="ascii") as out:  # 6 to 1024 base64 characters
        out.write(base64.b64encode(os.urandom(512)).decode("ascii"))
    os.chmod(keyfile, 0o400)
    # --keyFile turns authorization on. LocalMongod's readiness check (replSetInitiate, hello)
    # runs without credentials: the localhost exception allows that until the first user exists.
    server = LocalMongod(extra_args=["--keyFile", keyfile])
    try:
        server.start()
        anonymous: MongoClient[dict[str, Any]] = MongoClient(server.uri)
        try:  # the localhost exception: the first user, from 127.0.0.1
            anonymous.admin.command("createUser", ROOT[0], pwd=ROOT[1], roles=["root"])
        finally:
            anonymous.close()
        made = Secured(server.port)
        root: MongoClient[dict[str, Any]] = MongoClient(made.root)
        try:
            root[APP_DB].command("createRole", ROLE, privileges=privileges(ACTIONS), roles=[])
            for (name, password), role in (
                (APP, "readWrite"),
                (READER, "read"),
                (MINIMAL, ROLE),
            ):
                root[APP_DB].command(
                    "createUser", name, pwd=password, roles=[{"role": role, "db": APP_DB}]
                )
        finally:
            root.close()
        yield made
    finally:
        server.stop()
        shutil.rmtree(keydir, ignore_errors=True)


@dataclass(frozen=True)
class User:
    uri: str
    password: str


@pytest.fixture(params=["readWrite", "custom-role"])
def user(request: pytest.FixtureRequest, secured: Secured) -> User:
    """Each test that needs a user runs as both: ``readWrite``, and the documented role."""
    if request.param == "readWrite":
        return User(secured.app, APP[1])
    return User(secured.minimal, MINIMAL[1])


def fresh_collection(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# -- the CLI as a subprocess ----------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(uri: str, collection: str, *args: str) -> Result:
    env = {k: v for k, v in os.environ.items() if k != "MONGODB_URI"}
    env.update(NO_COLOR="1", COLUMNS="200", PYTHONIOENCODING="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mongo_job_scheduler",
            "--mongodb-uri",
            uri,
            "--database",
            APP_DB,
            "--collection",
            collection,
            *args,
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=CLI_TIMEOUT,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def run_cli_many(uri: str, collection: str, runs: Sequence[Sequence[str]]) -> list[Result]:
    """Independent CLI runs at once (each is a new Python process); results in order."""
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        return list(pool.map(lambda args: run_cli(uri, collection, *args), runs))


# -- the server really enforces roles -----------------------------------------------------------


def test_authorization_is_on_and_the_users_hold_only_their_roles(secured: Secured) -> None:
    anonymous: MongoClient[dict[str, Any]] = MongoClient(secured.anonymous)
    root: MongoClient[dict[str, Any]] = MongoClient(secured.root)
    try:
        with pytest.raises(OperationFailure) as refused:
            anonymous[APP_DB]["anything"].find_one()
        assert refused.value.code == UNAUTHORIZED
        info = root[APP_DB].command("usersInfo", APP[0])
        [app] = info["users"]
        assert app["roles"] == [{"role": "readWrite", "db": APP_DB}]
        [minimal] = root[APP_DB].command("usersInfo", MINIMAL[0])["users"]
        assert minimal["roles"] == [{"role": ROLE, "db": APP_DB}]
        [role] = root[APP_DB].command("rolesInfo", ROLE, showPrivileges=True)["roles"]
        assert role["roles"] == [] and role["inheritedRoles"] == []
        [granted] = role["privileges"]
        assert granted["resource"] == {"db": APP_DB, "collection": ""}
        assert sorted(granted["actions"]) == sorted(ACTIONS)
        hello = root.admin.command("hello")
        assert hello["isWritablePrimary"] and hello["setName"] == "rs0"
    finally:
        anonymous.close()
        root.close()


# -- everything works with readWrite, and with the documented role ------------------------------


async def test_workers_producers_and_operators_need_only_the_role(
    secured: Secured, user: User
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(user.uri)
    db = client[APP_DB]
    coll = fresh_collection("jobs")
    store = MongoJobStore(db, coll)
    errors: list[Any] = []
    scheduler = Scheduler(
        store,
        workers=4,
        poll_interval=0.05,
        lock_timeout=3,
        heartbeat_interval=0.5,
        retention={"completed": 3600},
    )
    scheduler.on("worker:error", errors.append)
    scheduler.on("scheduler:error", errors.append)
    retried: list[Any] = []
    scheduler.on("job:retry", lambda job: retried.append(job.id))
    ticks: list[Any] = []
    renewed: list[Any] = []
    running_limited = 0
    most_limited = 0

    @scheduler.task("plain")
    async def plain(job: Job) -> dict[str, Any]:
        await job.set_progress(50, "half way")
        return {"echo": job.data}

    @scheduler.task("flaky", retry={"maxAttempts": 2, "delay": 0.05})
    async def flaky(job: Job) -> str:
        if job.attempts == 0:
            raise RuntimeError("first try fails")
        return "second try"

    @scheduler.task("doomed")
    async def doomed(job: Job) -> None:
        raise RuntimeError("always fails")

    @scheduler.task("limited")
    async def limited(job: Job) -> None:
        nonlocal running_limited, most_limited
        running_limited += 1
        most_limited = max(most_limited, running_limited)
        try:
            if job.data == "long":  # held until a heartbeat renews its lease (and its slot)
                first = (await store.get(job.id) or {})["lockUntil"]

                async def lease_renewed() -> bool:
                    doc = await store.get(job.id)
                    return doc is not None and doc["lockUntil"] > first

                await wait_for(lease_renewed, timeout=10)
                renewed.append(job.id)
        finally:
            running_limited -= 1

    @scheduler.task("rated")
    async def rated(job: Job) -> None:
        return None

    @scheduler.task("held")
    async def held(job: Job) -> None:
        return None

    @scheduler.task("tick")
    async def tick(job: Job) -> None:
        ticks.append(job.id)

    async def status_of(job: Job) -> JobStatus | None:
        found = await scheduler.get_job(job.id)
        return None if found is None else found.status

    try:
        await scheduler.start()  # createIndexes, hello for the clock
        root: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(secured.root)
        try:  # listing indexes is no privilege the library needs: root looks
            indexes = await root[APP_DB][coll].index_information()
        finally:
            await root.close()
        assert {"claim_order", "lease_expiry", "retention", "by_name"} <= set(indexes)

        # Transactional enqueue, committed and aborted, with a dedupe key inside.
        orders = db[fresh_collection("orders")]
        await orders.insert_one({"_id": "warm-up"})  # the collection exists outside the txn
        async with client.start_session() as session:
            await session.start_transaction()
            await orders.insert_one({"_id": "o-1"}, session=session)
            in_txn = await scheduler.schedule("plain", "o-1", session=session, dedupe_key="o-1")
            in_bulk = await scheduler.schedule_bulk(
                [{"name": "plain", "data": "o-1b"}], session=session
            )
            await session.commit_transaction()
        async with client.start_session() as session:
            await session.start_transaction()
            aborted = await scheduler.schedule("plain", "o-2", session=session, dedupe_key="o-2")
            await session.abort_transaction()
        assert await scheduler.get_job(aborted.id) is None

        # Dedupe: the same key gives the same job; a cancel releases the key.
        later = await scheduler.schedule("plain", "later", dedupe_key="dk", delay=3600)
        again = await scheduler.schedule("plain", "again", dedupe_key="dk")
        assert again.id == later.id
        assert await db[f"{coll}_dedupe"].count_documents({"_id": "dk"}) == 1
        assert await scheduler.cancel(later.id) is True
        fresh = await scheduler.schedule("plain", "fresh", dedupe_key="dk")
        assert fresh.id != later.id

        # A paused name: its job waits while the others (scheduled after it) run.
        assert await scheduler.pause("held") is True
        assert await scheduler.paused_names() == ["held"]
        waiting = await scheduler.schedule("held", priority=1)

        # Concurrency limit (slots), rate limit (windows), a retry, an operator retry, a cron
        # job, and a pending job moved to now with update_job.
        limited_jobs = [
            await scheduler.schedule("limited", data, concurrency=1)
            for data in ("long", "short", "short")
        ]
        rated_jobs = [
            await scheduler.schedule("rated", n, rate_limit={"limit": 2, "period": 60})
            for n in range(3)
        ]
        flaky_job = await scheduler.schedule("flaky")
        doomed_job = await scheduler.schedule("doomed", retry=1)
        cron = await scheduler.schedule("tick", repeat={"cron": "* * * * * *"})
        moved = await scheduler.schedule("plain", "moved", delay=3600)
        moved = await scheduler.update_job(moved.id, run_at=await store.now())

        for job in [in_txn, *in_bulk, fresh, moved, *limited_jobs, flaky_job]:
            done = await scheduler.wait(job.id, timeout=20)
            assert done.status is JobStatus.COMPLETED, done
        done_plain = await scheduler.get_job(in_txn.id)
        assert done_plain is not None
        assert done_plain.result == {"echo": "o-1"}
        assert done_plain.progress is not None and done_plain.progress.percent == 50
        assert done_plain.document.get("expireAt") is not None  # retention
        assert most_limited == 1 and renewed == [limited_jobs[0].id]
        finished_flaky = await scheduler.get_job(flaky_job.id)
        assert finished_flaky is not None and finished_flaky.result == "second try"
        assert retried == [flaky_job.id]

        assert (await scheduler.wait(doomed_job.id, timeout=20)).status is JobStatus.FAILED
        assert (await scheduler.retry_job(doomed_job.id)).status is JobStatus.PENDING

        async def doomed_failed_twice() -> bool:
            found = await scheduler.get_job(doomed_job.id)
            return (
                found is not None
                and found.status is JobStatus.FAILED
                and found.document["lockVersion"] == 2
            )

        await wait_for(doomed_failed_twice, timeout=20)
        await wait_for(lambda: len(ticks) >= 2, timeout=20)
        assert await scheduler.cancel(cron.id) is True

        async def two_rated_done() -> bool:
            return len(await scheduler.get_jobs(name="rated", status="completed")) == 2

        await wait_for(two_rated_done, timeout=20)
        [third] = await scheduler.get_jobs(name="rated", status="pending")
        assert third.id in {job.id for job in rated_jobs}
        assert await db[f"{coll}_rates"].count_documents({"_id": "rated"}) == 1

        # The paused job was skipped although it comes first in the claim order.
        paused_doc = await store.get(waiting.id)
        assert paused_doc is not None and paused_doc["status"] == "pending"
        assert paused_doc["lockVersion"] == 0
        snapshot = await scheduler.stats()
        assert snapshot.paused == ["held"]
        assert snapshot.by_name["rated"] == {"completed": 2, "pending": 1}
        assert await scheduler.resume("held") is True
        assert (await scheduler.wait(waiting.id, timeout=20)).status is JobStatus.COMPLETED
        assert await scheduler.cancel(third.id) is True

        # Workflows: a dependant is released when its dependency completes (the edges in
        # <collection>_deps); an operator deletes a job; the fleet view; a dashboard sign-out.
        step_one = await scheduler.schedule("plain", "step 1", delay=3600)
        step_two = await scheduler.schedule("plain", "step 2", depends_on=[step_one])
        assert step_two.status is JobStatus.WAITING
        await scheduler.update_job(step_one.id, run_at=await store.now())
        assert (await scheduler.wait(step_two.id, timeout=20)).status is JobStatus.COMPLETED
        assert [job.id for job in await scheduler.dependants(step_one.id)] == [step_two.id]
        spare = await scheduler.schedule("plain", "spare", delay=3600)
        assert await scheduler.delete_job(spare.id) is True
        [me] = await wait_for(scheduler.live_workers, timeout=20)
        assert me.scheduler_id == scheduler.id and list(me.names or ()) == scheduler.handled_names()
        signed_out = revocations_for(store)
        await signed_out.revoke("a-session", int(time.time()) + 3600)
        assert await revocations_for(MongoJobStore(db, coll)).is_revoked("a-session")

        # Reads and operator calls.
        oldest = await scheduler.get_jobs(
            name="plain", status=["completed"], sort=("createdAt", "asc"), limit=2
        )
        assert [job.id for job in oldest] == [in_txn.id, in_bulk[0].id]
        assert [job.id for job in await scheduler.get_jobs(data={"n": 1})] == []
        assert [job.id for job in await scheduler.get_jobs(name="flaky")] == [flaky_job.id]
        snapshot = await scheduler.stats()
        assert snapshot.by_status["pending"] == 0 and snapshot.by_status["running"] == 0
        assert snapshot.total == 17
        # A cutoff in the future: every finished job goes (the default statuses).
        tomorrow = datetime.now(timezone.utc) + timedelta(days=1)
        assert await scheduler.purge(tomorrow) == 17
        assert await scheduler.purge(timedelta(seconds=0)) == 0
        assert await scheduler.get_jobs() == []
        assert (await scheduler.stats()).total == 0
    finally:
        await scheduler.stop(graceful=False)
        await client.close()
    assert errors == []


async def test_change_stream_wakes_an_idle_worker_with_only_the_role(user: User) -> None:
    worker_client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(user.uri)
    producer_client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(user.uri)
    coll = fresh_collection("wake")
    store = MongoJobStore(worker_client[APP_DB], coll)
    stream_open = asyncio.Event()
    claimed_nothing = asyncio.Event()
    original_watch, original_claim = store.watch, store.claim

    async def watch(notify: Any, ready: Any = None) -> bool:
        def opened() -> None:
            stream_open.set()
            if ready is not None:
                ready()

        return await original_watch(notify, opened)

    async def claim(*args: Any, **kwargs: Any) -> Any:
        result = await original_claim(*args, **kwargs)
        if not result.jobs:
            claimed_nothing.set()
        return result

    store.watch = watch  # type: ignore[method-assign]  # observe when the stream is open
    store.claim = claim  # type: ignore[method-assign]  # and when the worker went idle
    started: asyncio.Queue[Any] = asyncio.Queue()
    errors: list[Any] = []

    async def handler(job: Job) -> None:
        await started.put(job.id)

    worker = Scheduler(store, handler, poll_interval=IDLE_POLL)
    worker.on("worker:error", errors.append)
    producer = Scheduler(MongoJobStore(producer_client[APP_DB], coll))
    try:
        async with worker:
            await asyncio.wait_for(claimed_nothing.wait(), timeout=10)
            await asyncio.wait_for(stream_open.wait(), timeout=10)
            sent = time.monotonic()
            job = await producer.schedule("ping")
            assert await asyncio.wait_for(started.get(), timeout=WAKE_WITHIN) == job.id
            # Far below the 30 s poll interval: the change stream woke the worker.
            assert time.monotonic() - sent < WAKE_WITHIN
    finally:
        await worker_client.close()
        await producer_client.close()
    assert errors == []


def test_sync_facade_and_cli_need_only_the_role(user: User) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(user.uri, tz_aware=True)
    coll = fresh_collection("cli")
    try:
        producer = mjs_sync.Scheduler(mjs_sync.MongoJobStore(client[APP_DB], coll))
        first = producer.schedule("report", {"n": 1}, dedupe_key="report:1")
        assert producer.schedule("report", {"n": 1}, dedupe_key="report:1").id == first.id
        bulk = producer.schedule_bulk(
            [
                {"name": "report", "data": {"n": 2}},
                {"name": "report", "data": {"n": 3}, "dedupe_key": "report:1"},
            ]
        )
        assert bulk[1].id == first.id
        with client.start_session() as session, session.start_transaction():
            in_txn = producer.schedule("report", {"n": 4}, session=session)
        updated = producer.update_job(in_txn.id, priority=1)
        assert updated.priority == 1
        assert producer.cancel(bulk[0].id) is True
        listed = producer.get_jobs(name="report", sort=("priority", "asc"))
        assert listed[0].id == in_txn.id
        assert {job.id for job in listed} == {first.id, bulk[0].id, in_txn.id}

        listing, stats, paused = run_cli_many(
            user.uri,
            coll,
            [
                ["jobs", "list", "--json", "--name", "report"],
                ["stats", "--json"],
                ["pause", "nightly"],
            ],
        )
        for result in (listing, stats, paused):
            assert result.code == 0, result
            assert user.password not in result.out + result.err
        listed_ids = {json.loads(line)["_id"] for line in listing.out.splitlines() if line.strip()}
        assert listed_ids == {str(first.id), str(bulk[0].id), str(in_txn.id)}
        counts = json.loads(stats.out)
        assert counts["total"] == 3
        assert counts["by_status"]["pending"] == 2 and counts["by_status"]["cancelled"] == 1
        assert client[APP_DB][f"{coll}_paused"].count_documents({"_id": "nightly"}) == 1
    finally:
        client.close()


# -- the custom role has no action to spare ------------------------------------------------------


async def needs_find(scheduler: Scheduler, store: MongoJobStore) -> None:
    await scheduler.get_jobs()


async def needs_insert(scheduler: Scheduler, store: MongoJobStore) -> None:
    await scheduler.schedule("inserted")


async def needs_update(scheduler: Scheduler, store: MongoJobStore) -> None:
    await scheduler.pause("paused-name")


async def needs_remove(scheduler: Scheduler, store: MongoJobStore) -> None:
    await scheduler.purge(timedelta(seconds=0))


async def needs_create_index(scheduler: Scheduler, store: MongoJobStore) -> None:
    await scheduler.start()  # index creation comes first
    await scheduler.stop()


async def needs_change_stream(scheduler: Scheduler, store: MongoJobStore) -> None:
    stream = await store.jobs.watch(q.PENDING_CHANGES)  # what MongoJobStore.watch follows
    await stream.close()


NEEDS = {
    "find": needs_find,
    "insert": needs_insert,
    "update": needs_update,
    "remove": needs_remove,
    "createIndex": needs_create_index,
    "changeStream": needs_change_stream,
}


def test_each_action_of_the_role_has_an_operation_that_needs_it() -> None:
    assert sorted(NEEDS) == sorted(ACTIONS)


@pytest.mark.parametrize("action", sorted(NEEDS))
async def test_without_any_one_action_of_the_role_the_library_is_refused(
    secured: Secured, action: str
) -> None:
    name = f"without_{action}"
    password = uuid.uuid4().hex
    root: MongoClient[dict[str, Any]] = MongoClient(secured.root)
    try:
        less = [a for a in ACTIONS if a != action]
        root[APP_DB].command("createRole", name, privileges=privileges(less), roles=[])
        root[APP_DB].command("createUser", name, pwd=password, roles=[name])
    finally:
        root.close()
    coll = fresh_collection("needs")
    operation = NEEDS[action]
    full: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(secured.minimal)
    lacking: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(secured.uri((name, password)))
    try:
        full_store = MongoJobStore(full[APP_DB], coll)
        await full_store.setup()  # the collections exist: only the action is missing below
        await operation(Scheduler(full_store, lambda job: None), full_store)  # the role: fine
        store = MongoJobStore(lacking[APP_DB], coll)
        scheduler = Scheduler(store, lambda job: None)
        with pytest.raises(OperationFailure) as refused:
            await operation(scheduler, store)
        assert refused.value.code == UNAUTHORIZED and "not authorized" in str(refused.value)
        assert not scheduler.is_running
    finally:
        await full.close()
        await lacking.close()


# -- the negative control: read only ------------------------------------------------------------


async def test_a_read_only_user_is_refused_every_write_with_a_clear_error(secured: Secured) -> None:
    coll = fresh_collection("readonly")
    writer: MongoClient[dict[str, Any]] = MongoClient(secured.app, tz_aware=True)
    reader: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(secured.reader)
    try:
        seeded = mjs_sync.Scheduler(mjs_sync.MongoJobStore(writer[APP_DB], coll)).schedule("seeded")
        scheduler = Scheduler(MongoJobStore(reader[APP_DB], coll), lambda job: None)
        with pytest.raises(OperationFailure) as refused:
            await scheduler.schedule("refused")
        assert refused.value.code == UNAUTHORIZED
        assert "not authorized" in str(refused.value)
        with pytest.raises(OperationFailure) as refused:
            await scheduler.start()  # index creation comes first
        assert refused.value.code == UNAUTHORIZED
        assert not scheduler.is_running
        with pytest.raises(OperationFailure) as refused:
            await scheduler.pause("seeded")
        assert refused.value.code == UNAUTHORIZED
        # Reading is allowed: read-only views work with read.
        assert [job.id for job in await scheduler.get_jobs()] == [seeded.id]
        assert (await scheduler.stats()).total == 1
    finally:
        await reader.close()

    try:
        pause, listing, shown, stats = run_cli_many(
            secured.reader,
            coll,
            [
                ["pause", "seeded"],
                ["jobs", "list", "--json"],
                ["jobs", "show", str(seeded.id), "--json"],
                ["stats", "--json"],
            ],
        )
        assert pause.code == 1, pause
        [line] = pause.err.strip().splitlines()
        assert line.startswith("Error: MongoDB refused the operation") and "not authorized" in line
        assert READER[1] not in pause.err  # the password is redacted
        assert listing.code == 0, listing
        assert [json.loads(text)["_id"] for text in listing.out.splitlines()] == [str(seeded.id)]
        assert shown.code == 0 and json.loads(shown.out)["name"] == "seeded", shown
        assert stats.code == 0 and json.loads(stats.out)["total"] == 1, stats
        # Nothing was written by the refused calls.
        docs = list(writer[APP_DB][coll].find({}, {"name": 1}))
        assert [doc["name"] for doc in docs] == ["seeded"]
        assert writer[APP_DB][f"{coll}_paused"].count_documents({}) == 0
    finally:
        writer.close()


# -- handlers come from the process, never from the document --------------------------------------


async def test_a_job_naming_a_module_never_gets_it_imported(
    secured: Secured, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"mjs_planted_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "imported"
    (tmp_path / f"{module}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n\ndef run(job):\n    return 'planted'\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # importable, if anything tried
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(secured.app)
    store = MongoJobStore(client[APP_DB], fresh_collection("planted"))
    worker = Scheduler(store, workers=2, poll_interval=0.05)

    @worker.task("known")
    async def known(job: Job) -> None:
        return None

    try:
        # The planted jobs come first in the claim order; the known one last.
        planted = [
            await worker.schedule(name, {"handler": f"{module}:run"}, priority=1)
            for name in (f"{module}:run", f"{module}.run", module)
        ]
        last = await worker.schedule("known", priority=10)
        async with worker:
            assert (await worker.wait(last.id, timeout=20)).status is JobStatus.COMPLETED
        for job in planted:
            doc = await store.get(job.id)
            assert doc is not None and doc["status"] == "pending" and doc["lockVersion"] == 0
        assert module not in sys.modules
        assert not marker.exists()
    finally:
        await client.close()
