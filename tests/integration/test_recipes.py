"""The framework recipes under ``examples/`` (docs/recipes.md) work as shipped: each runs for
real against the real mongod, web servers and workers as subprocesses, stopped with SIGTERM
(and killed, whatever happens, at the end of the test)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from bson import ObjectId
from tests.helpers import NotMetInTime, eventually

from mongo_job_scheduler._mongod import _free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FINISHED = {"completed", "failed", "cancelled"}


@pytest.fixture
def recipe_uri(mongodb_uri: str, db_name: str, sync_db: Any) -> str:
    """The test server's URI naming this test's fresh database (``sync_db``, dropped
    afterwards): the examples keep their jobs in the database their MONGODB_URI names."""
    return urlunsplit(urlsplit(mongodb_uri)._replace(path=f"/{db_name}"))


def environment(uri: str) -> dict[str, str]:
    return {
        **os.environ,
        "MONGODB_URI": uri,
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


@dataclass
class Process:
    """A subprocess whose stdout and stderr go to ``log``."""

    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """The first match of ``pattern`` (a multi-line regex) in the output, once it appears;
        fail if the process exits first or ``timeout`` seconds pass."""

        def found() -> re.Match[str] | None:
            match = re.search(pattern, self.output, re.MULTILINE)
            code = self.popen.poll()
            assert match or code is None, f"exited ({code}) before {pattern!r}:\n{self.output}"
            return match

        try:
            return eventually(found, timeout)
        except NotMetInTime as exc:
            raise AssertionError(f"{exc}\n{pattern!r} did not appear in:\n{self.output}") from None

    def terminate(self, timeout: float = 30) -> int:
        """Send SIGTERM and return the exit code (fail if it takes over ``timeout`` s)."""
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running {timeout}s after SIGTERM:\n{self.output}"
            ) from None


@contextlib.contextmanager
def started(argv: list[str], *, uri: str, cwd: Path, log: Path) -> Iterator[Process]:
    """Run ``argv`` with MONGODB_URI=``uri``; kill it on the way out if it still runs."""
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv,
            env=environment(uri),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Process(popen, log)
    finally:
        if popen.poll() is None:
            popen.kill()
            popen.wait(timeout=30)


def finished_job(read: Callable[[str], Any], path: str, timeout: float = 30) -> dict[str, Any]:
    """Read ``path`` (a job's status, as JSON) with ``read`` until the job has finished."""

    def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = read(path)
        return body if body["status"] in FINISHED else None

    return eventually(finished, timeout)


def read_json(http: httpx.Client) -> Callable[[str], Any]:
    def read(path: str) -> Any:
        response = http.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    return read


def serving(http: httpx.Client, path: str, server: Process, timeout: float = 30) -> None:
    """Return once ``path`` answers at all (a server binds its port after its start line)."""

    def answers() -> bool:
        assert server.popen.poll() is None, f"the server exited:\n{server.output}"
        try:
            http.get(path)
        except httpx.TransportError:
            return False
        return True

    eventually(answers, timeout)


# -- FastAPI ----------------------------------------------------------------------------------


def test_fastapi_app_runs_jobs_in_its_lifespan(
    recipe_uri: str, sync_db: Any, tmp_path: Path
) -> None:
    argv = [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--app-dir", str(EXAMPLES)]
    argv += ["--host", "127.0.0.1", "--port", "0"]
    with started(argv, uri=recipe_uri, cwd=tmp_path, log=tmp_path / "uvicorn.log") as server:
        port = server.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)").group(1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            response = http.post("/documents", json={"text": "to be or not to be"})
            assert response.status_code == 202, response.text
            job_id = response.json()["id"]

            assert finished_job(read_json(http), f"/jobs/{job_id}") == {
                "id": job_id,
                "status": "completed",
                "result": {"words": 6},
                "error": None,
            }
            assert http.get(f"/jobs/{ObjectId()}").status_code == 404
            assert http.get("/jobs/not-an-id").status_code == 404

        # uvicorn shuts down (the lifespan's graceful stop included), then re-raises SIGTERM.
        assert server.terminate() in (0, -signal.SIGTERM), server.output
    assert "Application shutdown complete" in server.output
    assert "Traceback" not in server.output
    doc = sync_db.scheduler_jobs.find_one({"_id": ObjectId(job_id)})
    assert doc["name"] == "count-words" and doc["status"] == "completed"


# -- Django -----------------------------------------------------------------------------------


def test_django_view_enqueues_and_runworker_runs_then_stops_on_sigterm(
    recipe_uri: str, sync_db: Any, tmp_path: Path
) -> None:
    site = EXAMPLES / "django_site"
    port = _free_port()
    web_argv = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    worker_argv = [sys.executable, "manage.py", "runworker", "--workers", "2"]
    with (
        started(web_argv, uri=recipe_uri, cwd=site, log=tmp_path / "web.log") as web,
        started(worker_argv, uri=recipe_uri, cwd=site, log=tmp_path / "worker.log") as worker,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http,
    ):
        serving(http, "/jobs/nothing/", web)
        order = {"order": 17, "email": "ada@example.com", "total": "42.00"}
        response = http.post("/orders/", json=order)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        again = http.post("/orders/", json=order)  # the same order: the same job (dedupe key)
        assert again.json()["id"] == job_id

        worker.wait_for(r"^worker started: names=send-receipt$")
        assert finished_job(read_json(http), f"/jobs/{job_id}/") == {
            "status": "completed",
            "result": {"sent_to": "ada@example.com", "sent_from": "shop@example.com"},
            "error": None,
        }
        assert http.get(f"/jobs/{ObjectId()}/").status_code == 404
        assert http.get("/jobs/not-an-id/").status_code == 404

        assert worker.terminate() == 0, worker.output
    lines = worker.output.splitlines()
    assert lines[-2:] == ["stopping gracefully", "stopped"], worker.output
    assert "Subject: Your receipt for order 17" in lines  # sent by the handler, in the worker
    assert "From: shop@example.com" in lines
    assert sync_db.scheduler_jobs.count_documents({}) == 1


# -- Flask ------------------------------------------------------------------------------------


@pytest.fixture
def flask_app(recipe_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    from flask_app import create_app

    app = create_app(recipe_uri)
    yield app
    # Before the test server stops (the app closes its client only when the process exits).
    app.extensions["job_scheduler"].store.database.client.close()


def test_flask_app_enqueues_and_the_cli_worker_runs_the_job(
    flask_app: Any, recipe_uri: str, sync_db: Any, tmp_path: Path
) -> None:
    http = flask_app.test_client()
    response = http.post("/signups", json={"email": "ada@example.com"})
    assert response.status_code == 202, response.text
    job_id = response.json["id"]
    assert http.get(f"/jobs/{job_id}").json["status"] == "pending"  # no worker yet

    argv = [sys.executable, "-m", "mongo_job_scheduler", "worker", "flask_app.tasks:scheduler"]
    with started(argv, uri=recipe_uri, cwd=EXAMPLES, log=tmp_path / "worker.log") as worker:
        worker.wait_for(r"^worker started: .* names=send-welcome-email$")

        assert finished_job(lambda path: http.get(path).json, f"/jobs/{job_id}") == {
            "status": "completed",
            "result": {"sent_to": "ada@example.com", "subject": "Welcome!"},
            "error": None,
        }
        assert worker.terminate() == 0, worker.output
    assert worker.output.splitlines()[-1] == "stopped"
    assert http.get(f"/jobs/{ObjectId()}").status_code == 404
    assert sync_db.scheduler_jobs.find_one({"_id": ObjectId(job_id)})["dedupeKey"] == (
        "welcome:ada@example.com"
    )


# -- a plain script -----------------------------------------------------------------------------


def test_sync_script_schedules_lists_cancels_and_counts(recipe_uri: str, sync_db: Any) -> None:
    script = str(EXAMPLES / "sync_script.py")
    runs = [
        subprocess.run(
            [sys.executable, script],
            env=environment(recipe_uri),
            capture_output=True,
            text=True,
            timeout=60,
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert "daily-report scheduled once: True" in run.stdout
        assert re.search(r"^cancelled [0-9a-f]{24}: True$", run.stdout, re.MULTILINE), run.stdout
    first, second = (run.stdout.splitlines() for run in runs)
    listed = [line.split()[1:3] for line in first if re.match(r"[0-9a-f]{24}  ", line)]
    assert listed == [
        ["send-email", "pending"],
        ["send-email", "pending"],
        ["daily-report", "pending"],
    ]
    assert first[-1] == "jobs by status: {'pending': 2, 'cancelled': 1}"
    # Run again: two more emails (one cancelled), and the same daily report.
    assert second[-1] == "jobs by status: {'pending': 3, 'cancelled': 2}"

    [report] = sync_db.scheduler_jobs.find({"name": "daily-report"})
    assert report["repeat"]["cron"] == "0 9 * * 1-5"
    assert report["repeat"]["timezone"] == "Europe/Paris"
    assert report["dedupeKey"] == "daily-report"
    assert report["nextRunAt"].hour in (7, 8) and report["nextRunAt"].weekday() < 5  # 9:00 Paris
    cancelled = list(sync_db.scheduler_jobs.find({"status": "cancelled"}))
    assert [job["data"]["to"] for job in cancelled] == ["grace@example.com"] * 2


# -- a pytest suite using the plugin --------------------------------------------------------------


def run_suite(suite: Path, mongodb_uri: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(suite)],
        env=environment(mongodb_uri),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_pytest_suite_passes_and_fails_when_the_app_breaks(
    mongodb_uri: str, tmp_path: Path
) -> None:
    shipped = run_suite(EXAMPLES / "pytest_suite", mongodb_uri, tmp_path)
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    assert "2 passed" in shipped.stdout

    # The same suite on an app whose welcome email is no longer retried: one test fails.
    broken = tmp_path / "broken"
    shutil.copytree(EXAMPLES / "pytest_suite", broken)
    signup = broken / "signup.py"
    retried = '@scheduler.task("welcome-email", retry={"maxAttempts": 3, "delay": 60})'
    assert retried in signup.read_text()
    signup.write_text(signup.read_text().replace(retried, '@scheduler.task("welcome-email")'))
    result = run_suite(broken, mongodb_uri, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 passed" in result.stdout
    # A wide terminal appends " - <the error>" to the summary line; a narrow one does not.
    test = "test_welcome_is_retried_while_the_mail_server_is_down"
    failed = rf"^FAILED \S*test_signup\.py::{test}(?: - .*)?$"
    assert re.search(failed, result.stdout, re.MULTILINE), result.stdout
