import sys

from pulses.management.base import ReeveCommand
from telegram_bridge.client import TelegramNotConfigured
from telegram_bridge.notify import EmptyMessage, NotificationFailed, send_message


class Command(ReeveCommand):
    """Send a message to the Telegram chat(s) in TELEGRAM_CHAT_ID; long text is split at Telegram's
    4096-character limit, on line ends where possible."""

    refused = (TelegramNotConfigured, EmptyMessage, NotificationFailed)

    def add_arguments(self, parser):
        parser.add_argument("text", help='the message; "-" reads it from standard input')
        parser.add_argument("--silent", action="store_true", help="deliver without a notification sound")
        parser.add_argument(
            "--critical", action="store_true", help="with a sound even inside TELEGRAM_QUIET_HOURS"
        )

    def handle(self, *args, text: str, silent: bool, critical: bool, **options) -> None:
        text = sys.stdin.read() if text == "-" else text
        sent = send_message(text, silent=silent, priority="critical" if critical else "normal")
        self.stdout.write(f"sent {sent} message(s)")
