"""Outbound messages: splitting at Telegram's limit, `send_message`, `manage.py notify`, and the
notifications API clients queue (`/api/notify`, telegram_bridge.notifications) for the listener."""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from telegram_bridge import notifications
from telegram_bridge.client import TelegramNotConfigured
from telegram_bridge.models import Notification
from telegram_bridge.notify import (
    TELEGRAM_MESSAGE_LIMIT,
    EmptyMessage,
    NotificationFailed,
    send_message,
    split_message,
    utf16_len,
)


def ten_thousand_characters() -> str:
    rng = random.Random(4)  # noqa: S311
    words = ["pulse", "reeve", "agent", "desk", "telegram", "queue", "🌱", "naïve"]
    lines = []
    while sum(len(line) + 1 for line in lines) < 10_000:
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, 30))))
    return "\n".join(lines)[:10_000]


def test_short_text_is_one_part():
    assert split_message("hello") == ["hello"]


def test_long_text_splits_on_line_ends_into_parts_within_the_limit_that_rejoin_exactly():
    text = ten_thousand_characters()

    parts = split_message(text)

    assert len(text) == 10_000
    assert len(parts) == 3
    assert all(utf16_len(part) <= TELEGRAM_MESSAGE_LIMIT for part in parts)
    assert "".join(parts) == text
    assert all(part.endswith("\n") for part in parts[:-1])


def test_a_single_line_longer_than_the_limit_is_cut_at_a_space():
    text = "word " * 2000

    parts = split_message(text)

    assert "".join(parts) == text
    assert all(len(part) <= TELEGRAM_MESSAGE_LIMIT and part.endswith(" ") for part in parts[:-1])


def test_a_line_without_spaces_is_cut_anywhere_and_astral_characters_count_double():
    text = "🌱" * 3000  # 6000 UTF-16 units

    parts = split_message(text)

    assert [utf16_len(p) for p in parts] == [4096, 1904]
    assert "".join(parts) == text


def test_send_message_splits_a_long_text_into_valid_messages(db, telegram_settings):
    text = ten_thousand_characters()

    sent = send_message(text)

    assert sent == 3
    assert "".join(telegram_settings.sent_texts) == text
    assert all(c.params["chat_id"] == "42" for c in telegram_settings.calls_to("sendMessage"))


def test_send_message_goes_to_every_configured_chat_and_can_be_silent(settings, telegram_settings):
    settings.TELEGRAM_CHAT_ID = ["42", "43"]

    assert send_message("good morning", silent=True) == 2

    calls = telegram_settings.calls_to("sendMessage")
    assert [c.params["chat_id"] for c in calls] == ["42", "43"]
    assert all(c.params["disable_notification"] == "true" for c in calls)


def test_send_message_works_from_inside_a_running_event_loop(telegram_settings):
    async def tool() -> int:
        return send_message("from an MCP tool")

    assert asyncio.run(tool()) == 1


def test_send_message_rides_out_a_short_outage_and_a_rate_limit(telegram_settings):
    telegram_settings.fail(502, times=1)
    telegram_settings.fail(429, times=1, retry_after=1, methods=("sendMessage",))

    assert send_message("are you there?") == 1
    assert telegram_settings.sent_texts == ["are you there?"]


@pytest.mark.parametrize(
    ("token", "chat_ids", "setting"),
    [
        pytest.param("", ["42"], "TELEGRAM_BOT_TOKEN", id="no token"),
        pytest.param("1:abc", [], "TELEGRAM_CHAT_ID", id="no chat"),
        pytest.param("1:abc", ["my-chat"], "TELEGRAM_CHAT_ID", id="a chat id that is not a number"),
    ],
)
def test_send_message_without_a_usable_setting_raises_not_configured_naming_it(
    settings, token, chat_ids, setting
):
    settings.TELEGRAM_BOT_TOKEN = token
    settings.TELEGRAM_CHAT_ID = chat_ids

    with pytest.raises(TelegramNotConfigured, match=setting):
        send_message("hello")


def test_empty_text_is_refused(telegram_settings):
    with pytest.raises(EmptyMessage):
        send_message("  \n ")


def test_a_rejected_token_fails_with_the_variable_named_and_the_token_hidden(settings, telegram_settings):
    settings.TELEGRAM_BOT_TOKEN = "999:secret-wrong-token"

    with pytest.raises(NotificationFailed, match="TELEGRAM_BOT_TOKEN") as caught:
        send_message("hello")
    assert "secret-wrong-token" not in str(caught.value)


@pytest.mark.slow
def test_the_notify_command_splits_ten_thousand_characters_into_valid_messages(reeve_home, fake_telegram):
    reeve_home.extra_env.update(fake_telegram.env(42))
    text = ten_thousand_characters()

    result = reeve_home.manage("notify", text, "--silent")

    assert "sent 3 message(s)" in result.stdout
    calls = fake_telegram.calls_to("sendMessage")
    assert [c.status for c in calls] == [200, 200, 200]
    assert all(len(c.params["text"]) <= 4096 for c in calls)
    assert "".join(c.params["text"] for c in calls) == text


@pytest.mark.slow
def test_the_notify_command_without_telegram_configured_exits_non_zero(reeve_home):
    result = reeve_home.manage("notify", "hello", check=False)

    assert result.returncode != 0
    assert "TELEGRAM_BOT_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


# --- /api/notify: queued, rate-limited, sent by the listener ----------------------------------------


@pytest.mark.django_db
def test_thirty_critical_notifications_in_a_burst_queue_five_and_the_rest_are_refused_with_the_wait(
    telegram_settings, settings
):
    from pulses.tools import agent_tools

    settings.NOTIFY_BURST, settings.NOTIFY_PER_HOUR = 5, 7
    outcomes = []
    for n in range(30):
        try:
            agent_tools.send_notification(message=f"alarm {n}", priority="critical", client_name="desk-mcp")
            outcomes.append("queued")
        except agent_tools.NotificationRateLimited as exc:
            outcomes.append(exc.retry_after)
    assert outcomes[:5] == ["queued"] * 5
    assert all(isinstance(wait, int) and 55 <= wait <= 60 for wait in outcomes[5:]), outcomes
    assert Notification.objects.filter(client="desk-mcp").count() == 5
    # Another token has its own allowance; every run token shares one.
    agent_tools.send_notification(message="other", client_name="phone")
    for pulse_id in (1, 2):
        agent_tools.send_notification(
            message="from a run", client_name=f"run of pulse #{pulse_id}", run_pulse_id=pulse_id
        )
    assert Notification.objects.filter(client=notifications.RUN_TOKENS).count() == 2
    # The hourly cap holds once the minute has passed.
    Notification.objects.filter(client="desk-mcp").update(created_at=timezone.now() - timedelta(minutes=5))
    agent_tools.send_notification(message="after a minute", client_name="desk-mcp")
    agent_tools.send_notification(message="after a minute", client_name="desk-mcp")
    with pytest.raises(agent_tools.NotificationRateLimited, match="NOTIFY_PER_HOUR") as refused:
        agent_tools.send_notification(message="one too many", client_name="desk-mcp")
    assert 3290 <= refused.value.retry_after <= 3300  # when the oldest of the seven leaves the hour


@pytest.mark.django_db
def test_a_notification_waiting_past_two_minutes_is_named_in_the_answer_and_by_doctor(telegram_settings):
    from pulses.ops.doctor import check_notifications
    from pulses.tools import agent_tools

    assert check_notifications() is None
    assert "note" not in agent_tools.send_notification(message="first")
    Notification.objects.update(created_at=timezone.now() - timedelta(minutes=3))
    note = agent_tools.send_notification(message="second")["note"]
    assert "is the Telegram listener running" in note
    assert check_notifications().message == note


@pytest.mark.slow
def test_notify_answers_at_once_while_telegram_is_down_health_stays_up_and_the_listener_sends_later(
    reeve_home, fake_telegram
):
    from tests.api.test_api_live import LiveReeve

    home = reeve_home
    home.extra_env.update(fake_telegram.env(42))
    agent = home.manage("create_api_token", "notify-tests", "--scope", "agent").stdout.split()[-1]
    fake_telegram.fail(502)  # Telegram is down: every call fails until cleared
    live = LiveReeve(home).start(web_only=True)
    try:
        answers: list[tuple[int, float, dict]] = []

        def notify(n: int) -> None:
            started = time.monotonic()
            status, body = live.request("POST", "/api/notify", {"message": f"news {n}"}, token=agent)
            answers.append((status, time.monotonic() - started, body))

        callers = [threading.Thread(target=notify, args=(n,)) for n in range(4)]
        for caller in callers:
            caller.start()
        started = time.monotonic()
        assert live.request("GET", "/api/health", token=None)[0] == 200
        health = time.monotonic() - started
        for caller in callers:
            caller.join(timeout=60)
        assert [a[0] for a in answers] == [202] * 4, answers
        assert max(a[1] for a in answers) < 2.0 and health < 2.0, (answers, health)
        assert answers[0][2]["queued"] is True and answers[0][2]["messages"] == 1

        # A burst of thirty critical ones from another token: five are queued, the rest refused.
        burst = [
            live.request("POST", "/api/notify", {"message": f"fire {n}", "priority": "critical"})
            for n in range(30)
        ]
        assert [status for status, _ in burst] == [202] * 5 + [429] * 25
        assert "too many notifications" in burst[-1][1]["detail"]
        status, refused_headers = _raw_notify(live)
        assert status == 429 and 1 <= int(refused_headers["Retry-After"]) <= 60
    finally:
        live.stop()

    # Telegram is back and the listener runs: each queued notification is sent once.
    fake_telegram.clear_failures()
    listener = home.start("run_telegram_listener", "--poll-timeout", "5", "--backoff-cap", "2")
    fake_telegram.wait_for(
        lambda: len([c for c in fake_telegram.calls_to("sendMessage") if c.status == 200]) >= 9,
        timeout=60,
        what="the nine queued notifications",
    )
    time.sleep(1)
    texts = sorted(c.params["text"] for c in fake_telegram.calls_to("sendMessage") if c.status == 200)
    assert texts == sorted([f"news {n}" for n in range(4)] + [f"🚨 fire {n}" for n in range(5)])
    listener.send_signal(signal.SIGTERM)
    assert listener.wait(timeout=60) == 0
    assert home.query("SELECT DISTINCT state FROM telegram_notifications") == [("sent",)]


def _raw_notify(live) -> tuple[int, dict]:
    """One more POST with the main token, returning its status and headers."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        live.url + "/api/notify",
        data=json.dumps({"message": "again"}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {live.token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)
