"""Behind the shipped TLS proxy: REEVE_BEHIND_TLS=1 makes `check --deploy` clean, and the nginx
configuration sets what Django cannot (the scheme it was reached by, a Content-Security-Policy)."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess

import pytest

from tests.support.reeve_processes import ROOT

NGINX_CONF = ROOT / "deploy" / "nginx" / "reeve.conf"

REQUESTS = """
import json
from django.test import Client
client = Client(HTTP_HOST="127.0.0.1")
plain = client.get("/admin/login/")
proxied = client.get("/admin/login/", HTTP_X_FORWARDED_PROTO="https")
health = client.get("/api/health")
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location", "")],
    "proxied": [proxied.status_code, proxied.get("Strict-Transport-Security", "")],
    "cookies": {name: bool(morsel["secure"]) for name, morsel in proxied.cookies.items()},
    "health": health.status_code,
}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("behind_tls", ["1", ""])
def test_check_deploy_is_clean_with_reeve_behind_tls_and_names_the_tls_settings_without(
    reeve_home, behind_tls
):
    reeve_home.extra_env.update(SECRET_KEY=secrets.token_urlsafe(50), REEVE_BEHIND_TLS=behind_tls)
    proc = reeve_home.manage("check", "--deploy", "--fail-level", "WARNING", check=False)
    if behind_tls:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "System check identified no issues (1 silenced)." in proc.stdout
    else:
        assert proc.returncode == 1
        for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
            assert warning in proc.stderr


@pytest.mark.slow
def test_behind_tls_a_proxied_request_is_secure_a_plain_page_is_redirected_and_the_api_on_loopback_is_not(
    reeve_home,
):
    reeve_home.extra_env["REEVE_BEHIND_TLS"] = "1"
    seen = json.loads(reeve_home.manage("shell", "-c", REQUESTS).stdout.strip().splitlines()[-1])

    assert seen["plain"] == [301, "https://127.0.0.1/admin/login/"]
    status, hsts = seen["proxied"]
    assert status == 200 and hsts.startswith("max-age=31536000")
    assert seen["cookies"] == {"csrftoken": True}
    assert (
        seen["health"] == 200
    )  # the MCP server, Prometheus and ./reeve's checks speak plain HTTP on loopback


@pytest.mark.database_independent  # a config file
def test_the_nginx_config_sets_the_scheme_and_a_csp_and_leaves_hsts_to_django():
    conf = NGINX_CONF.read_text()
    assert conf.count("proxy_set_header X-Forwarded-Proto $scheme;") == 2  # every proxied location
    csp = re.search(r'add_header Content-Security-Policy "([^"]+)" always;', conf)
    assert csp, conf
    assert (
        "script-src 'self';" in csp[1] and "frame-ancestors 'none'" in csp[1] and "unsafe-eval" not in csp[1]
    )
    assert "Strict-Transport-Security" not in re.sub(r"#.*", "", conf)  # Django sets it: not twice
    assert "REEVE_BEHIND_TLS=1" in conf


@pytest.mark.database_independent  # nginx -t on the config
@pytest.mark.skipif(not shutil.which("nginx"), reason="nginx is not installed")
def test_the_nginx_config_passes_nginx_t(tmp_path):
    key, cert = tmp_path / "privkey.pem", tmp_path / "fullchain.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=reeve.example.com",
        ]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    site = NGINX_CONF.read_text()
    site = site.replace("/etc/letsencrypt/live/reeve.example.com/fullchain.pem", str(cert))
    site = site.replace("/etc/letsencrypt/live/reeve.example.com/privkey.pem", str(key))
    (tmp_path / "reeve.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n    access_log off;\n    include {tmp_path}/reeve.conf;\n}}\n"
    )
    proc = subprocess.run(
        [
            "nginx",
            "-t",
            "-p",
            str(tmp_path),
            "-e",
            str(tmp_path / "error.log"),
            "-c",
            str(tmp_path / "nginx.conf"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "syntax is ok" in proc.stderr
