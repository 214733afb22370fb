#!/usr/bin/env python3
"""Reeve's DEMO agent: a stand-in for Claude Code that answers from a few canned rules.

It is no assistant: it only lets a newcomer see the whole loop (a pulse is claimed, an agent runs in
the Desk, its answer is stored, shown and sent back to Telegram) before installing a real agent.
`HAPI_COMMAND=demo` runs it. It reads the command line the worker gives every agent
(`--print --output-format stream-json --verbose [--resume=ID] -- PROMPT`) and prints real stream-json:
a `system`/`init` event with its session id, one `assistant` message, and the `result`.

The rules, on the text of the prompt (a Telegram message's text without its "Telegram message from
NAME:" header): a greeting, "time" or "date", "help", "fail" (a failed run, to see what failures look
like), an hourly check-in (nothing to say: it answers NO_REPLY), and anything else is echoed back.
Standard library only, so it starts fast under `python -S`.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid

NAME = "Reeve's demo agent"
NOTHING_TO_SAY = "NO_REPLY"  # pulses/answers.py: the answer that sends nothing back
TELEGRAM_HEADER = re.compile(r"^Telegram message from [^:]+: ", re.S)
REAL_AGENT = (
    "Set HAPI_COMMAND to `claude` (Claude Code) or `hapi` for a real agent (docs/agent.md, Your agent)."
)


def parse(argv: list[str]) -> tuple[str | None, str]:
    """(the session to resume, the prompt) from the agent's command line."""
    options, prompt = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    resume = next((word.split("=", 1)[1] for word in options if word.startswith("--resume=")), None)
    return resume, " ".join(prompt)


def answer(prompt: str) -> tuple[str, bool]:
    """(the answer, whether the run failed) for a prompt, by the canned rules."""
    text = TELEGRAM_HEADER.sub("", prompt).split("\n\n📌 Reminders:", 1)[0].strip()
    words = set(re.findall(r"[a-z]+", text.lower()))
    if "fail" in words:
        return "The demo agent fails on purpose when asked to (the word 'fail').", True
    if "heartbeat" in words:  # the hourly prompt: nothing new to tell
        return NOTHING_TO_SAY, False
    if words & {"hello", "hi", "hey"}:
        hello = f"Hello! I am {NAME}: I answer from a few canned rules so you can see Reeve work."
        return f"{hello} {REAL_AGENT}", False
    if words & {"time", "date", "today"}:
        return f"It is {time.strftime('%A %d %B %Y, %H:%M %Z')} where Reeve runs.", False
    if "help" in words:
        rules = "hello, time, help, fail; anything else is echoed"
        return f"{NAME} knows these words: {rules}. {REAL_AGENT}", False
    return f"{NAME} received: «{text[:500]}». A real agent would act on it. {REAL_AGENT}", False


def emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    started = time.monotonic()
    resume, prompt = parse(argv)
    session_id = resume or str(uuid.uuid4())
    emit({"type": "system", "subtype": "init", "session_id": session_id, "model": "reeve-demo", "tools": []})
    text, failed = answer(prompt)
    message = {"content": [{"type": "text", "text": text}]}
    emit({"type": "assistant", "session_id": session_id, "message": message})
    emit(
        {
            "type": "result",
            "subtype": "error_during_execution" if failed else "success",
            "is_error": failed,
            "result": text,
            "session_id": session_id,
            "num_turns": 1,
            "total_cost_usd": 0.0,
            "duration_ms": round((time.monotonic() - started) * 1000),
        }
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
