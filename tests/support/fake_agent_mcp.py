#!/usr/bin/env python3
"""The fake agent's MCP client: starts the Desk's `reeve` MCP server the way Claude Code does (from
`.mcp.json` in the working directory) with the official SDK's stdio client, calls one tool, and
prints the result as one JSON line: {"is_error": ..., "text": ..., "structured": ...}.

Usage: fake_agent_mcp.py TOOL ARGUMENTS_JSON [--bare-env]

The server inherits this process's environment with the entry's `env` over it, as Claude Code's
servers do; with --bare-env it gets only the SDK's default variables and the entry's `env`, so it
must find the run's token (REEVE_RUN_TOKEN) in its ancestors' environment.
"""

import json
import os
import sys
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client

ROOT = Path(__file__).resolve().parents[2]


def server_parameters(*, bare: bool) -> StdioServerParameters:
    config_file = Path.cwd() / ".mcp.json"
    if config_file.exists():
        entry = json.loads(config_file.read_text())["mcpServers"]["reeve"]
        command, args, entry_env = entry["command"], entry.get("args", []), entry.get("env", {})
    else:
        command, args, entry_env = sys.executable, [str(ROOT / "manage.py"), "mcp_server"], {}
    env = dict(entry_env) if bare else {**os.environ, **entry_env}
    return StdioServerParameters(command=command, args=args, env=env)


async def call(tool: str, arguments: dict, *, bare: bool) -> dict:
    async with stdio_client(server_parameters(bare=bare)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool(tool, arguments)
    text = "\n".join(block.text for block in result.content if getattr(block, "type", "") == "text")
    return {"is_error": bool(result.is_error), "text": text, "structured": result.structured_content}


def main() -> int:
    tool, arguments = sys.argv[1], json.loads(sys.argv[2])
    outcome = anyio.run(lambda: call(tool, arguments, bare="--bare-env" in sys.argv[3:]))
    sys.stdout.write(json.dumps(outcome) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
