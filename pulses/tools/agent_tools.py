"""The agent's own tools: what the MCP server's tools do, as plain functions over `pulses.queue`.

The API's agent endpoints (pulses/api/agent_views.py) call these; the MCP server reaches them over
HTTP with the run's token. Every refusal is an `AgentToolError` whose message a model can act on (it
says what was wrong and what to send instead); the MCP server returns it as a tool error. "The
current session" is the session of the pulse whose run started the agent: the run token names that
pulse, and the worker records the session id as soon as the agent announces it. The routine tools
are in pulses/tools/routine_tools.py.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from pulses import answers, limits, queue
from pulses.limits import (
    MAX_NOTE_CHARS,
    MAX_NOTES,
    MAX_TAG_CHARS,
    MAX_TAGS,
    InvalidPulse,
    InvalidSessionId,
    check_session_id,
    local_time,
)
from pulses.models import AGENT_SOURCE, Priority, Pulse, PulseNotPending, Status
from pulses.routines import guard_rails
from pulses.timeparse import TimeParseError, parse_when

logger = logging.getLogger(__name__)
T = TypeVar("T")

TOOL_NAMES = (
    "schedule_pulse",
    "list_upcoming_pulses",
    "cancel_pulse",
    "reschedule_pulse",
    "send_notification",
    "create_routine",
    "list_routines",
    "pause_routine",
    "delete_routine",
)
SOURCE = AGENT_SOURCE
MAX_NOTIFICATION_CHARS = 20_000
MAX_LISTED = 100
# A tool call can race the worker recording the session the agent just announced; wait this long.
SESSION_WAIT_SECONDS = 10.0
NOTIFICATION_PRIORITIES = ("silent", "normal", "critical")
CRITICAL_PREFIX = "🚨 "


class AgentToolError(Exception):
    """A tool call the agent should correct; the message says how."""


class UnknownPulse(AgentToolError):
    """No pulse has that id."""


class PulseNotChangeable(AgentToolError):
    """The pulse is not pending, so it cannot be cancelled or moved."""


class NotificationRateLimited(AgentToolError):
    """The client queued as many notifications as its allowance holds (NOTIFY_BURST, NOTIFY_PER_HOUR)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PulseNotYours(AgentToolError):
    """The pulse is the owner's: the agent may change only the pulses it (or its routines) made."""


def describe(pulse: Pulse) -> dict[str, Any]:
    """A pulse as the agent sees it: times in the user's TIME_ZONE."""
    return {
        "id": pulse.pk,
        "prompt": pulse.prompt,
        "scheduled_at": local_time(pulse.scheduled_at).isoformat(),
        "priority": pulse.priority,
        "status": pulse.status,
        "source": pulse.source,
        "session_id": pulse.session_id,
        "sticky_notes": list(pulse.sticky_notes or []),
        "tags": list(pulse.tags or []),
        "parent_id": pulse.parent_id,
        "model": pulse.model,
        "timeout_seconds": pulse.timeout_seconds,
        "max_turns": pulse.max_turns,
    }


def _when(text: str) -> Any:
    if not isinstance(text, str):
        raise AgentToolError(f"'when' must be text such as 'in 2 hours'; got {type(text).__name__}")
    try:
        return parse_when(text)
    except TimeParseError as exc:
        raise AgentToolError(str(exc)) from None


def _checked(check: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A check of `pulses.limits`; its refusal becomes a tool error the agent can act on."""
    try:
        return check(*args, **kwargs)
    except InvalidPulse as exc:
        raise AgentToolError(str(exc)) from None


def _current_session(run_pulse_id: int | None) -> str:
    if run_pulse_id is None:
        raise AgentToolError(
            "resume_current_session needs a running pulse, but this tool server was not started by an "
            "agent run of the Reeve worker (it has no run token). Call schedule_pulse again without "
            "resume_current_session (the follow-up then starts a new session)."
        )
    deadline = time.monotonic() + SESSION_WAIT_SECONDS
    while True:
        row = Pulse.objects.filter(pk=run_pulse_id).values("session_id", "status").first()
        if row is None:
            raise AgentToolError(
                f"resume_current_session: the running pulse #{run_pulse_id} is not in the queue. "
                "Call schedule_pulse again without resume_current_session."
            )
        if row["session_id"]:
            try:  # stored from the agent's own stream, which is checked; checked again before reuse
                return check_session_id(row["session_id"])
            except InvalidSessionId as exc:
                raise AgentToolError(
                    f"resume_current_session: the running pulse's session cannot be resumed ({exc}). "
                    "Call schedule_pulse again without resume_current_session."
                ) from None
        if row["status"] != Status.PROCESSING or time.monotonic() >= deadline:
            raise AgentToolError(
                f"resume_current_session: no session id is known yet for the running pulse "
                f"#{run_pulse_id}. Call schedule_pulse again without resume_current_session."
            )
        time.sleep(0.2)


def schedule_pulse(
    *,
    prompt: str,
    when: str = "now",
    priority: str = Priority.NORMAL,
    sticky_notes: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    resume_current_session: bool = False,
    run_pulse_id: int | None = None,
    model: str = "",
    timeout_seconds: int | None = None,
    max_turns: int | None = None,
) -> dict[str, Any]:
    """Schedule a pulse from the agent: source `agent`, parent = the running pulse (if any); its agent
    options within pulses.limits and the guard rails (no longer a run than the owner's limit)."""
    _checked(limits.check_prompt, prompt)
    _checked(limits.check_priority, priority)
    _checked(limits.check_agent_options, model=model, timeout_seconds=timeout_seconds, max_turns=max_turns)
    try:
        guard_rails.check_agent_priority(priority)
        guard_rails.check_agent_timeout(timeout_seconds)
    except guard_rails.RoutineInvalid as exc:
        raise AgentToolError(exc.message) from None
    scheduled_at = _when(when)
    notes = _checked(
        limits.text_list, sticky_notes, name="sticky_notes", max_items=MAX_NOTES, max_chars=MAX_NOTE_CHARS
    )
    labels = _checked(limits.text_list, tags, name="tags", max_items=MAX_TAGS, max_chars=MAX_TAG_CHARS)
    _checked(limits.check_prompt_bytes, prompt, notes)
    session_id = _current_session(run_pulse_id) if resume_current_session else ""
    parent_id = run_pulse_id if run_pulse_id and Pulse.objects.filter(pk=run_pulse_id).exists() else None
    try:
        with guard_rails.agent_pulse_allowed():
            result = queue.schedule(
                prompt=prompt,
                scheduled_at=scheduled_at,
                priority=priority,
                source=SOURCE,
                session_id=session_id,
                sticky_notes=notes,
                tags=labels,
                parent_id=parent_id,
                model=model or "",
                timeout_seconds=timeout_seconds,
                max_turns=max_turns,
            )
    except guard_rails.LimitReached as exc:
        raise AgentToolError(str(exc)) from None
    logger.info(
        "agent_pulse_scheduled id=%s parent=%s resumes_session=%s",
        result.pulse.pk,
        parent_id,
        bool(session_id),
    )
    return describe(result.pulse)


def list_upcoming_pulses(*, limit: int = 20) -> dict[str, Any]:
    """The agent's pending pulses (its own and its routines'), soonest first (overdue ones first of
    all), at most `limit`; the owner's are not listed."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LISTED:
        raise AgentToolError(f"'limit' must be a whole number from 1 to {MAX_LISTED}; got {limit!r}")
    pulses = list(Pulse.objects.upcoming().made_by_agent()[:limit])
    return {
        "now": timezone.now().astimezone(ZoneInfo(settings.TIME_ZONE)).isoformat(),
        "time_zone": settings.TIME_ZONE,
        "pending": Pulse.objects.pending().made_by_agent().count(),
        "pulses": [describe(pulse) for pulse in pulses],
    }


def _pulse_id(pulse_id: int) -> int:
    if isinstance(pulse_id, bool) or not isinstance(pulse_id, int) or pulse_id < 1:
        raise AgentToolError(f"'pulse_id' must be a pulse's id (a positive whole number); got {pulse_id!r}")
    return pulse_id


def unknown_pulse(pulse_id: int) -> UnknownPulse:
    """The refusal for a pulse id that names no pulse."""
    return UnknownPulse(
        f"there is no pulse #{pulse_id}; call list_upcoming_pulses to see the pending pulses and their ids"
    )


def _yours(pulse_id: int) -> int:
    """`pulse_id` when the agent made that pulse (itself or by its routine); refused otherwise."""
    if not Pulse.objects.filter(pk=pulse_id).exists():
        raise unknown_pulse(pulse_id)
    if not Pulse.objects.filter(pk=pulse_id).made_by_agent().exists():
        raise PulseNotYours(
            f"pulse #{pulse_id} is the user's, not yours: you may cancel or move only the pulses you "
            "scheduled and your routines' pulses (list_upcoming_pulses shows them); ask the user instead"
        )
    return pulse_id


@contextmanager
def _changing_pending(pulse_id: int, *, otherwise: str) -> Iterator[None]:
    """The queue's refusals to change pulse `pulse_id` as the agent's errors; `otherwise` tells the
    agent what to do instead when the pulse is no longer pending."""
    try:
        yield
    except Pulse.DoesNotExist:
        raise unknown_pulse(pulse_id) from None
    except PulseNotPending as exc:
        raise PulseNotChangeable(f"{exc}; {otherwise}") from None


def cancel_pulse(*, pulse_id: int) -> dict[str, Any]:
    """Cancel a pending pulse the agent made."""
    pulse_id = _yours(_pulse_id(pulse_id))
    with _changing_pending(pulse_id, otherwise="only pulses listed by list_upcoming_pulses can be cancelled"):
        pulse = queue.cancel(pulse_id)
    return describe(pulse)


def reschedule_pulse(*, pulse_id: int, when: str) -> dict[str, Any]:
    """Move a pending pulse the agent made to another time."""
    pulse_id = _yours(_pulse_id(pulse_id))
    scheduled_at = _when(when)
    with _changing_pending(
        pulse_id, otherwise="to run it again, schedule a new pulse with schedule_pulse instead"
    ):
        pulse = queue.reschedule(pulse_id, scheduled_at)
    return describe(pulse)


def send_notification(
    *,
    message: str,
    priority: str = "normal",
    run_pulse_id: int | None = None,
    client_name: str = "settings",
) -> dict[str, Any]:
    """Queue a Telegram message for the listener to send; `silent` arrives without a sound, `critical`
    is marked. It counts against the allowance of the token `client_name` (every run token shares
    one: telegram_bridge.notifications). Queued
    during a run (`run_pulse_id`), it stands for that pulse's answer, which is not sent again."""
    if not isinstance(message, str) or not message.strip():
        raise AgentToolError("'message' must be a non-empty string: the text the user should read")
    if len(message) > MAX_NOTIFICATION_CHARS:
        raise AgentToolError(
            f"'message' is {len(message)} characters; at most {MAX_NOTIFICATION_CHARS} are accepted"
        )
    if priority not in NOTIFICATION_PRIORITIES:
        raise AgentToolError(
            f"unknown priority {priority!r}; use one of {', '.join(NOTIFICATION_PRIORITIES)}"
        )
    # Imported here: the bridge pulls in python-telegram-bot, which the other tools do not need.
    from telegram_bridge import notifications
    from telegram_bridge.client import TelegramConfig, TelegramNotConfigured

    try:
        TelegramConfig.from_settings().require()
    except TelegramNotConfigured as exc:
        # Read by the agent and, through its answer, by the user, who may well have set it in .env
        # already: the process that answers read .env when it started and keeps what it read.
        raise AgentToolError(
            f"no message was sent: {exc}. It is Reeve's running web process (pid {os.getpid()}) that "
            "lacks the setting: it reads .env only when it starts, so a TELEGRAM_* line added since takes "
            "a restart of Reeve (Ctrl+C and ./reeve start again, or `sudo systemctl restart reeve-daemon` "
            "for the services). Tell the user in your reply instead."
        ) from None
    text = CRITICAL_PREFIX + message if priority == "critical" else message
    try:
        client = notifications.client_key(client_name, run_token=run_pulse_id is not None)
        queued = notifications.enqueue(text, priority=priority, client=client, pulse_id=run_pulse_id)
    except notifications.RateLimited as exc:
        raise NotificationRateLimited(
            f"the message was not queued: {exc}", retry_after=exc.retry_after
        ) from None
    answers.note_agent_notified(run_pulse_id)
    logger.info("agent_notification_queued id=%s priority=%s messages=%s", queued.id, priority, queued.parts)
    described = {"queued": True, "id": queued.id, "messages": queued.parts, "priority": priority}
    return {**described, "note": queued.note} if queued.note else described
