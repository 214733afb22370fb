"""How Reeve's MCP tool server reaches Reeve's API: which agent-scoped token it calls with, and the
call itself.

- In a run started by the worker, the run's own token (REEVE_RUN_TOKEN, with REEVE_API_URL), taken
  from this process's environment or, when the MCP client trimmed it, from an ancestor's (Linux);
  it names the running pulse and stops working when the run ends.
- In an interactive session in the Desk, the named token `mcp_config --write` put in the Desk's
  `.mcp.json` (REEVE_AGENT_TOKEN).

A refusal (4xx) comes back as a tool error in the API's words; an unreachable API likewise.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from mcp.server.mcpserver.exceptions import ToolError

from pulses.agent.env import API_URL_VARIABLE, DESK_TOKEN_VARIABLE, RUN_TOKEN_VARIABLE
from pulses.tools.agent_tools import SESSION_WAIT_SECONDS

logger = logging.getLogger(__name__)

DEFAULT_API_URL = "http://127.0.0.1:8765"
# schedule_pulse with resume_current_session may wait up to SESSION_WAIT_SECONDS on the server side.
REQUEST_TIMEOUT_SECONDS = SESSION_WAIT_SECONDS + 30
_ANCESTOR_DEPTH = 8


@dataclass(frozen=True)
class ApiAccess:
    """Where Reeve's API is and the agent-scoped token to call it with."""

    url: str
    token: str
    found_in: str  # "environment", "process <pid>" or "desk"


def _from_ancestors(names: tuple[str, ...]) -> tuple[dict[str, str], str]:
    """The first ancestor's values of `names` (by the first name), read from /proc."""
    pid = os.getppid()
    for _ in range(_ANCESTOR_DEPTH):
        if pid <= 1:
            break
        proc = Path("/proc") / str(pid)
        try:
            environ = (proc / "environ").read_bytes()
            stat = (proc / "stat").read_text()
        except OSError:
            break
        values = {}
        for entry in environ.split(b"\0"):
            name, _, value = entry.decode(errors="replace").partition("=")
            if name in names:
                values[name] = value
        if names[0] in values:
            return values, f"process {pid}"
        # stat is "pid (comm) state ppid ..."; comm may hold spaces or parentheses.
        pid = int(stat.rpartition(")")[2].split()[1])
    return {}, ""


def api_access() -> ApiAccess | None:
    """The run's token (ours or an ancestor's environment), else the Desk's named token; None if neither."""
    names = (RUN_TOKEN_VARIABLE, API_URL_VARIABLE)
    values, found_in = ({name: os.environ[name] for name in names if os.environ.get(name)}, "environment")
    if RUN_TOKEN_VARIABLE not in values:
        values, found_in = _from_ancestors(names)
    if token := values.get(RUN_TOKEN_VARIABLE):
        return ApiAccess(values.get(API_URL_VARIABLE) or DEFAULT_API_URL, token, found_in)
    if token := os.environ.get(DESK_TOKEN_VARIABLE):
        return ApiAccess(os.environ.get(API_URL_VARIABLE) or DEFAULT_API_URL, token, "desk")
    return None


def call_api(
    method: str, path: str, *, body: dict[str, Any] | None = None, params: dict | None = None
) -> Any:
    """One call to Reeve's API with the agent's token; a refusal or an outage raises ToolError."""
    access = api_access()
    if access is None:
        raise ToolError(
            "Reeve's tools have no token: they work in a run started by Reeve's worker, or in the Desk "
            f"once the user has run `./reeve mcp_config --write` ({RUN_TOKEN_VARIABLE} and "
            f"{DESK_TOKEN_VARIABLE} are both unset)"
        )
    url = access.url.rstrip("/") + path
    try:
        response = httpx.request(
            method,
            url,
            json=body,
            params=params,
            headers={"Authorization": f"Bearer {access.token}"},
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
    except httpx.HTTPError as exc:
        raise ToolError(
            # The exception's text is left out: it may quote the request's headers, hence the token.
            f"Reeve's API at {access.url} did not answer ({type(exc).__name__}); nothing was done. "
            "Try again in a minute; if it persists, tell the user to run `./reeve doctor`"
        ) from None
    try:
        data = response.json()
    except ValueError:
        data = {"detail": response.text[:500]}
    if response.status_code == 401:
        raise ToolError(
            "Reeve's API refused this tool server's token: a run's token stops working when the run "
            "ends, and the Desk's expires after DESK_TOKEN_HOURS; in the Desk, the user can make a new "
            "one with `./reeve mcp_config --write` (then restart the session)"
        )
    if response.status_code >= 400:
        detail = data.get("detail") if isinstance(data, dict) else None
        raise ToolError(str(detail or f"Reeve's API answered {response.status_code}"))
    logger.info("mcp_tool_done path=%s status=%s token_from=%s", path, response.status_code, access.found_in)
    return data
