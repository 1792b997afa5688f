"""Test helpers for applications that use mongo-job-scheduler: a pytest plugin and ``drain``.

Installed with the library and loaded by pytest through its ``pytest11`` entry point, it adds:

- ``mjs_mongodb_uri`` (session): ``$MONGODB_URI``, or a throwaway local single-node replica set.
- ``mjs_database``: a fresh ``AsyncDatabase`` per test, dropped afterwards.
- ``mjs_store``: a :class:`~mongo_job_scheduler.MongoJobStore` on it.
- ``mjs_scheduler``: a :class:`~mongo_job_scheduler.Scheduler` on that store, not started.

and :func:`drain`, which runs every due job to completion so a test can assert on the outcome.
The async fixtures need pytest-asyncio. See ``docs/testing.md``.
"""

from __future__ import annotations

from ._drain import drain

__all__ = ["drain"]

try:
    from ._plugin import mjs_database, mjs_mongodb_uri, mjs_scheduler, mjs_store
except ModuleNotFoundError as exc:  # pragma: no cover - pytest missing: drain still works
    if exc.name != "pytest":
        raise
else:
    __all__ += ["mjs_database", "mjs_mongodb_uri", "mjs_scheduler", "mjs_store"]
