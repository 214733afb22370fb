"""A Telegram message becomes a pulse: idempotent, and resuming the chat's session."""

from __future__ import annotations

import itertools

import pytest

from pulses.models import Pulse
from telegram_bridge.handlers import (
    Action,
    IncomingMessage,
    handle_message,
    idempotency_key,
    split_command,
)
from telegram_bridge.models import TelegramChat

pytestmark = pytest.mark.django_db

BOT = 555
_update_ids = itertools.count(100)


def message(text: str, *, chat_id: int = 42, update_id: int | None = None) -> IncomingMessage:
    update_id = update_id if update_id is not None else next(_update_ids)
    return IncomingMessage(
        update_id=update_id, chat_id=chat_id, message_id=update_id, sender="Ada Lovelace", text=text
    )


def test_a_message_becomes_a_critical_telegram_pulse_keyed_by_its_update():
    handled = handle_message(message("hello", update_id=7), bot_id=BOT)

    pulse = Pulse.objects.get(pk=handled.pulse_id)
    assert handled.action == Action.PULSE
    assert pulse.prompt == "Telegram message from Ada Lovelace: hello"
    assert (pulse.priority, pulse.source, pulse.tags) == (
        "critical",
        "telegram",
        ["telegram", "user_message"],
    )
    assert pulse.idempotency_key == idempotency_key(bot_id=BOT, update_id=7) == "telegram:555:7"
    assert pulse.session_id == ""


def test_the_same_update_applied_twice_makes_one_pulse():
    first = handle_message(message("hello", update_id=8), bot_id=BOT)
    again = handle_message(message("hello", update_id=8), bot_id=BOT)

    assert again.action == Action.DUPLICATE
    assert again.pulse_id == first.pulse_id
    assert Pulse.objects.count() == 1


def test_a_follow_up_resumes_the_session_stored_on_the_chats_last_pulse():
    first = handle_message(message("what is on today?"), bot_id=BOT)
    Pulse.objects.filter(pk=first.pulse_id).update(session_id="sess-1")  # what the worker stores

    second = handle_message(message("and tomorrow?"), bot_id=BOT)
    third = handle_message(message("thanks"), bot_id=BOT)

    assert second.session_id == "sess-1"
    assert third.session_id == "sess-1"


def test_chats_keep_separate_conversations():
    first = handle_message(message("hi", chat_id=42), bot_id=BOT)
    Pulse.objects.filter(pk=first.pulse_id).update(session_id="sess-42")

    other = handle_message(message("hi", chat_id=43), bot_id=BOT)

    assert other.session_id == ""
    assert TelegramChat.objects.count() == 2


def test_new_forgets_the_session_and_replies_and_a_redelivered_new_changes_nothing():
    first = handle_message(message("hi"), bot_id=BOT)
    Pulse.objects.filter(pk=first.pulse_id).update(session_id="sess-1")

    reset = handle_message(message("/new", update_id=900), bot_id=BOT)
    fresh = handle_message(message("a new topic", update_id=901), bot_id=BOT)
    replayed = handle_message(message("/new", update_id=900), bot_id=BOT)

    assert reset.action == Action.NEW_CONVERSATION and "fresh" in reset.reply
    assert fresh.session_id == ""
    assert replayed.action == Action.DUPLICATE
    assert TelegramChat.objects.get(chat_id=42).last_pulse_id == fresh.pulse_id


def test_new_with_text_starts_a_fresh_session_with_that_text():
    first = handle_message(message("hi"), bot_id=BOT)
    Pulse.objects.filter(pk=first.pulse_id).update(session_id="sess-1")

    handled = handle_message(message("/new@reeve_bot plan my week"), bot_id=BOT)

    pulse = Pulse.objects.get(pk=handled.pulse_id)
    assert pulse.session_id == ""
    assert pulse.prompt == "Telegram message from Ada Lovelace: plan my week"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello", ("", "hello")),
        ("/new", ("/new", "")),
        ("/NEW@reeve_bot  hi there", ("/new", "hi there")),
        ("/new\nline two", ("/new", "line two")),
    ],
)
def test_split_command_reads_the_command_and_its_argument(text, expected):
    assert split_command(text) == expected


def test_a_new_bot_token_with_lower_update_ids_is_not_mistaken_for_redeliveries():
    handle_message(message("hi", update_id=5000), bot_id=BOT)

    handled = handle_message(message("hi from the new bot", update_id=3), bot_id=BOT + 1)

    assert handled.action == Action.PULSE


def test_the_admin_lists_chats_and_starts_a_fresh_conversation(admin_client):
    first = handle_message(message("hi"), bot_id=BOT)
    Pulse.objects.filter(pk=first.pulse_id).update(session_id="sess-admin")
    chat = TelegramChat.objects.get(chat_id=42)

    page = admin_client.get("/admin/telegram_bridge/telegramchat/")
    response = admin_client.post(
        "/admin/telegram_bridge/telegramchat/",
        {"action": "start_fresh_conversation", "_selected_action": [chat.pk]},
        follow=True,
    )

    assert page.status_code == 200 and "sess-admin" in page.content.decode()
    assert "1 chat(s) will start a fresh conversation" in response.content.decode()
    assert handle_message(message("new topic"), bot_id=BOT).session_id == ""
    assert admin_client.get("/admin/telegram_bridge/pulsealert/").status_code == 200
