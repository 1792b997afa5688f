"""Token check, signed session cookies and CSRF tokens for the dashboard.

Session cookies are signed, not stored: the cookie holds a random nonce and an expiry, signed
with a key derived from the dashboard token, so every dashboard process started with the same
token accepts it and changing the token logs every browser out. Signing out records the
session's id (a third HMAC of the nonce) as revoked (``_sessions``). The CSRF token of a session
is a second HMAC of its nonce (a synchronizer token nobody can compute without the key).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from .._errors import ConfigurationError

__all__ = ["MIN_TOKEN_LENGTH", "Session", "Signer", "check_token"]

SESSION_COOKIE = "mjs_session"
FLASH_COOKIE = "mjs_flash"
MIN_TOKEN_LENGTH = 16
"""The shortest token the dashboard accepts, in characters."""


def check_token(token: object) -> str:
    """``token`` if the dashboard can be served with it: a string of at least
    :data:`MIN_TOKEN_LENGTH` characters besides blanks around it; else :class:`ConfigurationError`
    (``token``) with a freshly generated one to use instead."""
    if not isinstance(token, str) or not token.strip():
        raise ConfigurationError("token", "the dashboard needs a non-empty token")
    length = len(token.strip())
    if length < MIN_TOKEN_LENGTH:
        raise ConfigurationError(
            "token",
            f"must be at least {MIN_TOKEN_LENGTH} characters (blanks around it do not count), "
            f"got {length}; use a long random one, for example {secrets.token_urlsafe(32)}",
        )
    return token


@dataclass(frozen=True)
class Session:
    """Who is calling: a browser session (``csrf`` is its CSRF token, ``id`` what a sign-out
    revokes, ``expires`` its Unix expiry) or a Bearer client."""

    bearer: bool
    csrf: str | None = None
    id: str | None = None
    expires: int = 0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Checks the token and signs/verifies session, CSRF and flash values with a key derived
    from it."""

    def __init__(self, token: str, session_max_age: int) -> None:
        self._token = token.encode("utf-8")
        self._key = hmac.new(
            self._token, b"mongo-job-scheduler dashboard session key v1", hashlib.sha256
        ).digest()
        self.session_max_age = session_max_age

    def token_matches(self, candidate: str | None) -> bool:
        """Whether ``candidate`` is the dashboard token (constant-time comparison)."""
        if not candidate:
            return False
        # Compare digests so that neither the content nor the length of the token leaks.
        given = hashlib.sha256(candidate.encode("utf-8")).digest()
        return hmac.compare_digest(given, hashlib.sha256(self._token).digest())

    def _mac(self, purpose: str, payload: str) -> str:
        message = f"{purpose}\x00{payload}".encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def sign(self, purpose: str, payload: str) -> str:
        """``payload`` with a signature bound to ``purpose`` (not encrypted)."""
        return f"{_b64(payload.encode('utf-8'))}.{self._mac(purpose, payload)}"

    def unsign(self, purpose: str, value: str | None) -> str | None:
        """The payload of a value made by :meth:`sign` for ``purpose``, or ``None``."""
        if not value or "." not in value:
            return None
        encoded, mac = value.rsplit(".", 1)
        try:
            payload = _unb64(encoded).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(
            mac.encode("ascii", "replace"), self._mac(purpose, payload).encode()
        ):
            return None
        return payload

    # -- sessions ---------------------------------------------------------------------------

    def new_session(self) -> str:
        """A fresh session cookie value."""
        expires = int(time.time()) + self.session_max_age
        return self.sign("session", f"{secrets.token_urlsafe(24)}:{expires}")

    def session(self, cookie: str | None) -> Session | None:
        """The session of a valid, unexpired cookie, else ``None``."""
        payload = self.unsign("session", cookie)
        if payload is None:
            return None
        nonce, _, expires = payload.rpartition(":")
        try:
            until = int(expires)
        except ValueError:
            return None
        if not nonce or until < time.time():
            return None
        return Session(
            bearer=False,
            csrf=self._mac("csrf", nonce),
            id=self._mac("session-id", nonce),
            expires=until,
        )

    @staticmethod
    def csrf_matches(session: Session, candidate: str | None) -> bool:
        """Whether ``candidate`` is the CSRF token of this browser session."""
        if session.csrf is None or not candidate:
            return False
        return hmac.compare_digest(candidate.encode("utf-8"), session.csrf.encode("utf-8"))
