"""Property-based fuzzing of the whole API from its own OpenAPI schema (schemathesis 4, ≥ 500 cases).

Runs the schemathesis CLI against gunicorn on 127.0.0.1, the way the API is deployed. Every check is
on except `positive_data_acceptance`: a schema-valid string such as "blorp" for `scheduled_at` is
rightly a 400 (the schema cannot say which phrases are times). The run fails on any 5xx, undocumented
status or content type, response that violates the schema, or invalid request that is accepted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support.reeve_processes import ROOT

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
SEED = os.environ.get("REEVE_FUZZ_SEED", "20261126")
MAX_EXAMPLES = os.environ.get("REEVE_FUZZ_EXAMPLES", "25")  # per operation: 29 operations, ≥ 500 cases


def run_schemathesis(schema_url: str, *, token: str, workdir: Path) -> tuple[int, dict, str]:
    """Run `st run` to the end; returns its exit code, its JSON report and its output."""
    report = workdir / "schemathesis-report.json"
    proc = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            schema_url,
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            SEED,
            # One worker: hypothesis' lambda descriptions are not thread-safe on CPython 3.11.
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--report",
            "json",
            "--report-json-path",
            str(report),
            "--no-color",
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "NO_COLOR": "1"},
    )
    output = proc.stdout + proc.stderr
    return proc.returncode, json.loads(report.read_text()) if report.exists() else {}, output


@pytest.mark.slow(weight=12)  # ~25 CPU-s: scheduled early (tests/conftest.py)
def test_schemathesis_finds_no_server_error_or_schema_violation_in_at_least_500_cases(live_reeve, tmp_path):
    live_reeve.start(web_only=True)
    code, report, output = run_schemathesis(
        f"{live_reeve.url}/api/schema", token=live_reeve.token, workdir=tmp_path
    )
    out_dir = ROOT / "test-output"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "schemathesis.txt").write_text(output)
    if report:
        shutil.copy(tmp_path / "schemathesis-report.json", out_dir / "schemathesis-report.json")
    assert report, output[-5000:]
    assert (code, report["failures"], report["errors"]) == (0, [], []), output[-8000:]
    assert report["test_cases"]["generated"] >= 500, report["test_cases"]
    assert report["operations"]["tested"] == report["operations"]["total"] == 32, report["operations"]


BROKEN_SCHEMA = {
    "openapi": "3.0.3",
    "info": {"title": "broken", "version": "1"},
    "paths": {
        "/boom": {
            "get": {
                "parameters": [{"name": "n", "in": "query", "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "ok"}},
            }
        }
    },
}


class _Broken(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(BROKEN_SCHEMA if self.path == "/openapi.json" else {"oops": True}).encode()
        self.send_response(200 if self.path == "/openapi.json" else 500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.slow
@pytest.mark.database_independent  # a stand-in API of this test's own
def test_the_fuzz_harness_fails_when_an_api_answers_500(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Broken)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/openapi.json"
        code, report, output = run_schemathesis(url, token="t", workdir=tmp_path)
    finally:
        server.shutdown()
    assert code != 0, output[-3000:]
    assert any(f["code"] == "ST101" for f in report["failures"]), report["failures"]
