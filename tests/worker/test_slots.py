"""The worker's slot bookkeeping (pulses/worker/slots.py): ordinary slots for any pulse, reserved ones for
critical pulses only, and PULSE_PREEMPT's priorities."""

import pytest

from pulses.worker.slots import Free, Run, free_slots, layout, preemptible


def test_critical_runs_take_the_reserved_slots_first_and_leave_the_ordinary_ones_open():
    assert free_slots([], ordinary=1, reserved=1) == Free(ordinary=1, reserved=1)
    assert free_slots(["low"], ordinary=1, reserved=1) == Free(ordinary=0, reserved=1)
    assert free_slots(["critical"], ordinary=1, reserved=1) == Free(ordinary=1, reserved=0)
    assert free_slots(["low", "critical"], ordinary=1, reserved=1) == Free(ordinary=0, reserved=0)
    # Critical runs beyond the reserved slots spill into the ordinary ones.
    assert free_slots(["critical", "critical"], ordinary=2, reserved=1) == Free(ordinary=1, reserved=0)
    assert free_slots(["critical"], ordinary=1, reserved=0) == Free(ordinary=0, reserved=0)
    assert Free(ordinary=1, reserved=2).for_critical == 3


def test_the_layout_shows_every_slot_reserved_ones_first_with_what_runs_in_it():
    runs = [Run(1, "low"), Run(2, "critical"), Run(3, "critical")]
    slots = layout(runs, ordinary=2, reserved=1)
    assert [(slot.kind, slot.run.pulse_id if slot.run else None) for slot in slots] == [
        ("critical", 2),
        ("ordinary", 3),
        ("ordinary", 1),
    ]
    idle = layout([], ordinary=1, reserved=1)
    assert [(slot.kind, slot.busy) for slot in idle] == [("critical", False), ("ordinary", False)]


def test_preempt_accepts_the_non_critical_priorities_and_names_a_wrong_one():
    assert preemptible(["deferred", " Low ", ""]) == {"deferred", "low"}
    assert preemptible([]) == frozenset()
    with pytest.raises(ValueError, match="PULSE_PREEMPT: critical, urgent cannot be preempted"):
        preemptible(["low", "critical", "urgent"])
