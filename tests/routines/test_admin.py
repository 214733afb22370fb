"""Routines in the admin: the list's columns, the pause / resume / run now actions, the form's checks
(naming the field, storing nothing) and the preview of the next five fires in the routine's zone."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages

from pulses.models import Pulse
from pulses.routines import changes
from pulses.routines.models import Routine
from tests.routines.refusals import EMPTY_WINDOW_AS_TEXT, REFUSED_EVERYWHERE

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/pulses/routine/"
FORM = {
    "name": "briefing",
    "prompt": "Brief me on today",
    "schedule": "0 8 * * 1-5",
    "timezone": "Europe/Berlin",
    "priority": "normal",
    "tags": "daily, morning",
    "sticky_notes": "keep it short\nweather first",
    "max_retries": "3",
    "session_policy": "new",
    "session_id": "",
    "active_from": "",
    "active_until": "",
    "catch_up_window": "",
    "check_command": "",
    "pause_after_failures": "5",
}


def act(admin_client, action: str, *routines: Routine) -> list[str]:
    response = admin_client.post(
        CHANGELIST, {"action": action, "_selected_action": [r.pk for r in routines]}, follow=True
    )
    assert response.status_code == 200
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_the_list_shows_schedule_in_words_zone_next_fire_last_result_and_enabled(admin_client):
    changes.create(name="briefing", schedule="0 8 * * 1-5", prompt="x", timezone="Europe/Berlin")
    page = admin_client.get(CHANGELIST).content.decode()
    for header in ("schedule", "zone", "next fire", "last result", "enabled"):
        assert f">{header.capitalize()}<" in page or f">{header}<" in page.lower(), header
    assert "At 08:00 on Monday through Friday" in page and '<code class="reeve-cron"' in page
    assert "Europe/Berlin" in page and "08:00 CET" in page and "never run" in page


def test_pause_resume_and_run_now_actions_go_through_the_routines_code(admin_client):
    routine = changes.create(name="briefing", schedule="@daily", prompt="Brief me")
    assert act(admin_client, "pause", routine) == ["Paused 1 routine."]
    routine.refresh_from_db()
    assert not routine.enabled and routine.next_fire_at is None
    assert "paused" in admin_client.get(CHANGELIST).content.decode()
    assert act(admin_client, "resume", routine) == ["Resumed 1 routine."]
    routine.refresh_from_db()
    assert routine.enabled and routine.next_fire_at is not None
    assert act(admin_client, "run_now", routine) == ["Ran 1 routine."]
    pulse = Pulse.objects.get(routine=routine)
    assert (pulse.source, pulse.prompt) == ("routine", "Brief me")


def test_the_add_form_stores_through_the_routines_code_with_its_next_fire(admin_client):
    response = admin_client.post(CHANGELIST + "add/", FORM, follow=True)
    assert response.status_code == 200
    routine = Routine.objects.get(name="briefing")
    assert (routine.source, routine.tags, routine.timezone) == (
        "owner",
        ["daily", "morning"],
        "Europe/Berlin",
    )
    assert routine.sticky_notes == ["keep it short", "weather first"]
    local = routine.next_fire_at.astimezone(routine.zone)
    assert (local.hour, local.minute) == (8, 0)


def test_the_form_sets_the_agent_options_each_of_its_pulses_carries(admin_client):
    options = {"model": "opus", "timeout_seconds": "7200", "max_turns": ""}
    assert admin_client.post(CHANGELIST + "add/", {**FORM, **options}).status_code == 302
    routine = Routine.objects.get(name="briefing")
    assert (routine.model, routine.timeout_seconds, routine.max_turns) == ("opus", 7200, None)
    page = admin_client.get(f"{CHANGELIST}{routine.pk}/change/").content.decode()
    assert "The agent" in page and 'name="model"' in page and 'name="max_turns"' in page


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        *REFUSED_EVERYWHERE,
        EMPTY_WINDOW_AS_TEXT,
        ({"prompt": "   "}, "prompt", ""),
    ],
)
def test_the_form_refuses_bad_input_on_the_field_and_stores_nothing(admin_client, change, field, words):
    response = admin_client.post(CHANGELIST + "add/", {**FORM, **change})
    assert response.status_code == 200  # the form again, with the error
    errors = response.context["adminform"].form.errors
    assert field in errors and words in " ".join(errors[field]), errors
    assert not Routine.objects.filter(name="briefing").exists()


def test_editing_the_schedule_moves_the_next_fire(admin_client):
    routine = changes.create(name="briefing", schedule="0 8 * * *", prompt="x", timezone="Europe/Berlin")
    admin_client.post(f"{CHANGELIST}{routine.pk}/change/", {**FORM, "schedule": "30 6 * * *"})
    routine.refresh_from_db()
    local = routine.next_fire_at.astimezone(routine.zone)
    assert routine.schedule == "30 6 * * *" and (local.hour, local.minute) == (6, 30)


def test_the_preview_gives_the_next_five_fires_in_the_zone_or_the_error(admin_client):
    url = CHANGELIST + "preview/"
    good = admin_client.get(url, {"schedule": "30 2 * * *", "timezone": "America/New_York"}).json()
    assert good["text"] == "At 02:30 every day" and good["zone"] == "America/New_York"
    assert len(good["fires"]) == 5 and all(" 02:30 E" in fire for fire in good["fires"])
    bad = admin_client.get(url, {"schedule": "61 * * * *", "timezone": ""}).json()
    assert bad["error"]["field"] == "schedule" and "61 * * * *" in bad["error"]["message"]
    zone = admin_client.get(url, {"schedule": "@daily", "timezone": "Nowhere/Land"}).json()
    assert zone["error"]["field"] == "timezone"


def test_the_preview_and_the_form_need_a_staff_login(client):
    assert client.get(CHANGELIST + "preview/", {"schedule": "@daily"})["Location"].startswith("/admin/login/")


def test_deleting_in_the_admin_goes_through_the_routines_code_and_keeps_its_pulses(admin_client):
    routine = changes.create(name="old", schedule="@daily", prompt="x")
    pulse = changes.run_now(routine)
    admin_client.post(f"{CHANGELIST}{routine.pk}/delete/", {"post": "yes"})
    assert not Routine.objects.filter(name="old").exists()
    pulse.refresh_from_db()
    assert pulse.routine_id is None and pulse.source == "routine"
