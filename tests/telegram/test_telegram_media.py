"""Files sent in Telegram reach the Desk and the agent: the real listener against the fake Bot API's
getFile and file downloads, the real worker with the fake agent."""

from __future__ import annotations

import re
import signal
import stat
from pathlib import Path

import pytest

from tests.support.fake_telegram import FakeTelegram
from tests.support.reeve_processes import ReeveHome
from tests.telegram.test_telegram_listener import (
    CHAT,
    agent_prompts,
    applied_messages,
    listen,
    stop,
    telegram_pulses,
    wait_for_pulses,
)

pytestmark = pytest.mark.slow

PHOTO = b"\xff\xd8\xff\xe0 a receipt from the bakery " + bytes(range(256)) * 40 + b"\xff\xd9"
PDF = b"%PDF-1.7 the lease agreement " + bytes(range(256)) * 200 + b"%%EOF"
VOICE = b"OggS a voice note saying buy milk " + bytes(range(256)) * 30
SAVED_AT = re.compile(r"saved at (\S+)")


@pytest.fixture
def home(reeve_home: ReeveHome, fake_telegram: FakeTelegram) -> ReeveHome:
    reeve_home.extra_env.update(fake_telegram.env(CHAT))
    # One run at a time, so the agent sees the messages in the order they came (a reserved critical
    # slot would run two chats' messages side by side, in either order).
    reeve_home.extra_env["PULSE_CRITICAL_RESERVED"] = "0"
    return reeve_home


def saved_path(prompt: str) -> Path:
    match = SAVED_AT.search(prompt)
    assert match, prompt
    return Path(match.group(1))


def inbox_files(home: ReeveHome) -> list[Path]:
    return sorted(p for p in (home.desk / "inbox").rglob("*") if p.is_file())


def send_the_four(fake: FakeTelegram) -> list[int]:
    return [
        fake.send_photo(CHAT, PHOTO),
        fake.send_document(CHAT, PDF, file_name="lease.pdf", mime_type="application/pdf"),
        fake.send_voice(CHAT, VOICE, duration=7),
        fake.send_photo(CHAT, PHOTO[::-1], caption="the whiteboard after the meeting"),
    ]


def assert_the_four_arrived_once(home: ReeveHome, fake: FakeTelegram) -> None:
    photo, document, voice, captioned = (p["prompt"] for p in telegram_pulses(home))
    assert len(telegram_pulses(home)) == 4
    assert photo.startswith("Telegram message from Ada Lovelace: Photo (1280x853) saved at ")
    assert document.startswith(
        "Telegram message from Ada Lovelace: Document (sent as 'lease.pdf', application/pdf) saved at "
    )
    assert voice.startswith(
        "Telegram message from Ada Lovelace: Voice note (audio/ogg, 7 s, not transcribed)"
    )
    assert captioned.startswith(
        "Telegram message from Ada Lovelace: the whiteboard after the meeting\nPhoto (1280x853) saved at "
    )
    paths = [saved_path(prompt) for prompt in (photo, document, voice, captioned)]
    for path, content in zip(paths, (PHOTO, PDF, VOICE, PHOTO[::-1]), strict=True):
        assert path.read_bytes() == content
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert path.parent.parent == home.desk / "inbox" / "telegram"
    assert [p.suffix for p in paths] == [".jpg", ".pdf", ".oga", ".jpg"]
    assert inbox_files(home) == sorted(paths)  # nothing else: no second copy, no partial file
    assert len(applied_messages(home)) == 4


def test_photos_a_document_and_a_voice_note_are_saved_in_the_desk_and_named_in_the_prompt(
    home, fake_telegram
):
    listener = listen(home)
    send_the_four(fake_telegram)
    wait_for_pulses(home, 4)
    fake_telegram.wait_for(lambda: not fake_telegram.pending_update_ids, what="all confirmed")
    assert stop(listener) == 0

    assert_the_four_arrived_once(home, fake_telegram)
    # Only the largest size of each photo was fetched, through getFile on the same server.
    fetched = [c.params["file_path"] for c in fake_telegram.calls_to("download")]
    assert len(fetched) == 4 and len(fake_telegram.calls_to("getFile")) == 4
    assert fake_telegram.file_bytes(fetched[0]) == PHOTO
    home.manage("run_pulse_worker", "--once")
    assert agent_prompts(home) == [p["prompt"] for p in telegram_pulses(home)]


def test_audio_and_a_video_note_are_saved_too(home, fake_telegram):
    listener = listen(home)
    fake_telegram.send_audio(CHAT, b"ID3 a song", duration=185, title="Blue Monday")
    fake_telegram.send_video_note(CHAT, b"\x00\x00\x00\x18ftypmp42 a round video", duration=12)
    audio, note = wait_for_pulses(home, 2)
    assert stop(listener) == 0

    assert (
        "Audio file (sent as 'Blue Monday.mp3', audio/mpeg, 185 s, Ada – Blue Monday) saved at"
        in audio["prompt"]
    )
    assert saved_path(audio["prompt"]).read_bytes() == b"ID3 a song"
    assert "Video note (12 s) saved at" in note["prompt"]
    assert saved_path(note["prompt"]).read_bytes().endswith(b"a round video")


@pytest.mark.parametrize("when", ["mid-download of the first file", "mid-download of the third file"])
def test_a_listener_killed_mid_download_delivers_each_file_once_after_a_restart(home, fake_telegram, when):
    listener = listen(home)
    fake_telegram.wait_for(lambda: fake_telegram.calls_to("getUpdates"), what="the first poll")
    fake_telegram.hold_download(skip=0 if "first" in when else 2)
    send_the_four(fake_telegram)
    assert fake_telegram.download_held.wait(timeout=60)
    listener.send_signal(signal.SIGKILL)
    listener.wait(timeout=10)
    fake_telegram.release_download()
    committed = len(telegram_pulses(home))
    assert committed == (0 if "first" in when else 2)
    assert fake_telegram.pending_update_ids  # nothing of the batch was confirmed

    restarted = listen(home)
    wait_for_pulses(home, 4)
    fake_telegram.wait_for(lambda: not fake_telegram.pending_update_ids, what="the batch confirmed")
    assert stop(restarted) == 0

    assert_the_four_arrived_once(home, fake_telegram)
    # What was committed before the kill was not downloaded again.
    assert len(fake_telegram.calls_to("download")) == 4 + 1
    home.manage("run_pulse_worker", "--once")
    assert len(home.agent_starts()) == 4


def test_a_30_mb_document_gets_the_limit_reply_and_its_caption_still_reaches_the_agent(home, fake_telegram):
    listener = listen(home)
    big = 30 * 1024 * 1024
    fake_telegram.send_document(CHAT, None, size=big, file_name="scan.tiff", caption="my passport scan")
    fake_telegram.send_document(CHAT, None, size=big, file_name="backup.zip")
    [pulse] = wait_for_pulses(home, 1)
    fake_telegram.wait_for(lambda: len(fake_telegram.sent_texts) == 2, what="two replies")
    fake_telegram.wait_for(lambda: not fake_telegram.pending_update_ids, what="all confirmed")
    assert stop(listener) == 0

    limit = "your document: it is 30 MB and Reeve takes files up to 20 MB (TELEGRAM_MAX_FILE_MB)"
    assert fake_telegram.sent_texts == [
        f"⚠️ I could not pass on {limit}. The rest of your message went through.",
        f"⚠️ I could not pass on {limit}.",
    ]
    assert pulse["prompt"] == (
        "Telegram message from Ada Lovelace: my passport scan\n"
        f"(They also sent a file Reeve could not save: {limit}.)"
    )
    assert fake_telegram.calls_to("download") == [] and inbox_files(home) == []
    home.manage("run_pulse_worker", "--once")
    assert agent_prompts(home) == [pulse["prompt"]]  # the caption's pulse ran; the bare file started nothing


def _send_a_photo_reeve_cannot_pass_on(home, fake_telegram, caption: str, **env: str) -> dict:
    """Send a captioned photo through the listener; the caption's pulse, once Reeve's reply came."""
    listener = listen(home, **env)
    fake_telegram.send_photo(CHAT, PHOTO, caption=caption)
    [pulse] = wait_for_pulses(home, 1)
    fake_telegram.wait_for(lambda: fake_telegram.sent_texts, what="the reply")
    assert stop(listener) == 0
    return pulse


def test_telegram_max_file_mb_sets_the_limit(home, fake_telegram):
    pulse = _send_a_photo_reeve_cannot_pass_on(
        home, fake_telegram, "too big for this Reeve", TELEGRAM_MAX_FILE_MB="0.001"
    )

    assert fake_telegram.sent_texts == [
        "⚠️ I could not pass on your photo: it is 10 KB and Reeve takes files up to 1 KB "
        "(TELEGRAM_MAX_FILE_MB). The rest of your message went through."
    ]
    assert pulse["prompt"].startswith("Telegram message from Ada Lovelace: too big for this Reeve\n")
    assert inbox_files(home) == []


def test_a_failed_download_gets_a_reply_and_the_text_still_goes_through(home, fake_telegram):
    fake_telegram.fail(
        400,
        description="Bad Request: wrong file_id or the file is temporarily unavailable",
        methods=("getFile",),
    )
    pulse = _send_a_photo_reeve_cannot_pass_on(home, fake_telegram, "does this look right?")

    assert fake_telegram.sent_texts == [
        '⚠️ I could not pass on your photo: Telegram said "Wrong file_id or the file is temporarily '
        'unavailable". The rest of your message went through.'
    ]
    assert pulse["prompt"].startswith("Telegram message from Ada Lovelace: does this look right?\n")


def test_an_edited_caption_keeps_the_saved_photo_without_downloading_it_again(home, fake_telegram):
    listener = listen(home)
    sent = fake_telegram.send_photo(CHAT, PHOTO, caption="teh receipt")
    [pulse] = wait_for_pulses(home, 1)
    fake_telegram.edit(sent, caption="the receipt")
    home.wait_for(lambda: "the receipt\n" in telegram_pulses(home)[0]["prompt"], what="the caption edited")
    assert stop(listener) == 0

    [updated] = telegram_pulses(home)
    assert saved_path(updated["prompt"]) == saved_path(pulse["prompt"])
    assert len(fake_telegram.calls_to("download")) == 1
