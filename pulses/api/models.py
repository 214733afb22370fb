"""The API's named client tokens (registered in the `pulses` app through pulses/models.py)."""

from __future__ import annotations

from django.db import models


class TokenScope(models.TextChoices):
    FULL = "full"  # every endpoint, but no wake checks (check_command: a shell command)
    AGENT = "agent"  # only what the agent's MCP tools do: /api/agent/* and /api/notify
    WAKE_CHECKS = "wake-checks"  # what `full` grants, and setting or running wake checks


# The scopes that reach every endpoint (an agent-scoped token only reaches the agent's).
FULL_SCOPES = frozenset({TokenScope.FULL, TokenScope.WAKE_CHECKS})


class ApiToken(models.Model):
    """A named, revocable API client token; only its SHA-256 is stored, never the token itself."""

    name = models.CharField(max_length=100, unique=True)
    scope = models.CharField(max_length=16, choices=TokenScope.choices, default=TokenScope.FULL)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, help_text="the first characters, to tell tokens apart")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # A short-lived token (the Desk's, made by mcp_config --write) stops working at this time.
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "pulse_api_tokens"
        ordering = ["name"]

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"{self.name} ({self.prefix}…, {self.scope}, {state})"
