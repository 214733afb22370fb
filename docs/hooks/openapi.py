"""The API reference, generated from the OpenAPI schema when the site is built (an MkDocs hook).

drf-spectacular makes the schema of `pulses/api` in this process (the same one `/api/schema` serves),
so the reference lists exactly the endpoints, fields and refusals the code has. The page's Markdown
holds the marker `<!-- openapi -->`; the hook puts the reference there and writes the schema itself
beside the page as `openapi.json`. No Swagger UI, nothing loaded from elsewhere.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import django_app  # noqa: E402  (this folder's, not a package)

MARKER = "<!-- openapi -->"
METHODS = ("get", "post", "patch", "put", "delete")
# The endpoints a newcomer needs first; the agent's own last.
TAG_ORDER = ("health", "pulse", "pulses", "routines", "queue", "status", "stats", "notify", "agent")
_schema: dict | None = None


def schema() -> dict:
    """The OpenAPI schema of this checkout's API, made once per build."""
    global _schema
    if _schema is None:
        django_app.setup()
        from drf_spectacular.generators import SchemaGenerator

        _schema = SchemaGenerator().get_schema(request=None, public=True)
    return _schema


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _ref_name(node: dict) -> str:
    return node["$ref"].rsplit("/", 1)[-1]


def _type(node: dict) -> str:
    """A field's type in a few words: `string`, `array of string`, `Trigger`, `critical, high, ...`."""
    if "$ref" in node:
        return f"[{_ref_name(node)}](#body-{_ref_name(node).lower()})"
    for combined in ("allOf", "oneOf", "anyOf"):
        if combined in node:
            kinds = [_type(part) for part in node[combined] if _ref_name(part) != "NullEnum"]
            return " or ".join(kinds)
    if node.get("type") == "array":
        return f"array of {_type(node.get('items', {}))}"
    if "enum" in node:
        return ", ".join(f"`{v}`" for v in node["enum"] if v not in (None, ""))
    kind = node.get("type", "any")
    return f"{kind} ({node['format']})" if "format" in node else kind


def _description(node: dict) -> str:
    """Its description without drf-spectacular's enum list (the type column names the values)."""
    text = node.get("description", "").split("\n\n* `")[0]
    limits = []
    if "default" in node and node["default"] not in ("", None, []):
        limits.append(f"default `{json.dumps(node['default'])}`")
    for key, word in (("maxLength", "at most {} characters"), ("maxItems", "at most {} items")):
        if key in node:
            limits.append(word.format(node[key]))
    if "minimum" in node or "maximum" in node:
        limits.append(f"{node.get('minimum', '…')}–{node.get('maximum', '…')}")
    if node.get("readOnly"):
        limits.append("read-only")
    if node.get("nullable"):
        limits.append("may be null")
    return "; ".join(filter(None, [text, ", ".join(limits)]))


def _fields(node: dict) -> list[str]:
    props = node.get("properties", {})
    if not props:
        return []
    required = set(node.get("required", []))
    rows = ["| field | type | |", "|---|---|---|"]
    for name, prop in props.items():
        shown = f"`{name}`" + (" (required)" if name in required and not prop.get("readOnly") else "")
        rows.append(f"| {shown} | {_cell(_type(prop))} | {_cell(_description(prop))} |")
    return rows


def _operation(path: str, method: str, op: dict) -> list[str]:
    out = [f"### `{method.upper()} {path}`", "", f"**{op.get('summary', '')}**", ""]
    if op.get("description"):
        out += [op["description"], ""]
    if not op.get("security") or {} in op.get("security", []):
        out += ["No token needed.", ""]
    params = op.get("parameters", [])
    if params:
        out += ["| parameter | in | type | |", "|---|---|---|---|"]
        for p in params:
            out.append(
                f"| `{p['name']}` | {p['in']} | {_cell(_type(p.get('schema', {})))} | "
                f"{_cell(p.get('description', ''))} |"
            )
        out.append("")
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if body:
        out += [f"Body: {_type(body)}", ""]
    out += ["| answer | |", "|---|---|"]
    for code, answer in op.get("responses", {}).items():
        content = answer.get("content", {}).get("application/json", {}).get("schema")
        parts = [_cell(answer.get("description", "")), _type(content) if content else ""]
        shown = ": ".join(part for part in parts if part)
        out.append(f"| {code} | {shown} |")
    return out + [""]


def render() -> str:
    """The reference as Markdown: the endpoints by tag, then the bodies they read and answer."""
    spec = schema()
    by_tag: dict[str, list[str]] = {}
    for path, ops in spec["paths"].items():
        for method in METHODS:
            if method in ops:
                tag = (ops[method].get("tags") or ["other"])[0]
                by_tag.setdefault(tag, []).extend(_operation(path, method, ops[method]))
    out = [
        f"Generated from the OpenAPI schema of {spec['info']['title']} {spec['info']['version']}"
        " ([openapi.json](openapi.json), the same schema `/api/schema` serves).",
        "",
    ]
    first = {tag: n for n, tag in enumerate(TAG_ORDER)}
    for tag, lines in sorted(by_tag.items(), key=lambda item: first.get(item[0], len(first))):
        out += [f"## {tag.capitalize()}", "", *lines]
    out += ["## Bodies", ""]
    for name, node in sorted(spec["components"]["schemas"].items()):
        if name in ("NullEnum",):
            continue
        out += [f"### {name} {{#body-{name.lower()}}}", ""]
        if node.get("description"):
            out += [_cell(node["description"]), ""]
        if "enum" in node:
            out += [f"One of {_type(node)}.", ""]
        out += [*_fields(node), ""]
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """MkDocs hook: the API page gets the reference where its marker is."""
    if MARKER in markdown:
        return markdown.replace(MARKER, render())
    return markdown


def on_files(files, config):
    """MkDocs hook: the schema itself, beside the API page."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, "openapi.json", content=json.dumps(schema(), indent=1)))
    return files
