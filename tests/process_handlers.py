"""Handlers of the process-executor tests. They run in child processes, which import them by
module and name, so they live at the top level of this importable module. Each one that needs
to tell the test something writes it to the job (its progress, its result) or to a file whose
path is in ``job.data``."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from mongo_job_scheduler import Job


def pid(job: Job) -> int:
    """Returns the pid of the process it ran in."""
    return os.getpid()


async def async_pid(job: Job) -> int:
    """An async handler: returns the pid of the process it ran in."""
    return os.getpid()


def noop(job: Job) -> None:
    return None


def spin(job: Job) -> None:
    """Reports its pid as progress, then spins on the CPU without ever looking at a stop
    request. On its way out (the worker's SIGTERM raises ``SystemExit``) it writes the stop
    reason it sees to ``job.data["stopped"]``, if given."""
    job.report_progress(1, str(os.getpid()))
    try:
        while True:
            pass
    finally:
        marker = (job.data or {}).get("stopped")
        if marker:
            reason = job.stop_reason.value if job.stop_reason else "none"
            Path(marker).write_text(reason)


def spin_deaf(job: Job) -> None:
    """Like :func:`spin`, but ignores SIGTERM: only SIGKILL ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    job.report_progress(1, str(os.getpid()))
    while True:
        pass


def kill_self(job: Job) -> None:
    """Reports its pid as progress, then dies by SIGKILL (as under the out-of-memory
    killer)."""
    job.report_progress(1, str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)


def exit_3(job: Job) -> None:
    """Leaves its process with ``os._exit(3)``."""
    os._exit(3)


def raise_value_error(job: Job) -> None:
    raise ValueError(f"bad value {job.data!r}")


def unpicklable(job: Job) -> Any:
    """Returns a value that cannot leave its process."""
    return lambda: None


def unstorable(job: Job) -> Any:
    """Returns a value that travels but cannot be stored (a set is not BSON)."""
    return {1, 2, 3}


def report_then_wait(job: Job) -> str:
    """Reports 50% ("half"), waits until ``job.data["release"]`` exists, reports 100%
    ("done") and returns ``"finished"``."""
    job.report_progress(50, "half")
    release = Path(job.data["release"])
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    job.report_progress(100, "done")
    return "finished"


def wait_for_file(job: Job) -> int:
    """Reports its pid as progress, then waits until ``job.data["release"]`` exists and
    returns its pid."""
    job.report_progress(1, str(os.getpid()))
    release = Path(job.data["release"])
    deadline = time.monotonic() + 60
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()


def grow(job: Job) -> int:
    """Keeps ``job.data["mib"]`` MiB alive in its process (a leak) and returns its pid."""
    _LEAK.append(b"x" * (job.data["mib"] << 20))
    return os.getpid()


_LEAK: list[bytes] = []
