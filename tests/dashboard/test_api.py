"""The HTTP API over real HTTP: uvicorn on 127.0.0.1 serving the dashboard (the API at /api)
over a real MongoDB, driven by httpx. Every response of the ``api`` client is also checked
against the OpenAPI document the server publishes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from mongo_job_scheduler import (
    AttemptOutcome,
    ConfigurationError,
    InMemoryJobStore,
    JobStore,
    MongoJobStore,
    Scheduler,
)
from mongo_job_scheduler._history import Ending
from mongo_job_scheduler.dashboard import create_api, create_app
from mongo_job_scheduler.stores.base import Fence, Finish

from .conftest import DashboardServer
from .openapi_check import OpenApi, checked_client, protected_requests
from .serving import served

JOBS = "scheduler_jobs"
API_TOKEN = "api-test-token-0123456789"
"""The token of the APIs the tests serve themselves."""
UNREACHABLE = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300"


@pytest.fixture(scope="module")
def openapi(dashboard: DashboardServer) -> OpenApi:
    """The OpenAPI document the server publishes (no token needed)."""
    response = httpx.get(f"{dashboard.base_url}/api/openapi.json", timeout=10)
    assert response.status_code == 200
    return OpenApi(response.json())


@pytest.fixture
def api(dashboard: DashboardServer, openapi: OpenApi) -> Iterator[httpx.Client]:
    """A client of ``/api`` that sends the token."""
    headers = {"Authorization": f"Bearer {dashboard.token}"}
    with checked_client(f"{dashboard.base_url}/api", openapi, headers=headers) as client:
        yield client


@pytest.fixture
def anonymous(dashboard: DashboardServer, openapi: OpenApi) -> Iterator[httpx.Client]:
    """A client of ``/api`` without a token."""
    with checked_client(f"{dashboard.base_url}/api", openapi) as client:
        yield client


def _claim(dashboard: DashboardServer) -> list[Any]:
    """Claim the due jobs as a worker would (through the server's store): they are running."""
    store = dashboard.scheduler.store
    assert store is not None
    result = dashboard.run(lambda s: store.claim("api-test-worker", 10, timedelta(minutes=5), 3))
    return [claimed.job_id for claimed in result.jobs]


def _set(dashboard: DashboardServer, job_id: Any, **fields: Any) -> None:
    dashboard.sync_db[JOBS].update_one({"_id": ObjectId(str(job_id))}, {"$set": fields})


def _stored(dashboard: DashboardServer, job_id: Any) -> dict[str, Any]:
    doc = dashboard.sync_db[JOBS].find_one({"_id": ObjectId(str(job_id))})
    assert doc is not None
    return dict(doc)


def _count(dashboard: DashboardServer) -> int:
    return int(dashboard.sync_db[JOBS].count_documents({}))


# -- health, tokens -------------------------------------------------------------------------------


def test_health_needs_no_token_and_tells_nothing_more(anonymous: httpx.Client) -> None:
    response = anonymous.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
    assert "set-cookie" not in response.headers


def test_every_other_route_needs_the_token_and_no_cookie_will_do(
    dashboard: DashboardServer, anonymous: httpx.Client
) -> None:
    job = dashboard.jobs.schedule("guarded", {"secret": 1}, delay=3600)
    with httpx.Client(base_url=dashboard.base_url, timeout=10) as browser:
        signed_in = browser.post("/login", data={"token": dashboard.token, "next": "/"})
        assert signed_in.status_code == 303 and "mjs_session" in browser.cookies
        cookies = dict(browser.cookies)
    anonymous.cookies.update(cookies)  # a signed-in browser's cookie is not a token here
    for method, path, body in protected_requests(job.id, "guarded"):
        for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}):
            response = anonymous.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"] == "unauthorized"
            assert "secret" not in response.text
    wrong = anonymous.get("/jobs", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401 and wrong.json()["message"] == "that token is not valid"
    assert _stored(dashboard, job.id)["status"] == "pending" and _count(dashboard) == 1


def test_wrong_tokens_are_throttled_per_client(
    dashboard: DashboardServer, openapi: OpenApi
) -> None:
    """A client (here 127.0.0.2) that sent 10 wrong tokens in a minute is refused, even with
    the right token; other clients (127.0.0.1) are not."""
    other_address = httpx.HTTPTransport(local_address="127.0.0.2")
    good = {"Authorization": f"Bearer {dashboard.token}"}
    with checked_client(f"{dashboard.base_url}/api", openapi, transport=other_address) as guesser:
        for attempt in range(10):
            response = guesser.get("/jobs", headers={"Authorization": f"Bearer guess-{attempt}"})
            assert response.status_code == 401
        refused = guesser.get("/jobs", headers=good)
        assert refused.status_code == 429
        assert refused.json()["error"] == "throttled"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert guesser.get("/health").status_code == 200  # no token, no throttle
    with checked_client(f"{dashboard.base_url}/api", openapi, headers=good) as neighbour:
        assert neighbour.get("/jobs").status_code == 200


# -- schedule -------------------------------------------------------------------------------------


def test_schedule_stores_milliseconds_as_given_and_says_when_a_dedupe_key_matched(
    dashboard: DashboardServer, api: httpx.Client
) -> None:
    body = {
        "name": "send-email",
        "data": {"to": "a@example.com", "n": 1},
        "delayMs": 90_000,
        "repeat": {"every": 60_000},
        "retry": {"maxAttempts": 3, "delay": 1000, "maxDelay": 30_000, "backoff": "exponential"},
        "priority": 2,
        "concurrency": 4,
        "dedupeKey": "email:a",
        "timeoutMs": 2500,
        "rateLimit": {"limit": 5, "periodMs": 60_000},
    }
    before = datetime.now(timezone.utc)
    created = api.post("/jobs", json=body)
    assert created.status_code == 201, created.text
    answer = created.json()
    assert answer["created"] is True and "message" not in answer
    job = answer["job"]
    assert created.headers["location"] == f"/api/jobs/{job['_id']}"
    stored = _stored(dashboard, job["_id"])
    assert stored["repeat"] == {"every": 60_000}
    assert stored["retry"] == {
        "maxAttempts": 3,
        "delay": 1000,
        "backoff": "exponential",
        "maxDelay": 30_000,
    }
    assert stored["timeoutMs"] == 2500 and stored["rateLimit"] == {"limit": 5, "periodMs": 60_000}
    assert (stored["priority"], stored["concurrency"], stored["dedupeKey"]) == (2, 4, "email:a")
    due = datetime.fromisoformat(job["nextRunAt"].replace("Z", "+00:00"))
    assert before + timedelta(seconds=89) <= due <= before + timedelta(seconds=95)
    assert job["repeat"] == {"every": 60_000} and job["data"] == body["data"]

    again = api.post("/jobs", json={**body, "data": {"n": 2}})
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["job"]["_id"] == job["_id"]
    assert again.json()["job"]["data"] == body["data"]
    assert "holds the dedupe key 'email:a'" in again.json()["message"]
    assert _count(dashboard) == 1


def test_schedule_at_an_instant_with_an_offset_and_with_dependencies(
    dashboard: DashboardServer, api: httpx.Client
) -> None:
    first = api.post("/jobs", json={"name": "extract", "runAt": "2030-01-01T09:00:00+01:00"})
    assert first.status_code == 201
    assert first.json()["job"]["nextRunAt"] == "2030-01-01T08:00:00.000Z"
    first_id = first.json()["job"]["_id"]
    after = api.post("/jobs", json={"name": "load", "dependsOn": [first_id], "runOnFailure": True})
    assert after.status_code == 201
    assert after.json()["job"]["status"] == "waiting"
    assert after.json()["job"]["dependsOn"] == [first_id]
    assert after.json()["job"]["runOnFailure"] is True


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"name": "x", "repeat": {"every": 50}}, "repeat.every", "must be at least 100 ms, got 50"),
        ({"name": "x", "priority": 11}, "priority", "must be an integer from 1 to 10, got 11"),
        ({"name": "x", "priority": 2.5}, "priority", "must be an integer from 1 to 10"),
        ({"name": "x", "retry": {"maxAttempts": 0}}, "retry.maxAttempts", "must be >= 1, got 0"),
        ({"name": "x", "retry": {"delay": 100}}, "retry.maxAttempts", "is required"),
        ({"name": "x", "retry": {"maxAttempts": 2, "delayMs": 5}}, "retry", "unknown key(s)"),
        ({"name": "x", "repeat": {"cron": "61 * * * *"}}, "repeat.cron", ""),
        (
            {"name": "x", "repeat": {"cron": "0 9 * * *", "timezone": "Mars/Olympus"}},
            "repeat.timezone",
            "unknown time zone",
        ),
        ({"name": "x", "delayMs": -1}, "delayMs", "must be >= 0, got -1"),
        ({"name": "x", "delayMs": "1m"}, "delayMs", "expected a number of milliseconds"),
        ({"name": "x", "timeoutMs": 0}, "timeoutMs", "must be > 0, got 0"),
        ({"name": "x", "runAt": "2030-01-01T09:00:00"}, "runAt", "has no offset"),
        ({"name": "x", "runAt": "soon"}, "runAt", "expected an ISO 8601 date-time"),
        ({"name": "x", "runAt": "2030-01-01T09:00:00Z", "delayMs": 1}, "runAt", "not both"),
        ({"name": "x", "dedupeKey": "k" * 513}, "dedupeKey", "at most 512 characters"),
        ({"name": "x", "dedupeWindowMs": 1000}, "dedupeWindowMs", "needs a dedupe_key"),
        ({"name": "x", "dependsOn": ["zz"]}, "dependsOn[0]", "not a valid job id"),
        ({"name": "x", "dependsOn": [str(ObjectId())]}, "dependsOn[0]", "exists"),
        ({"name": "x", "data": {"$where": "1"}}, "data", "keys must not start with '$'"),
        ({"name": "", "data": 1}, "name", "must not be empty"),
        ({"name": 7}, "name", "expected a string, got int"),
        ({"data": {}}, "name", "is required"),
        ({"name": "x", "colour": "red"}, "body", "unknown field(s) ['colour']"),
        (["not", "an", "object"], "body", "expected a JSON object"),
    ],
)
def test_invalid_jobs_are_400_naming_the_field_and_nothing_is_written(
    dashboard: DashboardServer, api: httpx.Client, body: Any, field: str, message: str
) -> None:
    response = api.post("/jobs", json=body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["error"] == "invalid" and error["field"] == field
    assert error["message"].startswith(f"{field}: ") and message in error["message"]
    assert _count(dashboard) == 0


def test_bodies_that_are_not_json_or_too_large_are_refused(
    dashboard: DashboardServer, api: httpx.Client, openapi: OpenApi
) -> None:
    cases = [
        ({"content": b'{"name": "x"}'}, 415, "unsupported_media_type"),
        ({"content": b'{"name": "x"}', "headers": {"Content-Type": "text/plain"}}, 415, None),
        ({"content": b'{"name": ', "headers": {"Content-Type": "application/json"}}, 400, None),
        (
            {
                "content": b'{"name": "x", "data": NaN}',
                "headers": {"Content-Type": "application/json"},
            },
            400,
            None,
        ),
        (
            {
                "content": b'{"name": "x", "data": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
                "headers": {"Content-Type": "application/json"},
            },
            400,
            "invalid",
        ),
    ]
    for kwargs, status, code in cases:
        response = api.post("/jobs", **kwargs)
        assert response.status_code == status, response.text
        if code is not None:
            assert response.json()["error"] == code

    for method, path in (
        ("POST", "/api/jobs"),
        ("POST", "/api/jobs/bulk"),
        ("PATCH", f"/api/jobs/{ObjectId()}"),
    ):
        status, body = _oversized(dashboard.base_url, method, path, dashboard.token)
        assert status == 413 and body["error"] == "too_large", (path, body)
        openapi.validate(body, {"$ref": "#/components/schemas/Error"})
        chunked_status, _ = _oversized(
            dashboard.base_url, method, path, dashboard.token, chunked=True
        )
        assert chunked_status == 413
    assert _count(dashboard) == 0


def _oversized(
    base_url: str, method: str, path: str, token: str, *, chunked: bool = False
) -> tuple[int, Any]:
    """Send the start of a 2 MiB JSON body (announced by Content-Length, or chunked without
    one) on a raw connection, never the rest; the status and JSON body of the answer (a
    server that waited for the whole body would time out here)."""
    host, port = base_url.removeprefix("http://").split(":")
    size = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {2 * 1024 * 1024}"
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\n{size}\r\n\r\n"
    )
    start = b'{"name": "x", "data": "' + b"a" * (64 * 1024)
    if chunked:
        start = b"".join(f"{len(start):x}\r\n".encode() + start + b"\r\n" for _ in range(20))
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode("ascii") + start)
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
            header, _, rest = answer.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: (\d+)", header)
            if length and len(rest) >= int(length.group(1)):
                break
    header, _, rest = answer.partition(b"\r\n\r\n")
    return int(header.split(b" ")[1]), json.loads(rest)


def test_bulk_schedules_in_order_and_reports_each_job(
    dashboard: DashboardServer, api: httpx.Client
) -> None:
    held = dashboard.jobs.schedule("digest", {"user": 0}, dedupe_key="digest:0", delay=3600)
    response = api.post(
        "/jobs/bulk",
        json={
            "jobs": [
                {"name": "digest", "data": {"user": 1}, "dedupeKey": "digest:1"},
                {"name": "digest", "data": {"user": 1}, "dedupeKey": "digest:1"},
                {"name": "digest", "data": {"user": 0}, "dedupeKey": "digest:0"},
                {"name": "cleanup", "delayMs": 60_000, "repeat": {"cron": "0 3 * * *"}},
            ]
        },
    )
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["created"] == 2
    assert [item["created"] for item in answer["jobs"]] == [True, False, False, True]
    ids = [item["job"]["_id"] for item in answer["jobs"]]
    assert ids[0] == ids[1] and ids[2] == str(held.id)
    assert answer["jobs"][3]["job"]["repeat"] == {"cron": "0 3 * * *", "timezone": "UTC"}
    assert _count(dashboard) == 3

    all_known = api.post("/jobs/bulk", json={"jobs": [{"name": "digest", "dedupeKey": "digest:0"}]})
    assert all_known.status_code == 200 and all_known.json()["created"] == 0

    refused = api.post(
        "/jobs/bulk",
        json={"jobs": [{"name": "ok"}, {"name": "bad", "retry": {"maxAttempts": 2, "delay": -5}}]},
    )
    assert refused.status_code == 400
    assert refused.json()["field"] == "jobs[1].retry.delay"
    too_many = api.post("/jobs/bulk", json={"jobs": [{"name": "x"}] * 1001})
    assert too_many.status_code == 400 and too_many.json()["field"] == "jobs"
    assert _count(dashboard) == 3


# -- read -----------------------------------------------------------------------------------------


def test_list_filters_sorts_and_pages_on_the_server(
    dashboard: DashboardServer, api: httpx.Client
) -> None:
    jobs = [
        dashboard.jobs.schedule("report", {"org": "o1", "n": 1, "meta": {"k": "x"}}, delay=60),
        dashboard.jobs.schedule("report", {"org": "o2", "n": 2}, delay=60, priority=1),
        dashboard.jobs.schedule("report", {"org": "o1", "n": "2"}, delay=60),
        dashboard.jobs.schedule("email", {"org": "o1"}, delay=60),
    ]
    assert dashboard.jobs.cancel(jobs[3].id)
    _set(dashboard, jobs[2].id, status="failed")

    def ids(query: str) -> list[str]:
        response = api.get(f"/jobs?{query}")
        assert response.status_code == 200, response.text
        return [job["_id"] for job in response.json()["jobs"]]

    expected = [str(j.id) for j in jobs]
    assert ids("") == expected[::-1]  # newest first
    assert ids("order=asc") == expected
    assert ids("name=report&sort=priority&order=asc")[0] == expected[1]
    assert ids("status=failed,cancelled&order=asc") == [expected[2], expected[3]]
    assert ids("status=failed&status=cancelled&order=asc") == [expected[2], expected[3]]
    assert ids("data.org=o1&order=asc") == [expected[0], expected[2], expected[3]]
    assert ids("data.n=2") == [expected[1]]  # the number 2
    assert ids("data.n=%222%22") == [expected[2]]  # the string "2"
    assert ids("data.meta.k=x") == [expected[0]]
    first = api.get("/jobs?limit=3&order=asc").json()
    assert [j["_id"] for j in first["jobs"]] == expected[:3]
    assert first["next"] == "/api/jobs?limit=3&order=asc&skip=3"
    last = api.get(first["next"].removeprefix("/api")).json()
    assert [j["_id"] for j in last["jobs"]] == expected[3:] and last["next"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("skip=-1", "skip"),
        ("sort=data", "sort"),
        ("order=up", "order"),
        ("colour=red", "colour"),
        ("data.%24where=1", "data"),
        ("data.a..b=1", "data"),
        ('data.n={"$gt":0}', "data"),
        ("data.n=1&data.n=2", "data.n"),
    ],
)
def test_invalid_list_queries_are_400_and_run_no_query(
    api: httpx.Client, query: str, field: str
) -> None:
    response = api.get(f"/jobs?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


def test_one_job_by_id(dashboard: DashboardServer, api: httpx.Client) -> None:
    job = dashboard.jobs.schedule("detail", {"ref": "r-1"}, delay=60)
    other = ObjectId()
    _set(dashboard, job.id, **{"data.other": other, "lastError": "boom"})
    response = api.get(f"/jobs/{job.id}")
    assert response.status_code == 200
    document = response.json()
    stored = _stored(dashboard, job.id)
    assert next(iter(document)) == "_id" and set(document) == set(stored)
    assert document["_id"] == str(job.id)
    assert document["data"] == {"ref": "r-1", "other": str(other)}
    assert document["lastError"] == "boom" and document["lockVersion"] == 0
    missing = api.get(f"/jobs/{ObjectId()}")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    invalid = api.get("/jobs/not-an-id")
    assert invalid.status_code == 400 and invalid.json()["field"] == "id"


def test_a_job_shows_its_attempt_history(dashboard: DashboardServer, api: httpx.Client) -> None:
    """``history`` is in the job as the API returns it, each entry in the documented schema
    (``Attempt``: the checked client validates every response)."""
    store = dashboard.scheduler.store
    assert store is not None
    job = dashboard.jobs.schedule("tried")
    assert "history" not in api.get(f"/jobs/{job.id}").json()
    [claimed] = _claim(dashboard)
    again = {"status": "pending", "nextRunAt": datetime.now(timezone.utc) - timedelta(seconds=1)}
    ending = Ending.of(AttemptOutcome.RETRIED, "$boom", "ValueError", timedelta(seconds=2))
    fence = Fence(claimed, "api-test-worker", 1)
    assert dashboard.run(lambda s: store.finish(fence, Finish(again, attempt=ending)))
    assert _claim(dashboard) == [job.id]
    cancelled = api.post(f"/jobs/{job.id}/cancel").json()["job"]
    retried, stopped = cancelled["history"]
    assert retried["outcome"] == "retried" and stopped["outcome"] == "cancelled"
    assert (retried["error"], retried["errorType"]) == ("$boom", "ValueError")
    assert retried["retryDelayMs"] == 2000
    assert (retried["lockVersion"], stopped["lockVersion"]) == (1, 2)
    assert retried["lockedBy"] == stopped["lockedBy"] == "api-test-worker"
    assert retried["endedAt"].endswith("Z") and retried["startedAt"].endswith("Z")
    assert api.get(f"/jobs/{job.id}").json()["history"] == cancelled["history"]


def test_stats_are_exact_and_activity_capped_beyond_ten_thousand_jobs(
    dashboard: DashboardServer, api: httpx.Client
) -> None:
    for start in range(0, 10_500, 1000):
        count = min(1000, 10_500 - start)
        items = [{"name": "bulk", "data": {"i": start + i}, "delay": 3600} for i in range(count)]
        dashboard.jobs.schedule_bulk(items)
    due = dashboard.jobs.schedule("due-now")
    _set(dashboard, due.id, nextRunAt=datetime.now(timezone.utc) - timedelta(minutes=5))
    failed = dashboard.jobs.schedule("broken", delay=3600)
    _set(dashboard, failed.id, status="failed", updatedAt=datetime.now(timezone.utc))
    dashboard.jobs.pause("bulk")
    response = api.get("/jobs/stats")
    assert response.status_code == 200
    stats = response.json()
    assert stats["total"] == 10_502
    assert stats["byName"]["bulk"] == {"pending": 10_500}
    assert stats["byStatus"]["pending"] == 10_501 and stats["byStatus"]["failed"] == 1
    assert stats["due"] == 1 and stats["lagMs"] >= 5 * 60 * 1000
    assert stats["failedLastHour"] == 1 and stats["paused"] == ["bulk"]
    assert stats["unhandled"] == {"due-now": 1}
    # The bounded read: at most 10,000 pending jobs, so pending is capped.
    response = api.get("/jobs/activity", params={"minutes": 5})
    assert response.status_code == 200
    activity = response.json()
    assert activity["minutes"] == 5 and activity["capped"] == ["pending"]
    assert activity["byName"]["bulk"]["pending"] + activity["byName"]["due-now"]["pending"] == (
        10_000
    )
    assert activity["byName"]["broken"] == {"failed": 1}
    assert activity["byStatus"]["pending"] == 10_000 and activity["byStatus"]["failed"] == 1
    assert activity["due"] == 1 and activity["dueByName"] == {"due-now": 1}
    assert activity["lagMs"] >= 5 * 60 * 1000
    assert activity["paused"] == ["bulk"] and activity["unhandled"] == {"due-now": 1}
    refused = api.get("/jobs/activity", params={"minutes": "1441"})
    assert refused.status_code == 400 and refused.json()["field"] == "minutes"


# -- change ---------------------------------------------------------------------------------------


def test_patch_changes_the_given_fields_in_the_stored_units(
    dashboard: DashboardServer, api: httpx.Client
) -> None:
    job = dashboard.jobs.schedule("edit", {"v": 1}, delay=3600, retry=3, timeout=5)
    response = api.patch(
        f"/jobs/{job.id}",
        json={
            "data": {"v": 2},
            "priority": 1,
            "retry": {"maxAttempts": 5, "delay": 250},
            "repeat": {"every": 3_600_000},
            "timeoutMs": None,
        },
    )
    assert response.status_code == 200, response.text
    stored = _stored(dashboard, job.id)
    assert stored["data"] == {"v": 2} and stored["priority"] == 1
    assert stored["retry"] == {"maxAttempts": 5, "delay": 250}
    assert stored["repeat"] == {"every": 3_600_000} and "timeoutMs" not in stored
    assert response.json()["repeat"] == {"every": 3_600_000}
    moved = api.patch(f"/jobs/{job.id}", json={"runAt": "2031-05-01T12:00:00-02:00"})
    assert moved.json()["nextRunAt"] == "2031-05-01T14:00:00.000Z"
    cleared = api.patch(f"/jobs/{job.id}", json={"repeat": None, "retry": None})
    assert "repeat" not in cleared.json() and "retry" not in cleared.json()

    for body, field in (({}, "body"), ({"priority": 0}, "priority"), ({"name": "y"}, "body")):
        refused = api.patch(f"/jobs/{job.id}", json=body)
        assert refused.status_code == 400 and refused.json()["field"] == field
    assert dashboard.jobs.cancel(job.id)
    conflict = api.patch(f"/jobs/{job.id}", json={"data": 3})
    assert conflict.status_code == 409 and conflict.json()["error"] == "conflict"
    assert api.patch(f"/jobs/{ObjectId()}", json={"data": 3}).status_code == 404
    assert _stored(dashboard, job.id)["data"] == {"v": 2}


def test_cancel_retry_and_run_now(dashboard: DashboardServer, api: httpx.Client) -> None:
    job = dashboard.jobs.schedule("act", delay=3600)
    cancelled = api.post(f"/jobs/{job.id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["cancelled"] is True
    assert cancelled.json()["job"]["status"] == "cancelled"
    again = api.post(f"/jobs/{job.id}/cancel")
    assert again.status_code == 200 and again.json()["cancelled"] is False
    run_now = api.post(f"/jobs/{job.id}/run-now")
    assert run_now.status_code == 409
    retried = api.post(f"/jobs/{job.id}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "pending"
    assert retried.json()["attempts"] == 0
    refused = api.post(f"/jobs/{job.id}/retry")
    assert refused.status_code == 409 and "pending" in refused.json()["message"]

    done = dashboard.jobs.schedule("act", delay=3600)
    _set(dashboard, done.id, status="completed")
    revived = api.post(f"/jobs/{done.id}/run-now")
    assert revived.status_code == 200 and revived.json()["status"] == "pending"
    due = datetime.fromisoformat(revived.json()["nextRunAt"].replace("Z", "+00:00"))
    assert due <= datetime.now(timezone.utc) + timedelta(seconds=5)
    for action in ("cancel", "retry", "run-now"):
        assert api.post(f"/jobs/{ObjectId()}/{action}").status_code == 404
        assert api.post(f"/jobs/nope/{action}").json()["field"] == "id"


def test_delete_refuses_a_running_job_until_it_is_cancelled(
    dashboard: DashboardServer, api: httpx.Client
) -> None:
    finished = dashboard.jobs.schedule("gone", dedupe_key="gone", delay=3600)
    _set(dashboard, finished.id, status="failed")
    deleted = api.delete(f"/jobs/{finished.id}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert api.get(f"/jobs/{finished.id}").status_code == 404
    assert api.delete(f"/jobs/{finished.id}").status_code == 404

    busy = dashboard.jobs.schedule("busy")
    assert _claim(dashboard) == [busy.id]
    refused = api.delete(f"/jobs/{busy.id}")
    assert refused.status_code == 409
    assert "cancel it first" in refused.json()["message"]
    assert _stored(dashboard, busy.id)["status"] == "running"
    assert api.post(f"/jobs/{busy.id}/cancel").json()["cancelled"] is True
    assert api.delete(f"/jobs/{busy.id}").status_code == 204
    assert api.delete("/jobs/nope").json()["field"] == "id"
    assert _count(dashboard) == 0


def test_pause_and_resume_a_name(dashboard: DashboardServer, api: httpx.Client) -> None:
    paused = api.post("/names/reports%2Fdaily/pause")
    assert paused.json() == {"name": "reports/daily", "paused": True, "changed": True}
    assert api.post("/names/reports%2Fdaily/pause").json()["changed"] is False
    assert dashboard.jobs.paused_names() == ["reports/daily"]
    resumed = api.post("/names/reports%2Fdaily/resume")
    assert resumed.json() == {"name": "reports/daily", "paused": False, "changed": True}
    assert api.post("/names/reports%2Fdaily/resume").json()["changed"] is False
    long = api.post(f"/names/{'n' * 201}/pause")
    assert long.status_code == 400 and long.json()["field"] == "name"


def test_other_methods_and_routes_answer_json(api: httpx.Client) -> None:
    wrong = api.put("/jobs")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    missing = api.get("/queues")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


# -- CORS, failures, configuration ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def _api_app(
    uri: str, db_name: str, store: JobStore | None = None, **options: Any
) -> AsyncIterator[Any]:
    """The API (token ``t``) over ``store``, else over ``db_name`` at ``uri``."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    try:
        chosen = store if store is not None else MongoJobStore(client[db_name])
        yield create_api(Scheduler(chosen), token=API_TOKEN, **options)
    finally:
        await client.close()


def test_cors_is_off_unless_origins_are_named(mongodb_uri: str, dashboard: DashboardServer) -> None:
    preflight = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    with httpx.Client(base_url=dashboard.base_url, timeout=10) as plain:
        refused = plain.options("/api/jobs", headers=preflight)
        assert "access-control-allow-origin" not in refused.headers
        listed = plain.get("/api/jobs", headers={"Origin": "https://app.example.com"})
        assert "access-control-allow-origin" not in listed.headers

    def build() -> Any:
        return _api_app(mongodb_uri, dashboard.db_name, cors_origins=["https://app.example.com"])

    with served(build) as base_url, httpx.Client(base_url=base_url, timeout=10) as client:
        allowed = client.options("/jobs", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        assert "PATCH" in allowed.headers["access-control-allow-methods"]
        assert "access-control-allow-credentials" not in allowed.headers
        other = client.options("/jobs", headers={**preflight, "Origin": "https://evil.example"})
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers
        answered = client.get(
            "/jobs",
            headers={"Origin": "https://app.example.com", "Authorization": f"Bearer {API_TOKEN}"},
        )
        assert answered.status_code == 200
        assert answered.headers["access-control-allow-origin"] == "https://app.example.com"


def test_an_unreachable_database_is_503_and_health_says_so(openapi: OpenApi) -> None:
    def build() -> Any:
        return _api_app(UNREACHABLE, "nowhere")

    with served(build) as url, checked_client(url, OpenApi(openapi.document, prefix="")) as client:
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json() == {"status": "unavailable", "database": "unreachable"}
        down = client.get("/jobs", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert down.status_code == 503 and down.json()["error"] == "unavailable"
        assert "127.0.0.1:1" not in down.text


class _BrokenStore(InMemoryJobStore):
    """A store whose statistics fail with an unexpected error."""

    async def stats(self, now: datetime) -> dict[str, Any]:
        raise RuntimeError("disk on fire at /var/secret")


def test_an_unexpected_failure_is_500_json_without_details(openapi: OpenApi) -> None:
    @contextlib.asynccontextmanager
    async def build() -> AsyncIterator[Any]:
        yield create_api(Scheduler(_BrokenStore()), token=API_TOKEN)

    with served(build) as url, checked_client(url, OpenApi(openapi.document, prefix="")) as client:
        broken = client.get("/jobs/stats", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert broken.status_code == 500
        assert broken.json()["error"] == "internal"
        assert "secret" not in broken.text and "Traceback" not in broken.text
        assert (
            client.get("/jobs", headers={"Authorization": f"Bearer {API_TOKEN}"}).status_code == 200
        )


def test_create_api_checks_its_options() -> None:
    scheduler = Scheduler(InMemoryJobStore())
    for bad in ("", "  ", None, "short-token"):
        with pytest.raises(ConfigurationError):
            create_api(scheduler, token=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        create_api(Scheduler(), token=API_TOKEN)
    for origins in (["*"], ["https://a.example/path"], ["ftp://a.example"], "https://a.example"):
        with pytest.raises(ConfigurationError) as info:
            create_api(scheduler, token=API_TOKEN, cors_origins=origins)  # type: ignore[arg-type]
        assert info.value.field == "cors_origins"
    with pytest.raises(ConfigurationError):
        create_app(scheduler, token=API_TOKEN, cors_origins=["*"])
    for size in (0, -1, True, 1.5):
        with pytest.raises(ConfigurationError):
            create_api(scheduler, token=API_TOKEN, max_body_bytes=size)  # type: ignore[arg-type]


# -- the OpenAPI document -------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(openapi: OpenApi) -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

    validate(openapi.document)
    assert openapi.document["openapi"] == "3.1.0"
    assert openapi.document["servers"] == [{"url": "/api"}]
    broken = json.loads(json.dumps(openapi.document))
    broken["paths"]["/jobs/{id}"]["parameters"][0]["in"] = "body"  # no such place in 3.1
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_the_document_describes_exactly_the_routes_served(openapi: OpenApi) -> None:
    app = create_api(Scheduler(InMemoryJobStore()), token=API_TOKEN)
    served_routes = {
        (route.path.replace("{job_id}", "{id}").replace("{name:path}", "{name}"), method.lower())
        for route in app.routes
        for method in getattr(route, "methods", ()) or ()
        if method != "HEAD"
    }
    documented = {
        (path, method)
        for path, operations in openapi.document["paths"].items()
        for method in operations
        if method != "parameters"
    }
    assert served_routes == documented


class _FailingStore(InMemoryJobStore):
    """A store every operation the routes use fails with an unexpected error."""

    def __getattribute__(self, name: str) -> Any:
        if name in {"now", "get", "find", "delete", "cancel", "pause", "resume", "stats"}:

            async def fail(*args: Any, **kwargs: Any) -> Any:
                raise RuntimeError(f"{name} failed at /var/secret")

            return fail
        return super().__getattribute__(name)


def test_every_documented_response_is_what_a_real_request_gets(
    dashboard: DashboardServer, openapi: OpenApi, mongodb_uri: str
) -> None:
    """Each documented (route, method, status) is produced by a real request, and its body
    matches the document; no request gets a status the document does not list."""
    documented = {
        (path, method, status)
        for path, operations in openapi.document["paths"].items()
        for method, operation in operations.items()
        if method != "parameters"
        for status in operation["responses"]
    }
    seen: set[tuple[str, str, str]] = set()
    token = {"Authorization": f"Bearer {dashboard.token}"}
    held = dashboard.jobs.schedule("held", dedupe_key="held", delay=3600)
    stopped = dashboard.jobs.schedule("stopped", delay=3600)
    assert dashboard.jobs.cancel(stopped.id)
    broken = dashboard.jobs.schedule("broken", delay=3600)
    _set(dashboard, broken.id, status="failed")
    busy = dashboard.jobs.schedule("busy")
    assert _claim(dashboard) == [busy.id]
    unknown, bad = ObjectId(), "not-an-id"
    with checked_client(f"{dashboard.base_url}/api", openapi, seen=seen, headers=token) as api:
        for method, path, body in [
            ("GET", "/health", None),
            ("GET", "/openapi.json", None),
            ("GET", "/jobs", None),
            ("GET", "/jobs?limit=0", None),
            ("POST", "/jobs", {"name": "new"}),
            ("POST", "/jobs", {"name": "held", "dedupeKey": "held"}),
            ("POST", "/jobs", {"name": ""}),
            ("POST", "/jobs/bulk", {"jobs": [{"name": "new"}]}),
            ("POST", "/jobs/bulk", {"jobs": [{"name": "held", "dedupeKey": "held"}]}),
            ("POST", "/jobs/bulk", {"jobs": [{"name": 1}]}),
            ("GET", "/jobs/stats", None),
            ("GET", "/jobs/activity?minutes=5", None),
            ("GET", "/jobs/activity?minutes=0", None),
            ("GET", "/jobs/activity?hours=1", None),
            ("GET", f"/jobs/{held.id}", None),
            ("GET", f"/jobs/{bad}", None),
            ("GET", f"/jobs/{unknown}", None),
            ("PATCH", f"/jobs/{held.id}", {"priority": 1}),
            ("PATCH", f"/jobs/{held.id}", {"priority": 0}),
            ("PATCH", f"/jobs/{unknown}", {"priority": 1}),
            ("PATCH", f"/jobs/{stopped.id}", {"priority": 1}),
            ("POST", f"/jobs/{held.id}/run-now", None),
            ("POST", f"/jobs/{bad}/run-now", None),
            ("POST", f"/jobs/{unknown}/run-now", None),
            ("POST", f"/jobs/{stopped.id}/run-now", None),
            ("POST", f"/jobs/{broken.id}/retry", None),
            ("POST", f"/jobs/{bad}/retry", None),
            ("POST", f"/jobs/{unknown}/retry", None),
            ("POST", f"/jobs/{held.id}/retry", None),
            ("POST", f"/jobs/{held.id}/cancel", None),
            ("POST", f"/jobs/{bad}/cancel", None),
            ("POST", f"/jobs/{unknown}/cancel", None),
            ("DELETE", f"/jobs/{held.id}", None),
            ("DELETE", f"/jobs/{bad}", None),
            ("DELETE", f"/jobs/{unknown}", None),
            ("DELETE", f"/jobs/{busy.id}", None),
            ("POST", "/names/held/pause", None),
            ("POST", "/names/held/resume", None),
            ("POST", f"/names/{'n' * 201}/pause", None),
            ("POST", f"/names/{'n' * 201}/resume", None),
        ]:
            api.request(method, path, json=body)
        for method, path in (
            ("POST", "/jobs"),
            ("POST", "/jobs/bulk"),
            ("PATCH", f"/jobs/{busy.id}"),
        ):
            status, refusal = _oversized(dashboard.base_url, method, f"/api{path}", dashboard.token)
            openapi.validate(refusal, {"$ref": "#/components/schemas/Error"})
            seen.add((openapi.template(f"/api{path}") or path, method.lower(), str(status)))
            assert api.request(method, path, content=b"{}").status_code == 415
    requests = protected_requests(busy.id)
    with checked_client(f"{dashboard.base_url}/api", openapi, seen=seen) as anonymous:
        for method, path, body in requests:
            assert anonymous.request(method, path, json=body).status_code == 401
    elsewhere = httpx.HTTPTransport(local_address="127.0.0.3")
    with checked_client(
        f"{dashboard.base_url}/api", openapi, seen=seen, transport=elsewhere
    ) as guesser:
        for attempt in range(10):
            guesser.get("/jobs", headers={"Authorization": f"Bearer wrong-{attempt}"})
        for method, path, body in requests:
            assert guesser.request(method, path, json=body, headers=token).status_code == 429
    unrooted = OpenApi(openapi.document, prefix="")
    for build, status in (
        (lambda: _api_app(UNREACHABLE, "nowhere"), 503),
        (lambda: _api_app(mongodb_uri, dashboard.db_name, store=_FailingStore()), 500),
    ):
        with (
            served(build) as url,
            checked_client(
                url, unrooted, seen=seen, headers={"Authorization": f"Bearer {API_TOKEN}"}
            ) as client,
        ):
            for method, path, body in requests:
                response = client.request(method, path, json=body)
                assert response.status_code == status, (method, path, response.text)
            client.get("/health")
    assert documented - seen == set()


# -- the documented session -----------------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _session_steps() -> list[tuple[str, list[str]]]:
    """The commands of the console session in docs/api.md, each with the output shown."""
    found = re.search(r"## A session.*?```console\n(.*?)```", DOCS.read_text(), re.S)
    assert found is not None, "docs/api.md has no console session"
    steps: list[tuple[str, list[str]]] = []
    for line in found.group(1).splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif line.startswith("    ") and steps and not steps[-1][1]:
            steps[-1] = (f"{steps[-1][0]}\n{line}", [])
        else:
            steps[-1][1].append(line)
    return steps


def _normal(text: str) -> str:
    text = re.sub(r"\b[0-9a-f]{24}\b", "<id>", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<instant>", text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def test_the_curl_session_of_the_docs_runs_as_shown(dashboard: DashboardServer) -> None:
    if shutil.which("curl") is None or shutil.which("jq") is None:
        pytest.skip("the documented session needs curl and jq")
    steps = _session_steps()
    script = "\n".join(f"echo '@@@ {i}'\n{command}" for i, (command, _) in enumerate(steps))
    result = subprocess.run(
        ["bash", "-c", script.replace("http://127.0.0.1:8080", dashboard.base_url)],
        capture_output=True,
        text=True,
        env={**os.environ, "DASHBOARD_TOKEN": dashboard.token},
        timeout=60,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    outputs = re.split(r"^@@@ \d+\n", result.stdout, flags=re.M)[1:]
    assert len(outputs) == len(steps)
    for (command, shown), output in zip(steps, outputs, strict=True):
        assert _normal(output) == _normal("\n".join(shown)), command
    assert _count(dashboard) == 0  # the session deleted its job
