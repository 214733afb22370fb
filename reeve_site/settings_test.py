"""Settings for the test suite: everything lives in a throwaway directory, never in ~/.reeve."""

import os
import tempfile

_home = tempfile.mkdtemp(prefix="reeve-test-")
# pytest-xdist's processes inherit the environment this module gave the controlling process: each
# makes a home of its own instead, so none reads another's metrics (one PROMETHEUS_MULTIPROC_DIR
# merged every process's routine fires into each /metrics) or writes another's files.
_inherited = os.environ.get("REEVE_TEST_HOME")
if _inherited and os.environ.get("PYTEST_XDIST_WORKER"):
    for _name, _value in list(os.environ.items()):
        if _value.startswith(_inherited):
            del os.environ[_name]
os.environ["REEVE_TEST_HOME"] = _home
os.environ["REEVE_IGNORE_DOTENV"] = "1"
os.environ.setdefault("REEVE_HOME", _home)
os.environ.setdefault("PULSE_DB_PATH", os.path.join(_home, "pulse_queue.db"))
os.environ.setdefault("LOG_FILE", os.path.join(_home, "logs", "daemon.log"))
os.environ.setdefault("REEVE_DESK_PATH", os.path.join(_home, "desk"))
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
# The fake agents (tests/support/fake_agent.py, bench/*.sh) read their instructions from these variables.
os.environ.setdefault("AGENT_ENV_PASSTHROUGH", "FAKE_AGENT_*,NOOP_AGENT_*")
# The fake agent writes its logs beside the test's Desk, which a sandbox keeps read-only: tests run it
# uncontained unless they ask for the sandbox (tests/agent/test_containment.py).
os.environ.setdefault("AGENT_SANDBOX", "off")
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", os.path.join(_home, "metrics"))
# The suite runs without manage.py, so it makes the folders reeve_site.home.prepare() would.
for _folder in ("REEVE_DESK_PATH", "PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ[_folder], exist_ok=True)

from reeve_site.settings import *  # noqa: E402, F403
