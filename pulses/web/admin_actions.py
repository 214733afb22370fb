"""The admin's bulk actions, for pulses and routines alike: each runs one domain operation per selected
row, and says with `message_user` how many rows it changed (a warning when none) and what it refused
(used by `pulses.admin` and `pulses.routines.admin`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib import admin, messages

# What to do with each row: (the domain operation, the verb of the report, the action's description).
ActionTable = Iterable[tuple[Callable[[Any], object], str, str]]
# Runs the operation over the selected rows: apply(modeladmin, request, queryset, operation, verb).
Apply = Callable[[admin.ModelAdmin, Any, Any, Callable[[Any], object], str], None]


def run_each(
    operation: Callable[[Any], object], rows: Iterable[Any], refused: tuple[type[Exception], ...]
) -> tuple[int, list[tuple[Any, Exception]]]:
    """`operation(row)` for each row: how many it changed, and each row it refused with the error."""
    done, refusals = 0, []
    for row in rows:
        try:
            operation(row)
            done += 1
        except refused as exc:
            refusals.append((row, exc))
    return done, refusals


def report_count(modeladmin: admin.ModelAdmin, request: Any, verb: str, done: int, noun: str) -> None:
    """`Paused 2 routines.`: a success, or a warning when nothing changed."""
    nouns = noun if done == 1 else f"{noun}s"
    modeladmin.message_user(
        request, f"{verb} {done} {nouns}.", messages.SUCCESS if done else messages.WARNING
    )


def bulk_actions(apply: Apply, table: ActionTable) -> tuple[Callable[..., None], ...]:
    """One admin action per row of `table`, each named after its operation (the action's key in the
    change list's form) and handing the selected rows to `apply`."""

    def action(operation: Callable[[Any], object], verb: str, description: str) -> Callable[..., None]:
        def run(modeladmin: admin.ModelAdmin, request: Any, queryset: Any) -> None:
            apply(modeladmin, request, queryset, operation, verb)

        run.__name__ = run.__qualname__ = operation.__name__
        return admin.action(description=description)(run)

    return tuple(action(*row) for row in table)
