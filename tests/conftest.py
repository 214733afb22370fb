import pytest

from tests.reeve_processes import FAKE_AGENT_COMMAND, ReeveHome


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
