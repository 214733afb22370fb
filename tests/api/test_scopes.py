"""Scopes that match the promise (issue 30, problems 2 to 5): black-box through the API with each kind
of token. A wake check (a shell command) needs the `wake-checks` scope; the agent changes only the
pulses it made and never uses `critical`; a run token dies with its claim; the Desk's token expires."""

from __future__ import annotations

import io
import secrets
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from pulses import queue
from pulses.agent.executor import AttemptOutcome
from pulses.api import tokens
from pulses.models import ApiToken, Pulse, Status
from pulses.routines import changes
from pulses.routines.models import Routine, RoutineSource
from pulses.tools import desk_config
from tests.support.factories import PulseFactory

pytestmark = pytest.mark.django_db

MAIN_TOKEN = secrets.token_urlsafe(32)
SHELL = "id > pwned.txt; head -1 .env >> pwned.txt; exit 1"


@pytest.fixture
def api(client, settings):
    """`api(method, path, body, token)`: one JSON request; the main token unless another is given."""
    settings.PULSE_API_TOKEN = MAIN_TOKEN

    def request(method: str, path: str, body: dict | None = None, *, token: str = MAIN_TOKEN):
        return getattr(client, method)(
            path, body or {}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        )

    return request


def named_token(name: str, *scope: str) -> str:
    out = io.StringIO()
    call_command("create_api_token", name, *scope, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


def routine(name: str, **fields) -> Routine:
    values = {"schedule": "@daily", "prompt": f"the {name} routine", **fields}
    return changes.create(name=name, **values)


def finished() -> AttemptOutcome:
    now = timezone.now()
    return AttemptOutcome(success=True, started_at=now, finished_at=now)


# Problem 2: a full-scope token was a shell.


def test_neither_the_main_token_nor_a_named_full_token_may_set_a_wake_check(api):
    named = named_token("cron-client")
    for token in (MAIN_TOKEN, named):
        for path in ("/api/pulse/trigger", "/api/pulse/schedule"):
            refused = api("post", path, {"prompt": "harmless", "check_command": SHELL}, token=token)
            assert refused.status_code == 403, refused.content
            assert "'wake-checks' scope" in refused.json()["detail"]
            assert "create_api_token NAME --scope wake-checks" in refused.json()["detail"]
    assert not Pulse.objects.exists()
    # Without a check the same token schedules as before.
    assert api("post", "/api/pulse/trigger", {"prompt": "harmless"}, token=named).status_code == 201


def test_a_wake_checks_token_may_set_a_wake_check_and_reaches_every_endpoint(api):
    token = named_token("ops", "--scope", "wake-checks")
    made = api("post", "/api/pulse/trigger", {"prompt": "p", "check_command": "test -e x"}, token=token)
    assert made.status_code == 201, made.content
    assert Pulse.objects.get().check_command == "test -e x"
    assert api("get", "/api/pulses", token=token).status_code == 200
    assert ApiToken.objects.get(name="ops").scope == "wake-checks"


def test_a_routines_wake_check_needs_the_wake_checks_scope_to_be_set_changed_or_run(api):
    body = {"name": "nightly", "schedule": "@daily", "prompt": "p", "check_command": SHELL}
    refused = api("post", "/api/routines", body)
    assert (
        refused.status_code == 403
        and "check_command needs a token with the 'wake-checks' scope" in (refused.json()["detail"])
    )
    assert not Routine.objects.filter(name="nightly").exists()
    plain = routine("plain")
    edited = api("patch", f"/api/routines/{plain.pk}", {"check_command": SHELL})
    assert edited.status_code == 403
    plain.refresh_from_db()
    assert plain.check_command == ""
    # One the owner made elsewhere (the admin, the command) is theirs to run; "run now" is not a full
    # token's, and a full token may still edit its other fields or remove the check.
    checked = routine("checked", check_command="test -e /tmp/flag")
    ran = api("post", f"/api/routines/{checked.pk}/run")
    assert (
        ran.status_code == 403
        and "running routine 'checked', which has a check_command" in (ran.json()["detail"])
    )
    assert not Pulse.objects.exists()
    assert api("patch", f"/api/routines/{checked.pk}", {"prompt": "new words"}).status_code == 200
    wake = named_token("ops", "--scope", "wake-checks")
    assert api("post", f"/api/routines/{checked.pk}/run", token=wake).status_code == 201
    assert api("patch", f"/api/routines/{checked.pk}", {"check_command": ""}).status_code == 200
    assert api("post", f"/api/routines/{checked.pk}/run").status_code == 201


def test_an_agent_scoped_token_never_reaches_the_wake_checks(api):
    desk = named_token("desk", "--scope", "agent")
    refused = api("post", "/api/pulse/trigger", {"prompt": "p", "check_command": SHELL}, token=desk)
    assert refused.status_code == 403 and "'agent' scope" in refused.json()["detail"]
    extra = api("post", "/api/agent/pulses", {"prompt": "p", "check_command": SHELL}, token=desk)
    assert extra.status_code == 400 and "check_command" in extra.json()["detail"]
    assert not Pulse.objects.exists()


# Problem 3: the agent swallowed the owner's messages.


def test_the_agent_lists_cancels_and_moves_only_its_own_pulses_and_its_routines(api):
    desk = named_token("desk", "--scope", "agent")
    urgent = PulseFactory(source="telegram", prompt="URGENT: please call the doctor", due=True)
    owners = [PulseFactory(source=source) for source in ("api", "manual", "cron", "routine")]
    own = PulseFactory(by_agent=True)
    agent_routine = routine("agent-made", source=RoutineSource.AGENT)
    fired = PulseFactory(source="routine", routine=agent_routine)
    listed = api("get", "/api/agent/pulses", token=desk).json()
    assert {p["id"] for p in listed["pulses"]} == {own.pk, fired.pk} and listed["pending"] == 2
    for pulse in [urgent, *owners]:
        cancel = api("post", f"/api/agent/pulses/{pulse.pk}/cancel", token=desk)
        assert cancel.status_code == 403, cancel.content
        assert f"pulse #{pulse.pk} is the user's, not yours" in cancel.json()["detail"]
        move = api("post", f"/api/agent/pulses/{pulse.pk}/reschedule", {"when": "9000-01-01"}, token=desk)
        assert move.status_code == 403
    assert set(
        Pulse.objects.filter(pk__in=[urgent.pk, *(p.pk for p in owners)]).values_list("status", flat=True)
    ) == {Status.PENDING}
    assert Pulse.objects.get(pk=urgent.pk).scheduled_at < timezone.now()
    assert api("post", f"/api/agent/pulses/{own.pk}/cancel", token=desk).json()["status"] == "cancelled"
    moved = api("post", f"/api/agent/pulses/{fired.pk}/reschedule", {"when": "in 2 days"}, token=desk)
    assert moved.status_code == 200, moved.content


def test_a_run_token_cannot_cancel_a_telegram_message_sent_during_its_run(api):
    PulseFactory(by_agent=True, due=True)
    [running] = queue.claim(worker="host:1", limit=1, lease_seconds=60)
    token = tokens.run_token(running, worker="host:1")
    message = PulseFactory(source="telegram", prompt="URGENT: please call the doctor")
    assert api("get", "/api/agent/pulses", token=token).json()["pulses"] == []
    assert api("post", f"/api/agent/pulses/{message.pk}/cancel", token=token).status_code == 403
    assert Pulse.objects.get(pk=message.pk).status == Status.PENDING


# Problem 4: the agent took the express lane.


def test_the_agent_may_not_use_critical_for_its_pulses_or_its_routines(api):
    desk = named_token("desk", "--scope", "agent")
    refused = api("post", "/api/agent/pulses", {"prompt": "me first", "priority": "critical"}, token=desk)
    assert refused.status_code == 400
    assert "priority 'critical' is kept for the user's own messages" in refused.json()["detail"]
    assert "send priority 'high'" in refused.json()["detail"]
    body = {"name": "hammer", "schedule": "every 30 minutes", "prompt": "p", "priority": "critical"}
    made = api("post", "/api/agent/routines", body, token=desk)
    assert made.status_code == 400 and "priority 'critical'" in made.json()["detail"]
    assert not Pulse.objects.exists() and not Routine.objects.filter(name="hammer").exists()
    high = api("post", "/api/agent/pulses", {"prompt": "soon", "priority": "high"}, token=desk)
    assert high.status_code == 200 and high.json()["priority"] == "high"
    assert api("post", "/api/agent/routines", {**body, "priority": "high"}, token=desk).status_code == 200
    # The owner's own routes keep critical.
    assert api("post", "/api/pulse/trigger", {"prompt": "mine", "priority": "critical"}).status_code == 201


# Problem 5: run tokens replayed.


def test_a_run_token_dies_with_its_claim_whatever_happens_after(api, settings):
    PulseFactory(by_agent=True, due=True)
    [first] = queue.claim(worker="host:1", limit=1, lease_seconds=60)
    first_token = tokens.run_token(first, worker="host:1")
    assert api("get", "/api/agent/pulses", token=first_token).status_code == 200
    # Preempted or drained: released, the run not counted, claimed again by the same worker with the
    # same attempt number.
    assert queue.release(first, worker="host:1", outcome=finished())
    [second] = queue.claim(worker="host:1", limit=1, lease_seconds=60)
    assert second.attempt_count == first.attempt_count == 1
    assert second.claim_nonce and second.claim_nonce != first.claim_nonce
    assert api("get", "/api/agent/pulses", token=first_token).status_code == 401
    second_token = tokens.run_token(second, worker="host:1")
    assert api("get", "/api/agent/pulses", token=second_token).status_code == 200
    # Finished, then requeued ("run now"): attempt 1 again, on the same worker; neither old token works.
    queue.record_attempt(second, worker="host:1", outcome=finished())
    queue.requeue(second.pk)
    [third] = queue.claim(worker="host:1", limit=1, lease_seconds=60)
    assert third.attempt_count == 1
    for old in (first_token, second_token):
        assert api("get", "/api/agent/pulses", token=old).status_code == 401
    assert api("get", "/api/agent/pulses", token=tokens.run_token(third, worker="host:1")).status_code == 200


def test_a_run_token_is_accepted_only_in_its_canonical_form(api):
    PulseFactory(by_agent=True, due=True, attempt_count=1)
    [pulse] = queue.claim(worker="host:1", limit=1, lease_seconds=60)
    assert pulse.attempt_count == 2
    token = tokens.run_token(pulse, worker="host:1")
    assert api("get", "/api/agent/pulses", token=token).status_code == 200
    prefix, pulse_id, attempt, mac = token.split(".")
    variants = [
        f"{prefix}.{pulse_id}.+{attempt}.{mac}",
        f"{prefix}.{pulse_id}.0{attempt}.{mac}",
        f"{prefix}.+{pulse_id}.{attempt}.{mac}",
        f"{prefix}.0{pulse_id}.{attempt}.{mac}",
        f"{prefix}. {pulse_id}.{attempt}.{mac}",
        f"{prefix}.{pulse_id}.{attempt} .{mac}",
        f"{prefix}.{pulse_id}.{attempt}.{mac.upper()}",
        f"{prefix}.{pulse_id}.{attempt}_0.{mac}",
    ]
    for variant in variants:
        assert tokens.identify(variant) is None, variant
        assert api("get", "/api/agent/pulses", token=variant).status_code == 401, variant


def test_the_desks_token_expires_and_mcp_config_and_start_renew_it(api, settings, tmp_path):
    settings.DESK_TOKEN_HOURS = 24
    desk = tmp_path / "desk"
    desk.mkdir()
    desk_config.write_desk_config(desk)
    held = desk_config._held_token(desk_config.read_config(desk / desk_config.MCP_JSON))
    row = ApiToken.objects.get(name=desk_config.token_name(desk))
    assert row.scope == "agent" and row.expires_at is not None
    assert timedelta(hours=23) < row.expires_at - timezone.now() <= timedelta(hours=24)
    assert api("get", "/api/agent/pulses", token=held).status_code == 200
    # Fresh: kept as it is.
    assert desk_config.renew_desk_token(desk) is False
    # Past half its life: renewed, and the old one revoked.
    ApiToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() + timedelta(hours=2))
    assert desk_config.renew_desk_token(desk) is True
    renewed = desk_config._held_token(desk_config.read_config(desk / desk_config.MCP_JSON))
    assert renewed != held and api("get", "/api/agent/pulses", token=held).status_code == 401
    assert api("get", "/api/agent/pulses", token=renewed).status_code == 200
    # Expired: refused, and mcp_config --write makes a new one.
    ApiToken.objects.filter(name=desk_config.token_name(desk)).update(expires_at=timezone.now())
    assert api("get", "/api/agent/pulses", token=renewed).status_code == 401
    desk_config.write_desk_config(desk)
    fresh = desk_config._held_token(desk_config.read_config(desk / desk_config.MCP_JSON))
    assert api("get", "/api/agent/pulses", token=fresh).status_code == 200


# Problem 11, the two smaller points of this part.


def test_a_routine_named_like_an_id_is_refused_and_an_id_always_reaches_its_own_routine(api):
    desk = named_token("desk", "--scope", "agent")
    owners = routine("the-owners")
    body = {"name": str(owners.pk), "schedule": "@daily", "prompt": "impostor"}
    made = api("post", "/api/agent/routines", body, token=desk)
    assert made.status_code == 400 and "reads as a routine's id" in made.json()["detail"]
    assert api("post", "/api/routines", body).status_code == 400
    # One stored before the rule (or by hand) cannot take an id's place.
    Routine.objects.create(name=str(owners.pk), schedule="@daily", prompt="impostor", source="agent")
    reached = api("get", f"/api/routines/{owners.pk}")
    assert reached.status_code == 200 and reached.json()["name"] == "the-owners"


def test_an_agent_token_stops_only_the_agents_own_running_pulses_and_is_named_agent(api):
    PulseFactory(due=True, source="telegram", prompt="the user's message")
    PulseFactory(due=True, by_agent=True, prompt="the agent's follow-up")
    claimed = {p.source: p for p in queue.claim(worker="host:1", limit=2, lease_seconds=60)}
    users, agents = claimed["telegram"], claimed["agent"]
    token = tokens.run_token(agents, worker="host:1")
    refused = api("post", f"/api/pulses/{users.pk}/stop", {}, token=token)
    assert refused.status_code == 403 and "is the user's" in refused.json()["detail"]
    assert Pulse.objects.get(pk=users.pk).stop_requested_by == ""
    assert api("post", f"/api/pulses/{agents.pk}/stop", {}, token=token).status_code == 202
    assert Pulse.objects.get(pk=agents.pk).stop_requested_by == "agent"
    # A named full-scope token is named in the attempt.
    full = named_token("ci")
    assert api("post", f"/api/pulses/{users.pk}/stop", {}, token=full).status_code == 202
    assert Pulse.objects.get(pk=users.pk).stop_requested_by == "api token ci"
