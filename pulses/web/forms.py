"""Form fields the admin pages share (pulses' and routines')."""

from __future__ import annotations

import json

from django import forms

from pulses.limits import MAX_NOTE_CHARS, MAX_NOTES, MAX_TAG_CHARS, MAX_TAGS, InvalidPulse, text_list


class TextListField(forms.CharField):
    """A list of strings edited as plain text: one item per line, or split at `separator` (tags at
    commas). A JSON list pasted in is read as one. The limits are the API's (pulses/limits.py)."""

    def __init__(self, *, separator: str = "", max_items: int, max_chars: int, **kwargs) -> None:
        self.separator, self.max_items, self.max_chars = separator, max_items, max_chars
        super().__init__(required=False, strip=False, **kwargs)

    def prepare_value(self, value: object) -> object:
        if isinstance(value, list | tuple):
            return (f"{self.separator} " if self.separator else "\n").join(map(str, value))
        return value

    def to_python(self, value: object) -> list[str]:
        text = str(super().to_python(value) or "")
        if text.lstrip().startswith("["):
            try:
                items = json.loads(text)
            except ValueError:
                items = None
            if isinstance(items, list) and all(isinstance(item, str) for item in items):
                return [item.strip() for item in items if item.strip()]
        parts = text.split(self.separator) if self.separator else text.splitlines()
        return [part.strip() for part in parts if part.strip()]

    def validate(self, value: list[str]) -> None:
        try:
            text_list(value, name=str(self.label), max_items=self.max_items, max_chars=self.max_chars)
        except InvalidPulse as exc:
            raise forms.ValidationError(str(exc)) from None


def tags_field(help_text: str) -> TextListField:
    """A pulse's or a routine's tags, typed comma-separated, within the API's limits."""
    return TextListField(
        label="Tags", separator=",", max_items=MAX_TAGS, max_chars=MAX_TAG_CHARS, help_text=help_text
    )


def sticky_notes_field() -> TextListField:
    """Sticky notes, one per line, within the API's limits."""
    return TextListField(
        label="Sticky notes",
        max_items=MAX_NOTES,
        max_chars=MAX_NOTE_CHARS,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One note per line; each reaches the agent with the prompt.",
    )
