from django.core.management.base import BaseCommand

from pulses.supervisor import run_together


class Command(BaseCommand):
    help = (
        "Run Reeve for development in one terminal: the web process (gunicorn: API, admin, dashboard) "
        "and the pulse worker. Ctrl+C stops both; if either exits, the other is stopped too."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-web", action="store_true", help="run the worker only")

    def handle(self, *args, **options):
        raise SystemExit(run_together(web=not options["no_web"]))
