"""What every command shares: the group's options, user-fixable errors, and the MongoDB
connection with one-line error messages (no topology dumps, no passwords)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from pymongo import AsyncMongoClient
from pymongo.errors import (
    ConfigurationError as PyMongoConfigurationError,
)
from pymongo.errors import (
    InvalidName,
    InvalidURI,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from .._errors import InvalidJobState, JobNotFound, ValidationError
from ..scheduler import Scheduler
from ..stores import MongoJobStore

__all__ = [
    "DEFAULT_COLLECTION",
    "DEFAULT_DATABASE",
    "DEFAULT_SERVER_SELECTION_TIMEOUT_MS",
    "CliError",
    "CliOptions",
    "connect",
    "mongo_error_message",
    "redact_uri",
    "require_uri",
    "run_with_scheduler",
]

DEFAULT_DATABASE = "mongo_job_scheduler_demo"
DEFAULT_COLLECTION = "scheduler_jobs"
DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 5_000

T = TypeVar("T")


class CliError(click.ClickException):
    """An error the user can act on: printed as one ``Error: ...`` line on stderr, exit 1."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


@dataclass(frozen=True)
class CliOptions:
    """The group's options, handed to every command as the click context object."""

    mongodb_uri: str | None
    database: str
    collection: str = "scheduler_jobs"


def redact_uri(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (safe to print)."""
    return re.sub(r"(?<=://)([^:@/]*):[^@/]*@", r"\1:***@", uri)


def _password(uri: str) -> str | None:
    match = re.search(r"://[^:@/]*:([^@/]*)@", uri)
    return match.group(1) if match and match.group(1) else None


def _one_line(exc: BaseException, uri: str | None) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    secret = _password(uri) if uri else None
    return text.replace(secret, "***") if secret else text


def mongo_error_message(exc: BaseException, uri: str | None = None) -> str:
    """A one-line, human explanation of a PyMongo error (no topology dumps, no password)."""
    where = f" at {redact_uri(uri)}" if uri else ""
    text = _one_line(exc, uri)
    if isinstance(exc, InvalidURI):
        return f"invalid MongoDB URI: {text}"
    if isinstance(exc, InvalidName):
        return f"invalid database name: {text}"
    if isinstance(exc, ServerSelectionTimeoutError):
        text = text.split(", Timeout:")[0]
        text = re.sub(r"\s*\(configured timeouts:[^)]*\)", "", text)
        return f"cannot connect to MongoDB{where}: {text}"
    if isinstance(exc, PyMongoConfigurationError):
        return f"invalid MongoDB configuration{where}: {text}"
    if isinstance(exc, OperationFailure):
        return f"MongoDB refused the operation{where}: {text}"
    return f"MongoDB error{where}: {text}"


async def connect(
    uri: str, *, server_selection_timeout_ms: int = DEFAULT_SERVER_SELECTION_TIMEOUT_MS
) -> AsyncMongoClient[dict[str, Any]]:
    """Open a client on ``uri`` and check that the server answers; raise :class:`CliError` if
    the URI is invalid or the server cannot be reached. A ``serverSelectionTimeoutMS`` in the
    URI wins over ``server_selection_timeout_ms``."""
    options: dict[str, Any] = {}
    if "serverselectiontimeoutms" not in uri.lower():
        options["serverSelectionTimeoutMS"] = server_selection_timeout_ms
    try:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, **options)
    except (PyMongoError, ValueError, TypeError) as exc:
        raise CliError(f"invalid MongoDB URI {redact_uri(uri)!r}: {_one_line(exc, uri)}") from None
    try:
        await client.admin.command("ping")
    except PyMongoError as exc:
        await client.close()
        raise CliError(mongo_error_message(exc, uri)) from None
    return client


def require_uri(options: CliOptions) -> str:
    """The ``--mongodb-uri`` / ``$MONGODB_URI`` of ``options``; :class:`CliError` without one."""
    if not options.mongodb_uri:
        raise CliError("no MongoDB server given: pass --mongodb-uri or set MONGODB_URI")
    return options.mongodb_uri


def run_with_scheduler(options: CliOptions, action: Callable[[Scheduler], Awaitable[T]]) -> T:
    """Connect to the configured collection, run ``action`` on a worker-less scheduler, and turn
    every expected failure into a one-line :class:`CliError`."""
    uri = require_uri(options)

    async def run() -> T:
        client = await connect(uri)
        try:
            try:
                store = MongoJobStore(client[options.database], options.collection)
            except (InvalidName, ValidationError) as exc:
                raise CliError(mongo_error_message(exc, uri)) from None
            return await action(Scheduler(store))
        except (ValidationError, JobNotFound, InvalidJobState) as exc:
            raise CliError(str(exc)) from None
        except PyMongoError as exc:
            raise CliError(mongo_error_message(exc, uri)) from None
        finally:
            await client.close()

    return asyncio.run(run())
