"""A pulse that fails for good sends one Telegram alert (rate-limited per pulse)."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connections

from telegram_bridge.alerts import ALERT_INTERVAL, alert_pulse_failed, format_alert
from telegram_bridge.models import PulseAlert
from tests.support.factories import PulseFactory


def test_the_alert_hook_is_registered_for_the_worker():
    assert "telegram_bridge.alerts.alert_pulse_failed" in settings.PULSE_FAILURE_HOOKS


@pytest.mark.django_db
def test_an_alert_names_the_pulse_its_prompt_start_and_the_agents_error():
    pulse = PulseFactory(failed=True, prompt="Check the inbox " * 40, error_message="Tool Bash failed")

    text = format_alert(pulse)

    assert text.startswith(f"⚠️ Pulse #{pulse.pk} failed for good after 4 attempt(s).")
    assert "Prompt: Check the inbox Check" in text
    assert len(text.split("\n")[1]) <= len("Prompt: ") + 200
    assert text.endswith("Error: Tool Bash failed")


@pytest.mark.django_db
def test_a_failed_pulse_is_alerted_once_however_often_the_hook_runs(telegram_settings):
    pulse = PulseFactory(failed=True)

    alert_pulse_failed(pulse.pk)
    alert_pulse_failed(pulse.pk)

    assert len(telegram_settings.sent_texts) == 1
    assert f"Pulse #{pulse.pk}" in telegram_settings.sent_texts[0]
    assert PulseAlert.objects.get(pulse=pulse).count == 1


@pytest.mark.django_db
def test_a_pulse_failing_again_after_the_interval_is_alerted_again(telegram_settings):
    pulse = PulseFactory(failed=True)
    alert_pulse_failed(pulse.pk)
    PulseAlert.objects.filter(pulse=pulse).update(sent_at=PulseAlert.objects.get().sent_at - ALERT_INTERVAL)

    alert_pulse_failed(pulse.pk)

    assert len(telegram_settings.sent_texts) == 2
    assert PulseAlert.objects.get(pulse=pulse).count == 2


@pytest.mark.django_db
def test_the_hook_does_nothing_when_telegram_is_not_configured(settings):
    settings.TELEGRAM_BOT_TOKEN = ""
    pulse = PulseFactory(failed=True)

    alert_pulse_failed(pulse.pk)

    assert not PulseAlert.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_hook_survives_telegram_being_down_and_holds_no_transaction_while_sending(telegram_settings):
    pulse = PulseFactory(failed=True)
    telegram_settings.fail(502)
    in_transaction = []
    hook_connection = connections["default"]  # this thread's, read from the server's thread below
    telegram_settings.on_request = lambda: in_transaction.append(hook_connection.in_atomic_block)

    alert_pulse_failed(pulse.pk)  # logs, does not raise

    assert telegram_settings.sent_texts == []
    assert in_transaction and not any(in_transaction)


@pytest.mark.slow
def test_a_pulse_the_real_worker_fails_for_good_sends_exactly_one_alert(reeve_home, fake_telegram):
    reeve_home.extra_env.update(fake_telegram.env(42))
    reeve_home.manage(
        "trigger_pulse", "Tidy the desk mode=error_result", "--max-retries", "0", "--priority", "high"
    )

    reeve_home.manage("run_pulse_worker", "--once")
    [(pulse_id, status)] = reeve_home.query("SELECT id, status FROM pulses")
    assert status == "failed"
    reeve_home.manage("shell", "-c", f"from pulses import queue; queue.requeue({pulse_id})")
    reeve_home.manage("run_pulse_worker", "--once")  # fails for good again, within the interval

    [alert] = fake_telegram.sent_texts
    assert alert.startswith(f"⚠️ Pulse #{pulse_id} failed for good")
    assert "Prompt: Tidy the desk mode=error_result" in alert
    assert "Tool Bash failed: permission denied" in alert
    assert reeve_home.query("SELECT count FROM telegram_pulse_alerts") == [(1,)]
    assert len(reeve_home.query("SELECT id FROM pulse_attempts")) == 2
