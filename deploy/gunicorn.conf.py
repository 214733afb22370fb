"""gunicorn settings for Reeve's web process (API, admin, dashboard, metrics).

The bind address comes from Django's settings (PULSE_API_HOST / PULSE_API_PORT, from the environment
or .env), so gunicorn and the rest of Reeve can never disagree about it.
"""

import os

# Private files, as every Reeve process (manage.py): before settings create any folder.
os.umask(0o077)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reeve_site.settings")

import sys  # noqa: E402

from django.conf import settings  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402

try:  # a wrong value in .env (PULSE_MAX_CONCURRENT=two): one line and exit 1, as every command
    bind = f"{settings.PULSE_API_HOST}:{settings.PULSE_API_PORT}"
except ImproperlyConfigured as exc:
    sys.stderr.write(f"Error: {exc}\n")
    raise SystemExit(1) from None
# One process with four threads by default: enough for one household's API and dashboard, and each
# extra process costs ~70 MB resident. API writes take turns anyway (SQLite, pulses/db/write_gate.py).
# WEB_CONCURRENCY / GUNICORN_THREADS (environment or .env) change them; see docs/performance.md.
workers = settings.WEB_CONCURRENCY
threads = settings.GUNICORN_THREADS
# gthread, except that a request is read whole on the worker's poller before a thread takes it, within
# WEB_REQUEST_READ_SECONDS: slow clients (slowloris) cannot hold the threads (pulses/web/slow_clients.py).
worker_class = "pulses.web.slow_clients.DeadlineThreadWorker"
keepalive = 5
timeout = 30
graceful_timeout = 10
accesslog = None
errorlog = "-"
loglevel = settings.LOG_LEVEL.lower()
wsgi_app = "reeve_site.wsgi:application"
umask = 0o077
# No gunicornc control socket (gunicorn 25+ opens one in $XDG_RUNTIME_DIR or ~/.gunicorn by default):
# Reeve never uses it, every Reeve on the machine would share that one path, and the agent, which runs
# as the same user, could add workers to or shut down the web process through it.
control_socket_disable = True


# Metrics: each worker process writes its own files in PROMETHEUS_MULTIPROC_DIR (settings export it
# before prometheus_client is imported); /metrics merges them, so any worker answers for all.
def on_starting(server):
    from pulses.limits import weak_token_reason
    from pulses.ops.lifeline import PARENT_ENV, stop_with_parent
    from pulses.ops.private_files import tighten
    from pulses.web.bind import PortInUse, check_port_free
    from pulses.web.metrics import prepare_multiproc_dir

    if os.environ.get(PARENT_ENV):  # started by `./reeve start`: stop when it goes, however it went
        stop_with_parent("web")
    # A guessable main token opens the agent to anyone who can reach the port: refuse to serve it.
    if reason := weak_token_reason(settings.PULSE_API_TOKEN):
        server.log.error("reeve: refusing to start: %s", reason)
        raise SystemExit(2)
    try:  # one line naming PULSE_API_PORT, instead of gunicorn's five "Connection in use" lines
        check_port_free(settings.PULSE_API_HOST, settings.PULSE_API_PORT)
    except PortInUse as exc:
        server.log.error("reeve: refusing to start: %s", exc)
        raise SystemExit(2) from None
    tighten()  # an installation made before umask 077: its files become private on this start
    prepare_multiproc_dir()


def child_exit(server, worker):
    from pulses.web.metrics import process_exited

    process_exited(worker.pid)
