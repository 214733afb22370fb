"""What `./reeve start` says it serves, and the Desk it makes when there is none."""

from __future__ import annotations

import signal
from datetime import timedelta

import pytest
from django.utils import timezone

from pulses.ops import banner

pytestmark = pytest.mark.django_db


@pytest.fixture
def served(settings, tmp_path):
    settings.PULSE_API_HOST, settings.PULSE_API_PORT = "127.0.0.1", 8799
    settings.REEVE_DESK_PATH = tmp_path / "served-desk"
    settings.REEVE_DESK_PATH.mkdir()
    return settings


def test_the_banner_names_every_url_the_database_the_agent_and_the_desk(
    served, fake_agent, django_user_model
):
    served.REEVE_DESK_PATH = fake_agent / "desk"
    django_user_model.objects.create_superuser("ada", password="a-long-password-1")  # noqa: S106

    text = "\n".join(banner.lines(web=True))

    for url in ("/api/", "/api/docs", "/dashboard/", "/admin/"):
        assert f"http://127.0.0.1:8799{url}" in text
    assert "database   SQLite" in text or "database   PostgreSQL" in text
    assert "agent" in text and "(found: " in text
    assert f"Desk       {served.REEVE_DESK_PATH}" in text
    assert "createsuperuser" not in text


def test_the_banner_says_what_is_missing_and_how_to_try_reeve_without_an_agent(served):
    served.HAPI_COMMAND = "/nowhere/hapi"

    text = "\n".join(banner.lines(web=True))

    assert "/nowhere/hapi: NOT FOUND" in text and "HAPI_COMMAND=demo" in text
    assert "login      none yet for the dashboard and admin: ./reeve createsuperuser" in text
    served.HAPI_COMMAND = "demo"
    assert "agent      demo (Reeve's demo agent" in "\n".join(banner.lines(web=False))


def test_a_missing_desk_is_created_with_reeves_agent_configuration_and_an_existing_one_left_alone(
    settings, tmp_path
):
    settings.REEVE_DESK_PATH = tmp_path / "my_reeve"

    assert banner.prepare_desk().startswith("created")
    assert (tmp_path / "my_reeve" / ".mcp.json").is_file()
    assert "NO_REPLY" in (tmp_path / "my_reeve" / "CLAUDE.md").read_text()
    assert (tmp_path / "my_reeve").stat().st_mode & 0o777 == 0o700
    assert banner.prepare_desk() == ""


def test_each_start_renews_the_desks_token_once_past_half_its_life(settings, tmp_path):
    from pulses.models import ApiToken

    settings.REEVE_DESK_PATH = tmp_path / "my_reeve"
    banner.prepare_desk()
    mcp_json = tmp_path / "my_reeve" / ".mcp.json"
    first = mcp_json.read_text()
    assert banner.prepare_desk() == "" and mcp_json.read_text() == first
    ApiToken.objects.update(expires_at=timezone.now() + timedelta(hours=1))
    assert banner.prepare_desk() == ".mcp.json: Reeve's entry rewritten (REEVE_AGENT_TOKEN renewed)"
    assert mcp_json.read_text() != first and mcp_json.stat().st_mode & 0o777 == 0o600
    assert ApiToken.objects.filter(revoked_at__isnull=True).count() == 1


def test_a_start_on_another_port_points_the_desk_there_and_the_banner_says_so(settings, tmp_path):
    settings.REEVE_DESK_PATH = tmp_path / "my_reeve"
    settings.REEVE_API_URL = "http://127.0.0.1:8765"
    banner.prepare_desk()
    settings.REEVE_API_URL = "http://127.0.0.1:18610"  # PULSE_API_PORT=18610 ./reeve start

    note = banner.prepare_desk()

    assert note == (
        ".mcp.json: Reeve's entry rewritten (API address http://127.0.0.1:8765 -> http://127.0.0.1:18610)"
    )
    assert f"  Desk       {settings.REEVE_DESK_PATH}: {note}" in banner.lines(web=False, desk_note=note)
    assert banner.prepare_desk() == ""


@pytest.mark.slow
def test_reeve_start_prints_the_banner_and_makes_the_desk(reeve_home):
    desk = reeve_home.path / "fresh-desk"
    reeve_home.extra_env.update(REEVE_DESK_PATH=str(desk), HAPI_COMMAND="demo")
    proc = reeve_home.start("run_reeve", "--no-web")
    reeve_home.wait_for(lambda: "Desk" in reeve_home.output(proc), timeout=60, what="the banner")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    output = reeve_home.output(proc)
    assert "Reeve is starting" in output and "agent      demo" in output
    assert f"Desk       {desk}: created" in output
    assert (desk / "CLAUDE.md").is_file()


def test_the_banner_says_no_pulse_runs_while_the_agent_cannot_run(served, fake_agent):
    from datetime import timedelta

    from django.utils import timezone

    from pulses import agent_hold
    from pulses.agent.readiness import AgentUnavailable

    served.REEVE_DESK_PATH = fake_agent / "desk"
    resets = timezone.now() + timedelta(hours=2)
    agent_hold.hold(
        AgentUnavailable(reason="usage_limit", problem="the usage limit is reached", fix="", resets_at=resets)
    )

    text = "\n".join(banner.lines(web=False))

    assert "HELD       no pulse runs: the usage limit is reached." in text
    assert "Reeve resumes by itself at" in text and f"{timezone.localtime(resets):%H:%M}" in text
