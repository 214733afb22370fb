"""An incoming Telegram message becomes a pulse: the bridge's one database operation.

Synchronous and free of python-telegram-bot types, so the poller calls it from a thread and tests
call it directly. Applying one message is one transaction: the message's row (keyed by bot, chat,
message id and edit date, see `TelegramMessage`), its pulse and the chat's conversation state commit
together, so a redelivered update changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import partial

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from pulses import queue
from pulses.db.write_gate import write_gate
from pulses.models import Priority, Pulse, PulseNotRunning, Status
from telegram_bridge.models import TelegramChat, TelegramMessage, UpdateFailure

logger = logging.getLogger(__name__)

PULSE_SOURCE = "telegram"
PULSE_TAGS = ("telegram", "user_message")
NEW_CONVERSATION_COMMAND = "/new"
NEW_CONVERSATION_REPLY = "🆕 Starting a fresh conversation: your next message opens a new agent session."
STOP_COMMAND = "/stop"
STOPPING_REPLY = "⏹ Stopping pulse #{id}: {prompt}"
NOTHING_TO_STOP_REPLY = "Nothing is running for this chat."
PASSED_ON = "text, photos, documents, voice notes, audio, video, locations and contacts"
UNSUPPORTED_REPLY = "I can't pass a {kind} on to the agent. Reeve passes on " + PASSED_ON + "."

# How each kind of file is named in a prompt and a reply.
FILE_LABELS = {
    "photo": "Photo",
    "document": "Document",
    "voice": "Voice note",
    "audio": "Audio file",
    "video": "Video",
    "video_note": "Video note",
    "animation": "Animation",
}


@dataclass(frozen=True)
class Attachment:
    """A file a message carries, as Telegram describes it (before any download)."""

    kind: str  # a FILE_LABELS key
    file_id: str
    unique_id: str
    size: int | None
    extension: str  # without the dot
    details: str = ""  # what the agent is told besides the path: "1280x960", "7 s", a file name

    @property
    def label(self) -> str:
        return FILE_LABELS[self.kind]


@dataclass(frozen=True)
class SavedFile:
    """An attachment saved into the Desk."""

    kind: str
    unique_id: str
    path: str
    details: str = ""

    def describe(self) -> str:
        details = f" ({self.details})" if self.details else ""
        return f"{FILE_LABELS[self.kind]}{details} saved at {self.path}"


@dataclass(frozen=True)
class IncomingMessage:
    update_id: int
    chat_id: int
    message_id: int
    sender: str
    text: str = ""  # the text, or a file's caption
    chat_title: str = ""
    sent_at: datetime | None = None
    edit_date: int = 0  # 0 for the message as sent; the edit's Unix time for an edit
    shared: tuple[str, ...] = ()  # a location, venue or contact, as text
    attachment: Attachment | None = None
    unsupported: str = ""  # what the message carries that Reeve does not pass on ("sticker")

    @property
    def is_edit(self) -> bool:
        return self.edit_date > 0


class Action(StrEnum):
    PULSE = "pulse"  # a new pulse was scheduled
    UPDATED = "updated"  # an edit rewrote the prompt of the message's pulse, not started yet
    FOLLOW_UP = "follow_up"  # an edit of a message whose pulse had started: a pulse in its session
    DUPLICATE = "duplicate"  # the message was applied before (redelivered after a crash)
    NEW_CONVERSATION = "new_conversation"  # `/new` alone: the chat's next message starts afresh
    UNSUPPORTED = "unsupported"  # a sticker, poll, dice …: only a reply
    NOT_PASSED_ON = "not_passed_on"  # only a file that could not be saved: only a reply
    STOPPED = "stopped"  # `/stop`: the chat's running pulse was asked to stop
    NOTHING_TO_STOP = "nothing_to_stop"  # `/stop` while nothing of the chat runs: only a reply


@dataclass(frozen=True)
class Handled:
    action: Action
    pulse_id: int | None = None
    session_id: str = ""
    reply: str = ""


@dataclass
class _Outcome:
    action: Action
    pulse: Pulse | None = None
    reply: str = ""
    files: list[dict[str, str]] = field(default_factory=list)


def prompt_for(
    message: IncomingMessage,
    *,
    files: Sequence[SavedFile] = (),
    file_problem: str = "",
    text: str | None = None,
    edit_of: int | None = None,
) -> str:
    """What the agent is asked: who wrote, the text, what was shared and where the files are."""
    header = f"Telegram message from {message.sender}"
    if edit_of is not None:
        header += f", an edit of their earlier message (pulse #{edit_of}); it now reads"
    body = message.text if text is None else text
    lines = [body] if body else []
    lines += message.shared
    lines += [saved.describe() for saved in files]
    if file_problem:
        lines.append(f"(They also sent a file Reeve could not save: {file_problem}.)")
    return f"{header}: " + "\n".join(lines)


def split_command(text: str) -> tuple[str, str]:
    """`/new@reeve_bot hello` -> ("/new", "hello"); plain text -> ("", text)."""
    if not text.startswith("/"):
        return "", text
    head, *rest = text.split(maxsplit=1)
    return head.split("@", 1)[0].lower(), rest[0].strip() if rest else ""


def _message_key(message: IncomingMessage, bot_id: int) -> dict[str, int]:
    return {
        "bot_id": bot_id,
        "chat_id": message.chat_id,
        "message_id": message.message_id,
        "edit_date": message.edit_date,
    }


def already_applied(message: IncomingMessage, *, bot_id: int) -> bool:
    """True when this message (or this edit of it) was applied before: a redelivery."""
    return TelegramMessage.objects.filter(**_message_key(message, bot_id)).exists()


def saved_files(message: IncomingMessage, *, bot_id: int) -> dict[str, SavedFile]:
    """The files already saved for this message (by an earlier version of it), by unique file id."""
    rows = TelegramMessage.objects.filter(
        bot_id=bot_id, chat_id=message.chat_id, message_id=message.message_id
    ).values_list("files", flat=True)
    return {item["unique_id"]: SavedFile(**item) for files in rows for item in files}


def handle_message(
    message: IncomingMessage,
    *,
    bot_id: int,
    files: Sequence[SavedFile] = (),
    file_problem: str = "",
) -> Handled:
    """Apply one message (or edit) from an allowed chat: schedule its pulse (resuming the chat's
    session), rewrite or follow up the pulse of the message it edits, forget the session for `/new`,
    or only answer. `files` are its attachments already saved; `file_problem` says, for the user,
    why one could not be. Idempotent: applying the same message again changes nothing."""
    key = _message_key(message, bot_id)
    try:
        with write_gate(), transaction.atomic():
            chat, _ = TelegramChat.objects.select_for_update().get_or_create(chat_id=message.chat_id)
            seen = TelegramMessage.objects.filter(**key).first()
            if seen is not None:
                return _redelivered(message, seen)
            outcome = _apply(chat, message, files=files, file_problem=file_problem, bot_id=bot_id)
            TelegramMessage.objects.create(
                **key,
                update_id=message.update_id,
                outcome=outcome.action,
                pulse=outcome.pulse,
                files=outcome.files,
            )
            chat.title = message.chat_title[:200]
            chat.save(update_fields=["last_pulse", "title", "updated_at"])
    except IntegrityError:
        # Another listener on the same token applied it first (its row won the unique key).
        seen = TelegramMessage.objects.filter(**key).first()
        if seen is None:
            raise
        return _redelivered(message, seen)
    pulse = outcome.pulse
    logger.info(
        "telegram_message_applied chat_id=%s message_id=%s edit_date=%s update_id=%s action=%s "
        "pulse=%s resume=%s files=%s",
        message.chat_id,
        message.message_id,
        message.edit_date,
        message.update_id,
        outcome.action,
        pulse.pk if pulse else "-",
        (pulse.session_id if pulse else "") or "-",
        len(outcome.files),
    )
    return Handled(
        outcome.action,
        pulse_id=pulse.pk if pulse else None,
        session_id=pulse.session_id if pulse else "",
        reply=outcome.reply,
    )


def _redelivered(message: IncomingMessage, seen: TelegramMessage) -> Handled:
    logger.info(
        "telegram_update_redelivered chat_id=%s message_id=%s edit_date=%s update_id=%s pulse=%s "
        "applied_already=true",
        message.chat_id,
        message.message_id,
        message.edit_date,
        message.update_id,
        seen.pulse_id or "-",
    )
    return Handled(Action.DUPLICATE, pulse_id=seen.pulse_id)


def _apply(
    chat: TelegramChat,
    message: IncomingMessage,
    *,
    files: Sequence[SavedFile],
    file_problem: str,
    bot_id: int,
) -> _Outcome:
    saved = [{"kind": f.kind, "unique_id": f.unique_id, "path": f.path, "details": f.details} for f in files]
    problem_reply = f"⚠️ I could not pass on {file_problem}." if file_problem else ""
    if not (message.text or message.shared or files):
        if problem_reply:
            return _Outcome(Action.NOT_PASSED_ON, reply=problem_reply)
        kind = message.unsupported or "message of this kind"
        logger.info("telegram_message_unsupported chat_id=%s kind=%s", message.chat_id, kind)
        return _Outcome(Action.UNSUPPORTED, reply=UNSUPPORTED_REPLY.format(kind=kind))
    if problem_reply:
        problem_reply += " The rest of your message went through."
    # The message's prompt; an edit's also says which pulse it edits.
    prompt = partial(prompt_for, message, files=files, file_problem=file_problem)
    if message.is_edit:
        outcome = _apply_edit(chat, message, prompt, bot_id=bot_id)
        outcome.reply, outcome.files = problem_reply, saved
        return outcome
    text = message.text
    session_id = chat.last_pulse.session_id if chat.last_pulse else ""
    command, rest = split_command(text)
    if command == STOP_COMMAND and not rest and not message.shared and not files:
        return _stop_running(chat, message.chat_id)
    if command == NEW_CONVERSATION_COMMAND:
        session_id = ""
        if not rest and not message.shared and not files:
            chat.last_pulse = None
            logger.info("telegram_new_conversation chat_id=%s", message.chat_id)
            return _Outcome(Action.NEW_CONVERSATION, reply=NEW_CONVERSATION_REPLY)
        text = rest
    pulse = _schedule(prompt(text=text), message=message, session_id=session_id)
    chat.last_pulse = pulse
    return _Outcome(Action.PULSE, pulse=pulse, reply=problem_reply, files=saved)


def _stop_running(chat: TelegramChat, chat_id: int) -> _Outcome:
    """`/stop`: ask the worker to stop the chat's running pulse (its last one, one in its session, or
    one whose answer goes to this chat); it ends cancelled, "stopped by telegram chat ID"."""
    mine = Q(delivery__chat_id=chat_id)
    if chat.last_pulse_id:
        mine |= Q(pk=chat.last_pulse_id)
        if chat.last_pulse.session_id:
            mine |= Q(session_id=chat.last_pulse.session_id)
    for pulse in Pulse.objects.filter(mine, status=Status.PROCESSING).order_by("id"):
        try:
            queue.request_stop(pulse.pk, by=f"telegram chat {chat_id}")
        except PulseNotRunning:  # it ended meanwhile
            continue
        prompt = " ".join(pulse.prompt.split())
        prompt = prompt if len(prompt) <= 80 else prompt[:79] + "…"
        return _Outcome(Action.STOPPED, pulse=pulse, reply=STOPPING_REPLY.format(id=pulse.pk, prompt=prompt))
    logger.info("telegram_nothing_to_stop chat_id=%s", chat_id)
    return _Outcome(Action.NOTHING_TO_STOP, reply=NOTHING_TO_STOP_REPLY)


def _apply_edit(
    chat: TelegramChat, message: IncomingMessage, prompt: Callable[..., str], *, bot_id: int
) -> _Outcome:
    """Rewrite the prompt of the edited message's latest pulse if no worker took it yet; otherwise
    a follow-up in that pulse's session, marked as an edit of it."""
    earlier = (
        TelegramMessage.objects.filter(
            bot_id=bot_id, chat_id=message.chat_id, message_id=message.message_id, pulse__isnull=False
        )
        .select_related("pulse")
        .order_by("-edit_date")
        .first()
    )
    if earlier is not None and earlier.pulse is not None:
        earlier_pulse = earlier.pulse
        # A follow-up that is rewritten stays marked as the edit of the pulse it follows.
        edit_of = earlier_pulse.parent_id if earlier.edit_date else None
        revised = prompt(edit_of=edit_of)
        if queue.revise_prompt(earlier_pulse.pk, revised):
            return _Outcome(Action.UPDATED, pulse=earlier_pulse)
        session_id = earlier_pulse.session_id
        if not session_id and chat.last_pulse:
            session_id = chat.last_pulse.session_id
        pulse = _schedule(
            prompt(edit_of=earlier_pulse.pk),
            message=message,
            session_id=session_id,
            parent_id=earlier_pulse.pk,
        )
    else:
        # An edit of a message Reeve never turned into a pulse (sent before it listened): a message.
        session_id = chat.last_pulse.session_id if chat.last_pulse else ""
        pulse = _schedule(prompt(), message=message, session_id=session_id)
    chat.last_pulse = pulse
    return _Outcome(Action.FOLLOW_UP if earlier else Action.PULSE, pulse=pulse)


def _schedule(
    prompt: str, *, message: IncomingMessage, session_id: str, parent_id: int | None = None
) -> Pulse:
    """The message's pulse, whose answer goes back to the chat as a reply to the message."""
    return queue.schedule(
        prompt=prompt,
        priority=Priority.CRITICAL,
        source=PULSE_SOURCE,
        tags=PULSE_TAGS,
        session_id=session_id,
        parent_id=parent_id,
        deliver="telegram",
        reply_to=(message.chat_id, message.message_id),
    ).pulse


def start_fresh_conversation(chat_id: int) -> bool:
    """Forget a chat's session so its next message starts a new one; False for an unknown chat."""
    updated = TelegramChat.objects.filter(chat_id=chat_id).update(last_pulse=None)
    if updated:
        logger.info("telegram_new_conversation chat_id=%s via=admin", chat_id)
    return bool(updated)


SET_ASIDE_OUTCOME = "set_aside"


def note_failure(
    *, bot_id: int, chat_id: int, message_id: int, edit_date: int, update_id: int, error: str
) -> int:
    """Count one unexpected failure of applying an update (committed at once, so a restart counts
    on); how many there have been."""
    key = {"bot_id": bot_id, "chat_id": chat_id, "message_id": message_id, "edit_date": edit_date}
    with write_gate(), transaction.atomic():
        row, _ = UpdateFailure.objects.select_for_update().get_or_create(
            **key, defaults={"update_id": update_id}
        )
        row.tries += 1
        row.update_id = update_id
        row.error = error[:2000]
        row.save(update_fields=["tries", "update_id", "error", "updated_at"])
    return row.tries


def set_aside(*, bot_id: int, chat_id: int, message_id: int, edit_date: int, update_id: int) -> None:
    """Give up on an update that keeps failing: it is recorded as applied (outcome `set_aside`, no
    pulse), so a redelivery is a duplicate and the offset moves past it."""
    key = {"bot_id": bot_id, "chat_id": chat_id, "message_id": message_id, "edit_date": edit_date}
    with write_gate(), transaction.atomic():
        UpdateFailure.objects.filter(**key).update(set_aside_at=timezone.now())
        if not TelegramMessage.objects.filter(**key).exists():
            TelegramMessage.objects.create(**key, update_id=update_id, outcome=SET_ASIDE_OUTCOME)
