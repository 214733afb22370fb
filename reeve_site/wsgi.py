"""WSGI entry point for gunicorn."""

import gc
import os
import sys

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

from reeve_site import home

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reeve_site.settings")


def _skip_optional_imports() -> None:
    """DRF imports some packages merely because they are installed (rest_framework/compat.py):
    `requests`, for its test client only, and `django.contrib.postgres.fields`, which loads psycopg,
    for PostgreSQL model fields. A web process on SQLite needs neither, and they cost ~18 MB in each
    gunicorn worker. A None entry in sys.modules makes their import fail, which DRF expects."""
    from pulses.db import is_postgres

    sys.modules.setdefault("requests", None)
    if not is_postgres():
        sys.modules.setdefault("django.contrib.postgres.fields", None)


# As in manage.py: the collector waits while Django and the apps load, then sets what they made aside.
gc.disable()
try:  # a wrong value in .env (PULSE_MAX_CONCURRENT=two): one line and exit 1, as manage.py
    _skip_optional_imports()
    home.prepare()
    application = get_wsgi_application()
except ImproperlyConfigured as exc:
    sys.stderr.write(f"Error: {exc}\n")
    raise SystemExit(1) from None
gc.freeze()
gc.enable()
