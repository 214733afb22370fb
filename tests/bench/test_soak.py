"""bench/soak.py itself: a short soak on SQLite, with a few kills, passes and prints its figures, so
the program the ten-minute figures in docs/performance.md come from cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.reeve_processes import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.database_independent]


def test_a_short_soak_on_sqlite_kills_processes_loses_and_doubles_nothing_and_prints_its_figures():
    argv = [sys.executable, "bench/soak.py", "--minutes", "0.33", "--seed", "3", "--routines", "1"]
    argv += ["--kill-every", "1", "3", "--min-up", "1", "--settle", "60"]
    soak = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=240)
    out = soak.stdout
    assert soak.returncode == 0, out + soak.stderr
    kills = re.search(r"^kills: (\d+) \(.*web \d+, worker-1 \d+, worker-2 \d+, listener \d+\)$", out, re.M)
    assert kills and int(kills[1]) >= 2, out
    assert re.search(r"^pulses: \d+ \(api \d+, .*telegram \d+\); runs: \d+", out, re.M), out
    assert re.search(r"^api: [1-9]\d* keys acknowledged", out, re.M), out
    assert re.search(r"^telegram: [1-9]\d* messages, [1-9]\d* answers", out, re.M), out
    assert "\nlost: 0, doubled: 0, other: 0\n" in out
    assert re.search(r"^wall time: \d+ s \(settled in [\d.]+ s\)$", out, re.M), out
    assert out.rstrip().endswith("result: PASS")
