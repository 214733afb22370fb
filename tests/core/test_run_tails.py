"""The run's live tail as stored and read (pulses/run_tails.py): batched writes, the bound per run, the
API endpoint and its scopes, the admin page and the dashboard, `pulse_queue ID --follow`, and the worker
writing a fake agent's tool calls while it runs."""

from __future__ import annotations

import io
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from pulses import run_tails
from pulses.agent.events import RunEvent
from pulses.models import Pulse, RunTailEvent
from pulses.worker.loop import Worker, WorkerOptions
from tests.api.test_scopes import named_token
from tests.support.factories import PulseAttemptFactory, PulseFactory
from tests.support.reeve_processes import ROOT, ReeveHome

TOKEN = "a-main-token-long-enough-to-be-served-here"


def lines(count: int, *, start: int = 0, kind: str = "tool") -> list[RunEvent]:
    return [
        RunEvent(kind=kind, summary=f"Bash: step {n}", at=timezone.now()) for n in range(start, start + count)
    ]


def stored(pulse: Pulse) -> list[tuple[int, int, str]]:
    return list(
        RunTailEvent.objects.filter(pulse=pulse).order_by("seq").values_list("attempt", "seq", "summary")
    )


@pytest.mark.django_db
def test_a_run_keeps_its_last_lines_only_and_the_next_attempt_continues_the_sequence(settings):
    pulse = PulseFactory(processing=True)
    run_tails.append(pulse.pk, 1, lines(250), keep=200)  # N + 50 lines -> N kept
    rows = stored(pulse)
    assert len(rows) == 200
    assert rows[0] == (1, 51, "Bash: step 50") and rows[-1] == (1, 250, "Bash: step 249")

    run_tails.append(pulse.pk, 2, lines(3), keep=200)  # a retry: its own 200, after the first's
    assert stored(pulse)[-3:] == [
        (2, 251, "Bash: step 0"),
        (2, 252, "Bash: step 1"),
        (2, 253, "Bash: step 2"),
    ]
    assert len(stored(pulse)) == 203
    settings.PULSE_TAIL_EVENTS = 0
    assert run_tails.tail_limit() == 0


@pytest.mark.django_db(transaction=True)
def test_the_worker_side_writes_in_batches_at_most_twice_a_second_and_holds_the_bound():
    pulse = PulseFactory(processing=True)
    started = time.monotonic()
    writer = run_tails.TailWriter(pulse.pk, 1, keep=200, flush_seconds=0.5)
    for event in lines(30):  # 30 lines over 1.5 s (longer on a busy machine)
        writer.add(event)
        time.sleep(0.05)
    deadline = time.monotonic() + 10
    while not stored(pulse) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stored(pulse)  # written while the run goes on, before it ends
    for event in lines(220, start=30):  # a burst: past the bound before the next write
        writer.add(event)
    writer.close()
    # Never a transaction per line: at most one per half second, and the last one at the close.
    assert writer.writes <= (time.monotonic() - started) / 0.5 + 2
    rows = stored(pulse)
    assert len(rows) == 200 and rows[-1][2] == "Bash: step 249"


@pytest.fixture
def api(client, settings):
    settings.PULSE_API_TOKEN = TOKEN

    def get(path: str, token: str | None = TOKEN):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        return client.get(path, **headers)

    return get


@pytest.mark.django_db
def test_the_api_gives_the_lines_after_seq_and_the_answer_once_finished(api):
    pulse = PulseFactory(processing=True)
    run_tails.append(pulse.pk, 1, lines(5), keep=200)
    first = api(f"/api/pulses/{pulse.pk}/tail").json()
    assert [e["seq"] for e in first["events"]] == [1, 2, 3, 4, 5]
    assert first["events"][0] == {
        "seq": 1,
        "attempt": 1,
        "kind": "tool",
        "summary": "Bash: step 0",
        "at": first["events"][0]["at"],
    }
    assert (first["status"], first["finished"], first["next_after"]) == ("processing", False, 5)
    assert api(f"/api/pulses/{pulse.pk}/tail?after=3").json()["events"][0]["seq"] == 4

    Pulse.objects.filter(pk=pulse.pk).update(status="completed", finished_at=timezone.now())
    PulseAttemptFactory(pulse=pulse, result_text="All done.")
    last = api(f"/api/pulses/{pulse.pk}/tail?after=5").json()
    assert (last["events"], last["finished"], last["answer"], last["next_after"]) == (
        [],
        True,
        "All done.",
        5,
    )


@pytest.mark.django_db
def test_the_tail_is_read_as_a_pulse_is_a_full_token_or_a_staff_login(api, client, admin_user):
    pulse = PulseFactory(processing=True)
    path = f"/api/pulses/{pulse.pk}/tail"
    assert api(path, token=None).status_code == 401
    assert api(path, token=named_token("agent-tool", "--scope", "agent")).status_code == 403
    assert api(path, token=named_token("reader")).status_code == 200
    assert api("/api/pulses/999999/tail").status_code == 404
    assert api(f"{path}?after=-1").status_code == 400
    client.force_login(admin_user)
    assert client.get(path).status_code == 200


@pytest.mark.django_db
def test_the_admin_page_and_the_dashboard_carry_the_tail_and_its_script(admin_client):
    pulse = PulseFactory(processing=True)
    page = admin_client.get(f"/admin/pulses/pulse/{pulse.pk}/change/").content.decode()
    assert f'data-tail-url="/api/pulses/{pulse.pk}/tail"' in page and "pulses/run_tail.js" in page
    dashboard = admin_client.get("/dashboard/").content.decode()
    assert f'data-tail-url="/api/pulses/{pulse.pk}/tail"' in dashboard and "pulses/run_tail.js" in dashboard


@pytest.mark.django_db
def test_follow_prints_the_tail_then_the_outcome_of_a_finished_pulse():
    pulse = PulseFactory(completed=True)
    run_tails.append(pulse.pk, 1, lines(2), keep=200)
    PulseAttemptFactory(pulse=pulse, result_text="Two steps done.")
    out = io.StringIO()
    call_command("pulse_queue", str(pulse.pk), "--follow", stdout=out)
    printed = out.getvalue().splitlines()
    assert [line.split(maxsplit=1)[1] for line in printed[:2]] == [
        "tool         Bash: step 0",
        "tool         Bash: step 1",
    ]
    assert printed[2:] == [f"pulse {pulse.pk} completed", "Two steps done."]


@pytest.mark.django_db
def test_follow_needs_a_pulse_that_exists():
    with pytest.raises(CommandError, match="--follow needs a pulse"):
        call_command("pulse_queue", "pending", "--follow")
    with pytest.raises(CommandError, match="no pulse with id 424242"):
        call_command("pulse_queue", "424242", "--follow")


@pytest.mark.django_db(transaction=True)
def test_the_worker_stores_the_fake_agents_tool_calls_before_it_records_the_result(agent_log):
    pulse = PulseFactory(due=True, prompt="mode=tool_calls:3:0.1")
    Worker(WorkerOptions.from_settings(once=True, lease_seconds=30)).run(install_signals=False)
    pulse.refresh_from_db()
    assert pulse.status == "completed"
    kinds = [
        kind
        for kind, _ in RunTailEvent.objects.filter(pulse=pulse).order_by("seq").values_list("kind", "summary")
    ]
    assert kinds == ["start"] + ["tool", "tool_result"] * 3 + ["result"]
    assert RunTailEvent.objects.filter(pulse=pulse, summary="Bash: echo step 2").exists()


def _follow(home: ReeveHome, pulse_id: int) -> tuple[subprocess.Popen, queue.Queue]:
    """`pulse_queue ID --follow` in a real process, its stdout lines arriving on a queue (None at the end)."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "pulse_queue", str(pulse_id), "--follow"],
        cwd=ROOT,
        env=home.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def _trigger(home: ReeveHome, prompt: str, *when: str) -> int:
    out = home.manage("trigger_pulse", prompt, *when).stdout
    return int(re.search(r"pulse #(\d+)", out).group(1))


@pytest.mark.slow
def test_follow_in_a_terminal_prints_each_tool_call_while_the_agent_works_then_the_answer(reeve_home):
    reeve_home.start("run_pulse_worker")
    pulse_id = _trigger(reeve_home, "Tidy the notes mode=tool_calls:8")
    proc, lines = _follow(reeve_home, pulse_id)
    printed = []
    while (line := lines.get(timeout=60)) is not None:
        printed.append(line)
        if "Bash: echo step 1" in line:  # seen while the run goes on
            assert reeve_home.query("SELECT status FROM pulses WHERE id=?", (pulse_id,)) == [("processing",)]
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    tools = [line.split(maxsplit=2)[2] for line in printed if " tool " in f" {line} "]
    assert tools == [f"Bash: echo step {n}" for n in range(1, 9)]
    assert printed[-2:] == [f"pulse {pulse_id} completed", "Ran 8 steps."]


@pytest.mark.slow
def test_ctrl_c_stops_following_cleanly_and_leaves_the_pulse_alone(reeve_home):
    pulse_id = _trigger(reeve_home, "Later mode=noop", "--at", "in 2 hours")
    proc, lines = _follow(reeve_home, pulse_id)
    assert lines.get(timeout=60) == f"pulse {pulse_id} pending: following (Ctrl+C stops)"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert lines.get(timeout=5) == ""
    assert lines.get(timeout=5) == f"Stopped following pulse {pulse_id}; it goes on (pulse_queue {pulse_id})."
    assert proc.stderr.read() == ""  # no traceback
    assert reeve_home.query("SELECT status FROM pulses WHERE id=?", (pulse_id,)) == [("pending",)]
