"""Guards in front of request handlers: a per-client throttle of failed tokens, and a cap on
request bodies. Each is a plain object a handler consults, so any app of the dashboard can put
the same one in front of its routes."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from starlette.requests import Request

__all__ = ["BodyTooLarge", "FailedTokens", "client_of", "read_body"]

FAILED_TOKEN_LIMIT = 10
"""Wrong tokens a client may send within :data:`FAILED_TOKEN_WINDOW` before it is refused."""
FAILED_TOKEN_WINDOW = 60.0
"""Seconds a wrong token counts against its client."""
REMEMBERED_CLIENTS = 10_000
"""Clients whose failures are remembered at once (the least recently failed is forgotten)."""


class FailedTokens:
    """Wrong tokens by client, in a sliding window: a client that sent ``limit`` of them within
    the last ``window`` seconds is refused (every request, right token or not, so guessing
    gains nothing) until the oldest of them is ``window`` seconds old."""

    def __init__(
        self,
        limit: int = FAILED_TOKEN_LIMIT,
        window: float = FAILED_TOKEN_WINDOW,
        *,
        clients: int = REMEMBERED_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clients = clients
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, client: str) -> float:
        """Seconds before ``client`` may be heard again; ``0`` when it may now."""
        failures = self._failures.get(client)
        if failures is None:
            return 0.0
        now = self._clock()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return 0.0
        if len(failures) < self.limit:
            return 0.0
        return failures[0] + self.window - now

    def failed(self, client: str) -> None:
        """Count a wrong token sent by ``client``."""
        failures = self._failures.pop(client, None)
        if failures is None:
            failures = deque(maxlen=self.limit)
            while len(self._failures) >= self._clients:
                self._failures.popitem(last=False)
        failures.append(self._clock())
        self._failures[client] = failures


def client_of(request: Request) -> str:
    """Who sent ``request``, for throttling: its peer address (the proxy's unless the server
    is told to trust forwarded headers, as uvicorn's ``--proxy-headers`` does)."""
    return request.client.host if request.client is not None else "unknown"


class BodyTooLarge(Exception):
    """A request body over its cap."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the request body is larger than {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The body of ``request``, read only while it stays within ``limit`` bytes
    (:class:`BodyTooLarge` as soon as the declared length or the bytes received exceed it)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
