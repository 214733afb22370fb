"""Log formatting for stdout: under systemd, each line carries its syslog priority for journald."""

from __future__ import annotations

import logging
import os

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
