"""The agent's environment is an allowlist: what it needs reaches it, Reeve's secrets never do."""

import pytest

from pulses.agent.env import REEVE_SECRETS, agent_environment, refused_passthrough

# What a program and the agent CLI need: the whole of what reaches the agent by default.
AGENT_NEEDS = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/reeve",
    "USER": "reeve",
    "LANG": "C.UTF-8",
    "LC_TIME": "de_DE.UTF-8",
    "TERM": "xterm",
    "TZ": "Europe/Berlin",
    "CLI_API_TOKEN": "hapi-credential",
    "HAPI_HOME": "/home/reeve/.hapi",
    "HAPI_API_URL": "http://127.0.0.1:3006",
    "ANTHROPIC_API_KEY": "sk-ant-test",
    "CLAUDE_CONFIG_DIR": "/home/reeve/.claude",
}
WORKER_ENV = {
    **AGENT_NEEDS,
    "PULSE_API_TOKEN": "api-secret",
    "TELEGRAM_BOT_TOKEN": "123:bot-secret",
    "SECRET_KEY": "django-secret",
    "DATABASE_URL": "postgres://reeve:password@db/reeve",
    "PULSE_DB_PATH": "/var/lib/reeve/pulse_queue.db",
    "AWS_SECRET_ACCESS_KEY": "not-for-the-agent",
    "MY_TOOL_KEY": "mine",
    "MY_TOOL_URL": "https://example.invalid",
}


def test_the_agent_gets_what_a_program_and_its_cli_need_and_nothing_else():
    env = agent_environment(WORKER_ENV, extra={"REEVE_PULSE_ID": "12"})
    assert env == {
        **AGENT_NEEDS,
        "REEVE_PULSE_ID": "12",
    }


def test_agent_env_passthrough_adds_names_and_prefixes_but_never_reeves_secrets():
    rules = ["MY_TOOL_*", "AWS_SECRET_ACCESS_KEY", "PULSE_API_TOKEN", "TELEGRAM_*", "*"]
    env = agent_environment(WORKER_ENV, passthrough=rules)
    assert env["MY_TOOL_KEY"] == "mine" and env["MY_TOOL_URL"] == "https://example.invalid"
    assert env["AWS_SECRET_ACCESS_KEY"] == "not-for-the-agent"
    assert not REEVE_SECRETS & set(env)
    assert refused_passthrough(rules) == ["PULSE_API_TOKEN", "TELEGRAM_*", "*"]


@pytest.mark.parametrize("value", ["MY_TOOL_KEY, MY_TOOL_URL", " MY_TOOL_* ,"])
def test_passthrough_may_be_written_as_one_comma_separated_setting(value):
    env = agent_environment(WORKER_ENV, passthrough=value)
    assert {"MY_TOOL_KEY", "MY_TOOL_URL"} <= set(env)


def test_passthrough_never_adds_a_database_url_or_password_whatever_its_name():
    worker_env = {
        **WORKER_ENV,
        "PULSE_DB_URL": "postgresql://reeve:password@db/reeve",  # the original Reeve's name for it
        "PULSE_MAX_CONCURRENT": "2",
        "MY_TOOL_STORE": "postgres://reeve:password@db/reeve",
        "MY_TOOL_MIRROR": "https://user:password@mirror.invalid/repo",
        "MY_TOOL_DATABASE": "/var/lib/tool.db",
        "PGPASSWORD": "password",
    }
    env = agent_environment(worker_env, passthrough=["PULSE_*", "MY_TOOL_*", "PGPASSWORD"])
    assert env["PULSE_MAX_CONCURRENT"] == "2" and env["MY_TOOL_KEY"] == "mine"
    assert not {"PULSE_DB_URL", "MY_TOOL_STORE", "MY_TOOL_MIRROR", "MY_TOOL_DATABASE", "PGPASSWORD"} & set(
        env
    )
    assert not [value for value in env.values() if "password" in value]
    assert "PGPASSWORD" in refused_passthrough(["PGPASSWORD"]) and "PULSE_*" in refused_passthrough(
        ["PULSE_*"]
    )


def test_the_agent_gets_its_cli_credential_from_dotenv_which_settings_keep_out_of_os_environ(
    settings, fake_agent, monkeypatch
):
    from pulses.agent.executor import AgentRequest, Executor

    settings.DOTENV = {"CLI_API_TOKEN": "hapi-from-dotenv", "SECRET_KEY": "dotenv-secret", "TZ": "UTC"}
    monkeypatch.setenv("TZ", "Europe/Berlin")  # the real environment wins over .env, as in settings
    monkeypatch.delenv("CLI_API_TOKEN", raising=False)
    env = Executor(command="claude", desk=fake_agent, timeout=1).environment(AgentRequest(prompt="hi"))
    assert env["CLI_API_TOKEN"] == "hapi-from-dotenv" and env["TZ"] == "Europe/Berlin"
    assert "SECRET_KEY" not in env
