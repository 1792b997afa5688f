"""Differential runs of our cron maths against ``cron-parser``, the way the Node library uses it.

``node/cron_slots.js`` computes slots with the Node library's own ``getNextRunAt`` (a fresh
``cron-parser`` ``parseExpression(cron, {currentDate: base, tz})`` and one ``next()`` per slot,
each from the previous slot). :func:`explain` sorts every difference from our
:meth:`CronExpression.next_after` into the kept differences listed in ``docs/interop.md``; a
difference it cannot explain is a bug on one side.

Regenerate the committed vectors (``tests/unit/cron_vectors.json``) with::

    python -m tests.interop.cron_diff [--node-modules DIR]

``DIR`` defaults to the interop tests' npm cache (see ``tests/interop/conftest.py``); run the
interop tests once to fill it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NoReturn, TypedDict
from zoneinfo import ZoneInfo

from mongo_job_scheduler._cron import CronError, CronExpression

UTC = timezone.utc
SCRIPT = Path(__file__).parent / "node" / "cron_slots.js"
VECTORS = Path(__file__).parents[1] / "unit" / "cron_vectors.json"
VECTOR_SEED = 20240613
RANDOM_VECTORS = 400

# Zones with one-hour, half-hour (Lord Howe) and midnight (Santiago, Havana) transitions, one
# at +12:45/+13:45 (Chatham), and zones without daylight-saving time.
DST_ZONES = (
    "Europe/Paris",
    "Europe/London",
    "America/New_York",
    "America/Santiago",
    "America/Havana",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
)
ZONES = ("UTC", "Asia/Kolkata", "Asia/Tokyo", *DST_ZONES)

# Kept differences, by the name explain() gives them (docs/interop.md lists them).
KEPT = {
    "node-rejects": "cron-parser rejects an expression we accept",
    "node-loop-limit": "cron-parser gives up on a slot more than 10,000 search steps away",
    "day-of-week-count": "cron-parser counts day-of-week entries, repeats included",
    "day-of-month-count": "cron-parser counts day-of-month entries, repeats included",
    "nth-weekday-filter": "cron-parser keeps only week k of the month for every day with n#k",
    "stepped-sunday": "cron-parser adds Sunday to a stepped day-of-week range ending at 7",
    "dst-gap": "local times that do not exist (our documented DST rule)",
    "dst-repeat": "local times that occur twice (our documented DST rule)",
}


class Case(TypedDict):
    cron: str
    timezone: str
    start: str  # ISO instant, "Z" suffix
    count: int


class Result(TypedDict, total=False):
    slots: list[str]
    error: str
    fields: dict[str, Any] | None


def iso(instant: datetime) -> str:
    """An aware datetime as JavaScript's ``Date.toISOString`` writes it."""
    text = instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text[:-3] + "Z"


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def case(cron: str, start: str, zone: str = "UTC", count: int = 6) -> Case:
    return Case(cron=cron, timezone=zone, start=iso(parse_iso(start)), count=count)


# ---------------------------------------------------------------------------------------
# Running both sides
# ---------------------------------------------------------------------------------------


def run_node(
    node_modules: Path, cases: Sequence[Case], processes: int = 2
) -> tuple[dict[str, str], list[Result]]:
    """The versions in use and cron-parser's slots for each case (dealt out to processes)."""
    chunks = [list(cases[i::processes]) for i in range(processes)]
    with ThreadPoolExecutor(processes) as pool:
        outputs = list(pool.map(lambda chunk: _run_script(node_modules, chunk), chunks))
    results: list[Result] = [Result(slots=[])] * len(cases)
    for index, (_, chunk_results) in enumerate(outputs):
        results[index::processes] = chunk_results
    return outputs[0][0], results


def _run_script(node_modules: Path, cases: list[Case]) -> tuple[dict[str, str], list[Result]]:
    done = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps({"cases": cases}),
        capture_output=True,
        text=True,
        env={**os.environ, "NODE_PATH": str(node_modules)},
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{SCRIPT.name} exited with {done.returncode}: {done.stderr[-4000:]}")
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    if len(lines) != len(cases) + 1:
        raise RuntimeError(f"{SCRIPT.name} printed {len(lines)} lines for {len(cases)} cases")
    return lines[0], lines[1:]


def run_ours(spec: Case) -> Result:
    """Our slots for a case: ``next_after`` from each slot to the next."""
    slots: list[str] = []
    try:
        expr = CronExpression.parse(spec["cron"])
        tz = ZoneInfo(spec["timezone"])
        instant = parse_iso(spec["start"])
        for _ in range(spec["count"]):
            instant = expr.next_after(instant, tz)
            slots.append(iso(instant))
    except CronError as exc:
        return Result(slots=slots, error=str(exc))
    return Result(slots=slots)


def same(node: Result, ours: Result) -> bool:
    """Whether both sides give the same slots (and both stop, or neither, after them)."""
    return node["slots"] == ours["slots"] and ("error" in node) == ("error" in ours)


# ---------------------------------------------------------------------------------------
# Explaining differences
# ---------------------------------------------------------------------------------------

_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # cron-parser's table


@dataclass(frozen=True)
class CronParserDays(CronExpression):
    """Our expression with cron-parser's day matching, built from the day fields it parsed.

    It reproduces cron-parser's rules: a field is unrestricted by the *number* of entries it
    holds (8 for day-of-week; at least the month's length for day-of-month, with February
    always 29), and ``n#k`` keeps only days in week ``k`` of the month, whichever field matched.
    """

    dom_entries: int = 0
    dow_entries: int = 0
    nth: int = 0

    @classmethod
    def build(cls, expr: CronExpression, fields: dict[str, Any]) -> CronParserDays:
        dom, dow = fields["dayOfMonth"], fields["dayOfWeek"]
        return cls(
            source=expr.source,
            has_seconds=expr.has_seconds,
            seconds=expr.seconds,
            minutes=expr.minutes,
            hours=expr.hours,
            days_of_month=tuple(sorted({v for v in dom if isinstance(v, int)})),
            months=expr.months,
            days_of_week=tuple(sorted({v % 7 for v in dow if isinstance(v, int)})),
            last_day_of_month="L" in dom,
            last_weekdays=expr.last_weekdays,
            day_of_week_restricted=True,  # no shortcut in _first_day: ask _day_matches
            dom_entries=len(dom),
            dow_entries=len(dow),
            nth=int(fields["nthDayOfWeek"] or 0),
        )

    def _day_matches(self, day: int, weekday: int, ndays: int) -> bool:
        dom = day in self.days_of_month or (self.last_day_of_month and day == ndays)
        dow = weekday in self.days_of_week or (weekday in self.last_weekdays and day + 7 > ndays)
        dom_all = self.dom_entries >= max(ndays, 29)
        dow_all = self.dow_entries == 8
        if not dom and (not dow or dow_all):
            return False
        if dom_all and not dow_all and not dow:
            return False
        return not self.nth or (day + 6) // 7 == self.nth


def day_field_reasons(expr: CronExpression, fields: dict[str, Any]) -> list[str]:
    """The kept day-field differences this expression has (empty when none applies).

    Each is narrow: a count that differs from ours only because of repeated entries, ``nL``
    items or days past the month's end; the ``n#k`` week filter; Sunday added by a stepped
    range. A change of our rules beyond them shows as an unexplained difference.
    """
    model = CronParserDays.build(expr, fields)
    dom, dow = fields["dayOfMonth"], fields["dayOfWeek"]
    reasons = []
    dow_padded = len(set(dow)) != len(dow) or any(isinstance(v, str) for v in dow)
    if dow_padded and (model.dow_entries == 8) == expr.day_of_week_restricted:
        reasons.append("day-of-week-count")
    for month in expr.months:
        ndays = _DAYS_IN_MONTH[month - 1]
        dom_padded = len(set(dom)) != len(dom) or any(isinstance(v, int) and v > ndays for v in dom)
        if dom_padded and (model.dom_entries >= ndays) == expr.day_of_month_restricted_in(ndays):
            reasons.append("day-of-month-count")
            break
    if model.nth:
        reasons.append("nth-weekday-filter")
    elif set(model.days_of_week) - set(expr.days_of_week) == {0} and "/" in expr.source:
        reasons.append("stepped-sunday")
    return reasons


@functools.cache
def transitions(zone: str, year: int) -> tuple[datetime, ...]:
    """The instants in ``year`` at which ``zone`` changes its UTC offset (to the second)."""
    tz = ZoneInfo(zone)
    out = []
    instant = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    step = timedelta(hours=1)
    offset = instant.astimezone(tz).utcoffset()
    while instant < end:
        following = instant + step
        new_offset = following.astimezone(tz).utcoffset()
        if new_offset != offset:
            low, high = instant, following
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if middle.astimezone(tz).utcoffset() == new_offset:
                    high = middle
                else:
                    low = middle
            out.append(high.replace(microsecond=0))
            offset = new_offset
        instant = following
    return tuple(out)


def transitions_between(zone: str, low: datetime, high: datetime) -> list[str]:
    """The offset changes of ``zone`` after ``low`` and no later than ``high``: ``"dst-gap"``
    for each that moves clocks forward, ``"dst-repeat"`` for each that moves them back."""
    tz = ZoneInfo(zone)
    second = timedelta(seconds=1)
    return [
        "dst-gap" if offset(change, tz) > offset(change - second, tz) else "dst-repeat"
        for year in range(low.year, high.year + 1)
        for change in transitions(zone, year)
        if low < change <= high
    ]


def offset(instant: datetime, tz: ZoneInfo) -> timedelta:
    value = instant.astimezone(tz).utcoffset()
    assert value is not None
    return value


def explain(spec: Case, node: Result, ours: Result) -> str | None:
    """``None`` when both sides agree, else the kept difference that explains the results.

    Raises ``AssertionError`` with the details when no kept difference does.
    """
    if same(node, ours):
        return None
    error = node.get("error", "")
    if node.get("fields") is None and error:
        if "error" in ours and not ours["slots"]:
            return None  # both reject the expression
        if "Invalid explicit day of month definition" in error:
            return "node-rejects"
    # cron-parser stops after 10,000 search steps; the slots before that must still agree.
    gave_up = "loop limit exceeded" in error
    if gave_up and ours["slots"][: len(node["slots"])] == node["slots"]:
        return "node-loop-limit"
    fields = node.get("fields")
    if fields is None or "error" in ours:
        _unexplained(spec, node, ours)
    expr = CronExpression.parse(spec["cron"])
    reasons = day_field_reasons(expr, fields)
    if not reasons:
        return _dst_explains(spec, node["slots"], ours["slots"]) or _unexplained(spec, node, ours)
    model = _model_slots(CronParserDays.build(expr, fields), spec)
    if model == node["slots"] or (gave_up and model[: len(node["slots"])] == node["slots"]):
        return reasons[0]
    return _dst_explains(spec, node["slots"], model) or _unexplained(spec, node, ours)


def _unexplained(spec: Case, node: Result, ours: Result) -> NoReturn:
    raise AssertionError(f"unexplained difference for {spec}:\n  node: {node}\n  ours: {ours}")


def _model_slots(model: CronExpression, spec: Case) -> list[str]:
    tz = ZoneInfo(spec["timezone"])
    instant = parse_iso(spec["start"])
    slots = []
    for _ in range(spec["count"]):
        try:
            instant = model.next_after(instant, tz)
        except CronError:
            break
        slots.append(iso(instant))
    return slots


def _dst_explains(spec: Case, node: list[str], ours: list[str]) -> str | None:
    """``"dst-gap"`` or ``"dst-repeat"`` if the first slot where the lists part is at a
    transition of that kind, else ``None``.

    That is: the zone changes offset after the last slot both agree on (or the start), and
    within a day of one of the two differing slots.
    """
    index = 0
    while index < min(len(node), len(ours)) and node[index] == ours[index]:
        index += 1
    if index == len(node) == len(ours):
        return None
    previous = parse_iso(node[index - 1] if index else spec["start"])
    day = timedelta(days=1)
    for slots in (node, ours):
        if index < len(slots):
            slot = parse_iso(slots[index])
            kinds = transitions_between(spec["timezone"], max(previous, slot - day), slot + day)
            if kinds:
                return kinds[0]
    return None


# ---------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------


def _item(rng: random.Random, low: int, high: int) -> str:
    """A number, range or step within [low, high]."""
    first = rng.randint(low, high)
    last = rng.randint(first, high)
    step = rng.randint(1, high - low + 1)
    return rng.choice(
        [
            str(first),
            str(first),
            f"{first}-{last}",
            f"{first}-{last}",
            f"{first}-{last}/{step}",
            f"*/{step}",
            f"{first}/{step}",
        ]
    )


def _field(rng: random.Random, low: int, high: int, extra: Sequence[str] = ()) -> str:
    if rng.random() < 0.3:
        return "*"
    items = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if extra and rng.random() < 0.2:
            items.append(rng.choice(extra))
        else:
            items.append(_item(rng, low, high))
    return ",".join(items)


DAY_OF_MONTH_EXTRA = ("L", "1-31", "1-30", "1-29", "1-28", "?")
DAY_OF_WEEK_EXTRA = ("SUN", "MON", "FRI", "MON-FRI", "0-6", "SUN-SAT", "1-7", "0-7", "5L", "0L")
MONTH_EXTRA = ("JAN", "FEB", "APR", "FEB-APR")


def random_expression(rng: random.Random) -> str:
    """An expression of the grammar both sides accept (``?`` and ``n#k`` as whole fields)."""
    dom = _field(rng, 1, 31, DAY_OF_MONTH_EXTRA)
    dow = _field(rng, 0, 7, DAY_OF_WEEK_EXTRA)
    if "?" in dom:
        dom = "?"
    if rng.random() < 0.15:
        dow = f"{rng.randint(0, 7)}#{rng.randint(1, 5)}"
    elif rng.random() < 0.05:
        dow = "?"
    fields = [_field(rng, 0, 59), _field(rng, 0, 23), dom, _field(rng, 1, 12, MONTH_EXTRA), dow]
    if rng.random() < 0.2:
        fields.insert(0, _field(rng, 0, 59))
    return " ".join(fields)


def random_start(rng: random.Random, zone: str) -> datetime:
    """An instant in 1995-2040; for zones with DST, often within two days before a transition."""
    year = rng.randint(1995, 2040)
    changes = transitions(zone, year)
    if changes and rng.random() < 0.6:
        start = rng.choice(changes) - timedelta(seconds=rng.randint(0, 2 * 86400))
    else:
        start = datetime(year, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(366 * 86400))
    if rng.random() < 0.1:
        start += timedelta(milliseconds=rng.randint(1, 999))
    return start


def random_cases(rng: random.Random, count: int) -> list[Case]:
    out = []
    for _ in range(count):
        zone = rng.choice(ZONES)
        out.append(
            Case(
                cron=random_expression(rng),
                timezone=zone,
                start=iso(random_start(rng, zone)),
                count=6,
            )
        )
    return out


# Day-of-week fields naming each day once: restricted, so with a restricted day-of-month the
# two fields combine with OR.
DOW_EVERY_DAY_ONCE = ("0-6", "SUN-SAT", "1-6,0", "0-6/1", "MON-SAT,SUN", "0,1-6", "1-6,7")
# Day-of-week fields naming 0 and 7 (a range up to 7 names both): unrestricted.
DOW_UNRESTRICTED = ("*", "?", "*/1", "0-7", "1-7", "0-7/1", "0-6,7", "SUN-SAT,7")
DOM_RESTRICTED = ("13", "1,15", "L", "1-10", "*/10")
# Day-of-month fields naming every day of some months (February counts 29 days).
DOM_LONG = ("1-31", "*/1", "?", "1-30", "1-29", "1-28", "1-28,L", "1-29,L", "1-30,L", "1-15,16-31")
DOW_RESTRICTED = ("1", "MON-FRI", "5L", "SAT,SUN")

OTHER_EXPRESSIONS = (
    "0 0 * * 5#2",
    "0 0 ? * 1#1",
    "0 0 * * 0#5",
    "0 0 1-31 * 3#3",
    "0 12 * * 7#1",
    "30 8 * 1-6 MON#3",
    "0 0 L * *",
    "0 0 L 2 *",
    "0 0 * * 5L",
    "0 0 * * 7L",
    "0 0 L * 1",
    "0 0 15,L * *",
    "0 0 L * 5L",
    "@yearly",
    "@monthly",
    "@weekly",
    "@daily",
    "@hourly",
    "*/15 * * * *",
    "0 */6 * * *",
    "5-20/5 1,13 * * *",
    "0 9-17 * * MON-FRI",
    "0 0 1 */3 *",
    "0 0 1 JAN,JUL *",
    "*/10 * * * * *",
    "0 0 12 * * 1",
    "30 30 2 * * *",
    "0 0 29 2 *",
    "0 0 31 * *",
    "59 59 23 31 12 *",
    "0 0 * * 1/2",
    "0 0 * * 1-7/2",
    "0 0 * * */2",
    "0 0 */2 * 1",
    "0 0 1-30 4 1",
    "0 0 1-29 2 1",
    "0 0 1-28 2 1",
    "0 0 1-31 2 1",
    "0 0 1,15 * 1-5",
)

# Schedules that both sides run alike through DST transitions: every hour and every minute
# (a wildcard hour), and fixed hours whose lost times include minute 0 of the hour after a
# one-hour gap, or that repeat at a one-hour fall-back away from midnight.
DST_AGREED = (
    ("0 * * * *", DST_ZONES, 8),
    ("*/20 * * * *", DST_ZONES, 12),
    ("* * * * *", DST_ZONES, 40),
    ("0 30 * * * *", DST_ZONES, 8),
    ("0 2 * * *", ("Europe/Paris", "America/New_York"), 4),
    ("*/15 2 * * *", ("Europe/Paris", "America/New_York"), 6),
    ("0 1 * * *", ("Europe/London",), 4),
    ("30 1 * * *", ("Europe/Paris", "America/New_York"), 4),
    ("0 0 * * *", ("Europe/Paris", "Australia/Lord_Howe", "Pacific/Chatham"), 4),
)


def edge_cases() -> list[tuple[str, Case]]:
    """Hand-picked cases on which both sides agree, each with its group name."""
    out: list[tuple[str, Case]] = []
    zones = iter(ZONES * 100)
    for dow in DOW_EVERY_DAY_ONCE + DOW_UNRESTRICTED:
        for dom in DOM_RESTRICTED:
            spec = case(f"0 9 {dom} * {dow}", "2024-01-01T00:00:00Z", next(zones), count=10)
            out.append(("day-of-week-naming-every-day", spec))
    for dom in DOM_LONG:
        for dow in DOW_RESTRICTED:
            for start in ("2023-01-25", "2024-01-25", "2023-03-28", "2024-06-25"):
                spec = case(f"0 0 {dom} * {dow}", f"{start}T12:00:00Z", count=12)
                out.append(("day-of-month-naming-every-day", spec))
    for index, cron in enumerate(OTHER_EXPRESSIONS):
        for start in ("2023-01-25T12:00:00Z", "2024-02-26T03:00:00.250Z"):
            zone = ZONES[index % len(ZONES)]
            out.append(("syntax", case(cron, start, zone, count=8)))
    for cron, zones_, count in DST_AGREED:
        for zone in zones_:
            for year in (2000, 2024, 2037):
                for change in transitions(zone, year):
                    start = iso(change - timedelta(minutes=10 if count > 20 else 150))
                    out.append(("dst-agreed", case(cron, start, zone, count=count)))
    return out


# One example of each kept difference (docs/interop.md shows these expressions).
KEPT_EXAMPLES: tuple[tuple[str, Case], ...] = (
    ("node-rejects", case("0 0 31 4 1", "2024-01-01T00:00:00Z")),
    ("node-loop-limit", case("0 0 * 2 1#5", "2045-03-01T00:00:00Z", count=2)),
    ("day-of-week-count", case("0 0 13 * 0-6,0", "2024-01-01T00:00:00Z")),
    ("day-of-month-count", case("0 0 2-31 * 1", "2024-04-01T00:00:00Z")),
    ("nth-weekday-filter", case("0 0 1 * 5#2", "2024-01-01T00:00:00Z")),
    ("stepped-sunday", case("0 0 * * 2-7/2", "2024-01-01T00:00:00Z")),
    ("dst-gap", case("30 2 * * *", "2024-03-30T12:00:00Z", "Europe/Paris", count=2)),
    ("dst-gap", case("0 0 * * *", "2024-09-07T12:00:00Z", "America/Santiago", count=2)),
    ("dst-gap", case("0 2 * * *", "2024-10-05T12:00:00Z", "Australia/Lord_Howe", count=2)),
    ("dst-repeat", case("30 1 * * *", "2024-04-06T12:00:00Z", "Australia/Lord_Howe", count=2)),
    ("dst-repeat", case("46 * * * 0", "2024-11-02T20:00:00Z", "America/Havana", count=4)),
)


def vector_cases() -> list[tuple[str, Case]]:
    """The inputs of the committed vectors: the edge cases, then a seeded random sample."""
    sample = random_cases(random.Random(VECTOR_SEED), RANDOM_VECTORS)
    return edge_cases() + [("random", spec) for spec in sample]


def differences(
    cases: Sequence[Case], node: Sequence[Result]
) -> tuple[list[str | None], list[str]]:
    """Per case, the kept difference (or ``None``); and the unexplained differences."""
    kinds: list[str | None] = []
    unexplained = []
    for spec, result in zip(cases, node, strict=True):
        try:
            kinds.append(explain(spec, result, run_ours(spec)))
        except AssertionError as exc:
            kinds.append("unexplained")
            unexplained.append(str(exc))
    return kinds, unexplained


def write_vectors(node_modules: Path, path: Path = VECTORS) -> int:
    """Write the agreed vectors to ``path``; fail on any unexplained difference."""
    groups_and_cases = vector_cases()
    cases = [spec for _, spec in groups_and_cases]
    versions, node = run_node(node_modules, cases)
    kinds, unexplained = differences(cases, node)
    if unexplained:
        raise SystemExit("unexplained differences:\n" + "\n".join(unexplained))
    vectors = []
    for (group, spec), result, kind in zip(groups_and_cases, node, kinds, strict=True):
        if kind is not None:
            if group != "random":
                raise SystemExit(f"edge case {spec} differs ({kind}); move it to KEPT_EXAMPLES")
            continue
        if "error" in result:
            continue  # rejected by both sides
        vectors.append({"group": group, **spec, "slots": result["slots"]})
    document = {
        "about": (
            "Cron slots computed by the Node library mongo-job-scheduler (cron-parser, through "
            "its getNextRunAt), each slot from the previous one. Generated by "
            "`python -m tests.interop.cron_diff`; do not edit by hand."
        ),
        "versions": versions,
        "seed": VECTOR_SEED,
        "vectors": vectors,
    }
    head = json.dumps({**document, "vectors": []}, indent=1)[: -len("[]\n}")]
    rows = ",\n".join(f"  {json.dumps(vector)}" for vector in vectors)
    path.write_text(f"{head}[\n{rows}\n ]\n}}\n")  # one vector a line
    return len(vectors)


def default_node_modules() -> Path:
    from tests.interop.conftest import CACHE_KEY, _cache_root

    return _cache_root() / CACHE_KEY / "node_modules"


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--node-modules", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=VECTORS)
    args = parser.parse_args(list(argv) if argv is not None else None)
    node_modules = args.node_modules or default_node_modules()
    written = write_vectors(node_modules, args.output)
    print(f"wrote {written} vectors to {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
