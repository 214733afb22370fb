"""Reeve settings: every value comes from the environment or an optional `.env` (django-environ)."""

from __future__ import annotations

import os
import sys
from datetime import time as clock_time
from decimal import Decimal, InvalidOperation
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


# What a typed read expects, in the words of the one line a wrong value ends every process with.
EXPECTED_FORM = {int: "a whole number", float: "a number"}


class SettingError(ImproperlyConfigured):
    """A variable whose value is not of its type: `NAME=value: expected a whole number`. manage.py,
    gunicorn's configuration and the WSGI module print it as one line and exit 1."""


class _Env(environ.Env):
    """django-environ reading `.env` under the real environment (a mapping, not os.environ). Every
    typed read goes through `get_value`, so a value of the wrong type is one line naming the variable,
    the value and the expected form, never a ValueError deep in a traceback."""

    ENVIRON = {**DOTENV, **os.environ}

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except (ValueError, TypeError) as exc:
            form = EXPECTED_FORM.get(cast, f"a value of type {getattr(cast, '__name__', cast)}")
            value = self.ENVIRON.get(f"{self.prefix}{var}", "")
            raise SettingError(f"{var}={value}: expected {form}") from exc


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

# Behind the shipped TLS proxy (deploy/nginx/reeve.conf), REEVE_BEHIND_TLS=1: browsers reach Reeve only
# over HTTPS, so its cookies are sent only over HTTPS, HSTS is on, and a plain-HTTP request is
# redirected. nginx sets X-Forwarded-Proto, which tells Django the request came over TLS; only trust
# it behind that proxy, since a direct client could send the header itself. Loopback clients (the MCP
# server, ./reeve's own checks, Prometheus on /metrics, the health check) talk to 127.0.0.1 directly,
# so they are exempt from the redirect. `manage.py check --deploy` is clean with it.
REEVE_BEHIND_TLS = env.bool("REEVE_BEHIND_TLS", default=False)
if REEVE_BEHIND_TLS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^api/", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = 31_536_000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True  # names under Reeve's own host name, not its parent domain
    # The preload list takes a registrable domain (example.com), not the host Reeve answers on
    # (reeve.example.com): whether to preload is the domain owner's call, so its warning is silenced.
    SECURE_HSTS_PRELOAD = False
    SILENCED_SYSTEM_CHECKS = ["security.W021"]

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
# The Claude Code CLI the credential keep-alive cron job runs (deploy/credential-providers/claude-code),
# when `claude` is not on the services' PATH (an npm prefix); install.sh writes what it finds.
CLAUDE_COMMAND = env.str("CLAUDE_COMMAND", default="")
# The agent a bare `hapi` runs (`hapi claude ...`); a HAPI_COMMAND naming one is used as it is.
HAPI_AGENT = env.str("HAPI_AGENT", default="claude")
# Issue 33: the model every run uses unless its pulse or routine names one (`--model=M`, through Hapi
# ANTHROPIC_MODEL: pulses/agent/command.py); empty leaves the agent's own default. A per-run timeout
# (a pulse's or routine's timeout_seconds, bounded by pulses/limits.py) replaces PULSE_TIMEOUT_SECONDS.
AGENT_MODEL = env.str("AGENT_MODEL", default="").strip()
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
# Bounds (issue 30): where the owner opens the dashboard, for the link to the whole answer that ends
# an answer cut at pulses.limits.MAX_ANSWER_PARTS Telegram messages.
REEVE_DASHBOARD_URL = env.str("REEVE_DASHBOARD_URL", default=REEVE_API_URL)
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
# The watchdog (issue 31, pulses/ops/health.py): a pulse due for longer than this, or a finished
# pulse's answer waiting in the outbox for longer, makes Reeve unhealthy (reeve-health-check alerts).
PULSE_OVERDUE_ALERT_MINUTES = env.float("PULSE_OVERDUE_ALERT_MINUTES", default=10)
# gunicorn (deploy/gunicorn.conf.py): processes and threads each.
WEB_CONCURRENCY = env.int("WEB_CONCURRENCY", default=1)
GUNICORN_THREADS = env.int("GUNICORN_THREADS", default=4)
# The web process stays up (issue 30, web branch). A client has this long to send a whole request;
# it is read without a thread (pulses/web/slow_clients.py), so slow clients cannot hold the threads.
WEB_REQUEST_READ_SECONDS = env.float("WEB_REQUEST_READ_SECONDS", default=10.0)
# /api/notify queues messages for the listener; each token may queue this many in a burst (a minute)
# and in an hour, critical ones included; past either the API answers 429 with Retry-After.
NOTIFY_BURST = env.int("NOTIFY_BURST", default=5)
NOTIFY_PER_HOUR = env.int("NOTIFY_PER_HOUR", default=30)
# One Reeve per installation (pulses/ops/instance_lock.py): beside the SQLite database, else in REEVE_HOME.
# Beside the database's real file: a PULSE_DB_PATH that is a symlink to the live database (or names it
# through `..`) must meet the same lock. resolve() only reads the links; it creates nothing.
_REAL_DB_PATH = PULSE_DB_PATH.resolve()
REEVE_LOCK_FILE = (
    REEVE_HOME / "reeve.instance-lock"
    if env.str("DATABASE_URL", default="")
    else _REAL_DB_PATH.with_name(f"{_REAL_DB_PATH.name}.instance-lock")
)
# Retention (manage.py prune_history, daily from cron): finished pulses go after this many days,
# failed ones after the longer of the two, output tails sooner; 0 keeps them all.
PULSE_HISTORY_DAYS = env.int("PULSE_HISTORY_DAYS", default=180)
PULSE_FAILED_HISTORY_DAYS = env.int("PULSE_FAILED_HISTORY_DAYS", default=365)
PULSE_OUTPUT_TAIL_DAYS = env.int("PULSE_OUTPUT_TAIL_DAYS", default=30)
# The live tail of a run (issue 33, pulses/run_tails.py): the last this many lines of what the agent
# did (tool calls, text, errors) kept per run, shown while it runs; 0 turns it off. The lines go with
# their pulse, and after PULSE_OUTPUT_TAIL_DAYS.
PULSE_TAIL_EVENTS = env.int("PULSE_TAIL_EVENTS", default=200)

TELEGRAM_BOT_TOKEN = env.str("TELEGRAM_BOT_TOKEN", default="")
TELEGRAM_CHAT_ID = env.list("TELEGRAM_CHAT_ID", default=[])
TELEGRAM_API_BASE_URL = env.str("TELEGRAM_API_BASE_URL", default="https://api.telegram.org/bot")
# Files sent in Telegram larger than this are not downloaded (20 MB is the Bot API's own limit).
TELEGRAM_MAX_FILE_MB = env.float("TELEGRAM_MAX_FILE_MB", default=20)


# Quiet hours (telegram_bridge/quiet_hours.py): inside this daily window, in TIME_ZONE, answers,
# notifications and alerts other than critical arrive without a sound (Telegram's
# disable_notification). HH:MM-HH:MM, may cross midnight (22:00-07:00); empty: none.
def _quiet_hours(name: str) -> tuple[clock_time, clock_time] | None:
    value = env.str(name, default="").strip()
    if not value:
        return None
    try:
        start, end = (clock_time.fromisoformat(part.strip()) for part in value.split("-"))
    except ValueError:
        start = end = None
    if start is None or end is None or start == end:
        raise SettingError(f"{name}={value}: expected HH:MM-HH:MM, such as 22:00-07:00, or empty for none")
    return start, end


TELEGRAM_QUIET_HOURS = _quiet_hours("TELEGRAM_QUIET_HOURS")
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
# Scopes (issue 30): the Desk's agent token (.mcp.json, made by mcp_config --write) expires after this
# many hours; mcp_config --write and ./reeve start renew it once half of it has passed.
DESK_TOKEN_HOURS = env.float("DESK_TOKEN_HOURS", default=24)
# Called by the worker with a critical pulse's id once it has waited PULSE_BUSY_NOTICE_SECONDS for
# the run of its session.
PULSE_WAITING_HOOKS = ["telegram_bridge.notices.tell_still_working"]


# Spend caps (pulses/budget.py): once the attempts' cost_usd since the start of today / this month
# (in TIME_ZONE) reaches a cap, pulses other than critical wait for the next period. Empty: no cap.
def _budget(name: str) -> Decimal | None:
    value = env.str(name, default="").strip()
    if not value:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount <= 0:
        raise ImproperlyConfigured(
            f"{name} must be empty (no cap) or a positive amount in US dollars, such as 5 or 2.50; "
            f"got {value!r}"
        )
    return amount


PULSE_DAILY_BUDGET_USD = _budget("PULSE_DAILY_BUDGET_USD")
PULSE_MONTHLY_BUDGET_USD = _budget("PULSE_MONTHLY_BUDGET_USD")
# Whether critical pulses (a person's Telegram message) wait for the next period too; by default they run.
PULSE_BUDGET_HOLDS_CRITICAL = env.bool("PULSE_BUDGET_HOLDS_CRITICAL", default=False)
# Called by the worker with the id of a budget_caps_reached row, once per period a cap was reached in.
PULSE_BUDGET_HOOKS = ["telegram_bridge.alerts.alert_budget_reached"]
# --- Agent readiness (pulses/agent/readiness.py, pulses/agent_hold.py) ----------------------------
# A run the agent's CLI keeps retrying against its model's API is stopped at this many `api_retry`
# events (at once on a 401/403 retry); 0 stops only those. Such runs, and runs that find the agent
# not logged in, without its credential or past its usage limit, spend no attempt: the queue holds.
AGENT_MAX_API_RETRIES = env.int("AGENT_MAX_API_RETRIES", default=3)
# While the queue is held without a known reset time, one pulse is tried again after this many
# seconds, then twice that, … up to the cap.
AGENT_HOLD_RECHECK_SECONDS = env.float("AGENT_HOLD_RECHECK_SECONDS", default=60)
AGENT_HOLD_RECHECK_CAP_SECONDS = env.float("AGENT_HOLD_RECHECK_CAP_SECONDS", default=1800)
# Called with the hold's id when the queue starts holding, and when it resumes (Telegram notices).
AGENT_HOLD_HOOKS = ["telegram_bridge.alerts.alert_agent_held"]
AGENT_RESUMED_HOOKS = ["telegram_bridge.alerts.alert_agent_resumed"]

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
    # The schema and the docs page need a token like every endpoint but health (any scope), or a
    # staff login: a browser on /api/docs sends its admin session, never a bearer token.
    "SERVE_AUTHENTICATION": [
        "pulses.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "SERVE_PERMISSIONS": ["pulses.api.permissions.AnyTokenOrStaff"],
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
