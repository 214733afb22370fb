"""gunicorn's threaded worker, made safe from slow clients (slowloris, slow bodies).

gunicorn's `gthread` worker hands each connection to a pool thread as soon as its first byte arrives,
and the thread then reads the rest of the request with no deadline: five clients trickling one header
line every few seconds hold four threads for as long as they like, and `/api/health` goes unanswered.
This worker reads each request (its head, and a body of known length) on the worker's own poller,
without a thread, and hands the connection to the pool only once the whole request has arrived; a
request not complete within `WEB_REQUEST_READ_SECONDS` is dropped. A kept-alive connection's next
request is read the same way. Used by deploy/gunicorn.conf.py as `worker_class`.
"""

from __future__ import annotations

import errno
import os
import re
import selectors
import time
from functools import partial

from gunicorn.workers.gthread import _DEFER, TConn, ThreadWorker

# Read at once from a socket that is readable; a request larger than BUFFERED_MAX is handed to a
# thread once its head is in (the thread reads the rest, within the same deadline's spirit: gunicorn's
# own limits and `timeout`).
RECV_BYTES = 64 * 1024
BUFFERED_MAX = 4 * 1024 * 1024
HEAD_END = b"\r\n\r\n"
CONTENT_LENGTH = re.compile(rb"^content-length:[ \t]*(\d{1,12})[ \t]*$", re.IGNORECASE | re.MULTILINE)
# A client that asks to be told to go on (curl does for larger bodies) sends its body only after gunicorn
# answers "100 Continue", in the thread: its head is the whole request the poller can wait for.
EXPECT_CONTINUE = re.compile(rb"^expect:[ \t]*100-continue", re.IGNORECASE | re.MULTILINE)
CHUNKED = re.compile(rb"^transfer-encoding:[^\r\n]*chunked", re.IGNORECASE | re.MULTILINE)


def read_seconds() -> float:
    """The time a client has to send a whole request (WEB_REQUEST_READ_SECONDS, default 10)."""
    from django.conf import settings

    return float(getattr(settings, "WEB_REQUEST_READ_SECONDS", 10))


def request_complete(data: bytes) -> bool:
    """Whether `data` holds a whole request: its head and, with a Content-Length, its body (a chunked
    body once its last chunk is in). Past BUFFERED_MAX the thread reads the rest."""
    end = data.find(HEAD_END)
    if end < 0:
        return len(data) > BUFFERED_MAX  # over-long heads go to gunicorn's parser, which refuses them
    head, body = data[:end], len(data) - end - len(HEAD_END)
    if EXPECT_CONTINUE.search(head):
        return True
    if CHUNKED.search(head):
        return data.endswith(b"0\r\n\r\n") or len(data) > BUFFERED_MAX
    if match := CONTENT_LENGTH.search(head):
        return body >= min(int(match.group(1)), BUFFERED_MAX)
    return True


class DeadlineThreadWorker(ThreadWorker):
    """`gthread` whose threads only ever see requests that have fully arrived."""

    def init_process(self) -> None:
        self.read_seconds = read_seconds()
        self.reading: dict[int, object] = {}  # fileno -> connection whose request is being read
        super().init_process()

    def accept(self, listener) -> None:
        if self.cfg.is_ssl:  # TLS is negotiated in the thread; nginx terminates TLS for Reeve anyway
            return super().accept(listener)
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self._read_request(TConn(self.cfg, client_sock, client_addr, listener.getsockname()))

    def on_client_socket_readable(self, conn, client) -> None:
        """A kept-alive connection's next request: read it without a thread too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._read_request(conn)

    def finish_request(self, conn, fs) -> None:
        """A kept-alive connection whose client pipelined part of its next request: the rest is read
        on the poller too (gthread would hand the part to a thread, to wait there for the rest)."""
        done = not fs.cancelled() and fs.exception() is None and fs.result() not in (False, None, _DEFER)
        if done and self.alive and conn.parser is not None:
            leftover = conn.parser.unreader.take_buffered()
            if leftover and not request_complete(leftover):
                self._read_request(conn, leftover)
                return
            if leftover:
                conn.parser.unreader.unread(leftover)
        super().finish_request(conn, fs)

    def _read_request(self, conn, already: bytes = b"") -> None:
        conn.sock.setblocking(False)
        conn.prefetched = bytearray(already)
        conn.read_deadline = time.monotonic() + self.read_seconds
        self.reading[conn.sock.fileno()] = conn
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_request_bytes, conn))

    def _on_request_bytes(self, conn, client) -> None:
        try:
            data = conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before its request was complete
            self._stop_reading(conn)
            self.nr_conns -= 1
            conn.close()
            return
        conn.prefetched += data
        if request_complete(bytes(conn.prefetched)):
            self._stop_reading(conn)
            conn.data_ready = True
            self.enqueue_req(conn)

    def _stop_reading(self, conn) -> None:
        self.reading.pop(conn.sock.fileno(), None)
        try:
            self.poller.unregister(conn.sock)
        except (OSError, KeyError, ValueError):
            pass

    def murder_pending(self) -> None:
        """Also drop the connections whose request did not arrive in time (checked about each second)."""
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c in self.reading.values() if c.read_deadline <= now]:
            self._stop_reading(conn)
            self.nr_conns -= 1
            conn.close()
            self.log.warning(
                "reeve: web_slow_client_dropped client=%s after_s=%s bytes=%s pid=%s",
                conn.client,
                self.read_seconds,
                len(conn.prefetched),
                os.getpid(),
            )

    def handle(self, conn):
        """Give the parser what the poller read, then let gthread serve the request."""
        prefetched = getattr(conn, "prefetched", None)
        if prefetched:
            conn.prefetched = None
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(bytes(prefetched))
        return super().handle(conn)
