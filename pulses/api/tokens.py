"""API tokens: the configured PULSE_API_TOKEN, named revocable client tokens, and run tokens.

Client tokens are random, shown once, and stored only as their SHA-256, so the database never holds a
usable secret. Tokens are compared in constant time and never written to a log. A named token may
carry an expiry (the Desk's, made by `mcp_config --write`): past it, it is refused like a revoked one.

Each token has a scope (SECURITY.md has the table): `full` (every endpoint, but no wake checks),
`wake-checks` (what `full` grants, plus setting and running `check_command`, a shell command), or
`agent` (only what the agent's MCP tools do). A run token is an agent-scoped token the worker makes for
one run of the agent: `reeve-run.<pulse>.<attempt>.<mac>`, the MAC being an HMAC under SECRET_KEY of
that claim (pulse, attempt, worker, and the nonce the claim stored on the pulse). Nothing secret is
stored (and nothing is written per run beyond the claim itself), and it works only while that claim
holds: once the run ends, its lease expires, or the pulse is claimed again (a retry, a requeue, "run
now", a preemption, even with the same attempt number), the same token is refused. Only the
canonical encoding is accepted: the numbers in decimal without sign, leading zero or space, the MAC
in lowercase hex.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from pulses import queue
from pulses.models import FULL_SCOPES, ApiToken, Pulse, TokenScope

logger = logging.getLogger(__name__)

MAX_TOKEN_CHARS = 512
MAX_NAME_CHARS = 60
# Recording every use would turn each API read into a write; a minute's precision is plenty.
LAST_USED_PRECISION = timedelta(minutes=1)
RUN_TOKEN_PREFIX = "reeve-run."  # noqa: S105 (a prefix, not a secret)
# The only form of a run token accepted: pulse and attempt in canonical decimal, a lowercase hex MAC.
_RUN_TOKEN = re.compile(r"reeve-run\.([1-9][0-9]{0,18})\.([1-9][0-9]{0,9})\.([0-9a-f]{64})")


class TokenError(Exception):
    """A token could not be created or revoked (name taken, no such token)."""


@dataclass(frozen=True)
class ApiClient:
    """Who made an API request: `settings` for PULSE_API_TOKEN, else the client token's name; a run
    token names the run's pulse, the parent of whatever it schedules."""

    name: str
    scope: str = TokenScope.FULL
    run_pulse_id: int | None = None
    is_authenticated: bool = True
    is_active: bool = True
    is_staff: bool = False

    def __str__(self) -> str:
        return self.name

    @property
    def reaches_every_endpoint(self) -> bool:
        """`full` or `wake-checks`: any endpoint, not only the agent's."""
        return self.scope in FULL_SCOPES

    @property
    def may_use_wake_checks(self) -> bool:
        """May set a `check_command` or run a routine that has one (a shell command in the Desk)."""
        return self.scope == TokenScope.WAKE_CHECKS


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _run_mac(pulse_id: int, attempt: int, worker: str, nonce: str) -> str:
    message = f"reeve-run-token:{pulse_id}:{attempt}:{worker}:{nonce}".encode("utf-8", "surrogatepass")
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def run_token(pulse: Pulse, *, worker: str) -> str:
    """The agent-scoped token of this claim of `pulse` by `worker` (valid while the claim holds)."""
    attempt = pulse.attempt_count
    mac = _run_mac(pulse.pk, attempt, worker, pulse.claim_nonce)
    return f"{RUN_TOKEN_PREFIX}{pulse.pk}.{attempt}.{mac}"


def _identify_run(token: str) -> ApiClient | None:
    match = _RUN_TOKEN.fullmatch(token)
    if match is None:
        return None
    pulse_id, attempt, mac = int(match[1]), int(match[2]), match[3]
    if not (pulse_id < 2**63 and attempt < 2**31):
        return None
    claim = queue.claim_holder(pulse_id, attempt=attempt)
    # A claim without a nonce was made before claims had one: no token of today's can name it.
    if claim is None or not claim.nonce:
        return None
    if not hmac.compare_digest(mac, _run_mac(pulse_id, attempt, claim.worker, claim.nonce)):
        return None
    return ApiClient(name=f"run of pulse #{pulse_id}", scope=TokenScope.AGENT, run_pulse_id=pulse_id)


def identify(token: str) -> ApiClient | None:
    """The client `token` belongs to, or None when it is unknown, revoked, or a finished run's."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    configured = settings.PULSE_API_TOKEN
    if configured and hmac.compare_digest(token.encode("utf-8", "surrogatepass"), configured.encode()):
        return ApiClient(name="settings")
    if token.startswith(RUN_TOKEN_PREFIX):
        return _identify_run(token)
    digest = _digest(token)
    # The lookup is by digest, so its timing says nothing about the token; compare_digest re-checks.
    row = ApiToken.objects.filter(key_hash=digest, revoked_at__isnull=True).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    now = timezone.now()
    if row.expires_at is not None and row.expires_at <= now:
        return None
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return ApiClient(name=row.name, scope=row.scope)


def active_row(token: str) -> ApiToken | None:
    """The named token's row while it works (not revoked, not expired), else None."""
    if not token or len(token) > MAX_TOKEN_CHARS or token.startswith(RUN_TOKEN_PREFIX):
        return None
    row = ApiToken.objects.filter(key_hash=_digest(token), revoked_at__isnull=True).first()
    if row is None or (row.expires_at is not None and row.expires_at <= timezone.now()):
        return None
    return row


def create(
    name: str, *, scope: str = TokenScope.FULL, lifetime: timedelta | None = None
) -> tuple[ApiToken, str]:
    """Create a client token called `name` (expiring after `lifetime`, if given); returns the row and
    the token (shown once, never stored)."""
    if scope not in TokenScope.values:
        raise TokenError(f"unknown scope {scope!r}; use one of {', '.join(TokenScope.values)}")
    name = name.strip()
    if not name:
        raise TokenError("a token needs a name, e.g. create_api_token telegram-bridge")
    if len(name) > MAX_NAME_CHARS:
        raise TokenError(f"a token name has at most {MAX_NAME_CHARS} characters")
    token = secrets.token_urlsafe(32)
    try:
        with transaction.atomic():
            row = ApiToken.objects.create(
                name=name,
                scope=scope,
                key_hash=_digest(token),
                prefix=token[:6],
                expires_at=timezone.now() + lifetime if lifetime else None,
            )
    except IntegrityError:
        raise TokenError(
            f"a token named {name!r} exists already; revoke it first (--revoke) or pick another name"
        ) from None
    logger.info("api_token_created name=%s prefix=%s scope=%s", name, row.prefix, scope)
    return row, token


def revoke(name: str) -> ApiToken:
    """Revoke the active token called `name`; it stops working at once. The row stays for the record."""
    row = ApiToken.objects.filter(name=name.strip(), revoked_at__isnull=True).first()
    if row is None:
        raise TokenError(f"no active token named {name!r}; list them with create_api_token --list")
    # Free the name for a new token while keeping the revoked row.
    stamp = timezone.now()
    retired = f"{row.name} (revoked {stamp:%Y-%m-%d %H:%M:%S.%f})"
    ApiToken.objects.filter(pk=row.pk).update(revoked_at=stamp, name=retired)
    row.refresh_from_db()
    logger.info("api_token_revoked name=%s prefix=%s", name, row.prefix)
    return row


def listing() -> list[ApiToken]:
    """Every token, active ones first."""
    return list(ApiToken.objects.order_by("revoked_at", "name"))
