"""`manage.py doctor`: is this installation able to run? Each check says what is wrong and how to fix it.

A check's level is `ok`, `warn` (works, but worth a look) or `fail` (Reeve cannot do its job); the
command exits 1 when any check fails.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from pulses.db import is_postgres
from pulses.limits import MAKE_A_TOKEN, weak_token_reason
from pulses.models import Pulse
from pulses.ops import legacy
from pulses.ops.check_result import FAIL, OK, WARN, Check
from pulses.ops.doctor_agent import (
    check_agent,
    check_agent_ready,
    check_agent_tools,
    check_containment,
    check_desk,
    check_queue_paused,
)
from pulses.ops.private_files import exposed

BOT_TOKEN_SHAPE = re.compile(r"^\d+:[A-Za-z0-9_-]{8,}$")
HTTP_TIMEOUT_SECONDS = 5.0


def check_api_token() -> Check:
    token = settings.PULSE_API_TOKEN.strip()
    if not token:
        # A working setup: the dashboard and admin use a login, clients named tokens, the agent its run's.
        return Check(
            "api token",
            WARN,
            "PULSE_API_TOKEN is not set: only named tokens (./reeve create_api_token NAME) reach the API; "
            f"for one main token, {MAKE_A_TOKEN} and put it in .env",
        )
    if reason := weak_token_reason(token):
        return Check("api token", FAIL, f"{reason} (the web process refuses to start with it)")
    return Check("api token", OK, f"PULSE_API_TOKEN set ({len(token)} characters)")


def check_private_files() -> Check:
    """Reeve's data (database, WAL, logs, backups, secret key, metrics) readable only by its user."""
    found = exposed()
    if not found:
        return Check("file modes", OK, "database, logs, backups and keys are private (0600 / 0700)")
    shown = ", ".join(f"{path} ({mode:o})" for path, mode in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return Check(
        "file modes",
        WARN,
        f"other local users can read {shown}{more}: restart Reeve (it makes them private on start) "
        "or chmod 600 the files and 700 the folders",
    )


def check_configuration() -> Check:
    if settings.DEBUG:
        return Check("configuration", WARN, "DEBUG is on: set DEBUG=false in .env for a server")
    return Check(
        "configuration", OK, f"TIME_ZONE={settings.TIME_ZONE}, ALLOWED_HOSTS={settings.ALLOWED_HOSTS}"
    )


def _describe_database() -> str:
    return legacy.describe(settings.DATABASES["default"])


def check_database() -> Check:
    where = _describe_database()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return Check(
            "database", FAIL, f"{where} cannot be opened ({exc}): check PULSE_DB_PATH or DATABASE_URL"
        )
    return Check("database", OK, f"{where} reachable")


def check_original_schema() -> Check | None:
    """A failure when the database holds the original Reeve's queue (read without changing it)."""
    schema = legacy.configured_schema()
    if schema is None or not schema.is_original:
        return None
    return Check("database", FAIL, legacy.explanation(schema, where=_describe_database()))


def check_migrations() -> Check:
    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        return Check("migrations", FAIL, f"cannot read the migration state ({exc})")
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
        more = f" and {len(plan) - 5} more" if len(plan) > 5 else ""
        return Check(
            "migrations",
            FAIL,
            f"{len(plan)} unapplied migration(s) ({names}{more}): run `./reeve migrate`",
        )
    return Check("migrations", OK, "all migrations applied")


def api_base_url() -> str:
    host = settings.PULSE_API_HOST
    if host in ("0.0.0.0", "", "::"):  # noqa: S104 - a wildcard bind is reached on loopback
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.PULSE_API_PORT}"


def check_api() -> Check:
    url = f"{api_base_url()}/api/health"
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310 - http only
            body = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return Check("api", FAIL, f"{url} answered {exc.code}: see reeve-logs web")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check(
            "api",
            FAIL,
            f"{url} not reachable ({reason}): start the web process (sudo systemctl start reeve-daemon, "
            "or ./reeve start in development)",
        )
    return Check("api", OK, f"{url}: {body.get('status', 'answered')}")


def check_telegram() -> Check:
    token = settings.TELEGRAM_BOT_TOKEN.strip()
    if not token:
        return Check("telegram", WARN, "TELEGRAM_BOT_TOKEN is not set: the Telegram listener is off")
    if not BOT_TOKEN_SHAPE.match(token):
        return Check(
            "telegram",
            FAIL,
            "TELEGRAM_BOT_TOKEN does not look like a bot token (digits:letters, from @BotFather): fix it",
        )
    if not settings.TELEGRAM_CHAT_ID:
        return Check(
            "telegram", FAIL, "TELEGRAM_CHAT_ID is empty: set your chat id (or a comma-separated list)"
        )
    base = settings.TELEGRAM_API_BASE_URL
    if not base.startswith(("https://", "http://")):
        return Check(
            "telegram", FAIL, f"TELEGRAM_API_BASE_URL {base!r} is not an http(s) URL: fix it in .env"
        )
    # POST, as python-telegram-bot calls it; the URL carries the token, so it is never printed.
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked just above
        f"{base}{token}/getMe",
        data=b"{}",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
            body = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 404):
            return Check(
                "telegram",
                FAIL,
                "Telegram rejected TELEGRAM_BOT_TOKEN (revoked?): get a new one from @BotFather",
            )
        return Check("telegram", WARN, f"getMe answered {exc.code}: could not verify the token now")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check("telegram", WARN, f"Bot API not reachable ({reason}): could not verify the token now")
    username = (body.get("result") or {}).get("username", "?")
    return Check("telegram", OK, f"token accepted: bot @{username}")


HEARTBEAT_STALE = timedelta(hours=2)


def check_heartbeat() -> Check:
    """When the hourly heartbeat last made a pulse: the hourly-prompt routine's fire, or cron's
    `trigger_pulse --heartbeat` (reeve-heartbeat); which of the two makes it is named."""
    from django.db.models import Q

    from pulses.routines.models import Routine, RoutineKind

    routine = Routine.objects.enabled().filter(kind=RoutineKind.HOURLY_PROMPT).order_by("id").first()
    last = (
        Pulse.objects.filter(Q(source="heartbeat") | Q(routine__kind=RoutineKind.HOURLY_PROMPT))
        .order_by("-created_at", "-id")
        .first()
    )
    if last is None:
        if routine is not None:
            first = timezone.localtime(routine.next_fire_at) if routine.next_fire_at else None
            at = f" at {first:%Y-%m-%d %H:%M}" if first else ""
            return Check("heartbeat", OK, f"the {routine.name} routine fires hourly: its first heartbeat{at}")
        return Check(
            "heartbeat",
            WARN,
            "no heartbeat pulse yet: cron runs reeve-heartbeat hourly (/etc/cron.d/reeve), or let the "
            "hourly-prompt routine do it: ./reeve routine resume hourly-prompt",
        )
    age = timezone.now() - last.created_at
    when = f"#{last.pk} at {timezone.localtime(last.created_at):%Y-%m-%d %H:%M} ({last.status})"
    by = f"the {routine.name} routine" if routine is not None else "cron (reeve-heartbeat)"
    if age > HEARTBEAT_STALE:
        hours = age.total_seconds() / 3600
        asked = "is the worker running?" if routine is not None else "is cron running reeve-heartbeat?"
        return Check("heartbeat", WARN, f"last heartbeat {when}, {hours:.0f} h ago, made by {by}: {asked}")
    return Check("heartbeat", OK, f"last heartbeat {when}, made by {by}")


def check_history() -> Check:
    """How much history the database holds, and whether retention keeps up with it."""
    from pulses import history
    from pulses.ops import retention

    facts = history.database_facts(exact=True)
    oldest = facts.oldest_finished_at
    where = (
        f"database {history.size_text(facts.size_bytes)}, {facts.pulses} pulses, {facts.attempts} attempts, "
        f"oldest finished pulse {f'{timezone.localtime(oldest):%Y-%m-%d}' if oldest else 'none yet'}"
    )
    if retention.auto_vacuum_mode() not in (None, "incremental"):
        return Check(
            "history",
            WARN,
            f"{where}; pruning cannot shrink this SQLite file (auto_vacuum is off): run "
            "`manage.py prune_history --vacuum-full` once while Reeve is stopped",
        )
    try:
        kept = max(retention.kept_days()[:2])
    except retention.RetentionError as exc:
        return Check("history", FAIL, f"{where}; {exc}")
    if kept and oldest and timezone.now() - oldest > timedelta(days=kept + 2):
        return Check(
            "history",
            WARN,
            f"{where}, older than the {kept} days kept: is cron running reeve-prune-history daily?",
        )
    return Check("history", OK, where)


def check_notifications() -> Check | None:
    """A warning when notifications queued through the API wait: no listener is sending them."""
    from telegram_bridge.notifications import stale_note

    note = stale_note()
    return Check("notifications", WARN, note) if note else None


def check_health() -> list[Check]:
    """The watchdog's judgement (pulses/ops/health.py), the agent left to `agent ready`: one FAIL line
    per problem (a pulse overdue, no listener polling, an answer stuck in the outbox)."""
    from pulses.ops import health

    found = health.assess(agent=False)
    if found.healthy:
        return [Check("health", OK, found.summary())]
    return [Check("health", FAIL, problem) for problem in found.problems]


def run_checks(*, api: bool = True, telegram: bool = True) -> list[Check]:
    """Every check, in the order a person would fix them; later checks skip what an earlier failure blocks."""
    checks: list[Callable[[], Check]] = [check_configuration, check_api_token, check_private_files]
    results = [check() for check in checks]
    results.append(check_original_schema() or check_database())
    migrated = False
    if not results[-1].failed:
        results.append(check_migrations())
        if not results[-1].failed:
            migrated = True
            results += [check_heartbeat(), check_history(), *check_health()]
            if waiting := check_notifications():
                results.append(waiting)
    agent = check_agent()
    results += [*agent, check_desk()]
    desk_ready = not results[-1].failed
    if desk_ready:
        results.append(check_agent_tools())
    if migrated:
        # The probe runs the agent: only when the command and the Desk are there to run it (pulses
        # run without Reeve's tools, so their check does not stop it).
        runnable = desk_ready and not any(check.failed for check in agent)
        results.append(check_agent_ready(probe=runnable))
        results.append(check_queue_paused())
    results.append(check_containment())
    if api:
        results.append(check_api())
    if telegram:
        results.append(check_telegram())
    return results


def resolved_paths() -> dict[str, str]:
    """The values install.sh renders into units, cron and logrotate, as this installation resolves them."""
    db = settings.DATABASES["default"]
    sqlite = not is_postgres()
    return {
        "REEVE_DATA_DIR": str(Path(settings.REEVE_HOME)),
        "PULSE_DB_PATH": str(db["NAME"]) if sqlite else "",
        "DATABASE_IS_SQLITE": "1" if sqlite else "0",
        "LOG_FILE": settings.LOG_FILE,
        "REEVE_DESK_PATH": str(settings.REEVE_DESK_PATH),
        "PULSE_API_URL": api_base_url(),
        "PULSE_SHUTDOWN_GRACE_SECONDS": f"{settings.PULSE_SHUTDOWN_GRACE_SECONDS:g}",
        "PULSE_TIMEOUT_SECONDS": f"{settings.PULSE_TIMEOUT_SECONDS:g}",
        "TELEGRAM_CONFIGURED": "1" if BOT_TOKEN_SHAPE.match(settings.TELEGRAM_BOT_TOKEN.strip()) else "0",
        # The agent command (install.sh checks it is on the units' PATH) and the Claude Code CLI the
        # credential keep-alive runs, when .env or the environment names one.
        "HAPI_COMMAND": settings.HAPI_COMMAND,
        "CLAUDE_COMMAND_SETTING": settings.CLAUDE_COMMAND,
    }
