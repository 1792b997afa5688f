"""The HTTP API: JSON routes over the public ``Scheduler`` API for services in other languages,
scripts and operators (:func:`create_api`; ``/api`` of the dashboard).

Every route but ``/health`` and ``/openapi.json`` needs ``Authorization: Bearer <token>``;
no cookie is read, so a browser cannot be made to call it on someone's behalf. JSON has the
stored document's shape (camelCase, milliseconds, ISO 8601 instants, ids as 24-hex strings;
bodies are read by :mod:`.._authoring`). Every error is a JSON object with its status:
``{"error": code, "message": ..., "field": ...}``. The routes, bodies and errors are described
by the OpenAPI document of :mod:`._openapi`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode, urlsplit

from pymongo.errors import PyMongoError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._authoring import (
    body_field,
    bulk_arguments,
    parse_json,
    schedule_arguments,
    schedule_reporting,
    update_arguments,
)
from .._errors import ConfigurationError, InvalidJobState, JobNotFound, ValidationError
from .._format import document_for_display, parse_data_value, to_plain
from .._procedures import MAX_THROUGHPUT_MINUTES
from ..job import Job
from ..scheduler import Scheduler
from ..stats import Activity, SchedulerStats
from ._auth import Signer, check_token
from ._guards import BodyLimit
from ._openapi import openapi_document
from ._params import int_param
from ._throttle import FailureThrottle, check_failures_per_minute, client_key

__all__ = ["create_api"]

logger = logging.getLogger("mongo_job_scheduler.dashboard")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""The largest request body the API reads unless told otherwise (``max_body_bytes``)."""
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
HEALTH_TIMEOUT = 2.0
"""Seconds ``/health`` waits for MongoDB to answer before saying it does not."""
LIST_PARAMS = frozenset({"name", "status", "sort", "order", "limit", "skip"})
"""The list's query parameters, besides ``data.<key>``."""

Handler = Callable[[Request], Awaitable[Response]]


class _RequestError(Exception):
    """A request the API refuses before any scheduler call: its status, code and message."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    response = JSONResponse(body, status_code=status, headers=dict(headers or {}))
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _error(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"error": code, "message": message}
    if field is not None:
        body["field"] = field
    return _json(body, status, headers)


def job_json(job: Job) -> dict[str, Any]:
    """A job as the API shows it: its stored document, ``_id`` first, as plain JSON."""
    plain: dict[str, Any] = to_plain(document_for_display(job.document))
    return plain


def stats_json(stats: SchedulerStats) -> dict[str, Any]:
    """A :class:`SchedulerStats` in the API's shape (camelCase, milliseconds)."""
    lag = stats.lag
    return {
        "at": to_plain(stats.at),
        "total": stats.total,
        "byStatus": stats.by_status,
        "byName": stats.by_name,
        "due": stats.due,
        "oldestDueAt": None if stats.oldest_due_at is None else to_plain(stats.oldest_due_at),
        "lagMs": None if lag is None else round(lag.total_seconds() * 1000),
        "failedLastHour": stats.failed_last_hour,
        "paused": list(stats.paused),
        "unhandled": dict(stats.unhandled),
    }


def activity_json(activity: Activity) -> dict[str, Any]:
    """An :class:`Activity` in the API's shape (camelCase, milliseconds; ``capped`` sorted)."""
    lag, oldest = activity.lag, activity.oldest_due_at
    return {
        "at": to_plain(activity.at),
        "since": to_plain(activity.since),
        "minutes": activity.minutes,
        "byStatus": activity.by_status,
        "byName": activity.by_name,
        "capped": sorted(activity.capped),
        "due": activity.due,
        "dueByName": dict(activity.due_by_name),
        "oldestDueAt": None if oldest is None else to_plain(oldest),
        "lagMs": None if lag is None else round(lag.total_seconds() * 1000),
        "paused": list(activity.paused),
        "unhandled": dict(activity.unhandled),
    }


def _refusal(exc: ValidationError) -> Response:
    field = "id" if exc.field == "job_id" else body_field(exc.field)
    return _error(400, "invalid", f"{field}: {exc.reason}", field)


def list_arguments(request: Request) -> dict[str, Any]:
    """The list's query string as ``get_jobs()`` arguments (unknown parameters refused)."""
    params = request.query_params
    data: dict[str, Any] = {}
    for key in params:
        if key.startswith("data."):
            values = params.getlist(key)
            if len(values) > 1:
                raise ValidationError(key, "given more than once")
            data[key[len("data.") :]] = parse_data_value(values[0])
        elif key not in LIST_PARAMS:
            raise ValidationError(
                key, "unknown query parameter; one of data.<key>, " + ", ".join(sorted(LIST_PARAMS))
            )
    statuses = [s.strip() for v in params.getlist("status") for s in v.split(",") if s.strip()]
    order = params.get("order") or "desc"
    if order not in ("asc", "desc"):
        raise ValidationError("order", f"must be 'asc' or 'desc', got {order!r}")
    return {
        "name": params.get("name") or None,
        "status": statuses or None,
        "data": data or None,
        "sort": (params.get("sort") or "createdAt", order),
        "limit": int_param(params, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE),
        "skip": int_param(params, "skip", 0, 0, 2**63 - 1),
    }


class _Api:
    """The scheduler, the token check and the limits; its methods are the routes."""

    def __init__(
        self,
        scheduler: Scheduler,
        signer: Signer,
        throttle: FailureThrottle,
        max_body_bytes: int,
    ) -> None:
        self.scheduler = scheduler
        self.signer = signer
        self.throttle = throttle
        self.max_body_bytes = max_body_bytes

    # -- plumbing -------------------------------------------------------------------------------

    def endpoint(self, handler: Handler, *, public: bool = False) -> Handler:
        """``handler`` behind the token (unless ``public``), with every failure as a JSON
        error: 400 (``ValidationError``), 404, 409 (``InvalidJobState``), 415, 429, 503
        (MongoDB did not answer), 500 (anything else; logged, never shown)."""

        async def endpoint(request: Request) -> Response:
            try:
                if not public:
                    self._authorise(request)
                return await handler(request)
            except _RequestError as exc:
                return _error(exc.status, exc.code, exc.message, headers=exc.headers)
            except ValidationError as exc:
                return _refusal(exc)
            except JobNotFound as exc:
                return _error(404, "not_found", str(exc))
            except InvalidJobState as exc:
                return _error(409, "conflict", str(exc))
            except PyMongoError as exc:
                logger.error("API request %s: MongoDB failed", request.url.path, exc_info=exc)
                return _error(503, "unavailable", "the database did not answer; try again")
            except Exception as exc:
                logger.error("API request %s failed", request.url.path, exc_info=exc)
                return _error(500, "internal", "the request failed; see the server's log")

        return endpoint

    def _authorise(self, request: Request) -> None:
        """Nothing, for a Bearer client with the token; else the refusal: 429 while the
        client's wrong tokens must wait (the token is not even checked), 401."""
        client = client_key(request.client.host if request.client else None)
        wait = self.throttle.wait(client)
        if wait:
            raise _RequestError(
                429,
                "throttled",
                f"too many wrong tokens from this client; try again in {wait} s",
                {"Retry-After": str(wait)},
            )
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        guessed = scheme.lower() == "bearer"
        if not (guessed and self.signer.token_matches(credentials.strip())):
            if guessed:  # only a Bearer token can be right: the others guess nothing
                self.throttle.failed(client)
            raise _RequestError(
                401,
                "unauthorized",
                "that token is not valid"
                if guessed
                else "send the token as Authorization: Bearer <token>",
                {"WWW-Authenticate": "Bearer"},
            )

    async def _body(self, request: Request) -> Any:
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise _RequestError(
                415,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            )
        return parse_json("body", await request.body())

    async def _job(self, job_id: str) -> Job:
        job = await self.scheduler.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    # -- routes ---------------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        try:
            await asyncio.wait_for(self.scheduler.paused_names(), HEALTH_TIMEOUT)
        except Exception:  # unreachable, refusing, slow: the answer is the same
            return _json({"status": "unavailable", "database": "unreachable"}, 503)
        return _json({"status": "ok", "database": "ok"})

    async def openapi(self, request: Request) -> Response:
        return _json(openapi_document(self.max_body_bytes, _api_root(request) or "/"))

    async def list_jobs(self, request: Request) -> Response:
        arguments = list_arguments(request)
        limit, skip = arguments["limit"], arguments["skip"]
        found = await self.scheduler.get_jobs(**{**arguments, "limit": limit + 1})
        following = None
        if len(found) > limit:
            query = [(k, v) for k, v in request.query_params.multi_items() if k != "skip"]
            following = f"{request.url.path}?{urlencode([*query, ('skip', str(skip + limit))])}"
        jobs = [job_json(job) for job in found[:limit]]
        return _json({"jobs": jobs, "limit": limit, "skip": skip, "next": following})

    async def stats(self, request: Request) -> Response:
        return _json(stats_json(await self.scheduler.stats()))

    async def activity(self, request: Request) -> Response:
        params = request.query_params
        for key in params:
            if key != "minutes":
                raise ValidationError(key, "unknown query parameter; only minutes")
        minutes = int_param(params, "minutes", 60, 1, MAX_THROUGHPUT_MINUTES)
        return _json(activity_json(await self.scheduler.activity(minutes=minutes)))

    async def get(self, request: Request) -> Response:
        return _json(job_json(await self._job(request.path_params["job_id"])))

    async def create(self, request: Request) -> Response:
        arguments = schedule_arguments(await self._body(request))
        [(job, created)] = await schedule_reporting(self.scheduler, [arguments])
        body: dict[str, Any] = {"created": created, "job": job_json(job)}
        if not created:
            body["message"] = (
                f"job {job.id} holds the dedupe key {job.dedupe_key!r}: returned it, "
                "created nothing"
            )
            return _json(body)
        return _json(body, 201, {"Location": f"{_api_root(request)}/jobs/{job.id}"})

    async def create_many(self, request: Request) -> Response:
        items = bulk_arguments(await self._body(request))
        reported = await schedule_reporting(self.scheduler, items, bulk=True)
        results = [{"created": created, "job": job_json(job)} for job, created in reported]
        created = sum(1 for _, was_created in reported if was_created)
        return _json({"created": created, "jobs": results}, 201 if created else 200)

    async def update(self, request: Request) -> Response:
        arguments = update_arguments(await self._body(request))
        job = await self.scheduler.update_job(request.path_params["job_id"], **arguments)
        return _json(job_json(job))

    async def delete(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        if not await self.scheduler.delete_job(job_id):
            raise JobNotFound(job_id)
        return Response(status_code=204, headers={"Cache-Control": "no-store"})

    async def cancel(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        cancelled = await self.scheduler.cancel(job_id)
        return _json({"cancelled": cancelled, "job": job_json(await self._job(job_id))})

    async def retry(self, request: Request) -> Response:
        return _json(job_json(await self.scheduler.retry_job(request.path_params["job_id"])))

    async def run_now(self, request: Request) -> Response:
        job = await self.scheduler.update_job(
            request.path_params["job_id"], run_at=datetime.now(timezone.utc)
        )
        return _json(job_json(job))

    async def pause(self, request: Request) -> Response:
        name = request.path_params["name"]
        changed = await self.scheduler.pause(name)
        return _json({"name": name, "paused": True, "changed": changed})

    async def resume(self, request: Request) -> Response:
        name = request.path_params["name"]
        changed = await self.scheduler.resume(name)
        return _json({"name": name, "paused": False, "changed": changed})


def _by_method(handlers: Mapping[str, Handler]) -> Handler:
    """One route's handler for each of its methods (``HEAD`` answered as ``GET``)."""

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return dispatch


def _api_root(request: Request) -> str:
    """The path the API is served under (``/api`` in the dashboard)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, a method the route does not take) as JSON."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        allowed = headers.get("Allow", "")
        return _error(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here; use {allowed}",
            headers=headers,
        )
    if exc.status_code == 404:
        return _error(404, "not_found", f"no route {request.url.path}", headers=headers)
    return _error(exc.status_code, "http_error", str(exc.detail), headers=headers)


def checked_origins(origins: Iterable[str] | None) -> list[str]:
    """The CORS origins an operator named, each ``scheme://host[:port]``."""
    if origins is None:
        return []
    if isinstance(origins, str):
        raise ConfigurationError("cors_origins", "expected a list of origins, got a string")
    checked = []
    for origin in origins:
        parts = urlsplit(origin) if isinstance(origin, str) else None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path
            or parts.query
            or parts.fragment
            or parts.username is not None
        ):
            raise ConfigurationError(
                "cors_origins",
                f"{origin!r} is not an origin; name each one as scheme://host[:port], such as "
                "https://app.example.com ('*' is not accepted)",
            )
        checked.append(origin.rstrip("/"))
    return checked


def _too_large(limit: int) -> Response:
    """The 413 of a body over ``limit`` bytes."""
    response = _error(413, "too_large", f"the request body is larger than {limit} bytes")
    response.headers["Connection"] = "close"
    return response


def create_api(
    scheduler: Scheduler,
    *,
    token: str,
    cors_origins: Iterable[str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    failures_per_minute: int = 10,
    throttle: FailureThrottle | None = None,
) -> Starlette:
    """The HTTP API of ``scheduler`` as an ASGI (Starlette) application, to mount where you
    like (``Mount("/api", app=create_api(...))``; the dashboard serves it at ``/api``).

    Every route but ``/health`` and ``/openapi.json`` needs ``Authorization: Bearer
    <token>`` (at least 16 characters). A client (an IPv4 address, an IPv6 /64) may get it
    wrong ``failures_per_minute`` times in a row; then it waits (429 with ``Retry-After``) and
    earns one more try every ``60 / failures_per_minute`` seconds (``throttle``: count with
    another app's, as the dashboard does for its ``/api``). Bodies over ``max_body_bytes`` are
    refused with 413 before they are read further. CORS is off unless ``cors_origins`` names
    the origins (``https://app.example.com``) whose pages may call it.
    """
    if not isinstance(scheduler, Scheduler) or scheduler.store is None:
        raise ConfigurationError("scheduler", "expected an asyncio Scheduler with a store")
    check_token(token)
    check_failures_per_minute(failures_per_minute)
    if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int):
        raise ConfigurationError("max_body_bytes", "must be a positive integer")
    if max_body_bytes < 1:
        raise ConfigurationError("max_body_bytes", "must be a positive integer")
    origins = checked_origins(cors_origins)
    chosen = throttle if throttle is not None else FailureThrottle(failures_per_minute)
    api = _Api(scheduler, Signer(token, 1), chosen, max_body_bytes)
    routes: dict[str, dict[str, Handler]] = {
        "/health": {"GET": api.endpoint(api.health, public=True)},
        "/openapi.json": {"GET": api.endpoint(api.openapi, public=True)},
        "/jobs": {"GET": api.endpoint(api.list_jobs), "POST": api.endpoint(api.create)},
        "/jobs/bulk": {"POST": api.endpoint(api.create_many)},
        "/jobs/stats": {"GET": api.endpoint(api.stats)},
        "/jobs/activity": {"GET": api.endpoint(api.activity)},
        "/jobs/{job_id}": {
            "GET": api.endpoint(api.get),
            "PATCH": api.endpoint(api.update),
            "DELETE": api.endpoint(api.delete),
        },
        "/jobs/{job_id}/cancel": {"POST": api.endpoint(api.cancel)},
        "/jobs/{job_id}/retry": {"POST": api.endpoint(api.retry)},
        "/jobs/{job_id}/run-now": {"POST": api.endpoint(api.run_now)},
        "/names/{name:path}/pause": {"POST": api.endpoint(api.pause)},
        "/names/{name:path}/resume": {"POST": api.endpoint(api.resume)},
    }
    middleware = [Middleware(BodyLimit, limit=max_body_bytes, refusal=_too_large)]
    if origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=origins,
                allow_methods=["GET", "POST", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type"],
                expose_headers=["Location", "Retry-After"],
                max_age=600,
            )
        )
    app = Starlette(
        routes=[
            Route(path, _by_method(handlers), methods=list(handlers))
            for path, handlers in routes.items()
        ],
        middleware=middleware,
        exception_handlers={HTTPException: _http_error},
    )
    app.router.redirect_slashes = False  # a redirect would take its host from the request
    app.state.api = api
    return app
