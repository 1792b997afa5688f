"""The application every chaos worker process runs, through the real CLI:

    python -m mongo_job_scheduler --mongodb-uri URI --database DB worker tests.chaos.app:scheduler

Configured by the environment variable ``MJS_CHAOS`` (JSON, see :class:`ChaosConfig` in
``harness.py``). Every handler execution is appended to ``<history_dir>/<pid>.jsonl`` as it starts
and as it ends, one JSON object per line written with a single ``os.write`` on an ``O_APPEND``
descriptor, so what a process wrote before a SIGKILL is in the file. Times are ``time.time()``
minus the process's configured clock skew, so the records of processes run under libfaketime are
on one time line.

The job's ``data`` drives the handler:

- ``sleep``: seconds to sleep (async, so a lost lease or a hard stop cancels it);
- ``fail``: raise on attempts ``1..fail`` (so the job succeeds on attempt ``fail + 1``);
- ``kill``: the handler sends SIGKILL to its own process (a poison job).

A job named ``chaos-cron`` does nothing but record its slot (``nextRunAt`` of the run).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

from mongo_job_scheduler import Job, Scheduler

NAMES = ("chaos", "chaos-cron")


class History:
    """Append-only execution records of this process."""

    def __init__(self, directory: str, skew: float) -> None:
        os.makedirs(directory, exist_ok=True)
        self.pid = os.getpid()
        self.skew = skew
        path = os.path.join(directory, f"{self.pid}.jsonl")
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def now(self) -> float:
        return time.time() - self.skew

    def write(self, record: dict[str, Any]) -> None:
        os.write(self.fd, (json.dumps(record, default=str) + "\n").encode())


def scheduler() -> Scheduler:
    """Build the chaos worker's scheduler from ``MJS_CHAOS`` (the CLI gives it its store)."""
    config: dict[str, Any] = json.loads(os.environ["MJS_CHAOS"])
    history = History(config["history_dir"], float(config.get("skew", 0)))
    sched = Scheduler(
        workers=int(config.get("workers", 8)),
        poll_interval=float(config.get("poll_interval", 0.5)),
        lock_timeout=float(config.get("lock_timeout", 10)),
        heartbeat_interval=config.get("heartbeat_interval"),
        max_lease_expiries=int(config.get("max_lease_expiries", 3)),
        id=f"chaos-{history.pid}",
    )

    async def run(job: Job) -> None:
        data = job.data if isinstance(job.data, dict) else {}
        key = {
            "job": str(job.id),
            "name": job.name,
            "pid": history.pid,
            "token": job.token,
            "attempt": job.attempts + 1,
            "slot": job.next_run_at.isoformat() if job.next_run_at else None,
        }
        history.write({"event": "start", "t": history.now(), **key})
        outcome = "cancelled"
        try:
            if data.get("kill"):
                os.kill(history.pid, signal.SIGKILL)
            await asyncio.sleep(float(data.get("sleep", 0)))
            if job.attempts < int(data.get("fail", 0)):
                outcome = "error"
                raise RuntimeError(f"attempt {job.attempts + 1} fails on purpose")
            outcome = "ok"
        finally:
            history.write({"event": "end", "t": history.now(), "outcome": outcome, **key})

    for name in config.get("names", NAMES):
        sched.task(name)(run)
    return sched
