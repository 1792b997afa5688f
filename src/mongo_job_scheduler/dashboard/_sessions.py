"""Revoked browser sessions, shared by every dashboard process on one database.

A session cookie is signed and self-contained (see ``_auth``); signing out records the
session's id (an HMAC of its nonce, so the stored ids do not sign anything) until the moment the
cookie expires anyway. With a :class:`~mongo_job_scheduler.MongoJobStore` the record is a
document of the collection ``<collection>_sessions`` beside the jobs, ``{_id: session id,
expireAt}``, deleted by a TTL index once the session has expired. Every request with a session
cookie reads it by ``_id`` (revocations already seen are remembered locally), so a signed-out
session is refused at once by every dashboard process of that database. Other stores keep the
revocations in this process's memory.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Protocol

from .._format import as_utc
from ..stores import MongoJobStore

__all__ = ["MemoryRevocations", "MongoRevocations", "Revocations", "revocations_for"]

SESSIONS_SUFFIX = "_sessions"
REMEMBERED = 10_000
"""How many revoked sessions a process remembers without asking the database again."""


class Revocations(Protocol):
    """Where signed-out sessions are recorded until they expire."""

    async def revoke(self, session_id: str, expires: int) -> None:
        """Record that ``session_id`` (valid until the Unix time ``expires``) is signed out."""

    async def is_revoked(self, session_id: str) -> bool:
        """Whether ``session_id`` was signed out."""


class MemoryRevocations:
    """Revocations in this process only: the whole record of a dashboard over an in-memory
    store, or with ``limit`` a bounded memory of revocations already read (the oldest is
    forgotten first; expired ones go at each revocation)."""

    def __init__(self, limit: int | None = None) -> None:
        self._revoked: dict[str, int] = {}
        self._limit = limit

    async def revoke(self, session_id: str, expires: int) -> None:
        now = time.time()
        for expired in [s for s, until in self._revoked.items() if until < now]:
            del self._revoked[expired]
        if self._limit is not None and len(self._revoked) >= self._limit:
            del self._revoked[next(iter(self._revoked))]
        self._revoked[session_id] = expires

    async def is_revoked(self, session_id: str) -> bool:
        return session_id in self._revoked


class MongoRevocations:
    """Revocations in a MongoDB collection (``_id`` = the session id, a TTL index on
    ``expireAt``), read at every check; those found are remembered (at most
    :data:`REMEMBERED`)."""

    def __init__(self, collection: Any) -> None:
        self.collection = collection
        self._indexed = False
        self._seen = MemoryRevocations(limit=REMEMBERED)

    async def revoke(self, session_id: str, expires: int) -> None:
        if not self._indexed:
            await self.collection.create_index("expireAt", name="expire", expireAfterSeconds=0)
            self._indexed = True
        expire_at = datetime.fromtimestamp(expires, timezone.utc)
        await self.collection.update_one(
            {"_id": session_id}, {"$set": {"expireAt": expire_at}}, upsert=True
        )
        await self._seen.revoke(session_id, expires)

    async def is_revoked(self, session_id: str) -> bool:
        if await self._seen.is_revoked(session_id):
            return True
        found = await self.collection.find_one({"_id": session_id}, {"expireAt": 1})
        if found is None:
            return False
        expire_at = found.get("expireAt")
        expires = int(as_utc(expire_at).timestamp()) if isinstance(expire_at, datetime) else 0
        await self._seen.revoke(session_id, expires)
        return True


def revocations_for(store: Any) -> Revocations:
    """The revocations of a dashboard over ``store``: in ``<collection>_sessions`` of a
    :class:`MongoJobStore`'s database, else in memory."""
    if isinstance(store, MongoJobStore):
        return MongoRevocations(store.database[store.collection_name + SESSIONS_SUFFIX])
    return MemoryRevocations()
