import json
from pathlib import Path

from django.conf import settings

from pulses.management.base import ReeveCommand
from pulses.tools import desk_config


class Command(ReeveCommand):
    """Print the MCP server entry (.mcp.json) and the Desk permission list (.claude/settings.json) that let
    Claude Code / Hapi use Reeve's tools; with --write, merge them into the Desk, with a named agent-scoped
    API token for interactive sessions (kept while it works)."""

    refused = (desk_config.DeskConfigError,)

    def add_arguments(self, parser):
        parser.add_argument(
            "--write",
            action="store_true",
            help="merge the entries into the Desk's files, keeping everything else in them",
        )
        parser.add_argument("--desk", type=Path, help="the Desk directory (default: REEVE_DESK_PATH)")

    def handle(self, *args, write: bool, desk: Path | None, **options) -> None:
        desk = (desk or Path(settings.REEVE_DESK_PATH)).expanduser()
        if write:
            for item in desk_config.write_desk_config(desk):
                replaced = (
                    f" (replaced the original Reeve's {', '.join(item.replaced)})" if item.replaced else ""
                )
                self.stdout.write(f"{'Updated' if item.changed else 'Up to date'}: {item.path}{replaced}")
            return
        self.stdout.write(f"# {desk / desk_config.MCP_JSON}")
        self.stdout.write(json.dumps(desk_config.mcp_json(), indent=2))
        self.stdout.write(f"# {desk / desk_config.CLAUDE_SETTINGS}")
        self.stdout.write(json.dumps(desk_config.claude_settings(), indent=2, ensure_ascii=False))
        self.stdout.write("# write both into the Desk (merging with what is there): mcp_config --write")
