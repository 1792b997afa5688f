"""The dashboard's ASGI application: pages, partials for live refresh, and actions."""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders, QueryParams
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import ConfigurationError, InvalidJobState, JobNotFound, ValidationError
from .._format import (
    compact_json,
    document_for_display,
    fmt_datetime,
    fmt_duration,
    fmt_iso,
    inert,
    parse_data_value,
    pretty_json,
    pretty_json_preview,
)
from ..fleet import WorkerInfo
from ..job import ACTIVE_STATUSES, FINISHED_STATUSES, Job, JobStatus
from ..scheduler import Scheduler
from ..stats import ACTIVITY_READ_LIMIT, MAX_NAMES_SHOWN, THROUGHPUT_READ_LIMIT, busiest_names
from ._api import create_api
from ._auth import FLASH_COOKIE, SESSION_COOKIE, Session, Signer, check_token
from ._authoring import authoring_routes
from ._charts import (
    CHART_HEIGHT,
    OUTCOMES,
    axis_duration,
    finished_chart,
    mix_segments,
    wait_chart,
)
from ._guards import BodyLimit, HttpMiddleware
from ._params import int_param
from ._sessions import revocations_for
from ._sorting import LIST_SORTS, UNINDEXED, list_sort, sort_refusal
from ._throttle import FailureThrottle, check_failures_per_minute, client_key
from ._timeline import HISTORY_LIMIT, OUTCOME_LABELS, history_cut, job_timeline

__all__ = ["create_app"]

logger = logging.getLogger("mongo_job_scheduler.dashboard")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
LIST_FIELDS = (
    "name", "status", "priority", "createdAt", "nextRunAt", "lastRunAt", "updatedAt", "data",
    "lastError",
)  # fmt: skip
"""The fields the job list shows, the only ones it reads."""
SHOWN_CHARACTERS = 20_000
"""How much of a value a job's page shows (JSON characters); the rest is a link away."""
LIST_VALUE_BYTES = 8 * 1024
"""A listed value larger than this (BSON bytes) is not read; the job's page shows it."""
SHOWN_DEPENDANTS = 100
"""The most jobs waiting for a job that its page lists."""
SUGGESTED_NAMES = 1000
"""The most job names the list's name field suggests."""
DESCENDING_FIRST = frozenset({"createdAt", "updatedAt"})
"""Columns whose header sorts newest first on the first click."""
JOB_LIST_PARAMS = frozenset({"name", "status", "data", "sort", "dir", "limit", "skip"})
STATUSES = tuple(status.value for status in JobStatus)

MAX_BODY_BYTES = 16 * 1024
"""The largest request body any route takes (its forms are a few hundred bytes); a larger one is
answered 413 before it is read further, let alone parsed."""

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)


class _SecurityHeaders(HttpMiddleware):
    """Adds a strict Content-Security-Policy and related headers to every response."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _too_large(limit: int) -> Response:
    """The 413 of a page or action whose body is over ``limit`` bytes."""
    return PlainTextResponse(
        f"request body too large: at most {limit} bytes",
        status_code=413,
        headers={"Connection": "close"},
    )
    return 0


@dataclass
class JobsFilter:
    """The job list's query string, parsed and validated."""

    name: str | None = None
    statuses: list[str] = field(default_factory=list)
    data_items: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    sort: str = "createdAt"
    direction: str = "desc"
    limit: int = DEFAULT_PAGE_SIZE
    skip: int = 0

    def query_string(
        self, *, skip: int | None = None, sort: str | None = None, direction: str | None = None
    ) -> str:
        """This filter as a query string (with another ``skip`` for page links, another
        order for the column headers)."""
        pairs: list[tuple[str, str]] = []
        if self.name is not None:
            pairs.append(("name", self.name))
        pairs += [("status", status) for status in self.statuses]
        pairs += [("data", item) for item in self.data_items]
        pairs += [("sort", sort or self.sort), ("dir", direction or self.direction)]
        pairs.append(("limit", str(self.limit)))
        pairs.append(("skip", str(self.skip if skip is None else skip)))
        return urlencode(pairs)


def parse_data_filter(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` filters as a ``get_jobs(data=...)`` mapping: a value that parses as JSON is
    that value (``count=3``, ``flag=true``, ``id="42"``), anything else is a string."""
    data: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValidationError("data", f"expected key=value, got {item!r}")
        data[key] = parse_data_value(raw)
    return data


def parse_jobs_filter(params: QueryParams) -> JobsFilter:
    """Validate the job list's query string (unknown parameters are refused)."""
    unknown = sorted(set(params.keys()) - JOB_LIST_PARAMS)
    if unknown:
        raise ValidationError("query", f"unknown parameter {unknown[0]!r}")
    result = JobsFilter()
    name = params.get("name")
    if name:
        result.name = name
    for status in params.getlist("status"):
        if not status:
            continue
        if status not in STATUSES:
            raise ValidationError("status", f"unknown status {status!r}; one of {list(STATUSES)}")
        if status not in result.statuses:
            result.statuses.append(status)
    result.data_items = [item for item in params.getlist("data") if item.strip()]
    result.data = parse_data_filter(result.data_items)
    result.sort = params.get("sort") or "createdAt"
    result.direction = params.get("dir") or "desc"
    if result.direction not in ("asc", "desc"):
        raise ValidationError("dir", f"must be 'asc' or 'desc', got {result.direction!r}")
    result.limit = int_param(params, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    result.skip = int_param(params, "skip", 0, 0, 10**12)
    list_sort(result.sort, result.direction, result.name, result.statuses)
    return result


def _safe_next(value: Any) -> str:
    """A local path to go back to (anything else, such as ``//evil.example``, becomes ``/``)."""
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 4000:
        return "/"
    if value.startswith(("//", "/\\")) or any(ord(ch) < 0x20 or ch == "\\" for ch in value):
        return "/"
    return value


def _form_value(form: Mapping[str, Any], key: str) -> str | None:
    value = form.get(key)
    return value if isinstance(value, str) else None


class _Throttled(Exception):
    """The client got the token wrong too often: answer 429 with ``Retry-After``."""

    def __init__(self, seconds: int) -> None:
        super().__init__(f"retry after {seconds} s")
        self.seconds = seconds


@dataclass(frozen=True)
class _Outcome:
    level: str  # "ok" | "info" | "error"
    message: str
    status_code: int = 200


class _Dashboard:
    """Holds the scheduler, templates and signer; its methods are the routes."""

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        token: str,
        refresh_seconds: float,
        title: str,
        throughput_minutes: int,
        session_max_age: int,
        failures_per_minute: int,
    ) -> None:
        self.scheduler = scheduler
        self.signer = Signer(token, session_max_age)
        self.throttle = FailureThrottle(failures_per_minute)
        self.routes: list[BaseRoute] = []
        self.revocations = revocations_for(scheduler.store)
        self.refresh_seconds = refresh_seconds
        self.title = title
        self.throughput_minutes = throughput_minutes
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("mongo_job_scheduler.dashboard", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            dt=fmt_datetime,
            iso=fmt_iso,
            duration=fmt_duration,
            axis_duration=axis_duration,
            compact_json=compact_json,
            pretty_json=pretty_json,
        )

    # -- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def _local_path(self, request: Request) -> str:
        """The request's path and query, relative to where the dashboard is mounted."""
        base = self._base(request)
        path = request.url.path
        if base and path.startswith(base):
            path = path[len(base) :] or "/"
        query = request.url.query
        return f"{path}?{query}" if query else path

    def _check_token(self, request: Request, candidate: str | None) -> bool:
        """Whether ``candidate`` is the token, counting a wrong one against the client; raises
        :class:`_Throttled` without checking while the client must wait."""
        key = client_key(request.client.host if request.client else None)
        wait = self.throttle.wait(key)
        if wait:
            raise _Throttled(wait)
        if self.signer.token_matches(candidate):
            return True
        self.throttle.failed(key)
        return False

    async def _authenticate(self, request: Request) -> Session | None:
        """The caller: a Bearer client with the token, or a valid browser session that was not
        signed out; else ``None``. A Bearer token is checked through the client's throttle."""
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self._check_token(request, credentials.strip()):
            return Session(bearer=True)
        session = self.signer.session(request.cookies.get(SESSION_COOKIE))
        if session is None or session.id is None:
            return None
        return None if await self.revocations.is_revoked(session.id) else session

    def _render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        *,
        session: Session | None,
        status_code: int = 200,
        flash: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        full = {
            "base": self._base(request),
            "title": self.title,
            "refresh_seconds": self.refresh_seconds,
            "csrf_token": session.csrf if session is not None and session.csrf else "",
            "signed_in": session is not None and not session.bearer,
            "flash": flash,
            "statuses": STATUSES,
            "page": "",
            **context,
        }
        html = self.templates.get_template(template).render(full)
        response = HTMLResponse(html, status_code=status_code)
        response.headers["Cache-Control"] = "no-store"
        return response

    def _page_flash(self, request: Request) -> dict[str, str] | None:
        payload = self.signer.unsign("flash", request.cookies.get(FLASH_COOKIE))
        if payload is None:
            return None
        level, _, message = payload.partition(":")
        return {"level": level, "message": message}

    def _set_cookie(
        self, request: Request, response: Response, key: str, value: str, max_age: int
    ) -> None:
        response.set_cookie(
            key,
            value,
            max_age=max_age,
            path=self._base(request) or "/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    def _delete_cookie(self, request: Request, response: Response, key: str) -> None:
        self._set_cookie(request, response, key, "", 0)

    async def _page(
        self,
        request: Request,
        template: str,
        build: Callable[[Request, Session], Awaitable[tuple[dict[str, Any], int]]],
        *,
        partial: bool,
    ) -> Response:
        session = await self._authenticate(request)
        if session is None:
            if partial:
                return PlainTextResponse("unauthorized", status_code=401)
            target = quote(self._local_path(request), safe="/")
            return RedirectResponse(f"{self._base(request)}/login?next={target}", status_code=303)
        context, status_code = await build(request, session)
        flash = None if partial else self._page_flash(request)
        response = self._render(
            request, template, context, session=session, status_code=status_code, flash=flash
        )
        if flash is not None:
            self._delete_cookie(request, response, FLASH_COOKIE)
        return response

    # -- login ------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def login_form(self, request: Request) -> Response:
        next_path = _safe_next(request.query_params.get("next"))
        if await self._authenticate(request) is not None:
            return RedirectResponse(self._base(request) + next_path, status_code=303)
        return self._render(
            request, "login.html", {"page": "login", "next": next_path, "error": None}, session=None
        )

    async def login(self, request: Request) -> Response:
        form = await request.form()
        next_path = _safe_next(_form_value(form, "next"))
        if not self._check_token(request, _form_value(form, "token")):
            return self._render(
                request,
                "login.html",
                {"page": "login", "next": next_path, "error": "That token is not valid."},
                session=None,
                status_code=401,
            )
        response = RedirectResponse(self._base(request) + next_path, status_code=303)
        self._set_cookie(
            request,
            response,
            SESSION_COOKIE,
            self.signer.new_session(),
            self.signer.session_max_age,
        )
        return response

    async def logout(self, request: Request) -> Response:
        session = await self._authenticate(request)
        if session is None:
            return PlainTextResponse("unauthorized", status_code=401)
        form = await request.form()
        if not session.bearer and not Signer.csrf_matches(session, _form_value(form, "csrf_token")):
            return PlainTextResponse("CSRF token missing or invalid", status_code=403)
        if session.id is not None:
            await self.revocations.revoke(session.id, session.expires)
        response = RedirectResponse(f"{self._base(request)}/login", status_code=303)
        self._delete_cookie(request, response, SESSION_COOKIE)
        return response

    # -- overview ---------------------------------------------------------------------------

    async def _paused_names(self, snapshot: Any) -> list[str] | None:
        """Paused names (a snapshot's ``paused``, else read), or ``None`` when this scheduler
        cannot pause."""
        if not self._can_pause():
            return None
        paused = getattr(snapshot, "paused", None)
        if isinstance(paused, list):
            return sorted(str(name) for name in paused)
        reader = getattr(self.scheduler, "paused_names", None)
        if reader is None:
            return None
        result = reader()
        if inspect.isawaitable(result):
            result = await result
        return sorted(str(name) for name in result)

    def _can_pause(self) -> bool:
        return callable(getattr(self.scheduler, "pause", None)) and callable(
            getattr(self.scheduler, "resume", None)
        )

    async def _charts(self) -> dict[str, Any]:
        """The last ``throughput_minutes`` minutes as charts and as the table of their
        numbers (the minutes in which jobs finished)."""
        throughput = await self.scheduler.throughput(minutes=self.throughput_minutes)
        minutes = self.throughput_minutes
        return {
            "throughput": throughput,
            "finished": finished_chart(throughput),
            "waits": wait_chart(throughput),
            "height": CHART_HEIGHT,
            "outcomes": OUTCOMES,
            "minutes": minutes,
            "rate": throughput.completed / minutes,
            "rows": [m for m in reversed(throughput.minutes) if m.finished],
        }

    async def _overview_context(
        self, request: Request, session: Session
    ) -> tuple[dict[str, Any], int]:
        # Bounded reads only (activity, throughput, live workers): never a count of every job.
        activity = await self.scheduler.activity(minutes=self.throughput_minutes)
        paused = await self._paused_names(activity)
        paused_set = set(paused or [])
        by_name_counts = activity.by_name
        totals = dict.fromkeys(paused_set, 0)
        totals.update({name: sum(counts.values()) for name, counts in by_name_counts.items()})
        names, others = busiest_names(totals)
        by_name = [
            {
                "name": name,
                "counts": {s: by_name_counts.get(name, {}).get(s, 0) for s in STATUSES},
                "mix": mix_segments(by_name_counts.get(name, {}), STATUSES),
                "total": totals[name],
                "paused": name in paused_set,
                "link": "/jobs?" + urlencode([("name", name)]),
            }
            for name in names
        ]
        other = None
        if others:
            counts = {s: sum(by_name_counts.get(n, {}).get(s, 0) for n in others) for s in STATUSES}
            other = {"names": len(others), "counts": counts, "total": sum(counts.values())}
        by_status = activity.by_status
        context = {
            "page": "overview",
            "page_path": "/",
            "activity": activity,
            "capped": activity.capped,
            "active_statuses": ACTIVE_STATUSES,
            "finished_statuses": FINISHED_STATUSES,
            "active_total": sum(by_status[s] for s in ACTIVE_STATUSES),
            "limits": {"active": ACTIVITY_READ_LIMIT, "finished": THROUGHPUT_READ_LIMIT},
            "by_status": by_status,
            "by_name": by_name,
            "other_names": other,
            "paused": None if paused is None else paused[:MAX_NAMES_SHOWN],
            "paused_more": max(0, len(paused or []) - MAX_NAMES_SHOWN),
            "can_pause": self._can_pause(),
            "charts": await self._charts(),
            "status_links": {s: "/jobs?" + urlencode([("status", s)]) for s in STATUSES},
            "fleet": _fleet(await self.scheduler.live_workers()),
            "unhandled": sorted(activity.unhandled.items())[:MAX_NAMES_SHOWN],
        }
        return context, 200

    async def overview(self, request: Request) -> Response:
        return await self._page(request, "overview.html", self._overview_context, partial=False)

    async def overview_partial(self, request: Request) -> Response:
        return await self._page(
            request, "_overview_body.html", self._overview_context, partial=True
        )

    # -- workers ----------------------------------------------------------------------------

    async def _workers_context(
        self, request: Request, session: Session
    ) -> tuple[dict[str, Any], int]:
        activity = await self.scheduler.activity(minutes=1)  # bounded, unlike stats()
        context = {
            "page": "workers",
            "page_path": "/workers",
            "fleet": _fleet(await self.scheduler.live_workers()),
            "unhandled": sorted(activity.unhandled.items())[:MAX_NAMES_SHOWN],
            "due_capped": "due" in activity.capped,
            "at": activity.at,
        }
        return context, 200

    async def workers(self, request: Request) -> Response:
        return await self._page(request, "workers.html", self._workers_context, partial=False)

    async def workers_partial(self, request: Request) -> Response:
        return await self._page(request, "_workers_body.html", self._workers_context, partial=True)

    # -- job list ---------------------------------------------------------------------------

    async def _jobs_context(self, request: Request, session: Session) -> tuple[dict[str, Any], int]:
        page_path = "/jobs" + (f"?{request.url.query}" if request.url.query else "")
        context: dict[str, Any] = {
            "page": "jobs",
            "page_path": page_path,
            "jobs": [],
            "error": None,
            "prev_link": None,
            "next_link": None,
            "query": "",
            "names": [],
            "columns": {},
        }
        if not self._local_path(request).startswith("/partials/"):
            context["names"] = await self.scheduler.job_names(limit=SUGGESTED_NAMES)
        try:
            flt = parse_jobs_filter(request.query_params)
            context["filter"] = flt
            found = await self.scheduler.get_jobs(
                name=flt.name,
                status=flt.statuses or None,
                data=flt.data or None,
                sort=list_sort(flt.sort, flt.direction, flt.name, flt.statuses),
                limit=flt.limit + 1,
                skip=flt.skip,
                fields=LIST_FIELDS,
                max_value_size=LIST_VALUE_BYTES,
            )
        except ValidationError as exc:
            context["error"] = str(exc)
            shown = context.setdefault("filter", _lenient_filter(request.query_params))
            if exc.field == "sort":  # the same jobs in an order that is offered
                context["query"] = shown.query_string(skip=0, sort="createdAt", direction="desc")
            return context, 400
        context["columns"] = _sort_columns(flt)
        jobs = found[: flt.limit]
        context["jobs"] = [self._job_row(job) for job in jobs]
        context["query"] = flt.query_string()
        context["first"] = flt.skip + 1 if jobs else 0
        context["last"] = flt.skip + len(jobs)
        if flt.skip > 0:
            context["prev_link"] = "/jobs?" + flt.query_string(skip=max(0, flt.skip - flt.limit))
        if len(found) > flt.limit:
            context["next_link"] = "/jobs?" + flt.query_string(skip=flt.skip + flt.limit)
        return context, 200

    @staticmethod
    def _job_row(job: Job) -> dict[str, Any]:
        status = job.status.value
        return {
            "id": str(job.id),
            "job": job,
            "status": status,
            "can_cancel": status in ("pending", "running"),
            "can_retry": status in ("failed", "cancelled"),
            "can_run_now": status in ("pending", "completed"),
            "data_not_read": "data" not in job.document,
        }

    async def jobs(self, request: Request) -> Response:
        return await self._page(request, "jobs.html", self._jobs_context, partial=False)

    async def jobs_partial(self, request: Request) -> Response:
        return await self._page(request, "_jobs_table.html", self._jobs_context, partial=True)

    # -- job detail -------------------------------------------------------------------------

    async def _job_context(self, request: Request, session: Session) -> tuple[dict[str, Any], int]:
        job_id = request.path_params["job_id"]
        context: dict[str, Any] = {
            "page": "job",
            "page_path": "/jobs/" + quote(job_id, safe=""),
            "job_id": job_id,
            "row": None,
            "error": None,
        }
        try:
            job = await self.scheduler.get_job(job_id)
        except ValidationError as exc:
            context["error"] = str(exc)
            return context, 400
        if job is None:
            context["error"] = f"No job has the id {job_id}."
            return context, 404
        raw_base = f"{self._base(request)}/jobs/{quote(str(job.id), safe='')}/raw/"
        document, cut = _cut_for_display(job.document, raw_base)
        waits_for = await self.scheduler.get_jobs(ids=job.depends_on) if job.depends_on else []
        dependants = await self.scheduler.dependants(job.id, limit=SHOWN_DEPENDANTS)
        context.update(
            row=self._job_row(job),
            document=document,
            data_shown=cut.get("data") or pretty_json(job.data),
            raw_base=raw_base,
            cut=cut,
            shown_characters=SHOWN_CHARACTERS,
            waits_for=waits_for,
            dependants=dependants,
            timeline=job_timeline(job, waits_for, dependants),
            outcome_labels=OUTCOME_LABELS,
            history_cut=history_cut(job),
            history_limit=HISTORY_LIMIT,
        )
        for key, field_name in (
            ("last_error", "lastError"),
            ("last_error_trace", "lastErrorTrace"),
        ):
            value = job.document.get(field_name)
            context[key] = None if value is None else _cut_text(str(value), field_name, cut)
        return context, 200

    async def raw_field(self, request: Request) -> Response:
        """One top-level field of a job's document as JSON, whole."""
        if await self._authenticate(request) is None:
            return PlainTextResponse("unauthorized", status_code=401)
        field_name = request.path_params["field"]
        try:
            job = await self.scheduler.get_job(request.path_params["job_id"])
        except ValidationError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        if job is None or field_name not in job.document:
            return PlainTextResponse("no such job or field", status_code=404)
        return Response(
            compact_json(job.document[field_name], limit=None) or "null",
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def job(self, request: Request) -> Response:
        return await self._page(request, "job.html", self._job_context, partial=False)

    async def job_partial(self, request: Request) -> Response:
        return await self._page(request, "_job_body.html", self._job_context, partial=True)

    # -- actions ----------------------------------------------------------------------------

    def _csrf_refused(self, request: Request, session: Session) -> Response:
        """The 403 page of a browser post without its session's CSRF token."""
        return self._render(
            request,
            "error.html",
            {
                "page": "error",
                "error": "The form's CSRF token is missing or invalid. "
                "Reload the page and try again.",
            },
            session=session,
            status_code=403,
        )

    async def _act(
        self,
        request: Request,
        operation: Callable[[Mapping[str, Any]], Awaitable[_Outcome]],
    ) -> Response:
        session = await self._authenticate(request)
        if session is None:
            return PlainTextResponse(
                "unauthorized", status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        form = await request.form()
        if not session.bearer:
            candidate = _form_value(form, "csrf_token") or request.headers.get("x-csrf-token")
            if not Signer.csrf_matches(session, candidate):
                return self._csrf_refused(request, session)
        try:
            outcome = await operation(form)
        except JobNotFound as exc:
            outcome = _Outcome("error", str(exc), 404)
        except ValidationError as exc:
            outcome = _Outcome("error", str(exc), 400)
        except InvalidJobState as exc:
            outcome = _Outcome("error", str(exc), 409)
        if session.bearer:
            return JSONResponse(
                {"ok": outcome.level != "error", "message": outcome.message},
                status_code=outcome.status_code,
            )
        response = RedirectResponse(
            self._base(request) + _safe_next(_form_value(form, "next")), status_code=303
        )
        flash = self.signer.sign("flash", f"{outcome.level}:{outcome.message}")
        self._set_cookie(request, response, FLASH_COOKIE, flash, 60)
        return response

    async def cancel(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]

        async def run(form: Mapping[str, Any]) -> _Outcome:
            if await self.scheduler.cancel(job_id):
                return _Outcome("ok", f"Job {job_id} cancelled.")
            return _Outcome("info", f"Job {job_id} had already finished; nothing changed.")

        return await self._act(request, run)

    async def retry(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]

        async def run(form: Mapping[str, Any]) -> _Outcome:
            await self.scheduler.retry_job(job_id)
            return _Outcome("ok", f"Job {job_id} will run again now.")

        return await self._act(request, run)

    async def run_now(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]

        async def run(form: Mapping[str, Any]) -> _Outcome:
            await self.scheduler.update_job(job_id, run_at=datetime.now(timezone.utc))
            return _Outcome("ok", f"Job {job_id} is due now.")

        return await self._act(request, run)

    async def _pause_or_resume(self, request: Request, method: str) -> Response:
        async def run(form: Mapping[str, Any]) -> _Outcome:
            action = getattr(self.scheduler, method, None)
            if not callable(action):
                return _Outcome("error", f"this scheduler cannot {method} job names", 501)
            name = _form_value(form, "name")
            if not name:
                raise ValidationError("name", "must not be empty")
            changed = action(name)
            if inspect.isawaitable(changed):
                changed = await changed
            done = "paused" if method == "pause" else "resumed"
            if changed is False:
                state = "paused" if method == "pause" else "not paused"
                return _Outcome("info", f"{name!r} was already {state}.")
            return _Outcome("ok", f"Jobs named {name!r} {done}.")

        return await self._act(request, run)

    async def pause(self, request: Request) -> Response:
        return await self._pause_or_resume(request, "pause")

    async def resume(self, request: Request) -> Response:
        return await self._pause_or_resume(request, "resume")

    async def throttled(self, request: Request, exc: Exception) -> Response:
        """429 for a client that got the token wrong too often: the sign-in page with the wait
        for a browser, plain text for a script."""
        seconds = exc.seconds if isinstance(exc, _Throttled) else 60
        message = f"Too many failed sign-ins or tokens from your address: try again in {seconds} s."
        headers = {"Retry-After": str(seconds)}
        if request.method == "POST" and request.url.path.endswith("/login"):
            response: Response = self._render(
                request,
                "login.html",
                {"page": "login", "next": "/", "error": message},
                session=None,
                status_code=429,
            )
            response.headers.update(headers)
            return response
        return PlainTextResponse(message, status_code=429, headers=headers)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        """404; or, for a path that only a trailing slash keeps from a route, a redirect to
        that route's local path (never to a host named by the request)."""
        local = self._local_path(request)
        path, _, query = local.partition("?")
        target = "/" + path.strip("/")
        if path.endswith("/") and target != "/" and _safe_next(target) == target:
            scope = {**request.scope, "path": self._base(request) + target}
            if any(route.matches(scope)[0] is Match.FULL for route in self.routes):
                location = self._base(request) + target + (f"?{query}" if query else "")
                return RedirectResponse(location, status_code=307)
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return PlainTextResponse("not found", status_code=status)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        """A plain error page for unexpected failures (the traceback goes to the log only)."""
        logger.error("dashboard request %s failed", inert(request.url.path), exc_info=exc)
        return self._render(
            request,
            "error.html",
            {
                "page": "error",
                "error": "Something went wrong while serving this page "
                f"({type(exc).__name__}); see the dashboard's log. Is the database reachable?",
            },
            session=None,
            status_code=500,
        )

    # -- metrics ----------------------------------------------------------------------------

    def protect(self, inner: ASGIApp) -> ASGIApp:
        """``inner`` behind the token (Bearer or a browser session)."""
        return _Protected(self, inner)


class _Protected:
    """An ASGI app that answers 401 unless the request carries the dashboard token."""

    def __init__(self, dashboard: _Dashboard, inner: ASGIApp) -> None:
        self.dashboard = dashboard
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and await self.dashboard._authenticate(Request(scope)) is None:
            response = PlainTextResponse(
                "unauthorized", status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        await self.inner(scope, receive, send)


def _cut_for_display(
    stored: Mapping[str, Any], raw_base: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The document as a job's page shows it, each value longer than
    :data:`SHOWN_CHARACTERS` as JSON replaced by a note with the link to the whole value; and
    the shown start of each replaced value, by field."""
    document = document_for_display(stored)
    cut: dict[str, str] = {}
    for field_name, value in document.items():
        text, was_cut = pretty_json_preview(value, SHOWN_CHARACTERS)
        if was_cut:
            cut[field_name] = text + "\n…"
            document[field_name] = f"… cut here; the whole value: {raw_base}{field_name}"
    return document, cut


def _cut_text(text: str, field_name: str, cut: dict[str, str]) -> str:
    """``text`` cut to :data:`SHOWN_CHARACTERS` (recorded in ``cut`` when it is)."""
    if len(text) <= SHOWN_CHARACTERS:
        return text
    cut[field_name] = text[:SHOWN_CHARACTERS] + "\n…"
    return cut[field_name]


def _sort_columns(flt: JobsFilter) -> dict[str, dict[str, Any]]:
    """Each column header of the list: a link that sorts on it (the other way round when it
    is the current order), or why it cannot sort with these filters."""
    columns: dict[str, dict[str, Any]] = {}
    for column in LIST_SORTS:
        refusal = sort_refusal(column.key, flt.name, flt.statuses)
        active = column.key == flt.sort
        if active:
            direction = "asc" if flt.direction == "desc" else "desc"
        else:
            direction = "desc" if column.key in DESCENDING_FIRST else "asc"
        columns[column.key] = {
            "label": column.label,
            "active": active,
            "aria_sort": ("ascending" if flt.direction == "asc" else "descending")
            if active
            else None,
            "link": None
            if refusal
            else "/jobs?" + flt.query_string(skip=0, sort=column.key, direction=direction),
            "why_not": refusal,
        }
    for key in UNINDEXED:
        columns[key] = {"why_not": sort_refusal(key, flt.name, flt.statuses)}
    return columns


def _fleet(workers: Sequence[WorkerInfo]) -> dict[str, Any]:
    """The live workers (at most :data:`MAX_NAMES_SHOWN`) and their totals."""
    return {
        "workers": list(workers[:MAX_NAMES_SHOWN]),
        "count": len(workers),
        "running": sum(w.running for w in workers),
        "capacity": sum(w.workers for w in workers),
        "hosts": len({w.host for w in workers}),
    }


def _lenient_filter(params: QueryParams) -> JobsFilter:
    """What the filter form shows after a validation error: the values as typed."""
    result = JobsFilter()
    result.name = params.get("name") or None
    result.statuses = [s for s in params.getlist("status") if s in STATUSES]
    result.data_items = [item for item in params.getlist("data") if item.strip()]
    sort = params.get("sort") or "createdAt"
    result.sort = sort if sort_refusal(sort, result.name, result.statuses) is None else "createdAt"
    result.direction = "asc" if params.get("dir") == "asc" else "desc"
    return result


def create_app(
    scheduler: Scheduler,
    *,
    token: str,
    refresh_seconds: float = 3,
    title: str = "mongo-job-scheduler",
    metrics_registry: Any = None,
    throughput_minutes: int = 60,
    session_max_age: int = 12 * 3600,
    failures_per_minute: int = 10,
    allowed_hosts: Sequence[str] | None = None,
    cors_origins: Iterable[str] | None = None,
) -> Starlette:
    """The dashboard of ``scheduler`` as an ASGI (Starlette) application, with the HTTP API
    (:func:`~mongo_job_scheduler.dashboard.create_api`) at ``/api``, whose CORS allows the
    ``cors_origins`` named (none by default).

    Every page and action needs ``token``: browsers sign in at ``/login`` (an HttpOnly,
    SameSite=Strict session cookie valid for ``session_max_age`` seconds), scripts send
    ``Authorization: Bearer <token>``. Tables refresh in place every ``refresh_seconds``
    (0 turns live refresh off). ``token`` has at least 16 characters. A client (an IPv4
    address, an IPv6 /64) may get the token wrong ``failures_per_minute`` times in a row, at
    sign-in or as a Bearer token; then it waits (429 with ``Retry-After``) and earns one more
    try every ``60 / failures_per_minute`` seconds. With a prometheus-client
    ``metrics_registry``, ``/metrics``
    serves it (behind the token too). ``/healthz`` answers ``ok`` without a token. The scheduler
    need not be started: the dashboard only reads and administers jobs. Every redirect is a
    local path; with ``allowed_hosts`` (``["jobs.example.com"]``, ``"*.example.com"``
    patterns too) a request naming any other ``Host`` is answered 400.
    """
    if not isinstance(scheduler, Scheduler):
        raise ConfigurationError(
            "scheduler",
            "expected a mongo_job_scheduler.Scheduler (the asyncio one), "
            f"got {type(scheduler).__name__}",
        )
    if scheduler.store is None:
        raise ConfigurationError("scheduler", "the dashboard needs a Scheduler with a store")
    check_token(token)
    if allowed_hosts is not None and (
        isinstance(allowed_hosts, str)
        or not all(isinstance(host, str) and host for host in allowed_hosts)
    ):
        raise ConfigurationError("allowed_hosts", "expected a list of host names")
    check_failures_per_minute(failures_per_minute)
    if isinstance(refresh_seconds, bool) or not isinstance(refresh_seconds, (int, float)):
        raise ConfigurationError("refresh_seconds", "must be a number of seconds")
    if refresh_seconds < 0 or not math.isfinite(refresh_seconds):
        raise ConfigurationError("refresh_seconds", "must be >= 0")
    if isinstance(throughput_minutes, bool) or not isinstance(throughput_minutes, int):
        raise ConfigurationError("throughput_minutes", "must be a positive integer")
    if not 1 <= throughput_minutes <= 60:
        raise ConfigurationError("throughput_minutes", "must be from 1 to 60")
    if isinstance(session_max_age, bool) or not isinstance(session_max_age, int):
        raise ConfigurationError("session_max_age", "must be a positive integer")
    if session_max_age < 1:
        raise ConfigurationError("session_max_age", "must be a positive integer")
    dashboard = _Dashboard(
        scheduler,
        token=token,
        refresh_seconds=refresh_seconds,
        title=title,
        throughput_minutes=throughput_minutes,
        session_max_age=session_max_age,
        failures_per_minute=failures_per_minute,
    )
    routes: list[BaseRoute] = [
        *authoring_routes(dashboard),
        Route("/", dashboard.overview, methods=["GET"]),
        Route("/healthz", dashboard.healthz, methods=["GET"]),
        Route("/login", dashboard.login_form, methods=["GET"]),
        Route("/login", dashboard.login, methods=["POST"]),
        Route("/logout", dashboard.logout, methods=["POST"]),
        Route("/jobs", dashboard.jobs, methods=["GET"]),
        Route("/workers", dashboard.workers, methods=["GET"]),
        Route("/jobs/{job_id}", dashboard.job, methods=["GET"]),
        Route("/jobs/{job_id}/raw/{field}", dashboard.raw_field, methods=["GET"]),
        Route("/jobs/{job_id}/cancel", dashboard.cancel, methods=["POST"]),
        Route("/jobs/{job_id}/retry", dashboard.retry, methods=["POST"]),
        Route("/jobs/{job_id}/run-now", dashboard.run_now, methods=["POST"]),
        Route("/names/pause", dashboard.pause, methods=["POST"]),
        Route("/names/resume", dashboard.resume, methods=["POST"]),
        Route("/partials/overview", dashboard.overview_partial, methods=["GET"]),
        Route("/partials/jobs", dashboard.jobs_partial, methods=["GET"]),
        Route("/partials/jobs/{job_id}", dashboard.job_partial, methods=["GET"]),
        Route("/partials/workers", dashboard.workers_partial, methods=["GET"]),
        Mount(
            "/static",
            app=StaticFiles(packages=[("mongo_job_scheduler.dashboard", "static")]),
            name="static",
        ),
    ]
    if metrics_registry is not None:
        from prometheus_client import make_asgi_app

        routes.append(
            Route("/metrics", dashboard.protect(make_asgi_app(registry=metrics_registry)))
        )
    api = create_api(scheduler, token=token, cors_origins=cors_origins, throttle=dashboard.throttle)
    routes.append(Mount("/api", app=api))
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(_SecurityHeaders),
            *(
                []
                if allowed_hosts is None
                else [
                    Middleware(
                        TrustedHostMiddleware, allowed_hosts=list(allowed_hosts), www_redirect=False
                    )
                ]
            ),
            Middleware(BodyLimit, limit=MAX_BODY_BYTES, refusal=_too_large, exempt=["/api/"]),
        ],
        exception_handlers={
            _Throttled: dashboard.throttled,
            404: dashboard.not_found,
            Exception: dashboard.server_error,
        },
    )
    app.router.redirect_slashes = False
    dashboard.routes = routes
    app.state.dashboard = dashboard
    return app
