"""End-to-end tests of the web dashboard: uvicorn on 127.0.0.1 over a real MongoDB, driven by
headless Chromium (Playwright) for what a person does, and by httpx for raw requests."""

from __future__ import annotations

import asyncio
import html
import http.client
import json
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from bson import ObjectId

from mongo_job_scheduler import ConfigurationError, InMemoryJobStore, Scheduler
from mongo_job_scheduler.dashboard import create_app
from tests.helpers import eventually

from .conftest import DashboardServer, serving_client

expect: Any
try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips those tests
    expect = None

XSS = "<script>window.__xss=1</script>"
XSS_IMG = '<img src=x onerror="window.__xss=2">'


def _status(dashboard: DashboardServer, job_id: Any) -> str:
    job = dashboard.jobs.get_job(job_id)
    assert job is not None
    return job.status.value


def _csrf(client: Any, path: str = "/") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "no CSRF token in the page"
    return match.group(1)


def _sign_in(client: Any, token: str) -> None:
    response = client.post("/login", data={"token": token, "next": "/"})
    assert response.status_code == 303, response.text
    assert "mjs_session" in client.cookies


# -- no browser -----------------------------------------------------------------------------


LONG = "a-token-long-enough-" + "0" * 8


def test_create_app_needs_a_token() -> None:
    scheduler = Scheduler(InMemoryJobStore())
    for bad in ("", "   ", None, 123):
        with pytest.raises(ConfigurationError):
            create_app(scheduler, token=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        create_app(scheduler, token=LONG, refresh_seconds=-1)
    with pytest.raises(ConfigurationError, match="needs a Scheduler with a store"):
        create_app(Scheduler(), token=LONG)
    with pytest.raises(ConfigurationError, match="the asyncio one"):
        create_app(object(), token=LONG)  # type: ignore[arg-type]


@pytest.mark.parametrize("short", ["a", "s3cret", "x" * 15, " " * 4 + "y" * 12])
def test_a_token_shorter_than_16_characters_is_refused_with_a_suggestion(short: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        create_app(Scheduler(InMemoryJobStore()), token=short)
    assert info.value.field == "token"
    assert "at least 16 characters" in info.value.reason
    suggestion = re.search(r"for example ([A-Za-z0-9_-]{32,})", info.value.reason)
    assert suggestion is not None, info.value.reason
    create_app(Scheduler(InMemoryJobStore()), token=suggestion.group(1))  # accepted
    create_app(Scheduler(InMemoryJobStore()), token="z" * 16)


class _BrokenStore(InMemoryJobStore):
    """A store whose counts fail, as when the database is unreachable."""

    async def activity(self, *args: Any) -> dict[str, Any]:
        raise RuntimeError("database unreachable")


def test_an_unexpected_failure_renders_an_error_page_without_traceback() -> None:
    app = create_app(Scheduler(_BrokenStore()), token=LONG)
    headers = {"Authorization": f"Bearer {LONG}"}

    async def requests() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
            return await client.get("/", headers=headers), await client.get(
                "/jobs", headers=headers
            )

    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        broken, fine = pool.submit(asyncio.run, requests()).result(timeout=30)
    assert broken.status_code == 500
    assert "Something went wrong" in broken.text and "RuntimeError" in broken.text
    assert "database unreachable" not in broken.text and "Traceback" not in broken.text
    assert fine.status_code == 200


def test_healthz_needs_no_token_and_pages_send_security_headers(
    dashboard: DashboardServer,
) -> None:
    with dashboard.client() as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.text == "ok"
        login = client.get("/login")
        assert login.status_code == 200
        csp = login.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert login.headers["x-content-type-options"] == "nosniff"


def test_every_page_partial_and_action_needs_the_token(dashboard: DashboardServer) -> None:
    job = dashboard.jobs.schedule("guarded", {"n": 1}, delay=3600)
    with dashboard.client() as client:
        for path in ("/", "/jobs", f"/jobs/{job.id}"):
            response = client.get(path)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/login?next=")
        # The page asked for comes back after signing in, query string included.
        response = client.get("/jobs?name=guarded&status=pending")
        assert response.headers["location"] == (
            "/login?next=/jobs%3Fname%3Dguarded%26status%3Dpending"
        )
        for path in ("/partials/overview", "/partials/jobs", f"/partials/jobs/{job.id}"):
            assert client.get(path).status_code == 401
        assert client.post(f"/jobs/{job.id}/cancel").status_code == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        assert client.post(f"/jobs/{job.id}/cancel", headers=wrong).status_code == 401
        assert client.get("/partials/jobs", headers=wrong).status_code == 401
        with dashboard.client() as forger:
            forger.cookies.set("mjs_session", "eyJub25jZSI6MX0.forged")
            assert forger.post(f"/jobs/{job.id}/cancel").status_code == 401
            assert forger.get("/partials/jobs").status_code == 401
        assert client.post("/login", data={"token": "nope"}).status_code == 401
        assert _status(dashboard, job.id) == "pending"
        # A script with the token as a Bearer header needs no CSRF token and gets JSON.
        right = {"Authorization": f"Bearer {dashboard.token}"}
        response = client.post(f"/jobs/{job.id}/cancel", headers=right)
        assert response.status_code == 200
        assert response.json()["ok"] is True
        assert _status(dashboard, job.id) == "cancelled"
        assert client.get("/partials/jobs", headers=right).status_code == 200


def test_an_action_without_the_csrf_token_is_refused(dashboard: DashboardServer) -> None:
    job = dashboard.jobs.schedule("csrf", None, delay=3600)
    with dashboard.client() as other:
        _sign_in(other, dashboard.token)
        foreign_csrf = _csrf(other)
    with dashboard.client() as client:
        _sign_in(client, dashboard.token)
        url = f"/jobs/{job.id}/cancel"
        assert client.post(url, data={"next": "/jobs"}).status_code == 403
        assert client.post(url, data={"csrf_token": "x" * 43}).status_code == 403
        # Another session's token is not this session's.
        assert client.post(url, data={"csrf_token": foreign_csrf}).status_code == 403
        assert client.post("/names/pause", data={"name": "csrf"}).status_code == 403
        assert _status(dashboard, job.id) == "pending"
        response = client.post(url, data={"csrf_token": _csrf(client), "next": "/jobs"})
        assert response.status_code == 303
        assert response.headers["location"] == "/jobs"
        assert _status(dashboard, job.id) == "cancelled"


def test_login_redirects_only_to_local_paths(dashboard: DashboardServer) -> None:
    with dashboard.client() as client:
        for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
            response = client.post("/login", data={"token": dashboard.token, "next": target})
            assert response.status_code == 303
            assert response.headers["location"] == "/"
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie


def _refused(client: Any, csrf: str) -> bool:
    """Whether every page, partial and action refuses ``client``'s session."""
    page = client.get("/jobs")
    partial = client.get("/partials/jobs")
    action = client.post("/names/pause", data={"name": "after-logout", "csrf_token": csrf})
    return (
        page.status_code == 303
        and page.headers["location"].startswith("/login")
        and partial.status_code == 401
        and action.status_code == 401
    )


def test_a_signed_out_session_is_refused_at_once_by_every_process(
    dashboard: DashboardServer, other_dashboard: str
) -> None:
    """Signing out revokes the session in the database: a replayed cookie is refused right
    away, by this dashboard process and by another one on the same database."""
    with dashboard.client() as browser:
        _sign_in(browser, dashboard.token)
        csrf = _csrf(browser)
        cookie = browser.cookies["mjs_session"]
        with serving_client(other_dashboard, cookies={"mjs_session": cookie}) as elsewhere:
            assert elsewhere.get("/partials/jobs").status_code == 200  # one session, two processes
            assert elsewhere.get("/partials/overview").status_code == 200
            response = browser.post("/logout", data={"csrf_token": csrf})
            assert response.status_code == 303
            with dashboard.client(cookies={"mjs_session": cookie}) as replay:
                assert _refused(replay, csrf)
            assert _refused(elsewhere, csrf)
    assert "after-logout" not in dashboard.jobs.paused_names()
    # And the other way round: a sign-out in the other process counts here.
    with serving_client(other_dashboard) as browser:
        _sign_in(browser, dashboard.token)
        csrf = _csrf(browser)
        cookie = browser.cookies["mjs_session"]
        with dashboard.client(cookies={"mjs_session": cookie}) as here:
            assert here.get("/partials/jobs").status_code == 200
            assert browser.post("/logout", data={"csrf_token": csrf}).status_code == 303
            assert _refused(here, csrf)
    assert "after-logout" not in dashboard.jobs.paused_names()


def _from(address: str, dashboard: DashboardServer, **kwargs: Any) -> httpx.Client:
    """A client of ``dashboard`` connecting from the loopback ``address`` (a client of its own
    for the failure throttle)."""
    transport = httpx.HTTPTransport(local_address=address)
    return dashboard.client(transport=transport, **kwargs)


def test_failed_sign_ins_are_throttled_per_client(dashboard: DashboardServer) -> None:
    """Ten wrong tokens in a row, then the client waits: 429 with Retry-After, even for the
    right token (a guess would otherwise still be checked); other clients are not held up."""
    with _from("127.0.0.2", dashboard) as guesser:
        answers = [guesser.post("/login", data={"token": f"guess-{i}"}) for i in range(10)]
        assert [r.status_code for r in answers] == [401] * 10
        for token in ("guess-11", dashboard.token):
            held = guesser.post("/login", data={"token": token})
            assert held.status_code == 429, held.text
            assert 1 <= int(held.headers["retry-after"]) <= 60
            assert "Too many failed sign-ins" in held.text
            assert "mjs_session" not in held.headers.get("set-cookie", "")
    with _from("127.0.0.4", dashboard) as someone_else:
        _sign_in(someone_else, dashboard.token)


def test_failed_bearer_tokens_are_throttled_per_client(dashboard: DashboardServer) -> None:
    job = dashboard.jobs.schedule("guarded", None, delay=3600)
    with _from("127.0.0.3", dashboard) as guesser:
        for i in range(10):
            wrong = {"Authorization": f"Bearer guess-{i}"}
            assert guesser.get("/partials/jobs", headers=wrong).status_code == 401
        right = {"Authorization": f"Bearer {dashboard.token}"}
        for path, method in (("/partials/jobs", "GET"), (f"/jobs/{job.id}/cancel", "POST")):
            held = guesser.request(method, path, headers=right)
            assert held.status_code == 429, (path, held.text)
            assert int(held.headers["retry-after"]) >= 1
        assert guesser.get("/metrics", headers=right).status_code == 429
    assert _status(dashboard, job.id) == "pending"
    with _from("127.0.0.5", dashboard) as someone_else:
        right = {"Authorization": f"Bearer {dashboard.token}"}
        assert someone_else.get("/partials/jobs", headers=right).status_code == 200


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("data=$where=1", "invalid data key"),
        ('data=n={"$gt":0}', "operators are not allowed"),
        ("data=a.$b=1", "invalid data key"),
        ('data=k=[{"$regex":"^a"}]', "must not start with '$'"),
        ('data=k={"a":{"$where":"1"}}', "must not start with '$'"),
        ("data=k=" + "[" * 1500 + "]" * 1500, "nested more than 90 levels"),
        ("data=k=" + '{"a":' * 1500 + "1" + "}" * 1500, "nested more than 90 levels"),
        ("data=" + "a." * 2000 + "a=1", "more than 90 parts"),
        ("data=" + "k" * 1025 + "=1", "more than 1024 characters"),
        ("data=novalue", "expected key=value"),
        ("status=bogus", "unknown status"),
        ("sort=$natural", "cannot sort on"),
        ("sort=nextRunAt", "no index keeps jobs in that order"),
        ("sort=status&dir=asc", "no index keeps jobs in that order"),
        ("sort=priority", "needs the status filter pending alone"),
        ("sort=priority&status=pending&status=failed", "needs the status filter pending alone"),
        ("sort=updatedAt", "needs a status filter of finished statuses only"),
        ("sort=updatedAt&status=failed&status=running", "finished statuses only"),
        ("dir=sideways", "must be 'asc' or 'desc'"),
        ("limit=abc", "expected an integer"),
        ("limit=0", "must be from 1"),
        ("skip=-5", "must be from 0"),
        ("$where=1", "unknown parameter"),
        ("status[$ne]=x", "unknown parameter"),
    ],
)
def test_invalid_filters_render_an_error_not_a_traceback(
    dashboard: DashboardServer, query: str, message: str
) -> None:
    dashboard.jobs.schedule("filtered", {"n": 1})
    with dashboard.client(headers={"Authorization": f"Bearer {dashboard.token}"}) as client:
        response = client.get(f"/jobs?{query}")
        assert response.status_code == 400
        assert "Invalid filter" in response.text
        assert message in response.text.replace("&#39;", "'")
        assert "Traceback" not in response.text
        assert 'data-job-id="' not in response.text
        # A refused order offers the same jobs newest first; other mistakes must be fixed.
        assert ('id="fallback"' in response.text) == query.startswith("sort=")
        assert client.get(f"/partials/jobs?{query}").status_code == 400


def test_job_detail_and_bad_ids(dashboard: DashboardServer) -> None:
    job = dashboard.jobs.schedule("detail", {"ref": "r-1", "nested": {"k": [1, 2]}}, delay=60)
    other = ObjectId()
    dashboard.sync_db["scheduler_jobs"].update_one(
        {"_id": job.id},
        {"$set": {"data.other": other, "lastError": "boom", "lastErrorTrace": "Traceback: x"}},
    )
    with dashboard.client(headers={"Authorization": f"Bearer {dashboard.token}"}) as client:
        page = client.get(f"/jobs/{job.id}").text
        shown = re.search(r'<pre id="job-document">(.*?)</pre>', page, re.S)
        assert shown is not None
        document = json.loads(html.unescape(shown.group(1)))
        stored = dashboard.jobs.get_job(job.id)
        assert stored is not None and stored.created_at is not None
        assert set(document) == set(stored.document)  # every field
        assert document["_id"] == str(job.id)
        assert document["data"] == {"ref": "r-1", "nested": {"k": [1, 2]}, "other": str(other)}
        assert document["createdAt"] == stored.created_at.isoformat()
        assert document["status"] == "pending"
        assert '<pre id="last-error">boom</pre>' in page
        assert '<pre id="last-error-trace">Traceback: x</pre>' in page
        missing = client.get(f"/jobs/{ObjectId()}")
        assert missing.status_code == 404
        invalid = client.get("/jobs/not-an-id")
        assert invalid.status_code == 400
        assert "not a valid job id" in invalid.text


def test_job_page_links_what_it_waits_for_and_what_waits_for_it(
    dashboard: DashboardServer,
) -> None:
    first = dashboard.jobs.schedule("extract", delay=3600)
    middle = dashboard.jobs.schedule("transform", depends_on=[first])
    last = dashboard.jobs.schedule("load", depends_on=[middle])
    with dashboard.client(headers={"Authorization": f"Bearer {dashboard.token}"}) as client:
        page = client.get(f"/jobs/{middle.id}").text
    waits = re.search(r'<ul id="waits-for">(.*?)</ul>', page, re.S)
    by = re.search(r'<ul id="waited-for-by">(.*?)</ul>', page, re.S)
    assert waits is not None and by is not None
    assert f'href="/jobs/{first.id}">extract</a>' in waits.group(1)
    assert f'href="/jobs/{last.id}">load</a>' in by.group(1)
    assert 'status-waiting">waiting<' in page


def test_metrics_are_served_behind_the_token(dashboard: DashboardServer) -> None:
    with dashboard.client() as client:
        assert client.get("/metrics").status_code == 401
        response = client.get("/metrics", headers={"Authorization": f"Bearer {dashboard.token}"})
        assert response.status_code == 200
        assert "dashboard_test_marker_total 1.0" in response.text


# -- in the browser -------------------------------------------------------------------------


def test_pages_need_signing_in_and_a_wrong_token_is_refused(
    page: Any, dashboard: DashboardServer
) -> None:
    job = dashboard.jobs.schedule("secret", {"visible": "only after signing in"}, delay=60)
    page.goto(f"/jobs/{job.id}")
    assert re.search(r"/login\?next=", page.url)
    expect(page.locator("#token")).to_be_visible()
    assert "only after signing in" not in page.content()
    page.fill("#token", "wrong-token")
    with page.expect_response(lambda r: r.url.endswith("/login")) as refused:
        page.click("button[type=submit]")
    assert refused.value.status == 401
    expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    assert "only after signing in" not in page.content()
    page.fill("#token", dashboard.token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{dashboard.base_url}/jobs/{job.id}")
    expect(page.locator("#job-data")).to_contain_text("only after signing in")
    # Signing out ends the session.
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r"/login$"))
    page.goto("/jobs")
    assert "/login" in page.url


def test_cancel_button(signed_in: Any, dashboard: DashboardServer) -> None:
    page = signed_in
    job = dashboard.jobs.schedule("to-cancel", None, delay=3600)
    page.goto(f"/jobs/{job.id}")
    page.click("#job-actions [data-action=cancel]")
    expect(page.locator("#flash")).to_have_text(f"Job {job.id} cancelled.")
    assert page.url == f"{dashboard.base_url}/jobs/{job.id}"
    assert _status(dashboard, job.id) == "cancelled"
    expect(page.locator("#job-status")).to_have_text("cancelled")


def test_retry_button(signed_in: Any, dashboard: DashboardServer) -> None:
    page = signed_in
    job = dashboard.jobs.schedule("to-retry", None, delay=3600)
    dashboard.sync_db["scheduler_jobs"].update_one(
        {"_id": job.id}, {"$set": {"status": "failed", "attempts": 3, "lastError": "nope"}}
    )
    page.goto("/jobs?name=to-retry")
    row = page.locator(f"tr[data-job-id='{job.id}']")
    row.locator("[data-action=retry]").click()
    expect(page.locator("#flash")).to_have_text(f"Job {job.id} will run again now.")
    assert page.url == f"{dashboard.base_url}/jobs?name=to-retry"
    stored = dashboard.jobs.get_job(job.id)
    assert stored is not None
    assert stored.status.value == "pending" and stored.attempts == 0
    expect(row).to_have_attribute("data-status", "pending")


def test_run_now_button(signed_in: Any, dashboard: DashboardServer) -> None:
    page = signed_in
    job = dashboard.jobs.schedule("to-run-now", None, delay=3600)
    page.goto(f"/jobs/{job.id}")
    page.click("#job-actions [data-action=run-now]")
    expect(page.locator("#flash")).to_have_text(f"Job {job.id} is due now.")
    stored = dashboard.jobs.get_job(job.id)
    assert stored is not None and stored.next_run_at is not None
    assert stored.status.value == "pending"
    assert stored.next_run_at <= datetime.now(timezone.utc) + timedelta(seconds=5)


def test_pause_button(signed_in: Any, dashboard: DashboardServer) -> None:
    if not hasattr(dashboard.scheduler, "pause"):
        pytest.skip("this Scheduler has no pause()")
    page = signed_in
    dashboard.jobs.schedule("to-pause", None, delay=3600)
    page.goto("/")
    page.locator("#by-name tr[data-name='to-pause'] [data-action=pause]").click()
    expect(page.locator("#flash")).to_have_text("Jobs named 'to-pause' paused.")
    assert dashboard.run(lambda s: s.paused_names()) == ["to-pause"]
    expect(page.locator("#paused-names li[data-name='to-pause']")).to_be_visible()


def test_resume_button(signed_in: Any, dashboard: DashboardServer) -> None:
    if not hasattr(dashboard.scheduler, "resume"):
        pytest.skip("this Scheduler has no resume()")
    page = signed_in
    dashboard.run(lambda s: s.pause("to-resume"))  # a paused name without any job
    page.goto("/")
    page.locator("#paused-names li[data-name='to-resume'] [data-action=resume]").click()
    expect(page.locator("#flash")).to_have_text("Jobs named 'to-resume' resumed.")
    assert dashboard.run(lambda s: s.paused_names()) == []
    expect(page.locator("#paused-names")).to_have_text("No job name is paused.")


def test_script_in_job_fields_renders_inert(signed_in: Any, dashboard: DashboardServer) -> None:
    page = signed_in
    job = dashboard.jobs.schedule(XSS, {"note": XSS, XSS_IMG: XSS_IMG}, delay=60)
    dashboard.jobs.schedule(XSS)  # due, and no worker handles it: named on the workers page
    dashboard.sync_db["scheduler_jobs"].update_one(
        {"_id": job.id},
        {"$set": {"status": "failed", "lastError": XSS, "lastErrorTrace": XSS_IMG + XSS}},
    )

    # Test the escaping itself: strip the Content-Security-Policy that would also block it.
    def without_csp(route: Any) -> None:
        response = route.fetch()
        headers = {
            k: v for k, v in response.headers.items() if k.lower() != "content-security-policy"
        }
        route.fulfill(response=response, headers=headers)

    page.route("**/*", without_csp)
    for path in (f"/jobs/{job.id}", "/jobs", "/"):
        page.goto(path)
        page.wait_for_load_state("load")
        # A refresh cycle swaps the tables in with innerHTML; let one happen too.
        page.wait_for_function(
            "document.querySelector('[data-refreshed-at]') !== null", timeout=10_000
        )
        assert page.evaluate("typeof window.__xss") == "undefined", path
        assert page.locator("script:not([src])").count() == 0
        assert page.locator("img").count() == 0
        expect(page.get_by_text(XSS).first).to_be_visible()
    page.goto(f"/jobs/{job.id}")
    expect(page.locator("#last-error")).to_have_text(XSS)
    expect(page.locator("#last-error-trace")).to_have_text(XSS_IMG + XSS)
    expect(page.locator("#job-name")).to_have_text(XSS)
    with dashboard.client(headers={"Authorization": f"Bearer {dashboard.token}"}) as client:
        for path in (
            f"/jobs/{job.id}",
            "/jobs",
            "/",
            "/partials/jobs",
            "/partials/overview",
            "/workers",
        ):
            html = client.get(path).text
            assert "<script>window" not in html and "<img" not in html, path
            assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html, path


def test_filters_sort_and_pagination_over_many_jobs(
    signed_in: Any, dashboard: DashboardServer
) -> None:
    page = signed_in
    items = [
        {"name": "bulk", "data": {"i": i, "group": "even" if i % 2 == 0 else "odd"}, "delay": 600}
        for i in range(120)
    ]
    items += [{"name": "other", "data": {"i": i, "group": "even"}} for i in range(5)]
    jobs = dashboard.jobs.schedule_bulk(items)
    for job in jobs[:10]:  # ten bulk jobs cancelled: i = 0..9
        dashboard.jobs.cancel(job.id)

    def shown_i() -> list[int]:
        cells = page.locator("#jobs tbody tr td.data").all_inner_texts()
        return [int(re.search(r'"i":(\d+)', text).group(1)) for text in cells]  # type: ignore[union-attr]

    # Filter by name through the form: newest first by default.
    page.goto("/jobs")
    page.fill("#f-name", "bulk")
    page.fill("#f-limit", "50")
    page.click("#apply-filters")
    page.wait_for_url(re.compile(r"name=bulk"))
    expect(page.locator("#page-range")).to_have_text("Jobs 1 to 50")
    assert shown_i() == list(range(119, 69, -1))
    # The current order's header sorts the other way round.
    page.click("#jobs th a[data-sort=createdAt]")
    page.wait_for_url(re.compile(r"sort=createdAt&dir=asc"))
    expect(page.locator("#jobs th[aria-sort=ascending]")).to_contain_text("Created")
    assert shown_i() == list(range(50))
    page.click("#next-page")
    expect(page.locator("#page-range")).to_have_text("Jobs 51 to 100")
    assert shown_i() == list(range(50, 100))
    page.click("#next-page")
    expect(page.locator("#page-range")).to_have_text("Jobs 101 to 120")
    assert shown_i() == list(range(100, 120))
    assert page.locator("#next-page").count() == 0
    page.click("#prev-page")
    expect(page.locator("#page-range")).to_have_text("Jobs 51 to 100")

    # Status chips apply as they are toggled; a data filter (JSON values: "even" is a string,
    # i=3 a number) with the form.
    page.goto("/jobs?name=bulk&limit=100&sort=createdAt&dir=asc")
    page.click("label.chip-cancelled")
    page.wait_for_url(re.compile(r"status=cancelled"))
    page.click("label.chip-completed")
    page.wait_for_url(re.compile(r"status=completed&status=cancelled"))
    expect(page.locator("#f-status-cancelled")).to_be_checked()
    page.fill("#f-data", "group=even")
    page.click("#apply-filters")
    expect(page.locator("#page-range")).to_have_text("Jobs 1 to 5")
    assert shown_i() == [0, 2, 4, 6, 8]
    assert set(
        page.locator("#jobs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.status)")
    ) == {"cancelled"}
    page.goto("/jobs?data=i=3&sort=name&dir=asc")
    expect(page.locator("#page-range")).to_have_text("Jobs 1 to 2")
    assert page.locator("#jobs tbody th .name").all_inner_texts() == ["bulk", "other"]
    page.goto("/jobs?data=group=odd&status=pending&limit=500")
    expect(page.locator("#page-range")).to_have_text("Jobs 1 to 55")

    # An invalid filter typed in the form shows the message, not a traceback.
    page.goto("/jobs")
    page.fill("#f-data", "$where=1")
    with page.expect_response(lambda r: "/jobs?" in r.url and "/partials/" not in r.url) as refused:
        page.click("#apply-filters")
    assert refused.value.status == 400
    expect(page.locator("#error")).to_contain_text("invalid data key")


def test_live_refresh_updates_the_table_without_navigation(
    signed_in: Any, dashboard: DashboardServer
) -> None:
    page = signed_in
    job = dashboard.jobs.schedule("live", {"step": 1}, delay=3600)
    page.goto("/jobs?name=live")
    row = page.locator(f"tr[data-job-id='{job.id}']")
    expect(row.locator(".job-status")).to_have_text("pending")
    page.evaluate("window.__sameDocument = true")
    dashboard.sync_db["scheduler_jobs"].update_one(
        {"_id": job.id}, {"$set": {"status": "failed", "lastError": "changed under the page"}}
    )
    expect(row.locator(".job-status")).to_have_text("failed", timeout=10_000)
    expect(row).to_contain_text("changed under the page")
    expect(row.locator("[data-action=retry]")).to_be_visible()
    # A second job appears in the same table; the overview counts follow too.
    second = dashboard.jobs.schedule("live", {"step": 2}, delay=3600)
    expect(page.locator(f"tr[data-job-id='{second.id}']")).to_be_visible(timeout=10_000)
    assert page.evaluate("window.__sameDocument") is True

    page.goto("/")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#by-status td[data-status=failed]")).to_have_text("1")
    dashboard.sync_db["scheduler_jobs"].update_many({}, {"$set": {"status": "failed"}})
    expect(page.locator("#by-status td[data-status=failed]")).to_have_text("2", timeout=10_000)
    assert page.evaluate("window.__sameDocument") is True


def test_overview_shows_counts_lag_failures_and_throughput(
    signed_in: Any, dashboard: DashboardServer
) -> None:
    page = signed_in
    due = dashboard.jobs.schedule_bulk([{"name": "due", "data": {"i": i}} for i in range(3)])
    done = dashboard.jobs.schedule_bulk([{"name": "done", "data": {"i": i}} for i in range(4)])
    collection = dashboard.sync_db["scheduler_jobs"]
    collection.update_many(
        {"_id": {"$in": [j.id for j in due]}},
        {"$set": {"nextRunAt": datetime.now(timezone.utc) - timedelta(minutes=5)}},
    )
    collection.update_many(
        {"_id": {"$in": [j.id for j in done]}},
        {"$set": {"status": "completed", "updatedAt": datetime.now(timezone.utc)}},
    )
    collection.update_one(
        {"_id": done[0].id},
        {"$set": {"status": "failed", "lastError": "x", "updatedAt": datetime.now(timezone.utc)}},
    )
    page.goto("/")
    expect(page.locator("#active")).to_have_text("3")  # the due ones; the others finished
    expect(page.locator("#due")).to_have_text("3")
    expect(page.locator("#lag")).to_have_text(re.compile(r"^[4-6] min \d+ s$"))
    expect(page.locator("#failed-recently")).to_have_text("1")
    expect(page.locator("#by-name tr[data-name='done'] td[data-status=completed]")).to_have_text(
        "3"
    )
    expect(page.locator("#by-name tr[data-name='due'] td[data-status=pending]")).to_have_text("3")
    expect(page.locator("#total-completed")).to_have_text("3")
    expect(page.locator("#total-failed")).to_have_text("1")
    expect(
        page.locator("#throughput tbody tr").first.locator("[data-outcome=completed]")
    ).to_have_text("3")
    expect(page.locator("#throughput-rate")).to_have_text("0.1")  # 3 in 60 minutes
    page.click("#by-status td[data-status=pending] a")
    page.wait_for_url(re.compile(r"/jobs\?status=pending"))
    expect(page.locator("#page-range")).to_have_text("Jobs 1 to 3")
    eventually(lambda: page.locator("#jobs tbody tr").count() == 3)


# -- what the pages read --------------------------------------------------------------------

BLOB = "x" * (5 * 1024 * 1024)


def _profiled_reads(dashboard: DashboardServer, requests: Any) -> list[dict[str, Any]]:
    """The reads of the jobs collection (finds and aggregations) MongoDB's profiler saw while
    ``requests()`` ran."""
    db = dashboard.sync_db
    db.command("profile", 2)
    try:
        requests()
    finally:
        db.command("profile", 0)
    try:
        return list(
            db["system.profile"].find(
                {"ns": f"{db.name}.scheduler_jobs", "op": {"$in": ["query", "getmore", "command"]}}
            )
        )
    finally:
        db.drop_collection("system.profile")


def test_lists_and_the_overview_read_only_the_fields_they_show(
    dashboard: DashboardServer,
) -> None:
    jobs = [dashboard.jobs.schedule("big", {"blob": BLOB, "i": i}) for i in range(3)]
    dashboard.sync_db["scheduler_jobs"].update_many(
        {"_id": {"$in": [j.id for j in jobs[1:]]}},
        {
            "$set": {
                "status": "completed",
                "updatedAt": datetime.now(timezone.utc),
                "result": {"blob": BLOB},
            }
        },
    )

    def requests() -> None:
        with dashboard.client(headers={"Authorization": f"Bearer {dashboard.token}"}) as client:
            for path in (
                "/jobs",
                "/partials/jobs",
                "/jobs?status=completed",
                "/",
                "/partials/overview",
            ):
                response = client.get(path)
                assert response.status_code == 200, (path, response.text)
            listed = client.get("/jobs").text
            assert listed.count("(large: open the job)") == 3

    reads = _profiled_reads(dashboard, requests)
    assert len(reads) >= 5
    for read in reads:
        assert read["responseLength"] < 256 * 1024, (read["responseLength"], read["command"])


def test_the_overview_and_the_workers_page_never_scan_the_jobs(
    dashboard: DashboardServer,
) -> None:
    """Every read of the jobs collection the overview and the workers page make (MongoDB's
    profiler, aggregations included) goes through an index, and only the running jobs are
    fetched: no count of every job, whatever the collection holds."""
    now = datetime.now(timezone.utc)
    future = dashboard.jobs.schedule_bulk([{"name": f"n{i % 7}", "delay": 600} for i in range(40)])
    due = dashboard.jobs.schedule_bulk([{"name": "due"} for _ in range(5)])
    dashboard.jobs.schedule("join", depends_on=[future[0].id])  # waiting
    collection = dashboard.sync_db["scheduler_jobs"]
    collection.update_many(
        {"_id": {"$in": [j.id for j in future[:20]]}},
        {"$set": {"status": "completed", "updatedAt": now - timedelta(days=1)}},
    )
    collection.update_many(
        {"_id": {"$in": [j.id for j in future[20:24]]}},
        {"$set": {"status": "failed", "updatedAt": now}},
    )
    running = [j.id for j in due[:2]]
    collection.update_many(
        {"_id": {"$in": running}},
        {"$set": {"status": "running", "lockUntil": now + timedelta(minutes=1)}},
    )

    def requests() -> None:
        with dashboard.client(headers={"Authorization": f"Bearer {dashboard.token}"}) as client:
            for path in ("/", "/partials/overview", "/workers", "/partials/workers"):
                assert client.get(path).status_code == 200, path

    reads = _profiled_reads(dashboard, requests)
    aggregations = [r for r in reads if "aggregate" in r.get("command", {})]
    assert len(aggregations) >= 4 * 7, [r["command"] for r in reads]  # activity: seven each
    for read in reads:
        plan = read.get("planSummary", "")
        assert "COLLSCAN" not in plan and plan, (plan, read["command"])
        assert read.get("docsExamined", 0) <= len(running), (read["docsExamined"], plan)


def test_counts_that_stopped_at_their_read_limit_show_a_plus(
    dashboard: DashboardServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mongo_job_scheduler import _procedures
    from mongo_job_scheduler.dashboard import _app

    monkeypatch.setattr(_procedures, "ACTIVITY_READ_LIMIT", 3)
    monkeypatch.setattr(_app, "ACTIVITY_READ_LIMIT", 3)
    jobs = dashboard.jobs.schedule_bulk([{"name": "busy"} for _ in range(4)])
    dashboard.sync_db["scheduler_jobs"].update_many(
        {"_id": {"$in": [j.id for j in jobs]}},
        {"$set": {"nextRunAt": datetime.now(timezone.utc) - timedelta(minutes=1)}},
    )
    dashboard.jobs.schedule("quiet", delay=600)
    with dashboard.client(headers={"Authorization": f"Bearer {dashboard.token}"}) as client:
        page = client.get("/partials/overview").text
    assert re.search(r'id="active">3\+<', page)
    assert re.search(r'id="due">3\+<', page)
    assert "at least (of the first 3 due)" in page
    busy = re.search(r'<tr data-name="busy">(.*?)</tr>', page, re.S)
    assert busy is not None
    assert '<td data-status="pending">3+</td>' in busy.group(1)
    assert '<td data-status="completed">0</td>' in busy.group(1)  # not capped
    assert "<td>3+</td>" in busy.group(1)  # the total
    assert 'data-name="quiet"' not in page  # beyond the first 3 pending in the claim order
    assert "reads at most 3 jobs of each active status" in page


def test_a_job_page_cuts_large_values_and_links_to_each_whole_value(
    dashboard: DashboardServer,
) -> None:
    blob = "y" * (1024 * 1024)
    rows = list(range(100_000))
    trace = "Traceback (most recent call last):\n" + "z" * 300_000
    job = dashboard.jobs.schedule("huge", {"blob": blob})
    dashboard.sync_db["scheduler_jobs"].update_one(
        {"_id": job.id},
        {
            "$set": {
                "status": "failed",
                "lastError": "boom",
                "lastErrorTrace": trace,
                "result": rows,
            }
        },
    )
    bearer = {"Authorization": f"Bearer {dashboard.token}"}
    with dashboard.client(headers=bearer) as client:
        for path in (f"/jobs/{job.id}", f"/partials/jobs/{job.id}"):
            page = client.get(path)
            assert page.status_code == 200
            assert len(page.text) < 256 * 1024, len(page.text)
            for field in ("data", "result", "lastErrorTrace"):
                assert f'href="/jobs/{job.id}/raw/{field}"' in page.text, field
            shown = re.search(r'<pre id="job-document">(.*?)</pre>', page.text, re.S)
            assert shown is not None
            document = json.loads(html.unescape(shown.group(1)))  # still JSON
            assert document["name"] == "huge" and document["lastError"] == "boom"
            assert f"/jobs/{job.id}/raw/data" in document["data"]
        assert '<pre id="last-error">boom</pre>' in page.text
        whole = client.get(f"/jobs/{job.id}/raw/data")
        assert whole.status_code == 200
        assert whole.headers["content-type"].startswith("application/json")
        assert whole.json() == {"blob": blob}
        assert client.get(f"/jobs/{job.id}/raw/result").json() == rows
        assert client.get(f"/jobs/{job.id}/raw/lastErrorTrace").json() == trace
        assert client.get(f"/jobs/{job.id}/raw/name").json() == "huge"
        assert client.get(f"/jobs/{job.id}/raw/nothing").status_code == 404
        assert client.get(f"/jobs/{ObjectId()}/raw/data").status_code == 404
        assert client.get("/jobs/not-an-id/raw/data").status_code == 400
    with dashboard.client() as anonymous:
        assert anonymous.get(f"/jobs/{job.id}/raw/data").status_code == 401


def test_the_overview_shows_the_busiest_names_and_sums_the_rest(
    dashboard: DashboardServer,
) -> None:
    """130 names: the 100 with the most jobs get a row each, the other 30 one row together."""
    items = [{"name": f"n{i:03}", "delay": 600} for i in range(130)]
    items += [{"name": f"n{i:03}", "delay": 600} for i in range(30, 130)]  # n030.. have 2 jobs
    dashboard.jobs.schedule_bulk(items)
    for i in range(120):
        dashboard.jobs.pause(f"p{i:03}")
    with dashboard.client(headers={"Authorization": f"Bearer {dashboard.token}"}) as client:
        page = client.get("/partials/overview").text
    by_name = page[page.index('id="by-name"') : page.index("</table>", page.index('id="by-name"'))]
    rows = re.findall(r'<tr data-name="([^"]+)"', by_name)
    assert rows == [f"n{i:03}" for i in range(30, 130)]
    other = re.search(r'<tr id="other-names">(.*?)</tr>', by_name, re.S)
    assert other is not None
    assert "150 other names" in other.group(1)  # n000..n029 and the 120 paused names
    assert re.search(r'<td data-status="pending">30</td>', other.group(1))
    paused = re.findall(r'<li data-name="(p\d+)"', page)
    assert len(paused) == 100
    assert "and 20 more" in page


def test_a_signed_out_session_is_refused_over_an_in_memory_store() -> None:
    token = "a-token-for-the-memory-store-" + "x" * 8
    app = create_app(Scheduler(InMemoryJobStore()), token=token)

    async def scenario() -> tuple[int, int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
            await client.post("/login", data={"token": token})
            cookie = client.cookies["mjs_session"]
            page = await client.get("/partials/jobs")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', (await client.get("/")).text)
            assert csrf is not None
            await client.post("/logout", data={"csrf_token": csrf.group(1)})
            client.cookies.set("mjs_session", cookie)
            replayed = await client.get("/partials/jobs")
            pause = await client.post(
                "/names/pause", data={"name": "x", "csrf_token": csrf.group(1)}
            )
            return page.status_code, replayed.status_code, pause.status_code

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, scenario()).result(timeout=30) == (200, 401, 401)


# -- request bodies ---------------------------------------------------------------------------


def _raw_exchange(dashboard: DashboardServer, head: str, body: bytes) -> str:
    """Send ``head`` and the start of a body on a raw connection (never the rest) and return the
    status line of the answer; a server that waits for the whole body times out here."""
    host, port = dashboard.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode("ascii") + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode("ascii", "replace")


def test_a_large_body_is_refused_before_it_is_read(dashboard: DashboardServer) -> None:
    """A 100 MB upload announced by Content-Length, or streamed in chunks past the limit, is
    answered 413 at once on every route, signed in or not; nothing waits for the rest."""
    boundary = "b0undary"
    start = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="token"\r\n\r\n'.encode()
        + b"x" * 1024
    )
    for path in ("/login", "/logout", f"/jobs/{ObjectId()}/cancel", "/names/pause", "/jobs"):
        method = "GET" if path == "/jobs" else "POST"
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: dashboard\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {100 * 1024 * 1024}\r\n\r\n"
        )
        assert " 413 " in _raw_exchange(dashboard, head, start) + " ", path
    chunked = (
        "POST /login HTTP/1.1\r\nHost: dashboard\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"token=" + b"x" * (64 * 1024 - 6)
    body = b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(2))
    assert " 413 " in _raw_exchange(dashboard, chunked, body) + " "
    with dashboard.client() as client:  # an ordinary sign-in is unaffected
        _sign_in(client, dashboard.token)


# -- hosts and redirects ----------------------------------------------------------------------


def _status_of_raw_path(dashboard: DashboardServer, path: str, headers: dict[str, str]) -> int:
    """The status of a GET of exactly ``path`` (no client-side URL normalisation)."""
    connection = http.client.HTTPConnection(dashboard.base_url.removeprefix("http://"), timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_no_redirect_takes_its_host_from_the_request(dashboard: DashboardServer) -> None:
    """Every redirect is a local path: a forged Host header never becomes a Location."""
    job = dashboard.jobs.schedule("redirected", None, delay=3600)
    evil = {"Host": "evil.example"}
    seen: list[str] = []

    def location(response: httpx.Response) -> str:
        assert response.status_code in (303, 307, 308), response.text
        where = response.headers["location"]
        seen.append(where)
        assert where.startswith("/") and not where.startswith(("//", "/\\")), where
        return where

    with dashboard.client(headers=evil) as client:
        assert location(client.get("/jobs/")) == "/jobs"
        assert location(client.get("/jobs/?status=pending")) == "/jobs?status=pending"
        assert location(client.get(f"/jobs/{job.id}/")) == f"/jobs/{job.id}"
        assert location(client.get("/")).startswith("/login?next=")
        for raw_path in ("//evil.example/", "/\\evil.example/", "/%2F%2Fevil.example/"):
            assert _status_of_raw_path(dashboard, raw_path, evil) == 404, raw_path
        location(client.post("/login", data={"token": dashboard.token, "next": "/jobs"}))
        csrf = _csrf(client)
        location(client.post(f"/jobs/{job.id}/cancel", data={"csrf_token": csrf, "next": "/"}))
        location(client.get("/login"))
        location(client.post("/logout", data={"csrf_token": csrf}))
    assert all("evil" not in where for where in seen), seen


def test_allowed_hosts_refuse_any_other_host() -> None:
    app = create_app(
        Scheduler(InMemoryJobStore()), token=LONG, allowed_hosts=["dash.example", "127.0.0.1"]
    )

    async def requests() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash.example") as c:
            answers = [await c.get("/healthz"), await c.get("/login")]
            answers.append(await c.get("/healthz", headers={"Host": "127.0.0.1"}))
            answers.append(await c.get("/login", headers={"Host": "evil.example"}))
            answers.append(await c.get("/jobs/", headers={"Host": "evil.example"}))
            return [answer.status_code for answer in answers]

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(asyncio.run, requests()).result(timeout=30) == [200, 200, 200, 400, 400]
    with pytest.raises(ConfigurationError):
        create_app(Scheduler(InMemoryJobStore()), token=LONG, allowed_hosts="dash.example")


def test_the_overview_lists_live_workers_and_names_nobody_handles(
    dashboard: DashboardServer,
) -> None:
    headers = {"Authorization": f"Bearer {dashboard.token}"}
    with dashboard.client(headers=headers) as client:
        assert 'id="no-workers"' in client.get("/workers").text
    dashboard.jobs.schedule("orphan-name")

    async def start_worker(scheduler: Scheduler) -> Scheduler:
        worker = Scheduler(scheduler.store, id="overview-worker")

        @worker.task("resize")
        async def resize(job: Any) -> None: ...

        await worker.start()
        return worker

    worker = dashboard.run(start_worker)
    try:
        with dashboard.client(headers=headers) as client:
            overview = client.get("/").text
            page = client.get("/workers").text
        assert re.search(r'id="worker-count"><a href="/workers">1</a>', overview)
        table = re.search(r'<table class="grid" id="live-workers">(.*?)</table>', page, re.S)
        assert table is not None
        assert "overview-worker-" in table.group(1)
        assert 'href="/jobs?name=resize">resize</a>' in table.group(1)
        for text in (overview, page):
            unhandled = re.search(r'<p class="error" id="unhandled">(.*?)</p>', text, re.S)
            assert unhandled is not None and "orphan-name</a> (1)" in unhandled.group(1)
    finally:
        dashboard.run(lambda _: worker.stop(graceful=False))
