"""Reeve settings: every value comes from the environment or an optional `.env` (django-environ)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from reeve_site import original_db_url
from reeve_site.dotenv import DotenvError, read_dotenv
from reeve_site.home import read_secret_key
from reeve_site.hosts import bound_host_names

BASE_DIR = Path(__file__).resolve().parent.parent

# An optional .env in the repository root; real environment variables win over it. Its values are
# read into a mapping the settings look up, never copied into os.environ: whatever this process
# starts (gunicorn, the reaper, wake checks, the agent) would otherwise carry Reeve's secrets in its
# environment, which /proc/PID/environ shows to any process of the same user. DOTENV keeps them for
# the agent's allowlist (pulses/agent/env.py passes CLI_API_TOKEN, ANTHROPIC_* ... from it). The test
# settings set REEVE_IGNORE_DOTENV so a developer's own .env never leaks into the tests.
DOTENV: dict[str, str] = {}
if (BASE_DIR / ".env").is_file() and not environ.Env().bool("REEVE_IGNORE_DOTENV", default=False):
    try:
        DOTENV = read_dotenv(BASE_DIR / ".env")
    except DotenvError as exc:  # every command would fail on it: say where, not a traceback
        sys.exit(f"reeve: cannot read .env: {exc}")


class _Env(environ.Env):
    """django-environ reading `.env` under the real environment (a mapping, not os.environ)."""

    ENVIRON = {**DOTENV, **os.environ}


env = _Env()


def _path(name: str, default: str) -> Path:
    return Path(env.str(name, default=default)).expanduser()


REEVE_HOME = _path("REEVE_HOME", "~/.reeve")
PULSE_DB_PATH = _path("PULSE_DB_PATH", str(REEVE_HOME / "pulse_queue.db"))
DATABASE_URL = env.str("DATABASE_URL", default="")


def _original_database(value: str) -> tuple[Path, str, str]:
    """PULSE_DB_PATH, DATABASE_URL and a note, from the original Reeve's PULSE_DB_URL.

    It is the database when neither of Reeve's own variables is set; naming another one is an error.
    """
    try:
        original = original_db_url.parse(value, base_dir=BASE_DIR)
    except original_db_url.OriginalUrlError as exc:
        raise ImproperlyConfigured(f"PULSE_DB_URL: {exc}") from None
    if DATABASE_URL:
        ours, agrees = "DATABASE_URL", original_db_url.same_postgres(original.database_url, DATABASE_URL)
    elif env.str("PULSE_DB_PATH", default=""):
        ours, agrees = "PULSE_DB_PATH", original.sqlite_path == PULSE_DB_PATH
    else:
        name = "PULSE_DB_PATH" if original.sqlite_path else "DATABASE_URL"
        note = (
            f"note: the database is {original.describe()}, from PULSE_DB_URL (the original Reeve's "
            f"setting); Reeve's own name for it is {name}: set {name}={original.describe()} instead"
        )
        return original.sqlite_path or PULSE_DB_PATH, original.database_url, note
    if not agrees:
        shown = original_db_url.without_password(DATABASE_URL) if DATABASE_URL else PULSE_DB_PATH
        raise ImproperlyConfigured(
            f"PULSE_DB_URL (the original Reeve's setting: {original.describe()}) and {ours} ({shown}) "
            f"name different databases: keep {ours} and remove PULSE_DB_URL from .env and the environment"
        )
    return PULSE_DB_PATH, DATABASE_URL, ""


# The original Reeve named its database PULSE_DB_URL; see _original_database.
PULSE_DB_URL_NOTE = ""
if _pulse_db_url := env.str("PULSE_DB_URL", default=""):
    PULSE_DB_PATH, DATABASE_URL, PULSE_DB_URL_NOTE = _original_database(_pulse_db_url)

# prometheus-client reads this from the environment when it is first imported: every Reeve process
# (gunicorn workers, the pulse worker) writes its metrics there and /metrics merges them.
# Reading these settings creates no folder and writes no file: `reeve_site.home.prepare()` does that
# for the processes that need it (manage.py's commands, the web process).
PROMETHEUS_MULTIPROC_DIR = _path("PROMETHEUS_MULTIPROC_DIR", str(REEVE_HOME / "metrics"))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)

# SECRET_KEY from the environment, else the one generated once beside the database (see home.prepare).
SECRET_KEY_FILE = PULSE_DB_PATH.parent / "secret_key"
SECRET_KEY = env.str("SECRET_KEY", default="") or read_secret_key(SECRET_KEY_FILE)
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "reeve_site.admin_app.AdminConfig",  # the admin, its ModelAdmins loaded by urls.py
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "pulses",
    "telegram_bridge",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "pulses.web.metrics.ApiMetricsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "reeve_site.urls"
WSGI_APPLICATION = "reeve_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite by default; DATABASE_URL (e.g. postgres://user:pass@host/db) switches everything to it.
# How long a write waits for another (SQLite's busy timeout and Reeve's write gate); then 503.
SQLITE_BUSY_TIMEOUT_SECONDS = env.int("SQLITE_BUSY_TIMEOUT_SECONDS", default=30)
if DATABASE_URL:
    DATABASES = {"default": env.db_url_config(DATABASE_URL)}
    # Long-lived worker threads keep their connection; a broken one is noticed and replaced.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": PULSE_DB_PATH,
            # A local file: keep each thread's connection open (opening one costs more than a claim).
            "CONN_MAX_AGE": None,
            "OPTIONS": {
                # Every transaction takes the write lock up front (BEGIN IMMEDIATE), so two
                # processes never deadlock upgrading a read lock; writers wait instead of failing.
                "transaction_mode": "IMMEDIATE",
                "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
                "init_command": (
                    # Only takes effect in a new file (before its first table): retention can then
                    # hand freed pages back (prune_history --vacuum-full converts an older file).
                    "PRAGMA auto_vacuum=INCREMENTAL;"
                    "PRAGMA journal_mode=WAL;"
                    "PRAGMA synchronous=NORMAL;"
                    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000};"
                ),
            },
            # A file, not memory: worker threads, the waiter and test subprocesses open it too.
            "TEST": {"NAME": str(PULSE_DB_PATH.with_name(f"test_{PULSE_DB_PATH.name}"))},
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# `collectstatic` target for a server that wants it; until then whitenoise serves from the finders.
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
# Serve the app's own assets straight from the finders when collectstatic has not been run.
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "/admin/login/"

# --- Reeve ------------------------------------------------------------------------------------
HAPI_COMMAND = env.str("HAPI_COMMAND", default="hapi")
# The agent a bare `hapi` runs (`hapi claude ...`); a HAPI_COMMAND naming one is used as it is.
HAPI_AGENT = env.str("HAPI_AGENT", default="claude")
# The user's own additions to the agent's allowlisted environment: names, or prefixes as `NAME_*`.
AGENT_ENV_PASSTHROUGH = env.list("AGENT_ENV_PASSTHROUGH", default=[])
REEVE_DESK_PATH = _path("REEVE_DESK_PATH", "~/my_reeve")
# --- The agent's containment (pulses/agent/sandbox.py, SECURITY.md) ---
# auto: run the agent in a bubblewrap sandbox when `bwrap` is installed and works, else uncontained
# (doctor warns); bwrap: always (a missing or broken bwrap stops the worker from running pulses);
# off: never.
AGENT_SANDBOX = env.str("AGENT_SANDBOX", default="auto").strip().lower()
PULSE_API_HOST = env.str("PULSE_API_HOST", default="127.0.0.1")
# Binding elsewhere than loopback means serving requests sent there (the guide's remote access).
ALLOWED_HOSTS += [name for name in bound_host_names(PULSE_API_HOST) if name not in ALLOWED_HOSTS]
PULSE_API_PORT = env.int("PULSE_API_PORT", default=8765)
PULSE_API_TOKEN = env.str("PULSE_API_TOKEN", default="")
# Where the agent's MCP tools reach the API (with the run's token); a wildcard bind is reached on loopback.
_API_HOST = "127.0.0.1" if PULSE_API_HOST in ("", "0.0.0.0", "::") else PULSE_API_HOST  # noqa: S104
_API_HOST = f"[{_API_HOST}]" if ":" in _API_HOST else _API_HOST
REEVE_API_URL = env.str("REEVE_API_URL", default=f"http://{_API_HOST}:{PULSE_API_PORT}")
PULSE_MAX_CONCURRENT = env.int("PULSE_MAX_CONCURRENT", default=1)
# The express lane: slots beyond PULSE_MAX_CONCURRENT that only critical pulses (a person's Telegram
# message) take, so one never waits behind background work; 0 turns it off.
PULSE_CRITICAL_RESERVED = env.int("PULSE_CRITICAL_RESERVED", default=1)
# Priorities a critical pulse may interrupt when no slot is free (e.g. "deferred,low"); off when empty.
PULSE_PREEMPT = env.list("PULSE_PREEMPT", default=[])
# A critical pulse that waits this long for its session's run tells the chat it is still busy.
PULSE_BUSY_NOTICE_SECONDS = env.float("PULSE_BUSY_NOTICE_SECONDS", default=5.0)
PULSE_TIMEOUT_SECONDS = env.float("PULSE_TIMEOUT_SECONDS", default=3600)
PULSE_LEASE_SECONDS = env.float("PULSE_LEASE_SECONDS", default=60)
PULSE_SHUTDOWN_GRACE_SECONDS = env.float("PULSE_SHUTDOWN_GRACE_SECONDS", default=30)
PULSE_RETRY_CAP_MINUTES = env.int("PULSE_RETRY_CAP_MINUTES", default=60)
# The worker's safety poll: a commit wakes it at once (inotify on SQLite, NOTIFY on PostgreSQL); this
# only bounds how late it notices a change that sent neither (a PostgreSQL row changed by hand).
PULSE_POLL_SECONDS = env.float("PULSE_POLL_SECONDS", default=5.0)
# How often the worker records that it is alive (reeve-status, /api/status count it alive for 2 min).
PULSE_HEARTBEAT_SECONDS = env.float("PULSE_HEARTBEAT_SECONDS", default=10.0)
# gunicorn (deploy/gunicorn.conf.py): processes and threads each.
WEB_CONCURRENCY = env.int("WEB_CONCURRENCY", default=1)
GUNICORN_THREADS = env.int("GUNICORN_THREADS", default=4)
# One Reeve per installation (pulses/ops/instance_lock.py): beside the SQLite database, else in REEVE_HOME.
REEVE_LOCK_FILE = (
    REEVE_HOME / "reeve.instance-lock"
    if env.str("DATABASE_URL", default="")
    else PULSE_DB_PATH.with_name(f"{PULSE_DB_PATH.name}.instance-lock")
)
# Retention (manage.py prune_history, daily from cron): finished pulses go after this many days,
# failed ones after the longer of the two, output tails sooner; 0 keeps them all.
PULSE_HISTORY_DAYS = env.int("PULSE_HISTORY_DAYS", default=180)
PULSE_FAILED_HISTORY_DAYS = env.int("PULSE_FAILED_HISTORY_DAYS", default=365)
PULSE_OUTPUT_TAIL_DAYS = env.int("PULSE_OUTPUT_TAIL_DAYS", default=30)

TELEGRAM_BOT_TOKEN = env.str("TELEGRAM_BOT_TOKEN", default="")
TELEGRAM_CHAT_ID = env.list("TELEGRAM_CHAT_ID", default=[])
TELEGRAM_API_BASE_URL = env.str("TELEGRAM_API_BASE_URL", default="https://api.telegram.org/bot")
# Files sent in Telegram larger than this are not downloaded (20 MB is the Bot API's own limit).
TELEGRAM_MAX_FILE_MB = env.float("TELEGRAM_MAX_FILE_MB", default=20)
# Called by the worker with the pulse id when a pulse fails for good (retries exhausted).
PULSE_FAILURE_HOOKS = ["telegram_bridge.alerts.alert_pulse_failed"]
# Called by the worker with the routine id when failed runs in a row paused a routine.
ROUTINE_PAUSE_HOOKS = ["telegram_bridge.alerts.alert_routine_paused"]
# A wake check (a routine's or a pulse's check_command) is stopped after this many seconds.
PULSE_CHECK_TIMEOUT_SECONDS = env.float("PULSE_CHECK_TIMEOUT_SECONDS", default=60)
# The guard rails on what the agent schedules itself through its MCP tools (not the owner's).
AGENT_ROUTINE_MIN_INTERVAL_MINUTES = env.int("AGENT_ROUTINE_MIN_INTERVAL_MINUTES", default=15)
AGENT_MAX_ACTIVE_ROUTINES = env.int("AGENT_MAX_ACTIVE_ROUTINES", default=20)
AGENT_PULSES_PER_HOUR = env.int("AGENT_PULSES_PER_HOUR", default=60)
# Called by the worker with a critical pulse's id once it has waited PULSE_BUSY_NOTICE_SECONDS for
# the run of its session.
PULSE_WAITING_HOOKS = ["telegram_bridge.notices.tell_still_working"]

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOG_FILE = env.str("LOG_FILE", default=str(REEVE_HOME / "logs" / "daemon.log"))
LOG_FILE = str(Path(LOG_FILE).expanduser()) if LOG_FILE else ""

_handlers = ["console"]
LOGGING: dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(process)d %(name)s %(message)s"},
        "console": {
            "()": "reeve_site.log.ConsoleFormatter",
            "format": "%(asctime)s %(levelname)s %(process)d %(name)s %(message)s",
        },
    },
    # On every handler: whatever logger a line comes from (telegram, httpx at DEBUG print the Bot API
    # URL, which holds the bot token), no secret reaches stdout, the journal or LOG_FILE.
    "filters": {"redact_secrets": {"()": "reeve_site.log.RedactSecrets"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "console",
            "stream": "ext://sys.stderr",
            "filters": ["redact_secrets"],
        },
    },
    "root": {"handlers": _handlers, "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
if LOG_FILE:
    # Reopened when logrotate moves it: rotation needs no restart.
    LOGGING["handlers"]["file"] = {
        "class": "reeve_site.log.LogFileHandler",
        "delay": True,  # opened (and its folder made) by the first line logged
        "formatter": "plain",
        "filename": LOG_FILE,
        "filters": ["redact_secrets"],
    }
    _handlers.append("file")

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "pulses.api.schema.EndpointSchema",
    "EXCEPTION_HANDLER": "pulses.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Reeve Pulse API",
    "DESCRIPTION": "Schedule and steer the pulses that wake the Reeve agent.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "PulseStatusEnum": "pulses.models.Status",
        "ListViewEnum": "pulses.api.serializers.LIST_VIEWS",
        "PriorityEnum": "pulses.models.Priority",
        "SessionPolicyEnum": "pulses.routines.models.SessionPolicy",
        "RoutineSourceEnum": "pulses.routines.models.RoutineSource",
    },
}
