"""The dashboard's authoring pages: a form that schedules a job, a form that changes one, and
the confirmation and deletion of a job.

A form becomes a body in the stored document's shape (durations typed as ``90s`` or ``1h30m``
become milliseconds, a date and time in a zone becomes an instant with an offset) and goes
through the HTTP API's reading of bodies (:mod:`.._authoring`) to ``schedule()`` or
``update_job()``: one path from a form field to the Python API's rules. A refusal shows the
form again with the message beside the field it concerns and everything as typed. The change
form sends only the groups of fields that differ from what it showed (so an unchanged run-at
never runs a finished job again). Posts need the session's CSRF token, as the other actions do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote
from zoneinfo import available_timezones

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from .._authoring import (
    body_field,
    duration_text,
    local_instant,
    parse_duration,
    parse_json,
    schedule_arguments,
    schedule_reporting,
    time_zone,
    update_arguments,
)
from .._errors import InvalidJobState, JobNotFound, ValidationError
from .._format import pretty_json
from ..job import Job
from ._auth import FLASH_COOKIE, Session, Signer

if TYPE_CHECKING:
    from ._app import _Dashboard

__all__ = ["authoring_routes"]

NEW_FIELDS = (
    "name",
    "data",
    "when",
    "run_at",
    "run_at_zone",
    "delay",
    "repeat",
    "cron",
    "cron_zone",
    "every",
    "retry_attempts",
    "retry_delay",
    "retry_backoff",
    "priority",
    "concurrency",
    "dedupe_key",
)
EDIT_GROUPS = {
    "data": ("data",),
    "run at": ("run_at", "run_at_zone"),
    "repeat": ("repeat", "cron", "cron_zone", "every"),
    "retry": ("retry_attempts", "retry_delay", "retry_backoff"),
    "priority": ("priority",),
}
"""The change form's fields, in groups sent together when one of them changed."""

SHOWN_AT = {
    "runAt": "run_at",
    "delayMs": "delay",
    "repeat.cron": "cron",
    "repeat.timezone": "cron_zone",
    "repeat.every": "every",
    "repeat.misfire": "repeat",
    "repeat.catchUpLimit": "repeat",
    "retry": "retry_attempts",
    "retry.maxAttempts": "retry_attempts",
    "retry.delay": "retry_delay",
    "retry.backoff": "retry_backoff",
    "retry.maxDelay": "retry_delay",
    "retry.jitter": "retry_attempts",
    "dedupeKey": "dedupe_key",
}
"""The form field beside which a refusal of a body field is shown (others: the same name, or
the top of the form)."""


@cache
def _zones() -> list[str]:
    return sorted(available_timezones())


# -- forms and bodies -----------------------------------------------------------------------------


def _integer(field: str, text: str) -> int | None:
    raw = text.strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValidationError(field, f"expected an integer, got {raw!r}") from None


def _milliseconds(field: str, text: str) -> float:
    return parse_duration(field, text) / timedelta(milliseconds=1)


def _repeat(values: Mapping[str, str], kept: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``repeat`` the form asks for (``None``: it does not repeat); ``misfire`` and
    ``catchUpLimit`` of the job's schedule are kept."""
    mode = values["repeat"]
    if mode == "cron":
        repeat: dict[str, Any] = {"cron": values["cron"].strip()}
        if values["cron_zone"].strip():
            repeat["timezone"] = values["cron_zone"].strip()
    elif mode == "every":
        repeat = {"every": _milliseconds("repeat.every", values["every"])}
    else:
        return None
    return {**{k: v for k, v in kept.items() if k in ("misfire", "catchUpLimit")}, **repeat}


def _retry(values: Mapping[str, str], kept: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``retry`` policy the form asks for (``None``: none); ``maxDelay`` and ``jitter`` of
    the job's policy are kept."""
    attempts = _integer("retry.maxAttempts", values["retry_attempts"])
    delay = values["retry_delay"].strip()
    if attempts is None and not delay:
        return None
    retry: dict[str, Any] = {k: v for k, v in kept.items() if k in ("maxDelay", "jitter")}
    if attempts is not None:
        retry["maxAttempts"] = attempts
    if delay:
        retry["delay"] = _milliseconds("retry.delay", delay)
    if values["retry_backoff"] not in ("", "fixed"):
        retry["backoff"] = values["retry_backoff"]
    return retry


def _run_at(values: Mapping[str, str], default_zone: str) -> str:
    text = values["run_at"].strip()
    if not text:
        raise ValidationError("runAt", "give a date and time")
    zone = time_zone("run_at_zone", values["run_at_zone"].strip() or default_zone)
    return local_instant("runAt", text, zone).isoformat()


def new_body(values: Mapping[str, str], default_zone: str) -> dict[str, Any]:
    """The new-job form as a body of the HTTP API."""
    body: dict[str, Any] = {"name": values["name"]}
    if values["data"].strip():
        body["data"] = parse_json("data", values["data"])
    if values["when"] == "at":
        body["runAt"] = _run_at(values, default_zone)
    elif values["when"] == "after":
        body["delayMs"] = _milliseconds("delayMs", values["delay"])
    for field, value in (("repeat", _repeat(values, {})), ("retry", _retry(values, {}))):
        if value is not None:
            body[field] = value
    for field, form_field in (("priority", "priority"), ("concurrency", "concurrency")):
        number = _integer(field, values[form_field])
        if number is not None:
            body[field] = number
    if values["dedupe_key"]:
        body["dedupeKey"] = values["dedupe_key"]
    return body


def shown_digest(field: str, text: str) -> str:
    """What the change form keeps of a value it showed, to tell later whether it was changed:
    a digest (the form stays small), of the value as a browser may send it back unchanged
    (``09:00`` for the ``09:00:00`` it was given)."""
    value = text.strip()
    if field == "run_at":
        try:
            value = datetime.fromisoformat(value).isoformat()
        except ValueError:
            pass
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


def changes_body(
    values: Mapping[str, str], shown: Mapping[str, str], job: Job, default_zone: str
) -> dict[str, Any]:
    """The change form as a body of the HTTP API: the groups of fields that differ from the
    values it was shown with (``shown``: their :func:`shown_digest`)."""
    changed = [
        group
        for group, fields in EDIT_GROUPS.items()
        if any(shown_digest(field, values[field]) != shown.get(field) for field in fields)
    ]
    stored = job.document
    body: dict[str, Any] = {}
    if "data" in changed:
        body["data"] = parse_json("data", values["data"]) if values["data"].strip() else None
    if "run at" in changed:
        body["runAt"] = _run_at(values, default_zone)
    if "repeat" in changed:
        kept = stored.get("repeat")
        body["repeat"] = _repeat(values, kept if isinstance(kept, Mapping) else {})
    if "retry" in changed:
        kept = stored.get("retry")
        body["retry"] = _retry(values, kept if isinstance(kept, Mapping) else {})
    if "priority" in changed:
        body["priority"] = _integer("priority", values["priority"])
    return body


def values_of(job: Job, default_zone: str) -> dict[str, str]:
    """What the change form shows for ``job``."""
    stored = job.document
    schedule = stored.get("repeat")
    repeat: Mapping[str, Any] = schedule if isinstance(schedule, Mapping) else {}
    retry = stored.get("retry")
    policy = retry if isinstance(retry, Mapping) else {}
    attempts = retry if isinstance(retry, int) else policy.get("maxAttempts")
    delay = policy.get("delay")
    zone = time_zone("run_at_zone", default_zone)
    every = repeat.get("every")
    return {
        "data": "" if job.data is None else pretty_json(job.data),
        "run_at": ""
        if job.next_run_at is None
        else job.next_run_at.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S"),
        "run_at_zone": default_zone,
        "repeat": "cron" if repeat.get("cron") else "every" if every else "none",
        "cron": str(repeat.get("cron") or ""),
        "cron_zone": str(repeat.get("timezone") or ""),
        "every": duration_text(timedelta(milliseconds=every))
        if isinstance(every, (int, float))
        else "",
        "retry_attempts": "" if attempts is None else str(attempts),
        "retry_delay": duration_text(timedelta(milliseconds=delay))
        if isinstance(delay, (int, float)) and delay > 0
        else "",
        "retry_backoff": str(policy.get("backoff") or "fixed"),
        "priority": str(job.priority),
    }


def shown_at(field: str, fields: tuple[str, ...]) -> str:
    """The form field beside which a refusal of ``field`` is shown (``form``: at the top)."""
    named = body_field(field)  # a refusal of the Python API names its own argument
    found = SHOWN_AT.get(named, named)
    return found if found in fields else "form"


# -- pages ----------------------------------------------------------------------------------------


class _Authoring:
    """The authoring routes of one dashboard."""

    def __init__(self, dashboard: _Dashboard) -> None:
        self.dashboard = dashboard
        self.scheduler = dashboard.scheduler

    @property
    def default_zone(self) -> str:
        return self.scheduler.default_timezone

    def _context(self, **context: Any) -> dict[str, Any]:
        return {"zones": _zones(), "errors": {}, "general_error": None, **context}

    def _form(
        self,
        request: Request,
        session: Session,
        context: Mapping[str, Any],
        status: int,
    ) -> Response:
        return self.dashboard._render(
            request, "job_form.html", self._context(**context), session=session, status_code=status
        )

    async def _caller(self, request: Request) -> tuple[Session, dict[str, str]] | Response:
        """The signed-in caller and the posted form (CSRF checked), or the refusal."""
        session = await self.dashboard._authenticate(request)
        if session is None:
            return PlainTextResponse(
                "unauthorized", status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        raw = await request.body()  # capped by the dashboard's BodyLimit
        pairs = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        form = {key: values[-1].replace("\r\n", "\n") for key, values in pairs.items()}
        if not session.bearer and not Signer.csrf_matches(session, form.get("csrf_token")):
            return self.dashboard._csrf_refused(request, session)
        return session, form

    def _done(
        self,
        request: Request,
        session: Session,
        level: str,
        message: str,
        location: str,
        status: int = 200,
    ) -> Response:
        """Where a post ends: JSON for a Bearer client, else back to ``location`` with the
        message shown there."""
        if session.bearer:
            return JSONResponse({"ok": level != "error", "message": message}, status_code=status)
        response = RedirectResponse(self.dashboard._base(request) + location, status_code=303)
        flash = self.dashboard.signer.sign("flash", f"{level}:{message}")
        self.dashboard._set_cookie(request, response, FLASH_COOKIE, flash, 60)
        return response

    async def _job(self, job_id: str) -> tuple[Job | None, str | None, int]:
        """The job, or why not (a message and a status)."""
        try:
            job = await self.scheduler.get_job(job_id)
        except ValidationError as exc:
            return None, str(exc), 400
        if job is None:
            return None, f"No job has the id {job_id}.", 404
        return job, None, 200

    # -- a new job ------------------------------------------------------------------------------

    def _new_values(self) -> dict[str, str]:
        values = dict.fromkeys(NEW_FIELDS, "")
        values.update(when="now", repeat="none", retry_backoff="fixed", priority="5")
        values.update(run_at_zone=self.default_zone, cron_zone=self.default_zone)
        return values

    async def new_form(self, request: Request) -> Response:
        async def build(request: Request, session: Session) -> tuple[dict[str, Any], int]:
            return self._context(page="new", mode="new", values=self._new_values()), 200

        return await self.dashboard._page(request, "job_form.html", build, partial=False)

    async def create(self, request: Request) -> Response:
        caller = await self._caller(request)
        if isinstance(caller, Response):
            return caller
        session, form = caller
        values = {**self._new_values(), **{k: form.get(k, "") for k in NEW_FIELDS if k in form}}
        try:
            arguments = schedule_arguments(new_body(values, self.default_zone))
            [(job, created)] = await schedule_reporting(self.scheduler, [arguments])
        except ValidationError as exc:
            errors = {shown_at(exc.field, NEW_FIELDS): exc.reason}
            context = {"page": "new", "mode": "new", "values": values, "errors": errors}
            return self._form(request, session, context, 400)
        except InvalidJobState as exc:
            context = {"page": "new", "mode": "new", "values": values, "general_error": str(exc)}
            return self._form(request, session, context, 409)
        location = f"/jobs/{quote(str(job.id), safe='')}"
        if created:
            return self._done(request, session, "ok", f"Job {job.id} created.", location, 201)
        message = (
            f"A job with dedupe key {job.dedupe_key!r} already exists: this one ({job.status})."
            " Nothing was created."
        )
        return self._done(request, session, "info", message, location)

    # -- changing a job -------------------------------------------------------------------------

    async def edit_form(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]

        async def build(request: Request, session: Session) -> tuple[dict[str, Any], int]:
            job, error, status = await self._job(job_id)
            context = self._context(page="edit", mode="edit", job_id=job_id, job=job)
            if job is None:
                return {**context, "general_error": error, "values": {}, "shown": {}}, status
            values = values_of(job, self.default_zone)
            shown = {field: shown_digest(field, value) for field, value in values.items()}
            return {**context, "values": values, "shown": shown}, 200

        return await self.dashboard._page(request, "job_form.html", build, partial=False)

    async def update(self, request: Request) -> Response:
        caller = await self._caller(request)
        if isinstance(caller, Response):
            return caller
        session, form = caller
        job_id = request.path_params["job_id"]
        fields = tuple(field for group in EDIT_GROUPS.values() for field in group)
        values = {field: form.get(field, "") for field in fields}
        shown = {field: form.get(f"shown_{field}", "") for field in fields}
        job, error, status = await self._job(job_id)
        context = {"page": "edit", "mode": "edit", "job_id": job_id, "job": job}
        context.update(values=values, shown=shown)
        if job is None:
            return self._form(request, session, {**context, "general_error": error}, status)
        try:
            body = changes_body(values, shown, job, self.default_zone)
            changed = await self.scheduler.update_job(job_id, **update_arguments(body))
        except ValidationError as exc:
            errors = {shown_at(exc.field, fields): exc.reason}
            return self._form(request, session, {**context, "errors": errors}, 400)
        except (InvalidJobState, JobNotFound) as exc:
            code = 404 if isinstance(exc, JobNotFound) else 409
            return self._form(request, session, {**context, "general_error": str(exc)}, code)
        what = ", ".join(body)
        location = f"/jobs/{quote(str(changed.id), safe='')}"
        return self._done(request, session, "ok", f"Job {changed.id} changed: {what}.", location)

    # -- deleting a job -------------------------------------------------------------------------

    async def delete_form(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]

        async def build(request: Request, session: Session) -> tuple[dict[str, Any], int]:
            job, error, status = await self._job(job_id)
            return {"page": "delete", "job_id": job_id, "job": job, "error": error}, status

        return await self.dashboard._page(request, "job_delete.html", build, partial=False)

    async def delete(self, request: Request) -> Response:
        caller = await self._caller(request)
        if isinstance(caller, Response):
            return caller
        session, _form = caller
        job_id = request.path_params["job_id"]
        page = f"/jobs/{quote(job_id, safe='')}"
        try:
            deleted = await self.scheduler.delete_job(job_id)
        except ValidationError as exc:
            return self._done(request, session, "error", str(exc), "/jobs", 400)
        except InvalidJobState as exc:
            return self._done(request, session, "error", str(exc), page, 409)
        if not deleted:
            return self._done(request, session, "info", f"Job {job_id} was already gone.", "/jobs")
        return self._done(request, session, "ok", f"Job {job_id} deleted.", "/jobs")


def authoring_routes(dashboard: _Dashboard) -> list[BaseRoute]:
    """The authoring routes of ``dashboard`` (before ``/jobs/{job_id}``, which would take
    ``/jobs/new``)."""
    pages = _Authoring(dashboard)
    return [
        Route("/jobs/new", pages.new_form, methods=["GET"]),
        Route("/jobs/new", pages.create, methods=["POST"]),
        Route("/jobs/{job_id}/edit", pages.edit_form, methods=["GET"]),
        Route("/jobs/{job_id}/edit", pages.update, methods=["POST"]),
        Route("/jobs/{job_id}/delete", pages.delete_form, methods=["GET"]),
        Route("/jobs/{job_id}/delete", pages.delete, methods=["POST"]),
    ]
