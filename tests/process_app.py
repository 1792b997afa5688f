"""The application of the process-executor worker tests, run through the real CLI:

    python -m mongo_job_scheduler --mongodb-uri URI --database DB worker tests.process_app:scheduler

Its handlers run in child processes; they are imported from ``tests.process_handlers``."""

from __future__ import annotations

from mongo_job_scheduler import Scheduler
from tests import process_handlers

scheduler = Scheduler(poll_interval=0.05, process_pool=2, workers=2)
scheduler.task("spin", executor="process")(process_handlers.spin)
scheduler.task("wait_for_file", executor="process")(process_handlers.wait_for_file)
