"""Reading a running agent's output: stdout cut into stream-json lines for the stream reader, stderr
kept as a tail, both read until they end or, once the agent has exited, DRAIN_SECONDS more at most, so
a child it detached (`setsid`) that holds its pipes cannot keep the pulse running. No ORM here."""

from __future__ import annotations

import collections
import logging
import os
import select
import subprocess
import time

from pulses.agent.stream import StreamReader

logger = logging.getLogger(__name__)

MAX_LINE_BYTES = 4 * 1024 * 1024  # a longer stream-json line is dropped, keeping memory bounded
# Once the agent has exited, how long its pipes are still read: what it wrote last is in them, but a
# process it detached from its group (`setsid sleep infinity &`) may hold them open for ever.
DRAIN_SECONDS = 2.0
READ_BYTES = 65536
TAIL_BYTES = 16 * 1024
FINAL_READ_BYTES = 8 * 1024 * 1024  # read at the drain's deadline at most


class Tail:
    """The last `limit` bytes written to it."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._limit = limit

    def write(self, data: bytes) -> None:
        self._chunks.append(data[-self._limit :])
        self._size += len(self._chunks[-1])
        while self._size - len(self._chunks[0]) >= self._limit:
            self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        return b"".join(self._chunks)[-self._limit :].decode("utf-8", "replace")


class _Lines:
    """The agent's stdout cut into whole lines for the stream reader; a line past MAX_LINE_BYTES is
    skipped, never buffered whole, and every byte goes to the tail."""

    def __init__(self, reader: StreamReader, tail: Tail) -> None:
        self._reader = reader
        self._tail = tail
        self._partial = bytearray()
        self._oversized = False  # inside a line already past the limit: skip to its end

    def feed(self, data: bytes) -> None:
        self._tail.write(data)
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            self._line(data[start : end + 1])
            start = end + 1
        if start < len(data) and not self._oversized:
            self._partial += data[start:]
            if len(self._partial) > MAX_LINE_BYTES:
                self._partial.clear()
                self._oversized = True

    def _line(self, piece: bytes) -> None:
        if self._oversized:
            self._oversized = False
            return
        if self._partial:
            piece = bytes(self._partial) + piece
            self._partial.clear()
        if len(piece) <= MAX_LINE_BYTES:
            self._reader.feed(piece.decode("utf-8", "replace"))

    def close(self) -> None:
        """The stream's last line, when it had no newline."""
        if self._partial and not self._oversized:
            self._reader.feed(bytes(self._partial).decode("utf-8", "replace"))
        self._partial.clear()


def read_outputs(
    proc: subprocess.Popen, reader: StreamReader, *, stdout_tail: Tail, stderr_tail: Tail, exited: int
) -> None:
    """Read the agent's stdout (lines to `reader`) and stderr (a tail) until both end, or, once
    `exited` reports the agent gone, DRAIN_SECONDS more at most; then close them."""
    lines = _Lines(reader, stdout_tail)
    sinks = {proc.stdout.fileno(): lines.feed, proc.stderr.fileno(): stderr_tail.write}
    poller = select.poll()
    for fd in (*sinks, exited):
        poller.register(fd, select.POLLIN)
    deadline: float | None = None
    while sinks:
        wait_ms = None
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                _read_what_is_there(poller, sinks)
                if sinks:
                    logger.warning("agent_pipes_held pid=%s after_exit_s=%s", proc.pid, DRAIN_SECONDS)
                break
            wait_ms = int(left * 1000) + 1
        for fd, _ in poller.poll(wait_ms):
            if fd == exited:
                poller.unregister(exited)
                deadline = time.monotonic() + DRAIN_SECONDS
            elif data := os.read(fd, READ_BYTES):
                sinks[fd](data)
            else:
                poller.unregister(fd)
                del sinks[fd]
    lines.close()
    proc.stdout.close()
    proc.stderr.close()


def _read_what_is_there(poller: select.poll, sinks: dict) -> None:
    """What the agent wrote before it exited, still in the pipes: read it all, without waiting. The
    drain's deadline may pass before this thread got to read it at all (a starved process on a busy
    machine), and its last line is the result. Bounded, since a detached child may still be writing."""
    budget = FINAL_READ_BYTES
    while sinks and budget > 0:
        ready = poller.poll(0)
        if not ready:
            return
        for fd, _ in ready:
            if fd not in sinks:
                continue
            if data := os.read(fd, READ_BYTES):
                sinks[fd](data)
                budget -= len(data)
            else:
                poller.unregister(fd)
                del sinks[fd]
