import logging
import sys

from pulses.management.base import ReeveCommand
from pulses.ops.lifeline import stop_with_parent
from pulses.tools.mcp_server import serve


def _logs_to_stderr() -> None:
    """stdout carries the MCP protocol only: console log handlers move to stderr (LOG_FILE stays)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            if handler.stream in (sys.stdout, sys.__stdout__):
                handler.setStream(sys.stderr)


class Command(ReeveCommand):
    """Serve the agent's tools over MCP on stdin/stdout: schedule_pulse, list_upcoming_pulses, cancel_pulse,
    reschedule_pulse, send_notification, create_routine, list_routines, pause_routine, delete_routine.
    Started by the agent (Claude Code / Hapi) from the Desk's .mcp.json; see `mcp_config`."""

    requires_system_checks: list = []

    def handle(self, *args, **options):
        _logs_to_stderr()
        # Its parent is the agent CLI: if that dies without closing our stdin (a grandchild holds it),
        # stop anyway instead of serving nobody forever.
        stop_with_parent("mcp_server")
        serve()
