import pytest

from tests.support.reeve_processes import FAKE_AGENT_COMMAND, ReeveHome


@pytest.fixture
def reeve_home(tmp_path):
    """A migrated Reeve installation in a temp dir, for tests that start real processes."""
    home = ReeveHome(tmp_path)
    home.migrate()
    yield home
    home.stop_all()


@pytest.fixture
def fake_agent(settings, tmp_path):
    """Point the executor at the fake agent CLI, with a Desk and an agent log in tmp_path."""
    desk = tmp_path / "desk"
    desk.mkdir()
    settings.HAPI_COMMAND = FAKE_AGENT_COMMAND
    settings.REEVE_DESK_PATH = desk
    return tmp_path


@pytest.fixture
def fake_telegram():
    """A fake Telegram Bot API server on 127.0.0.1 (tests/support/fake_telegram.py), stopped afterwards."""
    from tests.support.fake_telegram import FakeTelegram

    fake = FakeTelegram().start()
    yield fake
    fake.stop()


@pytest.fixture
def telegram_settings(settings, fake_telegram):
    """Point this process's Telegram settings at the fake server, with chat 42 allowed."""
    settings.TELEGRAM_API_BASE_URL = fake_telegram.base_url
    settings.TELEGRAM_BOT_TOKEN = fake_telegram.token
    settings.TELEGRAM_CHAT_ID = ["42"]
    return fake_telegram
