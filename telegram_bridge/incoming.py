"""What a Telegram update carries, read from python-telegram-bot's types into the bridge's own.

Text and captions, the one file a message may carry (the largest size of a photo), locations,
venues and contacts as text, edits (with their edit date), and the name of anything Reeve does not
pass on (a sticker, a poll, dice …) so the user can be told; and, when the library cannot read a
batch at all, each update of it on its own.
"""

from __future__ import annotations

import logging
import mimetypes
import re
import warnings
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePosixPath

from telegram import Bot, Message, Update
from telegram.warnings import PTBUserWarning

from telegram_bridge.handlers import Attachment, IncomingMessage

logger = logging.getLogger(__name__)

ALLOWED_UPDATES = ["message", "edited_message"]
# The files Reeve downloads, in the order a message's attributes are read, and the extension each
# gets when neither a file name nor a MIME type says better.
FILE_KINDS = {
    "document": "bin",
    "audio": "mp3",
    "voice": "ogg",
    "video": "mp4",
    "video_note": "mp4",
    "animation": "mp4",
}
EXTENSION = re.compile(r"[a-z0-9]{1,10}")


def incoming_message(update: Update) -> IncomingMessage | None:
    """The message (or edit) an update carries, or None when it carries nothing a person sent
    (a service message such as a member joining, or an update of another type)."""
    message = update.message or update.edited_message
    if message is None:
        return None
    text = message.text or message.caption or ""
    attachment = _attachment(message)
    shared = _shared(message)
    unsupported = ""
    if not (text or attachment or shared):
        unsupported = _unsupported_kind(message)
        if not unsupported:
            return None
    sender = message.from_user.full_name if message.from_user else message.chat.effective_name
    edit_date = message.edit_date if update.edited_message is not None else None
    return IncomingMessage(
        update_id=update.update_id,
        chat_id=message.chat.id,
        message_id=message.message_id,
        sender=sender or "unknown",
        text=text,
        chat_title=message.chat.effective_name or "",
        sent_at=message.date,
        edit_date=int(edit_date.timestamp()) if edit_date else 0,
        shared=shared,
        attachment=attachment,
        unsupported=unsupported,
    )


def _seconds(value: int | timedelta | None) -> int:
    """A duration python-telegram-bot gives as int or timedelta, in whole seconds."""
    if isinstance(value, timedelta):
        return int(value.total_seconds())
    return int(value or 0)


def _extension(*, file_name: str | None, mime_type: str | None, default: str) -> str:
    for candidate in (
        PurePosixPath(file_name or "").suffix,
        mimetypes.guess_extension(mime_type or "") or "",
    ):
        extension = candidate.lstrip(".").lower()
        if EXTENSION.fullmatch(extension):
            return extension
    return default


def _attachment(message: Message) -> Attachment | None:
    if message.photo:
        largest = max(message.photo, key=lambda size: (size.width * size.height, size.file_size or 0))
        return Attachment(
            kind="photo",
            file_id=largest.file_id,
            unique_id=largest.file_unique_id,
            size=largest.file_size,
            extension="jpg",
            details=f"{largest.width}x{largest.height}",
        )
    for kind, default in FILE_KINDS.items():
        media = getattr(message, kind)
        if media is None:
            continue
        file_name = getattr(media, "file_name", None)
        mime_type = getattr(media, "mime_type", None)
        details: list[str] = []
        if file_name:
            details.append(f"sent as {file_name!r}")
        if mime_type:
            details.append(mime_type)
        duration = _seconds(getattr(media, "duration", None))
        if kind in ("voice", "audio", "video", "video_note", "animation") and duration:
            details.append(f"{duration} s")
        if kind == "voice":
            details.append("not transcribed")
        if kind == "audio" and (media.performer or media.title):
            details.append(" – ".join(part for part in (media.performer, media.title) if part))
        return Attachment(
            kind=kind,
            file_id=media.file_id,
            unique_id=media.file_unique_id,
            size=media.file_size,
            extension=_extension(file_name=file_name, mime_type=mime_type, default=default),
            details=", ".join(details),
        )
    return None


def _shared(message: Message) -> tuple[str, ...]:
    """A venue, location or contact as lines of text the agent can read."""
    if message.venue:
        venue = message.venue
        where = f"{venue.location.latitude:.6f}, {venue.location.longitude:.6f}"
        return (f"Shared a venue: {venue.title}, {venue.address} ({where})",)
    if message.location:
        location = message.location
        line = f"Shared a location: {location.latitude:.6f}, {location.longitude:.6f}"
        if location.horizontal_accuracy:
            line += f" (within {location.horizontal_accuracy:.0f} m)"
        if location.live_period:
            line += " (live location)"
        return (line,)
    if message.contact:
        contact = message.contact
        name = " ".join(part for part in (contact.first_name, contact.last_name) if part)
        return (f"Shared a contact: {name}, phone {contact.phone_number}",)
    return ()


def _unsupported_kind(message: Message) -> str:
    """The name of what the message carries that Reeve does not pass on, or "" for a service message."""
    attachment = message.effective_attachment
    if attachment is None:
        return ""
    name = type(attachment).__name__ if not isinstance(attachment, tuple) else "message"
    # Sticker -> "sticker", PaidMediaInfo -> "paid media info", Dice -> "dice"
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower()


@dataclass(frozen=True)
class Unreadable:
    """An update python-telegram-bot could not read: it is answered and confirmed, never retried."""

    update_id: int
    chat_id: int | None


async def read_one_by_one(bot: Bot, *, offset: int | None, limit: int) -> list[Update | Unreadable]:
    """The batch at `offset` read update by update, for when the library failed to read it whole
    (Telegram's Bot API newer than the library): what it cannot read comes back as Unreadable."""
    params: dict[str, object] = {"limit": limit, "timeout": 0, "allowed_updates": ALLOWED_UPDATES}
    if offset is not None:
        params["offset"] = offset
    with warnings.catch_warnings():
        # do_api_request warns that get_updates exists; get_updates is what failed.
        warnings.simplefilter("ignore", PTBUserWarning)
        raw = await bot.do_api_request("getUpdates", api_kwargs=params)
    updates: list[Update | Unreadable] = []
    for item in raw:
        try:
            updates.append(Update.de_json(item, bot))
        except (TypeError, ValueError, KeyError) as exc:
            message = item.get("message") or item.get("edited_message") or {}
            chat_id = (message.get("chat") or {}).get("id")
            logger.warning(
                "telegram_update_unreadable update_id=%s chat_id=%s error=%r",
                item.get("update_id"),
                chat_id,
                exc,
            )
            updates.append(Unreadable(int(item["update_id"]), chat_id))
    return updates
