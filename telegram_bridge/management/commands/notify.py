import sys

from django.core.management.base import BaseCommand, CommandError

from pulses.management import COMMAND_CHECKS
from telegram_bridge.client import TelegramNotConfigured
from telegram_bridge.notify import EmptyMessage, NotificationFailed, send_message


class Command(BaseCommand):
    help = (
        "Send a message to the Telegram chat(s) in TELEGRAM_CHAT_ID; long text is split at Telegram's "
        "4096-character limit, on line ends where possible."
    )
    requires_system_checks = COMMAND_CHECKS

    def add_arguments(self, parser):
        parser.add_argument("text", help='the message; "-" reads it from standard input')
        parser.add_argument("--silent", action="store_true", help="deliver without a notification sound")

    def handle(self, *args, **options):
        text = sys.stdin.read() if options["text"] == "-" else options["text"]
        try:
            sent = send_message(text, silent=options["silent"])
        except (TelegramNotConfigured, EmptyMessage, NotificationFailed) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"sent {sent} message(s)")
