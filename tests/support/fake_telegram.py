"""A fake Telegram Bot API: a real HTTP server on 127.0.0.1 that the real python-telegram-bot client
talks to (point TELEGRAM_API_BASE_URL at `fake.base_url`).

It answers getMe, getUpdates (long polling; an update is confirmed, and dropped, once getUpdates is
called with a higher offset, as Telegram does), sendMessage (rejecting empty and over-long text),
sendChatAction, setMessageReaction and getFile (refusing files over 20 MB, as Telegram does), serves
file downloads at `/file/bot<token>/<file_path>`, and records every call. Users send text, photos
(several sizes), documents, voice notes, audio, video notes, locations, venues, contacts, stickers,
polls and dice, and edit their messages; `restart_update_ids()` starts update ids again lower, as
Telegram does after a quiet week. Failure modes are switchable: `fail(502)`,
`fail(429, retry_after=2)`, `fail(409)`, a wrong token gets 401, `hold_confirmation()` stalls the
getUpdates call that would confirm the next delivered batch (so a test can kill the listener after
it received a batch and before it confirmed it), and `hold_download()` sends half of the next file
and stalls there, so a test can kill the listener mid-download.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote

MESSAGE_LIMIT = 4096
PATH = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>\w+)$")
FILE_PATH = re.compile(r"^/file/bot(?P<token>[^/]+)/(?P<path>.+)$")
BOT_DOWNLOAD_LIMIT = 20 * 1024 * 1024  # getFile refuses bigger files: "file is too big"


@dataclass
class FakeFile:
    file_id: str
    unique_id: str
    path: str
    size: int
    content: bytes | None  # None: `size` zero bytes, made only if someone downloads it

    def body(self) -> bytes:
        return self.content if self.content is not None else bytes(self.size)


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
        self._files: dict[str, FakeFile] = {}
        self._messages: dict[int, dict] = {}  # update id -> the message it carried
        self._edit_dates: dict[tuple[int, int], int] = {}  # (chat, message id) -> its latest edit date
        self._hold_download = False
        self._downloads_before_hold = 0
        self.download_held = threading.Event()
        self._download_release = threading.Event()
        self._failures: list[Failure] = []
        self._odd_answers: list[list] = []  # [method, result, times left or None, text_contains]
        self._hold_armed = False
        self._hold_pending = False
        self.confirmation_held = threading.Event()
        self._release = threading.Event()
        self.delivered = threading.Event()
        self._closed = False
        self._server: ThreadingHTTPServer | None = None
        self.on_request: Callable[[], None] | None = None  # called as each request arrives
        self._sends_before_hold: int | None = None
        self.send_held = threading.Event()
        self._send_release = threading.Event()

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
        self._download_release.set()
        self._send_release.set()
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
        if caption:
            return self.send_photo(chat_id, b"\xff\xd8 a sunset \xff\xd9", caption=text, name=name)
        return self.send(chat_id, {"text": text}, name=name)

    def send(self, chat_id: int, content: dict, *, name: str = "Ada") -> int:
        """A user in `chat_id` sends a message with `content` (Bot API fields); returns the update id."""
        with self._cond:
            self._next_message_id += 1
            message: dict = {
                "message_id": self._next_message_id,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private", "first_name": name},
                "from": {"id": chat_id, "is_bot": False, "first_name": name, "last_name": "Lovelace"},
                **content,
            }
            return self._push("message", message)

    def edit(self, update_id: int, **changes: object) -> int:
        """The user edits the message `update_id` carried (new `text=` or `caption=`); returns the
        edit's update id."""
        with self._cond:
            message = {**self._messages[update_id], **changes}
            # Telegram stamps edits in whole seconds; a person's second edit of a message comes a
            # second or more after the first, which a test's two edits in one second would not.
            key = (message["chat"]["id"], message["message_id"])
            message["edit_date"] = max(int(time.time()), self._edit_dates.get(key, 0) + 1)
            self._edit_dates[key] = message["edit_date"]
            return self._push("edited_message", message)

    def message_id_of(self, update_id: int) -> int:
        with self._cond:
            return self._messages[update_id]["message_id"]

    def restart_update_ids(self, at: int) -> None:
        """Number the next updates from `at` + 1, as Telegram does after a week without updates."""
        with self._cond:
            self._next_update_id = at

    def _push(self, kind: str, message: dict) -> int:
        with self._cond:
            self._next_update_id += 1
            self._messages[self._next_update_id] = message
            self._updates.append({"update_id": self._next_update_id, kind: message})
            self._cond.notify_all()
            return self._next_update_id

    def add_file(self, content: bytes | None, *, size: int | None = None, folder: str = "documents") -> dict:
        """A file on the server (`size` bytes of zeros when `content` is None): its Bot API fields."""
        with self._cond:
            number = len(self._files) + 1
            data_size = size if content is None else len(content)
            unique = hashlib.sha256(content or str(number).encode()).hexdigest()[:16]
            fake_file = FakeFile(f"file-{number}", unique, f"{folder}/file_{number}", data_size or 0, content)
            self._files[fake_file.file_id] = fake_file
        return {"file_id": fake_file.file_id, "file_unique_id": unique, "file_size": fake_file.size}

    def send_photo(
        self, chat_id: int, content: bytes, *, caption: str | None = None, name: str = "Ada"
    ) -> int:
        """A photo as Telegram sends it: several sizes, the largest (last) holding `content`."""
        sizes = [
            {**self.add_file(content[:8] + b" thumbnail", folder="photos"), "width": 90, "height": 60},
            {**self.add_file(content[:8] + b" medium", folder="photos"), "width": 320, "height": 213},
            {**self.add_file(content, folder="photos"), "width": 1280, "height": 853},
        ]
        return self.send(chat_id, {"photo": sizes, **({"caption": caption} if caption else {})}, name=name)

    def send_document(
        self,
        chat_id: int,
        content: bytes | None,
        *,
        file_name: str,
        mime_type: str = "application/octet-stream",
        caption: str | None = None,
        size: int | None = None,
    ) -> int:
        document = {**self.add_file(content, size=size), "file_name": file_name, "mime_type": mime_type}
        return self.send(chat_id, {"document": document, **({"caption": caption} if caption else {})})

    def send_voice(self, chat_id: int, content: bytes, *, duration: int) -> int:
        voice = {**self.add_file(content, folder="voice"), "duration": duration, "mime_type": "audio/ogg"}
        return self.send(chat_id, {"voice": voice})

    def send_audio(self, chat_id: int, content: bytes, *, duration: int, title: str) -> int:
        audio = {
            **self.add_file(content, folder="music"),
            "duration": duration,
            "title": title,
            "performer": "Ada",
            "file_name": f"{title}.mp3",
            "mime_type": "audio/mpeg",
        }
        return self.send(chat_id, {"audio": audio})

    def send_video_note(self, chat_id: int, content: bytes, *, duration: int) -> int:
        note = {**self.add_file(content, folder="video_notes"), "duration": duration, "length": 240}
        return self.send(chat_id, {"video_note": note})

    def send_location(self, chat_id: int, latitude: float, longitude: float) -> int:
        return self.send(chat_id, {"location": {"latitude": latitude, "longitude": longitude}})

    def send_venue(self, chat_id: int, latitude: float, longitude: float, *, title: str, address: str) -> int:
        location = {"latitude": latitude, "longitude": longitude}
        venue = {"location": location, "title": title, "address": address}
        return self.send(chat_id, {"venue": venue, "location": location})

    def send_contact(self, chat_id: int, *, phone: str, first_name: str, last_name: str = "") -> int:
        contact = {"phone_number": phone, "first_name": first_name, "last_name": last_name}
        return self.send(chat_id, {"contact": contact})

    def send_sticker(self, chat_id: int) -> int:
        sticker = {
            "file_id": "s1",
            "file_unique_id": "s1u",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        }
        return self.send(chat_id, {"sticker": sticker})

    def send_poll(self, chat_id: int, question: str) -> int:
        poll = {
            "id": "poll-1",
            "question": question,
            "options": [
                {"text": "yes", "voter_count": 0, "persistent_id": "o1"},
                {"text": "no", "voter_count": 0, "persistent_id": "o2"},
            ],
            "total_voter_count": 0,
            "is_closed": False,
            "is_anonymous": True,
            "type": "regular",
            "allows_multiple_answers": False,
            "allows_revoting": False,
            "members_only": False,
        }
        return self.send(chat_id, {"poll": poll})

    def send_dice(self, chat_id: int) -> int:
        return self.send(chat_id, {"dice": {"emoji": "🎲", "value": 4}})

    def send_member_joined(self, chat_id: int) -> int:
        """A service message: nobody sent anything."""
        member = {"id": 9, "is_bot": False, "first_name": "Grace"}
        return self.send(chat_id, {"new_chat_members": [member]})

    def file_bytes(self, path: str) -> bytes:
        """What the server holds at `path` (to compare with what the listener saved)."""
        with self._cond:
            return next(f.body() for f in self._files.values() if f.path == path)

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
            self._odd_answers.clear()

    def answer_oddly(
        self, method: str, result: object, *, times: int | None = None, text_contains: str = ""
    ) -> None:
        """Answer the next `times` calls of `method` (every one when None) with HTTP 200 and `result`
        (`"ok": true`), whatever python-telegram-bot makes of it: `None` where it expects an object
        makes the library raise an error of its own (AttributeError, TypeError), not a TelegramError.
        With `text_contains`, only the calls whose `text` holds it (the message taken as usual)."""
        with self._cond:
            self._odd_answers.append([method, result, times, text_contains])

    def hold_confirmation(self) -> None:
        """After the next non-empty getUpdates answer, stall the getUpdates call that follows (the one
        that would confirm it) until `release()`; it then fails with 502 and confirms nothing."""
        with self._cond:
            self._hold_armed = True
            self.confirmation_held.clear()
            self.delivered.clear()
            self._release.clear()

    def hold_download(self, *, skip: int = 0) -> None:
        """Serve `skip` downloads whole, then send only half of the next one and stall there until
        `release_download()`."""
        with self._cond:
            self._hold_download = True
            self._downloads_before_hold = skip
            self.download_held.clear()
            self._download_release.clear()

    def release_download(self) -> None:
        with self._cond:
            self._hold_download = False
        self._downloads_before_hold = 0
        self._download_release.set()

    def hold_send(self, *, after: int = 0) -> None:
        """Let `after` sendMessage calls through, then take the next message (it is in the chat, as
        Telegram would have it) but stall its answer until `release_send()`: the sender cannot know
        it arrived."""
        with self._cond:
            self._sends_before_hold = after
            self.send_held.clear()
            self._send_release.clear()

    def release_send(self) -> None:
        with self._cond:
            self._sends_before_hold = None
        self._send_release.set()

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
        # python-telegram-bot percent-encodes the file URL (the token's colon too), as Telegram accepts.
        file_match = FILE_PATH.match(unquote(request.path.split("?", 1)[0]))
        if file_match:
            return self._download(request, file_match["token"], file_match["path"])
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
        odd = self._take_odd_answer(method, str(params.get("text", "")))
        if odd is not None:
            call.status = 200
            return _reply(request, 200, {"ok": True, "result": odd[0]})
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            call.status = 404
            return _reply(request, 404, {"ok": False, "error_code": 404, "description": "Not Found"})
        status, result = handler(params)
        call.status = status
        if status != 200:
            return _reply(request, status, {"ok": False, "error_code": status, "description": result})
        _reply(request, 200, {"ok": True, "result": result})

    def _take_odd_answer(self, method: str, text: str) -> tuple[object] | None:
        with self._cond:
            for odd in self._odd_answers:
                if odd[0] == method and odd[3] in text:
                    if odd[2] is not None:
                        odd[2] -= 1
                        if odd[2] <= 0:
                            self._odd_answers.remove(odd)
                    return (odd[1],)
        return None

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
        message = self._chat_message(int(params["chat_id"]), text)
        with self._cond:
            hold = self._sends_before_hold == 0
            if self._sends_before_hold is not None:
                self._sends_before_hold -= 1
        if hold:
            self.send_held.set()
            self._send_release.wait(timeout=120)
        return 200, message

    def _api_sendChatAction(self, params: dict) -> tuple[int, object]:
        return 200, True

    def _api_setMessageReaction(self, params: dict) -> tuple[int, object]:
        return 200, True

    def _api_close(self, params: dict) -> tuple[int, object]:
        return 200, True

    def _api_getFile(self, params: dict) -> tuple[int, object]:
        with self._cond:
            fake_file = self._files.get(str(params.get("file_id", "")))
        if fake_file is None:
            return 400, "Bad Request: invalid file_id"
        if fake_file.size > BOT_DOWNLOAD_LIMIT:
            return 400, "Bad Request: file is too big"
        return 200, {
            "file_id": fake_file.file_id,
            "file_unique_id": fake_file.unique_id,
            "file_size": fake_file.size,
            "file_path": fake_file.path,
        }

    def _download(self, request: BaseHTTPRequestHandler, token: str, path: str) -> None:
        call = Call("download", {"file_path": path}, time.monotonic())
        with self._cond:
            self.calls.append(call)
            fake_file = next((f for f in self._files.values() if f.path == path), None)
            hold = self._hold_download and fake_file is not None and self._downloads_before_hold == 0
            if hold:
                self._hold_download = False
            elif self._hold_download and fake_file is not None:
                self._downloads_before_hold -= 1
        if token != self.token or fake_file is None:
            call.status = 404
            return _reply(request, 404, {"ok": False, "error_code": 404, "description": "Not Found"})
        body = fake_file.body()
        try:
            request.send_response(200)
            request.send_header("Content-Type", "application/octet-stream")
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            if hold:
                request.wfile.write(body[: len(body) // 2])
                request.wfile.flush()
                self.download_held.set()
                self._download_release.wait(timeout=120)
                call.status = 502  # the connection closes with the file half sent
                request.close_connection = True
                return
            request.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            call.status = 499


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
