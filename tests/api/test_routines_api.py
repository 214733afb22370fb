"""`/api/routines` through Django's test client: list, create, detail, update, delete, pause,
resume, run now; bad input is a 400 naming the field with nothing stored; the agent's endpoints."""

from __future__ import annotations

import json
from datetime import datetime
from io import StringIO

import pytest
from django.core.management import call_command

from pulses.models import Pulse
from pulses.routines import changes
from pulses.routines.models import Routine
from tests.routines.refusals import EMPTY_WINDOW_AS_TEXT, REFUSED_EVERYWHERE

TOKEN = "routine-api-test-token-long-enough-to-serve"
BRIEFING = {
    "name": "briefing",
    "schedule": "0 8 * * 1-5",
    "prompt": "Brief me on today",
    "timezone": "Europe/Berlin",
}

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def api_token(settings):
    settings.PULSE_API_TOKEN = TOKEN


def call(client, method: str, path: str, body=None, token: str = TOKEN):
    data = "" if body is None else json.dumps(body)
    return client.generic(
        method, path, data, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def mine() -> list[str]:
    return sorted(Routine.objects.exclude(kind="hourly_prompt").values_list("name", flat=True))


def test_create_returns_the_routine_with_its_next_five_fires_in_its_zone(client):
    response = call(client, "POST", "/api/routines", {**BRIEFING, "tags": ["daily"], "priority": "high"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["name"], body["schedule"], body["timezone"], body["priority"], body["tags"]) == (
        "briefing", "0 8 * * 1-5", "Europe/Berlin", "high", ["daily"],
    )  # fmt: skip
    assert body["schedule_text"] == "At 08:00 on Monday through Friday"
    assert body["source"] == "owner" and body["enabled"] is True
    fires = [datetime.fromisoformat(text) for text in body["next_fires"]]
    assert len(fires) == 5 and fires == sorted(fires)
    assert all((f.hour, f.minute, f.isoweekday() <= 5) == (8, 0, True) for f in fires)
    assert all(f.utcoffset().total_seconds() == 3600 for f in fires)  # CET, in December
    assert body["next_fire_at"] == body["next_fires"][0]


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        *REFUSED_EVERYWHERE,
        EMPTY_WINDOW_AS_TEXT,
        ({"prompt": ""}, "prompt", ""),
        ({"prompt": "   "}, "prompt", "may not be blank"),
        ({"active_from": "8 am", "active_until": "10:00"}, "active_from", "is not a time of day"),
        ({"priority": "urgent"}, "priority", "is not one of"),
        ({"tags": "daily"}, "tags", ""),
        ({"max_retries": "3"}, "max_retries", ""),
        ({"colour": "blue"}, "colour", "unknown field"),
        ({"deliver": "email"}, "deliver", "is not one of"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_nothing_is_stored(client, change, field, words):
    response = call(client, "POST", "/api/routines", {**BRIEFING, **change})
    assert response.status_code == 400, response.json()
    body = response.json()
    assert field in body["errors"] and body["detail"].startswith(f"invalid input: {field}: ")
    assert words in body["detail"]
    assert mine() == []


def test_list_detail_update_and_delete(client):
    call(client, "POST", "/api/routines", BRIEFING)
    call(
        client,
        "POST",
        "/api/routines",
        {"name": "build", "schedule": "every 30 minutes", "prompt": "Check CI"},
    )
    listed = call(client, "GET", "/api/routines").json()
    assert [r["name"] for r in listed["results"]] == ["briefing", "build", "hourly-prompt"]
    assert listed["count"] == 3
    routine = Routine.objects.get(name="briefing")
    by_id = call(client, "GET", f"/api/routines/{routine.pk}").json()
    assert by_id == call(client, "GET", "/api/routines/briefing").json()

    moved = call(
        client, "PATCH", "/api/routines/briefing", {"schedule": "30 7 * * *", "timezone": "Asia/Tokyo"}
    )
    assert moved.status_code == 200, moved.json()
    first = datetime.fromisoformat(moved.json()["next_fire_at"])
    assert (first.hour, first.minute, first.utcoffset().total_seconds()) == (7, 30, 9 * 3600)
    refused = call(client, "PATCH", "/api/routines/briefing", {"timezone": "Nowhere/Land"})
    assert refused.status_code == 400 and "timezone" in refused.json()["errors"]
    assert Routine.objects.get(name="briefing").timezone == "Asia/Tokyo"

    assert call(client, "DELETE", "/api/routines/briefing").status_code == 204
    assert call(client, "GET", "/api/routines/briefing").status_code == 404
    gone = call(client, "DELETE", "/api/routines/briefing")
    assert (
        gone.status_code == 404 and gone.json()["detail"] == "no routine named 'briefing' (nor with that id)"
    )


def test_pause_resume_and_run_now(client):
    call(client, "POST", "/api/routines", BRIEFING)
    paused = call(client, "POST", "/api/routines/briefing/pause").json()
    assert (paused["enabled"], paused["next_fire_at"], paused["paused_reason"]) == (
        False,
        None,
        "paused by hand",
    )
    resumed = call(client, "POST", "/api/routines/briefing/resume").json()
    assert resumed["enabled"] is True and resumed["next_fire_at"]
    ran = call(client, "POST", "/api/routines/briefing/run")
    assert ran.status_code == 201, ran.json()
    pulse = Pulse.objects.get(pk=ran.json()["id"])
    assert (pulse.source, pulse.prompt, pulse.routine.name, pulse.status) == (
        "routine", "Brief me on today", "briefing", "pending",
    )  # fmt: skip
    assert Routine.objects.get(name="briefing").next_fire_at.isoformat() != pulse.scheduled_at.isoformat()
    assert call(client, "POST", "/api/routines/nope/run").status_code == 404


def test_the_routine_endpoints_are_in_the_openapi_schema(client):
    schema = client.get(
        "/api/schema", HTTP_ACCEPT="application/json", HTTP_AUTHORIZATION=f"Bearer {TOKEN}"
    ).json()
    paths = schema["paths"]
    assert set(paths["/api/routines"]) >= {"get", "post"}
    assert set(paths["/api/routines/{key}"]) >= {"get", "patch", "delete"}
    for action in ("pause", "resume", "run"):
        assert "post" in paths[f"/api/routines/{{key}}/{action}"]
    assert set(paths["/api/agent/routines"]) >= {"get", "post"}
    assert (
        "delete" in paths["/api/agent/routines/{name}"]
        and "post" in paths["/api/agent/routines/{name}/pause"]
    )


def agent_token() -> str:
    out = StringIO()
    call_command("create_api_token", "desk", "--scope", "agent", stdout=out)
    return out.getvalue().split()[-1]


def test_an_agent_token_reaches_only_the_agents_routine_endpoints(client):
    token = agent_token()
    refused = call(client, "POST", "/api/routines", BRIEFING, token=token)
    assert refused.status_code == 403 and "'agent' scope" in refused.json()["detail"]
    made = call(client, "POST", "/api/agent/routines", {**BRIEFING, "name": "agent-brief"}, token=token)
    assert made.status_code == 200, made.json()
    assert made.json()["created_by"] == "agent" and made.json()["schedule_text"].startswith("At 08:00")
    listed = call(client, "GET", "/api/agent/routines", token=token).json()
    assert [r["name"] for r in listed["routines"]] == ["agent-brief", "hourly-prompt"]


def test_the_agent_pauses_any_routine_but_deletes_only_its_own(client):
    token = agent_token()
    changes.create(name="owners", schedule="@daily", prompt="The owner's")
    call(
        client,
        "POST",
        "/api/agent/routines",
        {"name": "mine", "schedule": "@daily", "prompt": "x"},
        token=token,
    )
    paused = call(client, "POST", "/api/agent/routines/owners/pause", token=token)
    assert paused.status_code == 200 and paused.json()["paused_reason"] == "paused by the agent"
    refused = call(client, "DELETE", "/api/agent/routines/owners", token=token)
    assert refused.status_code == 403 and "pause_routine" in refused.json()["detail"]
    deleted = call(client, "DELETE", "/api/agent/routines/mine", token=token)
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert mine() == ["owners"]
    unknown = call(client, "DELETE", "/api/agent/routines/mine", token=token)
    assert unknown.status_code == 404 and "call list_routines" in unknown.json()["detail"]


def test_a_routine_may_ask_for_its_answers_on_telegram(client):
    made = call(client, "POST", "/api/routines", {**BRIEFING, "deliver": "telegram"})
    assert made.status_code == 201, made.json()
    assert made.json()["deliver"] == "telegram"
    assert Routine.objects.get(name="briefing").deliver == "telegram"
    cleared = call(client, "PATCH", "/api/routines/briefing", {"deliver": ""})
    assert cleared.json()["deliver"] == ""


def test_a_routines_agent_options_are_set_changed_and_carried_by_the_pulse_it_runs(client):
    created = call(client, "POST", "/api/routines", {**BRIEFING, "model": "sonnet", "timeout_seconds": 7200})
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["model"], body["timeout_seconds"], body["max_turns"]) == ("sonnet", 7200, None)
    changed = call(
        client, "PATCH", "/api/routines/briefing", {"model": "claude-opus-4-1", "max_turns": 40}
    ).json()
    assert (changed["model"], changed["timeout_seconds"], changed["max_turns"]) == (
        "claude-opus-4-1", 7200, 40,
    )  # fmt: skip
    ran = call(client, "POST", "/api/routines/briefing/run").json()
    assert (ran["model"], ran["timeout_seconds"], ran["max_turns"]) == ("claude-opus-4-1", 7200, 40)
    back = call(client, "PATCH", "/api/routines/briefing", {"model": "", "timeout_seconds": None}).json()
    assert (back["model"], back["timeout_seconds"]) == ("", None)


@pytest.mark.parametrize("model", ["--dangerously-skip-permissions", "-x", "--model=opus"])
def test_a_model_shaped_like_an_option_is_a_400_on_a_routine_change_too(client, model):
    call(client, "POST", "/api/routines", BRIEFING)
    refused = call(client, "PATCH", "/api/routines/briefing", {"model": model})
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith("invalid input: model: ")
    assert "is not a model name" in refused.json()["detail"]
    assert Routine.objects.get(name="briefing").model == ""


def test_the_agents_endpoints_take_the_agent_options_within_the_guard_rails(client, settings):
    settings.PULSE_TIMEOUT_SECONDS = 3600
    token = agent_token()
    options = {"model": "haiku", "timeout_seconds": 600, "max_turns": 8}
    made = call(client, "POST", "/api/agent/routines", {**BRIEFING, **options}, token=token)
    assert made.status_code == 200, made.json()
    assert {name: made.json()[name] for name in options} == options
    pulse = call(client, "POST", "/api/agent/pulses", {"prompt": "x", **options}, token=token)
    assert pulse.status_code == 200, pulse.json()
    assert {name: pulse.json()[name] for name in options} == options
    other = {**BRIEFING, "name": "other"}
    for path, body in (("/api/agent/pulses", {"prompt": "x"}), ("/api/agent/routines", other)):
        shaped = call(client, "POST", path, {**body, "model": "-x"}, token=token)
        assert shaped.status_code == 400 and "is not a model name" in shaped.json()["detail"]
        longer = call(client, "POST", path, {**body, "timeout_seconds": 7200}, token=token)
        assert longer.status_code == 400 and "PULSE_TIMEOUT_SECONDS" in longer.json()["detail"]
    assert Pulse.objects.filter(source="agent").count() == 1 and mine() == ["briefing"]
