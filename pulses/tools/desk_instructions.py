"""What the agent is told about Reeve, in the Desk's `CLAUDE.md` (which Claude Code reads in every run).

`mcp_config --write` keeps one marked block in that file up to date and leaves the rest of it alone
(each start and `doctor` bring a block that is there up to date as well):
how the agent's final answer reaches the user, that `send_notification` replaces it, and the agreed
"nothing to say" token (pulses.answers.NOTHING_TO_SAY) that sends nothing.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from pulses.answers import NOTHING_TO_SAY
from pulses.tools.agent_tools import TOOL_NAMES

INSTRUCTIONS = Path("CLAUDE.md")
BEGIN = "<!-- reeve:begin (written by `manage.py mcp_config --write`; edit outside this block) -->"
END = "<!-- reeve:end -->"
BLOCK = re.compile(r"<!-- reeve:begin[^\n]*-->.*?<!-- reeve:end -->", re.S)


def _tool_list() -> str:
    """The MCP server's tools (agent_tools.TOOL_NAMES, the list the server publishes: tests/tools pins
    the two together), wrapped as the block's other lines are."""
    return textwrap.fill(", ".join(TOOL_NAMES) + ".", width=100)


def block() -> str:
    """Reeve's section of the Desk's instructions, between its markers."""
    return f"""{BEGIN}
## Reeve

Reeve wakes you with pulses: prompts scheduled in time (the user's Telegram messages, hourly
check-ins, reminders you set yourself). Its MCP server `reeve` gives you these tools:
{_tool_list()}

- Your final answer is what the user reads: for a Telegram message (or a pulse that asked for
  delivery) Reeve sends it back to the chat when you finish, as a reply. Write it for them.
- If you already messaged the user with send_notification during the run, your final answer is not
  sent as well.
- When there is nothing worth telling the user (an hourly check-in with nothing new), answer with
  exactly `{NOTHING_TO_SAY}` and nothing else: Reeve then sends nothing.
{END}"""


def merged(existing: str) -> str:
    """`existing` with Reeve's block replaced (or appended); everything else kept as it was."""
    if BLOCK.search(existing):
        return BLOCK.sub(lambda _match: block(), existing, count=1)
    separator = "" if not existing else ("\n" if existing.endswith("\n") else "\n\n")
    return f"{existing}{separator}{block()}\n"
