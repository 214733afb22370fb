"""The one place for what Reeve accepts from outside (pulses/limits.py); black-box tests of each entry
point are in tests/api/test_trust_boundary.py."""

from datetime import UTC, datetime

import pytest

from pulses.limits import InvalidSessionId, check_session_id, local_time, time_in_range, weak_token_reason
from reeve_site.log import RedactSecrets

SESSION = "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.mark.parametrize("value", ["", None, SESSION, SESSION.upper()])
def test_empty_or_a_uuid_is_a_session_id(value):
    assert check_session_id(value) == (value or "")


@pytest.mark.parametrize("value", ["--resume", "-r", "s1", SESSION[:-1], f"{SESSION}x", f"{SESSION}\n", 42])
def test_anything_else_is_refused_saying_what_one_looks_like(value):
    with pytest.raises(InvalidSessionId, match="is a UUID"):
        check_session_id(value)


def test_times_are_bounded_in_utc_and_in_the_time_zone(settings):
    settings.TIME_ZONE = "America/New_York"
    assert time_in_range(datetime(2000, 1, 1, 5, tzinfo=UTC))
    assert not time_in_range(datetime(2000, 1, 1, 0, tzinfo=UTC))  # 1999 in New York
    assert not time_in_range(datetime(1, 1, 1, tzinfo=UTC))
    assert local_time(datetime(1, 1, 1, tzinfo=UTC)) == datetime(1, 1, 1, tzinfo=UTC)  # shown in UTC


def test_placeholder_and_short_tokens_are_weak_and_empty_is_not():
    assert "placeholder" in weak_token_reason("your_secure_random_token_here")
    assert "only 31 characters" in weak_token_reason("x" * 31)
    assert weak_token_reason("") == weak_token_reason("x" * 32) == ""


def test_secrets_are_redacted_from_text(settings):
    settings.PULSE_API_TOKEN = "the-main-api-token-of-this-install"
    bot = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    text = f"GET https://api.telegram.org/bot{bot}/getMe with the-main-api-token-of-this-install; {bot}"
    assert (
        RedactSecrets.redact(text)
        == "GET https://api.telegram.org/bot<redacted>/getMe with <redacted>; <redacted>"
    )
