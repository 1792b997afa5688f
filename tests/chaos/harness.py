"""Driver side of the chaos suite: start and kill worker processes (the real CLI running
``tests.chaos.app:scheduler``), read back their execution histories, check them, and write the
figures each scenario reports.

Sizes: ``MJS_CHAOS_SIZE=full`` (what ``scripts/chaos`` sets) runs each scenario at the size
``docs/reliability.md`` reports; anything else runs the reduced size CI runs. :func:`size` picks.

Reports: each scenario calls :func:`report` with its figures; they are written as JSON to
``$MJS_CHAOS_REPORT_DIR/<scenario>.json`` (default ``tests/chaos/.results``, git-ignored), from
which ``scripts/chaos`` builds its markdown table.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import NotMetInTime, eventually

REPO_ROOT = Path(__file__).resolve().parents[2]
FULL = os.environ.get("MJS_CHAOS_SIZE") == "full"
REPORT_DIR = Path(os.environ.get("MJS_CHAOS_REPORT_DIR", REPO_ROOT / "tests/chaos/.results"))
FAKETIME_LIB = next(
    (str(p) for p in sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))),
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
)
"""Debian's libfaketime (package ``faketime``), for whatever architecture this is."""


def poll_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str = "condition",
    *,
    interval: float = 0.05,
    detail: Callable[[], str] | None = None,
    fail: bool = True,
) -> Any:
    """Call ``predicate`` until it returns something truthy and return that. After
    ``timeout`` seconds fail naming ``what`` (plus ``detail()``, e.g. the workers' logs), or,
    with ``fail=False``, return the last value for the caller to explain."""
    last: list[Any] = [None]

    def check() -> Any:
        last[0] = predicate()
        return last[0]

    try:
        return eventually(check, timeout, interval)
    except NotMetInTime:
        if not fail:
            return last[0]
        extra = f"\n{detail()}" if detail is not None else ""
        raise AssertionError(f"{what}: not within {timeout}s{extra}") from None


def size(ci: Any, full: Any) -> Any:
    """The reduced value in CI, the full one under ``MJS_CHAOS_SIZE=full``."""
    return full if FULL else ci


def report(scenario: str, figures: Mapping[str, Any]) -> None:
    """Record a scenario's figures (and the size it ran at) for ``scripts/chaos``."""
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    payload = {"scenario": scenario, "size": "full" if FULL else "ci", **figures}
    (REPORT_DIR / f"{scenario}.json").write_text(json.dumps(payload, indent=2, default=str))


# -- worker processes -------------------------------------------------------------------------


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    log: Path
    started: float
    killed_at: float | None = None
    """``time.time()`` just before this driver sent SIGKILL (None: not killed)."""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Fleet:
    """The chaos worker processes of one scenario and their shared history directory."""

    uri: str
    database: str
    workdir: Path
    procs: list[Proc] = field(default_factory=list)

    @property
    def history_dir(self) -> Path:
        return self.workdir / "history"

    def spawn(
        self,
        *,
        workers: int = 8,
        lock_timeout: float = 10,
        heartbeat_interval: float | None = None,
        poll_interval: float = 0.5,
        max_lease_expiries: int = 3,
        names: Iterable[str] | None = None,
        skew_seconds: float = 0,
        stop_timeout: float = 30,
        uri: str | None = None,
        app: str = "tests.chaos.app:scheduler",
        extra: Mapping[str, Any] | None = None,
    ) -> Proc:
        """Start one worker process through the CLI, running ``app`` (``MODULE:ATTR``).
        ``skew_seconds`` runs it under libfaketime with its clock that far off (its history is
        corrected back); ``extra`` adds keys to the app's ``MJS_CHAOS`` configuration."""
        config: dict[str, Any] = {
            "history_dir": str(self.history_dir),
            "workers": workers,
            "lock_timeout": lock_timeout,
            "heartbeat_interval": heartbeat_interval,
            "poll_interval": poll_interval,
            "max_lease_expiries": max_lease_expiries,
            "skew": skew_seconds,
        }
        if names is not None:
            config["names"] = list(names)
        config.update(extra or {})
        env = {**os.environ, "MJS_CHAOS": json.dumps(config), "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        if skew_seconds:
            env["LD_PRELOAD"] = FAKETIME_LIB
            env["FAKETIME"] = f"{skew_seconds:+.0f}s"
            env.pop("FAKETIME_DONT_FAKE_MONOTONIC", None)
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / f"worker-{len(self.procs)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mongo_job_scheduler",
                    "--mongodb-uri",
                    uri or self.uri,
                    "--database",
                    self.database,
                    "worker",
                    app,
                    "--stop-timeout",
                    str(stop_timeout),
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        proc = Proc(popen, log, time.time())
        self.procs.append(proc)
        return proc

    def wait_started(self, proc: Proc, timeout: float = 60) -> None:
        """Block until ``proc`` printed ``worker started`` (fail if it exits first)."""
        deadline = time.monotonic() + timeout
        while "worker started" not in proc.output():
            if not proc.alive():
                raise AssertionError(f"worker {proc.pid} exited early:\n{proc.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker {proc.pid} not started in {timeout}s")
            time.sleep(0.05)

    def kill(self, proc: Proc) -> None:
        """SIGKILL ``proc``, noting the time first (its open executions end there)."""
        proc.killed_at = time.time()
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(timeout=30)

    def signal(self, proc: Proc, sig: int = signal.SIGTERM) -> None:
        proc.popen.send_signal(sig)

    def live(self) -> list[Proc]:
        return [p for p in self.procs if p.alive()]

    def stop_all(self, timeout: float = 60) -> dict[int, int]:
        """SIGTERM every live process (graceful stop) and return the exit codes."""
        for proc in self.live():
            proc.popen.send_signal(signal.SIGTERM)
        codes = {}
        for proc in self.procs:
            codes[proc.pid] = proc.popen.wait(timeout=timeout)
        return codes

    def kill_leftovers(self) -> None:
        for proc in self.live():
            proc.popen.kill()
            proc.popen.wait(timeout=30)

    def logs(self, tail: int = 2000) -> str:
        return "\n".join(f"--- worker {p.pid}\n{p.output()[-tail:]}" for p in self.procs)

    def history(self) -> History:
        killed = {p.pid: p.killed_at for p in self.procs if p.killed_at is not None}
        return History.load(self.history_dir, killed)


# -- histories --------------------------------------------------------------------------------


@dataclass
class Execution:
    job: str
    name: str
    pid: int
    token: int
    attempt: int
    slot: str | None
    start: float
    end: float | None
    outcome: str | None
    """``ok``, ``error``, ``cancelled``; ``killed`` when the process was killed mid-run."""


@dataclass
class History:
    executions: list[Execution]

    @classmethod
    def load(cls, directory: Path, killed_at: Mapping[int, float]) -> History:
        """Read every process's records; an execution left open by a killed process ends at
        the kill time with outcome ``killed``; one left open otherwise keeps ``end=None``."""
        open_runs: dict[tuple[int, str, int], dict[str, Any]] = {}
        done: list[Execution] = []
        for path in sorted(directory.glob("*.jsonl")):
            for line in path.read_text().splitlines():
                if not line.strip():
                    continue
                rec = json.loads(line)
                key = (rec["pid"], rec["job"], rec["token"])
                if rec["event"] == "start":
                    open_runs[key] = rec
                else:
                    start = open_runs.pop(key)
                    done.append(_execution(start, rec["t"], rec["outcome"]))
        for (pid, _, _), rec in open_runs.items():
            at = killed_at.get(pid)
            done.append(_execution(rec, at, "killed" if at is not None else None))
        done.sort(key=lambda e: e.start)
        return cls(done)

    def by_job(self) -> dict[str, list[Execution]]:
        out: dict[str, list[Execution]] = defaultdict(list)
        for execution in self.executions:
            out[execution.job].append(execution)
        return out

    def unfinished(self) -> list[Execution]:
        """Executions that never ended although their process was not killed."""
        return [e for e in self.executions if e.end is None]

    def overlaps(self) -> list[tuple[Execution, Execution]]:
        """Pairs of executions of one job whose time intervals intersect: two live owners."""
        found = []
        for runs in self.by_job().values():
            runs = sorted(runs, key=lambda e: e.start)
            for before, after in itertools.pairwise(runs):
                end = before.end if before.end is not None else float("inf")
                if after.start < end:
                    found.append((before, after))
        return found

    def reruns(self) -> dict[str, list[Execution]]:
        """Jobs run more than once for the same attempt number of the same slot (a repeating
        job starts each slot at attempt 1): re-executions."""
        out = {}
        for job, runs in self.by_job().items():
            keys = [(e.slot, e.attempt) for e in runs]
            if len(keys) != len(set(keys)):
                out[job] = runs
        return out

    def unexplained_reruns(self) -> dict[str, list[Execution]]:
        """Re-executions not explained by the owner being killed mid-run: a run of attempt
        ``n`` (of one slot) repeated although the earlier run of it was not killed."""
        out = {}
        for job, runs in self.reruns().items():
            seen: dict[tuple[str | None, int], Execution] = {}
            for run in sorted(runs, key=lambda e: e.start):
                previous = seen.get((run.slot, run.attempt))
                if previous is not None and previous.outcome != "killed":
                    out[job] = runs
                    break
                seen[(run.slot, run.attempt)] = run
        return out


def _execution(start: dict[str, Any], end: float | None, outcome: str | None) -> Execution:
    return Execution(
        job=start["job"],
        name=start["name"],
        pid=start["pid"],
        token=start["token"],
        attempt=start["attempt"],
        slot=start.get("slot"),
        start=start["t"],
        end=end,
        outcome=outcome,
    )


def describe(pairs: Iterable[Any], limit: int = 5) -> str:
    return "\n".join(repr(p) for p in list(pairs)[:limit])
