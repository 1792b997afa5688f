"""Task registration: which handler runs jobs of which name, with what per-task overrides."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    ParamSpec,
    Protocol,
    TypedDict,
    TypeVar,
    cast,
)

from ._documents import validate_name
from ._durations import Duration, to_seconds
from ._errors import ValidationError
from .job import Job
from .rate_limit import RateLimit
from .repeat import Repeat
from .retry import Retry

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "EXECUTORS",
    "BackoffFn",
    "Executor",
    "F",
    "Handler",
    "P",
    "R",
    "ScheduleOptions",
    "TaskHandle",
    "TaskRegistry",
    "TaskSpec",
]

Handler = Callable[[Job], Any]
"""A job handler: an async function (run on the event loop) or a plain one (run in a thread);
with ``executor="process"``, a module-level function run in a child process."""
Executor = Literal["auto", "process"]
"""Where handlers run: ``"auto"`` (async functions on the worker's event loop, plain ones in
its threads) or ``"process"`` (in a pool of child processes owned by the worker)."""
EXECUTORS: tuple[Executor, ...] = ("auto", "process")
BackoffFn = Callable[[int], "timedelta | float"]
"""Computes a retry delay in code: ``backoff(attempt)`` returns seconds or a ``timedelta``
(``attempt`` is 1 after the first failure)."""
F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")


class ScheduleOptions(TypedDict, total=False):
    """The keyword options of :meth:`Scheduler.schedule` (what a task handle passes on)."""

    run_at: datetime | None
    delay: timedelta | float | None
    repeat: Mapping[str, Any] | Repeat | None
    retry: int | Mapping[str, Any] | Retry | None
    dedupe_key: str | None
    dedupe: Literal["active", "forever"]
    dedupe_window: timedelta | float | None
    priority: int
    concurrency: int | None
    max_execution: timedelta | float | None
    timeout: timedelta | float | None
    rate_limit: Mapping[str, Any] | RateLimit | None
    depends_on: Sequence[Any] | None
    run_on_failure: bool
    session: Any


class _Producer(Protocol):
    def schedule(
        self, name: str, data: Any = None, **options: Unpack[ScheduleOptions]
    ) -> Awaitable[Job]: ...

    def schedule_bulk(
        self, items: Sequence[Mapping[str, Any]], *, session: Any = None
    ) -> Awaitable[list[Job]]: ...


class TaskHandle(Generic[P, R]):
    """What ``@scheduler.task(name)`` (and ``periodic``) returns: the decorated function, still
    callable as before, plus :meth:`schedule` and :meth:`schedule_bulk` for jobs of its name,
    so the name is written once.

    .. code-block:: python

        @scheduler.task("send-email")
        async def send_email(job: Job) -> None: ...

        await send_email.schedule({"to": "ada@example.com"}, delay=60)
    """

    def __init__(self, producer: _Producer, name: str, fn: Callable[P, R]) -> None:
        self._producer = producer
        self.name = name
        """The job name this handler runs."""
        self.fn = fn
        """The decorated function."""
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<TaskHandle {self.name!r} of {self.fn!r}>"

    async def schedule(self, data: Any = None, **options: Unpack[ScheduleOptions]) -> Job:
        """Store a job of this task's name (see :meth:`Scheduler.schedule` for the options)."""
        return await self._producer.schedule(self.name, data, **options)

    async def schedule_bulk(
        self, items: Iterable[Mapping[str, Any]], *, session: Any = None
    ) -> list[Job]:
        """Store many jobs of this task's name in few round trips; each item takes
        :meth:`schedule`'s options as keys, with ``data`` (a ``name`` key, if given, must be
        this task's)."""
        named = []
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise ValidationError(f"items[{index}]", "expected a mapping of options")
            if "name" in item and item["name"] != self.name:
                raise ValidationError(
                    f"items[{index}].name", f"this handle schedules {self.name!r} jobs only"
                )
            named.append({**item, "name": self.name})
        return await self._producer.schedule_bulk(named, session=session)


@dataclass(frozen=True)
class TaskSpec:
    """How to run jobs of one name: the handler and per-task overrides."""

    handler: Handler
    retry: Retry | None = None
    timeout: timedelta | None = None
    backoff: BackoffFn | None = None
    rate_limit: RateLimit | None = None
    executor: Executor = "auto"
    is_async: bool = field(init=False, default=False)
    """Whether the handler is a coroutine function (run on the loop) or not (run in a thread)."""
    target: tuple[str, str] | None = field(init=False, default=None)
    """With ``executor="process"``: the module and qualified name the child process imports
    the handler by (checked here: ``ValidationError`` if it cannot be imported that way)."""

    def __post_init__(self) -> None:
        is_async = inspect.iscoroutinefunction(self.handler) or inspect.iscoroutinefunction(
            getattr(self.handler, "__call__", None)  # noqa: B004
        )
        object.__setattr__(self, "is_async", is_async)
        if self.executor == "process":
            object.__setattr__(self, "target", process_target(self.handler))

    @property
    def on_loop(self) -> bool:
        """Whether the handler runs on the worker's event loop (an async function under the
        ``"auto"`` executor)."""
        return self.is_async and self.target is None


def parse_executor(field_name: str, value: Any) -> Executor:
    """Validate an ``executor=`` option."""
    if value not in EXECUTORS:
        raise ValidationError(field_name, f"must be 'auto' or 'process', got {value!r}")
    return cast(Executor, value)


def process_target(handler: Any) -> tuple[str, str]:
    """The module and qualified name a child process imports ``handler`` by: only a function
    defined at the top level of a module (or a static function of a class there) qualifies."""
    fn = handler.fn if isinstance(handler, TaskHandle) else handler
    name = getattr(fn, "__qualname__", None)
    module = getattr(fn, "__module__", None)
    why = None
    if inspect.ismethod(fn):
        why = "a bound method"
    elif not inspect.isfunction(fn) or not isinstance(name, str) or not isinstance(module, str):
        why = "not a plain function (a callable object, a functools.partial or a builtin)"
    elif "<lambda>" in name:
        why = "a lambda"
    elif "<locals>" in name:
        why = "defined inside another function (a closure)"
    if why is not None:
        raise ValidationError(
            "handler",
            f"{fn!r} is {why}; executor='process' needs a function defined at the top level "
            "of a module, which the child process imports by its module and name",
        )
    return cast(str, module), cast(str, name)


class TaskRegistry:
    """The handlers of one scheduler: one :class:`TaskSpec` per job name, and an optional
    catch-all handler for names without one. Workers read it at every claim, so a task
    registered after ``start()`` counts at once."""

    def __init__(self, catch_all: Handler | None = None, executor: Executor = "auto") -> None:
        self._tasks: dict[str, TaskSpec] = {}
        self._catch_all: TaskSpec | None = None
        self.executor: Executor = executor
        """The executor of the catch-all handler and of tasks that name none."""
        self.changed: Callable[[], None] | None = None
        """Called after a handler is registered or replaced, or the catch-all handler set: a
        running worker (which may claim rarely while idle) claims at once with the new
        names."""
        self.catch_all = catch_all

    @property
    def catch_all(self) -> Handler | None:
        """The handler of jobs whose name has no task of its own (``None``: no such jobs are
        claimed)."""
        return None if self._catch_all is None else self._catch_all.handler

    @catch_all.setter
    def catch_all(self, handler: Handler | None) -> None:
        if handler is not None and not callable(handler):
            raise ValidationError("handler", "must be callable")
        self._catch_all = None if handler is None else TaskSpec(handler, executor=self.executor)
        self._changed()

    def decorator(
        self,
        name: str,
        *,
        retry: int | Mapping[str, Any] | Retry | None = None,
        timeout: Duration | None = None,
        backoff: BackoffFn | None = None,
        rate_limit: Mapping[str, Any] | RateLimit | None = None,
        executor: Executor | None = None,
    ) -> Callable[[F], F]:
        """Validate a task's name and options now (``ValidationError`` names the bad one) and
        return the decorator that registers (or replaces) its handler (``executor``: the
        registry's when ``None``)."""
        validate_name(name)
        retry_obj = None if retry is None else Retry.parse(retry)
        timeout_td = None if timeout is None else timedelta(seconds=to_seconds("timeout", timeout))
        if backoff is not None and not callable(backoff):
            raise ValidationError("backoff", "must be callable")
        rate = None if rate_limit is None else RateLimit.parse(rate_limit)
        chosen = self.executor if executor is None else parse_executor("executor", executor)

        def register(fn: F) -> F:
            handler = fn.fn if isinstance(fn, TaskHandle) else fn
            if not callable(handler):
                raise ValidationError("handler", "must be callable")
            self._tasks[name] = TaskSpec(handler, retry_obj, timeout_td, backoff, rate, chosen)
            self._changed()
            return fn

        return register

    def _changed(self) -> None:
        if self.changed is not None:
            self.changed()

    def resolve(self, name: str) -> TaskSpec | None:
        """The spec that runs jobs named ``name``: its task's, else the catch-all's."""
        return self._tasks.get(name, self._catch_all)

    def claimable_names(self) -> list[str] | None:
        """The job names these handlers can run: ``None`` (any name) with a catch-all handler,
        else the registered task names, sorted (so a fleet can split names across
        processes)."""
        return None if self._catch_all is not None else sorted(self._tasks)

    def rate_limits(self) -> dict[str, RateLimit]:
        """The rate limits given on tasks (they override the jobs' own)."""
        return {name: spec.rate_limit for name, spec in self._tasks.items() if spec.rate_limit}

    def process_modules(self) -> list[str]:
        """The modules of the handlers that run in child processes, sorted (a child imports
        them as it starts, before it is needed); empty when no handler does."""
        specs = [*self._tasks.values(), *([self._catch_all] if self._catch_all else [])]
        return sorted({spec.target[0] for spec in specs if spec.target is not None})

    def names(self) -> list[str]:
        """The registered task names, sorted."""
        return sorted(self._tasks)
