"""The documentation site (docs/, MkDocs): it builds with warnings as errors, loads nothing from the
network, and its generated pages cannot drift from the code (the configuration page from .env.example,
which must document every variable settings.py reads; the API page from the OpenAPI schema)."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.reeve_processes import ROOT

pytestmark = pytest.mark.database_independent  # builds the site from the checkout; no Reeve home


def load_hook(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", ROOT / "docs" / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def variables_settings_reads(source: str) -> set[str]:
    """Every variable name settings.py passes to django-environ (`env.str("NAME")`, `environ.Env().bool(...)`)
    or to a helper of its own that reads one (`_path("NAME", ...)`)."""
    tree = ast.parse(source)
    helpers = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and any(isinstance(call, ast.Call) and _reads_env(call) for call in ast.walk(node))
    }
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first = node.args[0]
        named = isinstance(first, ast.Constant) and isinstance(first.value, str)
        is_helper = isinstance(node.func, ast.Name) and node.func.id in helpers
        if named and (_reads_env(node) or is_helper) and re.fullmatch(r"[A-Z][A-Z0-9_]*", first.value):
            names.add(first.value)
    return names


def _reads_env(call: ast.Call) -> bool:
    func = call.func
    if not isinstance(func, ast.Attribute):
        return False
    owner = func.value
    is_env = isinstance(owner, ast.Name) and owner.id == "env"
    is_new_env = (
        isinstance(owner, ast.Call) and isinstance(owner.func, ast.Attribute) and owner.func.attr == "Env"
    )
    return is_env or is_new_env


def test_the_settings_reader_finds_typed_reads_helpers_and_a_fresh_env():
    source = (
        "def _path(name, default):\n    return env.str(name, default=default)\n"
        "A = env.int('PULSE_A', default=1)\nB = _path('PULSE_B', '~')\n"
        "C = environ.Env().bool('PULSE_C', default=False)\nD = os.environ.get('NOT_THIS')\n"
    )
    assert variables_settings_reads(source) == {"PULSE_A", "PULSE_B", "PULSE_C"}


def test_env_example_documents_every_variable_settings_py_reads():
    read = variables_settings_reads((ROOT / "reeve_site" / "settings.py").read_text())
    documented = load_hook("configuration").documented_names()
    assert len(read) > 50
    assert not read - documented, f"add these to .env.example, with a comment: {sorted(read - documented)}"


def test_a_variable_missing_from_env_example_is_missing_from_the_configuration_page(tmp_path):
    configuration = load_hook("configuration")
    example = tmp_path / ".env.example"
    example.write_text(
        "# Reeve's settings.\n\n# --- Worker ---\n# Pulses at once.\nPULSE_MAX_CONCURRENT=1\n"
        "# Retry waits, in minutes (both).\n# PULSE_A=1\n# PULSE_B=2\n\n"
        "# --- Logging ---\n# Level.\nLOG_LEVEL=INFO\n"
    )
    page = configuration.render(example)
    assert "## Worker" in page and "## Logging" in page
    row = "`# PULSE_A=1`\n`# PULSE_B=2`\n:   Retry waits, in minutes (both).\n"
    assert row in page
    names = {"PULSE_MAX_CONCURRENT", "PULSE_A", "PULSE_B", "LOG_LEVEL"}
    assert configuration.documented_names(example) == names
    assert "PULSE_TIMEOUT_SECONDS" not in page


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built as tests/run.sh builds it: strict, so a broken link or anchor fails."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_the_site_builds_every_page_of_the_nav(site):
    for page in ("index", "getting-started", "agent", "telegram", "routines", "commands", "api", "admin"):
        assert (site / f"{page}.html").is_file(), page
    for page in ("operations", "configuration", "from-the-guide", "from-the-original", "security"):
        assert (site / f"{page}.html").is_file(), page
    for page in ("architecture", "performance", "changelog"):
        assert (site / f"{page}.html").is_file(), page


EXTERNAL = [
    re.compile(r"<script[^>]+src=[\"']?(?:https?:)?//", re.I),
    re.compile(r"<link[^>]+href=[\"']?(?:https?:)?//[^>]*>", re.I),
    re.compile(r"<img[^>]+src=[\"']?(?:https?:)?//", re.I),
    re.compile(r"@import\s+(?:url\()?[\"']?(?:https?:)?//", re.I),
    re.compile(r"url\([\"']?(?:https?:)?//", re.I),
]


def test_the_built_site_loads_no_script_stylesheet_font_or_image_from_elsewhere(site):
    pages = list(site.rglob("*.html"))
    assert len(pages) > 10
    for path in [*pages, *site.rglob("*.css")]:
        text = path.read_text(errors="replace")
        for pattern in EXTERNAL:
            found = [m for m in pattern.finditer(text) if 'rel="next"' not in m.group(0)]
            found = [m for m in found if 'rel="canonical"' not in m.group(0)]
            assert not found, f"{path.relative_to(site)}: {found[0].group(0)[:200]}"
        # Material loads mermaid from a CDN for a diagram block, Google Fonts unless font: false.
        assert 'class="mermaid"' not in text, path
        assert "fonts.googleapis" not in text and "fonts.gstatic" not in text, path


def test_the_configuration_page_lists_every_variable_of_env_example(site):
    page = (site / "configuration.html").read_text()
    for name in load_hook("configuration").documented_names():
        assert re.search(rf"<code>(# )?{name}=", page), name


def test_the_api_page_lists_every_endpoint_of_the_schema(site):
    page = (site / "api.html").read_text()
    schema = json.loads((site / "openapi.json").read_text())
    assert len(schema["paths"]) > 20
    for path, operations in schema["paths"].items():
        for method in operations:
            if method in ("get", "post", "patch", "put", "delete"):
                assert f"<code>{method.upper()} {path}</code>" in page, (method, path)
    assert "<code>prompt</code> (required)" in page  # a body's fields, from the serializer


def test_the_commands_page_lists_every_command_with_its_options(site):
    page = (site / "commands.html").read_text()
    folders = [ROOT / app / "management" / "commands" for app in ("pulses", "telegram_bridge")]
    commands = [path.stem for folder in folders for path in folder.glob("[a-z]*.py")]
    assert len(commands) > 15
    for name in commands:
        assert f'<h3 id="{name}">' in page, name
    assert "<code>--at AT</code>" in page  # trigger_pulse's option, from its parser
    assert "<code>routine add</code>" in page  # a subcommand's own options


def test_the_docs_name_no_file_outside_the_repository():
    top = [ROOT / "README.md", ROOT / "SECURITY.md", ROOT / "CHANGELOG.md"]
    for path in [*(ROOT / "docs").glob("*.md"), *top]:
        text = path.read_text()
        assert "SPEC.md" not in text, path
        assert "shared/seed" not in text and "../" not in text, path
