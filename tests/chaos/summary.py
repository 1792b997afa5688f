"""Print the chaos scenarios' figures (the JSON files ``harness.report`` wrote) as markdown.

Run by ``scripts/chaos`` after the suite: ``python -m tests.chaos.summary DIR``.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list):
        return "; ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_cell(v)}" for k, v in value.items())
    return str(value)


def _rows(prefix: str, data: dict[str, Any], depth: int = 0) -> list[str]:
    """Nested figures become dotted rows (two levels deep; deeper ones stay in one cell)."""
    rows = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < 2:
            rows += _rows(f"{name}.", value, depth + 1)
        else:
            rows.append(f"| {name} | {_cell(value)} |")
    return rows


def render(directory: Path) -> str:
    """One section per scenario, one row per figure, in the order the scenario gave them."""
    lines = [
        "# Chaos suite figures",
        "",
        f"Machine: {platform.machine()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}.",
        "",
    ]
    reports = sorted(directory.glob("*.json"))
    if not reports:
        return "\n".join([*lines, "No scenario wrote figures."])
    for path in reports:
        data = json.loads(path.read_text())
        lines += [f"## {data.pop('scenario', path.stem)} ({data.pop('size', '?')} size)", ""]
        lines += ["| figure | value |", "|---|---|"]
        lines += _rows("", data)
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/chaos/.results")))
