"""What a worker is told: its slots, leases, waits and hooks (`WorkerOptions`), from the settings or
a command's options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.utils.module_loading import import_string

from pulses.worker.slots import preemptible


@dataclass
class WorkerOptions:
    concurrency: int = 1
    critical_reserved: int = 0  # slots beyond `concurrency` that only critical pulses take
    preempt: frozenset[str] = frozenset()  # priorities a critical pulse may interrupt for a slot
    busy_notice_seconds: float = 5.0  # a critical pulse waiting this long for its session is reported
    lease_seconds: float = 60.0
    poll_seconds: float = 5.0
    grace_seconds: float = 30.0
    alive_seconds: float = 10.0  # how often the worker reports it is alive (PULSE_HEARTBEAT_SECONDS)
    once: bool = False
    dry_run: bool = False
    failure_hooks: list[Callable[[int], None]] = field(default_factory=list)
    # Called with a routine's id when its failures paused it (the Telegram alert).
    pause_hooks: list[Callable[[int], None]] = field(default_factory=list)
    # Called with a critical pulse's id once it has waited `busy_notice_seconds` for its session.
    waiting_hooks: list[Callable[[int], None]] = field(default_factory=list)
    # Called with a BudgetCapReached id when this worker found a spend cap reached (the alert).
    budget_hooks: list[Callable[[int], None]] = field(default_factory=list)
    # Called with the agent hold's id when the queue starts holding (the agent cannot run) and ends.
    held_hooks: list[Callable[[int], None]] = field(default_factory=list)
    resumed_hooks: list[Callable[[int], None]] = field(default_factory=list)

    @classmethod
    def from_settings(cls, **overrides: object) -> WorkerOptions:
        hooks = [import_string(path) for path in getattr(settings, "PULSE_FAILURE_HOOKS", [])]
        waiting = [import_string(path) for path in getattr(settings, "PULSE_WAITING_HOOKS", [])]
        if settings.PULSE_CRITICAL_RESERVED < 0:
            raise ValueError("PULSE_CRITICAL_RESERVED must be 0 (no express lane) or more")
        options = cls(
            concurrency=settings.PULSE_MAX_CONCURRENT,
            critical_reserved=settings.PULSE_CRITICAL_RESERVED,
            preempt=preemptible(settings.PULSE_PREEMPT),
            busy_notice_seconds=settings.PULSE_BUSY_NOTICE_SECONDS,
            waiting_hooks=waiting,
            lease_seconds=settings.PULSE_LEASE_SECONDS,
            poll_seconds=settings.PULSE_POLL_SECONDS,
            grace_seconds=settings.PULSE_SHUTDOWN_GRACE_SECONDS,
            alive_seconds=settings.PULSE_HEARTBEAT_SECONDS,
            failure_hooks=hooks,
            pause_hooks=[import_string(path) for path in getattr(settings, "ROUTINE_PAUSE_HOOKS", [])],
            budget_hooks=[import_string(path) for path in getattr(settings, "PULSE_BUDGET_HOOKS", [])],
            held_hooks=[import_string(path) for path in getattr(settings, "AGENT_HOLD_HOOKS", [])],
            resumed_hooks=[import_string(path) for path in getattr(settings, "AGENT_RESUMED_HOOKS", [])],
        )
        for key, value in overrides.items():
            if value is not None:
                setattr(options, key, value)
        return options
