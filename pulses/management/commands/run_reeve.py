from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pulses.limits import weak_token_reason
from pulses.supervisor import run_together


class Command(BaseCommand):
    help = (
        "Run Reeve for development in one terminal: the web process (gunicorn: API, admin, dashboard) "
        "and the pulse worker. Ctrl+C stops both; if either exits, the other is stopped too."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-web", action="store_true", help="run the worker only")

    def handle(self, *args, **options):
        if not options["no_web"] and (reason := weak_token_reason(settings.PULSE_API_TOKEN)):
            raise CommandError(f"refusing to start the API: {reason}")
        raise SystemExit(run_together(web=not options["no_web"]))
