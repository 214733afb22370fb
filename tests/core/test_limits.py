"""The one place for what Reeve accepts from outside (pulses/limits.py); black-box tests of each entry
point are in tests/api/test_trust_boundary.py."""

import re
import secrets
import subprocess
from datetime import UTC, datetime

import pytest
from django.utils import timezone

from pulses import limits, queue
from pulses.agent import wake_check
from pulses.agent.command import build_prompt
from pulses.limits import (
    MAX_ARG_STRLEN,
    MAX_NOTE_CHARS,
    MAX_NOTES,
    MAX_PROMPT_BYTES,
    MAX_PROMPT_CHARS,
    MAX_RETRIES,
    MAX_TAG_CHARS,
    MAX_TAGS,
    InvalidPulse,
    InvalidSessionId,
    agent_prompt_bytes,
    check_pulse,
    check_session_id,
    local_time,
    text_list,
    time_in_range,
    weak_token_reason,
)
from pulses.routines import changes
from pulses.routines.models import Routine, RoutineInvalid
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
    assert weak_token_reason("") == weak_token_reason("Vq3x9LrT0bNk2WcYp7HsZe4MdFa8GjUo") == ""


@pytest.mark.parametrize(
    "token", ["a" * 34, "ab" * 20, "0123456789" * 4, "abcdefghijklmnopqrstuvwxyz0123456789", "password" * 5]
)
def test_a_long_token_that_is_not_random_is_weak(token):
    assert "not random" in weak_token_reason(token)


def test_random_tokens_of_32_characters_or_more_are_never_called_weak():
    assert not any(weak_token_reason(secrets.token_hex(16)) for _ in range(2000))
    assert not any(weak_token_reason(secrets.token_urlsafe(32)) for _ in range(2000))


def test_secrets_are_redacted_from_text(settings):
    settings.PULSE_API_TOKEN = "the-main-api-token-of-this-install"
    bot = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
    text = f"GET https://api.telegram.org/bot{bot}/getMe with the-main-api-token-of-this-install; {bot}"
    assert (
        RedactSecrets.redact(text)
        == "GET https://api.telegram.org/bot<redacted>/getMe with <redacted>; <redacted>"
    )


def _pulse(**changes):
    values = {
        "prompt": "look at the calendar",
        "priority": "normal",
        "scheduled_at": timezone.now(),
        "source": "test",
        "session_id": "",
        "sticky_notes": [],
        "tags": [],
        "max_retries": 3,
        "idempotency_key": None,
    }
    return {**values, **changes}


def test_a_pulse_within_every_limit_passes():
    check_pulse(**_pulse(sticky_notes=["n"] * MAX_NOTES, tags=["t" * MAX_TAG_CHARS], max_retries=MAX_RETRIES))


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"prompt": " "}, "'prompt' must be a non-empty string"),
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, f"at most {MAX_PROMPT_CHARS} are accepted"),
        ({"priority": "urgent"}, "unknown priority 'urgent'; use one of critical, high"),
        ({"scheduled_at": datetime(1999, 12, 31, 12, tzinfo=UTC)}, "out of range: years 2000 to 9000"),
        ({"source": "s" * 101}, "'source' is 101 characters; at most 100"),
        ({"session_id": "--resume=evil"}, "'session_id': '--resume=evil' is not a session id"),
        ({"sticky_notes": "one"}, "'sticky_notes' must be a list of strings"),
        ({"tags": ["t"] * (MAX_TAGS + 1)}, f"at most {MAX_TAGS} are accepted"),
        ({"tags": ["ok", " "]}, "every item of 'tags' must be a non-empty string"),
        ({"max_retries": -1}, "'max_retries' must be a whole number from 0 to 100"),
        ({"max_retries": True}, "'max_retries' must be a whole number"),
        ({"idempotency_key": "k" * 201}, "'idempotency_key' is 201 characters; at most 200"),
    ],
)
def test_each_limit_of_a_pulse_is_named_when_broken(changes, words):
    with pytest.raises(InvalidPulse, match=re.escape(words)):
        check_pulse(**_pulse(**changes))


def test_text_lists_are_stripped():
    assert text_list([" a ", "b"], name="tags", max_items=2, max_chars=5) == ["a", "b"]
    assert text_list(None, name="tags", max_items=2, max_chars=5) == []


def test_the_prompt_as_the_agent_gets_it_is_measured_in_bytes_exactly():
    for prompt, notes in [("hi", ()), ("€uro", ["a", "𝄞 clef"]), ("x", ["only one"])]:
        assert agent_prompt_bytes(prompt, notes) == len(build_prompt(prompt, notes).encode())


def test_a_prompt_exec_would_refuse_is_refused_in_bytes_before_it_is_stored():
    """50,000 "€" are 150,000 bytes: accepted, then every run failed with E2BIG at exec."""
    with pytest.raises(OSError, match="Argument list too long"):  # what exec said to the old limit
        subprocess.run(["/bin/true", "€" * MAX_PROMPT_CHARS], check=False)
    with pytest.raises(InvalidPulse, match=re.escape(f"150000 bytes in UTF-8; at most {MAX_PROMPT_BYTES}")):
        check_pulse(**_pulse(prompt="€" * MAX_PROMPT_CHARS))
    with pytest.raises(InvalidPulse, match="'prompt' with its sticky notes is .* bytes"):
        check_pulse(**_pulse(prompt="€" * 30_000, sticky_notes=["€" * MAX_NOTE_CHARS] * 3))


def test_the_longest_prompt_accepted_with_the_longest_wake_check_output_still_execs():
    notes = ["𝄞" * 250] * 10
    prompt = "€" * ((MAX_PROMPT_BYTES - agent_prompt_bytes("", notes)) // 3)
    check_pulse(**_pulse(prompt=prompt, sticky_notes=notes))
    argument = wake_check.prompt_with_output(build_prompt(prompt, notes), "𝄞" * wake_check.OUTPUT_CHARS)
    assert len(argument.encode()) < MAX_ARG_STRLEN
    assert subprocess.run(["/bin/true", argument], check=False).returncode == 0


@pytest.mark.django_db
def test_a_revised_prompt_keeps_the_same_limits():
    pulse = queue.schedule(prompt="short", sticky_notes=["€" * MAX_NOTE_CHARS] * 10).pulse
    with pytest.raises(InvalidPulse, match="with its sticky notes is"):
        queue.revise_prompt(pulse.pk, "€" * 25_000)
    with pytest.raises(InvalidPulse, match="at most 50000"):
        queue.revise_prompt(pulse.pk, "x" * (MAX_PROMPT_CHARS + 1))
    pulse.refresh_from_db()
    assert pulse.prompt == "short"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, f"longer than {MAX_PROMPT_CHARS} characters"),
        ({"prompt": "€" * 40_000}, "120000 bytes in UTF-8"),
        ({"sticky_notes": ["n"] * (MAX_NOTES + 1)}, f"at most {MAX_NOTES} are accepted"),
    ],
)
def test_a_routines_prompt_keeps_the_limits_of_every_pulse(fields, words):
    """A routine's prompt could be 100,000 characters (and any number of bytes): its fires bypass
    queue.schedule, so every pulse it made was one no other way could make."""
    with pytest.raises(RoutineInvalid, match=re.escape(words)):
        changes.create(**{"name": "big", "prompt": "p", "schedule": "@daily", **fields})
    assert not Routine.objects.filter(name="big").exists()


@pytest.mark.parametrize(
    "model",
    ["sonnet", "opus", "claude-sonnet-4-5", "claude-opus-4-1@20250805", "us.anthropic/claude:3.5", "a" * 100],
)
def test_a_model_name_of_any_vendors_form_is_accepted(model):
    assert limits.check_model(model) == model


@pytest.mark.parametrize(
    "model",
    ["--dangerously-skip-permissions", "-x", "-", ".hidden", "sonnet\n", "son net", "opus;rm", "a" * 101, 4],
)
def test_a_model_name_shaped_like_an_option_or_holding_other_characters_is_refused(model):
    with pytest.raises(limits.InvalidPulse, match="is not a model name"):
        limits.check_model(model)


@pytest.mark.parametrize(
    ("check", "good", "bad"),
    [
        (limits.check_timeout_seconds, [None, 10, 86_400], [9, 86_401, 0, True, 60.0, "60"]),
        (limits.check_max_turns, [None, 1, 1000], [0, 1001, False, "5"]),
    ],
)
def test_a_runs_timeout_and_turn_limit_are_whole_numbers_within_their_bounds(check, good, bad):
    for value in good:
        assert check(value) == value
    for value in bad:
        with pytest.raises(limits.InvalidPulse, match="must be a whole number"):
            check(value)
