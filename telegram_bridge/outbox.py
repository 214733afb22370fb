"""The answers outbox: finished pulses whose answer goes back to Telegram, sent by the listener.

A pulse that asked for delivery has a `Delivery` row from the moment it was created (written in the
pulse's transaction). Once the pulse has finished, the listener takes the row for a short while
(`next_try_at`, so a second listener on the same token leaves it alone), sends the reply part by
part, then closes the row. The Bot API has no idempotency key, so a part Telegram took but that was
not yet noted would go out twice after a crash; instead each part is noted *before* it is handed to
Telegram (`parts_started`) and again once Telegram took it (`parts_sent`). A send cut short (the
listener killed or stopped, a timeout after the request went out) leaves the part in doubt: it is
never sent again (at most once), and a short note in that chat says a part may be missing and which
pulse holds the whole answer. A send Telegram refused, or that never reached it (no connection), is
not in doubt and is tried again. While Telegram cannot be reached the row stays waiting and is tried
again with a growing delay.

These functions touch the database only; `Poller` calls them from its database thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import DatabaseError, transaction
from django.db.models import Case, F, Q, TextField, Value, When
from django.utils import timezone

from pulses.answers import answer_url, reply_for
from pulses.db.write_gate import gated, write_gate
from pulses.limits import MAX_ANSWER_PARTS
from pulses.models import FINISHED, Delivery, DeliveryState
from telegram_bridge.notify import TELEGRAM_MESSAGE_LIMIT, split_message, utf16_len
from telegram_bridge.retry_schedule import retry_delay, seconds_until_due

logger = logging.getLogger(__name__)

# How long a listener holds a delivery while it sends it; renewed with each part.
HOLD_SECONDS = 30.0
BATCH = 20
# How many takes an answer gets when making or sending it raises an unexpected error (its `tries`,
# which Telegram outages count too) before it is set aside as failed.
ITEM_TRIES = 3


@dataclass(frozen=True)
class Outgoing:
    """A reply to send: its parts to each chat in order (chat by chat), and how many went out already."""

    delivery_id: int
    pulse_id: int
    chat_ids: tuple[int, ...]
    reply_to: int | None
    parts: tuple[str, ...]
    parts_sent: int
    tries: int
    in_doubt: bool = False  # the message at `parts_sent` was handed to Telegram, unconfirmed
    priority: str = "normal"  # the pulse's: inside the quiet hours only a critical one makes a sound

    @property
    def messages(self) -> list[tuple[int, int, str]]:
        """(index, chat id, text) of every message of the reply, the ones already sent included."""
        ordered = [(chat_id, part) for chat_id in self.chat_ids for part in self.parts]
        return [(index, chat_id, part) for index, (chat_id, part) in enumerate(ordered)]


def answer_parts(text: str, *, pulse_id: int) -> list[str]:
    """The messages of an answer: Telegram-sized parts, at most MAX_ANSWER_PARTS of them; a longer
    answer is cut, its last message ending with how long it was and the link to the whole of it."""
    # A part holds at most TELEGRAM_MESSAGE_LIMIT characters, so only this much can be sent; the
    # rest is never split (splitting 2,000,000 characters costs more than the answer is worth).
    most = MAX_ANSWER_PARTS * TELEGRAM_MESSAGE_LIMIT
    parts = split_message(text[:most])
    if len(text) <= most and len(parts) <= MAX_ANSWER_PARTS:
        return parts
    note = (
        f"\n\n✂️ Cut after {MAX_ANSWER_PARTS} messages: the whole answer ({len(text):,} characters) "
        f"is on pulse #{pulse_id}'s page: {answer_url(pulse_id)}"
    )
    kept = parts[:MAX_ANSWER_PARTS]
    kept[-1] = split_message(kept[-1], TELEGRAM_MESSAGE_LIMIT - utf16_len(note))[0] + note
    return kept


def take_due(*, configured_chats: tuple[int, ...], limit: int = BATCH) -> list[Outgoing]:
    """Hold the deliveries whose pulse has finished and that are due, and say what each sends.
    Those with nothing to send (the agent said it already, had nothing to say, was cancelled) are
    closed here as skipped."""
    now = timezone.now()
    candidates = list(
        Delivery.objects.filter(state=DeliveryState.WAITING, pulse__status__in=FINISHED)
        .exclude(next_try_at__gt=now)
        .select_related("pulse")
        .order_by("pulse_id")[:limit]
    )
    taken: list[Outgoing] = []
    for delivery in candidates:
        with write_gate(), transaction.atomic():
            # Conditional on what was read: another listener that took it meanwhile wins.
            held = (
                Delivery.objects.filter(pk=delivery.pk, state=DeliveryState.WAITING, tries=delivery.tries)
                .exclude(next_try_at__gt=now)
                .update(next_try_at=now + timedelta(seconds=HOLD_SECONDS), tries=F("tries") + 1)
            )
        if not held:
            continue
        try:
            reply = reply_for(delivery.pulse, agent_notified=delivery.agent_notified)
            parts = tuple(answer_parts(reply.text, pulse_id=delivery.pulse_id)) if not reply.skipped else ()
        except DatabaseError:
            raise
        except Exception as exc:  # one answer that cannot be made must not stop the others
            tries = delivery.tries + 1
            logger.exception("telegram_answer_unreadable pulse=%s try=%s", delivery.pulse_id, tries)
            if tries >= ITEM_TRIES:  # held for HOLD_SECONDS meanwhile: tried again after that
                finish(delivery.pk, state=DeliveryState.FAILED, detail=f"unexpected error: {exc!r}")
            continue
        chats = (delivery.chat_id,) if delivery.chat_id is not None else configured_chats
        if reply.skipped or not chats:
            finish(delivery.pk, state=DeliveryState.SKIPPED, detail=reply.skipped or "no chat is configured")
            continue
        taken.append(
            Outgoing(
                delivery_id=delivery.pk,
                pulse_id=delivery.pulse_id,
                chat_ids=tuple(chats),
                reply_to=delivery.reply_to_message_id,
                parts=parts,
                parts_sent=delivery.parts_sent,
                tries=delivery.tries + 1,
                in_doubt=delivery.parts_started > delivery.parts_sent,
                priority=delivery.pulse.priority,
            )
        )
    return taken


# The record a skip writes (part_skipped) outlives whatever a later listener writes into the detail:
# the one that skipped may be killed before it closes the delivery, and the next one, which finds
# nothing in doubt, must not close it as wholly sent, nor let a retry's error replace the record.
SKIP_RECORDED = Q(detail__contains="may be missing")


def _detail_keeping_skip(detail: str) -> Case:
    return Case(When(SKIP_RECORDED, then=F("detail")), default=Value(detail[:2000]), output_field=TextField())


@gated
def part_starting(delivery_id: int, *, index: int) -> None:
    """Message `index` is about to be handed to Telegram: noted (and committed) before the send, so
    a crash during it leaves the message in doubt instead of sending it again."""
    Delivery.objects.filter(pk=delivery_id, state=DeliveryState.WAITING).update(
        parts_started=index + 1, next_try_at=timezone.now() + timedelta(seconds=HOLD_SECONDS)
    )


@gated
def part_not_sent(delivery_id: int, *, index: int) -> None:
    """Telegram refused message `index`, or the request never reached it: it is not in doubt."""
    Delivery.objects.filter(pk=delivery_id, state=DeliveryState.WAITING, parts_sent=index).update(
        parts_started=index
    )


@gated
def part_sent(delivery_id: int, *, sent: int) -> None:
    """`sent` messages of the reply have gone out; the hold is renewed for the next one."""
    Delivery.objects.filter(pk=delivery_id, state=DeliveryState.WAITING).update(
        parts_sent=sent, parts_started=sent, next_try_at=timezone.now() + timedelta(seconds=HOLD_SECONDS)
    )


@gated
def part_skipped(outgoing: Outgoing) -> None:
    """The message in doubt is passed over, never sent twice; the delivery says which one."""
    index = outgoing.parts_sent
    detail = f"message {index + 1} of {len(outgoing.messages)} may be missing: its send was cut short"
    Delivery.objects.filter(pk=outgoing.delivery_id, state=DeliveryState.WAITING, parts_sent=index).update(
        parts_sent=index + 1, parts_started=index + 1, detail=detail
    )
    logger.warning(
        "telegram_answer_part_in_doubt pulse=%s message=%s of=%s",
        outgoing.pulse_id,
        index + 1,
        len(outgoing.messages),
    )


@gated
def finish(delivery_id: int, *, state: str, detail: str = "") -> None:
    """Close a delivery: sent, skipped (with why) or failed (with Telegram's refusal). Without a
    `detail`, a part passed over earlier (part_skipped) stays recorded."""
    Delivery.objects.filter(pk=delivery_id, state=DeliveryState.WAITING).update(
        state=state,
        detail=detail[:2000] if detail else _detail_keeping_skip(""),
        finished_at=timezone.now(),
        next_try_at=None,
    )
    row = Delivery.objects.filter(pk=delivery_id).values("pulse_id", "parts_sent", "detail").first() or {}
    log = logger.warning if state == DeliveryState.FAILED else logger.info
    log(
        "telegram_answer_%s pulse=%s messages=%s%s",
        state,
        row.get("pulse_id"),
        row.get("parts_sent"),
        f" reason={row['detail']}" if row.get("detail") else "",
    )


@gated
def retry_later(outgoing: Outgoing, *, error: str) -> float:
    """Telegram could not be reached: try again after a delay that grows with each try; the delay."""
    delay = retry_delay(outgoing.tries)
    Delivery.objects.filter(pk=outgoing.delivery_id, state=DeliveryState.WAITING).update(
        next_try_at=timezone.now() + timedelta(seconds=delay), detail=_detail_keeping_skip(error)
    )
    logger.warning(
        "telegram_answer_retry pulse=%s try=%s retry_in_s=%s error=%s",
        outgoing.pulse_id,
        outgoing.tries,
        delay,
        error,
    )
    return delay


def seconds_until_next() -> float | None:
    """Seconds until the soonest delivery held back for a retry is due again; None when none is."""
    return seconds_until_due(Delivery.objects.filter(state=DeliveryState.WAITING))
