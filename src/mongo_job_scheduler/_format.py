"""Display formatting of stored values, shared by the command line and the dashboard.

Two JSON renderings of a job document: :func:`to_json` for the command line (instants as
``2024-05-01T12:00:00.000Z``, bytes as hex, non-finite floats as strings) and
:func:`pretty_json` / :func:`compact_json` for the dashboard (instants with microseconds and a
``+00:00`` offset, bytes as ``{"$binary": base64}``). Date/times are shown in UTC, a naive one
being taken as UTC already. The dashboard escapes everything it shows later.

Text from the database shown on a terminal or in a log goes through :func:`inert` (every
control character written as a visible escape), and :func:`to_json` escapes the same characters
inside JSON strings.

Also the one rule for the other direction, a value an operator types for a data filter
(:func:`parse_data_value`).
"""

from __future__ import annotations

import base64
import enum
import json
import math
import re
import uuid
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any

from bson import ObjectId

from ._errors import ValidationError
from ._limits import MAX_NESTING

__all__ = [
    "CONTROL_CHARACTERS",
    "as_utc",
    "compact_json",
    "document_for_display",
    "fmt_ago",
    "fmt_compact_duration",
    "fmt_datetime",
    "fmt_duration",
    "fmt_iso",
    "fmt_line",
    "fmt_when",
    "inert",
    "parse_data_value",
    "pretty_json",
    "pretty_json_preview",
    "shorten",
    "to_json",
    "to_plain",
]


# -- text ---------------------------------------------------------------------------------------

_CONTROLS = "\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
CONTROL_CHARACTERS = re.compile(f"[{_CONTROLS}]")
"""Characters that steer a terminal or hide text rather than show it: C0 controls (``ESC``,
``BEL``, newlines, ...), ``DEL``, C1 controls (the 8-bit ``CSI`` among them), the line and
paragraph separators, and the bidirectional embeddings, overrides and isolates."""
_CONTROLS_BUT_LINES = re.compile(f"(?![\t\n])[{_CONTROLS}]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _SHORT_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def inert(text: object, *, lines: bool = False) -> str:
    """``text`` safe to print on a terminal or in a log line: each of
    :data:`CONTROL_CHARACTERS` written as a visible escape (``\\x1b``, ``\\n``, ``\\u202e``),
    so escape sequences show as text and cannot clear the screen, retitle the window or forge
    a line. With ``lines``, newlines and tabs are kept (a traceback stays readable)."""
    pattern = _CONTROLS_BUT_LINES if lines else CONTROL_CHARACTERS
    return pattern.sub(_visible, str(text))


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, the last of them ``…`` when it was cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def fmt_line(text: str | None, width: int) -> str:
    """``text`` on one line (each run of whitespace one space), :func:`inert`, cut to
    ``width``; ``""`` for no text."""
    if not text:
        return ""
    return shorten(inert(" ".join(text.split())), width)


# -- date/times ---------------------------------------------------------------------------------


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (a naive one is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def fmt_iso(value: datetime) -> str:
    """ISO 8601 in UTC to the millisecond: ``2024-05-01T12:00:00.000Z``."""
    return as_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utc_seconds(value: datetime) -> str:
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S")


def fmt_when(value: datetime | None) -> str:
    """``2024-05-01 12:00:00`` (UTC), or ``-`` for no value (command-line tables)."""
    return "-" if value is None else _utc_seconds(value)


def fmt_datetime(value: Any) -> str:
    """``2024-05-01 12:00:00Z`` (UTC), or an em dash for no value (dashboard pages)."""
    return _utc_seconds(value) + "Z" if isinstance(value, datetime) else "—"


# -- durations ----------------------------------------------------------------------------------


def fmt_compact_duration(delta: timedelta | None) -> str:
    """``4.2s`` under a minute, else the two largest non-zero units: ``3m 5s``, ``2h``,
    ``1d 4h``; ``-`` for no value (command-line output)."""
    if delta is None:
        return "-"
    seconds = delta.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{int(seconds // size)}{unit}")
            seconds %= size
    return " ".join(parts[:2])


def fmt_ago(value: datetime | None, now: datetime) -> str:
    """How long before ``now`` ``value`` was, in its largest whole unit: ``12 s ago``,
    ``5 min ago``, ``3 h ago``, ``2 d ago``; ``-`` for no value (command-line tables)."""
    if value is None:
        return "-"
    seconds = max(0, int((as_utc(now) - as_utc(value)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def fmt_duration(value: timedelta | float | None) -> str:
    """A short human duration: ``850 ms``, ``4.2 s``, ``3 min 5 s``, ``2 h 10 min``, ``3 d 4 h``
    (dashboard pages)."""
    if value is None:
        return "—"
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds):
        return "—"
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


# -- JSON ---------------------------------------------------------------------------------------


def to_plain(value: Any) -> Any:
    """``value`` with every BSON type made JSON-able (non-finite floats become strings)."""
    if isinstance(value, Mapping):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted((to_plain(item) for item in value), key=str)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return fmt_iso(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return str(value)  # ObjectId, Decimal128, UUID, Regex, ...


def to_json(value: Any, *, indent: int | None = None) -> str:
    """``value`` as JSON: datetimes as ISO 8601 UTC, ObjectIds and other BSON types as strings.
    Every one of :data:`CONTROL_CHARACTERS` in a string is a ``\\u`` escape (the JSON decodes
    to the same text, and prints inert on a terminal)."""
    text = json.dumps(to_plain(value), indent=indent, ensure_ascii=False)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (ObjectId, uuid.UUID)):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$binary": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return str(value)


def pretty_json(value: Any) -> str:
    """Indented JSON of a stored value (datetimes ISO, ObjectIds as strings)."""
    return json.dumps(value, default=_json_default, indent=2, ensure_ascii=False)


def pretty_json_preview(value: Any, limit: int) -> tuple[str, bool]:
    """:func:`pretty_json` of ``value`` cut to ``limit`` characters, and whether it was cut;
    no more of ``value`` is encoded than the cut needs."""
    encoder = json.JSONEncoder(default=_json_default, indent=2, ensure_ascii=False)
    parts: list[str] = []
    length = 0
    for chunk in encoder.iterencode(value):
        parts.append(chunk)
        length += len(chunk)
        if length > limit:
            return "".join(parts)[:limit], True
    return "".join(parts), False


def compact_json(value: Any, limit: int | None = 80) -> str:
    """One-line JSON of ``value``, cut to ``limit`` characters (``None``: whole)."""
    if value is None:
        return ""
    text = json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))
    return text if limit is None else shorten(text, limit)


def document_for_display(document: Mapping[str, Any]) -> dict[str, Any]:
    """The stored document as a plain dict (``_id`` first)."""
    ordered: dict[str, Any] = {}
    if "_id" in document:
        ordered["_id"] = document["_id"]
    for key, value in document.items():
        if key != "_id":
            ordered[key] = value
    return ordered


# -- operator input -----------------------------------------------------------------------------


def parse_data_value(raw: str) -> Any:
    """A value typed for a data filter: the JSON value when ``raw`` parses as JSON (``3``,
    ``true``, ``"42"``, but not ``NaN`` or ``Infinity``), else ``raw`` itself as a string.
    JSON nested more than :data:`~mongo_job_scheduler._limits.MAX_NESTING` levels is refused
    (:class:`ValidationError` on ``data``) before it is parsed."""
    if _json_nesting(raw) > MAX_NESTING:
        raise ValidationError("data", f"nested more than {MAX_NESTING} levels deep")
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except ValueError:
        return raw


def _json_nesting(text: str) -> int:
    """How deep the arrays and objects of JSON ``text`` nest (brackets inside strings do not
    count), read in one pass without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")
