#!/usr/bin/env python
"""Django: blocking views enqueue jobs with the blocking facade, and a management command,
``runworker``, runs them in a process of its own until SIGTERM or SIGINT, then stops
gracefully. The scheduler and its tasks live in ``shop/jobs.py``; Django needs no SQL database
(the jobs are in MongoDB).

Run it from ``examples/django_site/`` (the jobs go to the database MONGODB_URI names, else
``django-example``)::

    pip install mongo-job-scheduler django
    export MONGODB_URI=mongodb://localhost:27017/django-example
    python manage.py runworker &                   # the worker: prints the receipts it mails
    python manage.py runserver                     # the site, on port 8000
    curl -X POST localhost:8000/orders/ \\
         -d '{"order": 17, "email": "ada@example.com", "total": "42.00"}'   # {"id": "665f..."}
    curl localhost:8000/jobs/665f1c2e8b3a4d0012ab34cd/   # {"status": "completed", ...}
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")
    from django.core.management import execute_from_command_line

    # Calls django.setup() (settings loaded, apps ready) before running the command.
    execute_from_command_line(sys.argv)
