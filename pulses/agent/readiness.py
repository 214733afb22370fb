"""One rule for a finished run that did not succeed: did the pulse fail, or can the agent not run now?

The pulse failed (`classify` returns None): its error is its own, and it is retried as always.
The agent cannot run now (`classify` returns an `AgentUnavailable`): Claude Code is not logged in,
Hapi has no credential, the model's API refused the key (401/403), the account's usage window is
spent (429, "You've hit your limit · resets 3pm (Europe/Berlin)", a `rate_limit_event` rejected), or
the CLI was stopped while stuck in its own retries. Then every pulse would fail the same way, so the
run spends no attempt and the queue holds (`pulses.agent_hold`), with what is wrong, the command that
fixes it (in Reeve's words, as the user Reeve runs as) and, for a usage limit, when it resets.

No ORM here: the executor calls `classify` on its own outcome, `agent_probe` shows the hint.
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pulses.agent.stream import AgentSignals

NOT_LOGGED_IN = "not_logged_in"
NO_HAPI_CREDENTIAL = "no_hapi_credential"
INVALID_KEY = "invalid_key"
USAGE_LIMIT = "usage_limit"
STUCK_RETRYING = "stuck_retrying"
REASONS = (NOT_LOGGED_IN, NO_HAPI_CREDENTIAL, INVALID_KEY, USAGE_LIMIT, STUCK_RETRYING)

AUTH_STATUSES = (401, 403)
RATE_LIMITED = 429
DETAIL_CHARS = 500
# A reset further ahead than this is not believed (a weekly window resets within 7 days).
MAX_RESET_AHEAD = timedelta(days=8)

_NOT_LOGGED_IN = re.compile(r"not logged in|oauth token has expired|please run /login", re.IGNORECASE)
_INVALID_KEY = re.compile(r"invalid api key|invalid x-api-key|authentication_error", re.IGNORECASE)
_HAPI_TOKEN = re.compile(r"CLI_API_TOKEN is required")
_USAGE = re.compile(r"hit your (?:\w+ )?limit|usage limit reached|rate_limit_error", re.IGNORECASE)
_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
# "resets 3pm (Europe/Berlin)", "resets 3:30pm", "resets Jul 18, 12pm (UTC)", "resets 15:00 (UTC)"
_RESETS = re.compile(
    r"resets\s+(?:(?P<month>[A-Za-z]{3})[a-z]*\.?\s+(?P<day>\d{1,2}),?\s+(?:at\s+)?)?"
    r"(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<ampm>[ap]\.?m\.?)?"
    r"(?:\s*\((?P<zone>[A-Za-z0-9_+\-/]{1,64})\))?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class AgentUnavailable:
    """Why no pulse can run now, in Reeve's words: what is wrong, the command that fixes it ("" when
    only time does), when it resumes by itself (a usage limit's reset, None when unknown) and the
    agent's own words."""

    reason: str
    problem: str
    fix: str
    resets_at: datetime | None = None
    detail: str = ""

    def hint(self) -> str:
        """The problem and its fix as one paragraph (agent_probe prints it after the agent's words)."""
        return f"{self.problem}. {self.fix}" if self.fix else f"{self.problem}."


def service_user() -> str:
    """The user Reeve runs as: the agent's login belongs to this user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "reeve"


def classify(
    *,
    signals: AgentSignals,
    result_text: str = "",
    error: str = "",
    stderr: str = "",
    stopped_retrying: bool = False,
    now: datetime,
    user: str | None = None,
) -> AgentUnavailable | None:
    """The one rule, for a run that did not succeed: None when the pulse failed on its own (retry it
    as always), else why the agent cannot run now."""
    user = user or service_user()
    words = " ".join(part for part in (signals.error_text, result_text, error) if part)
    everything = f"{words}\n{stderr}"
    # The person reads the detail as "The agent said: …": a run Reeve stopped in the CLI's retries has
    # Reeve's own words as its error, so the agent's are those of its last api_retry event.
    said = retry_words(signals) if stopped_retrying else error
    detail = _detail(signals.error_text or result_text or said or stderr)
    if _HAPI_TOKEN.search(everything):
        return _no_hapi_credential(user, _detail(_first_line(stderr, _HAPI_TOKEN) or words))
    if signals.api_error == "no_credential" or _NOT_LOGGED_IN.search(words):
        return _not_logged_in(user, detail)
    usage = _usage_limit(signals, words, now=now, detail=detail)
    if usage:
        return usage
    auth_status = signals.api_error_status in AUTH_STATUSES or signals.retry_status in AUTH_STATUSES
    if auth_status or signals.error == "authentication_failed" or _INVALID_KEY.search(words):
        return _invalid_key(user, detail)
    if stopped_retrying:
        return _stuck(user, signals, detail)
    return None


def retries(count: int) -> str:
    return f"{count} {'retry' if count == 1 else 'retries'}"


def retry_words(signals: AgentSignals) -> str:
    """What the CLI said in its last `api_retry` event ("" without one): "API retry 1: authentication_failed
    (HTTP 401)"."""
    if not signals.api_retries:
        return ""
    status = f" (HTTP {signals.retry_status})" if signals.retry_status else ""
    return f"API retry {signals.api_retries}: {signals.retry_error or 'error'}{status}"


def warning(signals: AgentSignals) -> str:
    """The usage warning a run carried (`rate_limit_event` allowed_warning), "" without one."""
    limit = signals.rate_limit
    if limit is None or limit.status != "allowed_warning":
        return ""
    window = f" ({limit.kind})" if limit.kind else ""
    when = f"; it resets {limit.resets_at:%Y-%m-%d %H:%M} UTC" if limit.resets_at else ""
    return f"the agent's usage is close to its limit{window}{when}"


def _usage_limit(signals: AgentSignals, words: str, *, now: datetime, detail: str) -> AgentUnavailable | None:
    limit = signals.rate_limit
    rejected = limit is not None and limit.status == "rejected"
    limited = (
        rejected
        or signals.api_error_status == RATE_LIMITED
        or signals.retry_status == RATE_LIMITED
        or signals.error == "rate_limit"
        or bool(_USAGE.search(words))
    )
    if not limited:
        return None
    resets_at = _believable(limit.resets_at if rejected and limit else None, now) or _believable(
        reset_from_text(words, now=now), now
    )
    window = f" ({limit.kind})" if rejected and limit and limit.kind else ""
    return AgentUnavailable(
        reason=USAGE_LIMIT,
        problem=f"the agent's usage limit is reached{window}: its model refuses new requests until it resets",
        fix="Nothing to run: Reeve holds the queue and resumes by itself"
        + (
            " when it resets."
            if resets_at
            else ", checking again with backoff (the reset time was not given)."
        )
        + " A bigger plan, or an API key (ANTHROPIC_API_KEY in .env), lifts it sooner.",
        resets_at=resets_at,
        detail=detail,
    )


def _not_logged_in(user: str, detail: str) -> AgentUnavailable:
    return AgentUnavailable(
        reason=NOT_LOGGED_IN,
        problem="Claude Code is not logged in, so the agent cannot reach its model",
        fix=(
            f"Run `sudo -u {user} claude` on the server, type /login and follow it; or set "
            "ANTHROPIC_API_KEY in Reeve's .env and restart Reeve."
        ),
        detail=detail,
    )


def _no_hapi_credential(user: str, detail: str) -> AgentUnavailable:
    return AgentUnavailable(
        reason=NO_HAPI_CREDENTIAL,
        problem="Hapi has no credential (CLI_API_TOKEN is required), so it starts no agent",
        fix=(
            f"Run `sudo -u {user} hapi auth login` on the server; or set CLI_API_TOKEN (your Hapi hub's "
            "token) in Reeve's .env and restart Reeve."
        ),
        detail=detail,
    )


def _invalid_key(user: str, detail: str) -> AgentUnavailable:
    return AgentUnavailable(
        reason=INVALID_KEY,
        problem="the model's API refused the agent's credential (401: invalid key or expired login)",
        fix=(
            "Set a valid ANTHROPIC_API_KEY in Reeve's .env and restart Reeve; or, with a Claude "
            f"subscription, remove the key and run `sudo -u {user} claude`, then /login."
        ),
        detail=detail,
    )


def _stuck(user: str, signals: AgentSignals, detail: str) -> AgentUnavailable:
    status = f", last status {signals.retry_status}" if signals.retry_status else ""
    error = f" ({signals.retry_error})" if signals.retry_error else ""
    return AgentUnavailable(
        reason=STUCK_RETRYING,
        problem=(
            f"the agent's CLI could not reach its model and kept retrying ({retries(signals.api_retries)}"
            f"{status}{error}); Reeve stopped the run"
        ),
        fix=(
            "Reeve checks again with backoff. To see what the agent prints: "
            f'`sudo -u {user} ./reeve agent_probe "Say OK"` in Reeve\'s folder.'
        ),
        detail=detail,
    )


def reset_from_text(text: str, *, now: datetime) -> datetime | None:
    """The reset time in "You've hit your limit · resets 3pm (Europe/Berlin)" or "… resets Jul 18,
    12pm (UTC)": the next such time after `now`, in the named zone (UTC when none or unknown)."""
    match = _RESETS.search(text or "")
    if not match:
        return None
    hour, minute = int(match["hour"]), int(match["minute"] or 0)
    ampm = (match["ampm"] or "").replace(".", "").lower()
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    if hour > 23 or minute > 59:
        return None
    zone = _zone(match["zone"])
    local_now = now.astimezone(zone)
    if match["month"]:
        month = _MONTHS.get(match["month"][:3].lower())
        if month is None:
            return None
        for year in (local_now.year, local_now.year + 1):
            try:
                when = datetime(year, month, int(match["day"]), hour, minute, tzinfo=zone)
            except ValueError:
                return None
            if when > now - timedelta(days=1):
                return when
        return None
    when = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return when if when > now else when + timedelta(days=1)


def _zone(name: str | None) -> ZoneInfo:
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


def _believable(when: datetime | None, now: datetime) -> datetime | None:
    return when if when is not None and now < when <= now + MAX_RESET_AHEAD else None


def _first_line(text: str, pattern: re.Pattern) -> str:
    return next((line.strip() for line in text.splitlines() if pattern.search(line)), "")


def _detail(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"
