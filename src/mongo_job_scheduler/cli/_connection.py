"""What every command shares: the group's options, the two kinds of errors (a usage error,
exit 2; an error the user can act on, exit 1), and the MongoDB connection with one-line error
messages (no topology dumps, no passwords)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote_plus

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
from pymongo.uri_parser import parse_uri

from .._errors import InvalidJobState, JobNotFound, ValidationError
from .._format import inert
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
    "open_store",
    "redact_secrets",
    "redact_uri",
    "require_uri",
    "run_with_scheduler",
    "uri_database",
    "usage_error",
]

DEFAULT_DATABASE = "mongo_job_scheduler_demo"
DEFAULT_COLLECTION = "scheduler_jobs"
DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 5_000

T = TypeVar("T")


class CliError(click.ClickException):
    """An error the user can act on: printed as one inert ``Error: ...`` line on stderr,
    exit 1."""

    def __init__(self, message: str) -> None:
        super().__init__(inert(redact_secrets(" ".join(message.split()))))


def usage_error(message: str, param: str | None = None) -> click.UsageError:
    """A usage error of the running command (exit 2, printed in click's usage format): a bad
    value of the option or argument whose Python name is ``param`` (looked up in the command
    and its parents), or a usage error in general when ``param`` is ``None`` or not found."""
    ctx = click.get_current_context(silent=True)
    message = inert(redact_secrets(" ".join(message.split())))
    context = ctx
    while param is not None and context is not None:
        for candidate in context.command.params:
            if candidate.name == param:
                return click.BadParameter(message, ctx=ctx, param=candidate)
        context = context.parent
    return click.UsageError(message, ctx=ctx)


def uri_database(uri: str) -> str | None:
    """The database named in the path of ``uri`` (``mongodb://host/app`` names ``app``), or
    ``None`` when it names none or does not parse. No DNS look-up, even for ``mongodb+srv``."""
    plain = "mongodb://" + uri[len("mongodb+srv://") :] if uri.startswith("mongodb+srv://") else uri
    try:
        database = parse_uri(plain, validate=False, warn=False)["database"]
    except (PyMongoError, ValueError, TypeError):
        return None
    return str(database) if database else None


@dataclass(frozen=True)
class CliOptions:
    """The group's options, handed to every command as the click context object. ``database``
    and ``collection`` are ``None`` when not given; :attr:`database_name` and
    :attr:`collection_name` are the ones used."""

    mongodb_uri: str | None
    database: str | None = None
    collection: str | None = None

    @property
    def database_name(self) -> str:
        """``--database`` if given, else the database named in the URI, else
        :data:`DEFAULT_DATABASE`."""
        if self.database is not None:
            return self.database
        named = uri_database(self.mongodb_uri) if self.mongodb_uri else None
        return named or DEFAULT_DATABASE

    @property
    def collection_name(self) -> str:
        """``--collection`` if given, else :data:`DEFAULT_COLLECTION`."""
        return DEFAULT_COLLECTION if self.collection is None else self.collection

    @property
    def where(self) -> str:
        """Which jobs the commands read: ``database 'app', collection 'scheduler_jobs'``."""
        return f"database {self.database_name!r}, collection {self.collection_name!r}"


SENSITIVE_OPTIONS = frozenset(
    {
        "authmechanismproperties",
        "tlscertificatekeyfilepassword",
        "proxyusername",
        "proxypassword",
        "sslpemkeypassword",
        "sslclientcertificatekeypassword",
    }
)
"""URI options (lower case) whose values are secrets: the ones PyMongo redacts in its own
representations, ``authMechanismProperties`` (it carries session tokens) and the older SSL
spellings of the key password. An option whose name holds ``password``, ``secret`` or
``token`` counts too."""

_OPTION = re.compile(r"([^&;=]*)=([^&;]*)")
_SECRET_DELIMITERS = re.compile(r"[:/@?#\[\]&;=,]")
_MIN_SECRET_PIECE = 3
_ANY_URI = re.compile(r"mongodb(?:\+srv)?://[^\s'\"<>]+", re.IGNORECASE)
_ANY_USERINFO = re.compile(r"(?<![\w.%+-])[\w.%+-]+:[^\s'\"@/]*@(?=[\w.\[])")


def _sensitive(option: str) -> bool:
    name = option.strip().lower()
    return name in SENSITIVE_OPTIONS or any(w in name for w in ("password", "secret", "token"))


def _split_uri(uri: str) -> tuple[str, str | None, str, str | None]:
    """``(scheme://, user information or None, hosts and path, options or None)``. The user
    information runs to the last ``@``: an unescaped ``/``, ``?`` or ``@`` in a password makes
    it longer, never shorter (an ``@`` in an option value hides the hosts too: safe)."""
    scheme, sep, rest = uri.partition("://")
    prefix = scheme + sep if sep else ""
    if not sep:
        rest = uri
    userinfo, at, rest_after = rest.rpartition("@")
    body, question, query = (rest_after if at else rest).partition("?")
    return prefix, userinfo if at else None, body, query if question else None


def redact_uri(uri: str) -> str:
    """``uri`` safe to print: its whole user information (user name and password) becomes
    ``***`` and so does the value of every sensitive option (:data:`SENSITIVE_OPTIONS`)."""
    prefix, userinfo, body, query = _split_uri(uri)
    shown = prefix + ("" if userinfo is None else "***@") + body
    if query is None:
        return shown
    redacted = _OPTION.sub(
        lambda m: f"{m.group(1)}=***" if _sensitive(m.group(1)) else m.group(0), query
    )
    return f"{shown}?{redacted}"


def _uri_secrets(uri: str) -> list[str]:
    """The secrets of ``uri`` as text could hold them: the user information, the sensitive
    options' values, each as written and percent-decoded, and their pieces between
    delimiters; longest first."""
    _prefix, userinfo, _body, query = _split_uri(uri)
    wholes = [] if userinfo is None else [userinfo]
    if query is not None:
        wholes += [m.group(2) for m in _OPTION.finditer(query) if _sensitive(m.group(1))]
    found: set[str] = set()
    for whole in wholes:
        for text in (whole, unquote_plus(whole)):
            found.add(text)
            found.update(_SECRET_DELIMITERS.split(text))
            found.update(unquote_plus(piece) for piece in _SECRET_DELIMITERS.split(whole))
    return sorted((s for s in found if len(s) >= _MIN_SECRET_PIECE), key=len, reverse=True)


def redact_secrets(text: str, uri: str | None = None) -> str:
    """``text`` (a driver's error, a log line) safe to print: every MongoDB URI in it passed
    through :func:`redact_uri`, every ``user:password@`` before a host made ``***@``, and, when
    ``uri`` is given, every secret of ``uri`` (or a piece of one at least three characters
    long) replaced by ``***``."""
    text = _ANY_URI.sub(lambda m: redact_uri(m.group()), text)
    text = _ANY_USERINFO.sub("***@", text)
    for secret in _uri_secrets(uri) if uri else ():
        text = text.replace(secret, "***")
    return text


def _one_line(exc: BaseException, uri: str | None) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return redact_secrets(text, uri)


def mongo_error_message(exc: BaseException, uri: str | None = None) -> str:
    """A one-line, human explanation of a PyMongo error (no topology dumps, no secret of
    ``uri``: see :func:`redact_secrets`)."""
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


def _client(uri: str, server_selection_timeout_ms: int) -> AsyncMongoClient[dict[str, Any]]:
    """A client on ``uri`` (no I/O with the server yet); a usage error on ``--mongodb-uri`` if
    it does not parse or names a file that cannot be read."""
    options: dict[str, Any] = {}
    if "serverselectiontimeoutms" not in uri.lower():
        options["serverSelectionTimeoutMS"] = server_selection_timeout_ms
    try:
        return AsyncMongoClient(uri, **options)
    except (PyMongoError, ValueError, TypeError, OSError) as exc:
        message = f"unusable MongoDB URI {redact_uri(uri)!r}: {_one_line(exc, uri)}"
        raise usage_error(message, "mongodb_uri") from None


async def _ping(client: AsyncMongoClient[dict[str, Any]], uri: str) -> None:
    """Check that the server answers; :class:`CliError` (and the client closed) if not."""
    try:
        await client.admin.command("ping")
    except PyMongoError as exc:
        await client.close()
        raise CliError(mongo_error_message(exc, uri)) from None


async def connect(
    uri: str, *, server_selection_timeout_ms: int = DEFAULT_SERVER_SELECTION_TIMEOUT_MS
) -> AsyncMongoClient[dict[str, Any]]:
    """Open a client on ``uri`` and check that the server answers: a usage error if the URI
    does not parse, :class:`CliError` if the server cannot be reached. A
    ``serverSelectionTimeoutMS`` in the URI wins over ``server_selection_timeout_ms``."""
    client = _client(uri, server_selection_timeout_ms)
    await _ping(client, uri)
    return client


def require_uri(options: CliOptions, missing: str | None = None) -> str:
    """The ``--mongodb-uri`` / ``$MONGODB_URI`` of ``options``; a usage error (with the
    message ``missing`` if given) without one."""
    if not options.mongodb_uri:
        raise usage_error(
            missing or "no MongoDB server given: pass --mongodb-uri or set MONGODB_URI"
        )
    return options.mongodb_uri


async def open_store(
    options: CliOptions, missing: str | None = None
) -> tuple[AsyncMongoClient[dict[str, Any]], MongoJobStore]:
    """A client on the options' server and a :class:`MongoJobStore` on their database and
    collection. Usage errors (no URI, one that does not parse, an invalid database or
    collection name) come before any connection; :class:`CliError` if the server does not
    answer. The caller closes the client."""
    uri = require_uri(options, missing)
    client = _client(uri, DEFAULT_SERVER_SELECTION_TIMEOUT_MS)
    try:
        database = client[options.database_name]
    except InvalidName as exc:
        await client.close()
        raise usage_error(_one_line(exc, uri), "database") from None
    try:
        store = MongoJobStore(database, options.collection_name)
    except (InvalidName, ValidationError) as exc:
        await client.close()
        reason = exc.reason if isinstance(exc, ValidationError) else _one_line(exc, uri)
        raise usage_error(reason, "collection") from None
    await _ping(client, uri)
    return client, store


def run_with_scheduler(options: CliOptions, action: Callable[[Scheduler], Awaitable[T]]) -> T:
    """Connect to the configured collection, run ``action`` on a worker-less scheduler, and turn
    every expected failure into a one-line :class:`CliError`."""

    async def run() -> T:
        client, store = await open_store(options)
        try:
            return await action(Scheduler(store))
        except JobNotFound as exc:
            raise CliError(f"{exc} in {options.where}") from None
        except (ValidationError, InvalidJobState) as exc:
            raise CliError(str(exc)) from None
        except PyMongoError as exc:
            raise CliError(mongo_error_message(exc, options.mongodb_uri)) from None
        finally:
            await client.close()

    return asyncio.run(run())
