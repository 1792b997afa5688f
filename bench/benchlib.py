"""Shared helpers of the benchmark: timing, percentiles, machine facts, job documents, and the
worker subprocesses (``bench/child.py``) driven over stdin/stdout."""

from __future__ import annotations

import asyncio
import copy
import os
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bson import ObjectId

from mongo_job_scheduler._documents import build_new_job

BENCH_DIR = Path(__file__).resolve().parent
CHILD_SCRIPT = BENCH_DIR / "child.py"


# -- timing and statistics --------------------------------------------------------------------


def utcnow() -> datetime:
    """The wall clock, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) of ``values``, linearly interpolated; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> str:
    """Seconds shown as milliseconds with one decimal."""
    return f"{seconds * 1000:.1f} ms"


def rate(count: int, seconds: float) -> float:
    """Events per second (0 when no time elapsed)."""
    return count / seconds if seconds > 0 else 0.0


class Stopwatch:
    """Monotonic elapsed time since creation (or the last :meth:`restart`)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def restart(self) -> None:
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def log(message: str) -> None:
    """Progress output (stderr, so the report on stdout stays clean)."""
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


# -- exactly-once accounting ------------------------------------------------------------------


@dataclass
class RunCheck:
    """How the ids that handlers ran compare with the ids that were inserted."""

    expected: int
    ran: int
    duplicates: int
    missing: int
    unknown: int

    @property
    def ok(self) -> bool:
        return self.duplicates == 0 and self.missing == 0 and self.unknown == 0

    def describe(self) -> str:
        return (
            f"{self.ran} runs of {self.expected} jobs: {self.duplicates} duplicate runs, "
            f"{self.missing} missing, {self.unknown} unknown ids"
        )


def check_runs(expected_ids: Iterable[Any], runs: Counter[Any]) -> RunCheck:
    """Compare the run count per id with the inserted ids (each must run exactly once)."""
    expected = set(expected_ids)
    return RunCheck(
        expected=len(expected),
        ran=sum(runs.values()),
        duplicates=sum(count - 1 for count in runs.values() if count > 1),
        missing=len(expected - runs.keys()),
        unknown=len(runs.keys() - expected),
    )


# -- machine facts ----------------------------------------------------------------------------


def _first_line_with(path: str, prefix: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def cpu_model() -> str:
    return _first_line_with("/proc/cpuinfo", "model name") or platform.processor() or "unknown"


def ram_total() -> str:
    value = _first_line_with("/proc/meminfo", "MemTotal")
    if value is None:
        return "unknown"
    kib = int(value.split()[0])
    return f"{kib / 1024 / 1024:.1f} GiB"


def os_name() -> str:
    pretty = None
    try:
        with open("/etc/os-release", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("PRETTY_NAME="):
                    pretty = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return f"{pretty or platform.system()} (kernel {platform.release()})"


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` (``VmRSS`` of ``/proc/<pid>/status``)."""
    value = _first_line_with(f"/proc/{pid}/status", "VmRSS")
    if value is None:
        raise RuntimeError(f"cannot read the RSS of process {pid}")
    return int(value.split()[0]) * 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid: int) -> int:
    """Voluntary plus involuntary context switches of every thread of process ``pid`` so far
    (``/proc/<pid>/task/*/status``; threads that already ended are not counted)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            with open(task / "status", encoding="utf-8") as handle:
                for line in handle:
                    if "ctxt_switches:" in line:
                        total += int(line.split()[-1])
        except (OSError, ValueError):
            continue
    return total


@dataclass
class ServerLoad:
    """The server's operation counters and CPU time (``serverStatus``) at one moment."""

    ops: dict[str, int]
    cpu: float

    @classmethod
    async def read(cls, client: Any) -> ServerLoad:
        status = await client.admin.command("serverStatus")
        extra = status.get("extra_info", {})
        cpu = (int(extra.get("user_time_us", 0)) + int(extra.get("system_time_us", 0))) / 1e6
        ops = {key: int(value) for key, value in status["opcounters"].items()}
        operation = status.get("metrics", {}).get("operation", {})
        ops["writeConflicts"] = int(operation.get("writeConflicts", 0))
        commands = status.get("metrics", {}).get("commands", {})
        for name in ("aggregate", "killCursors"):  # change streams opened and closed
            ops[name] = int(commands.get(name, {}).get("total", 0))
        return cls(ops, cpu)

    def since(self, before: ServerLoad, jobs: int) -> str:
        """What the server did between ``before`` and this reading, per job."""
        parts = []
        for key in (
            "query",
            "getmore",
            "update",
            "insert",
            "delete",
            "command",
            "aggregate",
            "killCursors",
            "writeConflicts",
        ):
            count = self.ops.get(key, 0) - before.ops.get(key, 0)
            if count:
                parts.append(f"{key} {count / jobs:.3f}")
        return f"mongod {self.cpu - before.cpu:.2f} s CPU; ops per job: {', '.join(parts)}"


def mib(count: int) -> str:
    return f"{count / 1024 / 1024:.1f} MiB"


# -- job documents shaped like the library writes them ----------------------------------------


class DocFactory:
    """Copies of documents built once by the library (``build_new_job``), with fresh ids and
    dates: raw ``insert_many`` of these is much faster than ``schedule_bulk``."""

    def __init__(self, name: str) -> None:
        now = utcnow()
        self.pending = build_new_job(name, None, now=now).document
        completed = dict(self.pending)
        # What a successful run leaves behind: claim fields, then the outcome write.
        completed.update(
            status="completed",
            lockVersion=1,
            leaseExpiries=0,
            lastRunAt=now,
            claimId=ObjectId(),
        )
        self.completed = completed
        self._random = random.Random(7)

    def due_now(self, count: int) -> list[dict[str, Any]]:
        """``count`` pending jobs due now."""
        now = utcnow()
        return [self._copy(self.pending, now, now) for _ in range(count)]

    def future(self, count: int) -> list[dict[str, Any]]:
        """``count`` pending jobs due between one and thirty days from now."""
        now = utcnow()
        rnd = self._random.random
        day = timedelta(days=1)
        return [self._copy(self.pending, now, now + day + day * (29 * rnd())) for _ in range(count)]

    def finished(self, count: int) -> list[dict[str, Any]]:
        """``count`` completed jobs that ran during the last thirty days."""
        now = utcnow()
        rnd = self._random.random
        out = []
        for _ in range(count):
            ran = now - timedelta(days=30 * rnd())
            doc = self._copy(self.completed, ran, ran)
            doc["lastRunAt"] = ran
            doc["claimId"] = ObjectId()
            out.append(doc)
        return out

    @staticmethod
    def _copy(template: dict[str, Any], created: datetime, due: datetime) -> dict[str, Any]:
        doc = copy.copy(template)
        doc["_id"] = ObjectId()
        doc["createdAt"] = created
        doc["updatedAt"] = created
        doc["nextRunAt"] = due
        return doc


# -- worker subprocesses ----------------------------------------------------------------------


def inside(path: str, folder: Path) -> bool:
    """Whether ``path`` (a file) lies somewhere under ``folder``."""
    return bool(path) and folder.resolve() in Path(path).resolve().parents


@dataclass
class ChildStatus:
    """What one worker subprocess last reported."""

    count: int = 0
    last_run: float = 0.0
    errors: list[str] = field(default_factory=list)
    package: str = ""
    """The ``mongo_job_scheduler/__init__.py`` the process imported (told with ``ready``)."""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when an ``idle`` or ``bare`` child said ``started`` (its scheduler runs)."""
    bye: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Event = field(default_factory=asyncio.Event)


class Child:
    """One ``bench/child.py`` worker process: it builds a Scheduler, says ``ready`` with the
    file of the package it imported, starts on ``go``, reports ``progress <count> <wall time of
    its last handler>`` and stops on ``stop`` (writing the ids it ran to ``ids_file`` in
    ``burn`` mode). In ``idle`` mode it says ``started`` once running and reports each probe
    job it ran to ``on_probe(job id, seconds from due to start)``.

    With ``package_src`` (a directory holding ``mongo_job_scheduler/``, such as another git
    revision's ``src``), the process runs with ``PYTHONPATH=package_src`` and
    :meth:`wait_ready` fails unless the package it imported lies in that directory."""

    def __init__(
        self,
        uri: str,
        database: str,
        *,
        mode: str,
        workers: int,
        poll_interval: float,
        ids_file: Path | None = None,
        package_src: Path | None = None,
        on_probe: Callable[[str, float], None] | None = None,
    ) -> None:
        self.package_src = package_src
        self.on_probe = on_probe
        self.args = [
            "--uri",
            uri,
            "--db",
            database,
            "--mode",
            mode,
            "--workers",
            str(workers),
            "--poll",
            str(poll_interval),
        ]
        if ids_file is not None:
            self.args += ["--ids-file", str(ids_file)]
        self.status = ChildStatus()
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def spawn(self) -> None:
        env = None
        if self.package_src is not None:
            env = {**os.environ, "PYTHONPATH": str(self.package_src)}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD_SCRIPT),
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while True:
            raw = await self.process.stdout.readline()
            if not raw:
                break
            parts = raw.decode().split(maxsplit=1)
            if not parts:
                continue
            kind, rest = parts[0], (parts[1].strip() if len(parts) > 1 else "")
            if kind == "ready":
                self.status.package = rest
                self.status.ready.set()
            elif kind == "progress":
                count, last = rest.split()
                self.status.count = int(count)
                self.status.last_run = float(last)
                self.status.progress.set()
            elif kind == "started":
                self.status.started.set()
            elif kind == "probe":
                job_id, latency = rest.split()
                if self.on_probe is not None:
                    self.on_probe(job_id, float(latency))
            elif kind == "error":
                self.status.errors.append(rest)
            elif kind == "bye":
                self.status.bye.set()
        self.status.ready.set()  # never leave a waiter hanging on a dead child
        self.status.started.set()
        self.status.bye.set()
        self.status.progress.set()

    async def send(self, line: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()

    async def wait_ready(self, timeout: float = 60.0) -> None:
        await asyncio.wait_for(self.status.ready.wait(), timeout)
        if self.process is not None and self.process.returncode not in (None, 0):
            raise RuntimeError(f"worker process exited with {self.process.returncode}")
        if self.package_src is not None and not inside(self.status.package, self.package_src):
            raise RuntimeError(
                f"worker process imported mongo_job_scheduler from "
                f"{self.status.package or '(nothing reported)'}, not from {self.package_src}"
            )

    async def stop(self, timeout: float = 60.0) -> None:
        """Ask the child to stop gracefully; kill it if it does not exit in time."""
        if self.process is None:
            return
        if self.process.returncode is None:
            try:
                await self.send("stop")
                await asyncio.wait_for(self.status.bye.wait(), timeout)
                await asyncio.wait_for(self.process.wait(), timeout)
            except (TimeoutError, asyncio.TimeoutError, ConnectionError):
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
