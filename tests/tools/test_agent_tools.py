"""The agent's tools as plain functions over the queue (the MCP server's tests drive them over stdio)."""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from pulses.models import Pulse, Status
from pulses.tools import agent_tools
from pulses.tools.agent_tools import AgentToolError
from tests.support.factories import PulseFactory

pytestmark = pytest.mark.django_db


def test_schedule_pulse_defaults_to_a_normal_agent_pulse_due_now():
    before = timezone.now()
    described = agent_tools.schedule_pulse(prompt="Water the plants")
    pulse = Pulse.objects.get(pk=described["id"])
    assert (pulse.source, pulse.priority, pulse.status) == ("agent", "normal", Status.PENDING)
    assert before <= pulse.scheduled_at <= timezone.now()
    assert pulse.parent_id is None and pulse.session_id == ""
    assert described["scheduled_at"] == pulse.scheduled_at.isoformat()


def test_a_time_phrase_the_parser_cannot_read_is_quoted_with_the_accepted_forms():
    with pytest.raises(AgentToolError) as caught:
        agent_tools.schedule_pulse(prompt="x", when="after the rain stops")
    message = str(caught.value)
    assert "'after the rain stops'" in message
    assert "now" in message and "in N minutes" in message and "tomorrow at 9am" in message
    assert not Pulse.objects.exists()


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ({"prompt": "  "}, "'prompt' must be a non-empty string"),
        ({"prompt": "x" * 50_001}, "at most 50000"),
        ({"prompt": "x", "priority": "urgent"}, "unknown priority 'urgent'"),
        ({"prompt": "x", "tags": "solo"}, "'tags' must be a list of strings"),
        ({"prompt": "x", "tags": ["ok", ""]}, "every item of 'tags'"),
        ({"prompt": "x", "sticky_notes": ["n"] * 51}, "at most 50 are accepted"),
        ({"prompt": "x", "when": 5}, "'when' must be text"),
        ({"prompt": "x", "model": "--dangerously-skip-permissions"}, "is not a model name"),
        ({"prompt": "x", "model": "-x"}, "is not a model name"),
        (
            {"prompt": "x", "timeout_seconds": 3},
            "'timeout_seconds' must be a whole number of seconds from 10",
        ),
        ({"prompt": "x", "max_turns": 0}, "'max_turns' must be a whole number from 1"),
    ],
)
def test_bad_schedule_arguments_are_refused_with_a_message_the_agent_can_act_on(arguments, words):
    with pytest.raises(AgentToolError, match=words):
        agent_tools.schedule_pulse(**arguments)
    assert not Pulse.objects.exists()


def test_resume_current_session_takes_the_running_pulses_session_and_parent():
    running = PulseFactory(processing=True, session_id="0f8fad5b-d9cb-469f-a165-70867728950e")
    described = agent_tools.schedule_pulse(
        prompt="continue",
        when="in 1 hour",
        resume_current_session=True,
        sticky_notes=["be brief"],
        run_pulse_id=running.pk,
    )
    follow_up = Pulse.objects.get(pk=described["id"])
    assert (
        follow_up.session_id == "0f8fad5b-d9cb-469f-a165-70867728950e" and follow_up.parent_id == running.pk
    )
    assert follow_up.sticky_notes == ["be brief"]
    assert follow_up.scheduled_at > timezone.now() + timedelta(minutes=59)


def test_resume_current_session_outside_an_agent_run_says_to_schedule_without_it():
    with pytest.raises(AgentToolError, match="no run token.*without resume_current_session"):
        agent_tools.schedule_pulse(prompt="x", resume_current_session=True)


def test_resume_current_session_waits_only_briefly_for_a_session_that_never_comes(monkeypatch):
    running = PulseFactory(processing=True, session_id="")
    monkeypatch.setattr(agent_tools, "SESSION_WAIT_SECONDS", 0.3)
    with pytest.raises(
        AgentToolError, match=f"no session id is known yet for the running pulse #{running.pk}"
    ):
        agent_tools.schedule_pulse(prompt="x", resume_current_session=True, run_pulse_id=running.pk)


def test_a_pulse_that_is_gone_is_no_parent():
    assert agent_tools.schedule_pulse(prompt="x", run_pulse_id=999999)["parent_id"] is None
    with pytest.raises(AgentToolError, match="#999999 is not in the queue"):
        agent_tools.schedule_pulse(prompt="x", resume_current_session=True, run_pulse_id=999999)


def test_list_upcoming_pulses_lists_the_agents_pending_pulses_soonest_first():
    now = timezone.now()
    later = PulseFactory(by_agent=True, scheduled_at=now + timedelta(hours=2))
    overdue = PulseFactory(by_agent=True, scheduled_at=now - timedelta(hours=1))
    PulseFactory(by_agent=True, scheduled_at=now + timedelta(hours=1), status=Status.CANCELLED)
    PulseFactory(source="telegram", scheduled_at=now - timedelta(hours=2))  # the owner's: not listed
    listed = agent_tools.list_upcoming_pulses()
    assert [p["id"] for p in listed["pulses"]] == [overdue.pk, later.pk]
    assert listed["pending"] == 2
    with pytest.raises(AgentToolError, match="from 1 to 100"):
        agent_tools.list_upcoming_pulses(limit=0)


def test_cancel_and_reschedule_name_the_pulse_and_its_state_when_they_cannot():
    done = PulseFactory(by_agent=True, completed=True)
    with pytest.raises(AgentToolError, match="there is no pulse #31337; call list_upcoming_pulses"):
        agent_tools.cancel_pulse(pulse_id=31337)
    with pytest.raises(AgentToolError, match=f"pulse {done.pk} is completed; only a pending pulse"):
        agent_tools.cancel_pulse(pulse_id=done.pk)
    with pytest.raises(AgentToolError, match="schedule a new pulse with schedule_pulse"):
        agent_tools.reschedule_pulse(pulse_id=done.pk, when="tomorrow at 9am")
    with pytest.raises(AgentToolError, match="'pulse_id' must be a pulse's id"):
        agent_tools.reschedule_pulse(pulse_id=True, when="now")


def test_cancel_and_reschedule_change_a_pending_pulse():
    pulse = PulseFactory(by_agent=True, scheduled_at=timezone.now() + timedelta(hours=1))
    moved = agent_tools.reschedule_pulse(pulse_id=pulse.pk, when="in 3 days")
    pulse.refresh_from_db()
    assert pulse.scheduled_at > timezone.now() + timedelta(days=2, hours=23)
    assert moved["scheduled_at"] == pulse.scheduled_at.isoformat()
    assert agent_tools.cancel_pulse(pulse_id=pulse.pk)["status"] == Status.CANCELLED


def test_send_notification_without_telegram_is_refused_with_what_to_set(settings):
    settings.TELEGRAM_BOT_TOKEN = ""
    with pytest.raises(AgentToolError, match="no message was sent: Telegram is not configured") as refused:
        agent_tools.send_notification(message="hi")
    # A .env changed after the start is not read by the process that answers: it says so, and how.
    said = str(refused.value)
    assert f"running web process (pid {os.getpid()}) that lacks the setting" in said
    assert "reads .env only when it starts" in said and "./reeve start again" in said
    assert "systemctl restart reeve-daemon" in said
    with pytest.raises(AgentToolError, match="unknown priority 'loud'"):
        agent_tools.send_notification(message="hi", priority="loud")


def test_send_notification_queues_its_text_for_the_listener_with_its_priority(telegram_settings):
    from telegram_bridge import notifications

    queued = agent_tools.send_notification(message="fyi", priority="silent")
    assert queued == {"queued": True, "id": queued["id"], "messages": 1, "priority": "silent"}
    agent_tools.send_notification(message="fire", priority="critical")
    assert telegram_settings.calls_to("sendMessage") == []  # nothing waits for Telegram here
    taken = notifications.take_due(configured_chats=(42,))
    assert [(n.parts, n.silent, n.chat_ids) for n in taken] == [
        (("fyi",), True, (42,)),
        (("🚨 fire",), False, (42,)),
    ]


def test_the_agent_sets_its_pulses_model_and_turns_and_shortens_its_runs_but_not_past_the_owners_limit(
    settings,
):
    settings.PULSE_TIMEOUT_SECONDS = 3600
    described = agent_tools.schedule_pulse(prompt="Remind me", model="haiku", timeout_seconds=60, max_turns=3)
    pulse = Pulse.objects.get(pk=described["id"])
    assert (pulse.model, pulse.timeout_seconds, pulse.max_turns) == ("haiku", 60, 3)
    assert (described["model"], described["timeout_seconds"], described["max_turns"]) == ("haiku", 60, 3)
    with pytest.raises(AgentToolError) as refused:
        agent_tools.schedule_pulse(prompt="Research for hours", timeout_seconds=7200)
    assert "longer than the owner's limit for every run (3600 s, PULSE_TIMEOUT_SECONDS)" in str(refused.value)
    assert Pulse.objects.count() == 1
