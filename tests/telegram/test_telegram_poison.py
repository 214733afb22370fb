"""No poison input: one update or one answer that makes the listener raise an unexpected error (here
a Bot API answer python-telegram-bot cannot read: `"result": null`) is that item's trouble, not the
listener's. It is tried a few times (counted in the database, so restarts count on), then set aside
with a word to the person, and the messages and answers behind it go on. The real listener and
worker processes against the fake Bot API."""

from __future__ import annotations

import pytest

from tests.support.fake_telegram import FakeTelegram
from tests.support.reeve_processes import ReeveHome
from tests.telegram.test_telegram_answers import wait_for_answer
from tests.telegram.test_telegram_listener import CHAT, listen, stop, telegram_pulses, wait_for_pulses

pytestmark = pytest.mark.slow

PHOTO = b"\xff\xd8\xff\xe0 a photo whose getFile answer is unreadable " + bytes(range(256)) * 8


@pytest.fixture
def home(reeve_home: ReeveHome, fake_telegram: FakeTelegram) -> ReeveHome:
    reeve_home.extra_env.update(fake_telegram.env(CHAT))
    reeve_home.extra_env["PULSE_CRITICAL_RESERVED"] = "0"
    return reeve_home


def test_an_update_whose_file_fetch_raises_is_set_aside_with_a_reply_and_the_next_message_becomes_a_pulse(
    home, fake_telegram
):
    fake_telegram.answer_oddly("getFile", None)  # python-telegram-bot: TypeError, not a TelegramError
    listener = listen(home)
    poison = fake_telegram.send_photo(CHAT, PHOTO, caption="the receipt")
    fake_telegram.send_text(CHAT, "after it")

    [pulse] = wait_for_pulses(home, 1, timeout=90)
    assert pulse["prompt"] == "Telegram message from Ada Lovelace: after it"
    fake_telegram.wait_for(lambda: not fake_telegram.pending_update_ids, what="both confirmed")
    assert listener.poll() is None, home.output(listener)

    [reply] = [t for t in fake_telegram.sent_texts if "could not take this message" in t]
    assert "failed 3 times" in reply
    message_id = fake_telegram.message_id_of(poison)
    assert home.query("SELECT message_id, tries, set_aside_at IS NOT NULL FROM telegram_update_failures") == [
        (message_id, 3, True)
    ]
    assert home.query(
        "SELECT outcome, pulse_id FROM telegram_messages WHERE message_id = ?", (message_id,)
    ) == [("set_aside", None)]
    log = home.output(listener)
    assert log.count("telegram_update_failed ") == 2
    assert "telegram_update_set_aside " in log
    assert stop(listener) == 0
    assert len(telegram_pulses(home)) == 1


def test_the_tries_of_a_failing_update_are_counted_across_restarts(home, fake_telegram):
    fake_telegram.answer_oddly("getFile", None)
    fake_telegram.send_photo(CHAT, PHOTO)
    first = listen(home)
    home.wait_for(
        lambda: home.query("SELECT tries FROM telegram_update_failures") == [(1,)], what="the first try"
    )
    assert stop(first) == 0
    second = listen(home)
    fake_telegram.wait_for(lambda: not fake_telegram.pending_update_ids, timeout=60, what="set aside")
    assert home.query("SELECT tries FROM telegram_update_failures") == [(3,)]
    assert second.poll() is None
    assert stop(second) == 0


def test_an_answer_whose_send_raises_does_not_stop_the_listener_and_the_next_answer_arrives(
    home, fake_telegram
):
    # Telegram takes the message, but the library cannot read its answer: an AttributeError.
    fake_telegram.answer_oddly("sendMessage", None, text_contains="poisoned")
    worker = home.start("run_pulse_worker")
    listener = listen(home)
    fake_telegram.send_text(CHAT, "poisoned answer")
    wait_for_pulses(home, 1)
    home.wait_for(
        lambda: home.query("SELECT state FROM pulse_deliveries WHERE pulse_id = 1") == [("sent",)],
        timeout=90,
        what="the poisoned answer closed",
    )
    fake_telegram.send_text(CHAT, "a healthy one")
    wait_for_answer(fake_telegram, "Done: Telegram message from Ada Lovelace: a healthy one", timeout=90)

    assert listener.poll() is None, home.output(listener)
    # Telegram may have taken the part the library could not confirm: never sent twice, and the
    # person is told a part may be missing.
    assert sum("poisoned answer" in t for t in fake_telegram.sent_texts) == 1
    assert any("may be missing" in t for t in fake_telegram.sent_texts)
    assert "telegram_outbox_item_failed" in home.output(listener)
    assert stop(listener) == 0
    stop(worker)


def test_a_note_of_a_part_in_doubt_whose_send_raises_is_sent_again_and_the_skip_recorded_after_it(
    home, fake_telegram
):
    # Found by bench/soak.py: a listener killed between recording the skip and sending the note left
    # the person with neither the answer nor the note. Here the note's first send raises instead.
    fake_telegram.answer_oddly("sendMessage", None, times=1, text_contains="poisoned")
    fake_telegram.answer_oddly("sendMessage", None, times=1, text_contains="may be missing")
    worker = home.start("run_pulse_worker")
    listener = listen(home)
    fake_telegram.send_text(CHAT, "poisoned answer")
    wait_for_pulses(home, 1)
    home.wait_for(
        lambda: home.query("SELECT state FROM pulse_deliveries WHERE pulse_id = 1") == [("sent",)],
        timeout=90,
        what="the answer closed",
    )

    notes = [t for t in fake_telegram.sent_texts if "may be missing" in t]
    assert len(notes) == 2  # the first send raised, so the skip waited for the second
    assert sum("poisoned answer" in t for t in fake_telegram.sent_texts) == 1  # the part: once
    assert home.query("SELECT detail FROM pulse_deliveries WHERE pulse_id = 1") == [
        ("message 1 of 1 may be missing",)
    ]
    assert stop(listener) == 0
    stop(worker)


def test_a_notification_whose_send_keeps_raising_is_set_aside_with_an_alert_and_the_next_goes_out(
    home, fake_telegram
):
    fake_telegram.answer_oddly("sendMessage", None, text_contains="poisoned")
    for text in ("a poisoned notification", "a healthy notification"):
        home.manage(
            "shell",
            "-c",
            "from telegram_bridge import notifications; "
            f"notifications.enqueue({text!r}, priority='normal', client='test')",
        )
    listener = listen(home, "--backoff-cap", "1")
    fake_telegram.wait_for(
        lambda: "a healthy notification" in fake_telegram.sent_texts, timeout=60, what="the healthy one"
    )
    home.wait_for(
        lambda: (
            home.query("SELECT text, state, tries FROM telegram_notifications ORDER BY id")
            == [("a poisoned notification", "failed", 3), ("a healthy notification", "sent", 1)]
        ),
        timeout=60,
        what="the poisoned one set aside after 3 tries",
    )
    # The alert goes out after the row is set aside: on a loaded machine it may still be on its way.
    fake_telegram.wait_for(
        lambda: any("set aside" in t for t in fake_telegram.sent_texts), timeout=60, what="the alert"
    )
    [alert] = [t for t in fake_telegram.sent_texts if "set aside" in t]
    assert "notification #1" in alert and "AttributeError" in alert
    assert listener.poll() is None, home.output(listener)
    assert "telegram_outbox_item_set_aside" in home.output(listener)
    assert stop(listener) == 0
