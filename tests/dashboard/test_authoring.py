"""Writing jobs from the dashboard: the New job form, the Edit form of a job and its deletion,
in Debian's Chromium (Playwright) and over raw HTTP, on a real MongoDB."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import ObjectId

from .conftest import DashboardServer
from .test_dashboard import _raw_exchange

expect: Any
try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips those tests
    expect = None

JOBS = "scheduler_jobs"


def _stored(dashboard: DashboardServer, job_id: Any) -> dict[str, Any]:
    doc = dashboard.sync_db[JOBS].find_one({"_id": ObjectId(str(job_id))})
    assert doc is not None
    return dict(doc)


def _only_job(dashboard: DashboardServer) -> dict[str, Any]:
    docs = list(dashboard.sync_db[JOBS].find())
    assert len(docs) == 1, docs
    return dict(docs[0])


def _job_id_of(page: Any, dashboard: DashboardServer) -> str:
    match = re.fullmatch(rf"{re.escape(dashboard.base_url)}/jobs/([0-9a-f]{{24}})", page.url)
    assert match, page.url
    return match.group(1)


# -- in the browser ---------------------------------------------------------------------------


def test_the_new_job_form_schedules_a_job_in_the_stored_units(
    signed_in: Any, dashboard: DashboardServer
) -> None:
    page = signed_in
    page.click("#new-job")
    page.wait_for_url(f"{dashboard.base_url}/jobs/new")
    page.fill("#f-name", "send-report")
    page.fill("#f-data", '{"org": "o1", "pages": [1, 2]}')
    page.check("#f-when-after")
    page.fill("#f-delay", "10m")
    page.check("#f-repeat-every")
    page.fill("#f-every", "1h30m")
    page.fill("#f-retry-attempts", "3")
    page.fill("#f-retry-delay", "2s")
    page.select_option("#f-retry-backoff", "exponential")
    page.fill("#f-priority", "2")
    page.fill("#f-concurrency", "4")
    page.fill("#f-dedupe-key", "report:o1")
    before = datetime.now(timezone.utc)
    page.click("#submit-job")
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f]{24}$"))
    job_id = _job_id_of(page, dashboard)
    expect(page.locator("#flash")).to_have_text(f"Job {job_id} created.")
    expect(page.locator("#job-name")).to_have_text("send-report")
    stored = _stored(dashboard, job_id)
    assert stored["data"] == {"org": "o1", "pages": [1, 2]}
    assert stored["repeat"] == {"every": 5_400_000}
    assert stored["retry"] == {"maxAttempts": 3, "delay": 2000, "backoff": "exponential"}
    assert (stored["priority"], stored["concurrency"], stored["dedupeKey"]) == (2, 4, "report:o1")
    due = stored["nextRunAt"].replace(tzinfo=timezone.utc)
    assert before + timedelta(minutes=9) < due < before + timedelta(minutes=11)

    # The same dedupe key again: the existing job is shown, nothing is created.
    page.goto("/jobs/new")
    page.fill("#f-name", "send-report")
    page.fill("#f-dedupe-key", "report:o1")
    page.click("#submit-job")
    page.wait_for_url(f"{dashboard.base_url}/jobs/{job_id}")
    expect(page.locator("#flash")).to_contain_text("dedupe key 'report:o1' already exists")
    assert dashboard.sync_db[JOBS].count_documents({}) == 1


def test_a_run_time_and_a_cron_schedule_in_their_time_zones(
    signed_in: Any, dashboard: DashboardServer
) -> None:
    page = signed_in
    page.goto("/jobs/new")
    page.fill("#f-name", "morning")
    page.check("#f-when-at")
    page.fill("#f-run-at", "2031-06-02T09:00:00")
    page.fill("#f-run-at-zone", "Europe/Paris")
    page.check("#f-repeat-cron")
    page.fill("#f-cron", "30 9 * * 1-5")
    page.fill("#f-cron-zone", "Asia/Kolkata")
    page.click("#submit-job")
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f]{24}$"))
    stored = _only_job(dashboard)
    assert stored["repeat"] == {"cron": "30 9 * * 1-5", "timezone": "Asia/Kolkata"}
    assert stored["nextRunAt"] == datetime(2031, 6, 2, 7, 0)  # 09:00 in Paris (summer)


def test_invalid_input_shows_the_message_beside_its_field_and_keeps_what_was_typed(
    signed_in: Any, dashboard: DashboardServer
) -> None:
    page = signed_in
    page.goto("/jobs/new")
    page.fill("#f-name", "typed-name")
    page.fill("#f-data", '{"org": ')
    page.check("#f-repeat-every")
    page.fill("#f-every", "50ms")
    page.fill("#f-dedupe-key", "kept-key")
    page.click("#submit-job")
    expect(page.locator("#error-data")).to_contain_text("not valid JSON")
    assert page.url == f"{dashboard.base_url}/jobs/new"
    expect(page.locator("#f-name")).to_have_value("typed-name")
    expect(page.locator("#f-data")).to_have_value('{"org": ')
    expect(page.locator("#f-every")).to_have_value("50ms")
    expect(page.locator("#f-dedupe-key")).to_have_value("kept-key")
    expect(page.locator("#f-repeat-every")).to_be_checked()

    page.fill("#f-data", '{"org": "o1"}')
    page.click("#submit-job")
    expect(page.locator("#error-every")).to_have_text("must be at least 100 ms, got 50.0")
    expect(page.locator("#error-data")).to_have_count(0)
    expect(page.locator("#f-data")).to_have_value('{"org": "o1"}')

    page.fill("#f-every", "5m")
    page.fill("#f-retry-delay", "1s")  # a delay without a number of executions
    page.click("#submit-job")
    expect(page.locator("#error-retry_attempts")).to_have_text("is required")
    page.fill("#f-retry-attempts", "2")
    page.fill("#f-cron-zone", "Mars/Olympus")
    page.check("#f-repeat-cron")
    page.fill("#f-cron", "0 9 * * *")
    page.click("#submit-job")
    expect(page.locator("#error-cron_zone")).to_have_text("unknown time zone 'Mars/Olympus'")
    assert dashboard.sync_db[JOBS].count_documents({}) == 0
    page.fill("#f-cron-zone", "UTC")
    page.click("#submit-job")
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f]{24}$"))
    stored = _only_job(dashboard)
    assert stored["data"] == {"org": "o1"} and stored["retry"] == {"maxAttempts": 2, "delay": 1000}


def test_the_edit_form_changes_only_what_was_changed(
    signed_in: Any, dashboard: DashboardServer
) -> None:
    page = signed_in
    job = dashboard.jobs.schedule(
        "nightly",
        {"v": 1},
        repeat={"cron": "0 2 * * *", "timezone": "Europe/Paris", "misfire": "skip"},
        retry={"maxAttempts": 3, "delayMs": 500, "maxDelayMs": 60_000},
    )
    before = _stored(dashboard, job.id)
    page.goto(f"/jobs/{job.id}")
    page.click("#edit-job")
    page.wait_for_url(f"{dashboard.base_url}/jobs/{job.id}/edit")
    expect(page.locator("#f-cron")).to_have_value("0 2 * * *")
    expect(page.locator("#f-cron-zone")).to_have_value("Europe/Paris")
    expect(page.locator("#f-retry-attempts")).to_have_value("3")
    expect(page.locator("#f-retry-delay")).to_have_value("500ms")
    page.fill("#f-data", '{"v": 2}')
    page.fill("#f-priority", "1")
    page.fill("#f-retry-delay", "1s")
    page.click("#submit-job")
    page.wait_for_url(f"{dashboard.base_url}/jobs/{job.id}")
    expect(page.locator("#flash")).to_have_text(f"Job {job.id} changed: data, retry, priority.")
    after = _stored(dashboard, job.id)
    assert after["data"] == {"v": 2} and after["priority"] == 1
    assert after["retry"] == {"maxAttempts": 3, "delay": 1000, "maxDelay": 60_000}
    assert after["repeat"] == before["repeat"]  # not sent: the schedule and its slot stay
    assert after["nextRunAt"] == before["nextRunAt"]

    page.click("#edit-job")
    page.check("#f-repeat-every")
    page.fill("#f-every", "90s")
    page.fill("#f-priority", "11")
    page.click("#submit-job")
    expect(page.locator("#error-priority")).to_have_text("must be an integer from 1 to 10, got 11")
    expect(page.locator("#f-every")).to_have_value("90s")
    expect(page.locator("#f-repeat-every")).to_be_checked()
    page.fill("#f-priority", "1")
    page.click("#submit-job")
    page.wait_for_url(f"{dashboard.base_url}/jobs/{job.id}")
    assert _stored(dashboard, job.id)["repeat"] == {"every": 90_000, "misfire": "skip"}

    page.click("#edit-job")
    page.click("#submit-job")  # nothing changed
    expect(page.locator("#form-error")).to_have_text("nothing to update")


def test_editing_a_finished_job_does_not_run_it_again_unless_its_run_time_changes(
    signed_in: Any, dashboard: DashboardServer
) -> None:
    page = signed_in
    job = dashboard.jobs.schedule("done", {"v": 1}, delay=3600)
    dashboard.sync_db[JOBS].update_one({"_id": job.id}, {"$set": {"status": "completed"}})
    page.goto(f"/jobs/{job.id}/edit")
    page.fill("#f-data", '{"v": 2}')
    page.click("#submit-job")
    page.wait_for_url(f"{dashboard.base_url}/jobs/{job.id}")
    stored = _stored(dashboard, job.id)
    assert stored["status"] == "completed" and stored["data"] == {"v": 2}
    page.click("#edit-job")
    page.fill("#f-run-at", "2030-01-01T08:00:00")
    page.fill("#f-run-at-zone", "UTC")
    page.click("#submit-job")
    page.wait_for_url(f"{dashboard.base_url}/jobs/{job.id}")
    stored = _stored(dashboard, job.id)
    assert stored["status"] == "pending" and stored["nextRunAt"] == datetime(2030, 1, 1, 8)

    assert dashboard.jobs.cancel(job.id)
    page.goto(f"/jobs/{job.id}")
    expect(page.locator("#edit-job")).to_have_count(0)  # a cancelled job cannot be changed
    page.goto(f"/jobs/{job.id}/edit")
    page.fill("#f-priority", "3")
    page.click("#submit-job")
    expect(page.locator("#form-error")).to_contain_text("cancelled")


def test_delete_asks_first_and_is_refused_while_the_job_runs(
    signed_in: Any, dashboard: DashboardServer
) -> None:
    page = signed_in
    job = dashboard.jobs.schedule("doomed", delay=3600)
    page.goto(f"/jobs/{job.id}")
    page.click("#delete-job")
    page.wait_for_url(f"{dashboard.base_url}/jobs/{job.id}/delete")
    expect(page.locator("#delete-question")).to_contain_text("doomed")
    assert dashboard.jobs.get_job(job.id) is not None  # asking deletes nothing
    page.click("#keep-job")
    page.wait_for_url(f"{dashboard.base_url}/jobs/{job.id}")
    page.click("#delete-job")
    page.click("#confirm-delete")
    page.wait_for_url(f"{dashboard.base_url}/jobs")
    expect(page.locator("#flash")).to_have_text(f"Job {job.id} deleted.")
    assert dashboard.jobs.get_job(job.id) is None

    busy = dashboard.jobs.schedule("busy")
    store = dashboard.scheduler.store
    assert store is not None
    dashboard.run(lambda s: store.claim("authoring-test", 1, timedelta(minutes=5), 3))
    page.goto(f"/jobs/{busy.id}")
    expect(page.locator("#job-status")).to_have_text("running")
    expect(page.locator("#delete-job")).to_have_count(0)
    page.goto(f"/jobs/{busy.id}/delete")
    expect(page.locator("#delete-refused")).to_contain_text("Cancel it first")
    expect(page.locator("#confirm-delete")).to_have_count(0)


def test_a_delete_confirmed_after_the_job_started_is_refused(
    signed_in: Any, dashboard: DashboardServer
) -> None:
    page = signed_in
    job = dashboard.jobs.schedule("racing")
    page.goto(f"/jobs/{job.id}/delete")
    store = dashboard.scheduler.store
    assert store is not None
    dashboard.run(lambda s: store.claim("authoring-test", 1, timedelta(minutes=5), 3))
    page.click("#confirm-delete")
    page.wait_for_url(f"{dashboard.base_url}/jobs/{job.id}")
    expect(page.locator("#flash")).to_contain_text("cancel it first")
    assert _stored(dashboard, job.id)["status"] == "running"


# -- raw HTTP -------------------------------------------------------------------------------------


def test_authoring_posts_need_the_token_and_the_csrf_token(dashboard: DashboardServer) -> None:
    job = dashboard.jobs.schedule("guarded", {"v": 1}, delay=3600)
    posts = [
        ("/jobs/new", {"name": "x"}),
        (f"/jobs/{job.id}/edit", {"data": "2", "shown_data": '{\n  "v": 1\n}'}),
        (f"/jobs/{job.id}/delete", {}),
    ]
    with dashboard.client() as anonymous:
        for path, form in posts:
            assert anonymous.post(path, data=form).status_code == 401
        for path in ("/jobs/new", f"/jobs/{job.id}/edit", f"/jobs/{job.id}/delete"):
            response = anonymous.get(path)
            assert response.status_code == 303 and "/login?next=" in response.headers["location"]
    with dashboard.client() as browser:
        browser.post("/login", data={"token": dashboard.token, "next": "/"})
        for path, form in posts:
            response = browser.post(path, data=form)
            assert response.status_code == 403, path
            assert "CSRF" in response.text
    assert _stored(dashboard, job.id)["data"] == {"v": 1}
    assert dashboard.sync_db[JOBS].count_documents({}) == 1
    bearer = {"Authorization": f"Bearer {dashboard.token}"}
    with dashboard.client(headers=bearer) as script:
        created = script.post("/jobs/new", data={"name": "scripted", "when": "now"})
        assert created.status_code == 201 and created.json()["ok"] is True
        deleted = script.post(f"/jobs/{job.id}/delete")
        assert deleted.json() == {"ok": True, "message": f"Job {job.id} deleted."}
        refused = script.post("/jobs/new", data={"name": "x", "priority": "high"})
        assert refused.status_code == 400
        assert 'id="error-priority"' in refused.text and "expected an integer" in refused.text
        assert script.get(f"/jobs/{ObjectId()}/edit").status_code == 404
        assert script.get("/jobs/nope/delete").status_code == 400
    head = (
        f"POST /jobs/new HTTP/1.1\r\nHost: dashboard\r\nAuthorization: Bearer {dashboard.token}"
        f"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {1 << 20}\r\n\r\n"
    )
    assert " 413 " in _raw_exchange(dashboard, head, b"name=x&data=" + b"1" * 4096) + " "


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"name": "x", "when": "at", "run_at": ""}, "run_at", "give a date and time"),
        ({"name": "x", "when": "at", "run_at": "soon"}, "run_at", "ISO 8601"),
        ({"name": "x", "when": "after", "delay": "60"}, "delay", "give a unit"),
        ({"name": "x", "repeat": "cron", "cron": "61 * * * *"}, "cron", "minute"),
        ({"name": "x", "concurrency": "0"}, "concurrency", "positive integer"),
        ({"name": "x", "dedupe_key": "k" * 513}, "dedupe_key", "at most 512"),
        ({"name": "x", "data": "NaN"}, "data", "NaN is not a JSON value"),
        ({"name": "x", "data": '{"$set": 1}'}, "data", "must not start with '$'"),
    ],
)
def test_refusals_are_shown_beside_their_field(
    dashboard: DashboardServer, form: dict[str, str], field: str, message: str
) -> None:
    bearer = {"Authorization": f"Bearer {dashboard.token}"}
    with dashboard.client(headers=bearer) as script:
        response = script.post("/jobs/new", data=form)
    assert response.status_code == 400
    shown = re.search(
        rf'<p class="field-error" id="error-{field}" role="alert">(.*?)</p>', response.text
    )
    assert shown is not None, response.text
    assert message in shown.group(1).replace("&#39;", "'")
    assert dashboard.sync_db[JOBS].count_documents({}) == 0
