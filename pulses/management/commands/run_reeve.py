from django.conf import settings
from django.core.management.base import CommandError

from pulses.limits import weak_token_reason
from pulses.management.base import ReeveCommand, refusals
from pulses.ops import banner
from pulses.ops.instance_lock import AlreadyRunning
from pulses.ops.private_files import tighten
from pulses.ops.supervisor import MigrationFailed, run_reeve
from pulses.ops.supervisor import migrate as do_migrate
from pulses.web.bind import PortInUse


class Command(ReeveCommand):
    """Run Reeve in one terminal: the pulse worker and, as its companion, the web process (gunicorn: API,
    admin, dashboard). Ctrl+C, SIGTERM or a closed terminal drains and stops both; if either exits, the
    other stops too. Refuses to start beside another Reeve on the same installation, before it changes
    anything: with --migrate (what ./reeve start runs) the migrations apply only once it holds it."""

    def add_arguments(self, parser):
        parser.add_argument("--no-web", action="store_true", help="run the worker only")
        parser.add_argument(
            "--migrate",
            action="store_true",
            help="apply the database's migrations first, once no other Reeve runs here (./reeve start)",
        )

    def handle(self, *args, no_web: bool, migrate: bool, **options) -> None:
        if not no_web and (reason := weak_token_reason(settings.PULSE_API_TOKEN)):
            raise CommandError(f"refusing to start the API: {reason}")
        web = not no_web
        desk_note = ""

        def prepare() -> None:  # once this start holds the installation: a second one changes nothing
            nonlocal desk_note
            tighten()  # files made before Reeve ran with umask 077 become private on this start
            if migrate:
                do_migrate()
            desk_note = banner.prepare_desk()

        def say_what_is_served() -> None:
            self.stdout.write("\n".join(banner.lines(web=web, desk_note=desk_note)))
            self.stdout.flush()

        with refusals(AlreadyRunning, PortInUse, ValueError, MigrationFailed):
            code = run_reeve(web=web, on_started=say_what_is_served, prepare=prepare)
        raise SystemExit(code)
