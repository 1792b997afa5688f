"""How the dashboard looks and reads, in headless Chromium over a real MongoDB: relative times,
the overview's charts against a seeded collection, filters, the workers page, any width from
390 px, keyboard use, dark mode. Screenshots of every page at 1280 and 390 px are written to
``$DASHBOARD_ARTIFACTS`` (default ``tests/dashboard/artifacts/``, git-ignored)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId

from mongo_job_scheduler import Scheduler
from mongo_job_scheduler._format import fmt_iso
from tests.helpers import eventually

from .conftest import DashboardServer

expect: Any
try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips those tests
    expect = None

ARTIFACTS = Path(os.environ.get("DASHBOARD_ARTIFACTS") or Path(__file__).parent / "artifacts")
WIDTHS = (1280, 390)
LONG_NAME = "reports.generate-monthly-invoice-pdf-for-every-customer"

NewPage = Callable[..., Any]


@pytest.fixture
def new_page(browser: Any, dashboard: DashboardServer) -> Iterator[NewPage]:
    """``new_page(**context_options)``: a signed-in page in a context of its own (viewport,
    colour scheme, time zone...)."""
    contexts: list[Any] = []

    def make(**options: Any) -> Any:
        context = browser.new_context(base_url=dashboard.base_url, **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.goto("/login")
        page.fill("#token", dashboard.token)
        page.click("button[type=submit]")
        page.wait_for_url(f"{dashboard.base_url}/")
        return page

    try:
        yield make
    finally:
        for context in contexts:
            context.close()


def _db_now(dashboard: DashboardServer) -> datetime:
    now: datetime = dashboard.jobs.store.now()
    return now


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _seed_finished(dashboard: DashboardServer) -> dict[str, Any]:
    """Jobs that finished at known minutes, with known waits before their starts (written
    straight to the collection), and a few active ones. Returns what the charts must show."""
    now = _db_now(dashboard)
    this_minute = _minute(now)
    docs: list[dict[str, Any]] = []

    def finished(name: str, status: str, minutes_ago: int, wait_s: float | None) -> None:
        at = this_minute - timedelta(minutes=minutes_ago) + timedelta(seconds=2)
        doc: dict[str, Any] = {
            "_id": ObjectId(),
            "name": name,
            "status": status,
            "priority": 5,
            "attempts": 0,
            "data": {},
            "createdAt": at - timedelta(minutes=1),
            "updatedAt": at,
        }
        if wait_s is not None:
            doc["nextRunAt"] = at - timedelta(seconds=40)
            doc["lastRunAt"] = doc["nextRunAt"] + timedelta(seconds=wait_s)
        docs.append(doc)

    for wait in (1, 3, 8):  # three completed five minutes ago, one failed
        finished("alpha", "completed", 5, wait)
    finished("alpha", "failed", 5, 2)
    finished("beta", "completed", 12, 30)  # waited 30 s
    finished("beta", "cancelled", 12, None)  # never ran
    finished("beta", "completed", 90, 1)  # outside the hour
    dashboard.sync_db["scheduler_jobs"].insert_many(docs)
    dashboard.jobs.schedule_bulk(
        [{"name": "alpha", "run_at": now + timedelta(hours=1)} for _ in range(4)]
    )
    return {
        "five": this_minute - timedelta(minutes=5),
        "twelve": this_minute - timedelta(minutes=12),
    }


# -- relative times -----------------------------------------------------------------------------


def test_times_are_exact_utc_in_the_html_and_relative_in_the_browser(
    new_page: NewPage, dashboard: DashboardServer
) -> None:
    now = _db_now(dashboard)
    soon = dashboard.jobs.schedule(
        "relative", {"n": 1}, run_at=now + timedelta(minutes=12, seconds=20)
    )
    late = dashboard.jobs.schedule("relative", {"n": 2}, delay=3600)
    old = now - timedelta(hours=3)
    overdue_at = now - timedelta(minutes=5)
    dashboard.sync_db["scheduler_jobs"].update_one(
        {"_id": late.id}, {"$set": {"nextRunAt": overdue_at, "updatedAt": old}}
    )
    # Without the script: <time class="rel" datetime="...Z">the exact UTC moment</time>.
    with dashboard.client(headers={"Authorization": f"Bearer {dashboard.token}"}) as client:
        html = client.get(f"/jobs/{late.id}").text
    stored = dashboard.jobs.get_job(late.id)
    assert stored is not None and stored.next_run_at is not None
    exact = stored.next_run_at.strftime("%Y-%m-%d %H:%M:%S")
    assert (
        f'<time class="rel" data-due datetime="{fmt_iso(stored.next_run_at)}">{exact}Z</time>'
        in html
    )
    assert re.search(r'datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"', html)

    # In the browser (Tokyo: UTC+9, no daylight saving time).
    page = new_page(timezone_id="Asia/Tokyo")
    page.goto("/jobs?name=relative")
    soon_row = page.locator(f"tr[data-job-id='{soon.id}']")
    late_row = page.locator(f"tr[data-job-id='{late.id}']")
    expect(soon_row.locator("td.when").nth(1)).to_have_text(re.compile(r"^in 1[12] min$"))
    expect(late_row.locator("td.when").nth(1)).to_have_text(re.compile(r"^overdue by [45] min$"))
    expect(late_row.locator("td.when").nth(3)).to_have_text("3 h ago")
    expect(late_row.locator("td.when").nth(0)).to_have_text(re.compile(r"^\d+ s ago$"))
    title = late_row.locator("td.when time").nth(1).get_attribute("title")
    local = (stored.next_run_at + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S")
    assert title == f"{local} Asia/Tokyo"
    # The job's page says the same; a finished job's past due time is not "overdue".
    page.goto(f"/jobs/{late.id}")
    expect(page.locator("#job-next-run time")).to_have_text(re.compile(r"^overdue by [45] min$"))
    dashboard.jobs.cancel(late.id)
    # Live refresh swaps the HTML in; the times in it read relative again at once.
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=10_000)
    expect(page.locator("#job-next-run time")).to_have_text(re.compile(r"^[45] min ago$"))
    assert page.evaluate("window.__sameDocument") is True


def test_a_browser_in_utc_sees_utc_in_the_titles(
    new_page: NewPage, dashboard: DashboardServer
) -> None:
    job = dashboard.jobs.schedule("utc", delay=7200)
    page = new_page(timezone_id="UTC")
    page.goto(f"/jobs/{job.id}")
    expect(page.locator("#job-next-run time")).to_have_text("in 2 h")
    assert page.locator("#job-next-run time").get_attribute("title").endswith(" UTC")


# -- charts -------------------------------------------------------------------------------------


def test_the_overview_charts_show_the_seeded_numbers(
    new_page: NewPage, dashboard: DashboardServer
) -> None:
    minutes = _seed_finished(dashboard)
    five, twelve = fmt_iso(minutes["five"]), fmt_iso(minutes["twelve"])
    page = new_page()
    page.goto("/")
    # Totals of the hour, in the legend.
    expect(page.locator("#total-completed")).to_have_text("4")
    expect(page.locator("#total-failed")).to_have_text("1")
    expect(page.locator("#total-cancelled")).to_have_text("1")
    # Finished per minute: one stacked bar per minute with jobs, each segment its count.
    finished = page.locator("#finished-chart svg.bars")
    assert finished.get_attribute("role") == "img"
    expect(finished.locator("title").first).to_have_text(re.compile("Jobs finished per minute"))
    assert "4 completed, 1 failed and 1 cancelled" in (
        finished.locator("desc").text_content() or ""
    )
    assert finished.locator("g.bar").count() == 2

    def values(chart: Any, minute: str) -> dict[str, str]:
        bar = chart.locator(f"g.bar[data-minute='{minute}'] rect")
        pairs = bar.evaluate_all("rs => rs.map(r => [r.getAttribute('class'), r.dataset.value])")
        return dict(pairs)

    assert values(finished, five) == {"seg seg-completed": "3", "seg seg-failed": "1"}
    assert values(finished, twelve) == {"seg seg-completed": "1", "seg seg-cancelled": "1"}
    # The scale's top is 5 (the busiest minute had 4): that bar fills 4/5 of the height.
    expect(page.locator("#finished-top")).to_have_text("5")
    heights = finished.locator(f"g.bar[data-minute='{five}'] rect").evaluate_all(
        "rs => rs.map(r => parseFloat(r.getAttribute('height')))"
    )
    assert sum(heights) == pytest.approx(80, abs=0.05)
    # Wait before start: the longest wait of each minute (8 s, 30 s), on a 30 s scale.
    waits = page.locator("#wait-chart svg.bars")
    assert values(waits, five) == {"seg seg-wait": "8000"}
    assert values(waits, twelve) == {"seg seg-wait": "30000"}
    expect(page.locator("#wait-top")).to_have_text("30 s")
    expect(page.locator("#longest-wait")).to_have_text("30.0 s")
    # The same numbers as a table.
    page.click("#chart-numbers summary")
    row = page.locator(f"#throughput tr[data-minute='{five}']")
    expect(row.locator("[data-outcome=completed]")).to_have_text("3")
    expect(row.locator("[data-outcome=failed]")).to_have_text("1")
    expect(row.locator("td").nth(3)).to_have_text("8.0 s")  # longest
    expect(row.locator("td").nth(4)).to_have_text("3.5 s")  # mean of 1, 3, 8 and 2 s
    assert page.locator("#throughput tbody tr").count() == 2
    # The table stays open across live refreshes.
    page.wait_for_selector("#overview[data-refreshed-at]", state="attached")
    expect(page.locator("#active")).to_have_text("4")  # alpha's pending jobs
    dashboard.jobs.schedule("gamma", delay=60)
    expect(page.locator("#active")).to_have_text("5", timeout=10_000)
    expect(page.locator("#throughput")).to_be_visible()

    # A bar per name with its status mix, beside the counts: its jobs pending, running or
    # waiting now, and those that finished in the charts' window.
    def mix(name: str) -> list[list[str]]:
        bar = page.locator(f"#by-name tr[data-name='{name}'] svg.mix rect")
        found: list[list[str]] = bar.evaluate_all(
            "rs => rs.map(r => [r.getAttribute('class'), r.dataset.value, r.getAttribute('width')])"
        )
        return found

    assert mix("alpha") == [
        ["seg seg-pending", "4", "50.000"],
        ["seg seg-completed", "3", "37.500"],
        ["seg seg-failed", "1", "12.500"],
    ]
    expect(page.locator("#by-name tr[data-name='alpha'] td[data-status=pending]")).to_have_text("4")
    # beta's job that completed 90 minutes ago is outside the window: not in its mix.
    assert mix("beta") == [
        ["seg seg-completed", "1", "50.000"],
        ["seg seg-cancelled", "1", "50.000"],
    ]
    beta = page.locator("#by-name tr[data-name='beta']")
    expect(beta.locator("td[data-status=completed]")).to_have_text("1")
    expect(beta.locator("td").last).not_to_contain_text("+")
    headers = page.locator("#by-name thead th[scope=colgroup]").all_inner_texts()
    assert headers == ["Now", "Finished in the last 60 min"]
    expect(page.locator("#by-status td[data-status=completed]")).to_have_text("4")
    expect(page.locator("#failed-recently")).to_have_text("1")


def test_the_overview_says_when_nothing_finished(
    new_page: NewPage, dashboard: DashboardServer
) -> None:
    page = new_page()
    page.goto("/")
    assert "none finished" in (page.locator("#finished-chart desc").text_content() or "")
    assert page.locator("#finished-chart g.bar").count() == 0
    page.click("#chart-numbers summary")
    expect(page.locator("#throughput tbody")).to_contain_text(
        "No job finished in the last 60 minutes"
    )


# -- filters ------------------------------------------------------------------------------------


def test_filters_suggest_names_keep_the_url_and_sort_on_indexed_columns_only(
    new_page: NewPage, dashboard: DashboardServer
) -> None:
    dashboard.jobs.schedule_bulk(
        [{"name": name, "delay": 600 + i} for i, name in enumerate(["b-job", "a-job", "c-job"] * 2)]
    )
    failed = dashboard.jobs.schedule("a-job", delay=60)
    dashboard.sync_db["scheduler_jobs"].update_one(
        {"_id": failed.id}, {"$set": {"status": "failed"}}
    )
    page = new_page()
    page.goto("/jobs")
    options = page.locator("#job-names option").evaluate_all("os => os.map(o => o.value)")
    assert options == ["a-job", "b-job", "c-job"]
    assert page.locator("#f-name").get_attribute("list") == "job-names"
    # Sorting on a column: its header is a link; the page's URL holds the whole view.
    page.click("#jobs th a[data-sort=name]")
    page.wait_for_url(re.compile(r"sort=name&dir=asc"))
    names = page.locator("#jobs tbody th .name").all_inner_texts()
    assert names == sorted(names) and len(names) == 7
    expect(page.locator("#jobs th[aria-sort=ascending]")).to_contain_text("Name")
    shared = page.locator("#share-link").get_attribute("href")
    assert shared is not None and "sort=name" in shared and "dir=asc" in shared
    # Priority and Updated sort only where an index keeps that order: the header says why.
    priority = page.locator("#jobs thead th", has_text="Priority")
    assert priority.locator("a").count() == 0
    assert "pending alone" in (priority.locator("span").get_attribute("title") or "")
    page.click("label.chip-pending")
    page.wait_for_url(re.compile(r"status=pending"))
    # The chip shows its state with a check mark, not with colour alone.
    mark = page.locator("label.chip-pending span").evaluate(
        "s => getComputedStyle(s, '::before').content"
    )
    assert "✓" in mark
    page.click("#jobs th a[data-sort=priority]")
    page.wait_for_url(re.compile(r"sort=priority"))
    expect(page.locator("#page-range")).to_have_text("Jobs 1 to 6")
    # Adding a status the order does not hold is refused with a way out.
    page.click("label.chip-failed")
    page.wait_for_url(re.compile(r"status=failed"))
    expect(page.locator("#error")).to_contain_text("needs the status filter pending alone")
    page.click("#fallback")
    page.wait_for_url(re.compile(r"sort=createdAt"))
    expect(page.locator("#page-range")).to_have_text("Jobs 1 to 7")
    # Finished statuses sort by when they ended.
    page.goto("/jobs?status=failed")
    page.click("#jobs th a[data-sort=updatedAt]")
    page.wait_for_url(re.compile(r"sort=updatedAt&dir=desc"))
    expect(page.locator(f"tr[data-job-id='{failed.id}']")).to_be_visible()
    # A column no index keeps is never a link, and typed into the URL it is refused.
    assert page.locator("#jobs th a[data-sort=nextRunAt]").count() == 0
    response = page.goto("/jobs?sort=lastRunAt")
    assert response is not None and response.status == 400
    expect(page.locator("#error")).to_contain_text("no index keeps jobs in that order")


# -- workers ------------------------------------------------------------------------------------


def test_the_workers_page_lists_the_fleet(new_page: NewPage, dashboard: DashboardServer) -> None:
    async def start_worker(scheduler: Scheduler) -> Scheduler:
        worker = Scheduler(scheduler.store, id="page-worker", workers=3)

        @worker.task("thumbnail")
        async def thumbnail(job: Any) -> None: ...

        @worker.task("transcode")
        async def transcode(job: Any) -> None: ...

        await worker.start()
        return worker

    page = new_page()
    page.goto("/")
    page.click("#nav-workers")
    page.wait_for_url(re.compile(r"/workers$"))
    expect(page.locator("#no-workers")).to_be_visible()
    worker = dashboard.run(start_worker)
    try:
        row = page.locator("#live-workers tbody tr")
        expect(row).to_have_count(1, timeout=10_000)  # the live refresh brings it in
        expect(row.locator("th")).to_have_text(re.compile(r"^page-worker-"))
        expect(row.locator("td.names")).to_have_text("thumbnail, transcode")
        expect(row.locator("td.names a").first).to_have_attribute("href", "/jobs?name=thumbnail")
        expect(row.locator(".running")).to_have_text("0 / 3")
        cells = row.locator("td").all_inner_texts()
        assert cells[2] == os.uname().nodename and cells[3] == str(os.getpid())
        expect(row.locator("td").nth(4)).to_have_text(re.compile(r"^\d+ s ago$"))
        expect(row.locator("td").nth(5)).to_have_text(re.compile(r"^(\d+ s ago|now)$"))
        expect(page.locator("#fleet-count")).to_have_text("1")
        expect(page.locator("#fleet-running")).to_have_text("0 of 3")
    finally:
        dashboard.run(lambda _: worker.stop(graceful=False))


# -- any width, keyboard, dark mode -------------------------------------------------------------


def _page_overflow(page: Any) -> int:
    """How far the page scrolls sideways (0: not at all)."""
    width: int = page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
    return width


def _pages(dashboard: DashboardServer) -> dict[str, str]:
    """A path of each page, over jobs with long names and long data."""
    job = dashboard.jobs.schedule(LONG_NAME, {"note": "x" * 300, "tags": ["a"] * 40}, delay=90)
    due = dashboard.jobs.schedule(LONG_NAME + "-again", delay=60)  # no worker handles it
    dashboard.sync_db["scheduler_jobs"].update_one(
        {"_id": due.id}, {"$set": {"nextRunAt": datetime.now(timezone.utc) - timedelta(minutes=1)}}
    )
    dashboard.sync_db["scheduler_jobs"].update_one(
        {"_id": job.id},
        {"$set": {"status": "failed", "lastError": "ValueError: " + "a long message " * 20}},
    )
    return {"overview": "/", "jobs": "/jobs", "job": f"/jobs/{job.id}", "workers": "/workers"}


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_fits_390_and_1280_pixels_and_is_kept_as_screenshots(
    new_page: NewPage, dashboard: DashboardServer, scheme: str
) -> None:
    _seed_finished(dashboard)
    paths = _pages(dashboard)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        page = new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
        for label, path in paths.items():
            page.goto(path)
            page.wait_for_load_state("load")
            if label in ("overview", "workers"):
                expect(page.locator("#unhandled .name")).to_have_text(LONG_NAME + "-again")
            assert _page_overflow(page) <= 0, (label, width, _page_overflow(page))
            page.screenshot(path=str(ARTIFACTS / f"{label}-{width}-{scheme}.png"), full_page=True)
        # A long name never breaks inside: one line, in a box of its own if it must scroll.
        page.goto(paths["job"])
        lines = page.locator("#job-name").evaluate("e => e.getClientRects().length")
        height = page.locator("#job-name").evaluate("e => e.getBoundingClientRect().height")
        line = page.locator("#job-name").evaluate(
            "e => parseFloat(getComputedStyle(e).lineHeight) || 20"
        )
        assert lines == 1 and height < 2 * line, (width, height, line)
        if width == 390:
            # Wide tables scroll inside their own box.
            page.goto("/jobs")
            box = page.locator("#jobs-table .table-scroll")
            assert box.evaluate("e => e.scrollWidth > e.clientWidth")
            assert box.evaluate("e => getComputedStyle(e).overflowX") == "auto"
    for width in WIDTHS:
        for label in paths:
            assert (ARTIFACTS / f"{label}-{width}-{scheme}.png").stat().st_size > 10_000


def test_dark_mode_follows_the_system_setting(
    new_page: NewPage, dashboard: DashboardServer
) -> None:
    dashboard.jobs.schedule("dark", delay=60)
    page = new_page()
    page.goto("/jobs")

    def colours() -> dict[str, str]:
        result: dict[str, str] = page.evaluate(
            """() => ({
                body: getComputedStyle(document.body).backgroundColor,
                text: getComputedStyle(document.body).color,
                badge: getComputedStyle(document.querySelector('.status-pending')).color,
                table: getComputedStyle(document.querySelector('#jobs')).backgroundColor,
            })"""
        )
        return result

    def luminance(rgb: str) -> float:
        r, g, b = (int(x) for x in re.findall(r"\d+", rgb)[:3])
        return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255

    light = colours()
    page.emulate_media(color_scheme="dark")
    dark = colours()
    assert luminance(light["body"]) > 0.9 and luminance(dark["body"]) < 0.15
    assert luminance(light["text"]) < 0.3 and luminance(dark["text"]) > 0.8
    assert luminance(dark["table"]) < 0.2
    assert dark["badge"] != light["badge"] and luminance(dark["badge"]) > 0.5
    page.emulate_media(color_scheme="light")
    assert colours() == light


def test_everything_is_reachable_with_the_keyboard_and_focus_shows(
    new_page: NewPage, dashboard: DashboardServer
) -> None:
    job = dashboard.jobs.schedule("keys", delay=600)
    page = new_page()
    page.goto("/jobs")

    def focused() -> dict[str, Any]:
        result: dict[str, Any] = page.evaluate(
            """() => {
                const e = document.activeElement;
                const shown = e.matches('.chip input') ? e.nextElementSibling : e;
                const style = getComputedStyle(shown);
                return {id: e.id, text: (e.textContent || '').trim(), tag: e.tagName,
                        outline: style.outlineStyle, width: style.outlineWidth};
            }"""
        )
        return result

    seen: list[dict[str, Any]] = []
    for _ in range(60):
        page.keyboard.press("Tab")
        seen.append(focused())
        if seen[-1]["id"] == "f-status-failed":
            break
    assert seen[0]["text"] == "Skip to the content"
    assert [s["text"] for s in seen if s["tag"] == "A"][:6] == [
        "Skip to the content",
        "Test dashboard",
        "Overview",
        "Jobs",
        "Workers",
        "New job",
    ]
    assert seen[-1]["id"] == "f-status-failed", seen
    for state in seen:
        assert state["outline"] != "none" and state["width"] != "0px", state
    page.keyboard.press("Space")  # toggles the chip, which applies the filter
    page.wait_for_url(re.compile(r"status=failed"))
    expect(page.locator("#page-range")).to_have_text("No jobs match.")
    # The job list's links and buttons come next, and survive a live refresh while focused.
    page.goto("/jobs?name=keys")
    page.focus("#apply-filters")
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.dataset.sort === 'name'"):
            break
    assert page.evaluate("document.activeElement.dataset.sort") == "name"
    row = page.locator(f"tr[data-job-id='{job.id}'] td").nth(5)
    expect(row).to_have_text("5")
    dashboard.sync_db["scheduler_jobs"].update_one({"_id": job.id}, {"$set": {"priority": 9}})
    # Two refresh cycles end (each counted on the live status) without taking the focus away
    # or replacing the table under it; once the focus leaves, the next one shows the change.
    status = page.locator("#live-status")
    cycles = int(status.get_attribute("data-cycles") or 0)
    eventually(lambda: int(status.get_attribute("data-cycles") or 0) >= cycles + 2)
    assert page.evaluate("document.activeElement.dataset.sort") == "name"
    expect(row).to_have_text("5")
    page.evaluate("document.activeElement.blur()")
    expect(page.locator(f"tr[data-job-id='{job.id}'] td").nth(5)).to_have_text("9", timeout=10_000)
