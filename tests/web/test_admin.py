"""The admin: coloured list, filters, search, read-only attempts, and actions that go through the queue."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from pulses.models import Pulse, Status
from tests.support.factories import PulseAttemptFactory, PulseFactory

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/pulses/pulse/"


def act(admin_client, action: str, *pulses: Pulse):
    response = admin_client.post(
        CHANGELIST, {"action": action, "_selected_action": [p.pk for p in pulses]}, follow=True
    )
    assert response.status_code == 200
    return [str(m) for m in get_messages(response.wsgi_request)]


def listed(admin_client, query: str = "") -> list[int]:
    response = admin_client.get(CHANGELIST + query)
    assert response.status_code == 200
    return sorted(p.pk for p in response.context["cl"].result_list)


def test_admin_pages_need_a_staff_login(client):
    response = client.get(CHANGELIST)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_list_shows_coloured_status_and_priority(admin_client):
    PulseFactory(failed=True, priority="critical")
    page = admin_client.get(CHANGELIST).content.decode()
    assert 'class="reeve-pill" style="background:#dc2626' in page  # failed
    assert 'class="reeve-pill" style="background:#b91c1c' in page  # critical


def test_filters_by_status_priority_source_tag_and_overdue(admin_client):
    overdue = PulseFactory(due=True, tags=["telegram"], source="telegram", priority="critical")
    later = PulseFactory(tags=["heartbeat"], source="cron")
    failed = PulseFactory(failed=True, source="cron")
    assert listed(admin_client, "?status__exact=failed") == [failed.pk]
    assert listed(admin_client, "?priority__exact=critical") == [overdue.pk]
    assert listed(admin_client, "?source__exact=cron") == sorted([later.pk, failed.pk])
    assert listed(admin_client, "?tag=telegram") == [overdue.pk]
    assert listed(admin_client, "?overdue=yes") == [overdue.pk]
    assert listed(admin_client, "?overdue=no") == sorted([later.pk, failed.pk])
    page = admin_client.get(CHANGELIST).content.decode()
    assert "?tag=heartbeat" in page and "?tag=telegram" in page


def test_search_looks_in_prompts(admin_client):
    match = PulseFactory(prompt="Check the calendar for tomorrow")
    PulseFactory(prompt="Water the plants")
    assert listed(admin_client, "?q=calendar") == [match.pk]


def test_a_pulse_page_shows_its_attempts_read_only(admin_client):
    attempt = PulseAttemptFactory(error="boom: the agent fell over", succeeded=False)
    response = admin_client.get(f"{CHANGELIST}{attempt.pulse_id}/change/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "boom: the agent fell over" in page
    assert 'name="prompt"' not in page  # nothing editable: changes go through the actions
    assert 'name="attempt_set-0-error"' not in page


def test_requeue_action_runs_failed_pulses_again_and_reports_the_count(admin_client):
    failed = PulseFactory.create_batch(2, failed=True)
    pending = PulseFactory()
    messages = act(admin_client, "requeue", *failed, pending)
    assert "Requeued 2 pulses." in messages
    assert any(m.startswith("Skipped 1:") and "only a failed, cancelled or completed" in m for m in messages)
    assert {p.status for p in Pulse.objects.filter(pk__in=[f.pk for f in failed])} == {Status.PENDING}


def test_cancel_action_cancels_pending_pulses_only(admin_client):
    pending, running = PulseFactory(), PulseFactory(processing=True)
    messages = act(admin_client, "cancel", pending, running)
    assert "Cancelled 1 pulse." in messages
    pending.refresh_from_db()
    running.refresh_from_db()
    assert (pending.status, running.status) == (Status.CANCELLED, Status.PROCESSING)


def test_stop_actions_ask_to_stop_running_pulses_only_naming_the_admin(admin_client):
    pending, running, other = PulseFactory(), PulseFactory(processing=True), PulseFactory(processing=True)
    messages = act(admin_client, "stop_running", pending, running)
    assert "Stopping 1 pulse." in messages
    assert any("only a running pulse can be stopped" in m for m in messages)
    assert act(admin_client, "stop_and_retry", other) == ["Stopping (then back to pending) 1 pulse."]
    stops = Pulse.objects.filter(pk__in=[pending.pk, running.pk, other.pk]).order_by("pk")
    assert list(stops.values_list("stop_requested_by", "stop_retry")) == [
        ("", False),
        ("admin admin", False),
        ("admin admin", True),
    ]


def test_a_running_pulses_page_has_stop_buttons_that_ask_to_stop_it(admin_client):
    running, done = PulseFactory(processing=True), PulseFactory(completed=True)
    page = admin_client.get(f"{CHANGELIST}{running.pk}/change/").content.decode()
    assert 'id="reeve-stop"' in page and 'id="reeve-stop-retry"' in page
    assert 'id="reeve-stop"' not in admin_client.get(f"{CHANGELIST}{done.pk}/change/").content.decode()
    response = admin_client.post(f"{CHANGELIST}{running.pk}/stop/", {"retry": "1"}, follow=True)
    assert response.redirect_chain[-1][0] == f"{CHANGELIST}{running.pk}/change/"
    running.refresh_from_db()
    assert (running.stop_requested_by, running.stop_retry) == ("admin admin", True)
    assert "stop requested by admin admin" in response.content.decode()
    assert admin_client.get(f"{CHANGELIST}{running.pk}/stop/").status_code == 302  # a GET changes nothing


def test_run_now_makes_pending_and_finished_pulses_due_at_once(admin_client):
    later = PulseFactory(scheduled_at=timezone.now() + timedelta(days=2))
    done = PulseFactory(completed=True)
    messages = act(admin_client, "run_now", later, done)
    assert "Made due now: 2 pulses." in messages
    for pulse in (later, done):
        pulse.refresh_from_db()
        assert pulse.status == Status.PENDING and pulse.scheduled_at <= timezone.now()


def test_duplicate_makes_a_pending_copy_with_the_original_as_parent(admin_client):
    original = PulseFactory(
        completed=True, prompt="Weekly review", tags=["review"], sticky_notes=["be brief"], priority="low"
    )
    messages = act(admin_client, "duplicate", original)
    assert "Duplicated 1 pulse." in messages
    copy = Pulse.objects.get(parent=original)
    assert (copy.prompt, copy.tags, copy.sticky_notes, copy.priority, copy.status) == (
        "Weekly review",
        ["review"],
        ["be brief"],
        "low",
        Status.PENDING,
    )


def test_adding_a_pulse_in_the_admin_schedules_it_through_the_queue(admin_client):
    response = admin_client.post(
        f"{CHANGELIST}add/",
        {
            "prompt": "Added by hand",
            "scheduled_at_0": "2031-01-02",
            "scheduled_at_1": "09:00:00",
            "priority": "high",
            "source": "admin",
            "session_id": "",
            "sticky_notes": "",
            "tags": "manual",
            "max_retries": "3",
            "idempotency_key": "",
            "attempt_set-TOTAL_FORMS": "0",
            "attempt_set-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    pulse = Pulse.objects.get(prompt="Added by hand")
    assert (pulse.status, pulse.tags, pulse.source) == (Status.PENDING, ["manual"], "admin")


def test_the_add_form_refuses_an_option_like_session_and_an_out_of_range_time(admin_client):
    response = admin_client.post(
        f"{CHANGELIST}add/",
        {
            "prompt": "Added by hand",
            "scheduled_at_0": "1999-01-02",
            "scheduled_at_1": "09:00:00",
            "priority": "high",
            "source": "admin",
            "session_id": "--mcp-config=evil.json",
            "sticky_notes": "",
            "tags": "",
            "max_retries": "3",
            "idempotency_key": "",
            "attempt_set-TOTAL_FORMS": "0",
            "attempt_set-INITIAL_FORMS": "0",
        },
    )
    page = response.content.decode()
    assert response.status_code == 200 and not Pulse.objects.exists()
    assert "is not a session id" in page and "years 2000 to 9000" in page


def test_the_add_form_sets_the_runs_agent_options_within_their_allow_list(admin_client):
    fields = {
        "prompt": "Research",
        "scheduled_at_0": "2031-01-02",
        "scheduled_at_1": "09:00:00",
        "priority": "normal",
        "source": "admin",
        "max_retries": "3",
        "model": "opus",
        "timeout_seconds": "7200",
        "max_turns": "40",
        "attempt_set-TOTAL_FORMS": "0",
        "attempt_set-INITIAL_FORMS": "0",
    }
    assert admin_client.post(f"{CHANGELIST}add/", fields).status_code == 302
    pulse = Pulse.objects.get(prompt="Research")
    assert (pulse.model, pulse.timeout_seconds, pulse.max_turns) == ("opus", 7200, 40)
    assert "7200" in admin_client.get(f"{CHANGELIST}{pulse.pk}/change/").content.decode()
    refused = admin_client.post(
        f"{CHANGELIST}add/",
        {**fields, "prompt": "Refused", "model": "--dangerously-skip-permissions", "timeout_seconds": "5"},
    )
    errors = refused.context["adminform"].form.errors
    assert "is not a model name" in " ".join(errors["model"])
    assert "from 10 to 86400" in " ".join(errors["timeout_seconds"])
    assert not Pulse.objects.filter(prompt="Refused").exists()


def test_the_list_shows_the_first_line_of_each_answer_and_the_page_every_attempts_result(admin_client):
    answered = PulseFactory(completed=True, prompt="What is on today?")
    PulseAttemptFactory(pulse=answered, result_text="Dentist at 9.\nThen lunch with Ada.")
    silent = PulseFactory(prompt="Not run yet")

    page = admin_client.get(CHANGELIST).content.decode()
    assert "Dentist at 9." in page and "Then lunch" not in page
    rows = {p.pk: p.answer_text for p in admin_client.get(CHANGELIST).context["cl"].result_list}
    assert rows[silent.pk] is None

    detail = admin_client.get(f"{CHANGELIST}{answered.pk}/change/").content.decode()
    assert "Then lunch with Ada." in detail  # the whole answer, and the attempt's result text
    assert detail.count("Dentist at 9.") == 2


def test_tags_and_sticky_notes_are_typed_as_lists_in_the_add_form(admin_client):
    form = admin_client.get(f"{CHANGELIST}add/").content.decode()
    assert '<textarea name="sticky_notes"' in form and "Separated by commas" in form
    fields = {
        "prompt": "Listed",
        "scheduled_at_0": "2031-01-02",
        "scheduled_at_1": "09:00:00",
        "priority": "normal",
        "source": "admin",
        "session_id": "",
        "sticky_notes": "be brief\n\n  answer in French, please  \n",
        "tags": "review, weekly,,",
        "max_retries": "3",
        "idempotency_key": "",
        "attempt_set-TOTAL_FORMS": "0",
        "attempt_set-INITIAL_FORMS": "0",
    }
    assert admin_client.post(f"{CHANGELIST}add/", fields).status_code == 302
    pulse = Pulse.objects.get(prompt="Listed")
    assert pulse.tags == ["review", "weekly"]
    assert pulse.sticky_notes == ["be brief", "answer in French, please"]
    too_many = admin_client.post(
        f"{CHANGELIST}add/", {**fields, "prompt": "Too many", "tags": ",".join("t" * 30)}
    )
    assert too_many.status_code == 200 and "at most 20 are accepted" in too_many.content.decode()
    assert not Pulse.objects.filter(prompt="Too many").exists()


def test_a_stored_pulse_shows_its_tags_and_sticky_notes_as_lists(admin_client):
    pulse = PulseFactory(tags=["review", "weekly"], sticky_notes=["be brief", "<b>not bold</b>"])
    page = admin_client.get(f"{CHANGELIST}{pulse.pk}/change/").content.decode()
    assert "review, weekly" in page and '["review"' not in page
    assert "<div>be brief</div><div>&lt;b&gt;not bold&lt;/b&gt;</div>" in page
