"""Logs: stderr and LOG_FILE, stable event words, journald priorities, rotation without a restart."""

import signal

import pytest

pytestmark = pytest.mark.slow


def test_lines_name_their_event_and_carry_journald_priorities_under_systemd(reeve_home):
    plain = reeve_home.manage("trigger_pulse", "hello")
    assert "pulse_scheduled id=1" in plain.stderr and "<6>" not in plain.stderr
    journal = reeve_home.extra_env["JOURNAL_STREAM"] = "8:12345"
    assert journal
    under_systemd = reeve_home.manage("trigger_pulse", "again")
    assert any(
        line.startswith("<6>") and "pulse_scheduled id=2" in line
        for line in under_systemd.stderr.splitlines()
    )
    log_file = (reeve_home.path / "logs" / "daemon.log").read_text()
    assert "pulse_scheduled id=1" in log_file and "pulse_scheduled id=2" in log_file
    assert "<6>" not in log_file


def test_log_level_filters_lines(reeve_home):
    reeve_home.extra_env["LOG_LEVEL"] = "WARNING"
    assert "pulse_scheduled" not in reeve_home.manage("trigger_pulse", "quiet").stderr


def test_a_running_worker_keeps_logging_after_logrotate_moves_the_file(reeve_home):
    log = reeve_home.path / "logs" / "daemon.log"
    worker = reeve_home.start("run_pulse_worker")
    reeve_home.manage("trigger_pulse", "first mode=noop")
    reeve_home.wait_for(lambda: "pulse_completed id=1" in log.read_text(), what="the first pulse")
    log.rename(log.with_suffix(".log.1"))  # what logrotate does (without copytruncate)
    reeve_home.manage("trigger_pulse", "second mode=noop")
    reeve_home.wait_for(
        lambda: log.exists() and "pulse_completed id=2" in log.read_text(),
        what="the worker to reopen daemon.log",
    )
    assert "pulse_completed id=2" not in log.with_suffix(".log.1").read_text()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
