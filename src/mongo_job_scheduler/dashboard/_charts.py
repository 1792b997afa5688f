"""The overview's charts as geometry for server-rendered SVG (no script draws them): jobs
finished per minute stacked by outcome, the wait before starts per minute, and the status mix
of each job name. Each is drawn in a fixed ``viewBox`` that the page stretches to its width;
the numbers are in the page as text too."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from .._format import fmt_duration
from ..stats import Throughput

__all__ = [
    "CHART_HEIGHT",
    "OUTCOMES",
    "SLOT_WIDTH",
    "BarChart",
    "Segment",
    "axis_duration",
    "finished_chart",
    "mix_segments",
    "nice_ceiling",
    "nice_duration",
    "wait_chart",
]

OUTCOMES = ("completed", "failed", "cancelled")
"""The outcomes stacked in the finished chart, from the bottom up."""
SLOT_WIDTH = 10
"""Width of one minute's slot in the charts' ``viewBox`` (a bar leaves a gap of 1 each side)."""
CHART_HEIGHT = 100
"""Height of the charts' ``viewBox``: the top is the scale's maximum."""


@dataclass(frozen=True)
class Segment:
    """One rectangle: ``kind`` (an outcome, a status or ``wait``) names its colour class."""

    kind: str
    x: float
    y: float
    width: float
    height: float
    value: int


@dataclass(frozen=True)
class Bar:
    """One minute: when it starts, the text of its tooltip, and its segments."""

    minute: datetime
    label: str
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class BarChart:
    """Bars over ``slots`` minutes; ``top`` is the value at the top of the scale."""

    width: int
    slots: int
    top: float
    bars: tuple[Bar, ...]

    @property
    def empty(self) -> bool:
        return not self.bars


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is at least ``value`` (1 for nothing)."""
    if value <= 1:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)  # pragma: no cover - the loop always returns


DURATION_STEPS = (
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30,
    60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
)  # fmt: skip
"""Tops of the wait chart's scale, in seconds: round durations (10 ms to a day)."""


def nice_duration(seconds: float) -> float:
    """The smallest of :data:`DURATION_STEPS` that is at least ``seconds`` (whole days
    beyond)."""
    for step in DURATION_STEPS:
        if seconds <= step:
            return step
    return 86400.0 * math.ceil(seconds / 86400)


def axis_duration(seconds: float) -> str:
    """A top of the wait chart's scale as a label: ``500 ms``, ``30 s``, ``2 min``, ``6 h``."""
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


def _ago(index: int, count: int) -> str:
    minutes = count - 1 - index
    return "this minute" if minutes == 0 else f"{minutes} min ago"


def finished_chart(throughput: Throughput) -> BarChart:
    """A bar per minute with a finished job, its outcomes stacked (completed at the bottom)."""
    count = len(throughput.minutes)
    top = nice_ceiling(max([m.finished for m in throughput.minutes], default=0))
    bars = []
    for index, minute in enumerate(throughput.minutes):
        if not minute.finished:
            continue
        segments, base = [], 0
        for outcome in OUTCOMES:
            value = getattr(minute, outcome)
            if value:
                segments.append(_segment(outcome, index, base, value, top))
                base += value
        counts = ", ".join(f"{getattr(minute, o)} {o}" for o in OUTCOMES)
        bars.append(Bar(minute.start, f"{_ago(index, count)}: {counts}", tuple(segments)))
    return BarChart(count * SLOT_WIDTH, count, top, tuple(bars))


def wait_chart(throughput: Throughput) -> BarChart:
    """A bar per minute: the longest wait between due time and start among the jobs that
    finished in it (scaled in seconds)."""
    count = len(throughput.minutes)
    longest = throughput.max_wait
    top = nice_duration(longest.total_seconds()) if longest is not None else 1
    bars = []
    for index, minute in enumerate(throughput.minutes):
        if minute.max_wait is None:
            continue
        seconds = minute.max_wait.total_seconds()
        segment = _segment("wait", index, 0, seconds, top, value=round(seconds * 1000))
        label = f"{_ago(index, count)}: longest wait {fmt_duration(minute.max_wait)}"
        bars.append(Bar(minute.start, label, (segment,)))
    return BarChart(count * SLOT_WIDTH, count, top, tuple(bars))


def _segment(
    kind: str, index: int, base: float, amount: float, top: float, value: int | None = None
) -> Segment:
    height = CHART_HEIGHT * amount / top
    y = CHART_HEIGHT - CHART_HEIGHT * base / top - height
    shown = int(amount if value is None else value)
    return Segment(kind, index * SLOT_WIDTH + 1, y, SLOT_WIDTH - 2, height, shown)


def mix_segments(counts: Mapping[str, int], statuses: Sequence[str]) -> list[Segment]:
    """A name's jobs by status as parts of a bar 100 wide (in the order of ``statuses``)."""
    total = sum(counts.get(status, 0) for status in statuses)
    segments: list[Segment] = []
    x = 0.0
    for status in statuses:
        value = counts.get(status, 0)
        if value and total:
            width = 100 * value / total
            segments.append(Segment(status, x, 0, width, 1, value))
            x += width
    return segments
