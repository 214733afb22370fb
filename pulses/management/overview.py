"""Reeve's own commands, one line each, for `./reeve help` (`python -m pulses.management.overview`).

The list is read from the command modules' source (their `Command` docstrings, which are also their
--help), not by loading Django: the help works before any configuration and costs no start-up. A new
command appears by itself, its docstring's first sentence its line; SUMMARIES shortens the long ones.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMAND_FOLDERS = ("pulses/management/commands", "telegram_bridge/management/commands")
LONGEST = 90  # characters of a docstring's first sentence shown
# A line for the commands whose docstring opens with more than a line's worth.
SUMMARIES = {
    "agent_probe": "run one prompt through the agent as the worker would; print what Reeve understood",
    "backup_db": "back up the database while Reeve runs (gzip; old backups deleted after --keep-days)",
    "create_api_token": "create a named API token (printed once), --revoke one, or --list them",
    "doctor": "check that Reeve can run: configuration, database, agent, Desk, API, Telegram",
    "health": "is Reeve healthy? one line per problem, exit 1 when there is one (for cron and alerts)",
    "import_legacy": "carry the original Reeve's queue over into Reeve's database",
    "mcp_config": "print, or --write into the Desk, the agent's MCP configuration for Reeve's tools",
    "mcp_server": "serve the agent's tools over MCP on stdin/stdout (the agent starts it)",
    "prune_history": "delete finished pulses past their retention and give the space back",
    "pulse_queue": "show the queue (pending, failed, all …), one pulse by ID or last; --follow: its run live",
    "queue": "pause the whole queue (running pulses finish), resume it, or show its status",
    "routine": "routines, recurring wake-ups: add, edit, list, show, run, pause, resume, remove, next",
    "run_pulse_worker": "run due pulses through the agent (the worker alone; ./reeve start runs it too)",
    "run_reeve": "the worker and the web process in one terminal (what ./reeve start runs)",
    "stop_pulse": "stop a running pulse: it ends cancelled, or with --retry goes back to pending",
    "trigger_pulse": "schedule a pulse and print its id (-q: the id alone; --wait: the agent's answer)",
    "notify": "send a message to the Telegram chat(s) in TELEGRAM_CHAT_ID",
    "run_telegram_listener": "turn your Telegram messages into pulses and send the answers back",
}


def _docstring(path: Path) -> str:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name == "Command":
            return " ".join((ast.get_docstring(node) or "").split())
    return ""


def _first_sentence(text: str) -> str:
    first = re.split(r"(?<=\.)\s", text, maxsplit=1)[0].rstrip(".")
    first = first[:1].lower() + first[1:]
    return first if len(first) <= LONGEST else first[: LONGEST - 1] + "…"


def commands(root: Path = ROOT) -> dict[str, str]:
    """Each of Reeve's commands (not Django's) with its one-line description, by name."""
    found: dict[str, str] = {}
    for folder in COMMAND_FOLDERS:
        for path in sorted((root / folder).glob("[!_]*.py")):
            found[path.stem] = SUMMARIES.get(path.stem) or _first_sentence(_docstring(path))
    return dict(sorted(found.items()))


def lines() -> list[str]:
    listed = commands()
    width = max(map(len, listed)) + 2
    out = ["Reeve's commands (./reeve COMMAND --help shows each one's options):"]
    out += [f"  {name:<{width}}{summary}" for name, summary in listed.items()]
    out.append("Django's own work too, among them: createsuperuser, changepassword, migrate, dbshell, shell.")
    return out


if __name__ == "__main__":
    sys.stdout.write("\n".join(lines()) + "\n")
