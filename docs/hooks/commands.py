"""The commands' reference, generated from their argument parsers when the site is built (an MkDocs
hook): every management command of Reeve's apps with its help (the command's docstring) and each
option's help, as `--help` prints them. The page's Markdown holds the marker `<!-- commands -->`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import django_app  # noqa: E402  (this folder's, not a package)

MARKER = "<!-- commands -->"
APPS = ("pulses", "telegram_bridge")
# Every Django command has these; the page says so once.
DJANGO_OPTIONS = {"help", "version", "verbosity", "settings", "pythonpath", "traceback", "no_color"}
DJANGO_OPTIONS |= {"force_color", "skip_checks"}


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _name(action: argparse.Action) -> str:
    value = action.metavar or (
        "{" + ",".join(map(str, action.choices)) + "}" if action.choices else action.dest.upper()
    )
    if action.option_strings:
        shown = ", ".join(action.option_strings)
        return f"`{shown} {value}`" if action.nargs != 0 else f"`{shown}`"
    return f"`{action.metavar or action.dest}`"


def _options(parser: argparse.ArgumentParser, heading: str) -> list[str]:
    out: list[str] = []
    rows: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _options(sub, f"{heading} {name}")
            continue
        if action.dest in DJANGO_OPTIONS or action.help == argparse.SUPPRESS:
            continue
        default = action.default
        shown = "" if default in (None, False, [], "", argparse.SUPPRESS) else f" (default: `{default}`)"
        rows.append(f"| {_name(action)} | {_cell(action.help or '')}{shown} |")
    description = _cell(parser.description or "")
    if not rows and not description:
        return out  # a command made only of subcommands
    block = [f"**`{heading}`**" + (f": {description}" if description else ""), ""]
    if rows:
        block += ["| argument | |", "|---|---|", *rows, ""]
    return block + out


def render() -> str:
    """Every command of Reeve's apps, alphabetically: its help and its arguments."""
    django_app.setup()
    from django.core.management import get_commands, load_command_class

    out: list[str] = []
    for name, app in sorted(get_commands().items()):
        if app not in APPS:
            continue
        command = load_command_class(app, name)
        parser = command.create_parser("manage.py", name)
        out += [f"### {name}", "", _cell(command.help), ""]
        parser.description = None  # the help above says it
        out += _options(parser, name)
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """MkDocs hook: the commands page gets the reference where its marker is."""
    if MARKER in markdown:
        return markdown.replace(MARKER, render())
    return markdown
