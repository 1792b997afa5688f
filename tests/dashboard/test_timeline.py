"""The timeline on a job's page (``_job_timeline.html``), in Chromium and over HTTP: a job
seeded through the server's own store with real claims and outcome writes (a retried attempt,
a lost lease, a running attempt with progress), what it waits for and what waits for it, a
cancel from the page, a repeating job's next run; every instant a ``time.rel`` element."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from mongo_job_scheduler import AttemptOutcome, Job
from mongo_job_scheduler._history import Ending
from mongo_job_scheduler.stores.base import Claimed, Fence, Finish
from tests.helpers import eventually

from .conftest import DashboardServer

expect: Any
try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips those tests
    expect = None

LEASE = timedelta(minutes=5)
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
EXACT_UTC = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$")


def _claim(dashboard: DashboardServer, owner: str, name: str, lease: timedelta = LEASE) -> Claimed:
    store = dashboard.scheduler.store
    assert store is not None
    result = dashboard.run(lambda s: store.claim(owner, 1, lease, 10, [name]))
    [claimed] = result.jobs
    return claimed


def _finish(dashboard: DashboardServer, claimed: Claimed, owner: str, finish: Finish) -> None:
    store = dashboard.scheduler.store
    assert store is not None
    fence = Fence(claimed.job_id, owner, claimed.token)
    assert dashboard.run(lambda s: store.finish(fence, finish))


def _seed(dashboard: DashboardServer) -> tuple[Job, Job, Job]:
    """``transform``: waited for ``extract`` (completed), retried once with an error, lost
    its lease, and now runs on ``w-3`` at 40%; ``load`` waits for it."""
    extract = dashboard.jobs.schedule("extract")
    _finish(
        dashboard,
        _claim(dashboard, "w-0", "extract"),
        "w-0",
        Finish({"status": "completed"}, attempt=Ending(AttemptOutcome.COMPLETED)),
    )
    transform = dashboard.jobs.schedule("transform", depends_on=[extract], retry=3)
    load = dashboard.jobs.schedule("load", depends_on=[transform])
    first = _claim(dashboard, "w-1", "transform")
    again = {
        "status": "pending",
        "attempts": 1,
        "nextRunAt": datetime.now(timezone.utc) - timedelta(seconds=1),
        "lastError": "<b>upstream</b> said no",
    }
    failed = Ending.of(
        AttemptOutcome.RETRIED, "<b>upstream</b> said no", "ValueError", timedelta(seconds=2)
    )
    _finish(dashboard, first, "w-1", Finish(again, attempt=failed))
    _claim(dashboard, "w-2", "transform", lease=timedelta(milliseconds=200))
    third = eventually(lambda: _try_claim(dashboard, "w-3", "transform"), timeout=10)
    store = dashboard.scheduler.store
    assert store is not None
    progress = {
        "percent": 40.0,
        "message": "halfway there",
        "updatedAt": datetime.now(timezone.utc),
    }
    fence = Fence(third.job_id, "w-3", third.token)
    dashboard.run(lambda s: store.record_progress([(fence, progress)]))
    return extract, transform, load


def _try_claim(dashboard: DashboardServer, owner: str, name: str) -> Claimed | None:
    store = dashboard.scheduler.store
    assert store is not None
    result = dashboard.run(lambda s: store.claim(owner, 1, LEASE, 10, [name]))
    return result.jobs[0] if result.jobs else None


def _assert_times(page: Any) -> int:
    """Every instant of the timeline is ``<time class="rel" datetime="…Z">``, rendered as exact
    UTC text; the page's script shows it relative, with the same instant in the title (in the
    browser's zone). Returns how many there are."""
    times = page.locator("#timeline time")
    count = times.count()
    served = page.request.get(page.url).text()
    for i in range(count):
        element = times.nth(i)
        assert element.get_attribute("class") == "rel"
        iso = element.get_attribute("datetime")
        assert ISO_UTC.match(iso or ""), iso
        at = datetime.fromisoformat((iso or "").replace("Z", "+00:00"))
        exact = at.strftime("%Y-%m-%d %H:%M:%SZ")
        assert f'datetime="{iso}">{exact}</time>' in served  # the text without the script
        title = eventually(lambda element=element: element.get_attribute("title"))
        if title.endswith(" UTC"):  # the browser's zone; other zones show other wall times
            assert title == at.strftime("%Y-%m-%d %H:%M:%S UTC")
        assert not EXACT_UTC.match(element.inner_text())  # shown relative
    return count


def test_the_timeline_of_a_retried_job_that_lost_a_lease_and_runs_now(
    signed_in: Any, dashboard: DashboardServer
) -> None:
    page = signed_in
    extract, transform, load = _seed(dashboard)
    page.goto(f"/jobs/{transform.id}")
    steps = page.locator("#timeline > li")
    expect(steps).to_have_count(6)
    kinds = [steps.nth(i).get_attribute("data-kind") for i in range(6)]
    assert kinds == ["created", "waits", "attempt", "attempt", "running", "dependants"]

    waits = steps.nth(1)
    expect(waits).to_contain_text("Waited for")
    expect(waits.locator(f"a[href='/jobs/{extract.id}']")).to_have_text("extract")
    expect(waits).to_contain_text("completed")

    retried = page.locator("#timeline > li[data-outcome='retried']")
    expect(retried).to_have_attribute("data-token", "1")
    expect(retried.locator(".tl-title")).to_have_text("failed, retried")
    expect(retried.locator(".tl-meta")).to_have_text("worker w-1 · token 1")
    expect(retried.locator(".tl-error")).to_have_text("ValueError: <b>upstream</b> said no")
    assert retried.locator(".tl-error b").count() == 0  # shown as text, never as markup
    expect(retried.locator(".tl-retry")).to_contain_text("Next attempt after 2.0 s, at ")
    assert retried.locator("time").count() == 3  # start, end, retry time

    lost = page.locator("#timeline > li[data-outcome='lease_lost']")
    expect(lost).to_have_attribute("data-token", "2")
    expect(lost.locator(".tl-title")).to_have_text("lease lost")
    expect(lost.locator(".tl-meta")).to_have_text("worker w-2 · token 2")
    expect(lost.locator(".tl-duration")).to_have_text(re.compile(r"^\d+ ms$"))

    running = steps.nth(4)
    expect(running.locator(".tl-meta")).to_contain_text("worker w-3 · token 3 · lease until")
    expect(running.locator(".tl-progress")).to_contain_text("40% · halfway there")
    assert running.locator("progress").get_attribute("value") == "40.0"
    expect(steps.nth(5).locator(f"a[href='/jobs/{load.id}']")).to_have_text("load")
    expect(steps.nth(5)).to_contain_text("waiting")
    assert _assert_times(page) == 1 + 3 + 2 + 2  # created; retried; lost; running + lease

    # Cancelled from the page: the running attempt ends as cancelled, and the job with it.
    page.click("#job-actions [data-action=cancel]")
    expect(page.locator("#flash")).to_have_text(f"Job {transform.id} cancelled.")
    cancelled = page.locator("#timeline > li[data-outcome='cancelled']")
    expect(cancelled).to_have_attribute("data-token", "3")
    expect(cancelled.locator(".tl-meta")).to_have_text("worker w-3 · token 3")
    ended = page.locator("#timeline > li[data-kind='ended']")
    expect(ended.locator(".tl-title")).to_have_text("Cancelled")
    expect(page.locator("#timeline > li[data-kind='running']")).to_have_count(0)
    progress = page.locator("#timeline > li[data-kind='progress']")
    expect(progress).to_contain_text("40% · halfway there")
    _assert_times(page)


def test_a_repeating_job_shows_its_next_run(signed_in: Any, dashboard: DashboardServer) -> None:
    page = signed_in
    tick = dashboard.jobs.schedule("tick", repeat={"every": 3600})
    dashboard.sync_db["scheduler_jobs"].update_one(
        {"_id": tick.id}, {"$set": {"nextRunAt": datetime.now(timezone.utc)}}
    )
    claimed = _claim(dashboard, "w-1", "tick")
    following = datetime.now(timezone.utc) + timedelta(hours=1)
    slot = following.replace(microsecond=0)
    _finish(
        dashboard,
        claimed,
        "w-1",
        Finish(
            {"status": "pending", "nextRunAt": slot, "lastScheduledAt": slot, "result": 7},
            attempt=Ending(AttemptOutcome.COMPLETED),
        ),
    )
    page.goto(f"/jobs/{tick.id}")
    steps = page.locator("#timeline > li")
    expect(steps).to_have_count(3)
    expect(page.locator("#timeline > li[data-outcome='completed'] .tl-title")).to_have_text(
        "completed"
    )
    upcoming = page.locator("#timeline > li[data-kind='next']")
    expect(upcoming.locator(".tl-title")).to_have_text("Next run")
    expect(upcoming.locator(".tl-meta")).to_have_text("repeats every 1 h 0 min")
    expect(upcoming.locator("time.rel")).to_have_attribute(
        "datetime", slot.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    _assert_times(page)


def test_a_job_that_never_ran_and_a_full_history(dashboard: DashboardServer) -> None:
    """Over HTTP: a new job shows its creation and when it is due; a job whose history is
    full says older attempts are not shown, and error text is escaped."""
    job = dashboard.jobs.schedule("fresh", delay=600)
    entries = [
        {"outcome": "retried", "lockedBy": "w", "lockVersion": n, "error": "<i>x</i>"}
        for n in range(1, 21)
    ]
    full = dashboard.jobs.schedule("busy", delay=600)
    dashboard.sync_db["scheduler_jobs"].update_one({"_id": full.id}, {"$set": {"history": entries}})
    with dashboard.client(headers={"Authorization": f"Bearer {dashboard.token}"}) as client:
        fresh = client.get(f"/jobs/{job.id}").text
        busy = client.get(f"/jobs/{full.id}").text
        partial = client.get(f"/partials/jobs/{full.id}").text
    assert re.findall(r'data-kind="(\w+)"', fresh) == ["created", "next"]
    assert ">Due<" in fresh and 'id="timeline-cut"' not in fresh
    assert 'id="timeline-cut"' in busy and "last 20 attempts" in busy
    assert busy.count('data-kind="attempt"') == 20
    assert "&lt;i&gt;x&lt;/i&gt;" in busy and "<i>x</i>" not in busy
    assert 'id="timeline"' in partial  # live refresh renders it too
