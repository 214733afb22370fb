"""What Reeve's commands share: the system checks they need, the domain's refusals as one line on
stderr (a CommandError, never a traceback), the log level from -v, and the way they print tables."""

from __future__ import annotations

import logging
from argparse import ArgumentParser, ArgumentTypeError
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pulses import limits
from pulses.management import COMMAND_CHECKS

# -v 0 shows warnings only, -v 2 and 3 everything; -v 1 (the default) keeps LOGGING's levels.
LOG_LEVELS = {0: logging.WARNING, 2: logging.DEBUG, 3: logging.DEBUG}


@contextmanager
def refusals(*errors: type[Exception], prefix: str = "") -> Iterator[None]:
    """Inside, any of `errors` becomes a CommandError with the same message (after `prefix`)."""
    try:
        yield
    except errors as exc:
        raise CommandError(f"{prefix}{exc}") from exc


# `routine edit --timeout-seconds default` (or --max-turns): back to the default (the setting's).
RESET = "default"


def _number_or_reset(text: str) -> int | str:
    if text.strip().lower() == RESET:
        return RESET
    try:
        return int(text)
    except ValueError:
        raise ArgumentTypeError(f"{text[:40]!r} is not a whole number (nor '{RESET}')") from None


def add_agent_options(parser: ArgumentParser, *, what: str, editing: bool = False) -> None:
    """--model, --timeout-seconds and --max-turns: the agent options of a pulse or a routine, checked
    where they are stored (pulses/limits.py). When `editing`, an option not given is None (unchanged),
    and `--model ''` or `--timeout-seconds default` / `--max-turns default` go back to the default."""
    number = _number_or_reset if editing else int
    back = "; '' goes back to it" if editing else ""
    parser.add_argument(
        "--model",
        default=None if editing else "",
        help=f"the agent's model for {what}, e.g. sonnet or opus (default: AGENT_MODEL, else the agent's "
        f"own{back})",
    )
    back = f"; '{RESET}' goes back to it" if editing else ""
    parser.add_argument(
        "--timeout-seconds",
        type=number,
        default=None,
        help=f"seconds before {what} is killed, {limits.MIN_TIMEOUT_SECONDS} to {limits.MAX_TIMEOUT_SECONDS} "
        f"(default: PULSE_TIMEOUT_SECONDS{back})",
    )
    parser.add_argument(
        "--max-turns",
        type=number,
        default=None,
        help=f"the agent's turn limit for {what}, 1 to {limits.MAX_MAX_TURNS} "
        f"(default: the agent's own{back})",
    )


def agent_option_changes(options: dict[str, Any]) -> dict[str, object]:
    """The agent options an edit gives (see `add_agent_options(editing=True)`), as field changes."""
    found: dict[str, object] = {}
    if options["model"] is not None:
        found["model"] = options["model"].strip()
    for name in ("timeout_seconds", "max_turns"):
        if options[name] is not None:
            found[name] = None if options[name] == RESET else options[name]
    return found


class ReeveCommand(BaseCommand):
    """A Reeve command: handle() parses, makes one call into the domain, prints. The domain errors
    named in `refused` (the person's input or the installation's state is wrong, the message says
    what to do) end the command with that message and exit status 1."""

    requires_system_checks = COMMAND_CHECKS
    refused: tuple[type[Exception], ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A command's docstring is its --help, as one paragraph (argparse reflows it anyway).
        if cls.__doc__ and "help" not in cls.__dict__:
            cls.help = " ".join(cls.__doc__.split())

    def execute(self, *args: Any, **options: Any) -> Any:
        with refusals(*self.refused):
            return super().execute(*args, **options)

    def log_at_verbosity(self, verbosity: int) -> None:
        """A long-running command's -v sets the root log level (LOG_LEVELS)."""
        if verbosity in LOG_LEVELS:
            logging.getLogger().setLevel(LOG_LEVELS[verbosity])

    def write_table(self, rows: Sequence[Sequence[str]]) -> None:
        """`rows` (the first is the heading) in left-aligned columns two spaces apart."""
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())

    def write_fields(self, fields: Iterable[tuple[str, object]]) -> None:
        """One `name: value` line each, the names right-aligned."""
        for name, value in fields:
            self.stdout.write(f"{name:>13}: {value}")
