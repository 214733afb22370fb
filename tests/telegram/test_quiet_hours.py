"""Quiet hours (TELEGRAM_QUIET_HOURS): inside the window, in TIME_ZONE, what Reeve sends other than a
critical message reaches the Bot API (the fake one records each request) with disable_notification;
outside it, as before. The window is set around the present, so nothing fakes the clock."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import time, timedelta

import pytest
from django.utils import timezone

from pulses.models import Pulse, Status
from pulses.tools import agent_tools
from telegram_bridge import notifications, outbox, quiet_hours
from telegram_bridge.answer_sender import AnswerSender
from telegram_bridge.async_calls import StopRequest, in_thread
from telegram_bridge.client import TelegramConfig, make_bot, run_coroutine
from telegram_bridge.notify import send_message
from tests.support.reeve_processes import ROOT

CHAT = 42


def window_around_now(*, inside: bool) -> tuple[time, time]:
    """A window holding the present (crossing midnight when the present is near it), or one that
    starts an hour from now."""
    now = timezone.localtime()
    if inside:
        start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    else:
        start, end = now + timedelta(hours=1), now + timedelta(hours=2)
    return start.time().replace(second=0, microsecond=0), end.time().replace(second=0, microsecond=0)


def silences(fake_telegram) -> dict[str, bool]:
    """Each sendMessage's text and whether it asked for no sound."""
    return {
        call.params["text"]: call.params.get("disable_notification") == "true"
        for call in fake_telegram.calls_to("sendMessage")
    }


def send_what_the_listener_sends() -> None:
    """One pass of the listener's sender: the queued notifications and the finished pulses' answers."""
    stop = StopRequest()
    sender = AnswerSender(
        configured_chats=(CHAT,), stop=stop, poll_seconds=1, backoff_initial=1, backoff_cap=1
    )

    async def one_pass() -> None:
        stop.start()
        bot = make_bot(TelegramConfig.from_settings())
        await bot.initialize()
        try:
            for item in await in_thread(notifications.take_due, configured_chats=(CHAT,)):
                await sender._send_notification(bot, item)
            for item in await in_thread(outbox.take_due, configured_chats=(CHAT,)):
                await sender._send_answer(bot, item)
        finally:
            await bot.shutdown()

    run_coroutine(one_pass())


def finished_pulse_with_answer(priority: str, text: str) -> Pulse:
    from pulses import queue

    pulse = queue.schedule(prompt=text, priority=priority, deliver="telegram").pulse
    Pulse.objects.filter(pk=pulse.pk).update(status=Status.COMPLETED, finished_at=timezone.now())
    pulse.attempt_set.create(
        number=1, started_at=timezone.now(), finished_at=timezone.now(), succeeded=True, result_text=text
    )
    return pulse


@pytest.mark.parametrize(
    ("moment", "window", "quiet"),
    [
        (time(23, 30), (time(22), time(7)), True),
        (time(6, 59), (time(22), time(7)), True),
        (time(7, 0), (time(22), time(7)), False),
        (time(21, 59), (time(22), time(7)), False),
        (time(13, 0), (time(12), time(14)), True),
        (time(14, 0), (time(12), time(14)), False),
    ],
)
def test_a_window_may_cross_midnight_and_holds_its_start_not_its_end(moment, window, quiet):
    assert quiet_hours.in_window(moment, *window) is quiet


def test_without_quiet_hours_only_a_silent_message_is_silent(settings):
    settings.TELEGRAM_QUIET_HOURS = None
    assert [quiet_hours.silent(p) for p in ("silent", "normal", "critical")] == [True, False, False]


@pytest.mark.django_db(transaction=True)
def test_inside_quiet_hours_a_normal_notification_and_answer_arrive_silently_a_critical_one_does_not(
    telegram_settings, settings
):
    settings.TELEGRAM_QUIET_HOURS = window_around_now(inside=True)
    agent_tools.send_notification(message="the build is green", priority="normal")
    agent_tools.send_notification(message="the server is on fire", priority="critical")
    finished_pulse_with_answer("normal", "your weekly summary")
    finished_pulse_with_answer("critical", "the doctor called back")

    send_what_the_listener_sends()
    send_message("an alert from notify")

    sent = silences(telegram_settings)
    assert sent["the build is green"] is True
    assert sent[agent_tools.CRITICAL_PREFIX + "the server is on fire"] is False
    assert sent["your weekly summary"] is True
    assert sent["the doctor called back"] is False
    assert sent["an alert from notify"] is True


@pytest.mark.django_db(transaction=True)
def test_outside_quiet_hours_a_normal_notification_and_answer_make_a_sound(telegram_settings, settings):
    settings.TELEGRAM_QUIET_HOURS = window_around_now(inside=False)
    agent_tools.send_notification(message="the build is green", priority="normal")
    finished_pulse_with_answer("normal", "your weekly summary")

    send_what_the_listener_sends()

    assert silences(telegram_settings) == {"the build is green": False, "your weekly summary": False}


@pytest.mark.database_independent  # refused while reading the settings, in an environment of its own
@pytest.mark.parametrize("value", ["22:00", "10pm-7am", "22:00-22:00"])
def test_a_malformed_quiet_hours_value_is_one_line_naming_it(tmp_path, value):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "REEVE_IGNORE_DOTENV": "1",
        "DJANGO_SETTINGS_MODULE": "reeve_site.settings",
        "TELEGRAM_QUIET_HOURS": value,
    }
    proc = subprocess.run(
        [sys.executable, "manage.py", "queue", "status"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        f"Error: TELEGRAM_QUIET_HOURS={value}: expected HH:MM-HH:MM, such as 22:00-07:00, or empty for none\n"
    )
