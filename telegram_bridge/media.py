"""Files sent in Telegram, saved into the Desk where the agent can open them.

A file is fetched the way the Bot API says (getFile, then its file path under the file URL that
sits beside TELEGRAM_API_BASE_URL), within TELEGRAM_MAX_FILE_MB, and written privately (0600 in
0700 folders) to `inbox/telegram/<date>/<chat id>-<message id>.<ext>`. The name depends only on the
message, so a download repeated after a crash rewrites the same file instead of adding one; the
bytes go to a hidden `.part` file first and are renamed into place whole.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from django.conf import settings
from django.utils import timezone
from telegram import Bot
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError

from telegram_bridge.handlers import Attachment, IncomingMessage

INBOX = Path("inbox") / "telegram"
DOWNLOAD_TIMEOUT_SECONDS = 120.0
MEGABYTE = 1024 * 1024


class FileNotSaved(Exception):
    """A file that will not be saved, whatever the retries; the message is for the user."""


def max_file_bytes() -> int:
    return int(settings.TELEGRAM_MAX_FILE_MB * MEGABYTE)


def _size(size: int) -> str:
    """30 MB, 2.5 MB, 12 KB: a size the way a person says it."""
    if size < MEGABYTE:
        return f"{max(1, round(size / 1024))} KB"
    return f"{size / MEGABYTE:.1f}".removesuffix(".0") + " MB"


def too_big(attachment: Attachment, size: int | None) -> str:
    """Why `attachment` of `size` bytes is not taken (for the user), or "" when it fits the limit."""
    if size is None or size <= max_file_bytes():
        return ""
    return (
        f"your {attachment.label.lower()}: it is {_size(size)} and Reeve takes files up to "
        f"{_size(max_file_bytes())} (TELEGRAM_MAX_FILE_MB)"
    )


def inbox_path(message: IncomingMessage, attachment: Attachment) -> Path:
    """Where the file of `message` goes in the Desk; the same path every time the message comes."""
    sent = timezone.localtime(message.sent_at) if message.sent_at else timezone.localtime()
    name = f"{message.chat_id}-{message.message_id}"
    if message.is_edit:
        name += f"-edit-{message.edit_date}"
    return Path(settings.REEVE_DESK_PATH) / INBOX / f"{sent:%Y-%m-%d}" / f"{name}.{attachment.extension}"


async def fetch(bot: Bot, attachment: Attachment) -> bytes:
    """The file's bytes. FileNotSaved when it cannot be had (too big, refused); a NetworkError or
    RetryAfter from python-telegram-bot when trying again may help."""
    try:
        telegram_file = await bot.get_file(attachment.file_id)
        problem = too_big(attachment, telegram_file.file_size)
        if problem:
            raise FileNotSaved(problem)
        data = await telegram_file.download_as_bytearray(read_timeout=DOWNLOAD_TIMEOUT_SECONDS)
    except (RetryAfter, FileNotSaved):
        raise
    except BadRequest as exc:  # "file is too big", "wrong file_id": the same next time
        raise FileNotSaved(f'your {attachment.label.lower()}: Telegram said "{exc.message}"') from exc
    except NetworkError:
        raise
    except TelegramError as exc:
        raise FileNotSaved(f'your {attachment.label.lower()}: Telegram said "{exc.message}"') from exc
    problem = too_big(attachment, len(data))
    if problem:
        raise FileNotSaved(problem)
    return bytes(data)


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` readable by the owner only, whole or not at all."""
    desk = Path(settings.REEVE_DESK_PATH)
    desk.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder = desk
    for part in path.parent.relative_to(desk).parts:
        folder = folder / part
        if not folder.is_dir():
            folder.mkdir(mode=0o700, exist_ok=True)
            folder.chmod(0o700)
    partial = path.with_name(f".{path.name}.part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, path)


async def save(path: Path, data: bytes) -> None:
    await asyncio.to_thread(write_private, path, data)
