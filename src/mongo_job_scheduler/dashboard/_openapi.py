"""The OpenAPI 3.1 document of the HTTP API (:mod:`._api`): every route, body, response and
error, with JSON Schemas in the stored document's shape."""

from __future__ import annotations

from typing import Any

from .._authoring import MAX_BULK
from .._documents import MAX_DEDUPE_KEY_LENGTH, MAX_NAME_LENGTH, SORT_FIELDS
from .._history import HISTORY_LIMIT, MAX_HISTORY_ERROR_LENGTH, MAX_HISTORY_ERROR_TYPE_LENGTH
from .._procedures import MAX_THROUGHPUT_MINUTES
from .._version import __version__
from ..job import AttemptOutcome, JobStatus
from ..stats import ACTIVITY_READ_LIMIT, THROUGHPUT_READ_LIMIT

__all__ = ["openapi_document"]

STATUSES = [status.value for status in JobStatus]
ERROR_CODES = [
    "invalid",
    "unauthorized",
    "not_found",
    "method_not_allowed",
    "conflict",
    "too_large",
    "unsupported_media_type",
    "throttled",
    "internal",
    "unavailable",
]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


DATE_TIME = {"type": "string", "format": "date-time"}
JOB_ID = {"type": "string", "pattern": "^[0-9a-f]{24}$", "examples": ["665f1c2e8b3a4d0012ab34cd"]}
MILLISECONDS = {"type": "number", "exclusiveMinimum": 0}
INTEGER = {"type": "integer"}
TEXT = {"type": "string"}
COUNT = {"type": "integer", "minimum": 0}


SCHEMAS: dict[str, Any] = {
    "Repeat": {
        "type": "object",
        "description": "Exactly one of cron or every.",
        "properties": {
            "cron": {**TEXT, "examples": ["0 9 * * *"]},
            "every": {"type": "number", "minimum": 100, "description": "Milliseconds."},
            "timezone": {**TEXT, "description": "IANA zone of the cron fields."},
            "misfire": {"enum": ["once", "skip", "all"]},
            "catchUpLimit": {"type": "integer", "minimum": 1},
        },
        "additionalProperties": False,
    },
    "Retry": {
        "type": "object",
        "required": ["maxAttempts"],
        "properties": {
            "maxAttempts": {"type": "integer", "minimum": 1},
            "delay": {"type": "number", "minimum": 0, "description": "Milliseconds."},
            "backoff": {"enum": ["fixed", "linear", "exponential"]},
            "maxDelay": {"type": "number", "minimum": 0, "description": "Milliseconds."},
            "jitter": {"type": "boolean"},
        },
        "additionalProperties": False,
    },
    "RetryOrAttempts": {
        "description": "A policy, or the number of executions allowed.",
        "anyOf": [_ref("Retry"), {"type": "integer", "minimum": 0}],
    },
    "RateLimit": {
        "type": "object",
        "required": ["limit", "periodMs"],
        "properties": {
            "limit": {"type": "integer", "minimum": 1},
            "periodMs": {"type": "number", "minimum": 1},
        },
        "additionalProperties": False,
    },
    "Attempt": {
        "type": "object",
        "description": "One attempt of a job (one claim), written by the write that ended it "
        "(docs/schema.md, History entries). Fields the job document lacked are left out.",
        "required": ["outcome", "endedAt"],
        "properties": {
            "outcome": {"enum": [outcome.value for outcome in AttemptOutcome]},
            "startedAt": DATE_TIME,
            "endedAt": DATE_TIME,
            "durationMs": {**COUNT, "description": "Milliseconds."},
            "lockedBy": {**TEXT, "description": "The worker that ran it."},
            "lockVersion": {**COUNT, "description": "Its fencing token."},
            "error": {**TEXT, "maxLength": MAX_HISTORY_ERROR_LENGTH},
            "errorType": {**TEXT, "maxLength": MAX_HISTORY_ERROR_TYPE_LENGTH},
            "retryDelayMs": {
                **COUNT,
                "description": "Milliseconds before the next attempt, when one follows.",
            },
        },
        "additionalProperties": False,
    },
    "Job": {
        "type": "object",
        "description": "The stored document (docs/schema.md): camelCase, durations in "
        "milliseconds, instants in ISO 8601 UTC, ids as 24-hex strings. Fields may be added.",
        "required": ["_id", "name", "status"],
        "properties": {
            "_id": JOB_ID,
            "name": TEXT,
            "data": {"description": "Any JSON value."},
            "status": {"enum": STATUSES},
            "priority": {"type": "integer", "minimum": 1, "maximum": 10},
            "attempts": COUNT,
            "nextRunAt": DATE_TIME,
            "lastRunAt": DATE_TIME,
            "lastScheduledAt": DATE_TIME,
            "lockedAt": DATE_TIME,
            "lockedBy": TEXT,
            "lockUntil": DATE_TIME,
            "lockVersion": COUNT,
            "claimId": TEXT,
            "lastError": TEXT,
            "lastErrorType": TEXT,
            "lastErrorTrace": TEXT,
            "retry": _ref("RetryOrAttempts"),
            "repeat": _ref("Repeat"),
            "dedupeKey": TEXT,
            "dedupeScope": {"enum": ["active", "forever"]},
            "dedupeWindowMs": INTEGER,
            "concurrency": {"type": "integer", "minimum": 1},
            "rateLimit": _ref("RateLimit"),
            "maxExecutionMs": INTEGER,
            "timeoutMs": INTEGER,
            "leaseExpiries": COUNT,
            "missedRuns": COUNT,
            "result": {"description": "What the last successful run returned."},
            "progress": {
                "type": "object",
                "properties": {
                    "percent": {"type": "number"},
                    "message": {"type": ["string", "null"]},
                    "updatedAt": DATE_TIME,
                },
            },
            "history": {
                "type": "array",
                "description": "The last attempts, oldest first.",
                "items": _ref("Attempt"),
                "maxItems": HISTORY_LIMIT,
            },
            "expireAt": DATE_TIME,
            "dependsOn": {"type": "array", "items": JOB_ID},
            "runOnFailure": {"type": "boolean"},
            "dependants": {"enum": ["open", "settled"]},
            "createdAt": DATE_TIME,
            "updatedAt": DATE_TIME,
        },
    },
    "NewJob": {
        "type": "object",
        "description": "A job to schedule. runAt or delayMs sets the first run (default: now, "
        "or a repeating job's first slot).",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH},
            "data": {"description": "Any JSON value (objects: no key starting with $)."},
            "runAt": DATE_TIME,
            "delayMs": {"type": "number", "minimum": 0},
            "repeat": _ref("Repeat"),
            "retry": _ref("RetryOrAttempts"),
            "priority": {"type": "integer", "minimum": 1, "maximum": 10, "default": 5},
            "concurrency": {"type": "integer", "minimum": 1},
            "dedupeKey": {"type": "string", "minLength": 1, "maxLength": MAX_DEDUPE_KEY_LENGTH},
            "dedupeScope": {"enum": ["active", "forever"], "default": "active"},
            "dedupeWindowMs": MILLISECONDS,
            "timeoutMs": MILLISECONDS,
            "maxExecutionMs": MILLISECONDS,
            "rateLimit": _ref("RateLimit"),
            "dependsOn": {"type": "array", "items": JOB_ID},
            "runOnFailure": {"type": "boolean"},
        },
        "additionalProperties": False,
    },
    "JobChanges": {
        "type": "object",
        "description": "The fields to change; null clears an optional one. runAt reschedules "
        "a pending job or runs a completed or failed one again.",
        "minProperties": 1,
        "properties": {
            "data": {"description": "Any JSON value."},
            "runAt": DATE_TIME,
            "repeat": _nullable(_ref("Repeat")),
            "retry": _nullable(_ref("RetryOrAttempts")),
            "priority": {"type": "integer", "minimum": 1, "maximum": 10},
            "concurrency": _nullable({"type": "integer", "minimum": 1}),
            "timeoutMs": _nullable(MILLISECONDS),
            "maxExecutionMs": _nullable(MILLISECONDS),
        },
        "additionalProperties": False,
    },
    "NewJobs": {
        "type": "object",
        "required": ["jobs"],
        "properties": {"jobs": {"type": "array", "items": _ref("NewJob"), "maxItems": MAX_BULK}},
        "additionalProperties": False,
    },
    "Scheduled": {
        "type": "object",
        "required": ["created", "job"],
        "properties": {
            "created": {
                "type": "boolean",
                "description": "false: an existing job holds the dedupe key; it is returned.",
            },
            "job": _ref("Job"),
            "message": TEXT,
        },
        "additionalProperties": False,
    },
    "ScheduledMany": {
        "type": "object",
        "required": ["created", "jobs"],
        "properties": {
            "created": {**COUNT, "description": "How many jobs were created."},
            "jobs": {
                "type": "array",
                "description": "One entry per job of the request, in order.",
                "items": {
                    "type": "object",
                    "required": ["created", "job"],
                    "properties": {"created": {"type": "boolean"}, "job": _ref("Job")},
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    },
    "JobList": {
        "type": "object",
        "required": ["jobs", "limit", "skip", "next"],
        "properties": {
            "jobs": {"type": "array", "items": _ref("Job")},
            "limit": INTEGER,
            "skip": COUNT,
            "next": {
                "type": ["string", "null"],
                "description": "The path of the next page, or null on the last one.",
            },
        },
        "additionalProperties": False,
    },
    "Stats": {
        "type": "object",
        "description": "Exact counts (one aggregation over the whole collection).",
        "required": ["at", "total", "byStatus", "byName", "due", "oldestDueAt", "lagMs"],
        "properties": {
            "at": DATE_TIME,
            "total": COUNT,
            "byStatus": {"type": "object", "additionalProperties": COUNT},
            "byName": {
                "type": "object",
                "additionalProperties": {"type": "object", "additionalProperties": COUNT},
            },
            "due": {**COUNT, "description": "Pending jobs due but not started."},
            "oldestDueAt": {"anyOf": [DATE_TIME, {"type": "null"}]},
            "lagMs": {"type": ["integer", "null"], "minimum": 0},
            "failedLastHour": COUNT,
            "paused": {"type": "array", "items": TEXT},
            "unhandled": {"type": "object", "additionalProperties": COUNT},
        },
        "additionalProperties": False,
    },
    "Activity": {
        "type": "object",
        "description": "What each name is doing, in bounded index reads (never every job): "
        "pending, running and waiting jobs now, and jobs finished at or after since (the "
        "last minutes wall-clock minutes). Each active status, and the due jobs, is read up "
        f"to {ACTIVITY_READ_LIMIT} jobs (pending and due ones in the claim order), each "
        f"finished status up to its newest {THROUGHPUT_READ_LIMIT}; capped lists what "
        "stopped at its limit (a lower bound).",
        "required": ["at", "since", "minutes", "byStatus", "byName", "capped", "due", "lagMs"],
        "properties": {
            "at": DATE_TIME,
            "since": DATE_TIME,
            "minutes": {"type": "integer", "minimum": 1, "maximum": MAX_THROUGHPUT_MINUTES},
            "byStatus": {"type": "object", "additionalProperties": COUNT},
            "byName": {
                "type": "object",
                "additionalProperties": {"type": "object", "additionalProperties": COUNT},
            },
            "capped": {
                "type": "array",
                "items": {"enum": [*STATUSES, "due"]},
                "description": "The statuses (and due) whose counts stopped at the read limit.",
            },
            "due": {**COUNT, "description": "Pending jobs due but not started."},
            "dueByName": {"type": "object", "additionalProperties": COUNT},
            "oldestDueAt": {"anyOf": [DATE_TIME, {"type": "null"}]},
            "lagMs": {"type": ["integer", "null"], "minimum": 0},
            "paused": {"type": "array", "items": TEXT},
            "unhandled": {"type": "object", "additionalProperties": COUNT},
        },
        "additionalProperties": False,
    },
    "Cancelled": {
        "type": "object",
        "required": ["cancelled", "job"],
        "properties": {
            "cancelled": {"type": "boolean", "description": "false: it had already finished."},
            "job": _ref("Job"),
        },
        "additionalProperties": False,
    },
    "NameState": {
        "type": "object",
        "required": ["name", "paused", "changed"],
        "properties": {"name": TEXT, "paused": {"type": "boolean"}, "changed": {"type": "boolean"}},
        "additionalProperties": False,
    },
    "Health": {
        "type": "object",
        "required": ["status", "database"],
        "properties": {
            "status": {"enum": ["ok", "unavailable"]},
            "database": {"enum": ["ok", "unreachable"]},
        },
        "additionalProperties": False,
    },
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"enum": ERROR_CODES},
            "message": TEXT,
            "field": {**TEXT, "description": "The refused field, in the body's names."},
        },
        "additionalProperties": False,
    },
}

ERRORS = {
    "400": "Invalid input; field names it (the Python API's rule and message).",
    "401": "No token, or a wrong one.",
    "404": "No such job.",
    "409": "The job's status does not allow this.",
    "413": "The body is larger than the server takes.",
    "415": "The body is not JSON (Content-Type: application/json).",
    "429": "Too many wrong tokens from this client; see Retry-After.",
    "500": "The request failed (details in the server's log only).",
    "503": "MongoDB did not answer.",
}
"""Every error response, by status."""

_ALWAYS = ("401", "429", "500", "503")


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _response(description: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = _json_content(schema)
    return response


def _operation(
    summary: str,
    answers: dict[str, tuple[str, str | None]],
    errors: tuple[str, ...] = (),
    *,
    body: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
    public: bool = False,
) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": {}}
    for status, (description, schema) in answers.items():
        operation["responses"][status] = _response(
            description, None if schema is None else _ref(schema)
        )
    shown = errors if public else (*errors, *_ALWAYS)
    if body is not None:
        shown = (*shown, "400", "413", "415")
        operation["requestBody"] = {"required": True, "content": _json_content(_ref(body))}
    for status in sorted(set(shown)):
        operation["responses"][status] = {"$ref": f"#/components/responses/E{status}"}
    if parameters:
        operation["parameters"] = parameters
    if public:
        operation["security"] = []
    return operation


def _path_parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": schema}


ID_PARAMETER = _path_parameter("id", "The job's id.", JOB_ID)
NAME_PARAMETER = _path_parameter(
    "name", "The job name (URL-encoded; %2F for a slash).", {"type": "string"}
)
LIST_PARAMETERS = [
    _query("name", "Only jobs with this exact name.", TEXT),
    _query(
        "status",
        "Only jobs in these statuses, comma-separated (or the parameter repeated).",
        {**TEXT, "examples": ["failed,cancelled"]},
    ),
    _query("sort", "The field to sort on.", {"enum": sorted(SORT_FIELDS), "default": "createdAt"}),
    _query("order", "The sort direction.", {"enum": ["asc", "desc"], "default": "desc"}),
    _query("limit", "Jobs per page.", {"type": "integer", "minimum": 1, "maximum": 500}),
    _query("skip", "Jobs to skip (the next page's link has it).", {**COUNT, "default": 0}),
]
LIST_DESCRIPTION = (
    "Filters, sorting and paging happen in MongoDB. A data filter is a parameter "
    "data.<key>=<value> (dotted keys reach nested fields; the value is JSON if it parses, "
    "else a string: data.userId=123 is the number, data.userId=%22123%22 the string). "
    "Unknown parameters are refused with 400."
)


def _paths() -> dict[str, Any]:
    job = ("The job.", "Job")
    listing = _operation(
        "List jobs", {"200": ("A page of jobs.", "JobList")}, ("400",), parameters=LIST_PARAMETERS
    )
    listing["description"] = LIST_DESCRIPTION
    create = _operation(
        "Schedule a job",
        {
            "201": ("Created.", "Scheduled"),
            "200": ("An existing job holds the dedupe key: that job.", "Scheduled"),
        },
        body="NewJob",
    )
    create["responses"]["201"]["headers"] = {
        "Location": {"description": "The job's URL.", "schema": TEXT}
    }
    return {
        "/health": {
            "get": _operation(
                "Liveness and whether MongoDB answers",
                {"200": ("Up.", "Health"), "503": ("MongoDB does not answer.", "Health")},
                public=True,
            )
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "security": [],
                "responses": {"200": _response("OpenAPI 3.1.", {"type": "object"})},
            }
        },
        "/jobs": {"get": listing, "post": create},
        "/jobs/bulk": {
            "post": _operation(
                "Schedule many jobs in one call (all validated before any is written)",
                {
                    "201": ("At least one was created.", "ScheduledMany"),
                    "200": ("None was created (every one deduped).", "ScheduledMany"),
                },
                body="NewJobs",
            )
        },
        "/jobs/stats": {
            "get": _operation(
                "Counts by status and name, due backlog and lag", {"200": ("Stats.", "Stats")}
            )
        },
        "/jobs/activity": {
            "get": _operation(
                "What each name is doing now and in the last minutes, in bounded reads",
                {"200": ("Activity.", "Activity")},
                ("400",),
                parameters=[
                    _query(
                        "minutes",
                        "The window of finished jobs, in wall-clock minutes.",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_THROUGHPUT_MINUTES,
                            "default": 60,
                        },
                    )
                ],
            )
        },
        "/jobs/{id}": {
            "parameters": [ID_PARAMETER],
            "get": _operation("One job", {"200": job}, ("400", "404")),
            "patch": _operation(
                "Change data, runAt, repeat, retry, priority, concurrency, timeoutMs or "
                "maxExecutionMs",
                {"200": ("The job after the change.", "Job")},
                ("404", "409"),
                body="JobChanges",
            ),
            "delete": _operation(
                "Delete a pending, waiting or finished job (a running one: cancel it first)",
                {"204": ("Deleted.", None)},
                ("400", "404", "409"),
            ),
        },
        "/jobs/{id}/cancel": {
            "parameters": [ID_PARAMETER],
            "post": _operation(
                "Cancel a pending, waiting or running job",
                {"200": ("Cancelled, or already finished.", "Cancelled")},
                ("400", "404"),
            ),
        },
        "/jobs/{id}/retry": {
            "parameters": [ID_PARAMETER],
            "post": _operation(
                "Run a failed or cancelled job again now, with fresh attempts",
                {"200": job},
                ("400", "404", "409"),
            ),
        },
        "/jobs/{id}/run-now": {
            "parameters": [ID_PARAMETER],
            "post": _operation(
                "Make a pending job due now, or run a completed or failed one again",
                {"200": job},
                ("400", "404", "409"),
            ),
        },
        "/names/{name}/pause": {
            "parameters": [NAME_PARAMETER],
            "post": _operation(
                "Stop every worker from starting jobs of this name",
                {"200": ("Paused (changed: false if it already was).", "NameState")},
                ("400",),
            ),
        },
        "/names/{name}/resume": {
            "parameters": [NAME_PARAMETER],
            "post": _operation(
                "Let workers start jobs of this name again",
                {"200": ("Resumed (changed: false if it was not paused).", "NameState")},
                ("400",),
            ),
        },
    }


def openapi_document(max_body_bytes: int, server: str = "/api") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API served under ``server``, whose bodies are capped
    at ``max_body_bytes``."""
    responses = {
        f"E{status}": {
            "description": description,
            "content": _json_content(_ref("Error")),
            **(
                {"headers": {"Retry-After": {"description": "Seconds.", "schema": INTEGER}}}
                if status == "429"
                else {}
            ),
        }
        for status, description in ERRORS.items()
    }
    responses["E405"] = {
        "description": "The route does not take this method (Allow lists those it takes).",
        "content": _json_content(_ref("Error")),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mongo-job-scheduler API",
            "version": __version__,
            "description": "Jobs of one collection, over the public Scheduler API. Send "
            "Authorization: Bearer <token>. JSON has the stored document's shape: camelCase, "
            "durations in milliseconds, ISO 8601 instants with an offset, ids as 24-hex "
            f"strings. Bodies are JSON of at most {max_body_bytes} bytes. Every error is an "
            "Error object; a method a route does not take answers 405.",
        },
        "servers": [{"url": server or "/"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "responses": responses,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
