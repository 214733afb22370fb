"""`/api/status`'s uptime_seconds: the age of the process that answers, from its start."""

import os
import subprocess

import pytest

from pulses.ops.uptime import uptime_seconds

FIRST_REQUEST_LATE = """
import json, time
time.sleep(2.5)  # as a gunicorn worker that serves its first request a while after it started
from django.conf import settings
from django.test import Client
bearer = f"Bearer {settings.PULSE_API_TOKEN}"
response = Client().get("/api/status", HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=bearer)
print(json.dumps(response.json()["uptime_seconds"]))
"""


def _age_by_ps(pid: int) -> int:
    return int(subprocess.run(["ps", "-o", "etimes=", "-p", str(pid)], capture_output=True, text=True).stdout)


def test_uptime_is_this_processs_age_as_ps_reports_it():
    assert abs(uptime_seconds() - _age_by_ps(os.getpid())) <= 1.5


@pytest.mark.slow
def test_status_counts_uptime_from_the_start_of_the_process_that_answers_not_its_first_request(reeve_home):
    reeve_home.extra_env["PULSE_API_TOKEN"] = "uptime-test-token-long-enough-to-be-served"
    answered = reeve_home.manage("shell", "-c", FIRST_REQUEST_LATE)
    assert float(answered.stdout.strip().splitlines()[-1]) >= 2.5
