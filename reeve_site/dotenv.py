"""`.env` as people write it: `KEY=VALUE` lines, `# comments` on their own line or after a value.

A `#` starts a comment at the start of a value or after whitespace (`PULSE_MAX_CONCURRENT=1   # at
once`); inside a word it is part of the value (`postgres://u:p#w@h/db`). Quoted values ('…' or "…",
the latter with backslash escapes) keep everything between the quotes. A line that cannot be read is
a DotenvError naming the file and line, never a value that is quietly wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)\Z")
_COMMENT = re.compile(r"(?:^|\s+)#.*\Z")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


class DotenvError(ValueError):
    """A line of `.env` that is not `KEY=VALUE`; the message names the file, the line and the fix."""


def read_dotenv(path: Path) -> dict[str, str]:
    """Every `KEY=VALUE` of the file at `path`, in order."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}, line {number}"
        match = _LINE.match(line)
        if match is None:
            raise DotenvError(f"{where}: expected KEY=VALUE (a comment starts with #): {line[:80]!r}")
        key, rest = match.groups()
        values[key] = _value(rest, where=where)
    return values


def _value(rest: str, *, where: str) -> str:
    if not rest or rest[0] not in "'\"":
        return _COMMENT.sub("", rest).strip()
    quote, text, i = rest[0], [], 1
    while i < len(rest) and rest[i] != quote:
        if quote == '"' and rest[i] == "\\" and i + 1 < len(rest):
            text.append(_ESCAPES.get(rest[i + 1], "\\" + rest[i + 1]))
            i += 2
            continue
        text.append(rest[i])
        i += 1
    if i >= len(rest):
        raise DotenvError(f"{where}: the value opens a {quote} quote that is not closed on that line")
    if _COMMENT.sub("", rest[i + 1 :]).strip():
        raise DotenvError(f"{where}: text after the closing {quote} quote (start a comment with ' #')")
    return "".join(text)
