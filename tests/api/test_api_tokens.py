"""Named, revocable API client tokens (`manage.py create_api_token`), stored only as a hash."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from pulses import queue
from pulses.agent.executor import AttemptOutcome
from pulses.api import tokens
from pulses.models import ApiToken, Pulse
from tests.support.factories import PulseFactory

pytestmark = pytest.mark.django_db


def create(name: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", name, stdout=out, stderr=err)
    assert "Store it now; it is not shown again" in err.getvalue()
    assert len(out.getvalue().splitlines()) == 1  # the token alone: TOKEN=$(./reeve create_api_token NAME)
    return out.getvalue().strip()


def test_a_client_token_works_and_only_its_hash_is_stored(client, settings):
    settings.PULSE_API_TOKEN = "the-main-token"
    token = create("telegram-bridge")
    row = ApiToken.objects.get(name="telegram-bridge")
    assert row.key_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in str(ApiToken.objects.values().get())
    assert len(token) >= 40
    response = client.get("/api/pulses", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_a_revoked_token_stops_working_at_once_and_its_name_can_be_reused(client):
    token = create("laptop")
    call_command("create_api_token", "laptop", "--revoke", stdout=io.StringIO())
    response = client.get("/api/pulses", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert "invalid or revoked token" in response.json()["detail"]
    fresh = create("laptop")
    assert client.get("/api/pulses", HTTP_AUTHORIZATION=f"Bearer {fresh}").status_code == 200
    assert ApiToken.objects.filter(revoked_at__isnull=False).count() == 1


def test_token_names_are_unique_and_required(capsys):
    create("cron")
    with pytest.raises(CommandError, match="exists already"):
        create("cron")
    with pytest.raises(CommandError, match="give the token a NAME"):
        call_command("create_api_token")
    with pytest.raises(CommandError, match="no active token named 'ghost'"):
        call_command("create_api_token", "ghost", "--revoke")


def test_the_list_shows_names_and_prefixes_never_tokens():
    token = create("phone")
    out = io.StringIO()
    call_command("create_api_token", "--list", stdout=out)
    assert "phone" in out.getvalue() and token[:6] in out.getvalue()
    assert token not in out.getvalue()


def test_the_configured_token_is_compared_in_constant_time_and_unknown_tokens_are_refused(settings):
    settings.PULSE_API_TOKEN = "configured"
    assert tokens.identify("configured").name == "settings"
    assert tokens.identify("configure") is None
    assert tokens.identify("") is None
    assert tokens.identify("x" * 10_000) is None


def test_the_command_has_help():
    from django.core.management import get_commands, load_command_class

    command = load_command_class(get_commands()["create_api_token"], "create_api_token")
    assert "--revoke" in command.create_parser("manage.py", "create_api_token").format_help()


FULL_SCOPE_ONLY = [
    ("get", "/api/pulses"),
    ("get", "/api/pulses/{id}"),
    ("get", "/api/pulse/upcoming"),
    ("post", "/api/pulse/trigger"),
    ("post", "/api/pulse/schedule"),
    ("post", "/api/pulses/{id}/cancel"),
    ("post", "/api/pulses/{id}/reschedule"),
    ("post", "/api/pulses/{id}/requeue"),
    ("get", "/api/status"),
    ("get", "/api/stats"),
]


def agent_token() -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", "desk", "--scope", "agent", stdout=out, stderr=err)
    assert "(agent scope)" in err.getvalue()
    return out.getvalue().strip()


def test_an_agent_scoped_token_is_refused_by_every_endpoint_outside_its_scope(client):
    token = agent_token()
    pending = PulseFactory()
    for method, path in FULL_SCOPE_ONLY:
        response = getattr(client, method)(
            path.format(id=pending.pk),
            data={"prompt": "x"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        assert response.status_code == 403, (path, response.content)
        assert "'agent' scope" in response.json()["detail"]
    assert Pulse.objects.count() == 1
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    mine = PulseFactory(source="agent")
    listed = client.get("/api/agent/pulses", **auth)
    assert listed.status_code == 200 and [p["id"] for p in listed.json()["pulses"]] == [mine.pk]
    made = client.post(
        "/api/agent/pulses", {"prompt": "later", "when": "in 1 hour"}, "application/json", **auth
    )
    assert made.status_code == 200 and made.json()["source"] == "agent" and made.json()["parent_id"] is None
    unknown = client.post("/api/agent/pulses", {"prompt": "x", "at_time": "soon"}, "application/json", **auth)
    assert unknown.status_code == 400 and "at_time" in unknown.json()["detail"]
    assert client.post("/api/agent/pulses/424242/cancel", **auth).status_code == 404
    assert client.post("/api/notify", {"message": "hi"}, "application/json", **auth).status_code == 400


def test_a_run_token_works_only_while_its_run_holds_its_claim(client, settings):
    settings.PULSE_API_TOKEN = ""
    PulseFactory(due=True, session_id="7c9e6679-7425-40de-944b-e07fc1f90ae7")
    [pulse] = queue.claim(worker="host:1", limit=1, lease_seconds=60)
    token = tokens.run_token(pulse, worker="host:1")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    body = {"prompt": "follow up", "resume_current_session": True}
    made = client.post("/api/agent/pulses", body, "application/json", **auth)
    assert made.status_code == 200, made.content
    assert (
        made.json()["parent_id"] == pulse.pk
        and made.json()["session_id"] == "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    )
    assert client.get("/api/pulses", **auth).status_code == 403
    # A token for another worker, or another attempt, or a forged one, is nobody's.
    assert tokens.identify(tokens.run_token(pulse, worker="host:2")) is None
    assert tokens.identify(token[:-1] + ("0" if token[-1] != "0" else "1")) is None
    assert tokens.identify("reeve-run.99999999999999999999.1.abc") is None
    queue.record_attempt(pulse, worker="host:1", outcome=finished())
    assert client.get("/api/agent/pulses", **auth).status_code == 401


def finished():
    now = timezone.now()
    return AttemptOutcome(success=True, started_at=now, finished_at=now)
