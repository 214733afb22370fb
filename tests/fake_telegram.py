"""A fake Telegram Bot API: a real HTTP server on 127.0.0.1 that the real python-telegram-bot client
talks to (point TELEGRAM_API_BASE_URL at `fake.base_url`).

It answers getMe, getUpdates (long polling; an update is confirmed, and dropped, once getUpdates is
called with a higher offset, as Telegram does), sendMessage (rejecting empty and over-long text),
sendChatAction and setMessageReaction, and records every call. Failure modes are switchable:
`fail(502)`, `fail(429, retry_after=2)`, `fail(409)`, a wrong token gets 401, and
`hold_confirmation()` stalls the getUpdates call that would confirm the next delivered batch, so a
test can kill the listener after it received a batch and before it confirmed it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

MESSAGE_LIMIT = 4096
PATH = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>\w+)$")


@dataclass
class Failure:
    status: int
    times: int | None  # None: until cleared
    retry_after: int | None
    description: str
    methods: frozenset[str] | None


@dataclass
class Call:
    method: str
    params: dict
    at: float
    status: int = 200


@dataclass
class FakeTelegram:
    token: str = "123456:TEST-fake-token"
    bot_id: int = 123456
    username: str = "reeve_test_bot"
    calls: list[Call] = field(default_factory=list)
    deliveries: list[list[int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._updates: list[dict] = []
        self._next_update_id = 1000
        self._next_message_id = 1
        self._failures: list[Failure] = []
        self._hold_armed = False
        self._hold_pending = False
        self.confirmation_held = threading.Event()
        self._release = threading.Event()
        self.delivered = threading.Event()
        self._closed = False
        self._server: ThreadingHTTPServer | None = None
        self.on_request: Callable[[], None] | None = None  # called as each request arrives

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeTelegram:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake._serve(self)

            do_GET = do_POST

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-telegram", daemon=True).start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._release.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/bot"

    def env(self, *chat_ids: int, token: str | None = None) -> dict[str, str]:
        """Environment for a Reeve process that should talk to this server."""
        return {
            "TELEGRAM_API_BASE_URL": self.base_url,
            "TELEGRAM_BOT_TOKEN": token or self.token,
            "TELEGRAM_CHAT_ID": ",".join(str(c) for c in chat_ids),
        }

    # --- what users do --------------------------------------------------------------------------
    def send_texts(self, chat_id: int, texts: list[str]) -> list[int]:
        """Several messages that arrive together, so one getUpdates answer carries them all."""
        with self._cond:
            return [self.send_text(chat_id, text) for text in texts]

    def send_text(self, chat_id: int, text: str, *, name: str = "Ada", caption: bool = False) -> int:
        """A user in `chat_id` sends `text` (as a photo caption with caption=True); returns the update id."""
        with self._cond:
            self._next_update_id += 1
            self._next_message_id += 1
            message: dict = {
                "message_id": self._next_message_id,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private", "first_name": name},
                "from": {"id": chat_id, "is_bot": False, "first_name": name, "last_name": "Lovelace"},
            }
            if caption:
                message["photo"] = [{"file_id": "p1", "file_unique_id": "u1", "width": 90, "height": 90}]
                message["caption"] = text
            else:
                message["text"] = text
            self._updates.append({"update_id": self._next_update_id, "message": message})
            self._cond.notify_all()
            return self._next_update_id

    def send_sticker(self, chat_id: int) -> int:
        with self._cond:
            self._next_update_id += 1
            self._next_message_id += 1
            sticker = {
                "file_id": "s1",
                "file_unique_id": "s1u",
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
            }
            message = {
                "message_id": self._next_message_id,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private", "first_name": "Ada"},
                "from": {"id": chat_id, "is_bot": False, "first_name": "Ada"},
                "sticker": sticker,
            }
            self._updates.append({"update_id": self._next_update_id, "message": message})
            self._cond.notify_all()
            return self._next_update_id

    # --- failure switches -----------------------------------------------------------------------
    def fail(
        self,
        status: int,
        *,
        times: int | None = None,
        retry_after: int | None = None,
        description: str | None = None,
        methods: tuple[str, ...] | None = None,
    ) -> None:
        """Answer the next `times` calls (of `methods`, default all) with HTTP `status`."""
        text = description or {
            502: "Bad Gateway",
            429: f"Too Many Requests: retry after {retry_after}",
            409: "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
            "is running",
            401: "Unauthorized",
        }.get(status, "Error")
        with self._cond:
            self._failures.append(
                Failure(status, times, retry_after, text, frozenset(methods) if methods else None)
            )

    def clear_failures(self) -> None:
        with self._cond:
            self._failures.clear()

    def hold_confirmation(self) -> None:
        """After the next non-empty getUpdates answer, stall the getUpdates call that follows (the one
        that would confirm it) until `release()`; it then fails with 502 and confirms nothing."""
        with self._cond:
            self._hold_armed = True
            self.confirmation_held.clear()
            self.delivered.clear()
            self._release.clear()

    def release(self) -> None:
        """Let a stalled confirmation fail, and hold nothing more."""
        with self._cond:
            self._hold_armed = False
            self._hold_pending = False
        self._release.set()

    # --- what the tests read --------------------------------------------------------------------
    def calls_to(self, method: str) -> list[Call]:
        with self._cond:
            return [c for c in self.calls if c.method == method]

    @property
    def sent_texts(self) -> list[str]:
        return [c.params["text"] for c in self.calls_to("sendMessage") if c.status == 200]

    @property
    def pending_update_ids(self) -> list[int]:
        with self._cond:
            return [u["update_id"] for u in self._updates]

    def wait_for(self, predicate, *, timeout: float = 30, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    # --- the server -----------------------------------------------------------------------------
    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        if self.on_request:
            self.on_request()
        match = PATH.match(request.path.split("?", 1)[0])
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        params = _parse(body, request.headers.get("Content-Type", ""))
        if not match:
            return _reply(request, 404, {"ok": False, "error_code": 404, "description": "Not Found"})
        method = match["method"]
        call = Call(method, params, time.monotonic())
        with self._cond:
            self.calls.append(call)
        if match["token"] != self.token:
            call.status = 401
            return _reply(request, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        failure = self._take_failure(method)
        if failure:
            call.status = failure.status
            payload: dict = {"ok": False, "error_code": failure.status, "description": failure.description}
            if failure.retry_after is not None:
                payload["parameters"] = {"retry_after": failure.retry_after}
            return _reply(request, failure.status, payload)
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            call.status = 404
            return _reply(request, 404, {"ok": False, "error_code": 404, "description": "Not Found"})
        status, result = handler(params)
        call.status = status
        if status != 200:
            return _reply(request, status, {"ok": False, "error_code": status, "description": result})
        _reply(request, 200, {"ok": True, "result": result})

    def _take_failure(self, method: str) -> Failure | None:
        with self._cond:
            for failure in self._failures:
                if failure.methods is None or method in failure.methods:
                    if failure.times is not None:
                        failure.times -= 1
                        if failure.times <= 0:
                            self._failures.remove(failure)
                    return failure
        return None

    def _me(self) -> dict:
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "Reeve",
            "username": self.username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _api_getMe(self, params: dict) -> tuple[int, object]:
        return 200, self._me()

    def _api_getUpdates(self, params: dict) -> tuple[int, object]:
        offset = int(params.get("offset") or 0)
        limit = min(int(params.get("limit") or 100), 100)
        timeout = float(params.get("timeout") or 0)
        with self._cond:
            held = self._hold_pending
            self._hold_pending = False
        if held:
            self.confirmation_held.set()
            self._release.wait(timeout=120)
            return 502, "Bad Gateway"
        deadline = time.monotonic() + timeout
        with self._cond:
            if offset > 0:
                # Confirmed: Telegram forgets every update below the offset.
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = [u for u in self._updates if u["update_id"] >= offset][:limit]
            if batch:
                self.deliveries.append([u["update_id"] for u in batch])
                if self._hold_armed:
                    self._hold_armed = False
                    self._hold_pending = True
                self.delivered.set()
            return 200, batch

    def _chat_message(self, chat_id: int, text: str) -> dict:
        with self._cond:
            self._next_message_id += 1
            message_id = self._next_message_id
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "Ada"},
            "from": self._me(),
            "text": text,
        }

    def _api_sendMessage(self, params: dict) -> tuple[int, object]:
        text = params.get("text", "")
        if not text.strip():
            return 400, "Bad Request: message text is empty"
        if len(text.encode("utf-16-le")) // 2 > MESSAGE_LIMIT:
            return 400, "Bad Request: message is too long"
        return 200, self._chat_message(int(params["chat_id"]), text)

    def _api_sendChatAction(self, params: dict) -> tuple[int, object]:
        return 200, True

    def _api_setMessageReaction(self, params: dict) -> tuple[int, object]:
        return 200, True

    def _api_close(self, params: dict) -> tuple[int, object]:
        return 200, True


def _parse(body: bytes, content_type: str) -> dict:
    if not body:
        return {}
    text = body.decode("utf-8")
    if "json" in content_type:
        return json.loads(text)
    return dict(parse_qsl(text, keep_blank_values=True))


def _reply(request: BaseHTTPRequestHandler, status: int, payload: dict) -> None:
    data = json.dumps(payload).encode()
    try:
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client went away (killed listener); nothing to tell it
