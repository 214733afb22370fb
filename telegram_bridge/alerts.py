"""Tell the user on Telegram when a pulse fails for good: one alert per pulse per interval.

Registered in settings.PULSE_FAILURE_HOOKS; the worker calls it with the pulse id after
`record_attempt` returned `failed`. The alert slot is claimed in a short transaction that commits
before the message is sent: no transaction is open during the HTTP call.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from pulses.models import Delivery, Pulse
from telegram_bridge.models import PulseAlert

logger = logging.getLogger(__name__)

ALERT_INTERVAL = timedelta(hours=1)
PROMPT_PREVIEW_CHARS = 200
ERROR_PREVIEW_CHARS = 1500


def format_alert(pulse: Pulse) -> str:
    """The alert text: pulse id, attempts, the start of the prompt and the agent's error."""
    prompt = " ".join(pulse.prompt.split())
    if len(prompt) > PROMPT_PREVIEW_CHARS:
        prompt = prompt[: PROMPT_PREVIEW_CHARS - 1] + "…"
    error = pulse.error_message.strip() or "(no error message recorded)"
    if len(error) > ERROR_PREVIEW_CHARS:
        error = error[: ERROR_PREVIEW_CHARS - 1] + "…"
    return (
        f"⚠️ Pulse #{pulse.pk} failed for good after {pulse.attempt_count} attempt(s).\n"
        f"Prompt: {prompt}\n"
        f"Error: {error}"
    )


def _claim_alert(pulse_id: int) -> bool:
    """Reserve the right to alert for this pulse now; False while a recent alert still stands."""
    now = timezone.now()
    try:
        with transaction.atomic():
            recent = PulseAlert.objects.select_for_update().filter(pulse_id=pulse_id).first()
            if recent is None:
                PulseAlert.objects.create(pulse_id=pulse_id, sent_at=now)
                return True
            if recent.sent_at > now - ALERT_INTERVAL:
                return False
            PulseAlert.objects.filter(pk=recent.pk).update(sent_at=now, count=F("count") + 1)
            return True
    except IntegrityError:  # another process claimed it first
        return False


def alert_pulse_failed(pulse_id: int) -> None:
    """Send one Telegram alert for a pulse that failed for good; nothing when Telegram is not set up
    or this pulse was alerted within ALERT_INTERVAL. Never raises for Telegram trouble."""
    if not _telegram_configured(f"id={pulse_id}"):
        return
    if Delivery.objects.filter(pulse_id=pulse_id).exists():
        # Its answer goes back to Telegram: the outbox tells the chat of the failure in one line.
        logger.info("telegram_alert_skipped id=%s reason=the_reply_says_it", pulse_id)
        return
    pulse = Pulse.objects.filter(pk=pulse_id).first()
    if pulse is None:
        return
    if not _claim_alert(pulse_id):
        logger.info("telegram_alert_suppressed id=%s reason=recently_alerted", pulse_id)
        return
    _send_alert(format_alert(pulse), f"id={pulse_id}", priority=pulse.priority)


def format_routine_paused(routine) -> str:  # routine: pulses.models.Routine
    """The pause alert: which routine, why, and how to resume it."""
    return (
        f"⏸️ Routine '{routine.name}' paused itself: {routine.paused_reason}.\n"
        f"Last error: {_last_error(routine)}\n"
        f"Resume it with: manage.py routine resume {routine.name} (or Resume in the admin's Routines)"
    )


def _last_error(routine) -> str:
    pulse = routine.last_pulse
    error = " ".join((pulse.error_message if pulse else "").split()) or "(none recorded)"
    return error if len(error) <= ERROR_PREVIEW_CHARS else error[: ERROR_PREVIEW_CHARS - 1] + "…"


def alert_routine_paused(routine_id: int) -> None:
    """Send the one Telegram alert for a routine its failures paused (the worker calls it once per
    pause); nothing when Telegram is not set up. Never raises for Telegram trouble."""
    from pulses.models import Routine

    if not _telegram_configured(f"routine={routine_id}"):
        return
    routine = Routine.objects.select_related("last_pulse").filter(pk=routine_id).first()
    if routine is not None:
        _send_alert(format_routine_paused(routine), f"routine={routine_id}")


def format_budget_reached(reached) -> str:  # reached: pulses.models.BudgetCapReached
    """The budget alert: which cap, the spend, when the waiting pulses run again, what still runs."""
    from django.conf import settings

    from pulses.budget import periods
    from pulses.limits import local_time

    which = "daily" if reached.period == "day" else "monthly"
    day, month = periods(reached.starts_at)
    resumes_at = day.ends_at if reached.period == "day" else month.ends_at
    critical = (
        "Critical pulses (your Telegram messages) wait too."
        if settings.PULSE_BUDGET_HOLDS_CRITICAL
        else "Critical pulses (your Telegram messages) still run."
    )
    return (
        f"💸 The {which} spend cap of {reached.cap_usd.normalize():f} USD is reached "
        f"({reached.spent_usd:.2f} USD spent). Other pulses wait until "
        f"{local_time(resumes_at):%Y-%m-%d %H:%M} and then run by themselves. {critical}\n"
        f"Raise it with PULSE_{which.upper()}_BUDGET_USD in .env (then restart Reeve)."
    )


def alert_budget_reached(reached_id: int) -> None:
    """Send the one Telegram alert of a spend cap reached in a period (the worker that stored the
    pulse_budget_caps_reached row calls it); nothing when Telegram is not set up. Never raises for
    Telegram trouble."""
    from pulses.models import BudgetCapReached

    if not _telegram_configured(f"budget={reached_id}"):
        return
    reached = BudgetCapReached.objects.filter(pk=reached_id).first()
    if reached is not None:
        _send_alert(format_budget_reached(reached), f"budget={reached_id}")


def _telegram_configured(subject: str) -> bool:
    """Whether alerts can go out; a broken Telegram setting is logged against `subject` (`id=12`)."""
    # python-telegram-bot and httpx take a third of a second and ~15 MB to import: every worker
    # imports this hook at start, and only one that has an alert to send needs them.
    from telegram_bridge.client import TelegramConfig, TelegramNotConfigured

    try:
        return TelegramConfig.from_settings().is_configured
    except TelegramNotConfigured as exc:
        logger.warning("telegram_alert_skipped %s reason=%s", subject, exc)
        return False


def _send_alert(text: str, subject: str, *, priority: str = "normal") -> None:
    """Send one alert (without a sound inside the quiet hours, unless `priority` is critical);
    Telegram trouble is logged against `subject`, never raised."""
    from telegram_bridge.client import TelegramNotConfigured
    from telegram_bridge.notify import NotificationFailed, send_message

    try:
        send_message(text, priority=priority)
    except (NotificationFailed, TelegramNotConfigured) as exc:
        logger.error("telegram_alert_failed %s error=%s", subject, exc)
        return
    logger.info("telegram_alert_sent %s", subject)


def format_agent_held(hold) -> str:  # hold: pulses.agent_hold.AgentHold
    """The notice that the queue holds: what is wrong, the command that fixes it, when it resumes."""
    from pulses.agent_hold import resumes_text

    lines = [f"⏸️ Reeve is holding your pulses: {hold.problem}."]
    if hold.fix:
        lines.append(f"To fix it: {hold.fix}")
    lines.append(resumes_text(hold.resets_at, hold.recheck_at))
    lines.append("No pulse spends a retry meanwhile; they run once the agent can.")
    if hold.detail:
        lines.append(f"The agent said: {hold.detail[:ERROR_PREVIEW_CHARS]}")
    return "\n".join(lines)


def format_agent_resumed(hold) -> str:  # hold: pulses.agent_hold.AgentHold
    """The notice that the queue runs again."""
    since = f" since {timezone.localtime(hold.since):%H:%M}" if hold.since else ""
    what = hold.reason.replace("_", " ")
    return f"▶️ Reeve runs your pulses again: the agent works ({what}{since} is over)."


def alert_agent_held(hold_id: int) -> None:
    """Send the one notice that the queue started holding (the worker calls it once per hold);
    nothing when Telegram is not set up. Never raises for Telegram trouble."""
    from pulses.agent_hold import AgentHold

    if not _telegram_configured(f"agent_hold={hold_id}"):
        return
    hold = AgentHold.objects.filter(pk=hold_id, held=True).first()
    if hold is not None:
        _send_alert(format_agent_held(hold), f"agent_hold={hold_id}")


def alert_agent_resumed(hold_id: int) -> None:
    """Send the one notice that the hold ended (called once, by whoever ended it)."""
    from pulses.agent_hold import AgentHold

    if not _telegram_configured(f"agent_hold={hold_id}"):
        return
    hold = AgentHold.objects.filter(pk=hold_id).first()
    if hold is not None:
        _send_alert(format_agent_resumed(hold), f"agent_hold={hold_id}")


def alert_unhealthy(incident_id: int, *, host: str) -> None:
    """The watchdog's one alert for a health incident (pulses/ops/health.py): what is wrong, one line
    each; nothing when Telegram is not set up. Never raises for Telegram trouble."""
    from pulses.models import HealthIncident

    if not _telegram_configured(f"health_incident={incident_id}"):
        return
    incident = HealthIncident.objects.filter(pk=incident_id).first()
    if incident is not None:
        lines = [f"🚨 Reeve is unhealthy on {host}:", *(f"- {p}" for p in incident.problems.splitlines())]
        lines.append("One more message follows when it has recovered.")
        _send_alert("\n".join(lines), f"health_incident={incident_id}")


def alert_recovered(incident_id: int, *, host: str) -> None:
    """The watchdog's one message that the incident is over."""
    from pulses.models import HealthIncident

    if not _telegram_configured(f"health_incident={incident_id}"):
        return
    incident = HealthIncident.objects.filter(pk=incident_id).first()
    if incident is not None:
        since = f" (unhealthy since {timezone.localtime(incident.opened_at):%Y-%m-%d %H:%M})"
        _send_alert(f"✅ Reeve is healthy again on {host}{since}.", f"health_incident={incident_id}")
