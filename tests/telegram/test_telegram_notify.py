"""Outbound messages: splitting at Telegram's limit, `send_message`, and `manage.py notify`."""

from __future__ import annotations

import asyncio
import random

import pytest

from telegram_bridge.client import TelegramNotConfigured
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
