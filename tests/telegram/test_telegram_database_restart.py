"""Every loop outlives its database: PostgreSQL restarted in immediate mode (every connection cut, the
LISTEN connection of the answer sender's change waiter too) while the listener idles, and the next
message's answer still arrives. The listener, the worker and PostgreSQL are real processes: a
throwaway cluster of the test's own (tests/support/pg_cluster.sh), since the test restarts it.

(tests/worker/test_database_outage.py covers the worker and the web process through an outage of one
database; this is the listener's part, through a restart of the whole server.)"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.fake_telegram import FakeTelegram
from tests.support.reeve_processes import ReeveHome
from tests.telegram.test_telegram_answers import wait_for_answer
from tests.telegram.test_telegram_listener import CHAT, listen, stop

pytestmark = pytest.mark.slow

CLUSTER = Path(__file__).resolve().parents[1] / "support" / "pg_cluster.sh"
ANSWER = "Done: Telegram message from Ada Lovelace: "


@pytest.fixture
def cluster():
    """A PostgreSQL server of this test's own: (its folder, its URL). Not under pytest's tmp_path:
    as root the server runs as `postgres`, which must be able to pass through the folders above."""
    parent = Path(tempfile.mkdtemp(prefix="reeve-pg-restart-"))
    folder = parent / "cluster"
    started = subprocess.run(["bash", str(CLUSTER), "start", str(folder)], capture_output=True, text=True)
    if started.returncode == 3:
        shutil.rmtree(parent, ignore_errors=True)
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl)")
    assert started.returncode == 0, started.stderr
    yield folder, started.stdout.strip()
    subprocess.run(["bash", str(CLUSTER), "stop", str(folder)], check=False)
    shutil.rmtree(parent, ignore_errors=True)


def restart(folder: Path, *, seconds_down: float) -> None:
    subprocess.run(["bash", str(CLUSTER), "restart", str(folder), str(seconds_down)], check=True)


@pytest.fixture
def home(tmp_path, cluster, fake_telegram: FakeTelegram):
    folder, url = cluster
    home = ReeveHome(tmp_path / "home", database_url=url)
    home.extra_env.update(fake_telegram.env(CHAT))
    home.migrate()
    yield home
    home.close_connection()
    home.stop_children()  # the database goes with the cluster


def test_after_a_postgresql_restart_the_listener_sends_the_next_messages_answer(home, cluster, fake_telegram):
    folder, _ = cluster
    worker = home.start("run_pulse_worker", LOG_LEVEL="INFO")
    listener = listen(home, LOG_LEVEL="INFO")
    fake_telegram.send_text(CHAT, "before the restart")
    wait_for_answer(fake_telegram, ANSWER + "before the restart", timeout=90)

    home.close_connection()
    restart(folder, seconds_down=3)  # the listener idles in its change waiter meanwhile

    fake_telegram.send_text(CHAT, "after the restart")
    wait_for_answer(fake_telegram, ANSWER + "after the restart", timeout=120)
    assert listener.poll() is None, home.output(listener)
    assert worker.poll() is None, home.output(worker)
    # The second answer's record; the first one's may be lost with the restart: the throwaway cluster
    # runs with synchronous_commit=off (tests/support/pg_cluster.sh), so an immediate stop may drop
    # the last commits, and that delivery then waits out its hold again.
    home.wait_for(
        lambda: home.query("SELECT state FROM pulse_deliveries ORDER BY pulse_id")[-1] == ("sent",),
        what="the second answer's record",
    )
    log = home.output(listener)
    assert "telegram_outbox_database_error" in log
    assert "telegram_outbox_database_available_again" in log
    assert stop(listener) == 0
    stop(worker)
