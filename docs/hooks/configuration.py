"""The configuration page, generated from `.env.example` when the site is built (an MkDocs hook).

`.env.example` is where every variable settings.py reads is written down, with a comment, in its
section (tests/site/test_docs.py fails when one is missing), so the page cannot drift from the code.
The page's Markdown holds the marker `<!-- env-example -->`; the hook puts the reference there.

The file's shape: `# --- Section ---` lines open a section; comment lines describe the variable lines
that follow them (`NAME=value` is set in the copied file, `# NAME=value` is off: the default applies);
consecutive variable lines share one description; a blank line ends a description.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- env-example -->"
SECTION = re.compile(r"^# -{3}\s*(.+?)\s*-*$")
ACTIVE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")
COMMENTED = re.compile(r"^#\s([A-Z][A-Z0-9_]*)=(\S*)$")


@dataclass
class Variable:
    name: str
    value: str
    active: bool  # set in the file as copied; a commented line leaves the default


@dataclass
class Entry:
    """Variables described by one comment."""

    description: str
    variables: list[Variable] = field(default_factory=list)


@dataclass
class Section:
    title: str
    entries: list[Entry] = field(default_factory=list)


def read_env_example(path: Path = ROOT / ".env.example") -> tuple[str, list[Section]]:
    """The file's opening comment and its sections, in order."""
    intro: list[str] = []
    sections: list[Section] = []
    comment: list[str] = []
    entry: Entry | None = None
    for line in path.read_text().splitlines():
        line = line.rstrip()
        if heading := SECTION.match(line):
            sections.append(Section(heading.group(1)))
            comment, entry = [], None
        elif variable := ACTIVE.match(line) or COMMENTED.match(line):
            if entry is None:
                entry = Entry(" ".join(comment))
                target = sections[-1].entries if sections else None
                if target is None:
                    raise ValueError(f".env.example: {variable.group(1)} comes before any section")
                target.append(entry)
                comment = []
            entry.variables.append(Variable(variable.group(1), variable.group(2), line[0] != "#"))
        elif line.startswith("#"):
            text = line.lstrip("#").strip()
            if sections:
                comment.append(text)
            else:
                intro.append(text)
            entry = None
        else:  # a blank line
            comment, entry = [], None
    return " ".join(intro), sections


def documented_names(path: Path = ROOT / ".env.example") -> set[str]:
    """Every variable `.env.example` has a line for, set or commented out."""
    return {v.name for section in read_env_example(path)[1] for e in section.entries for v in e.variables}


def render(path: Path = ROOT / ".env.example") -> str:
    """The reference as Markdown: a section of `.env.example` per heading (its title's parenthesis under
    it), each entry its line(s) as the file has them (definition list terms) and their comment."""
    intro, sections = read_env_example(path)
    out = [f"*{intro}*", ""] if intro else []
    for section in sections:
        title, _, aside = section.title.partition(" (")
        out += [f"## {title}", ""]
        if aside:
            out += [f"*{aside.removesuffix(')')}*", ""]
        for entry in section.entries:
            out += [f"`{'' if v.active else '# '}{v.name}={v.value}`" for v in entry.variables]
            out += [f":   {entry.description or '(no comment)'}", ""]
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """MkDocs hook: the configuration page gets the reference where its marker is."""
    if MARKER in markdown:
        return markdown.replace(MARKER, render())
    return markdown
