from django.core.management.base import CommandError

from pulses.management.base import ReeveCommand
from pulses.ops.lifeline import stop_with_parent
from telegram_bridge.client import TelegramConfig, TelegramNotConfigured
from telegram_bridge.poller import InvalidBotToken, ListenerFailed, Poller, PollerOptions


class Command(ReeveCommand):
    """Listen to the Telegram chats in TELEGRAM_CHAT_ID (long polling with TELEGRAM_BOT_TOKEN at
    TELEGRAM_API_BASE_URL) and turn each message into a critical pulse. SIGTERM/Ctrl+C stops it."""

    refused = (TelegramNotConfigured, InvalidBotToken, ListenerFailed)

    def add_arguments(self, parser):
        parser.add_argument(
            "--poll-timeout", type=int, default=30, help="seconds one long poll may wait (default: 30)"
        )
        parser.add_argument(
            "--backoff-cap",
            type=float,
            default=60.0,
            help="longest wait between retries while Telegram is unreachable, in seconds (default: 60)",
        )

    def handle(self, *args, poll_timeout: int, backoff_cap: float, verbosity: int, **options) -> None:
        if poll_timeout < 0 or backoff_cap <= 0:
            raise CommandError("--poll-timeout must be 0 or more and --backoff-cap more than 0")
        self.log_at_verbosity(verbosity)
        # Started by hand, by uv or by systemd: when that parent goes, so does the listener (cleanly).
        stop_with_parent("telegram_listener")
        config = TelegramConfig.from_settings().require()
        poller_options = PollerOptions(poll_timeout=poll_timeout, backoff_cap=backoff_cap)
        Poller(config, poller_options).run()
