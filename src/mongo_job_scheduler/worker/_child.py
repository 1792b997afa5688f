"""A handler's child process (``executor="process"``): the entry point that the pool in
:mod:`._processes` starts, and the frames both ends exchange over the child's socket.

The child imports the modules of the process handlers, says it is ready, then runs one job at
a time: it imports the handler by module and qualified name, builds the job's ``Job`` view,
sends each progress report as it is made, then the result or the error. It ignores SIGINT and
any SIGTERM its worker did not announce (a terminal's Ctrl-C or a service manager signals the
whole process group; the worker decides when its children stop). A stop from the worker (a
``stop`` frame, then SIGTERM) sets the job's stop reason and raises ``SystemExit`` in the
handler, so its ``finally`` blocks run before the process exits. A child exits when its worker
says ``exit``, and at once when its worker's process is gone.

Frames are an 8-byte big-endian length and a pickle. Worker to child: ``("run", module,
qualname, document, token, owner)``, ``("stop", reason)``, ``("exit",)``. Child to worker:
``("ready", pid)``, ``("progress", percent, message)``, ``("done", result)`` and ``("error",
type name, message, traceback)``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import multiprocessing
import multiprocessing.connection
import os
import pickle
import select
import signal
import socket
import struct
import threading
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

from ..job import Job, RunContext, StopReason
from ..tasks import TaskHandle

__all__ = ["HEADER", "frame", "main"]

HEADER = struct.Struct("!Q")
"""The length that starts every frame."""
STOPPED = 128 + signal.SIGTERM
"""The exit code of a child stopped by its worker."""


def frame(message: Any) -> bytes:
    """One message, framed for the socket."""
    data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


class Channel:
    """The child's end of its socket: blocking reads of whole frames by the main thread, and
    sends under a lock (a handler's own threads may report progress)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.RLock()

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)

    def waiting(self) -> bool:
        """Whether a frame (or the end of the stream) is waiting to be read."""
        return bool(select.select([self.sock], [], [], 0)[0])

    def receive(self) -> Any:
        """The next message, or ``None`` at the end of the stream (the worker is gone)."""
        header = self._exactly(HEADER.size)
        body = None if header is None else self._exactly(HEADER.unpack(header)[0])
        return None if body is None else pickle.loads(body)

    def _exactly(self, size: int) -> bytes | None:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(min(size - len(data), 1 << 20))
            if not chunk:
                return None
            data += chunk
        return bytes(data)


class Runner:
    """Runs the jobs the worker sends, one at a time, in the child's main thread."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.context: RunContext | None = None
        """The running job's, while a handler runs."""
        self.handlers: dict[tuple[str, str], Callable[[Job], Any]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    def on_terminate(self, signum: int, _frame: FrameType | None) -> None:
        """SIGTERM: a stop the worker announced with a ``stop`` frame ends the handler (with
        its stop reason set); any other is ignored."""
        context = self.context
        if context is None or not self.channel.waiting():
            return
        message = self.channel.receive()
        stop = message is not None and message[0] == "stop"
        context.request_stop(StopReason(message[1]) if stop else StopReason.SHUTDOWN)
        raise SystemExit(STOPPED)

    def run(self, module: str, qualname: str, document: Any, token: int, owner: str) -> bytes:
        """Run one job; the frame that reports its outcome."""
        context = RunContext(token, owner, document.get("_id"))
        context.progress_sink = lambda _job_id, percent, message: self._progress(
            context, percent, message
        )
        self.context = context
        try:
            if self.channel.waiting():  # a stop whose SIGTERM came before the run began
                self.on_terminate(signal.SIGTERM, None)
            job = Job.from_document(document, context)
            outcome: tuple[Any, ...] = ("done", self._call(self._handler(module, qualname), job))
        except BaseException as exc:
            if context.stop_reason is not None:
                raise  # stopped by the worker: the process exits
            outcome = ("error", *remote_error(exc))
        finally:
            with self.channel.lock:
                self.context = None  # later reports from the handler's threads are dropped
        try:
            return frame(outcome)
        except Exception as exc:
            cannot = TypeError(f"the handler's return value cannot be sent from its process: {exc}")
            return frame(("error", *remote_error(cannot)))

    def _progress(self, context: RunContext, percent: float, message: str | None) -> None:
        with self.channel.lock:
            if self.context is context:
                self.channel.send(frame(("progress", percent, message)))

    def _handler(self, module: str, qualname: str) -> Callable[[Job], Any]:
        handler = self.handlers.get((module, qualname))
        if handler is None:
            try:
                target: Any = importlib.import_module(module)
                for part in qualname.split("."):
                    target = getattr(target, part)
            except Exception as exc:
                raise LookupError(
                    f"could not import the handler {module}.{qualname} in its process: {exc}"
                ) from exc
            handler = target.fn if isinstance(target, TaskHandle) else target
            self.handlers[(module, qualname)] = handler
        return handler

    def _call(self, handler: Callable[[Job], Any], job: Job) -> Any:
        if not inspect.iscoroutinefunction(handler):
            return handler(job)
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
        return self.loop.run_until_complete(handler(job))


def remote_error(exc: BaseException) -> tuple[str, str, str]:
    """An exception as it travels to the worker: type name, message and traceback."""
    kind = type(exc).__name__
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return kind, str(exc) or kind, trace


def main(sock: socket.socket, modules: list[str]) -> None:
    """Serve the worker until it says ``exit`` or is gone."""
    channel = Channel(sock)
    runner = Runner(channel)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, runner.on_terminate)
    _exit_with_parent()
    for module in modules:  # imported now, before a job needs them
        try:
            importlib.import_module(module)
        except Exception:
            pass  # the job that needs it reports the error
    channel.send(frame(("ready", os.getpid())))
    while True:
        message = channel.receive()
        if message is None or message[0] != "run":
            return  # the end of the stream, "exit", or a stop that came after the outcome
        channel.send(runner.run(*message[1:]))


def _exit_with_parent() -> None:
    """Exit as soon as the worker's process is gone (even while a handler runs): a job whose
    worker died is claimed again once its lease expires and must not run twice."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="mjs-parent-watch", daemon=True).start()
