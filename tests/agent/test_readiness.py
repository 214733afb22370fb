"""The one rule for a failed run (pulses.agent.readiness), on the exact events the real Claude Code
2.1.337 and Hapi 0.30.7 printed (tests/agent/data: captured with no login, against a stand-in API
answering 429 usage-limit and 401, and Hapi without CLI_API_TOKEN)."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pulses.agent import readiness
from pulses.agent.stream import StreamReader

pytestmark = pytest.mark.database_independent

CAPTURED = json.loads((Path(__file__).parent / "data" / "claude_code_2.1.337_cannot_run.json").read_text())
NOW = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)


def read(events):
    reader = StreamReader()
    for event in events:
        reader.feed(json.dumps(event))
    return reader.summary


def classify(events=(), *, stderr="", stopped_retrying=False, now=NOW):
    summary = read(events)
    return readiness.classify(
        signals=summary.signals,
        result_text=summary.result_text,
        error="; ".join(summary.errors) or summary.result_text,
        stderr=stderr,
        stopped_retrying=stopped_retrying,
        now=now,
        user="reeve",
    )


def test_claude_code_not_logged_in_is_the_agent_unable_to_run_with_the_login_command():
    found = classify(CAPTURED["not_logged_in"])
    assert found.reason == readiness.NOT_LOGGED_IN
    assert "`sudo -u reeve claude`" in found.fix and "/login" in found.fix
    assert "ANTHROPIC_API_KEY" in found.fix
    assert found.detail.startswith("Not logged in · Please run /login")
    assert found.resets_at is None


def test_the_stream_records_the_not_logged_in_signals():
    signals = read(CAPTURED["not_logged_in"]).signals
    assert signals.api_error == "no_credential" and signals.error == "authentication_failed"
    assert signals.error_text == "Not logged in · Please run /login"
    assert signals.api_error_status is None  # the result's "api_error_status": null is no status


def test_hapi_without_its_credential_names_hapi_auth_login():
    found = classify(stderr=CAPTURED["hapi_no_credential_stderr"])
    assert found.reason == readiness.NO_HAPI_CREDENTIAL
    assert "`sudo -u reeve hapi auth login`" in found.fix and "CLI_API_TOKEN" in found.fix
    assert found.detail.startswith("error: CLI_API_TOKEN is required")


def test_a_429_usage_limit_from_the_real_cli_is_a_usage_limit_without_a_reset_time():
    found = classify(CAPTURED["usage_limit_429"])
    assert found.reason == readiness.USAGE_LIMIT
    assert found.resets_at is None  # the CLI passes none on: re-checked with backoff
    signals = read(CAPTURED["usage_limit_429"]).signals
    assert (signals.api_error_status, signals.error) == (429, "rate_limit")


def test_a_401_retry_loop_is_an_invalid_key_and_is_counted():
    events = CAPTURED["retry_401"]
    signals = read(events).signals
    assert (signals.api_retries, signals.retry_status, signals.retry_error) == (
        len(events),
        401,
        "authentication_failed",
    )
    found = classify(events[:1], stopped_retrying=True)
    assert found.reason == readiness.INVALID_KEY
    assert "ANTHROPIC_API_KEY" in found.fix and "sudo -u reeve claude" in found.fix


def test_a_run_stopped_in_its_retries_gives_the_clis_words_as_the_detail_not_reeves():
    summary = read(CAPTURED["retry_401"][:1])
    found = readiness.classify(
        signals=summary.signals,
        error="stopped by Reeve: the agent's CLI was retrying its model's API (1 retry, last status 401; …)",
        stopped_retrying=True,
        now=NOW,
        user="reeve",
    )
    assert found.reason == readiness.INVALID_KEY
    assert found.detail == "API retry 1: authentication_failed (HTTP 401)"


def test_a_run_stopped_in_the_clis_own_retries_of_an_overloaded_api_is_stuck_retrying():
    retries = [
        {"type": "system", "subtype": "api_retry", "attempt": n, "error_status": 529, "error": "overloaded"}
        for n in (1, 2, 3)
    ]
    found = classify(retries, stopped_retrying=True)
    assert found.reason == readiness.STUCK_RETRYING
    assert "3 retries, last status 529" in found.problem and "agent_probe" in found.fix
    assert classify(retries) is None  # the CLI gave up by itself: the pulse's own failure


def test_a_rejected_rate_limit_event_gives_the_reset_time():
    resets = int((NOW + timedelta(hours=2)).timestamp())
    event = {
        "type": "rate_limit_event",
        "rate_limit_info": {"status": "rejected", "resetsAt": resets, "rateLimitType": "five_hour"},
    }
    found = classify([event, *CAPTURED["usage_limit_429"]])
    assert found.reason == readiness.USAGE_LIMIT
    assert found.resets_at == datetime.fromtimestamp(resets, tz=UTC)
    assert "(five_hour)" in found.problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "You've hit your limit · resets 3pm (Europe/Berlin)",
            datetime(2026, 12, 8, 15, 0, tzinfo=ZoneInfo("Europe/Berlin")),
        ),
        (
            "You've hit your limit · resets 10am (Europe/Berlin)",
            datetime(2026, 12, 9, 10, 0, tzinfo=ZoneInfo("Europe/Berlin")),
        ),
        (
            "You've hit your weekly limit · resets Jul 18, 12pm (UTC)",
            datetime(2027, 7, 18, 12, 0, tzinfo=UTC),
        ),
        ("You've hit your limit · resets 3:30pm", datetime(2026, 12, 8, 15, 30, tzinfo=UTC)),
    ],
)
def test_the_reset_time_is_read_from_the_result_text_in_its_zone(text, expected):
    assert readiness.reset_from_text(text, now=NOW) == expected


def test_real_anthropics_limit_result_is_held_until_its_reset_within_a_week():
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": True,
        "api_error_status": 429,
        "result": "You've hit your limit · resets 3pm (Europe/Berlin)",
    }
    found = classify([result])
    assert found.reason == readiness.USAGE_LIMIT
    assert found.resets_at == datetime(2026, 12, 8, 14, 0, tzinfo=UTC)
    weekly = {**result, "result": "You've hit your weekly limit · resets Jul 18, 12pm (UTC)"}
    assert classify([weekly]).resets_at is None  # seven months ahead is not believed: backoff


def test_an_ordinary_failure_is_the_pulses_own():
    result = {
        "type": "result",
        "subtype": "error_during_execution",
        "is_error": True,
        "result": "I could not",
    }
    assert classify([result], stderr="fatal: the agent crashed") is None


@pytest.mark.parametrize(
    "reset",
    ["soon", True, 1e300, float("nan"), -5, 10**30, None, [1]],
)
def test_out_of_range_or_odd_values_in_a_rate_limit_event_are_not_believed(reset):
    event = {"type": "rate_limit_event", "rate_limit_info": {"status": "rejected", "resetsAt": reset}}
    summary = read([event, {"type": "system", "subtype": "api_retry", "error_status": "401"}])
    assert summary.signals.rate_limit.resets_at is None
    assert summary.signals.retry_status is None and summary.signals.api_retries == 1
    odd = read([{"type": "assistant", "message": "x", "error": 5, "api_error_status": 99999}]).signals
    assert (odd.error, odd.api_error_status) == ("", None)


def test_an_allowed_warning_is_a_warning_not_a_hold():
    resets = int((NOW + timedelta(hours=1)).timestamp())
    event = {
        "type": "rate_limit_event",
        "rate_limit_info": {"status": "allowed_warning", "resetsAt": resets, "rateLimitType": "seven_day"},
    }
    success = {"type": "result", "subtype": "success", "is_error": False, "result": "done"}
    summary = read([event, success])
    assert "close to its limit (seven_day)" in readiness.warning(summary.signals)
    assert readiness.warning(read([success]).signals) == ""
