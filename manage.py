#!/usr/bin/env python
"""Django's command-line utility for Reeve."""

import gc
import importlib
import os
import signal
import sys


def preflight(argv: list[str]) -> None:
    """Stop, with the reason and no traceback, before a command that cannot run here: settings that
    contradict each other, or a database that holds the original Reeve's queue."""
    import django
    from django.core.exceptions import ImproperlyConfigured

    from reeve_site import home

    try:
        # Its folders and key file, before logging opens LOG_FILE; not for install.sh --root staging,
        # which reads the settings and must write nothing outside its root (REEVE_NO_PREPARE=1).
        if os.environ.get("REEVE_NO_PREPARE") != "1":
            home.prepare()
        django.setup()
    except ImproperlyConfigured as exc:
        sys.stderr.write(f"Error: {exc}\n")
        sys.exit(1)
    from pulses.ops import legacy

    legacy.pulse_db_url_note(sys.stderr)
    if message := legacy.refusal(argv):
        sys.stderr.write(message + "\n")
        sys.exit(1)


def preload(argv: list[str]) -> None:
    """Import the command's module (as Django is about to), so that it too loads with the collector paused."""
    from django.core.management import get_commands

    name = argv[0] if argv else ""
    app = get_commands().get(name)
    if isinstance(app, str):
        try:
            importlib.import_module(f"{app}.management.commands.{name}")
        except ImportError:
            pass  # Django reports it when it loads the command


def closed_pipe() -> None:
    """End quietly when whoever reads stdout has gone (`./reeve pulse_queue all | head -4`): as a
    shell tool killed by SIGPIPE, without a traceback. Python's exit flush would fail on the closed
    pipe again, so stdout is pointed at /dev/null first."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(128 + signal.SIGPIPE)


def command_options(argv: list[str]) -> list[str]:
    """The part of `argv` that may hold options: everything before the first `--`."""
    return argv[: argv.index("--")] if "--" in argv else list(argv)


NO_TERMINAL = """createsuperuser asks for the username, email and password at a terminal, and this has none
(its input is not a TTY), so no user was created. Without a terminal, give them in the environment:
  DJANGO_SUPERUSER_USERNAME=admin DJANGO_SUPERUSER_EMAIL=you@example.com \\
  DJANGO_SUPERUSER_PASSWORD='a long password' ./reeve createsuperuser --noinput
"""


def needs_a_terminal(argv: list[str]) -> bool:
    """Whether `argv` is an interactive createsuperuser without a terminal to ask at: Django's own
    prints that it skipped and exits 0, which a script reads as success."""
    interactive = not {"--noinput", "--no-input"} & set(argv)
    return bool(argv) and argv[0] == "createsuperuser" and interactive and not sys.stdin.isatty()


def main() -> None:
    # Before anything is created: the database, its WAL, logs, backups and metrics are the user's
    # alone (0600 in 0700 folders), whoever started this process (the units also set UMask=0077).
    os.umask(0o077)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reeve_site.settings")
    from django.core.management import execute_from_command_line
    from django.db.utils import OperationalError, ProgrammingError

    # As Django itself would, before the settings are read: `--settings X` names the module. Only
    # the options before `--` count: what follows is data (a prompt such as "--settings=evilmod").
    options = command_options(sys.argv)
    for flag, value in zip(options, [*options[1:], ""], strict=True):
        if flag.startswith("--settings="):
            os.environ["DJANGO_SETTINGS_MODULE"] = flag.split("=", 1)[1]
        elif flag == "--settings" and value:
            os.environ["DJANGO_SETTINGS_MODULE"] = value
    # Start-up makes a few hundred thousand objects that live as long as the process (modules,
    # classes, the MCP SDK's pydantic models): collecting while they are made finds nothing to free
    # and, pass after pass, costs about a third of a short command's CPU time. The collector waits
    # until they are all made, then sets them aside (gc.freeze) for good (docs/performance.md).
    gc.disable()
    preflight(command_options(sys.argv[1:]))
    if needs_a_terminal(command_options(sys.argv[1:])):
        sys.stderr.write(NO_TERMINAL)
        sys.exit(1)
    preload(sys.argv[1:])
    gc.freeze()
    gc.enable()
    try:
        execute_from_command_line(sys.argv)
        sys.stdout.flush()  # inside the try: a reader that left early is noticed here, not at exit
    except BrokenPipeError:
        closed_pipe()
    except (OperationalError, ProgrammingError) as exc:
        # A fresh database without Reeve's tables: say what to run instead of a traceback.
        text = str(exc)
        missing_table = "no such table" in text or ('relation "' in text and "does not exist" in text)
        if not missing_table:
            raise
        sys.stderr.write(
            f"Error: the database has no Reeve tables yet ({text.splitlines()[0]}).\n"
            "Apply the migrations first: ./reeve migrate (or uv run python manage.py migrate).\n"
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
