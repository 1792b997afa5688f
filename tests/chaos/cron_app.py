"""The chaos worker app (:mod:`tests.chaos.app`) plus a cron declared at start-up, as a real
deployment does it: every process declares the same repeating job when its workers start, and
the dedupe key makes the declarations resolve to one job.

    python -m mongo_job_scheduler ... worker tests.chaos.cron_app:scheduler

Configured by ``MJS_CHAOS`` like :mod:`tests.chaos.app`, with one more key, ``cron``:
``{"expression", "misfire", "dedupe_key", "declared_dir"}``. Each declaration writes
``<declared_dir>/<pid>-<n>.json``: ``{"pid", "owner", "job"}``, or ``{"pid", "owner", "error"}``
if ``schedule`` raised.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mongo_job_scheduler import Scheduler
from tests.chaos import app

CRON_NAME = "chaos-cron"


def write_record(directory: str, name: str, record: dict[str, Any]) -> None:
    """Write ``record`` as JSON to ``directory/name`` atomically (a tiny local file)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path + ".tmp", "w") as out:
        json.dump(record, out)
    os.replace(path + ".tmp", path)


def scheduler() -> Scheduler:
    config: dict[str, Any] = json.loads(os.environ["MJS_CHAOS"])
    cron: dict[str, Any] = config["cron"]
    sched = app.scheduler()
    declared = 0

    async def declare(owner: str) -> None:
        nonlocal declared
        declared += 1
        record: dict[str, Any] = {"pid": os.getpid(), "owner": owner}
        try:
            # --8<-- [start:declare]
            job = await sched.schedule(
                CRON_NAME,
                repeat={"cron": cron["expression"], "misfire": cron["misfire"]},
                dedupe_key=cron["dedupe_key"],
            )
            # --8<-- [end:declare]
            record["job"] = str(job.id)
        except Exception as exc:  # reported to the driver, which fails the test
            record["error"] = repr(exc)
        write_record(cron["declared_dir"], f"{os.getpid()}-{declared}.json", record)

    sched.on("worker:start", declare)
    return sched
