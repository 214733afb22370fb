"""A Telegram message waiting for its session's run tells its chat once per run (the worker's waiting
hook, telegram_bridge/notices.py), against the fake Bot API."""

from __future__ import annotations

import pytest
from django.conf import settings

from telegram_bridge.models import TelegramMessage
from telegram_bridge.notices import STILL_WORKING, tell_still_working
from tests.support.factories import PulseFactory

pytestmark = pytest.mark.django_db

SESSION = "5b0d3c1e-2f4a-4b8e-9c6d-7e8f9a0b1c2d"


def from_chat(chat_id: int, message_id: int, **pulse):
    fields = {"due": True, "priority": "critical", "session_id": SESSION, "source": "telegram", **pulse}
    waiting = PulseFactory(**fields)
    TelegramMessage.objects.create(
        bot_id=1, chat_id=chat_id, message_id=message_id, update_id=message_id, outcome="pulse", pulse=waiting
    )
    return waiting


def test_the_notice_hook_is_registered_for_the_worker():
    assert "telegram_bridge.notices.tell_still_working" in settings.PULSE_WAITING_HOOKS


def test_the_chat_hears_once_per_run_however_many_messages_wait(telegram_settings):
    busy = PulseFactory(processing=True, session_id=SESSION)
    first, second = from_chat(42, 1), from_chat(42, 2)

    tell_still_working(first.pk)
    tell_still_working(second.pk)
    tell_still_working(first.pk)

    sent = telegram_settings.calls_to("sendMessage")
    assert [(int(call.params["chat_id"]), call.params["text"]) for call in sent] == [(42, STILL_WORKING)]

    # The next run of the session is another wait: the chat may hear of it again.
    busy.status = "completed"
    busy.save()
    PulseFactory(processing=True, session_id=SESSION, lease_owner="box:2")
    tell_still_working(second.pk)
    assert len(telegram_settings.calls_to("sendMessage")) == 2


def test_nothing_is_sent_for_a_pulse_from_elsewhere_or_once_the_run_ended(telegram_settings):
    PulseFactory(processing=True, session_id=SESSION)
    from_api = PulseFactory(due=True, priority="critical", session_id=SESSION, source="api")
    tell_still_working(from_api.pk)
    started = from_chat(42, 3, status="processing", lease_owner="box:3", session_id="")
    tell_still_working(started.pk)
    assert telegram_settings.calls_to("sendMessage") == []


def test_the_hook_does_nothing_when_telegram_is_not_configured(settings):
    settings.TELEGRAM_BOT_TOKEN = ""
    PulseFactory(processing=True, session_id=SESSION)
    tell_still_working(from_chat(42, 4).pk)  # no server to reach: it must not try
