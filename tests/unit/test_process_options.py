"""The process executor's options and rules, without a process: which handlers a child process
can import (checked at registration), the pool options (checked in ``SchedulerConfig``), and
how the death of a handler's process is described."""

from __future__ import annotations

import functools
import signal
from typing import Any

import pytest
from tests import process_handlers

from mongo_job_scheduler import ConfigurationError, InMemoryJobStore, Job, Scheduler
from mongo_job_scheduler._config import cpu_count
from mongo_job_scheduler._errors import ValidationError
from mongo_job_scheduler.worker._processes import describe_exit


class Handlers:
    def method(self, job: Job) -> None: ...

    @staticmethod
    def static(job: Job) -> None: ...


class CallableObject:
    def __call__(self, job: Job) -> None: ...


def closure() -> Any:
    def inner(job: Job) -> None: ...

    return inner


NOT_IMPORTABLE = [
    pytest.param(lambda job: None, "a lambda", id="lambda"),
    pytest.param(closure(), "closure", id="closure"),
    pytest.param(Handlers().method, "bound method", id="method"),
    pytest.param(CallableObject(), "not a plain function", id="callable-object"),
    pytest.param(functools.partial(process_handlers.pid), "not a plain function", id="partial"),
    pytest.param(print, "not a plain function", id="builtin"),
]


@pytest.mark.parametrize(("handler", "why"), NOT_IMPORTABLE)
def test_a_process_task_must_be_importable_by_module_and_name(handler: Any, why: str) -> None:
    scheduler = Scheduler(InMemoryJobStore())
    register = scheduler.task("t", executor="process")
    with pytest.raises(ValidationError, match=why) as info:
        register(handler)
    assert info.value.field == "handler"
    assert "top level of a module" in str(info.value)
    assert scheduler.handled_names() == []  # nothing was registered
    scheduler.task("t")(handler)  # the same handler is fine in a thread or on the loop


def test_the_schedulers_default_executor_applies_to_tasks_and_the_catch_all() -> None:
    scheduler = Scheduler(InMemoryJobStore(), process_handlers.pid, executor="process")
    assert scheduler._tasks.process_modules() == ["tests.process_handlers"]
    with pytest.raises(ValidationError, match="a lambda"):
        scheduler.task("t")(lambda job: None)
    scheduler.task("t", executor="auto")(lambda job: None)
    with pytest.raises(ValidationError, match="a lambda"):
        scheduler.handler = lambda job: None
    with pytest.raises(ValidationError, match="a lambda"):
        Scheduler(InMemoryJobStore(), lambda job: None, executor="process")


def test_importable_handlers_are_registered_with_their_module_and_name() -> None:
    scheduler = Scheduler(InMemoryJobStore())
    handle = scheduler.task("pid", executor="process")(process_handlers.pid)
    scheduler.task("again", executor="process")(handle)  # a task handle: its function
    scheduler.task("static", executor="process")(Handlers.static)
    scheduler.periodic("tick", every=60, executor="process")(process_handlers.async_pid)
    resolve = scheduler._tasks.resolve
    assert resolve("pid").target == ("tests.process_handlers", "pid")  # type: ignore[union-attr]
    assert resolve("again").target == ("tests.process_handlers", "pid")  # type: ignore[union-attr]
    assert resolve("static").target == (__name__, "Handlers.static")  # type: ignore[union-attr]
    tick = resolve("tick")
    assert tick is not None and tick.target == ("tests.process_handlers", "async_pid")
    assert not tick.on_loop  # an async handler under "process" runs in the child's own loop
    assert scheduler._tasks.process_modules() == [__name__, "tests.process_handlers"]
    scheduler.task("thread")(process_handlers.noop)
    assert resolve("thread").target is None  # type: ignore[union-attr]


def test_an_unknown_executor_is_refused() -> None:
    with pytest.raises(ValidationError) as info:
        Scheduler(InMemoryJobStore()).task("t", executor="thread")  # type: ignore[arg-type]
    assert info.value.field == "executor"
    with pytest.raises(ValidationError) as info:
        Scheduler(InMemoryJobStore()).periodic("p", every=5, executor="fork")  # type: ignore[arg-type]
    assert info.value.field == "executor"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        pytest.param({"executor": "threads"}, "executor", id="executor"),
        pytest.param({"process_pool": 0}, "process_pool", id="pool-0"),
        pytest.param({"process_pool": "4"}, "process_pool", id="pool-string"),
        pytest.param({"process_pool": True}, "process_pool", id="pool-bool"),
        pytest.param({"max_tasks_per_child": 0}, "max_tasks_per_child", id="tasks-0"),
        pytest.param({"max_tasks_per_child": 2.5}, "max_tasks_per_child", id="tasks-float"),
        pytest.param({"max_memory_per_child": -1}, "max_memory_per_child", id="memory-negative"),
        pytest.param({"max_memory_per_child": "1G"}, "max_memory_per_child", id="memory-text"),
    ],
)
def test_invalid_pool_options_name_the_option(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Scheduler(InMemoryJobStore(), **options)
    assert info.value.field == field


def test_pool_defaults() -> None:
    config = Scheduler(InMemoryJobStore()).config
    assert config.executor == "auto"
    assert config.process_pool == cpu_count() >= 1
    assert config.max_tasks_per_child is None and config.max_memory_per_child is None
    sized = Scheduler(
        InMemoryJobStore(), process_pool=3, max_tasks_per_child=100, max_memory_per_child=2**30
    ).config
    assert (sized.process_pool, sized.max_tasks_per_child, sized.max_memory_per_child) == (
        3,
        100,
        2**30,
    )


def test_the_death_of_a_handlers_process_is_described() -> None:
    killed = describe_exit(-signal.SIGKILL)
    assert killed.startswith("the handler's process was killed by SIGKILL (exit -9)")
    assert "out-of-memory" in killed
    assert describe_exit(-signal.SIGSEGV) == (
        "the handler's process was killed by SIGSEGV (exit -11)"
    )
    assert describe_exit(3) == (
        "the handler's process exited with code 3 before the handler returned"
    )
    assert "signal 99" in describe_exit(-99)
    assert "without an exit status" in describe_exit(None)
