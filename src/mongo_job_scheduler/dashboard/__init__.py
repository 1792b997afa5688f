"""A web dashboard for operators: counts and lag at a glance, a filtered and paginated job list,
job details, and actions (cancel, retry, run now, pause/resume a name) behind a token; and the
HTTP API (``create_api``, served by the dashboard at ``/api``).

.. code-block:: python

    import uvicorn
    from pymongo import AsyncMongoClient
    from mongo_job_scheduler import MongoJobStore, Scheduler
    from mongo_job_scheduler.dashboard import create_app

    scheduler = Scheduler(MongoJobStore(AsyncMongoClient(uri)["my-app"]))
    uvicorn.run(create_app(scheduler, token="a long random secret"), port=8080)

Needs the ``dashboard`` extra (``pip install 'mongo-job-scheduler[dashboard]'``).
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the dashboard needs the 'dashboard' extra: pip install 'mongo-job-scheduler[dashboard]'"
    ) from exc

from ._api import create_api
from ._app import create_app

__all__ = ["create_api", "create_app"]
