"""The command line's stop signals: the first SIGTERM/SIGINT asks for a graceful stop, the second
for a hurried one, later ones are only reported; the handlers go away on leaving. Each case runs
in its own interpreter, which sends the signals to itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PRELUDE = """
import asyncio, os, signal, threading
from mongo_job_scheduler.cli._signals import StopSignals

calls = []

def record(what):
    return lambda sig: calls.append(f"{what} {sig.name}")
"""


def run(body: str) -> list[str]:
    script = PRELUDE + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_first_signal_asks_for_a_graceful_stop_and_the_second_hurries() -> None:
    lines = run(
        """
        async def main():
            signals = StopSignals(
                graceful=record("graceful"), hurry=record("hurry"), again=record("again")
            )
            with signals:
                print("requested before:", signals.requested.is_set())
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM, signal.SIGINT):
                    os.kill(os.getpid(), sig)
                    count = len(calls)
                    while len(calls) == count:
                        await asyncio.sleep(0.01)
                    print(calls[-1], "requested:", signals.requested.is_set())
            print("received:", [sig.name for sig in signals.received])

        asyncio.run(main())
        """
    )

    assert lines == [
        "requested before: False",
        "graceful SIGTERM requested: True",
        "hurry SIGINT requested: True",
        "again SIGTERM requested: True",
        "again SIGINT requested: True",
        "received: ['SIGTERM', 'SIGINT', 'SIGTERM', 'SIGINT']",
    ]


def test_later_signals_are_ignored_without_an_again_callback() -> None:
    lines = run(
        """
        async def main():
            with StopSignals(graceful=record("graceful"), hurry=record("hurry")) as signals:
                for sig in (signal.SIGINT, signal.SIGINT, signal.SIGINT):
                    os.kill(os.getpid(), sig)
                    count = len(signals.received)
                    while len(signals.received) == count:
                        await asyncio.sleep(0.01)
            print(calls)

        asyncio.run(main())
        """
    )

    assert lines == ["['graceful SIGINT', 'hurry SIGINT']"]


def test_leaving_removes_the_handlers_so_the_signals_have_their_default_effect() -> None:
    lines = run(
        """
        async def main():
            with StopSignals(graceful=record("graceful"), hurry=record("hurry")):
                print("SIGTERM handled inside:", signal.getsignal(signal.SIGTERM) != signal.SIG_DFL)
            print("SIGTERM default after:", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
            try:
                os.kill(os.getpid(), signal.SIGINT)
                await asyncio.sleep(1)
            except KeyboardInterrupt:
                print("SIGINT after leaving: KeyboardInterrupt")
            print(calls)

        asyncio.run(main())
        """
    )

    assert lines == [
        "SIGTERM handled inside: True",
        "SIGTERM default after: True",
        "SIGINT after leaving: KeyboardInterrupt",
        "[]",
    ]


def test_outside_the_main_thread_no_handler_is_installed_and_nothing_fails() -> None:
    lines = run(
        """
        def in_thread():
            async def main():
                before = signal.getsignal(signal.SIGTERM)
                with StopSignals(graceful=record("graceful"), hurry=record("hurry")) as signals:
                    print("unchanged:", signal.getsignal(signal.SIGTERM) == before)
                print("received:", signals.received)

            asyncio.run(main())

        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join()
        """
    )

    assert lines == ["unchanged: True", "received: []"]
