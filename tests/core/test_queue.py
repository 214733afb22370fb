import threading
from datetime import timedelta

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pulses import claiming, queue
from pulses.agent.executor import AttemptOutcome
from pulses.db import claims
from pulses.models import Priority, Pulse, PulseAttempt, PulseNotPending, Status
from tests.support.factories import PulseFactory

pytestmark = pytest.mark.django_db

WORKER = "testhost:1"


def _outcome(success=True, error="", session_id=""):
    now = timezone.now()
    return AttemptOutcome(
        success=success,
        started_at=now - timedelta(seconds=1),
        finished_at=now,
        exit_code=0 if success else 1,
        error=error,
        session_id=session_id,
    )


def test_schedule_creates_a_pending_pulse_with_the_given_fields():
    result = queue.schedule(
        prompt="Check mail", priority=Priority.HIGH, source="api", tags=["a"], sticky_notes=["call mom"]
    )
    assert result.created
    pulse = Pulse.objects.get(pk=result.pulse.pk)
    assert (pulse.status, pulse.priority, pulse.source, pulse.tags, pulse.sticky_notes) == (
        "pending",
        "high",
        "api",
        ["a"],
        ["call mom"],
    )


def test_schedule_with_a_repeated_idempotency_key_returns_the_first_pulse():
    first = queue.schedule(prompt="one", idempotency_key="k1")
    second = queue.schedule(prompt="two", idempotency_key="k1")
    assert not second.created
    assert second.pulse.pk == first.pulse.pk
    assert Pulse.objects.count() == 1


def test_claim_takes_due_pulses_by_priority_then_oldest_first():
    now = timezone.now()
    specs = [
        ("low", 50),
        ("critical", 10),
        ("normal", 40),
        ("critical", 20),
        ("high", 5),
        ("deferred", 60),
        ("normal", 30),
        ("high", 1),
    ]
    for priority, minutes_ago in specs:
        PulseFactory(priority=priority, scheduled_at=now - timedelta(minutes=minutes_ago))
    PulseFactory(priority="critical", scheduled_at=now + timedelta(minutes=5))  # not due yet
    claimed = queue.claim(worker=WORKER, limit=100)
    order = [(p.priority, round((now - p.scheduled_at).total_seconds() / 60)) for p in claimed]
    assert order == [
        ("critical", 20),
        ("critical", 10),
        ("high", 5),
        ("high", 1),
        ("normal", 40),
        ("normal", 30),
        ("low", 50),
        ("deferred", 60),
    ]


def test_claim_sets_a_lease_and_counts_the_attempt():
    PulseFactory(due=True)
    [pulse] = queue.claim(worker=WORKER, limit=5, lease_seconds=30)
    assert pulse.status == Status.PROCESSING
    assert pulse.lease_owner == WORKER
    assert pulse.attempt_count == 1
    assert timedelta(seconds=25) < pulse.lease_expires_at - timezone.now() <= timedelta(seconds=30)
    assert queue.claim(worker="other:2", limit=5) == []


def test_claim_is_one_update_statement():
    PulseFactory.create_batch(20, due=True)
    with CaptureQueriesContext(connection) as queries:
        claimed = queue.claim(worker=WORKER, limit=2)
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    # The savepoint only exists because the test itself runs inside a transaction.
    assert [s for s in statements if s not in ("SAVEPOINT", "RELEASE")] == ["WITH"]  # WITH … UPDATE
    assert len(claimed) == 2 == Pulse.objects.filter(status=Status.PROCESSING).count()
    # The run tokens' nonce comes with the claim, in that one statement, and is stored with it.
    stored = set(Pulse.objects.filter(status=Status.PROCESSING).values_list("claim_nonce", flat=True))
    assert {pulse.claim_nonce for pulse in claimed} == stored and len(next(iter(stored))) == 32


def test_the_database_refuses_a_second_running_pulse_of_one_session():
    PulseFactory(session_id="s1", status=Status.PROCESSING, lease_owner="a:1")
    second = PulseFactory(session_id="s1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Pulse.objects.filter(pk=second.pk).update(status=Status.PROCESSING)
    PulseFactory(session_id="", status=Status.PROCESSING)  # pulses without a session are not limited
    PulseFactory(session_id="", status=Status.PROCESSING)


def test_a_claim_waits_for_a_session_that_another_worker_runs():
    PulseFactory(session_id="s1", status=Status.PROCESSING, lease_owner="other:2")
    PulseFactory(due=True, session_id="s1", prompt="later")
    PulseFactory(due=True, prompt="free")
    assert [p.prompt for p in queue.claim(worker=WORKER, limit=5)] == ["free"]


def test_the_critical_look_names_the_pulse_a_reserved_slot_would_claim():
    now = timezone.now()
    PulseFactory.create_batch(5, due=True, priority="high")
    assert claiming.critical_waiting_for_a_slot() is None
    PulseFactory(priority="critical", scheduled_at=now + timedelta(minutes=5))  # not due yet
    PulseFactory(priority="critical", scheduled_at=now - timedelta(seconds=30), session_id="busy")
    PulseFactory(session_id="busy", status=Status.PROCESSING, lease_owner="other:2")
    assert claiming.critical_waiting_for_a_slot() is None  # its session is running
    older = PulseFactory(priority="critical", scheduled_at=now - timedelta(seconds=20))
    PulseFactory(priority="critical", scheduled_at=now - timedelta(seconds=10))
    assert claiming.critical_waiting_for_a_slot() == older.pk
    [claimed, _] = queue.claim(worker=WORKER, limit=5, critical_only=True)
    assert claimed.pk == older.pk


@pytest.mark.skipif(connection.vendor != "sqlite", reason="PostgreSQL plans from its statistics")
@pytest.mark.parametrize("critical_only", [False, True])
def test_on_sqlite_the_claim_reads_the_claim_index_in_run_order_with_no_sort(critical_only):
    now = timezone.now()
    sql, params = claims.claim_statement(WORKER, 4, now, now, critical_only=critical_only)
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        plan = " / ".join(row[-1] for row in cursor.fetchall())
    assert "USING INDEX pulses_claim_idx" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["one statement", "session by session"])
def test_a_session_another_worker_claims_mid_claim_is_refused_by_the_database(path, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("claims only run side by side on PostgreSQL (SQLite serialises them)")
    if path == "session by session":
        monkeypatch.setattr(claiming, "_claim_in_one_statement", lambda *args, **kwargs: None)
    ours = PulseFactory(due=True, session_id="s1", prompt="ours")
    theirs = PulseFactory(session_id="s1", prompt="theirs")
    db = connection.settings_dict
    other = psycopg.connect(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"], port=db["PORT"]
    )
    # Another worker's claim of the same session, not yet committed when ours reads the queue.
    other.execute("UPDATE pulses SET status = 'processing' WHERE id = %s", [theirs.pk])
    commit = threading.Timer(0.5, other.commit)
    commit.start()
    try:
        assert queue.claim(worker=WORKER, limit=5) == []
    finally:
        commit.join()  # a claim that did not wait for it must not close the connection under it
        other.close()
    ours.refresh_from_db()
    assert ours.status == Status.PENDING
    Pulse.objects.filter(pk=theirs.pk).update(status=Status.COMPLETED)
    assert [p.prompt for p in queue.claim(worker=WORKER, limit=5)] == ["ours"]


def test_a_session_the_agent_reused_mid_run_is_not_stored_until_the_attempt_ends(caplog):
    running = PulseFactory(session_id="s1", status=Status.PROCESSING, lease_owner="other:2")
    PulseFactory(due=True)
    [mine] = queue.claim(worker=WORKER, limit=1)
    queue.record_session(mine.pk, worker=WORKER, session_id="s1")
    mine.refresh_from_db()
    assert mine.session_id == "" and "pulse_session_in_use" in caplog.text
    assert queue.record_attempt(mine, worker=WORKER, outcome=_outcome(session_id="s1")) == "completed"
    mine.refresh_from_db()
    running.refresh_from_db()
    assert (mine.session_id, running.status) == ("s1", Status.PROCESSING)


def test_a_session_never_runs_twice_at_once():
    PulseFactory(due=True, session_id="s1", prompt="first")
    PulseFactory(due=True, session_id="s1", prompt="second")
    PulseFactory(due=True, session_id="s2", prompt="other")
    first = queue.claim(worker=WORKER, limit=10)
    assert sorted(p.prompt for p in first) == ["first", "other"]
    assert queue.claim(worker=WORKER, limit=10) == []
    queue.record_attempt(first[0], worker=WORKER, outcome=_outcome())
    [second] = queue.claim(worker=WORKER, limit=10)
    assert second.prompt == "second"


def test_success_completes_the_pulse_and_keeps_the_attempt():
    PulseFactory(due=True)
    [pulse] = queue.claim(worker=WORKER, limit=1)
    assert queue.record_attempt(pulse, worker=WORKER, outcome=_outcome(session_id="abc")) == "completed"
    pulse.refresh_from_db()
    assert (pulse.status, pulse.session_id, pulse.lease_owner) == ("completed", "abc", "")
    assert pulse.execution_duration_ms == 1000
    attempt = PulseAttempt.objects.get(pulse=pulse)
    assert attempt.succeeded and attempt.number == 1 and attempt.session_id == "abc"


def test_failures_retry_with_doubling_backoff_on_the_same_row_until_failed():
    pulse = PulseFactory(due=True, max_retries=3)
    delays = []
    for _ in range(4):
        Pulse.objects.filter(pk=pulse.pk).update(scheduled_at=timezone.now() - timedelta(seconds=1))
        [claimed] = queue.claim(worker=WORKER, limit=1)
        outcome = _outcome(success=False, error="boom")
        status = queue.record_attempt(claimed, worker=WORKER, outcome=outcome)
        claimed.refresh_from_db()
        if status == "pending":
            delays.append(round((claimed.scheduled_at - outcome.finished_at).total_seconds() / 60))
    assert delays == [1, 2, 4]
    assert status == "failed"
    assert Pulse.objects.count() == 1
    assert PulseAttempt.objects.filter(pulse=pulse).count() == 4
    pulse.refresh_from_db()
    assert pulse.error_message == "boom"


def test_retry_delay_is_capped(settings):
    settings.PULSE_RETRY_CAP_MINUTES = 60
    assert [queue.retry_delay(n).total_seconds() / 60 for n in (1, 2, 3, 7, 8, 30)] == [1, 2, 4, 60, 60, 60]


def test_a_worker_that_lost_its_lease_cannot_overwrite_the_pulse():
    PulseFactory(due=True)
    [pulse] = queue.claim(worker=WORKER, limit=1)
    Pulse.objects.filter(pk=pulse.pk).update(lease_owner="thief:2")
    assert queue.record_attempt(pulse, worker=WORKER, outcome=_outcome()) is None
    pulse.refresh_from_db()
    assert pulse.status == "processing"
    assert not PulseAttempt.objects.exists()


def test_a_run_whose_lease_expired_cannot_record_over_the_next_claim_even_by_the_same_worker():
    PulseFactory(due=True)
    [first_run] = queue.claim(worker=WORKER, limit=1, lease_seconds=1)
    queue.recover_expired_leases(now=timezone.now() + timedelta(seconds=5))
    [second_run] = queue.claim(worker=WORKER, limit=1)
    assert queue.record_attempt(first_run, worker=WORKER, outcome=_outcome()) is None
    assert queue.record_attempt(second_run, worker=WORKER, outcome=_outcome()) == "completed"
    attempts = PulseAttempt.objects.order_by("number").values_list("number", "succeeded")
    assert list(attempts) == [(1, False), (2, True)]


def test_a_worker_late_to_renew_keeps_the_runs_it_is_running_and_renews_them_next():
    """Its own renewal came late (a starved process, SQLite's lock held by a long prune): the runs it
    knows are going stay its own, or a second run would start beside the first."""
    PulseFactory(due=True)
    [running] = queue.claim(worker=WORKER, limit=1, lease_seconds=1)
    later = timezone.now() + timedelta(seconds=5)
    assert queue.recover_expired_leases(now=later, sparing={running.pk}) == []
    assert queue.renew_leases(worker=WORKER, pulse_ids={running.pk}, lease_seconds=60) == {running.pk}
    assert queue.record_attempt(running, worker=WORKER, outcome=_outcome()) == "completed"
    assert list(PulseAttempt.objects.values_list("number", "succeeded")) == [(1, True)]


def test_expired_leases_return_to_pending_as_a_failed_attempt():
    stale = PulseFactory(stale=True, max_retries=3)
    exhausted = PulseFactory(stale=True, attempt_count=4, max_retries=3)
    fresh = PulseFactory(processing=True)
    assert sorted(queue.recover_expired_leases()) == sorted([stale.pk, exhausted.pk])
    stale.refresh_from_db()
    exhausted.refresh_from_db()
    fresh.refresh_from_db()
    assert (stale.status, fresh.status, exhausted.status) == ("pending", "processing", "failed")
    assert "lease expired" in stale.error_message and "deadhost:99" in stale.error_message
    assert PulseAttempt.objects.get(pulse=stale).error.startswith("lease expired")


def test_a_dead_workers_claims_return_at_once_counted_and_marked_interrupted_and_no_one_elses():
    PulseFactory.create_batch(3, due=True, max_retries=3)
    [dead_run] = queue.claim(worker="thishost:41", limit=1, lease_seconds=600)
    [other_run] = queue.claim(worker="otherhost:41", limit=1, lease_seconds=600)
    [same_host_run] = queue.claim(worker="thishost:42", limit=1, lease_seconds=600)
    assert queue.recover_dead_workers(["thishost:41"]) == [dead_run.pk]
    statuses = dict(Pulse.objects.values_list("pk", "status"))
    assert statuses == {dead_run.pk: "pending", other_run.pk: "processing", same_host_run.pk: "processing"}
    dead_run.refresh_from_db()
    assert dead_run.attempt_count == 1 and dead_run.lease_owner == ""  # the run still counts
    assert dead_run.scheduled_at <= timezone.now()  # due again at once
    [attempt] = PulseAttempt.objects.filter(pulse=dead_run)
    assert (
        attempt.error.startswith("interrupted: worker thishost:41 died") and attempt.worker == "thishost:41"
    )
    assert not attempt.succeeded
    assert queue.recover_dead_workers(["thishost:41"]) == []  # nothing twice


def test_a_pulse_that_kills_its_worker_every_time_fails_once_its_retries_are_spent():
    pulse = PulseFactory(due=True, max_retries=1)
    for attempt in (1, 2):
        [run] = queue.claim(worker=f"h:{attempt}", limit=1, lease_seconds=600)
        assert run.pk == pulse.pk
        assert queue.recover_dead_workers([f"h:{attempt}"]) == [pulse.pk]
    pulse.refresh_from_db()
    assert (pulse.status, pulse.attempt_count) == ("failed", 2)
    assert pulse.error_message.startswith("interrupted")


def test_renew_leases_extends_only_what_the_worker_holds():
    mine = PulseFactory(processing=True, lease_owner=WORKER)
    theirs = PulseFactory(processing=True, lease_owner="other:2")
    held = queue.renew_leases(worker=WORKER, pulse_ids=[mine.pk, theirs.pk], lease_seconds=120)
    assert held == {mine.pk}
    mine.refresh_from_db()
    assert mine.lease_expires_at - timezone.now() > timedelta(seconds=100)


def test_release_returns_an_interrupted_pulse_without_counting_the_run():
    PulseFactory(due=True)
    [pulse] = queue.claim(worker=WORKER, limit=1)
    assert queue.release(pulse, worker=WORKER, outcome=_outcome(success=False))
    pulse.refresh_from_db()
    assert (pulse.status, pulse.attempt_count, pulse.lease_owner) == ("pending", 0, "")


def test_cancel_reschedule_and_requeue_enforce_their_states():
    pending = PulseFactory()
    later = timezone.now() + timedelta(days=1)
    assert queue.reschedule(pending.pk, later).scheduled_at == later
    queue.cancel(pending.pk)
    with pytest.raises(PulseNotPending):
        queue.cancel(pending.pk)
    with pytest.raises(PulseNotPending):
        queue.reschedule(pending.pk, later)
    requeued = queue.requeue(pending.pk)
    assert (requeued.status, requeued.attempt_count) == ("pending", 0)
    with pytest.raises(PulseNotPending):
        queue.requeue(pending.pk)
    with pytest.raises(Pulse.DoesNotExist):
        queue.cancel(999999)


def test_the_guide_inspection_queries_run_verbatim():
    PulseFactory(priority="high")
    PulseFactory(priority="high", completed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM pulses WHERE status = 'pending';")
        assert cursor.fetchone() == (1,)
        cursor.execute("SELECT priority, COUNT(*) FROM pulses GROUP BY priority;")
        assert cursor.fetchall() == [("high", 2)]
        cursor.execute("SELECT * FROM pulses ORDER BY scheduled_at DESC LIMIT 10;")
        assert len(cursor.fetchall()) == 2
