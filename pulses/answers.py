"""What the agent said: a pulse's answer, its first line for lists, and what is done with it.

The answer is the final `result` text of the pulse's last successful attempt. A pulse that asked for
delivery (`deliver="telegram"`, every pulse made from a Telegram message) has an outbox row
(`Delivery`) that the Telegram listener turns into a reply; this module decides what that reply is:
the answer, one line about a failure, or nothing (the agent already messaged the user through
`send_notification`, or answered with the agreed NOTHING_TO_SAY token).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import OuterRef, QuerySet, Subquery
from django.db.models.functions import Substr

from pulses.db.write_gate import gated
from pulses.models import Delivery, Pulse, PulseAttempt, Status

# The whole answer an agent gives when a pulse needs no reply (an hourly check with nothing new).
# The Desk's instructions (pulses/desk_config.py) tell the agent so.
NOTHING_TO_SAY = "NO_REPLY"
FIRST_LINE_CHARS = 120
FAILURE_LINE_CHARS = 200


def answer_url(pulse_id: int) -> str:
    """Where the owner reads a pulse's whole answer: its page in the admin (REEVE_DASHBOARD_URL)."""
    return f"{settings.REEVE_DASHBOARD_URL.rstrip('/')}/admin/pulses/pulse/{pulse_id}/change/"


def answer_of(attempts: Iterable[PulseAttempt]) -> str:
    """The result text of the last successful attempt among `attempts`, "" when none succeeded."""
    answer = ""
    for attempt in attempts:
        if attempt.succeeded and attempt.result_text:
            answer = attempt.result_text
    return answer


def answer(pulse_id: int) -> str:
    """The agent's final answer to a pulse (its last successful attempt), "" when it has none."""
    text = (
        PulseAttempt.objects.filter(pulse_id=pulse_id, succeeded=True)
        .exclude(result_text="")
        .order_by("-number", "-id")
        .values_list("result_text", flat=True)
        .first()
    )
    return text or ""


def with_answer(pulses: QuerySet[Pulse], *, chars: int = 400) -> QuerySet[Pulse]:
    """`pulses` with `answer_text`: the start of each one's answer, read for the rows fetched only
    (a subquery per row on the attempts' pulse index, so a page of a long history stays cheap)."""
    last = (
        PulseAttempt.objects.filter(pulse=OuterRef("pk"), succeeded=True)
        .exclude(result_text="")
        .order_by("-number", "-id")
        .values("result_text")[:1]
    )
    return pulses.annotate(answer_text=Substr(Subquery(last), 1, chars))


@dataclass(frozen=True)
class Run:
    """One finished attempt as the dashboard lists it: what the agent said, or what went wrong."""

    pulse_id: int
    number: int
    finished_at: datetime
    succeeded: bool
    prompt: str
    said: str


def recent_runs(limit: int = 10) -> list[Run]:
    """The last `limit` finished attempts, newest first (a walk of the attempts' finished_at index)."""
    attempts = (
        PulseAttempt.objects.filter(finished_at__isnull=False)
        .order_by("-finished_at", "-id")
        .select_related("pulse")
        .only("pulse__prompt", "number", "finished_at", "succeeded", "result_text", "error")[:limit]
    )
    return [
        Run(
            pulse_id=attempt.pulse_id,
            number=attempt.number,
            finished_at=attempt.finished_at,
            succeeded=attempt.succeeded,
            prompt=attempt.pulse.prompt,
            said=first_line(attempt.result_text if attempt.succeeded else attempt.error) or "-",
        )
        for attempt in attempts
    ]


def first_line(text: str, limit: int = FIRST_LINE_CHARS) -> str:
    """The first non-blank line of `text`, shortened to `limit` characters (with an ellipsis)."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def is_nothing_to_say(text: str) -> bool:
    return text.strip() == NOTHING_TO_SAY


@dataclass(frozen=True)
class Reply:
    """What goes back for a finished pulse: `text` to send, or why nothing is (`skipped`)."""

    text: str = ""
    skipped: str = ""


def reply_for(pulse: Pulse, *, agent_notified: bool) -> Reply:
    """The message a finished pulse's delivery sends: the answer, one line for a final failure, or
    nothing (with the reason)."""
    if pulse.status == Status.CANCELLED:
        return Reply(skipped="the pulse was cancelled")
    if pulse.status == Status.FAILED:
        error = first_line(pulse.error_message, FAILURE_LINE_CHARS) or "no error was recorded"
        attempts = f"pulse #{pulse.pk} failed after {pulse.attempt_count} attempts"
        return Reply(f"⚠️ I could not answer this ({attempts}): {error}")
    if agent_notified:
        return Reply(skipped="the agent messaged the user itself (send_notification)")
    text = answer(pulse.pk)
    if is_nothing_to_say(text):
        return Reply(skipped=f"the agent had nothing to say ({NOTHING_TO_SAY})")
    if not text.strip():
        return Reply(skipped="the agent's answer was empty")
    return Reply(text)


@gated
def note_agent_notified(pulse_id: int | None) -> None:
    """The running pulse's agent messaged the user itself: its answer is not sent again."""
    if pulse_id is not None:
        Delivery.objects.filter(pulse_id=pulse_id).update(agent_notified=True)
