"""The queue-wide hold while the agent cannot run (`AgentHold`): one row, in the database, so every
worker, the web process and the commands see the same state. Its transitions are all here, used
through `pulses.queue`.

A run that `pulses.agent.readiness` finds unable to run (not logged in, no Hapi credential, a
refused key, a usage limit, stuck in the CLI's retries) starts or extends the hold; while it stands,
no worker claims a pulse until `recheck_at`: a usage limit's reset time, or else the next re-check
(backoff: AGENT_HOLD_RECHECK_SECONDS doubling up to AGENT_HOLD_RECHECK_CAP_SECONDS). Then one worker
takes one pulse as the probe (`take_probe`); held again, the hold extends; a run that reaches the
model (the probe, `agent_probe`, `doctor`) ends it at once (`end`), and idle workers are woken.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from pulses.agent.readiness import AgentUnavailable
from pulses.backoff import exponential
from pulses.db import wakeup
from pulses.db.write_gate import gated

logger = logging.getLogger(__name__)

HOLD_ID = 1  # the one row
WARNING_SHOWN = timedelta(hours=1)  # a usage warning shows this long after the last run that carried it


class AgentHold(models.Model):
    """The one hold row (pk 1); `held` says whether it stands. Kept after it ends, so the notice that
    the agent runs again can say what it was."""

    held = models.BooleanField(default=False)
    reason = models.CharField(max_length=32, blank=True, default="")  # pulses.agent.readiness.REASONS
    problem = models.TextField(blank=True, default="", help_text="what is wrong, in Reeve's words")
    fix = models.TextField(blank=True, default="", help_text="the command that fixes it")
    detail = models.TextField(blank=True, default="", help_text="the agent's own words")
    since = models.DateTimeField(null=True, blank=True)
    resets_at = models.DateTimeField(null=True, blank=True, help_text="a usage limit's reset, when known")
    recheck_at = models.DateTimeField(null=True, blank=True, help_text="when one pulse is tried again")
    rechecks = models.PositiveIntegerField(default=0, help_text="runs held in a row (the backoff's count)")
    ended_at = models.DateTimeField(null=True, blank=True)
    warning = models.TextField(blank=True, default="", help_text="a usage warning (not a hold)")
    warning_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "agent_hold"

    def __str__(self) -> str:
        return f"agent hold: {self.reason or '-'} ({'held' if self.held else 'not held'})"


@dataclass(frozen=True)
class HoldState:
    """What the status surfaces show: the problem ("" when the agent can run), its fix, when it
    resumes by itself (a usage limit's reset; None when unknown), the next re-check, and a warning."""

    problem: str = ""
    reason: str = ""
    fix: str = ""
    since: datetime | None = None
    resumes_at: datetime | None = None
    recheck_at: datetime | None = None
    warning: str = ""

    @property
    def held(self) -> bool:
        return bool(self.problem)

    def summary(self) -> str:
        """One line: the problem, the fix and when it resumes (for doctor, the banner, the status)."""
        if not self.held:
            return ""
        return f"{self.problem}. {self.fix} {resumes_text(self.resumes_at, self.recheck_at)}".strip()


def recheck_delay(rechecks: int) -> timedelta:
    """The wait before the `rechecks`-th re-check of a hold (1, 2, …)."""
    seconds = exponential(
        rechecks, initial=settings.AGENT_HOLD_RECHECK_SECONDS, cap=settings.AGENT_HOLD_RECHECK_CAP_SECONDS
    )
    return timedelta(seconds=seconds)


def state(now: datetime | None = None) -> HoldState:
    """The hold as the status surfaces show it (one primary-key read)."""
    row = AgentHold.objects.filter(pk=HOLD_ID).first()
    if row is None:
        return HoldState()
    now = now or timezone.now()
    shown = row.warning if row.warning_at and row.warning_at > now - WARNING_SHOWN else ""
    if not row.held:
        return HoldState(warning=shown)
    return HoldState(
        problem=row.problem,
        reason=row.reason,
        fix=row.fix,
        since=row.since,
        resumes_at=row.resets_at,
        recheck_at=row.recheck_at,
        warning=shown,
    )


def resumes_text(resets_at: datetime | None, recheck_at: datetime | None) -> str:
    """When the queue resumes by itself, in words, in the server's time zone."""
    if resets_at:
        return f"Reeve resumes by itself at {_local(resets_at)}, when the limit resets."
    when = f" (next at {_local(recheck_at)})" if recheck_at else ""
    return f"Reeve tries one pulse again by itself from time to time{when} and resumes once it runs."


def _local(when: datetime) -> str:
    local = timezone.localtime(when)
    today = timezone.localdate()
    day = "" if local.date() == today else f"{local:%a %d %b} "
    return f"{day}{local:%H:%M} ({timezone.get_current_timezone_name()})"


@gated
def hold(unavailable: AgentUnavailable, *, now: datetime | None = None) -> bool:
    """Start the hold, or extend it (the next re-check backs off further). True when this call
    started it: the caller tells the person, once."""
    now = now or timezone.now()
    with transaction.atomic():
        row = _locked_row()
        started = not row.held
        row.rechecks = 1 if started else row.rechecks + 1
        row.held = True
        row.reason, row.problem, row.fix = unavailable.reason, unavailable.problem, unavailable.fix
        row.detail = unavailable.detail
        row.resets_at = unavailable.resets_at
        row.recheck_at = unavailable.resets_at or now + recheck_delay(row.rechecks)
        if started:
            row.since, row.ended_at = now, None
        row.save()
    log = logger.error if started else logger.warning
    log(
        "agent_hold_%s reason=%s recheck_at=%s detail=%s",
        "started" if started else "extended",
        unavailable.reason,
        row.recheck_at.isoformat(),
        unavailable.detail[:200],
    )
    return started


@gated
def take_probe(now: datetime | None = None) -> bool:
    """Whether the caller may claim one pulse to try the agent again: the hold's re-check time has
    come and no other worker took this re-check (the next one is moved on as it is taken)."""
    now = now or timezone.now()
    with transaction.atomic():
        row = _locked_row(create=False)
        if row is None or not row.held or (row.recheck_at and row.recheck_at > now):
            return False
        row.recheck_at = now + recheck_delay(row.rechecks + 1)
        row.save(update_fields=["recheck_at"])
    logger.warning("agent_hold_probe reason=%s next_recheck_at=%s", row.reason, row.recheck_at.isoformat())
    return True


@gated
def end(*, by: str, ran_from: datetime | None = None, now: datetime | None = None) -> AgentHold | None:
    """End the hold (the agent ran; a run that started at `ran_from` ends only a hold that began
    before it): idle workers are woken. The hold that ended when this call ended it (the caller
    tells the person, once), else None."""
    now = now or timezone.now()
    with transaction.atomic():
        row = _locked_row(create=False)
        if row is None or not row.held or (ran_from and row.since and row.since > ran_from):
            return None
        row.held, row.ended_at, row.rechecks, row.recheck_at = False, now, 0, None
        row.save(update_fields=["held", "ended_at", "rechecks", "recheck_at"])
        wakeup.announce()
    logger.warning("agent_hold_ended reason=%s by=%s since=%s", row.reason, by, row.since)
    return row


def is_held() -> bool:
    """Whether the hold stands (one primary-key read)."""
    return AgentHold.objects.filter(pk=HOLD_ID, held=True).exists()


def recheck_at() -> datetime | None:
    """When the standing hold is tried again; None without a hold."""
    return AgentHold.objects.filter(pk=HOLD_ID, held=True).values_list("recheck_at", flat=True).first()


@gated
def warn(text: str, *, now: datetime | None = None) -> None:
    """Note a usage warning (`rate_limit_event` allowed_warning): logged and shown, no hold."""
    now = now or timezone.now()
    with transaction.atomic():
        row = _locked_row()
        row.warning, row.warning_at = text, now
        row.save(update_fields=["warning", "warning_at"])
    logger.warning("agent_usage_warning %s", text)


def _locked_row(*, create: bool = True) -> AgentHold | None:
    """The hold row, locked for this transaction (on SQLite the transaction is the lock)."""
    row = AgentHold.objects.select_for_update().filter(pk=HOLD_ID).first()
    if row is None and create:
        # The first hold ever; a second process doing the same waits on the primary key, then
        # finds the row (get_or_create re-reads it after its IntegrityError).
        row, _ = AgentHold.objects.get_or_create(pk=HOLD_ID)
        row = AgentHold.objects.select_for_update().get(pk=HOLD_ID)
    return row


def run_resumed_hooks(hold_id: int) -> None:
    """Call AGENT_RESUMED_HOOKS with the hold's id here and now (a command ended the hold); a hook
    that fails is logged, the rest run."""
    from django.utils.module_loading import import_string

    for path in settings.AGENT_RESUMED_HOOKS:
        try:
            import_string(path)(hold_id)
        except Exception:  # a notice that cannot go out must not fail the command that ended the hold
            logger.exception("hook_error id=%s hook=%s", hold_id, path)
