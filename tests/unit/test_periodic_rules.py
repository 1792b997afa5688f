"""What a periodic declaration stores, and what must change in a stored job to match it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from mongo_job_scheduler import Repeat
from mongo_job_scheduler._periodic import declare, periodic_key, update_for
from mongo_job_scheduler.retry import Retry

NOW = datetime(2026, 6, 1, 12, tzinfo=timezone.utc)


def declaration(**options: Any) -> Any:
    base: dict[str, Any] = {
        "cron": "0 2 * * *",
        "every": None,
        "timezone_name": None,
        "misfire": "once",
        "catch_up_limit": 100,
        "data": {"v": 1},
        "retry": None,
        "priority": 5,
        "concurrency": None,
        "max_execution": None,
        "timeout": None,
    }
    return declare("nightly", **{**base, **options})


def stored(**options: Any) -> dict[str, Any]:
    return dict(declaration(**options).new_job(NOW, "UTC").document)


def test_the_job_is_deduped_forever_under_the_declaration_key() -> None:
    doc = stored()
    assert doc["dedupeKey"] == periodic_key("nightly") == "periodic:nightly"
    assert doc["dedupeScope"] == "forever"
    assert doc["repeat"] == {"cron": "0 2 * * *", "timezone": "UTC"}
    assert doc["nextRunAt"] == datetime(2026, 6, 2, 2, tzinfo=timezone.utc)


def test_a_matching_job_needs_no_change() -> None:
    assert update_for(declaration(), stored(), "UTC") == {}


def test_each_changed_field_maps_to_its_update_argument() -> None:
    old = stored(timeout=30, retry=3, concurrency=2)
    new = declaration(cron="5 4 * * *", data={"v": 2}, timeout=60, retry=None, priority=1)
    assert update_for(new, old, "UTC") == {
        "repeat": Repeat(cron="5 4 * * *", timezone="UTC"),
        "data": {"v": 2},
        "timeout": timedelta(seconds=60),
        "retry": None,
        "priority": 1,
        "concurrency": None,
    }
    assert update_for(declaration(retry=4), stored(), "UTC") == {"retry": Retry(max_attempts=4)}
