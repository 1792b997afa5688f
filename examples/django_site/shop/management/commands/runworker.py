"""``python manage.py runworker``: run the job workers until SIGTERM or SIGINT (Ctrl-C), then
stop gracefully: no new job is claimed, running ones get ``--stop-timeout`` seconds to finish,
and those still running then are handed back to another worker.

``manage.py`` has called ``django.setup()`` before this command runs, so the handlers in
``shop.jobs`` find the settings loaded and the apps ready.
"""

from __future__ import annotations

import asyncio
import signal
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from pymongo import AsyncMongoClient

from mongo_job_scheduler import MongoJobStore
from shop.jobs import DATABASE, scheduler


class Command(BaseCommand):
    help = "Run the job workers until SIGTERM or SIGINT, then stop gracefully."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--workers", type=int, default=4, help="jobs run at once")
        parser.add_argument("--stop-timeout", type=float, default=30, help="seconds")

    def handle(self, *args: Any, **options: Any) -> None:
        asyncio.run(self.work(options["workers"], options["stop_timeout"]))

    async def work(self, workers: int, stop_timeout: float) -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.MONGODB_URI)
        store = MongoJobStore(client.get_default_database(DATABASE))
        scheduler.configure(store=store, workers=workers)
        try:
            await scheduler.start()
            self.stderr.write(f"worker started: names={', '.join(scheduler.handled_names() or [])}")
            await stop.wait()
            self.stderr.write("stopping gracefully")
            await scheduler.stop(graceful=True, timeout=stop_timeout)
        finally:
            await client.close()
        self.stderr.write("stopped")
