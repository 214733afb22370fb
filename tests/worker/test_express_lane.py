"""The express lane (issue 20), with real worker processes and the fake agent: a critical pulse takes
a reserved slot while background work holds the ordinary ones, may make a listed priority give way,
and still waits for a run of its own session.

No timing is asserted here (the machine is noisy): runs are ordered by the fake agent's own start and
end records. How soon the critical pulse starts is measured by bench/bench_express.py.
"""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime

import pytest

from pulses.models import Pulse
from telegram_bridge.notices import STILL_WORKING
from tests.support.reeve_processes import ReeveHome

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


def schedule(home: ReeveHome, prompt: str, *, priority: str, session: str = "") -> int:
    """Insert a due pulse as another process would, waking the worker (a commit on SQLite, a NOTIFY
    on PostgreSQL); SQL rather than a management command, whose start-up would let short runs end.
    Every other column gets the model's default, so the row is one Reeve itself could have written."""
    given = {"prompt": prompt, "priority": priority, "session_id": session, "source": "test"}
    columns, values = [], []
    for model_field in Pulse._meta.concrete_fields:
        if model_field.primary_key or model_field.generated:
            continue
        value = given.get(model_field.name, model_field.get_default())
        if model_field.name in ("scheduled_at", "created_at"):
            value = datetime.now(UTC)
        columns.append(model_field.column)
        values.append(_as_stored(home, value))
    placeholders = ", ".join("?" for _ in columns)
    sql = f"INSERT INTO pulses ({', '.join(columns)}) VALUES ({placeholders}) RETURNING id"  # noqa: S608
    [(pulse_id,)] = home.query(sql, tuple(values))
    if home.database_url:
        home.query("NOTIFY reeve_pulses")
    return pulse_id


def _as_stored(home: ReeveHome, value: object) -> object:
    """A value as Django stores it: datetimes with their offset on PostgreSQL and as naive UTC text on
    SQLite, JSON as text."""
    if isinstance(value, datetime):
        moment = value if home.database_url else value.astimezone(UTC).replace(tzinfo=None)
        return moment.isoformat(sep=" ", timespec="microseconds")
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


def status_of(home: ReeveHome, pulse_id: int) -> str:
    return home.query("SELECT status FROM pulses WHERE id = ?", (pulse_id,))[0][0]


def stop(home: ReeveHome, worker) -> None:
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, home.output(worker)


def test_a_critical_pulse_starts_in_the_reserved_slot_while_a_low_pulse_holds_the_only_ordinary_one(home):
    low = schedule(home, "background research mode=sleep:90", priority="low")
    worker = home.start("run_pulse_worker", PULSE_MAX_CONCURRENT="1", PULSE_SHUTDOWN_GRACE_SECONDS="1")
    [low_run] = home.wait_for(lambda: runs_of(home, low), what="the low pulse's agent to start")
    critical = schedule(home, "what is on my calendar? mode=sleep:90", priority="critical")
    normal = schedule(home, "tidy the notes mode=noop", priority="normal")
    [critical_run] = home.wait_for(
        lambda: runs_of(home, critical), what="the critical pulse's agent to start"
    )
    # It runs beside the low pulse, inside the low pulse's run; the normal pulse waits its turn.
    assert low_run["t"] < critical_run["t"] < low_end(home, low_run)

    # pulse_queue shows both slots busy, and with what.
    home.wait_for(
        lambda: home.query("SELECT COUNT(*) FROM pulse_workers")[0][0], what="the worker's heartbeat"
    )
    lines = home.manage("pulse_queue", "processing").stdout.splitlines()
    [slots] = [line for line in lines if line.startswith("worker ")]
    assert (
        f"critical: #{critical} critical since" in slots
        and '"what is on my calendar? mode=sleep:90"' in slots
    )
    assert f"ordinary: #{low} low since" in slots
    assert slots.index("critical:") < slots.index("ordinary:")
    assert all(run["t"] >= low_end(home, low_run) for run in runs_of(home, normal))
    stop(home, worker)
    assert "critical_reserved=1" in home.output(worker)
    assert status_of(home, low) == status_of(home, critical) == "pending"  # released by the drain


def test_without_a_reserved_slot_the_critical_pulse_waits_and_preempts_only_the_listed_priorities(home):
    normal = schedule(home, "report mode=sleep:4", priority="normal")
    worker = home.start("run_pulse_worker", PULSE_CRITICAL_RESERVED="0", PULSE_PREEMPT="deferred,low")
    [normal_run] = home.wait_for(lambda: runs_of(home, normal), what="the normal pulse's agent to start")
    critical = schedule(home, "hello mode=noop", priority="critical")
    home.wait_for(lambda: status_of(home, critical) == "completed", timeout=60, what="the critical pulse")
    assert "signal" not in end_of(home, normal_run)
    assert runs_of(home, critical)[0]["t"] >= end_of(home, normal_run)["t"]
    stop(home, worker)
    assert "pulse_preempted" not in home.output(worker)


def test_with_preemption_the_low_pulse_gives_way_keeps_its_attempts_and_session_and_completes_later(home):
    low = schedule(home, "research mode=first_sleep:60", priority="low")
    worker = home.start("run_pulse_worker", PULSE_CRITICAL_RESERVED="0", PULSE_PREEMPT="deferred,low")
    [first] = home.wait_for(lambda: runs_of(home, low), what="the low pulse's agent to start")
    session = home.wait_for(
        lambda: home.query("SELECT session_id FROM pulses WHERE id = ?", (low,))[0][0],
        what="the low pulse's session to be stored",
    )
    critical = schedule(home, "answer me mode=noop", priority="critical")
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
    assert home.query("SELECT attempt_count, session_id FROM pulses WHERE id = ?", (low,)) == [(1, session)]
    stop(home, worker)
    log = home.output(worker)
    assert f"pulse_preempted id={low} for={critical}" in log and f"pulse_released id={low}" in log


def test_a_pulse_is_preempted_at_most_once_and_the_pulse_itself_records_it(home):
    low = schedule(home, "research mode=sleep:6", priority="low")
    worker = home.start("run_pulse_worker", PULSE_CRITICAL_RESERVED="0", PULSE_PREEMPT="deferred,low")
    [first] = home.wait_for(lambda: runs_of(home, low), what="the low pulse's agent to start")
    one = schedule(home, "answer me mode=noop", priority="critical")
    [_, second] = home.wait_for(
        lambda: (runs := runs_of(home, low)) and len(runs) == 2 and runs, what="the low pulse's second run"
    )
    assert end_of(home, first)["signal"] == "SIGTERM"
    # Recorded on the pulse, so any worker that claims it next knows.
    assert home.query("SELECT preempted FROM pulses WHERE id = ?", (low,))[0][0] in (True, 1)
    two = schedule(home, "and me mode=noop", priority="critical")
    home.wait_for(lambda: status_of(home, two) == "completed", timeout=60, what="the second critical pulse")
    assert status_of(home, low) == status_of(home, one) == "completed"
    # The second run was not interrupted: the second critical pulse waited for it to end.
    assert "signal" not in end_of(home, second)
    assert runs_of(home, two)[0]["t"] >= end_of(home, second)["t"]
    attempts = home.query(
        "SELECT number, succeeded FROM pulse_attempts WHERE pulse_id = ? ORDER BY id", (low,)
    )
    assert [tuple(row) for row in attempts] == [(1, False), (1, True)]
    stop(home, worker)
    assert home.output(worker).count("pulse_preempted") == 1


def test_a_critical_pulse_for_a_busy_session_waits_for_it_and_runs_of_one_session_never_overlap(home):
    first = schedule(home, "long task mode=sleep:8", priority="low", session=SESSION)
    # The low run holds the only ordinary slot and may be preempted, but never for its own session.
    worker = home.start("run_pulse_worker", PULSE_PREEMPT="low")
    home.wait_for(lambda: runs_of(home, first), what="the first run of the session")
    same = [schedule(home, f"follow-up {n} mode=noop", priority="critical", session=SESSION) for n in (1, 2)]
    other = schedule(home, "unrelated mode=noop", priority="critical")
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
