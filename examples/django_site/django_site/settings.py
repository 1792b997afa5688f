"""Settings of the example site. Django itself needs no SQL database here: the jobs live in
MongoDB, at ``MONGODB_URI`` (the database it names, else ``django-example``)."""

import os

MONGODB_URI = os.environ.get("MONGODB_URI", "mongodb://localhost:27017")

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "django_site.urls"
INSTALLED_APPS = ["shop"]
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

# What the job handlers use: mail, sent by the worker process (printed, in this example).
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = "shop@example.com"
