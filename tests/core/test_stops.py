"""Stopping a running pulse (pulses/stops.py, through pulses.queue): the stored request, the worker's
read of it, and the stopped run's record. The worker and the surfaces with real processes:
tests/worker/test_stop.py."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pulses import queue
from pulses.agent.executor import AttemptOutcome
from pulses.models import Pulse, PulseAttempt, PulseNotRunning
from tests.support.factories import PulseFactory

pytestmark = pytest.mark.django_db

WORKER = "testhost:1"


def _interrupted(error: str = "interrupted", session_id: str = "") -> AttemptOutcome:
    now = timezone.now()
    return AttemptOutcome(
        success=False,
        started_at=now - timedelta(seconds=2),
        finished_at=now,
        error=error,
        interrupted=True,
        session_id=session_id,
    )


def _claimed() -> Pulse:
    PulseFactory(due=True)
    [pulse] = queue.claim(worker=WORKER, limit=1)
    return pulse


def test_a_stop_is_stored_on_a_running_pulse_and_only_a_running_one():
    pulse = _claimed()
    stored = queue.request_stop(pulse.pk, by="command")
    assert (stored.status, stored.stop_requested_by, stored.stop_retry) == ("processing", "command", False)
    pending = PulseFactory()
    with pytest.raises(PulseNotRunning, match=f"pulse {pending.pk} is pending; only a running pulse"):
        queue.request_stop(pending.pk, by="command")
    assert Pulse.objects.get(pk=pending.pk).stop_requested_by == ""
    with pytest.raises(Pulse.DoesNotExist):
        queue.request_stop(999999, by="command")


def test_the_worker_reads_the_stops_of_its_own_runs_in_one_query():
    mine, asked, other = _claimed(), _claimed(), PulseFactory(processing=True, lease_owner="elsewhere:2")
    queue.request_stop(asked.pk, by="admin ann", retry=True)
    queue.request_stop(other.pk, by="command")
    with CaptureQueriesContext(connection) as queries:
        found = queue.stop_requests_for({mine.pk, asked.pk, other.pk}, worker=WORKER)
    assert found == {asked.pk: "admin ann"}
    assert len(queries) == 1
    with CaptureQueriesContext(connection) as queries:
        assert queue.stop_requests_for(set(), worker=WORKER) == {}
    assert len(queries) == 0


def test_a_stopped_run_ends_cancelled_with_an_attempt_naming_who_stopped_it():
    pulse = _claimed()
    queue.request_stop(pulse.pk, by="api token ci")
    assert queue.end_interrupted(pulse, worker=WORKER, outcome=_interrupted(session_id="s-1"))
    pulse.refresh_from_db()
    assert (pulse.status, pulse.attempt_count, pulse.lease_owner, pulse.session_id) == (
        "cancelled",
        1,
        "",
        "s-1",
    )
    assert pulse.error_message == "stopped by api token ci" and pulse.finished_at is not None
    [attempt] = PulseAttempt.objects.filter(pulse=pulse)
    assert (attempt.number, attempt.succeeded, attempt.error) == (1, False, "stopped by api token ci")


def test_a_stop_with_retry_returns_the_pulse_to_pending_without_spending_an_attempt():
    pulse = _claimed()
    queue.request_stop(pulse.pk, by="telegram chat 42", retry=True)
    assert queue.end_interrupted(pulse, worker=WORKER, outcome=_interrupted())
    pulse.refresh_from_db()
    assert (pulse.status, pulse.attempt_count) == ("pending", 0)
    [attempt] = PulseAttempt.objects.filter(pulse=pulse)
    assert attempt.error == "stopped by telegram chat 42; returned to pending"
    # The next claim runs it afresh: the request of the run before does not stop this one.
    [again] = queue.claim(worker=WORKER, limit=1)
    assert (again.pk, again.attempt_count, again.stop_requested_by, again.stop_retry) == (
        pulse.pk,
        1,
        "",
        False,
    )
    assert queue.stop_requests_for({again.pk}, worker=WORKER) == {}


def test_a_run_interrupted_without_a_stop_is_released_as_before():
    pulse = _claimed()
    assert queue.end_interrupted(pulse, worker=WORKER, outcome=_interrupted("interrupted for pulse 9"))
    pulse.refresh_from_db()
    assert (pulse.status, pulse.attempt_count) == ("pending", 0)
    assert PulseAttempt.objects.get(pulse=pulse).error == "interrupted for pulse 9; returned to pending"


def test_a_stopped_run_whose_claim_was_lost_writes_nothing():
    pulse = _claimed()
    queue.request_stop(pulse.pk, by="command")
    Pulse.objects.filter(pk=pulse.pk).update(lease_owner="elsewhere:2")
    assert not queue.end_interrupted(pulse, worker=WORKER, outcome=_interrupted())
    assert Pulse.objects.get(pk=pulse.pk).status == "processing"
    assert not PulseAttempt.objects.filter(pulse=pulse).exists()


def test_a_stop_that_came_after_the_run_ended_is_refused():
    pulse = _claimed()
    now = timezone.now()
    outcome = AttemptOutcome(success=True, started_at=now, finished_at=now, exit_code=0)
    assert queue.record_attempt(pulse, worker=WORKER, outcome=outcome) == "completed"
    with pytest.raises(PulseNotRunning, match="is completed"):
        queue.request_stop(pulse.pk, by="command")
