"""Validation of user input and construction of stored documents (pure, shared by the async
scheduler, the sync facade and both stores)."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import bson
from bson import Code, Decimal128, ObjectId
from bson.errors import InvalidDocument, InvalidId

from ._durations import MAX_INT64, Duration, to_seconds, to_utc
from ._errors import ValidationError
from ._format import CONTROL_CHARACTERS, inert
from ._limits import MAX_FILTER_KEY_LENGTH, MAX_FILTER_KEY_PARTS, MAX_NESTING
from .job import JobStatus
from .rate_limit import RateLimit
from .repeat import Repeat
from .retry import Retry

MAX_NAME_LENGTH = 200
MAX_DEDUPE_KEY_LENGTH = 512
MAX_BSON_SIZE = 16 * 1024 * 1024
MAX_LIMIT = 10_000
MAX_DEPENDENCIES = 100_000
"""The most jobs one job may wait for (its ``dependsOn`` list stays far below 16 MB)."""
DEFAULT_LIMIT = 100
MAX_FIELDS = 64
"""The most fields a ``get_jobs(fields=...)`` projection names."""
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SORT_FIELDS = {
    "nextRunAt", "createdAt", "updatedAt", "lastRunAt", "priority", "name", "status", "_id",
}  # fmt: skip
SORT_TIES = {"name": ("createdAt",), "priority": ("nextRunAt",)}
"""What orders jobs with equal values of a sort field, before ``_id``: the next keys of the
index that keeps that order (``by_name``; ``claim_order``, for pending jobs)."""
DedupeScope = Literal["active", "forever"]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Marks an ``update_job`` argument that was not given."""


def validate_identifier(field_name: str, value: str) -> str:
    """``value`` unless it holds one of the control characters of
    :data:`~mongo_job_scheduler._format.CONTROL_CHARACTERS` (an identifier is printed in
    terminals, logs and pages, where those would act rather than show)."""
    found = CONTROL_CHARACTERS.search(value)
    if found is not None:
        raise ValidationError(
            field_name,
            f"must not contain control characters (found {inert(found.group())} "
            f"at position {found.start()})",
        )
    return value


def validate_name(name: Any, field_name: str = "name") -> str:
    if not isinstance(name, str):
        raise ValidationError(field_name, f"expected a string, got {type(name).__name__}")
    if not name.strip():
        raise ValidationError(field_name, "must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(field_name, f"at most {MAX_NAME_LENGTH} characters, got {len(name)}")
    return validate_identifier(field_name, name)


def validate_bson_value(
    field_name: str, value: Any, *, plain: bool = False, levels: int = MAX_NESTING
) -> None:
    """Check that ``value`` can be stored in MongoDB: nested at most ``levels`` levels
    (:data:`~mongo_job_scheduler._limits.MAX_NESTING`), no ``$``-prefixed keys, no NaN or
    infinity, encodable, and under the 16 MB document limit. With ``plain``, also that it holds
    only :data:`PLAIN_TYPES` (a filter value: matched by equality, never as a pattern or code).
    The shape is checked before encoding, without recursion, so no input is too deep for the
    check itself."""
    _check_shape(field_name, value, plain=plain, levels=levels)
    try:
        encoded = bson.encode({"v": value})
    except (InvalidDocument, TypeError, OverflowError) as exc:
        raise ValidationError(field_name, f"cannot be stored in MongoDB: {exc}") from None
    if len(encoded) > MAX_BSON_SIZE - 64 * 1024:
        raise ValidationError(
            field_name, f"too large: {len(encoded)} bytes encoded, MongoDB allows 16 MB per job"
        )


def validate_job_document(document: Mapping[str, Any]) -> None:
    """Check that a whole job document can be stored (the values in it nest one level deeper
    than on their own)."""
    validate_bson_value("job", document, levels=MAX_NESTING + 1)


PLAIN_TYPES: tuple[type, ...] = (str, int, float, type(None), datetime, ObjectId, Decimal128, bytes)
"""The values a ``get_jobs`` data filter takes, besides lists and mappings of them: strings,
numbers (``bool``, ``int``, ``float``, ``Decimal128``), ``None``, datetimes, ObjectIds and
bytes. Compiled patterns, ``bson.Regex``, ``bson.Code`` (a ``str`` subclass),
``MinKey``/``MaxKey``, timestamps, DBRefs and every other BSON type are refused: each would
match by something else than equality, or is no value a job's data holds."""


def _check_shape(field_name: str, value: Any, *, plain: bool, levels: int) -> None:
    pending: list[tuple[Any, int]] = [(value, 0)]  # (a value, how many containers hold it)
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (Mapping, list, tuple)):
            if depth >= levels:
                raise ValidationError(field_name, f"nested more than {levels} levels deep")
            if isinstance(item, Mapping):
                for key in item:
                    if isinstance(key, str) and key.startswith("$"):
                        raise ValidationError(
                            field_name, f"keys must not start with '$' (got {key!r})"
                        )
                pending.extend((child, depth + 1) for child in item.values())
            else:
                pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValidationError(field_name, f"must not contain NaN or infinity (got {item!r})")
        elif plain and (isinstance(item, Code) or not isinstance(item, PLAIN_TYPES)):
            raise ValidationError(
                field_name,
                f"filters take plain values only (strings, numbers, booleans, None, datetimes, "
                f"ObjectIds, bytes, and lists or mappings of them), got {type(item).__name__}",
            )


def validate_priority(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10:
        raise ValidationError("priority", f"must be an integer from 1 to 10, got {value!r}")
    return value


def validate_concurrency(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError("concurrency", f"must be a positive integer, got {value!r}")
    if value > MAX_INT64:
        raise ValidationError("concurrency", f"at most {MAX_INT64} (64-bit), got {value!r}")
    return value


def validate_dedupe_key(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValidationError("dedupe_key", "must be a non-empty string")
    if len(value) > MAX_DEDUPE_KEY_LENGTH:
        raise ValidationError("dedupe_key", f"at most {MAX_DEDUPE_KEY_LENGTH} characters")
    return validate_identifier("dedupe_key", value)


def validate_dedupe_scope(value: Any) -> DedupeScope:
    if value not in ("active", "forever"):
        raise ValidationError("dedupe", f"must be 'active' or 'forever', got {value!r}")
    return value  # type: ignore[no-any-return]


def optional_duration_ms(field_name: str, value: Duration | None) -> int | None:
    if value is None:
        return None
    seconds = to_seconds(field_name, value)
    return max(1, round(seconds * 1000))


def parse_job_id(value: Any) -> ObjectId | str:
    """Accept an ``ObjectId`` or its 24-hex string (other strings are ids of the memory store
    or of the Node library's memory store)."""
    if isinstance(value, ObjectId):
        return value
    if isinstance(value, str):
        if len(value) == 24:
            try:
                return ObjectId(value)
            except InvalidId:
                pass
        raise ValidationError("job_id", f"not a valid job id (24 hex characters): {value!r}")
    raise ValidationError(
        "job_id", f"expected an ObjectId or its hex string, got {type(value).__name__}"
    )


def with_zone(repeat: Repeat, default_timezone: str | None) -> Repeat:
    """A cron schedule without a zone gets the producer's default zone, stored with the job, so
    every worker computes the same slots whatever its own default."""
    if repeat.cron is not None and repeat.timezone is None:
        return dataclasses.replace(repeat, timezone=default_timezone or "UTC")
    return repeat


@dataclass
class NewJob:
    """A validated request to create one job: its document and how to dedupe it."""

    document: dict[str, Any]
    dedupe_key: str | None = None
    dedupe_scope: DedupeScope = "active"
    depends_on: list[ObjectId] = field(default_factory=list)
    """The jobs it waits for (validated against the store before anything is written)."""

    @property
    def id(self) -> ObjectId:
        return self.document["_id"]  # type: ignore[no-any-return]


def build_new_job(
    name: Any,
    data: Any = None,
    *,
    now: datetime,
    default_timezone: str | None = None,
    run_at: Any = None,
    delay: Any = None,
    repeat: Any = None,
    retry: Any = None,
    dedupe_key: Any = None,
    dedupe: Any = "active",
    dedupe_window: Any = None,
    priority: Any = 5,
    concurrency: Any = None,
    max_execution: Any = None,
    timeout: Any = None,
    rate_limit: Any = None,
    depends_on: Any = None,
    run_on_failure: Any = False,
) -> NewJob:
    """Validate ``schedule()`` arguments and build the stored document. Raises
    :class:`ValidationError` naming the first bad field; nothing is written by this function.
    With ``depends_on`` the job is stored ``waiting`` (the caller checks the dependencies)."""
    validate_name(name)
    validate_bson_value("data", data)
    repeat_obj = None if repeat is None else with_zone(Repeat.parse(repeat), default_timezone)
    retry_obj = None if retry is None else Retry.parse(retry)
    priority = validate_priority(priority)
    concurrency = validate_concurrency(concurrency)
    dedupe_key = validate_dedupe_key(dedupe_key)
    scope = validate_dedupe_scope(dedupe)
    window_ms = optional_duration_ms("dedupe_window", dedupe_window)
    if window_ms is not None and dedupe_key is None:
        raise ValidationError("dedupe_window", "needs a dedupe_key")
    if window_ms is not None and scope == "forever":
        raise ValidationError("dedupe_window", "has no meaning with dedupe='forever'")
    rate = None if rate_limit is None else RateLimit.parse(rate_limit)
    dependencies = validate_depends_on(depends_on)
    if not isinstance(run_on_failure, bool):
        raise ValidationError("run_on_failure", "expected True or False")
    if run_on_failure and not dependencies:
        raise ValidationError("run_on_failure", "needs depends_on")
    if dependencies and repeat_obj is not None:
        raise ValidationError("depends_on", "a repeating job cannot wait for other jobs")
    max_execution_ms = optional_duration_ms("max_execution", max_execution)
    timeout_ms = optional_duration_ms("timeout", timeout)
    if run_at is not None and delay is not None:
        raise ValidationError("run_at", "give run_at or delay, not both")
    if run_at is not None:
        due = to_utc("run_at", run_at)
    elif delay is not None:
        due = now + timedelta(seconds=to_seconds("delay", delay, allow_zero=True))
    elif repeat_obj is not None:
        due = repeat_obj.first_slot(now, default_timezone)
    else:
        due = now
    doc: dict[str, Any] = {
        "_id": ObjectId(),
        "name": name,
        "data": data,
        "status": JobStatus.PENDING.value,
        "attempts": 0,
        "priority": priority,
        "nextRunAt": due,
        "lockVersion": 0,
        "createdAt": now,
        "updatedAt": now,
    }
    if repeat_obj is not None:
        doc["repeat"] = repeat_obj.to_document()
        doc["lastScheduledAt"] = due
    if retry_obj is not None:
        doc["retry"] = retry_obj.to_document()
    if dedupe_key is not None:
        doc["dedupeKey"] = dedupe_key
        if scope != "active":
            doc["dedupeScope"] = scope
        if window_ms is not None:
            doc["dedupeWindowMs"] = window_ms
    if concurrency is not None:
        doc["concurrency"] = concurrency
    if max_execution_ms is not None:
        doc["maxExecutionMs"] = max_execution_ms
    if timeout_ms is not None:
        doc["timeoutMs"] = timeout_ms
    if rate is not None:
        doc["rateLimit"] = rate.to_document()
    if dependencies:
        doc["status"] = JobStatus.WAITING.value
        doc["dependsOn"] = dependencies
        if run_on_failure:
            doc["runOnFailure"] = True
    validate_job_document(doc)
    return NewJob(doc, dedupe_key, scope, dependencies)


def validate_depends_on(value: Any) -> list[ObjectId]:
    """``depends_on``: jobs (or their ids), duplicates dropped, in the order given."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise ValidationError("depends_on", "expected a list of jobs or job ids")
    ids: list[ObjectId] = []
    for index, item in enumerate(value):
        raw = getattr(item, "id", item)
        try:
            parsed = parse_job_id(raw)
        except ValidationError as exc:
            raise ValidationError(f"depends_on[{index}]", exc.reason) from None
        if not isinstance(parsed, ObjectId):
            raise ValidationError(f"depends_on[{index}]", f"not a job id: {raw!r}")
        if parsed not in ids:
            ids.append(parsed)
    if len(ids) > MAX_DEPENDENCIES:
        raise ValidationError("depends_on", f"at most {MAX_DEPENDENCIES} jobs, got {len(ids)}")
    return ids


_BULK_KEYS = {
    "depends_on",
    "run_on_failure",
    "name",
    "data",
    "run_at",
    "delay",
    "repeat",
    "retry",
    "dedupe_key",
    "dedupe",
    "dedupe_window",
    "priority",
    "concurrency",
    "max_execution",
    "timeout",
    "rate_limit",
}


def build_bulk(items: Any, *, now: datetime, default_timezone: str | None = None) -> list[NewJob]:
    """Validate every item of ``schedule_bulk`` before anything is written."""
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
        raise ValidationError("items", "expected a list of mappings")
    out: list[NewJob] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValidationError(f"items[{index}]", "expected a mapping")
        unknown = set(item) - _BULK_KEYS
        if unknown:
            raise ValidationError(f"items[{index}]", f"unknown key(s) {sorted(map(str, unknown))}")
        if "name" not in item:
            raise ValidationError(f"items[{index}].name", "is required")
        try:
            out.append(build_new_job(now=now, default_timezone=default_timezone, **item))
        except ValidationError as exc:
            raise ValidationError(f"items[{index}].{exc.field}", exc.reason) from None
    return out


@dataclass
class JobQuery:
    """A validated ``get_jobs`` query (values only: no operators can be injected)."""

    name: str | None = None
    statuses: list[str] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    sort_field: str = "createdAt"
    sort_direction: int = 1
    limit: int = DEFAULT_LIMIT
    skip: int = 0
    ids: list[ObjectId] | None = None
    fields: tuple[str, ...] | None = None
    """Top-level stored fields to read (``_id`` always); ``None``: whole documents."""
    max_value_size: int | None = None
    """With ``fields``: a field whose value takes more BSON bytes than this is left out."""

    def project(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """``document`` as the projection of :attr:`fields` and :attr:`max_value_size` reads
        it (the MongoDB stores ask the server for the same)."""
        if self.fields is None:
            return dict(document)
        projected = {"_id": document["_id"]}
        for name in self.fields:
            if name not in document:
                continue
            value = document[name]
            limit = self.max_value_size
            if limit is None or len(bson.encode({"v": value})) <= limit:
                projected[name] = value
        return projected

    def order(self) -> list[tuple[str, int]]:
        """The sort keys: the requested field, its ties (:data:`SORT_TIES`), then ``_id``
        (stable pages), all in the requested direction."""
        keys = dict.fromkeys([self.sort_field, *SORT_TIES.get(self.sort_field, ()), "_id"])
        return [(key, self.sort_direction) for key in keys]

    def to_filter(self) -> dict[str, Any]:
        """The MongoDB filter (equality and ``$in`` on plain values only)."""
        flt: dict[str, Any] = {}
        if self.ids is not None:
            flt["_id"] = {"$in": self.ids}
        if self.name is not None:
            flt["name"] = self.name
        if self.statuses is not None:
            flt["status"] = self.statuses[0] if len(self.statuses) == 1 else {"$in": self.statuses}
        for key, value in self.data.items():
            flt[f"data.{key}"] = value
        return flt


def build_query(
    *,
    name: Any = None,
    status: Any = None,
    data: Any = None,
    sort: Any = None,
    limit: Any = None,
    skip: Any = 0,
    ids: Any = None,
    fields: Any = None,
    max_value_size: Any = None,
) -> JobQuery:
    """Validate ``get_jobs`` arguments. ``$``-prefixed keys and operator objects are rejected."""
    query = JobQuery()
    query.fields, query.max_value_size = _projection(fields, max_value_size)
    if ids is not None:
        try:
            query.ids = validate_depends_on(ids)
        except ValidationError as exc:
            raise ValidationError(exc.field.replace("depends_on", "ids"), exc.reason) from None
    if limit is None:
        limit = DEFAULT_LIMIT if query.ids is None else max(1, min(len(query.ids), MAX_LIMIT))
    if name is not None:
        query.name = validate_name(name)
    if status is not None:
        values = [status] if isinstance(status, (str, JobStatus)) else status
        if not isinstance(values, (list, tuple, set, frozenset)) or not values:
            raise ValidationError("status", "expected a status or a non-empty list of statuses")
        statuses = []
        for value in values:
            try:
                statuses.append(JobStatus(value).value)
            except ValueError:
                raise ValidationError(
                    "status", f"unknown status {value!r}; one of {[s.value for s in JobStatus]}"
                ) from None
        query.statuses = sorted(set(statuses))
    if data is not None:
        if not isinstance(data, Mapping):
            raise ValidationError("data", "expected a mapping of data keys to values")
        for key, value in data.items():
            if not isinstance(key, str) or not key or key.startswith("$") or "\x00" in key:
                raise ValidationError("data", f"invalid data key {key!r}")
            parts = key.split(".")
            if len(parts) > MAX_FILTER_KEY_PARTS:
                raise ValidationError(
                    "data", f"a data key has more than {MAX_FILTER_KEY_PARTS} parts ({len(parts)})"
                )
            if len(key) > MAX_FILTER_KEY_LENGTH:
                raise ValidationError(
                    "data", f"a data key has more than {MAX_FILTER_KEY_LENGTH} characters"
                )
            if any(not part or part.startswith("$") for part in parts):
                raise ValidationError("data", f"invalid data key {key!r}")
            if isinstance(value, Mapping) and any(str(k).startswith("$") for k in value):
                raise ValidationError("data", f"operators are not allowed (key {key!r})")
            validate_bson_value(f"data.{key}", value, plain=True)
        query.data = dict(data)
    if sort is not None:
        if isinstance(sort, str):
            sort = (sort, "asc")
        if not isinstance(sort, (tuple, list)) or len(sort) != 2:
            raise ValidationError("sort", "expected (field, 'asc' | 'desc')")
        sort_field, direction = sort
        if sort_field not in SORT_FIELDS:
            raise ValidationError(
                "sort", f"cannot sort on {sort_field!r}; one of {sorted(SORT_FIELDS)}"
            )
        if direction not in ("asc", "desc"):
            raise ValidationError("sort", f"direction must be 'asc' or 'desc', got {direction!r}")
        query.sort_field = sort_field
        query.sort_direction = 1 if direction == "asc" else -1
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError("limit", f"must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    if isinstance(skip, bool) or not isinstance(skip, int) or skip < 0:
        raise ValidationError("skip", f"must be an integer >= 0, got {skip!r}")
    if skip > MAX_INT64:
        raise ValidationError("skip", f"at most {MAX_INT64} (64-bit), got {skip!r}")
    query.limit = limit
    query.skip = skip
    return query


def _projection(fields: Any, max_value_size: Any) -> tuple[tuple[str, ...] | None, int | None]:
    """Validate ``get_jobs``' ``fields`` and ``max_value_size``."""
    if fields is not None:
        if isinstance(fields, (str, bytes, Mapping)) or not isinstance(fields, Sequence):
            raise ValidationError("fields", "expected a list of top-level field names")
        if not 1 <= len(fields) <= MAX_FIELDS:
            raise ValidationError("fields", f"name 1 to {MAX_FIELDS} fields, got {len(fields)}")
        for name in fields:
            if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
                raise ValidationError(
                    "fields", f"expected top-level field names such as 'data', got {name!r}"
                )
        fields = tuple(dict.fromkeys(fields))
    if max_value_size is None:
        return fields, None
    if fields is None:
        raise ValidationError("max_value_size", "needs fields")
    if (
        isinstance(max_value_size, bool)
        or not isinstance(max_value_size, int)
        or not 1 <= max_value_size <= MAX_BSON_SIZE
    ):
        raise ValidationError(
            "max_value_size", f"must be a number of bytes from 1 to {MAX_BSON_SIZE}"
        )
    return fields, max_value_size


@dataclass
class JobChanges:
    """A validated ``update_job`` request: fields to set and to unset."""

    set: dict[str, Any] = field(default_factory=dict)
    unset: list[str] = field(default_factory=list)
    reschedules: bool = False
    """``run_at`` was given: the job gets a new due time (and a finished job runs again)."""
    repeat_first_slot: datetime | None = None
    """The new schedule's first slot, applied to a pending job when ``run_at`` is not given."""


def build_changes(
    *,
    now: datetime,
    default_timezone: str | None,
    data: Any = UNSET,
    run_at: Any = UNSET,
    repeat: Any = UNSET,
    retry: Any = UNSET,
    priority: Any = UNSET,
    concurrency: Any = UNSET,
    max_execution: Any = UNSET,
    timeout: Any = UNSET,
) -> JobChanges:
    """Validate ``update_job`` arguments. ``None`` clears an optional field."""
    changes = JobChanges()
    if data is not UNSET:
        validate_bson_value("data", data)
        changes.set["data"] = data
    if priority is not UNSET:
        changes.set["priority"] = validate_priority(priority)
    if concurrency is not UNSET:
        if concurrency is None:
            changes.unset.append("concurrency")
        else:
            changes.set["concurrency"] = validate_concurrency(concurrency)
    if retry is not UNSET:
        if retry is None:
            changes.unset.append("retry")
        else:
            changes.set["retry"] = Retry.parse(retry).to_document()
    for field_name, key, value in (
        ("max_execution", "maxExecutionMs", max_execution),
        ("timeout", "timeoutMs", timeout),
    ):
        if value is not UNSET:
            if value is None:
                changes.unset.append(key)
            else:
                changes.set[key] = optional_duration_ms(field_name, value)
    repeat_obj: Repeat | None = None
    if repeat is not UNSET:
        if repeat is None:
            changes.unset += ["repeat", "lastScheduledAt"]
        else:
            repeat_obj = with_zone(Repeat.parse(repeat), default_timezone)
            changes.set["repeat"] = repeat_obj.to_document()
    if run_at is not UNSET:
        if run_at is None:
            raise ValidationError("run_at", "must be a datetime")
        due = to_utc("run_at", run_at)
        changes.set["nextRunAt"] = due
        changes.reschedules = True
        if repeat_obj is not None:
            changes.set["lastScheduledAt"] = due
    elif repeat_obj is not None:
        changes.repeat_first_slot = repeat_obj.first_slot(now, default_timezone)
    if not changes.set and not changes.unset:
        raise ValidationError("update_job", "nothing to update")
    return changes
