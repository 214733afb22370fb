"""Reading the agent's pipes (pulses/agent/output.py): a real process, real pipes."""

import os
import subprocess

import pytest

from pulses.agent import output
from pulses.agent.output import Tail, read_outputs
from pulses.agent.stream import StreamReader

pytestmark = pytest.mark.database_independent

RESULT = '{"type":"result","subtype":"success","is_error":false,"result":"done","total_cost_usd":0.0123}'


def test_the_result_still_in_the_pipe_is_read_when_the_drain_ends_before_this_thread_got_to_it(monkeypatch):
    """A starved reader (a busy machine) may reach the drain's deadline before it read what the agent
    wrote last: the result line. It is read then, without waiting, and the run keeps its answer even
    though a detached child still holds the pipe open."""
    monkeypatch.setattr(output, "DRAIN_SECONDS", 0.0)  # the deadline has passed by the next look
    monkeypatch.setattr(output, "READ_BYTES", 1024)  # so the output takes many reads
    script = f"yes x | head -c 20000; echo '{RESULT}'; sleep 5 &"
    proc = subprocess.Popen(
        ["sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, process_group=0
    )
    try:
        proc.wait(timeout=30)  # it exited; its background `sleep` holds the pipes: no end of file
        exited, exited_signal = os.pipe()
        os.close(exited_signal)  # the watchdog's word: the agent is gone
        reader = StreamReader()
        read_outputs(proc, reader, stdout_tail=Tail(), stderr_tail=Tail(), exited=exited)
        os.close(exited)
    finally:
        os.killpg(proc.pid, 9)
    assert reader.summary.result_seen and reader.summary.result_text == "done"
    assert reader.summary.cost_usd == 0.0123
