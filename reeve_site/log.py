"""Log formatting for stdout (under systemd, each line carries its syslog priority for journald), and
the filter that keeps secrets out of every log line."""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
from pathlib import Path

SYSLOG_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class ConsoleFormatter(logging.Formatter):
    """The plain format; with a `<N>` prefix when stdout is the journal (systemd sets JOURNAL_STREAM),
    so `journalctl -p err` finds errors by their real level."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.journal = bool(os.environ.get("JOURNAL_STREAM"))

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.journal:
            return text
        priority = SYSLOG_PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


# A Telegram bot token (digits:35 characters), wherever it appears, and the Bot API's URL path.
_BOT_TOKEN = re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}")
_BOT_URL = re.compile(r"(/bot)[^/\s'\"]+")
REDACTED = "<redacted>"


class RedactSecrets(logging.Filter):
    """Rewrites each record (message, arguments, traceback) with Reeve's secrets replaced: the
    configured TELEGRAM_BOT_TOKEN, PULSE_API_TOKEN and SECRET_KEY, and anything shaped like a bot
    token or a Bot API URL. It never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True

    @staticmethod
    def redact(text: str) -> str:
        for secret in _configured_secrets():
            text = text.replace(secret, REDACTED)
        return _BOT_URL.sub(rf"\1{REDACTED}", _BOT_TOKEN.sub(REDACTED, text))


def _configured_secrets() -> list[str]:
    from django.conf import settings

    if not settings.configured:
        return []
    names = ("TELEGRAM_BOT_TOKEN", "PULSE_API_TOKEN", "SECRET_KEY")
    # Short values (a test's "t") would blank out ordinary words; real secrets are long.
    return [value for name in names if len(value := str(getattr(settings, name, "") or "")) >= 8]


class LogFileHandler(logging.handlers.WatchedFileHandler):
    """LOG_FILE, reopened when logrotate moves it (no restart needed); its folder is made when the
    file is first opened, so reading the settings creates nothing."""

    def _open(self):  # noqa: ANN202 (logging's own signature)
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()
