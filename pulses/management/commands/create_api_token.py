from django.core.management.base import CommandError

from pulses.api import tokens
from pulses.management.base import ReeveCommand
from pulses.models import TokenScope


class Command(ReeveCommand):
    """Create a named API client token (printed once; only its hash is stored), revoke one with --revoke, or
    --list them. Clients send it as 'Authorization: Bearer <token>'."""

    refused = (tokens.TokenError,)

    def add_arguments(self, parser):
        parser.add_argument("name", nargs="?", help="a name for the client, e.g. telegram-bridge")
        parser.add_argument("--revoke", action="store_true", help="revoke the token called NAME instead")
        parser.add_argument(
            "--scope",
            choices=TokenScope.values,
            default=TokenScope.FULL,
            help=(
                "full: every endpoint but wake checks (default); wake-checks: full, and may set or run "
                "a check_command (a shell command); agent: only the agent's tools (/api/agent/*, /api/notify)"
            ),
        )
        parser.add_argument(
            "--list", action="store_true", help="list tokens (names and prefixes, never tokens)"
        )

    def handle(self, *args, name: str | None, revoke: bool, scope: str, **options) -> None:
        if options["list"]:
            for row in tokens.listing():
                if row.revoked_at:
                    state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}"
                elif row.expires_at:
                    state = f"expires {row.expires_at:%Y-%m-%d %H:%M}"
                else:
                    state = "active"
                self.stdout.write(f"{row.name}\t{row.prefix}…\t{row.scope}\t{state}")
            return
        if not name:
            raise CommandError("give the token a NAME (or use --list)")
        if revoke:
            row = tokens.revoke(name)
            self.stdout.write(f"Revoked token {name!r} ({row.prefix}…); it no longer works.")
            return
        row, token = tokens.create(name, scope=scope)
        # The answer alone on stdout, so `TOKEN=$(./reeve create_api_token NAME)` holds just the token.
        self.stderr.write(
            f"Created token {row.name!r} ({row.scope} scope). Store it now; it is not shown again:"
        )
        self.stdout.write(token)
