"""A/B comparison of two git revisions of the package: ``scripts/bench-ab BASE [HEAD] [options]``.

This machine's speed drifts by tens of percent over minutes, so two benchmark reports taken at
different times cannot tell a small difference between revisions. This script measures both
revisions on one ``mongod`` in the same few minutes: it extracts each revision's ``src/`` into a
temporary directory (``git archive``), starts its own single-node replica set on 127.0.0.1, and
runs ``--pairs`` pairs of burn-downs, the order alternating (A then B, B then A, ...). Each run
is section 6's burn-down (``run.multi_burn``): ``--jobs`` no-op jobs inserted into a fresh
database, then ``--processes`` worker processes (``bench/child.py``, ``--workers`` workers, poll
50 ms) started with ``PYTHONPATH`` at that revision's ``src``, timed from ``go`` to the last
handler; each run checks that every job ran exactly once. The jobs are written by the package
of this working tree for both sides, so both revisions must read the same job documents.

It prints a markdown report (a row per run and a summary: medians with min/max per side, the
ratio B/A of the medians and the B/A ratio within each pair) and writes it to
``bench/results/ab-<date>-<HHMM>.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchlib import BENCH_DIR, Stopwatch, load_average, log, utcnow
from run import (
    RESULTS_DIR,
    Bench,
    MultiResult,
    cancel_on_sigterm,
    code_revision,
    command_line,
    fmt_int,
    fmt_rate,
    machine_facts,
    multi_burn,
    replica_set_bench,
    table_row,
)

REPO = BENCH_DIR.parent
PACKAGE = "mongo_job_scheduler"
JOB_FORMAT = f"src/{PACKAGE}/_documents.py"
"""The module that shapes job documents: the harness writes the jobs for both sides."""


# -- revisions --------------------------------------------------------------------------------


def git(*args: str) -> str:
    """Run git in the repository; return its stdout, stripped (exit with its error if it fails)."""
    done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass(frozen=True)
class Revision:
    """One side of the comparison: the commit and where its package source was extracted."""

    label: str
    name: str
    commit: str
    subject: str
    src: Path

    @property
    def short(self) -> str:
        return self.commit[:7]

    def describe(self) -> str:
        subject = self.subject if len(self.subject) <= 90 else self.subject[:89] + "…"
        return f"`{self.commit}` (given as `{self.name}`): {subject}"


def materialise(label: str, name: str, folder: Path) -> Revision:
    """Resolve ``name`` to a commit and extract that commit's ``src/`` into ``folder``."""
    commit = git("rev-parse", "--verify", "--end-of-options", f"{name}^{{commit}}")
    subject = git("log", "-1", "--format=%s", commit)
    archive = subprocess.Popen(
        ["git", "archive", "--format=tar", commit, "src"], cwd=REPO, stdout=subprocess.PIPE
    )
    assert archive.stdout is not None
    try:
        subprocess.run(["tar", "-x", "-C", str(folder)], stdin=archive.stdout, check=True)
    finally:
        archive.stdout.close()
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {commit} src exited with {archive.returncode}")
    src = folder / "src"
    if not (src / PACKAGE / "__init__.py").is_file():
        raise RuntimeError(f"{name} ({commit}) has no src/{PACKAGE}/__init__.py")
    return Revision(label, name, commit, subject, src)


# -- runs and statistics ----------------------------------------------------------------------


@dataclass
class Measured:
    """One burn-down of one side."""

    index: int
    pair: int
    revision: Revision
    result: MultiResult
    load: float
    """The one-minute load average when the run started (other work on the machine)."""


@dataclass(frozen=True)
class Metric:
    """A figure taken from every run, and how it is shown."""

    title: str
    value: Callable[[MultiResult], float]
    shown: Callable[[float], str]


METRICS = [
    Metric("jobs/s (higher is better)", lambda r: r.rate, lambda v: f"{v:,.0f}"),
    Metric("worker CPU µs/job", lambda r: r.cpu_per_job * 1e6, lambda v: f"{v:,.0f}"),
    Metric("mongod CPU s/run", lambda r: r.server_cpu, lambda v: f"{v:.2f}"),
    Metric("mongod CPU µs/job", lambda r: r.server_cpu / r.jobs * 1e6, lambda v: f"{v:,.0f}"),
    Metric("worker RSS MiB (largest process)", lambda r: max(r.rss) / 2**20, lambda v: f"{v:.1f}"),
]


async def measure(
    args: argparse.Namespace, bench: Bench, sides: Sequence[Revision]
) -> list[Measured]:
    """``--pairs`` pairs of burn-downs: A then B in pairs 1, 3, ..., B then A in pairs 2, 4, ..."""
    runs: list[Measured] = []
    for pair in range(1, args.pairs + 1):
        order = sides if pair % 2 == 1 else list(reversed(sides))
        for revision in order:
            log(
                f"pair {pair}/{args.pairs}: {revision.label} ({revision.short}), "
                f"{args.jobs:,} jobs, {args.processes} process(es) x {args.workers} workers"
            )
            load = os.getloadavg()[0]
            result = await multi_burn(bench, args.processes, args.jobs, revision.src)
            runs.append(Measured(len(runs) + 1, pair, revision, result, load))
            log(
                f"  {fmt_rate(result.rate)}, worker {result.cpu_per_job * 1e6:,.0f} µs CPU/job, "
                f"mongod {result.server_cpu:.2f} s CPU, "
                + ("exactly once" if result.ok else result.check.describe())
            )
    return runs


def plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def spread(values: Sequence[float], shown: Callable[[float], str]) -> str:
    """The median, with the smallest and largest value."""
    return f"{shown(statistics.median(values))} ({shown(min(values))}-{shown(max(values))})"


def summary_rows(runs: Sequence[Measured], sides: Sequence[Revision]) -> list[list[str]]:
    """Per metric: each side's median (min-max), B/A of the medians, and B/A within pairs."""
    a, b = sides
    rows = []
    for metric in METRICS:
        by_side = {
            side.label: [metric.value(m.result) for m in runs if m.revision is side]
            for side in sides
        }
        by_pair: dict[int, dict[str, float]] = {}
        for m in runs:
            by_pair.setdefault(m.pair, {})[m.revision.label] = metric.value(m.result)
        paired = [v[b.label] / v[a.label] for v in by_pair.values() if v.get(a.label)]
        a_median, b_median = (statistics.median(by_side[side.label]) for side in sides)
        rows.append(
            [
                metric.title,
                spread(by_side[a.label], metric.shown),
                spread(by_side[b.label], metric.shown),
                f"{b_median / a_median:.3f}" if a_median else "—",
                spread(paired, lambda v: f"{v:.3f}") if paired else "—",
            ]
        )
    return rows


def run_rows(runs: Sequence[Measured]) -> list[list[str]]:
    rows = []
    for m in runs:
        r = m.result
        once = "yes" if r.ok else f"**no**: {r.check.describe()}"
        rows.append(
            [
                str(m.index),
                str(m.pair),
                f"{m.revision.label} `{m.revision.short}`",
                f"{m.load:.2f}",
                f"{r.seconds:.2f}",
                *(metric.shown(metric.value(r)) for metric in METRICS),
                " / ".join(fmt_int(count) for count in r.per_process),
                once,
                str(len(r.errors)) + (f" (first: {r.errors[0]})" if r.errors else ""),
            ]
        )
    return rows


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [table_row(header), table_row(["---"] * len(header)), *map(table_row, rows)]


def render(
    args: argparse.Namespace,
    facts: dict[str, str],
    sides: Sequence[Revision],
    runs: Sequence[Measured],
) -> str:
    a, b = sides
    lines = ["# mongo-job-scheduler A/B benchmark", ""]
    lines += [f"- **{key}**: {value}" for key, value in facts.items()]
    lines += ["", "## Summary", ""]
    duplicates = sum(m.result.check.duplicates for m in runs)
    missing = sum(m.result.check.missing for m in runs)
    errors = sum(len(m.result.errors) for m in runs)
    lines += [
        f"{len(runs)} runs ({plural(args.pairs, 'pair')}): {duplicates} duplicate runs, "
        f"{missing} jobs missing, {errors} worker errors; every run exactly once: "
        f"{'yes' if all(m.result.ok for m in runs) else '**no**'}.",
        "",
    ]
    header = [
        "Metric",
        f"A `{a.short}`: median (min-max)",
        f"B `{b.short}`: median (min-max)",
        "B/A of medians",
        "B/A within pairs: median (min-max)",
    ]
    lines += table(header, summary_rows(runs, sides))
    lines += ["", "## Runs", ""]
    header = [
        "Run",
        "Pair",
        "Side",
        "Load (1 min)",
        "Seconds",
        *(metric.title.split(" (")[0] for metric in METRICS),
        "Jobs per process",
        "Exactly once",
        "Worker errors",
    ]
    lines += table(header, run_rows(runs))
    lines += ["", "## Server work per run", ""]
    lines += [
        f"- Run {m.index} ({m.revision.label} `{m.revision.short}`): {m.result.server}"
        for m in runs
    ]
    return "\n".join(lines)


# -- the run ----------------------------------------------------------------------------------


def job_format_note(sides: Sequence[Revision]) -> str:
    """Whether both revisions shape job documents like this working tree (which writes them)."""
    differ = [
        side.short
        for side in sides
        if subprocess.run(
            ["git", "diff", "--quiet", side.commit, "--", JOB_FORMAT], cwd=REPO
        ).returncode
        != 0
    ]
    if not differ:
        return (
            f"written by this working tree's package for both sides; `{JOB_FORMAT}` is the same "
            f"there as in {' and '.join(side.short for side in sides)}"
        )
    log(f"warning: {JOB_FORMAT} differs between the working tree and {', '.join(differ)}")
    return (
        f"written by this working tree's package; **`{JOB_FORMAT}` differs** in {', '.join(differ)}"
    )


async def main(args: argparse.Namespace) -> int:
    cancel_on_sigterm()
    started_at = utcnow()
    load_before = load_average()
    clock = Stopwatch()
    folder = Path(tempfile.mkdtemp(prefix="mjs-bench-ab-"))
    try:
        sides = []
        for label, name in (("A", args.base), ("B", args.head)):
            (folder / label).mkdir()
            sides.append(materialise(label, name, folder / label))
            log(f"{label} = {sides[-1].commit} ({name}), source in {sides[-1].src}")
        jobs_note = job_format_note(sides)
        async with replica_set_bench(args) as bench:
            build = await bench.client.admin.command("buildInfo")
            runs = await measure(args, bench, sides)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    imported = {
        side.label: sorted({p for m in runs if m.revision is side for p in m.result.packages})
        for side in sides
    }
    facts = {
        "Date": started_at.strftime("%Y-%m-%d %H:%M UTC"),
        **machine_facts(),
        "MongoDB server": (
            f"{build.get('version')} (`{bench.mongod.binary}`), on 127.0.0.1, single-node "
            f"replica set `rs0`, WiredTiger cache {args.cache_gb} GB, one server for every run"
        ),
        **{f"{side.label}": side.describe() for side in sides},
        **{
            f"{label} imported": ", ".join(f"`{path}`" for path in paths)
            for label, paths in imported.items()
        },
        "Workload": (
            f"{args.jobs:,} due no-op jobs per run on a fresh database, "
            f"{plural(args.processes, 'worker process', 'worker processes')} x {args.workers} "
            f"workers, poll interval 0.05 s; jobs/s from `go` to "
            f"the last handler; worker CPU from /proc of the worker processes, mongod CPU from "
            f"serverStatus, both over the same span"
        ),
        "Jobs": jobs_note,
        "Order": (
            f"{plural(args.pairs, 'pair')}, A then B in odd pairs and B then A in even ones, "
            f"one run after the other on one server"
        ),
        "Harness": f"this working tree, at {code_revision()}",
        "Load average before / after": f"{load_before} → {load_average()}",
        "Duration": f"{clock.elapsed / 60:.1f} min",
        "Command": f"`{command_line('scripts/bench-ab', 'bench/ab.py')}`",
    }
    text = render(args, facts, sides, runs)
    print(text)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"ab-{started_at:%Y-%m-%d-%H%M}.md"
    path.write_text(text + "\n")
    log(f"report written to {path}")
    return 0 if all(m.result.ok and not m.result.errors for m in runs) else 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench-ab", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add = parser.add_argument
    add("base", help="revision A (any git revision: a commit, branch or tag)")
    add("head", nargs="?", default="HEAD", help="revision B (default HEAD)")
    add("--pairs", type=int, default=6, help="A/B pairs of runs (default 6)")
    add("--jobs", type=int, default=20_000, help="jobs burnt down per run (default 20000)")
    add("--processes", type=int, default=1, help="worker processes per run (default 1)")
    add("--workers", type=int, default=64, help="workers per process (default 64)")
    add("--cache-gb", type=float, default=1.0, help="mongod WiredTiger cache size (1.0 GB)")
    args = parser.parse_args(argv)
    for key in ("pairs", "jobs", "processes", "workers"):
        if getattr(args, key) < 1:
            parser.error(f"--{key} must be at least 1")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
