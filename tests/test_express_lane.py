"""The express lane (issue 20), with real worker processes and the fake agent: a critical pulse takes
a reserved slot while background work holds the ordinary ones, may make a listed priority give way,
and still waits for a run of its own session.

No timing is asserted here (the machine is noisy): runs are ordered by the fake agent's own start and
end records. How soon the critical pulse starts is measured by bench/bench_express.py.
"""

from __future__ import annotations

import json
import re
import signal

import pytest

from telegram_bridge.notices import STILL_WORKING
from tests.reeve_processes import ReeveHome

pytestmark = pytest.mark.slow

SESSION = "0c6f1f5e-5b8a-4c1e-9d55-6f1f6c0b7a21"


@pytest.fixture
def home(reeve_home: ReeveHome) -> ReeveHome:
    reeve_home.extra_env["FAKE_AGENT_END_LOG"] = str(reeve_home.path / "agent-ends.log")
    return reeve_home


def ends(home: ReeveHome) -> list[dict]:
    path = home.path / "agent-ends.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def runs_of(home: ReeveHome, pulse_id: int) -> list[dict]:
    return [start for start in home.agent_starts() if start["pulse_id"] == str(pulse_id)]


def end_of(home: ReeveHome, start: dict) -> dict | None:
    return next((end for end in ends(home) if end["pid"] == start["pid"]), None)


def low_end(home: ReeveHome, run: dict) -> float:
    """When `run` ended; infinity while it runs."""
    end = end_of(home, run)
    return end["t"] if end else float("inf")


def schedule(home: ReeveHome, prompt: str, *extra: str) -> int:
    home.manage("trigger_pulse", prompt, *extra)
    [(pulse_id,)] = home.query("SELECT MAX(id) FROM pulses")
    return pulse_id


def schedule_many(home: ReeveHome, *pulses: dict) -> list[int]:
    """Several pulses from one process (a command start each would let a short run end meanwhile)."""
    code = (
        "import json, sys\n"
        "from pulses import queue\n"
        f"for spec in json.loads({json.dumps(json.dumps(pulses))}):\n"
        "    print(f'scheduled={queue.schedule(**spec).pulse.pk}')\n"
    )
    return [int(pk) for pk in re.findall(r"^scheduled=(\d+)$", home.manage("shell", "-c", code).stdout, re.M)]


def status_of(home: ReeveHome, pulse_id: int) -> str:
    return home.query("SELECT status FROM pulses WHERE id = ?", (pulse_id,))[0][0]


def stop(home: ReeveHome, worker) -> None:
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, home.output(worker)


def test_a_critical_pulse_starts_in_the_reserved_slot_while_a_low_pulse_holds_the_only_ordinary_one(home):
    low = schedule(home, "background research mode=sleep:90", "--priority", "low")
    worker = home.start("run_pulse_worker", PULSE_MAX_CONCURRENT="1", PULSE_SHUTDOWN_GRACE_SECONDS="1")
    [low_run] = home.wait_for(lambda: runs_of(home, low), what="the low pulse's agent to start")
    critical = schedule(home, "what is on my calendar? mode=noop", "--priority", "critical")
    home.wait_for(lambda: status_of(home, critical) == "completed", timeout=60, what="the critical pulse")
    # It ran beside the low pulse, inside the low pulse's run.
    [critical_run] = runs_of(home, critical)
    assert low_run["t"] < critical_run["t"] < end_of(home, critical_run)["t"] < low_end(home, low_run)

    # A second critical pulse finds the reserved slot free again; a normal one waits its turn.
    normal, again = schedule_many(
        home,
        {"prompt": "tidy the notes mode=noop", "priority": "normal"},
        {"prompt": "and tomorrow? mode=noop", "priority": "critical"},
    )
    home.wait_for(lambda: status_of(home, again) == "completed", timeout=60, what="the second critical pulse")
    assert runs_of(home, again)[0]["t"] < low_end(home, low_run)
    assert all(run["t"] >= low_end(home, low_run) for run in runs_of(home, normal))
    stop(home, worker)
    assert "critical_reserved=1" in home.output(worker)
    assert status_of(home, low) == "pending"  # released by the drain, to run again


def test_without_a_reserved_slot_the_critical_pulse_waits_for_the_low_one(home):
    low = schedule(home, "background mode=sleep:4", "--priority", "low")
    worker = home.start("run_pulse_worker", PULSE_CRITICAL_RESERVED="0")
    [low_run] = home.wait_for(lambda: runs_of(home, low), what="the low pulse's agent to start")
    critical = schedule(home, "hello mode=noop", "--priority", "critical")
    home.wait_for(lambda: status_of(home, critical) == "completed", timeout=60, what="the critical pulse")
    assert runs_of(home, critical)[0]["t"] >= end_of(home, low_run)["t"]
    stop(home, worker)


def test_with_preemption_the_low_pulse_gives_way_keeps_its_attempts_and_session_and_completes_later(home):
    low = schedule(home, "research mode=first_sleep:60", "--priority", "low")
    worker = home.start("run_pulse_worker", PULSE_CRITICAL_RESERVED="0", PULSE_PREEMPT="deferred,low")
    [first] = home.wait_for(lambda: runs_of(home, low), what="the low pulse's agent to start")
    session = home.wait_for(
        lambda: home.query("SELECT session_id FROM pulses WHERE id = ?", (low,))[0][0],
        what="the low pulse's session to be stored",
    )
    critical = schedule(home, "answer me mode=noop", "--priority", "critical")
    home.wait_for(lambda: status_of(home, low) == "completed", timeout=60, what="the low pulse to complete")

    assert status_of(home, critical) == "completed"
    assert end_of(home, first)["signal"] == "SIGTERM"  # stopped as a drain stops a run
    [crit_run] = runs_of(home, critical)
    assert crit_run["t"] >= end_of(home, first)["t"]
    [_, second] = runs_of(home, low)
    assert second["resume"] == session and second["t"] >= end_of(home, crit_run)["t"]
    attempts = home.query(
        "SELECT number, error, succeeded FROM pulse_attempts WHERE pulse_id = ? ORDER BY id", (low,)
    )
    assert attempts == [(1, f"interrupted for pulse {critical}; returned to pending", False), (1, "", True)]
    # The interrupted run spent no retry: the pulse counts the one attempt that completed.
    assert home.query("SELECT attempts, session_id FROM pulses WHERE id = ?", (low,)) == [(1, session)]
    stop(home, worker)
    log = home.output(worker)
    assert f"pulse_preempted id={low} for={critical}" in log and f"pulse_released id={low}" in log


def test_preemption_leaves_priorities_it_does_not_list_alone(home):
    normal = schedule(home, "report mode=sleep:2", "--priority", "normal")
    worker = home.start("run_pulse_worker", PULSE_CRITICAL_RESERVED="0", PULSE_PREEMPT="low")
    [normal_run] = home.wait_for(lambda: runs_of(home, normal), what="the normal pulse's agent to start")
    critical = schedule(home, "hello mode=noop", "--priority", "critical")
    home.wait_for(lambda: status_of(home, critical) == "completed", timeout=60, what="the critical pulse")
    assert "signal" not in end_of(home, normal_run)
    assert runs_of(home, critical)[0]["t"] >= end_of(home, normal_run)["t"]
    stop(home, worker)
    assert "pulse_preempted" not in home.output(worker)


def test_a_critical_pulse_for_a_busy_session_waits_for_it_and_runs_of_one_session_never_overlap(home):
    first = schedule(home, "long task mode=sleep:8", "--priority", "low", "--session", SESSION)
    # The low run holds the only ordinary slot and may be preempted, but never for its own session.
    worker = home.start("run_pulse_worker", PULSE_PREEMPT="low")
    home.wait_for(lambda: runs_of(home, first), what="the first run of the session")
    follow_up = {"priority": "critical", "session_id": SESSION}
    *same, other = schedule_many(
        home,
        {"prompt": "follow-up 1 mode=noop", **follow_up},
        {"prompt": "follow-up 2 mode=noop", **follow_up},
        {"prompt": "unrelated mode=noop", "priority": "critical"},
    )
    home.wait_for(
        lambda: all(status_of(home, pulse) == "completed" for pulse in [first, *same, other]),
        timeout=90,
        what="every pulse to complete",
    )
    stop(home, worker)
    # The session's pulses ran one after another, and the low one was not preempted for pulses of its
    # own session (though the unrelated critical pulse may have held the reserved slot meanwhile).
    assert runs_of(home, other)
    session_runs = sorted(
        (run for pulse in [first, *same] for run in runs_of(home, pulse)), key=lambda run: run["t"]
    )
    assert len(session_runs) == 3 and all(run["resume"] == SESSION for run in session_runs)
    for earlier, later in zip(session_runs, session_runs[1:], strict=False):
        assert end_of(home, earlier)["t"] <= later["t"]
    assert "pulse_preempted" not in home.output(worker)


def test_pulse_queue_shows_which_slots_are_busy_and_with_what(home):
    low = schedule(home, "background research mode=sleep:60", "--priority", "low")
    worker = home.start("run_pulse_worker", PULSE_SHUTDOWN_GRACE_SECONDS="1")
    home.wait_for(lambda: runs_of(home, low), what="the low pulse's agent to start")
    critical = schedule(home, "what is on my calendar? mode=sleep:60", "--priority", "critical")
    home.wait_for(lambda: runs_of(home, critical), what="the critical pulse's agent to start")
    home.wait_for(lambda: home.query("SELECT COUNT(*) FROM pulse_workers"), what="the worker's heartbeat")
    lines = home.manage("pulse_queue", "processing").stdout.splitlines()
    [slots] = [line for line in lines if line.startswith("worker ")]
    assert (
        f"critical: #{critical} critical since" in slots
        and '"what is on my calendar? mode=sleep:60"' in slots
    )
    assert f"ordinary: #{low} low since" in slots
    assert slots.index("critical:") < slots.index("ordinary:")
    stop(home, worker)
    idle = [line for line in home.manage("pulse_queue").stdout.splitlines() if line.startswith("worker ")]
    assert idle == [] or idle[0].endswith("critical: free; ordinary: free")


def test_a_telegram_message_waiting_for_its_sessions_run_tells_the_chat_once(home, fake_telegram):
    chat = 42
    home.extra_env.update(fake_telegram.env(chat))
    listener = home.start("run_telegram_listener", "--poll-timeout", "5")
    worker = home.start("run_pulse_worker", PULSE_BUSY_NOTICE_SECONDS="1")
    fake_telegram.send_text(chat, "summarise my inbox mode=sleep:20")
    first = home.wait_for(
        lambda: home.query("SELECT id FROM pulses WHERE session_id <> '' AND status = 'processing'"),
        timeout=60,
        what="the first message's run to store its session",
    )[0][0]
    fake_telegram.send_texts(chat, ["and my calendar? mode=noop", "and the weather? mode=noop"])
    later = "SELECT id FROM pulses WHERE id > ? ORDER BY id"
    waiting = home.wait_for(
        lambda: len(rows := home.query(later, (first,))) == 2 and [row[0] for row in rows],
        what="the two follow-ups",
    )
    home.wait_for(
        lambda: all(status_of(home, pulse) == "completed" for pulse in [first, *waiting]),
        timeout=90,
        what="every message to be answered",
    )
    stop(home, worker)
    stop(home, listener)
    notices = [call for call in fake_telegram.calls_to("sendMessage") if call.params["text"] == STILL_WORKING]
    assert len(notices) == 1 and int(notices[0].params["chat_id"]) == chat
    [first_run] = runs_of(home, first)
    for pulse in waiting:
        [run] = runs_of(home, pulse)
        assert run["resume"]  # the chat's session, which the first run announced
        assert run["t"] >= end_of(home, first_run)["t"]
    told = home.query("SELECT chat_id, busy_pulse_id FROM telegram_busy_notices")
    assert told == [(chat, first)]
