"""The real `run_telegram_listener` process, driving python-telegram-bot against the fake Bot API."""

from __future__ import annotations

import json
import signal

import pytest

from tests.support.fake_telegram import FakeTelegram
from tests.support.reeve_processes import ReeveHome

pytestmark = pytest.mark.slow

CHAT = 42
OTHER_CHAT = 777


@pytest.fixture
def home(reeve_home: ReeveHome, fake_telegram: FakeTelegram) -> ReeveHome:
    reeve_home.extra_env.update(fake_telegram.env(CHAT))
    # One run at a time, so the agent sees the messages in the order they came (a reserved critical
    # slot would run two chats' messages side by side, in either order).
    reeve_home.extra_env["PULSE_CRITICAL_RESERVED"] = "0"
    return reeve_home


def listen(home: ReeveHome, *extra: str, **env: str):
    return home.start("run_telegram_listener", "--poll-timeout", "5", "--backoff-cap", "4", *extra, **env)


def telegram_pulses(home: ReeveHome) -> list[dict]:
    rows = home.query(
        "SELECT id, prompt, priority, source, tags, session_id, idempotency_key, status "
        "FROM pulses WHERE source = 'telegram' ORDER BY id"
    )
    keys = ("id", "prompt", "priority", "source", "tags", "session_id", "idempotency_key", "status")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def applied_messages(home: ReeveHome) -> list[tuple[int, int, int | None]]:
    """(message id, edit date, pulse id) of each message the bridge applied, in order."""
    return [
        tuple(row)
        for row in home.query("SELECT message_id, edit_date, pulse_id FROM telegram_messages ORDER BY id")
    ]


def agent_prompts(home: ReeveHome) -> list[str]:
    return [start["argv"][-1] for start in home.agent_starts()]


def wait_for_pulses(home: ReeveHome, count: int, *, timeout: float = 60) -> list[dict]:
    home.wait_for(lambda: len(telegram_pulses(home)) >= count, timeout=timeout, what=f"{count} pulse(s)")
    return telegram_pulses(home)


def served(fake: FakeTelegram, status: int) -> bool:
    return any(c.status == status for c in fake.calls_to("getUpdates"))


def stop(proc) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def test_a_message_from_an_allowed_chat_becomes_one_critical_pulse_and_is_acknowledged(home, fake_telegram):
    listener = listen(home)
    update_id = fake_telegram.send_text(CHAT, "remind me to water the plants", name="Ada")

    [pulse] = wait_for_pulses(home, 1)

    assert pulse["prompt"] == "Telegram message from Ada Lovelace: remind me to water the plants"
    assert pulse["priority"] == "critical"
    assert json.loads(pulse["tags"]) == ["telegram", "user_message"]
    assert pulse["idempotency_key"] is None
    assert applied_messages(home) == [(fake_telegram.message_id_of(update_id), 0, pulse["id"])]
    fake_telegram.wait_for(lambda: fake_telegram.calls_to("setMessageReaction"), what="a reaction")
    reaction = fake_telegram.calls_to("setMessageReaction")[0].params
    assert int(reaction["chat_id"]) == CHAT
    fake_telegram.wait_for(lambda: update_id not in fake_telegram.pending_update_ids, what="confirmation")
    assert stop(listener) == 0
    assert "telegram_listener_stopped" in home.output(listener)


def test_messages_from_other_chats_are_ignored_and_logged_once(home, fake_telegram):
    listener = listen(home)
    fake_telegram.send_text(OTHER_CHAT, "let me in", name="Mallory")
    fake_telegram.send_text(OTHER_CHAT, "please", name="Mallory")
    fake_telegram.send_text(CHAT, "hello", name="Ada")

    [pulse] = wait_for_pulses(home, 1)
    fake_telegram.wait_for(lambda: not fake_telegram.pending_update_ids, timeout=30, what="all confirmed")
    assert stop(listener) == 0

    assert pulse["prompt"].endswith(": hello")
    assert home.output(listener).count(f"telegram_chat_ignored chat_id={OTHER_CHAT}") == 1
    assert all(int(c.params["chat_id"]) == CHAT for c in fake_telegram.calls_to("setMessageReaction"))


def test_a_4000_character_message_becomes_one_pulse_and_a_sticker_does_not(home, fake_telegram):
    listener = listen(home)
    long_text = ("All work and no play makes Jack a dull boy. " * 100)[:4000]
    fake_telegram.send_sticker(CHAT)
    fake_telegram.send_text(CHAT, long_text)

    [pulse] = wait_for_pulses(home, 1)
    fake_telegram.wait_for(lambda: not fake_telegram.pending_update_ids, what="all confirmed")
    assert stop(listener) == 0

    assert pulse["prompt"] == f"Telegram message from Ada Lovelace: {long_text}"
    assert len(telegram_pulses(home)) == 1


def test_a_follow_up_resumes_the_session_the_worker_stored_and_new_starts_afresh(home, fake_telegram):
    listener = listen(home)
    fake_telegram.send_text(CHAT, "what is on my calendar today?")
    [first] = wait_for_pulses(home, 1)
    home.manage("run_pulse_worker", "--once")
    [(session,)] = home.query("SELECT session_id FROM pulses WHERE id = ?", (first["id"],))
    assert session

    fake_telegram.send_text(CHAT, "and tomorrow?")
    second = wait_for_pulses(home, 2)[1]
    assert second["session_id"] == session
    home.manage("run_pulse_worker", "--once")
    resumed = [start for start in home.agent_starts() if start["resume"]]
    assert [start["resume"] for start in resumed] == [session]

    fake_telegram.send_text(CHAT, "/new")
    fake_telegram.wait_for(
        lambda: any("fresh conversation" in text for text in fake_telegram.sent_texts), what="/new reply"
    )
    fake_telegram.send_text(CHAT, "something else entirely")
    third = wait_for_pulses(home, 3)[2]
    assert third["session_id"] == ""
    assert third["prompt"].endswith(": something else entirely")

    fake_telegram.send_text(CHAT, "/new plan my week")
    fourth = wait_for_pulses(home, 4)[3]
    assert fourth["session_id"] == ""
    assert fourth["prompt"].endswith(": plan my week")
    assert stop(listener) == 0


@pytest.mark.parametrize(
    "when",
    ["right after the batch arrived", "in the middle of the batch", "after committing, before confirming"],
)
def test_a_listener_killed_between_receiving_and_confirming_a_batch_loses_and_doubles_nothing(
    home, fake_telegram, when
):
    listener = listen(home)
    fake_telegram.wait_for(lambda: fake_telegram.calls_to("getUpdates"), what="the first poll")
    fake_telegram.hold_confirmation()
    update_ids = fake_telegram.send_texts(CHAT, [f"message number {n}" for n in range(25)])

    if when == "right after the batch arrived":
        assert fake_telegram.delivered.wait(timeout=60)
    elif when == "in the middle of the batch":
        wait_for_pulses(home, 5)
    else:
        assert fake_telegram.confirmation_held.wait(timeout=60)
        assert len(telegram_pulses(home)) == 25  # committed, yet Telegram still holds the batch
    listener.send_signal(signal.SIGKILL)
    listener.wait(timeout=10)
    fake_telegram.release()
    assert fake_telegram.deliveries[0] == update_ids  # one batch
    assert fake_telegram.pending_update_ids == update_ids  # nothing was confirmed

    restarted = listen(home)
    wait_for_pulses(home, 25)
    fake_telegram.wait_for(lambda: not fake_telegram.pending_update_ids, what="the batch confirmed")
    assert stop(restarted) == 0

    pulses = telegram_pulses(home)
    assert sorted(message_id for message_id, _, _ in applied_messages(home)) == sorted(
        fake_telegram.message_id_of(u) for u in update_ids
    )
    assert sorted(p["prompt"] for p in pulses) == sorted(
        f"Telegram message from Ada Lovelace: message number {n}" for n in range(25)
    )
    assert len(fake_telegram.deliveries) >= 2  # the batch really was delivered twice
    if when == "after committing, before confirming":
        assert home.output(restarted).count("telegram_update_redelivered") == 25


def test_bad_gateway_errors_back_off_and_the_listener_recovers_by_itself(home, fake_telegram):
    listener = listen(home)
    fake_telegram.send_text(CHAT, "before the outage")
    wait_for_pulses(home, 1)
    fake_telegram.fail(502, times=3, methods=("getUpdates",))
    fake_telegram.wait_for(lambda: served(fake_telegram, 502), what="the outage")
    fake_telegram.send_text(CHAT, "during the outage")

    wait_for_pulses(home, 2, timeout=90)
    assert stop(listener) == 0

    failed = [c.at for c in fake_telegram.calls_to("getUpdates") if c.status == 502]
    retry = next(c.at for c in fake_telegram.calls_to("getUpdates") if c.at > failed[-1])
    gaps = [b - a for a, b in zip([*failed, retry], [*failed, retry][1:], strict=False)]
    assert len(failed) == 3
    assert gaps[0] >= 0.9 and gaps[1] >= 1.9 and gaps[2] >= 3.9  # 1 s, 2 s, 4 s
    log = home.output(listener)
    assert log.count("telegram_unreachable") == 3
    assert "telegram_recovered after_failures=3" in log


def test_a_429_waits_for_telegrams_retry_after(home, fake_telegram):
    listener = listen(home)
    fake_telegram.wait_for(lambda: fake_telegram.calls_to("getUpdates"), what="the first poll")
    fake_telegram.fail(429, times=1, retry_after=3, methods=("getUpdates",))
    fake_telegram.wait_for(lambda: served(fake_telegram, 429), what="the 429")
    fake_telegram.send_text(CHAT, "are you there?")

    wait_for_pulses(home, 1, timeout=60)
    assert stop(listener) == 0

    calls = fake_telegram.calls_to("getUpdates")
    limited = next(i for i, c in enumerate(calls) if c.status == 429)
    assert calls[limited + 1].at - calls[limited].at >= 2.9
    assert "telegram_rate_limited during=getUpdates retry_after_s=3.0" in home.output(listener)


def test_a_409_conflict_is_reported_as_another_poller_and_polling_resumes(home, fake_telegram):
    listener = listen(home)
    fake_telegram.wait_for(lambda: fake_telegram.calls_to("getUpdates"), what="the first poll")
    fake_telegram.fail(409, times=2, methods=("getUpdates",))
    fake_telegram.wait_for(lambda: served(fake_telegram, 409), what="the conflict")
    fake_telegram.send_text(CHAT, "still there?")

    wait_for_pulses(home, 1, timeout=60)
    assert stop(listener) == 0

    log = home.output(listener)
    assert log.count("telegram_conflict") == 2
    assert "another listener is polling this bot token" in log
    assert "terminated by other getUpdates request" in log


def test_an_invalid_token_stops_the_listener_with_an_error_naming_the_variable(home, fake_telegram):
    listener = listen(home, TELEGRAM_BOT_TOKEN="999:not-the-token")

    assert listener.wait(timeout=60) != 0
    output = home.output(listener)
    assert "TELEGRAM_BOT_TOKEN" in output
    assert "not-the-token" not in output
    assert "Traceback" not in output


def test_a_token_revoked_while_running_stops_the_listener(home, fake_telegram):
    listener = listen(home)
    fake_telegram.wait_for(lambda: fake_telegram.calls_to("getUpdates"), what="the first poll")
    fake_telegram.fail(401, methods=("getUpdates",))

    assert listener.wait(timeout=60) != 0
    assert "TELEGRAM_BOT_TOKEN" in home.output(listener)


def test_the_listener_refuses_to_start_without_a_chat_id(home, fake_telegram):
    home.extra_env["TELEGRAM_CHAT_ID"] = ""
    result = home.manage("run_telegram_listener", check=False)

    assert result.returncode != 0
    assert "TELEGRAM_CHAT_ID" in result.stderr


def test_sigterm_stops_the_listener_in_the_middle_of_a_long_poll(home, fake_telegram):
    listener = home.start("run_telegram_listener", "--poll-timeout", "50")
    fake_telegram.wait_for(lambda: fake_telegram.calls_to("getUpdates"), what="a long poll")

    listener.send_signal(signal.SIGTERM)

    assert listener.wait(timeout=25) == 0  # well before the 50 s poll would have ended
    output = home.output(listener)
    assert "telegram_listener_stopping signal=SIGTERM" in output
    assert "Traceback" not in output


def test_where_reactions_are_refused_the_listener_acknowledges_with_a_typing_action(home, fake_telegram):
    fake_telegram.fail(400, description="Bad Request: REACTION_INVALID", methods=("setMessageReaction",))
    listener = listen(home)
    fake_telegram.send_text(CHAT, "hello")

    wait_for_pulses(home, 1)
    fake_telegram.wait_for(lambda: fake_telegram.calls_to("sendChatAction"), what="a typing action")
    assert stop(listener) == 0

    action = fake_telegram.calls_to("sendChatAction")[0].params
    assert (int(action["chat_id"]), action["action"]) == (CHAT, "typing")


def test_update_ids_that_go_back_down_still_reach_the_agent(home, fake_telegram):
    listener = listen(home)
    fake_telegram.send_text(CHAT, "see you next week")
    wait_for_pulses(home, 1)
    fake_telegram.wait_for(lambda: not fake_telegram.pending_update_ids, what="confirmation")
    assert stop(listener) == 0

    # A quiet week: Telegram numbers the next updates from a random, lower value.
    fake_telegram.restart_update_ids(at=10)
    restarted = listen(home)
    assert fake_telegram.send_text(CHAT, "I am back") == 11
    wait_for_pulses(home, 2)
    fake_telegram.wait_for(lambda: not fake_telegram.pending_update_ids, what="confirmation")
    # And once more while the listener runs on.
    fake_telegram.restart_update_ids(at=3)
    assert fake_telegram.send_text(CHAT, "and again") == 4
    wait_for_pulses(home, 3)
    assert stop(restarted) == 0

    home.manage("run_pulse_worker", "--once")
    assert agent_prompts(home) == [
        "Telegram message from Ada Lovelace: see you next week",
        "Telegram message from Ada Lovelace: I am back",
        "Telegram message from Ada Lovelace: and again",
    ]


def test_an_api_client_posting_the_bridges_key_cannot_swallow_a_message_or_take_over_the_chat(
    home, fake_telegram
):
    attacker_session = "0b5e3c9e-7a1f-4c55-9d0e-5f3b1f0c2a11"
    # The keys the bridge used to give the next two updates (the fake numbers them from 1001).
    for update_id in (1001, 1002):
        key = f"telegram:{fake_telegram.bot_id}:{update_id}"
        home.manage(
            "trigger_pulse", "attacker's prompt", "--idempotency-key", key, "--session", attacker_session
        )
    listener = listen(home)

    fake_telegram.send_text(CHAT, "my own message")
    fake_telegram.send_text(CHAT, "and a follow-up")
    first, second = wait_for_pulses(home, 2)
    assert stop(listener) == 0

    assert first["prompt"] == "Telegram message from Ada Lovelace: my own message"
    assert second["prompt"] == "Telegram message from Ada Lovelace: and a follow-up"
    assert second["session_id"] != attacker_session
    [(last_pulse,)] = home.query("SELECT last_pulse_id FROM telegram_chats WHERE chat_id = ?", (CHAT,))
    assert last_pulse == second["id"]


def test_an_edit_updates_a_pending_pulse_and_after_the_run_follows_up_in_its_session(home, fake_telegram):
    listener = listen(home)
    sent = fake_telegram.send_text(CHAT, "book a table for tow")
    [pulse] = wait_for_pulses(home, 1)
    fake_telegram.edit(sent, text="book a table for two")
    home.wait_for(
        lambda: telegram_pulses(home)[0]["prompt"].endswith("for two"), what="the pending prompt rewritten"
    )
    assert len(telegram_pulses(home)) == 1

    home.manage("run_pulse_worker", "--once")
    [(session,)] = home.query("SELECT session_id FROM pulses WHERE id = ?", (pulse["id"],))
    fake_telegram.edit(sent, text="book a table for three")
    _, follow_up = wait_for_pulses(home, 2)
    fake_telegram.wait_for(lambda: not fake_telegram.pending_update_ids, what="all confirmed")
    assert stop(listener) == 0

    assert follow_up["session_id"] == session
    assert follow_up["prompt"] == (
        f"Telegram message from Ada Lovelace, an edit of their earlier message (pulse #{pulse['id']}); "
        "it now reads: book a table for three"
    )
    home.manage("run_pulse_worker", "--once")
    first_run, second_run = home.agent_starts()
    assert first_run["argv"][-1] == "Telegram message from Ada Lovelace: book a table for two"
    assert (second_run["resume"], second_run["argv"][-1]) == (session, follow_up["prompt"])


def test_stickers_polls_and_dice_get_one_short_reply_and_start_no_agent(home, fake_telegram):
    listener = listen(home)
    fake_telegram.hold_confirmation()
    fake_telegram.send_sticker(CHAT)
    fake_telegram.send_poll(CHAT, "lunch?")
    fake_telegram.send_dice(CHAT)
    fake_telegram.send_member_joined(CHAT)
    assert fake_telegram.confirmation_held.wait(timeout=60)
    fake_telegram.wait_for(lambda: len(fake_telegram.sent_texts) == 3, what="three replies")
    # Killed before confirming: the batch comes again, and nobody is answered twice.
    listener.send_signal(signal.SIGKILL)
    listener.wait(timeout=10)
    fake_telegram.release()
    restarted = listen(home)
    fake_telegram.wait_for(lambda: not fake_telegram.pending_update_ids, what="the batch confirmed")
    assert stop(restarted) == 0

    assert fake_telegram.sent_texts == [
        f"I can't pass a {kind} on to the agent. Reeve passes on text, photos, documents, voice notes, "
        "audio, video, locations and contacts."
        for kind in ("sticker", "poll", "dice")
    ]
    assert telegram_pulses(home) == []
    home.manage("run_pulse_worker", "--once")
    assert home.agent_starts() == []
    assert "telegram_message_unsupported chat_id=42 kind=sticker" in home.output(listener)


def test_locations_venues_and_contacts_reach_the_agent_as_text(home, fake_telegram):
    listener = listen(home)
    fake_telegram.send_location(CHAT, 48.8584, 2.2945)
    fake_telegram.send_venue(CHAT, 51.5007, -0.1246, title="Big Ben", address="Westminster, London SW1A 0AA")
    fake_telegram.send_contact(CHAT, phone="+1 555 0100", first_name="Grace", last_name="Hopper")

    wait_for_pulses(home, 3)
    assert stop(listener) == 0

    home.manage("run_pulse_worker", "--once")
    assert agent_prompts(home) == [
        "Telegram message from Ada Lovelace: Shared a location: 48.858400, 2.294500",
        "Telegram message from Ada Lovelace: Shared a venue: Big Ben, Westminster, London SW1A 0AA "
        "(51.500700, -0.124600)",
        "Telegram message from Ada Lovelace: Shared a contact: Grace Hopper, phone +1 555 0100",
    ]


def test_an_update_the_library_cannot_read_is_answered_and_does_not_stop_the_listener(home, fake_telegram):
    listener = listen(home)
    fake_telegram.wait_for(lambda: fake_telegram.calls_to("getUpdates"), what="the first poll")
    # A poll in the shape of an older Bot API: python-telegram-bot refuses to build it.
    option = {"text": "yes", "voter_count": 0}
    poll = {"id": "p", "question": "lunch?", "options": [option], "total_voter_count": 0, "is_closed": False}
    fake_telegram.send_texts(CHAT, ["before it"])
    fake_telegram.send(CHAT, {"poll": {**poll, "is_anonymous": True, "type": "regular"}})
    fake_telegram.send_text(CHAT, "after it")

    before, after = wait_for_pulses(home, 2)
    fake_telegram.wait_for(lambda: not fake_telegram.pending_update_ids, what="all confirmed")
    assert stop(listener) == 0

    assert (before["prompt"], after["prompt"]) == (
        "Telegram message from Ada Lovelace: before it",
        "Telegram message from Ada Lovelace: after it",
    )
    assert fake_telegram.sent_texts == [
        "I could not read that message: Telegram sent something newer than this Reeve understands, so it "
        "did not reach the agent. Please send it as text."
    ]
    # (python-telegram-bot itself logs the batch it could not parse, with its traceback.)
    assert "telegram_update_unreadable update_id=" in home.output(listener)
