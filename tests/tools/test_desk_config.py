"""The Desk's `.mcp.json` and `.claude/settings.json` for Reeve's MCP server: printed, merged, checked."""

import json
import re
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from pulses.api import tokens
from pulses.db import is_postgres
from pulses.tools import desk_config
from pulses.tools.desk_check import desk_mcp_problems

MANAGE = str(Path(django_settings.BASE_DIR) / "manage.py")
pytestmark = pytest.mark.django_db  # --write makes the Desk's agent-scoped token


@pytest.fixture
def desk(settings, tmp_path):
    path = tmp_path / "desk"
    path.mkdir()
    settings.REEVE_DESK_PATH = path
    return path


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_the_server_entry_runs_this_checkouts_manage_py_with_its_python():
    entry = desk_config.server_entry()
    assert entry["type"] == "stdio"
    assert entry["args"][-2:] == [MANAGE, "mcp_server"]
    assert Path(entry["command"]).is_file() or entry["args"][:2] == ["run", "--frozen"]


def test_mcp_config_prints_both_files_without_writing(desk):
    out = StringIO()
    call_command("mcp_config", stdout=out)
    text = out.getvalue()
    assert f"# {desk / '.mcp.json'}" in text and f"# {desk / '.claude' / 'settings.json'}" in text
    assert '"mcp__reeve__schedule_pulse"' in text and '"enabledMcpjsonServers"' in text
    assert MANAGE in text
    assert not (desk / ".mcp.json").exists()


def test_write_merges_into_existing_files_and_keeps_what_is_there(desk):
    (desk / ".mcp.json").write_text(json.dumps({"mcpServers": {"other": {"command": "other-server"}}}))
    (desk / ".claude").mkdir()
    (desk / ".claude" / "settings.json").write_text(
        json.dumps(
            {
                "model": "opus",
                "enabledMcpjsonServers": ["other"],
                "disabledMcpjsonServers": ["reeve"],
                "permissions": {
                    "allow": ["Bash(ls:*)", "mcp__reeve__schedule_pulse"],
                    "deny": ["Read(./.env)"],
                },
            }
        )
    )
    out = StringIO()
    call_command("mcp_config", "--write", stdout=out)
    assert "Updated" in out.getvalue()
    servers = read(desk / ".mcp.json")["mcpServers"]
    assert servers["other"] == {"command": "other-server"}
    token = servers["reeve"]["env"]["REEVE_AGENT_TOKEN"]
    assert servers["reeve"] == desk_config.server_entry(token)
    assert servers["reeve"]["env"] == {
        "REEVE_API_URL": django_settings.REEVE_API_URL,
        "REEVE_AGENT_TOKEN": token,
    }
    assert tokens.identify(token).scope == "agent" and tokens.identify(token).name == f"desk-mcp {desk.name}"
    assert (desk / ".mcp.json").stat().st_mode & 0o777 == 0o600
    merged = read(desk / ".claude" / "settings.json")
    assert merged["model"] == "opus"
    assert merged["enabledMcpjsonServers"] == ["other", "reeve"]
    assert merged["disabledMcpjsonServers"] == []
    assert merged["permissions"]["deny"] == ["Read(./.env)", *desk_config.deny_rules()]
    allow = merged["permissions"]["allow"]
    assert allow[0] == "Bash(ls:*)" and allow.count("mcp__reeve__schedule_pulse") == 1
    assert set(desk_config.permissions()) <= set(allow)
    assert desk_mcp_problems() == []

    again = StringIO()
    call_command("mcp_config", "--write", stdout=again)
    assert again.getvalue().count("Up to date") == 3  # the token still works, so it is kept

    tokens.revoke(f"desk-mcp {desk.name}")
    assert any("REEVE_AGENT_TOKEN is unknown, revoked or expired" in p for p in desk_mcp_problems())
    call_command("mcp_config", "--write", stdout=StringIO())
    assert read(desk / ".mcp.json")["mcpServers"]["reeve"]["env"]["REEVE_AGENT_TOKEN"] != token
    assert desk_mcp_problems() == []


def test_the_desks_settings_deny_claudes_file_tools_reeves_env_home_and_database(desk, settings, tmp_path):
    settings.REEVE_HOME = tmp_path / "reeve-home"
    call_command("mcp_config", "--write", stdout=StringIO())
    deny = read(desk / ".claude" / "settings.json")["permissions"]["deny"]
    env_file = Path(django_settings.BASE_DIR).resolve() / ".env"
    database_folder = Path(django_settings.DATABASES["default"]["NAME"]).parent.resolve()
    assert {f"Read(/{env_file})", f"Edit(/{env_file})", f"Read(/{tmp_path.resolve()}/reeve-home/**)"} <= set(
        deny
    )
    if not is_postgres():
        assert f"Read(/{database_folder}/**)" in deny or Path(desk).resolve().is_relative_to(database_folder)
    assert not any(str(Path(desk).resolve()) in rule for rule in deny)  # the agent's own folder stays open


def test_the_desk_names_no_database_and_a_full_scope_token_there_is_a_problem(desk):
    call_command("mcp_config", "--write", stdout=StringIO())
    database = str(django_settings.DATABASES["default"]["NAME"])
    for name in (".mcp.json", ".claude/settings.json"):
        text = (desk / name).read_text()
        assert database not in text and "DATABASE_URL" not in text and "PULSE_DB_PATH" not in text
    config = read(desk / ".mcp.json")
    config["mcpServers"]["reeve"]["env"]["REEVE_AGENT_TOKEN"] = tokens.create("too-much")[1]
    config["mcpServers"]["reeve"]["env"]["DATABASE_URL"] = "postgres://reeve:pw@db/reeve"
    (desk / ".mcp.json").write_text(json.dumps(config))
    problems = desk_mcp_problems()
    assert any("holds DATABASE_URL" in p for p in problems)
    assert any("has the 'full' scope" in p for p in problems)


def test_write_refuses_a_file_it_cannot_read_and_changes_nothing(desk):
    (desk / ".claude").mkdir()
    (desk / ".claude" / "settings.json").write_text("{not json")
    with pytest.raises(CommandError, match="settings.json is not valid JSON"):
        call_command("mcp_config", "--write", stdout=StringIO())
    assert not (desk / ".mcp.json").exists()
    assert (desk / ".claude" / "settings.json").read_text() == "{not json"


def test_write_into_a_missing_desk_names_the_variable(settings, tmp_path):
    settings.REEVE_DESK_PATH = tmp_path / "nowhere"
    with pytest.raises(CommandError, match="REEVE_DESK_PATH"):
        call_command("mcp_config", "--write", stdout=StringIO())


def test_desk_mcp_problems_says_what_is_missing_and_how_to_fix_it(desk):
    problems = desk_mcp_problems()
    assert len(problems) == 3
    assert "has no 'reeve' MCP server" in problems[0]
    assert "does not enable the 'reeve' MCP server" in problems[1]
    assert "does not allow mcp__reeve__schedule_pulse" in problems[2]
    assert all("mcp_config --write" in p for p in problems)


def test_desk_mcp_problems_accepts_server_wide_rules_and_local_settings(desk):
    token = tokens.create("desk", scope="agent")[1]
    (desk / ".mcp.json").write_text(json.dumps({"mcpServers": {"reeve": desk_config.server_entry(token)}}))
    (desk / ".claude").mkdir()
    (desk / ".claude" / "settings.local.json").write_text(
        json.dumps({"enableAllProjectMcpServers": True, "permissions": {"allow": ["mcp__reeve"]}})
    )
    assert desk_mcp_problems() == []


def test_desk_mcp_problems_flags_another_checkout_a_denied_tool_and_a_missing_desk(desk, tmp_path):
    call_command("mcp_config", "--write", stdout=StringIO())
    config = read(desk / ".mcp.json")
    config["mcpServers"]["reeve"]["args"] = ["/elsewhere/manage.py", "mcp_server"]
    config["mcpServers"]["reeve"]["command"] = "/elsewhere/.venv/bin/python"
    (desk / ".mcp.json").write_text(json.dumps(config))
    settings_file = desk / ".claude" / "settings.json"
    settings_data = read(settings_file)
    settings_data["permissions"]["deny"] = ["mcp__reeve__send_notification"]
    settings_file.write_text(json.dumps(settings_data))
    problems = desk_mcp_problems()
    assert any("/elsewhere/.venv/bin/python is not executable" in p for p in problems)
    assert any(f"does not run {MANAGE} mcp_server" in p for p in problems)
    assert any("deny mcp__reeve__send_notification" in p for p in problems)
    assert desk_mcp_problems(tmp_path / "missing") == [
        f"Desk directory {tmp_path / 'missing'} does not exist: create it or set REEVE_DESK_PATH"
    ]


def test_desk_option_writes_into_another_directory(desk, tmp_path):
    other = tmp_path / "other-desk"
    other.mkdir()
    call_command("mcp_config", "--write", "--desk", str(other), stdout=StringIO())
    assert desk_mcp_problems(other) == []
    assert not (desk / ".mcp.json").exists()


def test_write_keeps_reeves_instructions_in_claude_md_with_the_nothing_to_say_token(desk):
    (desk / "CLAUDE.md").write_text("# My Desk\n\nBe brief.\n")
    call_command("mcp_config", "--write", stdout=StringIO())
    call_command("mcp_config", "--write", stdout=StringIO())  # twice: one block, not two

    text = (desk / "CLAUDE.md").read_text()
    assert text.startswith("# My Desk\n\nBe brief.\n")
    assert text.count("<!-- reeve:begin") == 1 and text.count("<!-- reeve:end -->") == 1
    assert "answer with\n  exactly `NO_REPLY` and nothing else" in text
    assert "send_notification" in text and "sends it back to the chat" in text


OTHER_SERVERS = """{
  "mcpServers": {
    "calendar": {"command": "cal-server", "args": ["--read-only"]},
    "reeve": {}
  },
  "note": "kept"
}
"""


def desk_at(settings, desk: Path, url: str) -> bytes:
    """The Desk written for the API at `url`, beside another server; the file's bytes."""
    settings.REEVE_API_URL = url
    (desk / ".mcp.json").write_text(OTHER_SERVERS)
    desk_config.write_desk_config(desk)
    return (desk / ".mcp.json").read_bytes()


def test_a_port_change_rewrites_reeves_entry_alone_and_keeps_the_other_servers(desk, settings):
    before = read_bytes = desk_at(settings, desk, "http://127.0.0.1:8765")
    token = json.loads(read_bytes)["mcpServers"]["reeve"]["env"]["REEVE_AGENT_TOKEN"]
    settings.REEVE_API_URL = "http://127.0.0.1:18610"  # PULSE_API_PORT=18610 ./reeve start

    done = desk_config.keep_desk_true(desk)

    assert done == [
        ".mcp.json: Reeve's entry rewritten (API address http://127.0.0.1:8765 -> http://127.0.0.1:18610)"
    ]
    after = read(desk / ".mcp.json")
    assert after["mcpServers"]["reeve"] == desk_config.server_entry(token)  # the token still works: kept
    assert after["mcpServers"]["reeve"]["env"]["REEVE_API_URL"] == "http://127.0.0.1:18610"
    old = json.loads(before)
    assert after["mcpServers"]["calendar"] == old["mcpServers"]["calendar"] and after["note"] == "kept"
    assert list(after["mcpServers"]) == ["calendar", "reeve"]
    assert (desk / ".mcp.json").stat().st_mode & 0o777 == 0o600
    assert desk_mcp_problems() == []


def test_a_desk_true_to_the_configuration_is_left_byte_identical(desk, settings):
    before = desk_at(settings, desk, "http://127.0.0.1:8765")
    written = (desk / ".mcp.json").stat().st_mtime_ns
    claude_md = (desk / "CLAUDE.md").read_bytes()

    assert desk_config.keep_desk_true(desk) == []

    assert (desk / ".mcp.json").read_bytes() == before and (desk / ".mcp.json").stat().st_mtime_ns == written
    assert (desk / "CLAUDE.md").read_bytes() == claude_md


def test_a_desk_without_reeves_entry_is_left_to_doctor_and_mcp_config(desk, settings):
    (desk / ".mcp.json").write_text('{"mcpServers": {"calendar": {"command": "cal-server"}}}')
    assert desk_config.keep_desk_true(desk) == []
    assert (desk / ".mcp.json").read_text() == '{"mcpServers": {"calendar": {"command": "cal-server"}}}'


def test_doctor_rewrites_a_drifted_entry_and_says_what_it_rewrote(desk, settings):
    from pulses.ops.doctor_agent import check_agent_tools

    settings.HAPI_COMMAND = "demo"
    desk_at(settings, desk, "http://127.0.0.1:8765")
    settings.REEVE_API_URL = "http://127.0.0.1:18610"

    check = check_agent_tools()

    assert check.level == "ok"
    assert (
        "rewrote .mcp.json: Reeve's entry rewritten (API address http://127.0.0.1:8765 -> " in check.message
    )
    assert read(desk / ".mcp.json")["mcpServers"]["reeve"]["env"]["REEVE_API_URL"] == "http://127.0.0.1:18610"
    assert "rewrote" not in check_agent_tools().message  # true now: nothing to say


def test_doctor_keeps_the_desk_on_the_address_of_the_reeve_that_runs(desk, settings, tmp_path):
    """`PULSE_API_PORT=18610 ./reeve start`, then a plain `./reeve doctor` (whose .env says 8765): the
    Desk must keep pointing at the Reeve that serves."""
    import os

    from pulses.ops import instance_lock
    from pulses.ops.doctor_agent import refresh_desk

    settings.REEVE_LOCK_FILE = tmp_path / "reeve.lock"
    desk_at(settings, desk, "http://127.0.0.1:18610")
    settings.REEVE_API_URL = "http://127.0.0.1:8765"
    assert instance_lock.running_api_url() is None
    fd = instance_lock.hold(exclusive=True, role="./reeve start")
    try:
        instance_lock.record(fd, {"pid": os.getpid(), "api_url": "http://127.0.0.1:18610"})
        assert instance_lock.running_api_url() == "http://127.0.0.1:18610"
        assert refresh_desk() == ""
    finally:
        os.close(fd)
    assert instance_lock.running_api_url() is None
    assert "API address http://127.0.0.1:18610 -> http://127.0.0.1:8765" in refresh_desk()


def test_claude_md_lists_every_tool_the_mcp_server_offers_and_an_old_block_is_brought_up_to_date(desk):
    from pulses.tools import desk_instructions
    from pulses.tools.mcp_server import build_server

    offered = [tool.name for tool in build_server()._tool_manager.list_tools()]
    block = " ".join(desk_instructions.block().split())
    assert len(offered) == 9 and all(f" {name}," in block or f" {name}." in block for name in offered)

    # The block as Reeve wrote it before, naming 5 of the tools.
    five = "schedule_pulse,\nlist_upcoming_pulses, cancel_pulse, reschedule_pulse and send_notification.\n"
    old_block = re.sub(r"these tools:\n.*?\.\n", five, desk_instructions.block(), count=1, flags=re.S)
    assert "create_routine" not in old_block
    (desk / "CLAUDE.md").write_text(f"# My Desk\n\n{old_block}\n\nMine, after.\n")
    assert desk_config.keep_desk_true(desk) == ["CLAUDE.md: Reeve's block updated (its tool list)"]
    text = (desk / "CLAUDE.md").read_text()
    assert text == f"# My Desk\n\n{desk_instructions.block()}\n\nMine, after.\n"
