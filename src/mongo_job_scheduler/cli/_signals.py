"""Stopping a long-running command with SIGTERM or SIGINT (Ctrl-C): the first signal asks for a
graceful stop, the second for a hurried one."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from types import TracebackType

__all__ = ["StopSignals"]

SignalCallback = Callable[[signal.Signals], None]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """SIGINT and SIGTERM handlers on the running event loop while this is entered (``with``).

    The first signal calls ``graceful`` and then sets :attr:`requested`, the event the command
    waits on before stopping gracefully; the second calls ``hurry`` (stop now); each later one
    calls ``again`` if given. Every signal is kept in :attr:`received`. Where the loop cannot
    take signal handlers (Windows, a thread other than the main one) none is installed and the
    signals keep their default effect.
    """

    def __init__(
        self,
        *,
        graceful: SignalCallback,
        hurry: SignalCallback,
        again: SignalCallback | None = None,
    ) -> None:
        self.received: list[signal.Signals] = []
        self.requested = asyncio.Event()
        self._graceful = graceful
        self._hurry = hurry
        self._again = again
        self._loop: asyncio.AbstractEventLoop | None = None
        self._installed: list[signal.Signals] = []

    def _on_signal(self, sig: signal.Signals) -> None:
        self.received.append(sig)
        if len(self.received) == 1:
            self._graceful(sig)
            self.requested.set()
        elif len(self.received) == 2:
            self._hurry(sig)
        elif self._again is not None:
            self._again(sig)

    def __enter__(self) -> StopSignals:
        self._loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            try:
                self._loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # Windows / not main thread
                continue
            self._installed.append(sig)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._loop is not None:
            for sig in self._installed:
                self._loop.remove_signal_handler(sig)
        self._installed.clear()
        self._loop = None
