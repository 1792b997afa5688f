"""``JobStore.activity``: what each job name is doing (its active jobs and the jobs that
finished in a window, by status, and its due jobs), in reads bounded by limits, over both
stores."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from mongo_job_scheduler import JobStore, _procedures
from tests.contract.helpers import LONG_LEASE, claim_jobs, make


def by_key(raw: Mapping[str, Any]) -> dict[tuple[str, str], int]:
    """The ``counts`` rows of an ``activity`` answer as ``{(name, status): n}``."""
    counts: dict[tuple[str, str], int] = {}
    for row in raw["counts"]:
        key = (row["name"], row["status"])
        assert key not in counts, f"two rows for {key}"
        counts[key] = row["n"]
    return counts


async def test_activity_counts_active_and_recently_finished_jobs_by_name_and_status(
    store: JobStore,
) -> None:
    scheduler = make(store)
    now = await store.now()
    later = now + timedelta(hours=1)
    for _ in range(3):
        await scheduler.schedule("mail", run_at=later)
    overdue = [
        await scheduler.schedule("mail", run_at=now - timedelta(minutes=5 - i)) for i in range(2)
    ]
    report = await scheduler.schedule("report", run_at=later)
    await scheduler.schedule("merge", depends_on=[report.id])  # waiting
    await scheduler.schedule("merge", depends_on=[report.id])
    gone = await scheduler.schedule("cleanup", run_at=later)
    assert await scheduler.cancel(gone.id)
    [claimed] = await claim_jobs(store, "owner", 1, LONG_LEASE, 3)
    assert claimed.job_id == overdue[0].id  # the oldest due job is running now

    raw = await store.activity(now, now - timedelta(minutes=1), 100, 100)
    assert by_key(raw) == {
        ("mail", "pending"): 4,
        ("mail", "running"): 1,
        ("report", "pending"): 1,
        ("merge", "waiting"): 2,
        ("cleanup", "cancelled"): 1,
    }
    assert raw["due"] == {"mail": 1}
    assert raw["oldest_due"] == overdue[1].next_run_at

    # A window that starts after the cancel holds no finished job; nothing is due long ago.
    raw = await store.activity(now - timedelta(hours=1), now + timedelta(minutes=1), 100, 100)
    assert ("cleanup", "cancelled") not in by_key(raw)
    assert raw["due"] == {} and raw["oldest_due"] is None


async def test_activity_reads_the_first_jobs_in_the_index_order_up_to_its_limits(
    store: JobStore,
) -> None:
    """Pending jobs are counted in the claim order (priority first), due jobs likewise among
    the due ones only, waiting ones by name, finished ones newest first: each read stops at
    its limit."""
    scheduler = make(store)
    now = await store.now()
    urgent = await scheduler.schedule("urgent", run_at=now + timedelta(hours=1), priority=1)
    await scheduler.schedule("urgent", run_at=now + timedelta(hours=2), priority=1)
    await scheduler.schedule("slow", run_at=now - timedelta(minutes=1), priority=9)
    await scheduler.schedule("slow", run_at=now - timedelta(minutes=2), priority=9)
    for name in ("zeta", "alpha", "alpha"):
        await scheduler.schedule(name, depends_on=[urgent.id])
    for name in ("old", "new"):
        job = await scheduler.schedule(name, run_at=now + timedelta(days=1))
        assert await scheduler.cancel(job.id)
        await asyncio.sleep(0.01)  # a later updatedAt (milliseconds) for the second one

    raw = await store.activity(now, now - timedelta(minutes=1), 1, 2)
    counts = by_key(raw)
    assert counts[("urgent", "pending")] == 2  # before the due jobs of a lower priority
    assert ("slow", "pending") not in counts
    assert counts[("alpha", "waiting")] == 2 and ("zeta", "waiting") not in counts
    assert counts[("new", "cancelled")] == 1 and ("old", "cancelled") not in counts
    assert raw["due"] == {"slow": 2}
    assert raw["oldest_due"] is not None
    assert raw["oldest_due"] <= now - timedelta(minutes=2) + timedelta(seconds=1)

    raw = await store.activity(now, now - timedelta(minutes=1), 10, 1)
    assert raw["due"] == {"slow": 1}
    assert sum(n for (_, status), n in by_key(raw).items() if status == "pending") == 1


async def test_the_scheduler_says_which_counts_stopped_at_their_limit(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_procedures, "ACTIVITY_READ_LIMIT", 2)
    monkeypatch.setattr(_procedures, "THROUGHPUT_READ_LIMIT", 3)
    scheduler = make(store)
    now = await store.now()
    for i in range(3):
        await scheduler.schedule("a", run_at=now - timedelta(minutes=i + 1))
    await scheduler.schedule("b", run_at=now + timedelta(hours=1))
    for _ in range(2):
        assert await scheduler.cancel((await scheduler.schedule("c", delay=60)).id)
    seen = await scheduler.activity(minutes=1)
    assert seen.by_name == {"a": {"pending": 2}, "c": {"cancelled": 2}}
    assert seen.capped == {"pending", "due"}
    assert seen.due == 2 and seen.lag is not None and seen.lag >= timedelta(minutes=2)
    assert await scheduler.cancel((await scheduler.schedule("c", delay=60)).id)
    again = await scheduler.activity(minutes=1)
    assert again.by_name["c"] == {"cancelled": 3}
    assert again.capped == {"pending", "due", "cancelled"}
