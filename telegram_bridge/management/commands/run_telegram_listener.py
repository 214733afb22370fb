import logging

from django.core.management.base import BaseCommand, CommandError

from pulses.management import COMMAND_CHECKS
from pulses.ops.lifeline import stop_with_parent
from telegram_bridge.client import TelegramConfig, TelegramNotConfigured
from telegram_bridge.poller import InvalidBotToken, Poller, PollerOptions


class Command(BaseCommand):
    help = (
        "Listen to the Telegram chats in TELEGRAM_CHAT_ID (long polling with TELEGRAM_BOT_TOKEN at "
        "TELEGRAM_API_BASE_URL) and turn each message into a critical pulse. SIGTERM/Ctrl+C stops it."
    )
    requires_system_checks = COMMAND_CHECKS

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

    def handle(self, *args, **options):
        if options["poll_timeout"] < 0 or options["backoff_cap"] <= 0:
            raise CommandError("--poll-timeout must be 0 or more and --backoff-cap more than 0")
        if options["verbosity"] != 1:
            levels = {0: logging.WARNING, 2: logging.DEBUG, 3: logging.DEBUG}
            logging.getLogger().setLevel(levels[options["verbosity"]])
        # Started by hand, by uv or by systemd: when that parent goes, so does the listener (cleanly).
        stop_with_parent("telegram_listener")
        try:
            config = TelegramConfig.from_settings().require()
            poller_options = PollerOptions(
                poll_timeout=options["poll_timeout"], backoff_cap=options["backoff_cap"]
            )
            Poller(config, poller_options).run()
        except (TelegramNotConfigured, InvalidBotToken) as exc:
            raise CommandError(str(exc)) from exc
