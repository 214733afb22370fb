"""No poison input in the worker: a pulse whose run's record the database refuses (an answer holding
half a UTF-16 surrogate pair, which neither SQLite nor PostgreSQL can store) is that pulse's failed
attempt, counted against its retries: it ends failed with the operator alerted, and the worker goes
on with the next pulse. Real worker, fake agent, fake Bot API for the alert."""

import pytest

from tests.support.fake_telegram import FakeTelegram

pytestmark = pytest.mark.slow

CHAT = 42


def test_a_pulse_whose_record_the_database_refuses_fails_with_an_alert_and_the_next_pulse_runs(
    reeve_home, fake_telegram: FakeTelegram
):
    reeve_home.extra_env.update(fake_telegram.env(CHAT))
    reeve_home.manage("trigger_pulse", "--max-retries", "0", "mode=unstorable answer")
    reeve_home.manage("trigger_pulse", "mode=noop the next one")
    worker = reeve_home.start("run_pulse_worker", LOG_LEVEL="INFO")
    reeve_home.wait_for(
        lambda: (
            reeve_home.query("SELECT id, status FROM pulses ORDER BY id") == [(1, "failed"), (2, "completed")]
        ),
        timeout=60,
        what="the poison pulse failed and the next completed",
    )
    [(succeeded, error)] = reeve_home.query("SELECT succeeded, error FROM pulse_attempts WHERE pulse_id = 1")
    assert not succeeded
    assert error.startswith("worker error: UnicodeEncodeError(")
    fake_telegram.wait_for(
        lambda: [t for t in fake_telegram.sent_texts if "#1" in t], timeout=30, what="the failure alert"
    )
    assert worker.poll() is None, reeve_home.output(worker)
    assert "pulse_crashed id=1" in reeve_home.output(worker)
