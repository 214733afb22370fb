"""Each landed release's pulses migrations are squashed into one (release 22: 0004-0005, release 23:
0006-0009). An installation records the names it applied; one that applied a release under the old
names must upgrade with nothing to apply, and one a release behind must get the next release whole."""

import pytest

from tests.support.reeve_processes import ReeveHome

pytestmark = pytest.mark.slow

RELEASE_22 = "0004_token_scopes_squashed_0005_history_indexes_and_search"
RELEASE_23 = "0006_routines_squashed_0009_routine_deliver"
REPLACED = {
    RELEASE_22: ["0004_token_scopes", "0005_history_indexes_and_search"],
    RELEASE_23: ["0006_routines", "0007_worker_slots", "0008_answer_deliveries", "0009_routine_deliver"],
}


def _record_old_names(home: ReeveHome, *squashes: str) -> None:
    """Rewrite django_migrations as the release that shipped the unsquashed files left it."""
    for squash in squashes:
        home.query("DELETE FROM django_migrations WHERE app = 'pulses' AND name = ?", (squash,))
        for name in REPLACED[squash]:
            home.query(
                "INSERT INTO django_migrations (app, name, applied) VALUES ('pulses', ?, CURRENT_TIMESTAMP)",
                (name,),
            )


def _applied(home: ReeveHome) -> set[str]:
    return {f"{app}.{name}" for app, name in home.query("SELECT app, name FROM django_migrations")}


def _search_index_in_place(home: ReeveHome) -> bool:
    if home.database_url:
        return bool(home.query("SELECT 1 FROM pg_indexes WHERE indexname = 'pulses_prompt_search_idx'"))
    triggers = home.query("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'pulses'")
    return {name for (name,) in triggers} == {
        "pulse_search_insert",
        "pulse_search_delete",
        "pulse_search_update",
    }


def _assert_models_match_the_migrations(home: ReeveHome) -> None:
    proc = home.manage("makemigrations", "--check", "--dry-run", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No changes detected" in proc.stdout


def test_a_fresh_database_applies_each_release_as_one_migration(reeve_home):
    applied = _applied(reeve_home)
    assert {f"pulses.{RELEASE_22}", f"pulses.{RELEASE_23}"} <= applied
    assert _search_index_in_place(reeve_home)
    assert reeve_home.query("SELECT enabled FROM pulse_routines WHERE name = 'hourly-prompt'") in (
        [(0,)],
        [(False,)],
    )
    _assert_models_match_the_migrations(reeve_home)


def test_an_installation_of_release_23_under_the_old_names_has_nothing_to_apply(reeve_home):
    _record_old_names(reeve_home, RELEASE_22, RELEASE_23)
    assert f"pulses.{RELEASE_23}" not in _applied(reeve_home)

    assert reeve_home.manage("migrate", "--check", check=False).returncode == 0
    proc = reeve_home.manage("migrate", "--noinput")
    assert "No migrations to apply." in proc.stdout
    # migrate records each squash beside the names it replaces, so the next squash can build on it.
    assert {f"pulses.{RELEASE_22}", f"pulses.{RELEASE_23}"} <= _applied(reeve_home)
    assert reeve_home.query("SELECT count(*) FROM pulse_routines WHERE name = 'hourly-prompt'") == [(1,)]
    _assert_models_match_the_migrations(reeve_home)


def test_an_installation_of_release_22_under_the_old_names_gets_release_23_whole(tmp_path):
    home = ReeveHome(tmp_path)
    try:
        home.manage("migrate", "pulses", RELEASE_22, "-v0")
        home.manage("migrate", "telegram_bridge", "0002_message_key_not_update_id", "-v0")
        _record_old_names(home, RELEASE_22)

        proc = home.manage("migrate", "--noinput")
        applying = [
            line.split()[1].removesuffix("...")
            for line in proc.stdout.splitlines()
            if line.strip().startswith("Applying")
        ]
        assert [name for name in applying if name.startswith(("pulses.", "telegram_bridge."))] == [
            f"pulses.{RELEASE_23}",
            "pulses.0010_pulse_attempt_count",  # the first migration after release 23
            "pulses.0011_budget_caps_reached",
            "pulses.0012_agent_hold",
            "pulses.0013_delivery_parts_started",
            "pulses.0014_claim_nonce",
            "pulses.0015_health_watchdog",
            "pulses.0016_stop_requests",  # issue 33: stop a running pulse
            "pulses.0017_run_tails",  # issue 33: the live tail of a run
            "pulses.0018_queue_pause",  # issue 33: pause the queue
            "pulses.0019_agent_options",  # issue 33: per-pulse and per-routine agent options
            "telegram_bridge.0003_busy_notices",
            "telegram_bridge.0004_web_notifications",  # issue 30: /api/notify queues
            "telegram_bridge.0005_update_failures",  # issue 31: no poison update
        ]
        # Release 23 remakes the pulses table on SQLite and puts the search triggers back.
        assert _search_index_in_place(home)
        assert home.query("SELECT schedule FROM pulse_routines WHERE name = 'hourly-prompt'") == [
            ("@hourly",)
        ]
        _assert_models_match_the_migrations(home)
    finally:
        home.stop_all()
