"""The process executor: a pool of child processes owned by one worker, each running one
handler at a time (``executor="process"``), so that a handler can be stopped for real and a
crash takes only its own job with it.

- **Start.** Children are started ahead of need (``warm``), each a fresh interpreter
  (``spawn``): never a ``fork`` of the worker, which holds MongoDB connections and threads, and
  not the ``forkserver`` either, whose server would be the children's parent (a service manager
  stopping the unit signals every process in it: the server dies, and the children's exit
  statuses with it). A child imports this package and the modules of the process handlers
  before it says it is ready (a few hundred milliseconds of CPU, paid ahead of need and once
  per ``max_tasks_per_child`` jobs), so a job finds a child that only has to look its handler
  up.
- **Channel.** One socket pair per child, read on the event loop (an asyncio protocol: frames
  are parsed as they arrive, nothing blocks). Progress reports go to the worker's
  ``ProgressReports`` as they arrive; the outcome resolves the run's future.
- **Stops.** Cancelling a run's future (a timeout, a cancel, a lost lease, a stop of the worker)
  stops its child: a ``stop`` frame with the reason, SIGTERM, and SIGKILL after ``GRACE``
  seconds. A stopped child is never used again; another is started in its place.
- **Deaths.** A child that dies on its own fails its run with :class:`HandlerCrashed`, whose
  message says how it died (see :func:`describe_exit`); the pool replaces it.
- **Recycling.** A child that ran ``max_tasks_per_child`` handlers, or whose resident memory
  (``/proc/<pid>/statm``) exceeds ``max_memory_per_child`` after a handler, is told to exit and
  replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import pickle
import signal
import socket
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.process import BaseProcess
from typing import Any

from .._errors import HandlerCrashed, HandlerError
from ..job import ProgressSink, RunContext, StopReason
from . import _child
from ._child import HEADER, frame

__all__ = ["GRACE", "ProcessPool", "describe_exit", "resident_bytes"]

GRACE = 2.0
"""Seconds a stopped child gets between SIGTERM and SIGKILL (its ``finally`` blocks run)."""
CLOSE_WAIT = GRACE + 5.0
"""Seconds a closing pool waits for its children's processes to end."""
EOF_WAIT = 1.0
"""Seconds to wait, after a child's process ended, for the last frames it sent."""
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

ErrorReporter = Callable[[BaseException, str], None]


def describe_exit(code: int | None) -> str:
    """How a handler's process died, for ``lastError``."""
    if code is None:
        return "the handler's process ended without an exit status"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        how = f"the handler's process was killed by {name} (exit {code})"
        if name == "SIGKILL":
            how += ", as by the kernel's out-of-memory killer or kill -9"
        return how
    return f"the handler's process exited with code {code} before the handler returned"


def resident_bytes(pid: int) -> int | None:
    """The resident memory of process ``pid`` (``/proc``), or ``None`` if unknown."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


class Call:
    """One run of a handler in a child: its future and the frame that starts it."""

    __slots__ = ("child", "context", "future", "message")

    def __init__(self, future: asyncio.Future[Any], context: RunContext, message: bytes) -> None:
        self.future = future
        self.context = context
        self.message = message
        self.child: Child | None = None


class Child(asyncio.Protocol):
    """One child process, and the worker's end of its socket (frames parsed as they come)."""

    def __init__(self, pool: ProcessPool) -> None:
        loop = asyncio.get_running_loop()
        self.pool = pool
        self.process: BaseProcess | None = None
        self.transport: asyncio.Transport | None = None
        self.pid = 0
        self.ready = False
        self.leaving = False
        """Told to exit or stopped: no longer counted, never used again."""
        self.runs = 0
        self.call: Call | None = None
        self.eof: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[int | None] = loop.create_future()
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= HEADER.size:
            end = HEADER.size + HEADER.unpack_from(buffer)[0]
            if len(buffer) < end:
                return
            body = bytes(buffer[HEADER.size : end])
            del buffer[:end]
            self.pool.received(self, body)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.eof.done():
            self.eof.set_result(None)
        self.pool.lost(self)

    def send(self, message: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(message)


class ProcessPool:
    """Up to ``size`` child processes running handlers for one worker. ``progress`` receives
    the reports of the handlers; ``modules`` says which modules a new child imports."""

    def __init__(
        self,
        size: int,
        max_tasks_per_child: int | None,
        max_memory_per_child: int | None,
        progress: ProgressSink,
        report: ErrorReporter,
        modules: Callable[[], list[str]],
    ) -> None:
        self.size = size
        self.max_tasks_per_child = max_tasks_per_child
        self.max_memory_per_child = max_memory_per_child
        self.progress = progress
        self.report = report
        self.modules = modules
        self._children: set[Child] = set()
        """Started or starting, not leaving: what counts against ``size``."""
        self._alive: set[Child] = set()
        """Every child whose process has not ended (leaving ones too)."""
        self._idle: list[Child] = []
        self._queue: deque[Call] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wanted = 0
        self._closed = False
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="mjs-processes")
        self._context = multiprocessing.get_context("spawn")

    # -- running ------------------------------------------------------------------------------

    def warm(self, count: int) -> None:
        """Keep ``count`` children (at most ``size``) started ahead of need."""
        self._wanted = min(count, self.size)
        self._fill()

    def run(
        self, target: tuple[str, str], document: Any, context: RunContext
    ) -> asyncio.Future[Any]:
        """Run the handler ``target`` (module, qualified name) on ``document`` in a child. The
        future resolves with its result; it fails with the handler's error
        (:class:`HandlerError`) or :class:`HandlerCrashed`; cancelling it stops the child."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_exception(RuntimeError("the worker's process pool is closed"))
            return future
        module, qualname = target
        message = frame(("run", module, qualname, document, context.token, context.owner))
        call = Call(future, context, message)
        future.add_done_callback(functools.partial(self._call_done, call))
        if self._idle:
            self._start_call(self._idle.pop(), call)
        else:
            self._queue.append(call)
            self._fill()
        return future

    def _start_call(self, child: Child, call: Call) -> None:
        child.call, call.child = call, child
        child.send(call.message)

    def _call_done(self, call: Call, future: asyncio.Future[Any]) -> None:
        """A cancelled run stops its child (a run still waiting for one just leaves)."""
        child = call.child
        if future.cancelled() and child is not None and child.call is call:
            self.stop(child, call.context.stop_reason or StopReason.SHUTDOWN)

    def received(self, child: Child, body: bytes) -> None:
        """A frame from ``child``."""
        call = child.call
        try:
            message = pickle.loads(body)
        except Exception as exc:  # only a result can fail to load (its class, say)
            if call is not None and not child.leaving:
                error = TypeError(
                    f"the handler's return value cannot be read from its process: {exc}"
                )
                self._finished(child, call, error)
            return
        kind = message[0]
        if kind == "ready":
            child.ready, child.pid = True, message[1]
            self._available(child)
        elif call is None or child.leaving:
            return  # news of a run that was stopped
        elif kind == "progress":
            self.progress(call.context.job_id, message[1], message[2])
        elif kind == "done":
            self._finished(child, call, None, message[1])
        else:
            self._finished(child, call, HandlerError(*message[1:]))

    def _finished(
        self, child: Child, call: Call, error: BaseException | None, result: Any = None
    ) -> None:
        child.call = None
        child.runs += 1
        if not call.future.done():
            if error is None:
                call.future.set_result(result)
            else:
                call.future.set_exception(error)
        if self._worn(child):
            self.retire(child)
        else:
            self._available(child)

    def _worn(self, child: Child) -> bool:
        """Whether ``child`` is due for recycling (``max_tasks_per_child``,
        ``max_memory_per_child``)."""
        limit = self.max_tasks_per_child
        if limit is not None and child.runs >= limit:
            return True
        memory = self.max_memory_per_child
        resident = None if memory is None else resident_bytes(child.pid)
        return memory is not None and resident is not None and resident > memory

    def _available(self, child: Child) -> None:
        """``child`` is ready and free: give it the next waiting run, or keep it idle."""
        if child.leaving:
            return
        while self._queue:
            call = self._queue.popleft()
            if not call.future.done():
                self._start_call(child, call)
                return
        self._idle.append(child)

    # -- children coming and going ------------------------------------------------------------

    def _fill(self) -> None:
        """Start children while fewer than wanted are started, or runs wait for more than
        are starting, within ``size``."""
        while not self._closed and len(self._children) < self.size:
            starting = sum(1 for child in self._children if not child.ready)
            waiting = sum(1 for call in self._queue if not call.future.done())
            if len(self._children) >= self._wanted and waiting <= starting:
                return
            child = Child(self)
            self._children.add(child)
            self._alive.add(child)
            self._spawn(self._start(child))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        try:
            with theirs:
                process = self._context.Process(
                    target=_child.main,
                    args=(theirs, self.modules()),
                    name="mjs-handler",
                    daemon=True,
                )
                await loop.run_in_executor(self._thread, process.start)
            child.process = process
            await loop.connect_accepted_socket(lambda: child, ours)
        except Exception as exc:
            ours.close()
            self._ended(child, None, f"could not start the handler's process: {exc}")
            return
        if self._closed:
            self.retire(child)
        await self._watch(child, process)

    async def _watch(self, child: Child, process: BaseProcess) -> None:
        """Wait for the child's process to end, then for the frames it sent before."""
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()
        loop.add_reader(process.sentinel, _resolve, exited)
        try:
            await exited
        finally:
            loop.remove_reader(process.sentinel)
        self.lost(child)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(child.eof), EOF_WAIT)
        await loop.run_in_executor(self._thread, process.join)
        self._ended(child, process.exitcode)
        process.close()

    def _ended(self, child: Child, code: int | None, why: str | None = None) -> None:
        """A child's process ended (or could not start, ``why``): fail the run it died under,
        and replace it."""
        self._gone(child)
        self._alive.discard(child)
        call, child.call = child.call, None
        if child.transport is not None:
            child.transport.close()
        if call is not None and not child.leaving and not call.future.done():
            call.future.set_exception(HandlerCrashed(describe_exit(code)))
        elif not child.ready and not child.leaving:
            crashed = HandlerCrashed(why or f"{describe_exit(code)} as it started")
            self._wanted = min(self._wanted, len(self._children))  # no restart loop
            self.report(crashed, "a handler process did not start")
            self._fail_waiting(crashed)
        child.ended.set_result(code)
        self._fill()

    def _fail_waiting(self, error: HandlerCrashed) -> None:
        """A child died before it was ready: the first run waiting for one fails with it (so
        a handler module that kills its process as it is imported cannot loop forever)."""
        while self._queue:
            call = self._queue.popleft()
            if not call.future.done():
                call.future.set_exception(error)
                return

    def lost(self, child: Child) -> None:
        """``child``'s socket or process ended: never give it another run, start another."""
        if child in self._children:
            self._gone(child)
            self._fill()

    def _gone(self, child: Child) -> None:
        """``child`` no longer counts against ``size``."""
        self._children.discard(child)
        if child in self._idle:
            self._idle.remove(child)

    def stop(self, child: Child, reason: StopReason) -> None:
        """Stop a child's run: the reason, SIGTERM, SIGKILL after ``GRACE``; replace it."""
        if child.leaving:
            return
        child.leaving = True
        self._gone(child)
        child.send(frame(("stop", reason.value)))  # read by its SIGTERM handler
        self._signal(child, signal.SIGTERM)
        asyncio.get_running_loop().call_later(GRACE, self._signal, child, signal.SIGKILL)
        self._fill()

    def retire(self, child: Child) -> None:
        """Tell a child without a run to exit (SIGKILL if it has not after ``GRACE``)."""
        if child.leaving:
            return
        child.leaving = True
        self._gone(child)
        child.send(frame(("exit",)))
        asyncio.get_running_loop().call_later(GRACE, self._signal, child, signal.SIGKILL)
        self._fill()

    @staticmethod
    def _signal(child: Child, signum: int) -> None:
        pid = child.process.pid if child.process is not None else None
        if pid and not child.ended.done():  # never 0: that would signal the process group
            with contextlib.suppress(OSError):
                os.kill(pid, signum)

    async def close(self) -> None:
        """Stop every child (runs still going are stopped as at a shutdown) and wait until
        their processes have ended."""
        self._closed = True
        while self._queue:
            self._queue.popleft().future.cancel()
        for child in list(self._children):
            if child.call is not None:
                self.stop(child, StopReason.SHUTDOWN)
            elif child.process is not None:
                self.retire(child)
        deadline = asyncio.get_running_loop().time() + CLOSE_WAIT
        while self._tasks and (left := deadline - asyncio.get_running_loop().time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)
        if self._tasks:  # not even SIGKILL ended them (a process stuck in the kernel)
            pids = sorted(child.pid for child in self._alive)
            self.report(RuntimeError(f"handler processes {pids} did not end"), "pool closed")
        self._thread.shutdown(wait=False)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
