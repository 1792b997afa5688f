"""Task registration: which handler runs jobs of which name, with what per-task overrides."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from ._documents import validate_name
from ._durations import Duration, to_seconds
from ._errors import ValidationError
from .job import Job
from .rate_limit import RateLimit
from .retry import Retry

__all__ = ["BackoffFn", "F", "Handler", "TaskRegistry", "TaskSpec"]

Handler = Callable[[Job], Any]
"""A job handler: an async function (run on the event loop) or a plain one (run in a thread)."""
BackoffFn = Callable[[int], "timedelta | float"]
"""Computes a retry delay in code: ``backoff(attempt)`` returns seconds or a ``timedelta``
(``attempt`` is 1 after the first failure)."""
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class TaskSpec:
    """How to run jobs of one name: the handler and per-task overrides."""

    handler: Handler
    retry: Retry | None = None
    timeout: timedelta | None = None
    backoff: BackoffFn | None = None
    rate_limit: RateLimit | None = None
    is_async: bool = field(init=False, default=False)
    """Whether the handler is a coroutine function (run on the loop) or not (run in a thread)."""

    def __post_init__(self) -> None:
        is_async = inspect.iscoroutinefunction(self.handler) or inspect.iscoroutinefunction(
            getattr(self.handler, "__call__", None)  # noqa: B004
        )
        object.__setattr__(self, "is_async", is_async)


class TaskRegistry:
    """The handlers of one scheduler: one :class:`TaskSpec` per job name, and an optional
    catch-all handler for names without one. Workers read it at every claim, so a task
    registered after ``start()`` counts at once."""

    def __init__(self, catch_all: Handler | None = None) -> None:
        self._tasks: dict[str, TaskSpec] = {}
        self._catch_all: TaskSpec | None = None
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
        self._catch_all = None if handler is None else TaskSpec(handler)

    def decorator(
        self,
        name: str,
        *,
        retry: int | Mapping[str, Any] | Retry | None = None,
        timeout: Duration | None = None,
        backoff: BackoffFn | None = None,
        rate_limit: Mapping[str, Any] | RateLimit | None = None,
    ) -> Callable[[F], F]:
        """Validate a task's name and options now (``ValidationError`` names the bad one) and
        return the decorator that registers (or replaces) its handler."""
        validate_name(name)
        retry_obj = None if retry is None else Retry.parse(retry)
        timeout_td = None if timeout is None else timedelta(seconds=to_seconds("timeout", timeout))
        if backoff is not None and not callable(backoff):
            raise ValidationError("backoff", "must be callable")
        rate = None if rate_limit is None else RateLimit.parse(rate_limit)

        def register(fn: F) -> F:
            if not callable(fn):
                raise ValidationError("handler", "must be callable")
            self._tasks[name] = TaskSpec(fn, retry_obj, timeout_td, backoff, rate)
            return fn

        return register

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

    def names(self) -> list[str]:
        """The registered task names, sorted."""
        return sorted(self._tasks)
