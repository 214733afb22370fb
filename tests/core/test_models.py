"""The pulse state machine on its own: each transition of `Pulse` / `PulseQuerySet`, the guard that
makes it conditional, and the named sets (due, upcoming, stale, alive) everything else reads."""

from datetime import timedelta

import pytest
from django.utils import timezone

from pulses.models import Priority, Pulse, PulseNotPending, Status, WorkerRecord
from tests.support.factories import PulseFactory

pytestmark = pytest.mark.django_db

WORKER = "testhost:1"


def _finish(pulse, *, success, error=""):
    now = timezone.now()
    changes = pulse.finish_changes(
        success=success,
        finished_at=now,
        duration_ms=1000,
        session_id="",
        error=error,
        retry_at=now + timedelta(minutes=1),
    )
    return pulse.finish(worker=WORKER, changes=changes), changes


def test_due_is_a_pending_pulse_whose_time_has_come_and_is_overdue_agrees():
    due = PulseFactory(due=True)
    later = PulseFactory()
    running = PulseFactory(processing=True, scheduled_at=timezone.now() - timedelta(minutes=1))
    assert list(Pulse.objects.due()) == [due]
    assert set(Pulse.objects.not_due()) == {later, running}
    assert [p.is_overdue for p in (due, later, running)] == [True, False, False]


def test_due_pulses_come_in_run_order_and_upcoming_ones_soonest_first():
    now = timezone.now()
    old_low = PulseFactory(priority=Priority.LOW, scheduled_at=now - timedelta(minutes=5))
    new_critical = PulseFactory(priority=Priority.CRITICAL, scheduled_at=now - timedelta(minutes=1))
    future = PulseFactory(priority=Priority.CRITICAL, scheduled_at=now + timedelta(minutes=1))
    assert list(Pulse.objects.due(now)) == [new_critical, old_low]
    assert list(Pulse.objects.upcoming()) == [old_low, new_critical, future]


def test_stale_is_a_processing_pulse_whose_lease_ran_out():
    stale = PulseFactory(stale=True)
    PulseFactory(processing=True)
    assert list(Pulse.objects.stale()) == [stale]


def test_a_claim_leases_pending_rows_only_and_counts_the_attempt():
    pending = PulseFactory(due=True)
    done = PulseFactory(completed=True)
    now = timezone.now()
    claimed = Pulse.objects.filter(pk__in=[pending.pk, done.pk]).claim(
        worker=WORKER, now=now, until=now + timedelta(minutes=1)
    )
    pending.refresh_from_db()
    done.refresh_from_db()
    assert claimed == 1
    assert (pending.status, pending.lease_owner, pending.attempt_count) == (Status.PROCESSING, WORKER, 1)
    assert done.status == Status.COMPLETED


def test_renewing_extends_only_the_leases_the_worker_holds():
    ours = PulseFactory(processing=True, lease_owner=WORKER)
    theirs = PulseFactory(processing=True, lease_owner="other:2")
    until = timezone.now() + timedelta(hours=1)
    held = Pulse.objects.filter(pk__in=[ours.pk, theirs.pk]).renew(worker=WORKER, until=until)
    assert held == {ours.pk}
    ours.refresh_from_db()
    theirs.refresh_from_db()
    assert ours.lease_expires_at == until and theirs.lease_expires_at < until


def test_a_finished_run_completes_retries_while_retries_are_left_then_fails():
    completed, changes = _finish(PulseFactory(processing=True, lease_owner=WORKER), success=True)
    assert completed and changes["status"] == Status.COMPLETED
    retried, changes = _finish(
        PulseFactory(processing=True, lease_owner=WORKER, attempt_count=1, max_retries=1),
        success=False,
        error="no",
    )
    assert retried and changes["status"] == Status.PENDING and "scheduled_at" in changes
    failed, changes = _finish(
        PulseFactory(processing=True, lease_owner=WORKER, attempt_count=2, max_retries=1),
        success=False,
        error="no",
    )
    assert failed and changes["status"] == Status.FAILED


def test_a_finished_run_writes_nothing_once_the_claim_moved_on():
    pulse = PulseFactory(processing=True, lease_owner=WORKER)
    Pulse.objects.filter(pk=pulse.pk).update(attempt_count=2)  # recovered and claimed again meanwhile
    recorded, _ = _finish(pulse, success=True)
    pulse.refresh_from_db()
    assert not recorded and pulse.status == Status.PROCESSING


def test_a_release_returns_the_pulse_to_pending_without_counting_the_run():
    pulse = PulseFactory(processing=True, lease_owner=WORKER, attempt_count=2)
    assert pulse.release(worker=WORKER, session_id="0f8fad5b-d9cb-469f-a165-70867728950e")
    pulse.refresh_from_db()
    assert (pulse.status, pulse.attempt_count, pulse.lease_owner) == (Status.PENDING, 1, "")
    assert pulse.session_id == "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert not pulse.release(worker=WORKER)  # not processing any more


def test_an_expired_lease_retries_while_retries_are_left_else_fails():
    retry = PulseFactory(stale=True, attempt_count=1, max_retries=3)
    out_of_retries = PulseFactory(stale=True, attempt_count=4, max_retries=3)
    now = timezone.now()
    assert retry.expire(now=now, error="gone") is True
    assert out_of_retries.expire(now=now, error="gone") is False
    retry.refresh_from_db()
    out_of_retries.refresh_from_db()
    assert (retry.status, retry.finished_at, retry.error_message) == (Status.PENDING, None, "gone")
    assert (out_of_retries.status, out_of_retries.finished_at) == (Status.FAILED, now)


def test_cancel_reschedule_and_requeue_refuse_a_pulse_in_another_state():
    running = PulseFactory(processing=True)
    with pytest.raises(PulseNotPending, match="only a pending pulse can be cancelled"):
        running.cancel()
    with pytest.raises(PulseNotPending, match="only a pending pulse can be rescheduled"):
        running.reschedule(timezone.now())
    with pytest.raises(PulseNotPending, match="can be requeued"):
        running.requeue()
    running.refresh_from_db()
    assert running.status == Status.PROCESSING


def test_a_stale_copy_never_overwrites_a_row_another_process_moved_on():
    copy = PulseFactory(due=True)
    Pulse.objects.filter(pk=copy.pk).update(status=Status.PROCESSING)
    with pytest.raises(PulseNotPending):
        copy.cancel()
    assert copy.status == Status.PROCESSING  # refreshed from the row, not the copy's "pending"


def test_the_prompt_can_be_revised_only_before_the_first_claim():
    fresh = PulseFactory()
    retried = PulseFactory(attempt_count=1)
    assert fresh.revise_prompt("new")
    assert not retried.revise_prompt("new")


def test_alive_workers_reported_within_three_heartbeats_and_did_not_stop_most_recent_first(settings):
    settings.PULSE_HEARTBEAT_SECONDS = 10
    now = timezone.now()

    def worker(name, seconds_ago, **fields):
        return WorkerRecord.objects.create(
            name=name,
            host="h",
            pid=1,
            started_at=now,
            last_seen=now - timedelta(seconds=seconds_ago),
            **fields,
        )

    older, newer = worker("a:1", 25), worker("b:2", 5)
    worker("gone:3", 35)  # three reports missed: killed, or its loop hangs
    worker("stopped:4", 1, stopped_at=now)  # its last report said it stopped
    assert list(WorkerRecord.objects.alive(now)) == [newer, older]
