"""A Telegram message becomes a pulse: idempotent on what never repeats, resuming the chat's session;
edits, files, shared places and what Reeve does not pass on."""

from __future__ import annotations

import itertools
import json

import pytest

from pulses.models import Pulse, Status
from telegram_bridge.handlers import (
    Action,
    IncomingMessage,
    SavedFile,
    handle_message,
    split_command,
)
from telegram_bridge.models import TelegramChat, TelegramMessage

pytestmark = pytest.mark.django_db

BOT = 555
_update_ids = itertools.count(100)


def message(
    text: str,
    *,
    chat_id: int = 42,
    update_id: int | None = None,
    message_id: int | None = None,
    **fields: object,
) -> IncomingMessage:
    update_id = update_id if update_id is not None else next(_update_ids)
    return IncomingMessage(
        update_id=update_id,
        chat_id=chat_id,
        message_id=message_id if message_id is not None else update_id,
        sender="Ada Lovelace",
        text=text,
        **fields,
    )


def test_a_message_becomes_a_critical_telegram_pulse_keyed_by_bot_chat_and_message():
    handled = handle_message(message("hello", update_id=7), bot_id=BOT)

    pulse = Pulse.objects.get(pk=handled.pulse_id)
    assert handled.action == Action.PULSE
    assert pulse.prompt == "Telegram message from Ada Lovelace: hello"
    assert (pulse.priority, pulse.source, pulse.tags) == (
        "critical",
        "telegram",
        ["telegram", "user_message"],
    )
    assert pulse.idempotency_key is None  # the API's key space is left to API clients
    row = TelegramMessage.objects.get()
    assert (row.bot_id, row.chat_id, row.message_id, row.edit_date, row.pulse_id) == (BOT, 42, 7, 0, pulse.pk)
    assert pulse.session_id == ""


def test_the_same_update_applied_twice_makes_one_pulse():
    first = handle_message(message("hello", update_id=8), bot_id=BOT)
    again = handle_message(message("hello", update_id=8), bot_id=BOT)

    assert again.action == Action.DUPLICATE
    assert again.pulse_id == first.pulse_id
    assert Pulse.objects.count() == 1


def test_a_follow_up_resumes_the_session_stored_on_the_chats_last_pulse():
    first = handle_message(message("what is on today?"), bot_id=BOT)
    Pulse.objects.filter(pk=first.pulse_id).update(
        session_id="5f0c6a2e-1b7d-4c3e-9a41-000000000001"
    )  # what the worker stores

    second = handle_message(message("and tomorrow?"), bot_id=BOT)
    third = handle_message(message("thanks"), bot_id=BOT)

    assert second.session_id == "5f0c6a2e-1b7d-4c3e-9a41-000000000001"
    assert third.session_id == "5f0c6a2e-1b7d-4c3e-9a41-000000000001"


def test_chats_keep_separate_conversations():
    first = handle_message(message("hi", chat_id=42), bot_id=BOT)
    Pulse.objects.filter(pk=first.pulse_id).update(session_id="5f0c6a2e-1b7d-4c3e-9a41-000000000042")

    other = handle_message(message("hi", chat_id=43), bot_id=BOT)

    assert other.session_id == ""
    assert TelegramChat.objects.count() == 2


def test_new_forgets_the_session_and_replies_and_a_redelivered_new_changes_nothing():
    first = handle_message(message("hi"), bot_id=BOT)
    Pulse.objects.filter(pk=first.pulse_id).update(session_id="5f0c6a2e-1b7d-4c3e-9a41-000000000001")

    reset = handle_message(message("/new", update_id=900), bot_id=BOT)
    fresh = handle_message(message("a new topic", update_id=901), bot_id=BOT)
    replayed = handle_message(message("/new", update_id=900), bot_id=BOT)

    assert reset.action == Action.NEW_CONVERSATION and "fresh" in reset.reply
    assert fresh.session_id == ""
    assert replayed.action == Action.DUPLICATE
    assert TelegramChat.objects.get(chat_id=42).last_pulse_id == fresh.pulse_id


def test_new_with_text_starts_a_fresh_session_with_that_text():
    first = handle_message(message("hi"), bot_id=BOT)
    Pulse.objects.filter(pk=first.pulse_id).update(session_id="5f0c6a2e-1b7d-4c3e-9a41-000000000001")

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
    Pulse.objects.filter(pk=first.pulse_id).update(session_id="5f0c6a2e-1b7d-4c3e-9a41-0000000000ad")
    chat = TelegramChat.objects.get(chat_id=42)

    page = admin_client.get("/admin/telegram_bridge/telegramchat/")
    response = admin_client.post(
        "/admin/telegram_bridge/telegramchat/",
        {"action": "start_fresh_conversation", "_selected_action": [chat.pk]},
        follow=True,
    )

    assert page.status_code == 200 and "5f0c6a2e-1b7d-4c3e-9a41-0000000000ad" in page.content.decode()
    assert "1 chat(s) will start a fresh conversation" in response.content.decode()
    assert handle_message(message("new topic"), bot_id=BOT).session_id == ""
    assert admin_client.get("/admin/telegram_bridge/pulsealert/").status_code == 200
    messages = admin_client.get("/admin/telegram_bridge/telegrammessage/")
    assert (
        messages.status_code == 200
        and "5f0c6a2e-1b7d-4c3e-9a41-0000000000ad" not in messages.content.decode()
    )


def test_update_ids_that_go_back_down_are_new_messages_not_redeliveries():
    handle_message(message("before a quiet week", update_id=5000, message_id=70), bot_id=BOT)

    # Telegram numbered updates afresh after a week without any; message ids carried on.
    handled = handle_message(message("I am back", update_id=12, message_id=71), bot_id=BOT)

    assert handled.action == Action.PULSE
    assert Pulse.objects.filter(source="telegram").count() == 2


def test_an_api_client_using_the_bridges_old_key_swallows_nothing_and_steers_no_session(client, settings):
    token = "a-long-enough-api-token-for-this-test-0123456789"
    settings.PULSE_API_TOKEN = token
    hijack = client.post(
        "/api/pulse/trigger",
        data=json.dumps({"prompt": "I am the chat now", "idempotency_key": f"telegram:{BOT}:9"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert hijack.status_code == 201
    Pulse.objects.filter(pk=hijack.json()["id"]).update(session_id="attacker-session")

    handled = handle_message(message("my real message", update_id=9), bot_id=BOT)

    assert handled.action == Action.PULSE
    assert handled.pulse_id != hijack.json()["id"]
    assert Pulse.objects.get(pk=handled.pulse_id).prompt.endswith(": my real message")
    assert TelegramChat.objects.get(chat_id=42).last_pulse_id == handled.pulse_id
    assert handle_message(message("and then?"), bot_id=BOT).session_id == ""


def test_an_edit_rewrites_the_prompt_of_a_pulse_no_worker_has_taken():
    first = handle_message(message("meet at 5", update_id=300), bot_id=BOT)

    edit = handle_message(message("meet at 6", update_id=301, message_id=300, edit_date=1700), bot_id=BOT)
    again = handle_message(message("meet at 6", update_id=301, message_id=300, edit_date=1700), bot_id=BOT)

    assert (edit.action, edit.pulse_id) == (Action.UPDATED, first.pulse_id)
    assert again.action == Action.DUPLICATE
    assert Pulse.objects.get().prompt == "Telegram message from Ada Lovelace: meet at 6"


def test_an_edit_after_the_run_started_is_a_follow_up_in_that_session_marked_as_an_edit():
    first = handle_message(message("meet at 5", update_id=310), bot_id=BOT)
    Pulse.objects.filter(pk=first.pulse_id).update(
        status=Status.PROCESSING, attempt_count=1, session_id="5f0c6a2e-1b7d-4c3e-9a41-000000000009"
    )

    edit = handle_message(message("meet at 6", update_id=311, message_id=310, edit_date=1800), bot_id=BOT)
    follow_up = Pulse.objects.get(pk=edit.pulse_id)
    later = handle_message(message("meet at 7", update_id=312, message_id=310, edit_date=1900), bot_id=BOT)

    assert edit.action == Action.FOLLOW_UP
    assert (follow_up.session_id, follow_up.parent_id) == (
        "5f0c6a2e-1b7d-4c3e-9a41-000000000009",
        first.pulse_id,
    )
    assert follow_up.prompt == (
        f"Telegram message from Ada Lovelace, an edit of their earlier message (pulse #{first.pulse_id}); "
        "it now reads: meet at 6"
    )
    # The second edit finds the follow-up not started yet, and rewrites it.
    assert (later.action, later.pulse_id) == (Action.UPDATED, edit.pulse_id)
    assert Pulse.objects.get(pk=edit.pulse_id).prompt == follow_up.prompt.replace("at 6", "at 7")
    assert Pulse.objects.get(pk=first.pulse_id).prompt.endswith(": meet at 5")


def test_a_saved_file_and_a_shared_place_are_named_in_the_prompt():
    photo = SavedFile("photo", "u1", "/desk/inbox/telegram/2026-12-01/42-5.jpg", "1280x853")
    handled = handle_message(
        message("the whiteboard", shared=("Shared a location: 48.858400, 2.294500",)),
        bot_id=BOT,
        files=[photo],
    )

    assert Pulse.objects.get(pk=handled.pulse_id).prompt == (
        "Telegram message from Ada Lovelace: the whiteboard\n"
        "Shared a location: 48.858400, 2.294500\n"
        "Photo (1280x853) saved at /desk/inbox/telegram/2026-12-01/42-5.jpg"
    )
    assert TelegramMessage.objects.get().files == [
        {"kind": "photo", "unique_id": "u1", "path": photo.path, "details": "1280x853"}
    ]


def test_a_sticker_gets_one_short_reply_and_no_pulse():
    handled = handle_message(message("", update_id=400, unsupported="sticker"), bot_id=BOT)
    again = handle_message(message("", update_id=400, unsupported="sticker"), bot_id=BOT)

    assert handled.action == Action.UNSUPPORTED
    assert handled.reply.startswith("I can't pass a sticker on to the agent.")
    assert again.action == Action.DUPLICATE
    assert not Pulse.objects.exists()


def test_a_file_that_was_not_saved_is_answered_and_its_text_still_goes_through():
    problem = "your document: it is 30 MB and Reeve takes files up to 20 MB (TELEGRAM_MAX_FILE_MB)"
    with_text = handle_message(message("the contract", update_id=500), bot_id=BOT, file_problem=problem)
    alone = handle_message(message("", update_id=501), bot_id=BOT, file_problem=problem)

    assert with_text.action == Action.PULSE
    assert with_text.reply == f"⚠️ I could not pass on {problem}. The rest of your message went through."
    assert Pulse.objects.get().prompt == (
        "Telegram message from Ada Lovelace: the contract\n"
        f"(They also sent a file Reeve could not save: {problem}.)"
    )
    assert (alone.action, alone.pulse_id, alone.reply) == (
        Action.NOT_PASSED_ON,
        None,
        f"⚠️ I could not pass on {problem}.",
    )


def test_stop_asks_to_stop_the_chats_running_pulse_and_says_which():
    first = handle_message(message("research my week"), bot_id=BOT)
    other_chat = handle_message(message("hello", chat_id=43), bot_id=BOT)
    Pulse.objects.filter(pk__in=[first.pulse_id, other_chat.pulse_id]).update(
        status=Status.PROCESSING, lease_owner="host:1", attempt_count=1
    )
    stopped = handle_message(message("/stop", update_id=950), bot_id=BOT)
    assert stopped.action == Action.STOPPED and stopped.pulse_id == first.pulse_id
    assert (
        stopped.reply
        == f"⏹ Stopping pulse #{first.pulse_id}: Telegram message from Ada Lovelace: research my week"
    )
    assert Pulse.objects.get(pk=first.pulse_id).stop_requested_by == "telegram chat 42"
    assert Pulse.objects.get(pk=other_chat.pulse_id).stop_requested_by == ""
    assert TelegramChat.objects.get(chat_id=42).last_pulse_id == first.pulse_id  # the session goes on
    assert handle_message(message("/stop", update_id=950), bot_id=BOT).action == Action.DUPLICATE


def test_stop_with_nothing_running_says_so_and_schedules_nothing():
    handle_message(message("hi"), bot_id=BOT)  # pending: not running yet
    handled = handle_message(message("/stop@reeve_bot"), bot_id=BOT)
    assert (handled.action, handled.reply) == (Action.NOTHING_TO_STOP, "Nothing is running for this chat.")
    assert Pulse.objects.count() == 1
