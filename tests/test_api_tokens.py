"""Named, revocable API client tokens (`manage.py create_api_token`), stored only as a hash."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.management import CommandError, call_command

from pulses.api import tokens
from pulses.models import ApiToken

pytestmark = pytest.mark.django_db


def create(name: str) -> str:
    out = io.StringIO()
    call_command("create_api_token", name, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


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
