import gc
import sqlite3
from contextlib import closing

import pytest

from tests.support.reeve_processes import FAKE_AGENT_COMMAND, ReeveHome, on_postgres


def _database_use(item) -> str:
    """How a test uses the test database, as pytest-django orders them: "db" tests run first, then
    "transactional" ones (which leave the tables flushed, without the rows migrations made), then
    those without it."""
    marker = item.get_closest_marker("django_db")
    fixtures = set(getattr(item, "fixturenames", ()))
    if (marker and (marker.kwargs.get("transaction") or marker.kwargs.get("reset_sequences"))) or {
        "transactional_db",
        "live_server",
    } & fixtures:
        return "transactional"
    return "db" if marker or "db" in fixtures else "none"


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    """Tests marked `database_independent` touch no database of the suite's (no Django test database,
    no Reeve home: a fresh clone of their own, a parser, a CLI): they run in the SQLite half only and
    the PostgreSQL half deselects them, since running them twice would prove nothing more. Once every
    plugin has ordered the tests, the heaviest groups go first (_heaviest_first)."""
    # pytest-xdist (tests/run.sh, --dist loadgroup --no-loadscope-reorder) keeps each group in one
    # process: one group per file and kind of database use, so a file's fixtures are made once, and
    # no process runs a "db" test after a transactional one has flushed the migrations' rows (two
    # files of one name share a group: harmless).
    for item in items:
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(f"{item.path.stem}.{_database_use(item)}"))
    if on_postgres():
        once = [item for item in items if item.get_closest_marker("database_independent")]
        if once:
            config.hook.pytest_deselected(items=once)
            items[:] = [item for item in items if not item.get_closest_marker("database_independent")]
    result = yield
    items[:] = _heaviest_first(items)
    return result


def _heaviest_first(items: list) -> list:
    """The tests group by group, the groups of process-level tests (marked `slow`) first, the most
    of them first, then the rest by size; "db" groups still before transactional ones. A test that
    costs as much as a dozen others says so: `@pytest.mark.slow(weight=12)`.

    pytest-django runs the tests without a database last, and they are the process-level ones: nine
    tenths of the suite's time. pytest-xdist hands each process the next group as it runs short, so
    a file of slow tests that came last ran alone while the other processes had finished (a tail of
    minutes). Started first, the big groups share the processes, and the small ones fill the gaps."""
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(item.get_closest_marker("xdist_group").args[0], []).append(item)
    # A process may run a group without a database use anywhere; "db" groups must all come before
    # transactional ones, which flush the tables.
    kind_rank = {"none": 0, "db": 1, "transactional": 2}

    def weight(name: str) -> tuple:
        tests = groups[name]
        marks = [mark for item in tests if (mark := item.get_closest_marker("slow"))]
        slow = sum(mark.kwargs.get("weight", 1) for mark in marks)
        return (kind_rank[_database_use(tests[0])], -slow, -len(tests), name)

    return [item for name in sorted(groups, key=weight) for item in groups[name]]


@pytest.hookimpl(wrapper=True)
def pytest_collection(session):
    """As in manage.py: the test modules and all they import stay until the end, so the collector
    waits while they load, then sets them aside (gc.freeze) with Django's own objects: the tests'
    collections no longer walk them again and again (about a tenth of an in-process test's CPU)."""
    gc.disable()
    try:
        return (yield)
    finally:
        gc.freeze()
        gc.enable()


@pytest.fixture(autouse=True)
def _database_independent_guard(request, monkeypatch):
    """A test marked `database_independent` that makes a Reeve home fails (pytest-django already
    refuses it the test database), so the mark cannot hide a PostgreSQL test from the suite."""
    if request.node.get_closest_marker("database_independent"):
        uses_db = request.node.get_closest_marker("django_db") or {"db", "transactional_db"} & set(
            request.fixturenames
        )
        assert not uses_db, "a test marked database_independent uses the test database: remove the mark"

        def refuse(self):
            raise AssertionError("a test marked database_independent made a ReeveHome: remove the mark")

        monkeypatch.setattr(ReeveHome, "__post_init__", refuse)


@pytest.fixture(scope="session")
def migrated_home(tmp_path_factory):
    """One Reeve installation migrated by `manage.py migrate`, once a session: each `reeve_home` is a
    copy of it (its database file, or a PostgreSQL database made from it as a template)."""
    home = ReeveHome(tmp_path_factory.mktemp("migrated"))
    home.migrate()
    if not home.database_url:
        # Everything in the one file (nothing left in a WAL), so copying that file copies it all.
        with closing(sqlite3.connect(home.db_path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    yield home
    home.stop_all()


@pytest.fixture
def reeve_home(tmp_path, migrated_home):
    """A migrated Reeve installation in a temp dir, for tests that start real processes."""
    home = migrated_home.copy_to(tmp_path)
    yield home
    home.stop_all()


@pytest.fixture
def live_reeve(reeve_home):
    """Reeve's web process and worker for `reeve_home` (tests/api/test_api_live.py): the test starts
    it, and it is stopped afterwards."""
    from tests.api.test_api_live import LiveReeve

    live = LiveReeve(reeve_home)
    yield live
    live.stop()


@pytest.fixture
def fake_agent(settings, tmp_path):
    """Point the executor at the fake agent CLI, with a Desk and an agent log in tmp_path."""
    desk = tmp_path / "desk"
    desk.mkdir()
    settings.HAPI_COMMAND = FAKE_AGENT_COMMAND
    settings.REEVE_DESK_PATH = desk
    return tmp_path


@pytest.fixture
def agent_log(fake_agent, monkeypatch):
    """The file the fake agent logs each start to (read it with agent_starts)."""
    log = fake_agent / "agent.log"
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    return log


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
