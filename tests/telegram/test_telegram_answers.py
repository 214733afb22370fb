"""Answers come back: the real listener and worker processes against the fake Bot API.

A message's pulse runs in the worker; the listener sends the agent's answer back as a reply to the
message, once, whatever is killed between the run and the send and however long Telegram is away.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from tests.support.fake_telegram import FakeTelegram
from tests.support.reeve_processes import ReeveHome

pytestmark = pytest.mark.slow

CHAT = 42
ANSWER = "Done: Telegram message from Ada Lovelace: "  # what the fake agent answers, then the prompt


@pytest.fixture
def home(reeve_home: ReeveHome, fake_telegram: FakeTelegram):
    reeve_home.extra_env.update(fake_telegram.env(CHAT))
    yield reeve_home
    if live := getattr(reeve_home, "live", None):
        live.stop()


def listen(home: ReeveHome):
    return home.start("run_telegram_listener", "--poll-timeout", "5", "--backoff-cap", "2")


def replies(fake: FakeTelegram) -> list[dict]:
    """The messages the bot sent that answer a pulse (not the listener's own notes), in order."""
    found = []
    for call in fake.calls_to("sendMessage"):
        if call.status != 200:
            continue
        reply = call.params.get("reply_parameters")
        if isinstance(reply, str):
            reply = json.loads(reply)
        found.append({"text": call.params["text"], "reply_to": (reply or {}).get("message_id")})
    return found


def pulse_states(home: ReeveHome) -> list[tuple]:
    return home.query(
        "SELECT p.id, p.status, d.state, d.parts_sent FROM pulses p "
        "JOIN pulse_deliveries d ON d.pulse_id = p.id ORDER BY p.id"
    )


def wait_for_answer(fake: FakeTelegram, text: str, *, timeout: float = 60) -> dict:
    return fake.wait_for(
        lambda: next((r for r in replies(fake) if r["text"].startswith(text)), None),
        timeout=timeout,
        what=f"a reply starting {text!r}",
    )


def kill_between_sends(home: ReeveHome, listener) -> None:
    """SIGKILL the listener while no part is in flight: a kill during a send leaves that part in doubt,
    and a part in doubt is passed over (never sent twice), which is another test's subject. The
    listener is frozen first, so what the database says cannot change before the kill."""
    deadline = time.monotonic() + 60
    while True:
        listener.send_signal(signal.SIGSTOP)
        [(started, sent)] = home.query("SELECT parts_started, parts_sent FROM pulse_deliveries")
        if started == sent:
            break
        listener.send_signal(signal.SIGCONT)
        assert time.monotonic() < deadline, "a part stayed in flight for a minute"
        time.sleep(0.05)
    listener.send_signal(signal.SIGKILL)
    listener.wait(timeout=10)


def settle(home: ReeveHome) -> None:
    """Wait until every delivery is closed, then a moment more for a stray second send to show."""
    home.wait_for(
        lambda: all(state != "waiting" for _, _, state, _ in pulse_states(home)),
        timeout=60,
        what="every delivery closed",
    )
    time.sleep(1.0)


def test_the_agents_answer_comes_back_as_a_reply_split_at_the_limit_and_nothing_to_say_stays_silent(
    home, fake_telegram
):
    listener, worker = listen(home), home.start("run_pulse_worker")
    first = fake_telegram.send_text(CHAT, "what is on my calendar?")
    answer = wait_for_answer(fake_telegram, ANSWER + "what is on my calendar?")
    assert answer["reply_to"] == fake_telegram.message_id_of(first)

    fake_telegram.send_text(CHAT, "tell me a long story mode=long:9000")
    fake_telegram.send_text(CHAT, "anything new? mode=nothing")
    home.wait_for(lambda: len(pulse_states(home)) == 3, what="three pulses")
    settle(home)

    long_parts = [r for r in replies(fake_telegram) if not r["text"].startswith("Done:")]
    assert len(long_parts) == 3  # 9000 characters: 4096 at most a message
    story = ("All work and no play makes Jack a dull boy. " * 226)[:9000]
    assert "".join(r["text"] for r in long_parts).strip() == story.strip()  # split at spaces, nothing lost
    assert long_parts[0]["reply_to"] is not None and long_parts[1]["reply_to"] is None
    assert not [r for r in replies(fake_telegram) if "NO_REPLY" in r["text"]]
    states = pulse_states(home)
    assert [(status, state) for _, status, state, _ in states] == [
        ("completed", "sent"),
        ("completed", "sent"),
        ("completed", "skipped"),
    ]
    assert len(replies(fake_telegram)) == 1 + 3
    for proc in (listener, worker):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_a_listener_killed_between_the_run_and_the_send_delivers_the_answer_exactly_once(home, fake_telegram):
    fake_telegram.fail(502, methods=("sendMessage",))  # the answer cannot go out yet
    listener, worker = listen(home), home.start("run_pulse_worker")
    fake_telegram.send_text(CHAT, "water the plants")
    home.wait_for(lambda: [s[1] for s in pulse_states(home)] == ["completed"], timeout=60, what="the run")
    fake_telegram.wait_for(
        lambda: [c for c in fake_telegram.calls_to("sendMessage") if c.status == 502], what="a failed send"
    )
    kill_between_sends(home, listener)
    fake_telegram.clear_failures()

    listen(home)
    wait_for_answer(fake_telegram, ANSWER + "water the plants")
    settle(home)
    assert [r["text"] for r in replies(fake_telegram)] == [ANSWER + "water the plants"]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0


def test_a_worker_killed_between_the_run_and_the_send_leaves_the_answer_to_be_sent_exactly_once(
    home, fake_telegram
):
    listener = listen(home)
    fake_telegram.send_text(CHAT, "remind me of the dentist")
    home.wait_for(lambda: pulse_states(home), what="the pulse")
    listener.send_signal(signal.SIGKILL)  # nobody sends while the worker runs
    listener.wait(timeout=10)
    worker = home.start("run_pulse_worker")
    home.wait_for(lambda: [s[1] for s in pulse_states(home)] == ["completed"], timeout=60, what="the run")
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)

    listen(home)
    wait_for_answer(fake_telegram, ANSWER + "remind me of the dentist")
    settle(home)
    assert [r["text"] for r in replies(fake_telegram)] == [ANSWER + "remind me of the dentist"]
    assert len(home.agent_starts()) == 1


def test_a_bot_api_outage_delays_the_answer_but_does_not_lose_it(home, fake_telegram):
    listener, worker = listen(home), home.start("run_pulse_worker")
    fake_telegram.fail(502, methods=("sendMessage", "getUpdates"), times=None)
    home.manage("trigger_pulse", "Summarise the news", "--deliver", "telegram")
    home.wait_for(lambda: [s[1] for s in pulse_states(home)] == ["completed"], timeout=60, what="the run")
    fake_telegram.wait_for(
        lambda: len([c for c in fake_telegram.calls_to("sendMessage") if c.status == 502]) >= 2,
        what="two failed sends",
    )
    assert pulse_states(home)[0][2] == "waiting"
    fake_telegram.clear_failures()

    answer = wait_for_answer(fake_telegram, "Done: Summarise the news")
    assert answer["reply_to"] is None  # not a message's pulse: sent to the configured chat
    settle(home)
    assert len(replies(fake_telegram)) == 1
    for proc in (listener, worker):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert "telegram_answer_retry" in home.output(listener)


def test_an_agent_that_messaged_the_user_with_send_notification_gets_no_duplicate_reply(home, fake_telegram):
    from tests.tools.test_mcp_server import api

    api(home)  # the tool server sends through the API's /api/notify
    home.manage("mcp_config", "--write")
    listener, worker = listen(home), home.start("run_pulse_worker")
    fake_telegram.send_text(CHAT, "check the oven mode=notify")
    fake_telegram.wait_for(
        lambda: "Told you directly: all done" in fake_telegram.sent_texts, timeout=120, what="a notification"
    )
    settle(home)
    assert [s[1:3] for s in pulse_states(home)] == [("completed", "skipped")]
    assert not [r for r in replies(fake_telegram) if "I sent you a notification" in r["text"]]
    assert [r["text"] for r in replies(fake_telegram)] == ["Told you directly: all done"]
    for proc in (listener, worker):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


def test_a_listener_killed_while_telegram_takes_a_part_of_a_long_answer_never_sends_a_part_twice(
    home, fake_telegram
):
    size = 40_000  # ten messages
    story = ("All work and no play makes Jack a dull boy. " * (size // 40 + 1))[:size]
    fake_telegram.hold_send(after=4)  # the fifth message reaches the chat; its answer never comes back
    listener, worker = listen(home), home.start("run_pulse_worker")
    home.manage("trigger_pulse", f"tell me a long story mode=long:{size}", "--deliver", "telegram")
    assert fake_telegram.send_held.wait(timeout=120), "the fifth message never went out"
    listener.send_signal(signal.SIGKILL)
    listener.wait(timeout=10)
    fake_telegram.release_send()

    listener = listen(home)
    settle(home)
    texts = [r["text"] for r in replies(fake_telegram)]
    note = (
        "(Part of this answer may be missing above: its send was cut short. "
        "The whole answer is pulse #1 on the dashboard.)"
    )
    parts = [text for text in texts if text != note]
    assert "".join(parts).strip() == story.strip()  # every part once: the one in doubt was not sent again
    assert len(parts) == 10
    assert texts[5] == note  # after the part in doubt, a note says so
    state, detail = home.query("SELECT state, detail FROM pulse_deliveries")[0]
    assert state == "sent" and detail == "message 5 of 10 may be missing"
    for proc in (listener, worker):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    assert "telegram_answer_part_in_doubt pulse=1 message=5 of=10" in home.output(listener)
