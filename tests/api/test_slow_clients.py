"""The web process under slow clients (issue 30, 6b): real gunicorn with deploy/gunicorn.conf.py on
127.0.0.1, a bounded slowloris from this process, /api/health timed meanwhile."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from pulses.web.slow_clients import request_complete

SLOW_CLIENTS = 6  # more than the web process's four threads


def test_a_request_is_complete_once_its_head_and_its_announced_body_are_in():
    head = b"POST /api/notify HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
    assert not request_complete(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
    assert request_complete(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not request_complete(head + b"abc")
    assert request_complete(head + b"abcde")
    chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
    assert not request_complete(chunked) and request_complete(chunked + b"0\r\n\r\n")
    # A client waiting for "100 Continue" sends its body only once gunicorn answers, in the thread.
    assert request_complete(head.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))


def _slowloris(port: int, stop: threading.Event, dropped: list[float], *, kind: str) -> None:
    """One slow client: a request line, then one header line every second, never the blank line
    ("head"); a whole head announcing 1000 bytes of body, then one byte a second ("body"); or a whole
    request with the next one's first line pipelined behind it, then its header lines ("pipelined")."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        health = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        sock.sendall(
            {
                "head": health,
                "body": b"POST /api/notify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n",
                "pipelined": health + b"\r\n" + health,
            }[kind]
        )
        body = kind == "body"
        n = 0
        while not stop.is_set():
            try:
                sock.sendall(b"a" if body else f"X-Slow-{n}: {'a' * 20}\r\n".encode())
                sock.settimeout(1.0)
                if sock.recv(1024) == b"":
                    dropped.append(time.monotonic() - started)
                    return
            except TimeoutError:
                n += 1
            except OSError:
                dropped.append(time.monotonic() - started)
                return


def _health_seconds(port: int) -> float:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    return time.monotonic() - started


@pytest.mark.slow
def test_health_answers_within_two_seconds_while_slow_clients_trickle_headers_or_bodies_and_are_dropped(
    live_reeve,
):
    live_reeve.start(web_only=True, WEB_REQUEST_READ_SECONDS="4")
    stop, dropped = threading.Event(), []
    clients = [
        threading.Thread(
            target=_slowloris,
            args=(live_reeve.port, stop, dropped),
            kwargs={"kind": ("head", "body", "pipelined")[n % 3]},
            daemon=True,
        )
        for n in range(SLOW_CLIENTS)
    ]
    for client in clients:
        client.start()
    try:
        time.sleep(0.5)  # every slow client is connected and has sent its request line
        waits = []
        for _ in range(8):
            waits.append(_health_seconds(live_reeve.port))
            time.sleep(0.5)
        assert max(waits) < 2.0, waits
        for client in clients:
            client.join(timeout=10)
        # Each slow client was dropped once its time to send the request was up, not served forever.
        assert len(dropped) == SLOW_CLIENTS and max(dropped) < 8, dropped
    finally:
        stop.set()
    # An ordinary request with a body is still served, and one that waits for "100 Continue" first.
    assert live_reeve.request("POST", "/api/pulse/trigger", {"prompt": "after the slow clients"})[0] == 201
    with socket.create_connection(("127.0.0.1", live_reeve.port), timeout=10) as sock:
        body = json.dumps({"prompt": "x" * 3000}).encode()
        sock.sendall(
            b"POST /api/pulse/trigger HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {live_reeve.token}\r\nContent-Length: {len(body)}\r\n".encode()
            + b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    assert "web_slow_client_dropped" in live_reeve.log.read_text()
