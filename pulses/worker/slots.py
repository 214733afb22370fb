"""A worker's slots: `PULSE_MAX_CONCURRENT` ordinary ones any pulse may take, and
`PULSE_CRITICAL_RESERVED` more that only a `critical` pulse may take (the express lane).

Pure bookkeeping, no database: the worker asks how many slots are free of each kind before it
claims, and the status pages lay a worker's running pulses onto its slots the same way. Critical
runs fill the reserved slots first, so an ordinary slot they would otherwise hold stays open for
the rest of the queue.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

CRITICAL = "critical"
ORDINARY = "ordinary"
RESERVED = "critical"


@dataclass(frozen=True)
class Run:
    """A pulse holding a slot."""

    pulse_id: int
    priority: str


@dataclass(frozen=True)
class Slot:
    """One slot of a worker: its kind (`ordinary`, or `critical` for a reserved one) and its run."""

    kind: str
    run: Run | None = None

    @property
    def busy(self) -> bool:
        return self.run is not None


@dataclass(frozen=True)
class Free:
    """Free slots: `ordinary` for any pulse, `reserved` for critical pulses only."""

    ordinary: int
    reserved: int

    @property
    def for_critical(self) -> int:
        return self.ordinary + self.reserved


def free_slots(priorities: Iterable[str], *, ordinary: int, reserved: int) -> Free:
    """How many slots of each kind the running pulses (their priorities) leave free."""
    priorities = list(priorities)
    critical = sum(1 for priority in priorities if priority == CRITICAL)
    in_reserved = min(reserved, critical)
    return Free(
        ordinary=max(ordinary - (len(priorities) - in_reserved), 0),
        reserved=reserved - in_reserved,
    )


def layout(runs: Iterable[Run], *, ordinary: int, reserved: int) -> list[Slot]:
    """Every slot of a worker with the run it holds: the reserved slots first, then the ordinary
    ones. Critical runs fill the reserved slots before the ordinary ones, as the worker counts them."""
    runs = list(runs)
    critical = [run for run in runs if run.priority == CRITICAL]
    in_reserved, spilled = critical[:reserved], critical[reserved:]
    rest = spilled + [run for run in runs if run.priority != CRITICAL]
    slots = [Slot(RESERVED, run) for run in in_reserved]
    slots += [Slot(RESERVED) for _ in range(reserved - len(in_reserved))]
    slots += [Slot(ORDINARY, run) for run in rest]
    slots += [Slot(ORDINARY) for _ in range(max(ordinary - len(rest), 0))]
    return slots


PREEMPTIBLE = ("high", "normal", "low", "deferred")


def preemptible(values: Iterable[str]) -> frozenset[str]:
    """PULSE_PREEMPT's priorities, checked: ValueError names one that is not a non-critical priority."""
    chosen = frozenset(value.strip().lower() for value in values if value.strip())
    if unknown := sorted(chosen - set(PREEMPTIBLE)):
        raise ValueError(
            f"PULSE_PREEMPT: {', '.join(unknown)} cannot be preempted; list some of {', '.join(PREEMPTIBLE)} "
            "(a critical pulse never interrupts another), or leave it empty to turn preemption off"
        )
    return chosen
