"""The cap on request bodies, as an ASGI middleware any app of the dashboard puts in front of
its routes: the pages (16 KiB) and the HTTP API (its ``max_body_bytes``), each answering a
larger body with its own 413."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit", "HttpMiddleware"]


class HttpMiddleware:
    """An ASGI middleware that acts on HTTP requests (:meth:`http`) and passes anything else
    through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class BodyLimit(HttpMiddleware):
    """Reads a request's body, up to ``limit`` bytes, before the application sees it: a larger
    one (announced by ``Content-Length`` or found while streaming) is answered with
    ``refusal(limit)`` (a 413) at once and the rest is never read. Requests under a path of
    ``exempt`` (relative to where the app is mounted) pass untouched: an app mounted there caps
    its own."""

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        refusal: Callable[[int], Response],
        exempt: Sequence[str] = (),
    ) -> None:
        super().__init__(app)
        self.limit = limit
        self.refusal = refusal
        self.exempt = tuple(exempt)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.exempt and _local_path(scope).startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        if _declared_length(scope) > self.limit:
            await self.refusal(self.limit)(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away: let the application see it
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self.refusal(self.limit)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)


def _local_path(scope: Scope) -> str:
    """The request's path below where the app is mounted."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


def _declared_length(scope: Scope) -> int:
    """The ``Content-Length`` of a request (0 when absent or unreadable)."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0
