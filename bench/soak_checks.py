"""What bench/soak.py sent, and the checks it makes once the queue has settled: nothing lost, nothing
doubled. Read from the database (SQLite or PostgreSQL, through ReeveHome.query) and from the fake Bot
API's record of every call."""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tests.support.fake_telegram import FakeTelegram
from tests.support.reeve_processes import ReeveHome

MINUTE = timedelta(minutes=1)
# A routine's pulse is made up to two seconds before its fire (pulses/routines/firing.py FIRE_AHEAD):
# a fire this close to the routines' disabling may or may not have been made.
FIRE_AHEAD = timedelta(seconds=3)
SHOWN = 10  # problems of one kind printed in full


@dataclass
class Load:
    """What the soak's clients sent and what Reeve acknowledged (written by several threads)."""

    acks: dict[str, set[int]] = field(default_factory=dict)  # key -> the pulse ids acknowledged for it
    refusals: list[str] = field(default_factory=list)
    retries: int = 0
    messages: list[tuple[int, int]] = field(default_factory=list)  # (chat, message id)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def acknowledged(self, key: str, pulse_id: int) -> None:
        with self._lock:
            self.acks.setdefault(key, set()).add(pulse_id)

    def refused(self, key: str, why: str) -> None:
        with self._lock:
            self.refusals.append(f"{key}: {why}")

    def retry(self) -> None:
        with self._lock:
            self.retries += 1

    def message(self, chat: int, message_id: int) -> None:
        with self._lock:
            self.messages.append((chat, message_id))


@dataclass
class Outcome:
    figures: dict[str, object] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # neither: the soak's own refusals, a stuck pulse

    @property
    def passed(self) -> bool:
        return not (self.lost or self.doubled or self.other)


def check(home: ReeveHome, fake: FakeTelegram, load: Load, *, routines: tuple[datetime, datetime]) -> Outcome:
    """Every acknowledged key one pulse, every pulse completed with one successful run, every message
    one pulse and one answer, every routine fire in `routines` (from, until) one pulse."""
    outcome = Outcome()
    outcome.other += [f"API refused {refusal}" for refusal in load.refusals]
    check_keys(home, load, outcome)
    check_runs(home, outcome)
    check_messages(home, fake, load, outcome)
    check_fires(home, outcome, *routines)
    return outcome


def check_keys(home: ReeveHome, load: Load, outcome: Outcome) -> None:
    stored = dict(
        home.query("SELECT idempotency_key, id FROM pulses WHERE idempotency_key LIKE ?", ("soak-%",))
    )
    for key, ids in sorted(load.acks.items()):
        if len(ids) > 1:
            outcome.doubled.append(f"key {key}: acknowledged as pulses {sorted(ids)}")
        elif key not in stored:
            outcome.lost.append(f"key {key}: acknowledged as pulse {min(ids)}, not in the database")
        elif stored[key] not in ids:
            outcome.lost.append(f"key {key}: acknowledged as pulse {min(ids)}, stored as {stored[key]}")
    unasked = set(stored) - set(load.acks)
    outcome.other += [f"key {key}: a pulse no client was told of" for key in sorted(unasked)]
    outcome.figures["keys"] = len(load.acks)
    outcome.figures["api_retries"] = load.retries


def check_runs(home: ReeveHome, outcome: Outcome) -> None:
    rows = home.query(
        "SELECT p.id, p.status, p.source, "
        "(SELECT COUNT(*) FROM pulse_attempts a WHERE a.pulse_id = p.id AND a.succeeded), "
        "(SELECT COUNT(*) FROM pulse_attempts a WHERE a.pulse_id = p.id) FROM pulses p ORDER BY p.id"
    )
    for pulse_id, status, source, successes, attempts in rows:
        if status != "completed" or successes == 0:
            error = home.query("SELECT error_message FROM pulses WHERE id = ?", (pulse_id,))[0][0]
            outcome.lost.append(
                f"pulse {pulse_id} ({source}): {status}, {successes} successful of {attempts} runs; "
                f"{error[:200]}"
            )
        elif successes > 1:
            outcome.doubled.append(f"pulse {pulse_id} ({source}): {successes} successful runs")
    outcome.figures["pulses"] = len(rows)
    outcome.figures["by_source"] = dict(Counter(source for _, _, source, _, _ in rows))
    outcome.figures["runs"] = sum(attempts for *_, attempts in rows)
    outcome.figures["run_again"] = sum(1 for *_, attempts in rows if attempts > 1)


def replies(fake: FakeTelegram) -> Counter[tuple[int, int]]:
    """How many messages Telegram took in answer to each (chat, message id)."""
    taken: Counter[tuple[int, int]] = Counter()
    for call in fake.calls_to("sendMessage"):
        reply = call.params.get("reply_parameters")
        if isinstance(reply, str):
            reply = json.loads(reply)
        if call.status == 200 and reply:
            taken[(int(call.params["chat_id"]), int(reply["message_id"]))] += 1
    return taken


def check_messages(home: ReeveHome, fake: FakeTelegram, load: Load, outcome: Outcome) -> None:
    """Every message one pulse and one answer. One exception, Reeve's contract for a send cut short
    (telegram_bridge/answer_sender.py): a listener killed while it hands an answer to Telegram
    cannot know whether Telegram took it, and never sends it again (the Bot API has no idempotency
    key, so it would show twice); it sends a note pointing at the pulse instead. Such an answer,
    which Telegram never got, is counted apart ("cut short"), not as lost, when its delivery says so
    and the note reached the chat."""
    made: dict[tuple[int, int], list] = defaultdict(list)
    for chat, message_id, pulse_id in home.query(
        "SELECT chat_id, message_id, pulse_id FROM telegram_messages WHERE edit_date = 0"
    ):
        made[(chat, message_id)].append(pulse_id)
    in_doubt = {
        (chat, message_id): (pulse_id, detail)
        for chat, message_id, pulse_id, detail in home.query(
            "SELECT chat_id, reply_to_message_id, pulse_id, detail FROM pulse_deliveries WHERE detail LIKE ?",
            ("%may be missing%",),
        )
    }
    answers = replies(fake)
    texts = [call.params.get("text", "") for call in fake.calls_to("sendMessage") if call.status == 200]
    cut_short = 0
    for chat, message_id in load.messages:
        what = f"message {message_id} in chat {chat}"
        pulses = [p for p in made.get((chat, message_id), []) if p is not None]
        if not pulses:
            outcome.lost.append(f"{what}: no pulse")
        elif len(pulses) > 1:
            outcome.doubled.append(f"{what}: pulses {pulses}")
        count = answers.get((chat, message_id), 0)
        if count == 0 and (chat, message_id) in in_doubt:
            pulse_id, detail = in_doubt[(chat, message_id)]
            if any(f"pulse #{pulse_id} on the dashboard" in text for text in texts):
                cut_short += 1
            else:
                outcome.lost.append(f"{what}: no answer, and no note ({detail})")
        elif count == 0:
            outcome.lost.append(f"{what}: no answer")
        elif count > 1:
            outcome.doubled.append(f"{what}: {count} answers")
    telegram_pulses = home.query("SELECT COUNT(*) FROM pulses WHERE source = 'telegram'")[0][0]
    if telegram_pulses > len(load.messages):
        outcome.doubled.append(f"{telegram_pulses} Telegram pulses for {len(load.messages)} messages")
    outcome.figures["messages"] = len(load.messages)
    outcome.figures["answers"] = sum(answers.values())
    outcome.figures["answers_in_doubt"] = len(in_doubt)
    outcome.figures["cut_short"] = cut_short


def parse_time(value: object) -> datetime:
    """A time as either database returns it through ReeveHome.query (text), as aware UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    text = str(value).replace("T", " ")
    if text.endswith("+00"):
        text += ":00"
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def check_fires(home: ReeveHome, outcome: Outcome, since: datetime, until: datetime) -> None:
    """Each routine fires every whole minute after `since`; those up to `until` (the disabling, less
    FIRE_AHEAD) must each be one pulse, and none may be made past `until` plus FIRE_AHEAD."""
    fires: dict[str, list[datetime]] = defaultdict(list)
    for name, fire_at in home.query(
        "SELECT r.name, p.fire_at FROM pulses p JOIN pulse_routines r ON r.id = p.routine_id "
        "WHERE r.name LIKE ?",
        ("soak-%",),
    ):
        fires[name].append(parse_time(fire_at))
    names = [
        name
        for (name,) in home.query(
            "SELECT name FROM pulse_routines WHERE name LIKE ? ORDER BY name", ("soak-%",)
        )
    ]
    first = since.replace(second=0, microsecond=0) + MINUTE
    expected = []
    while first <= until - FIRE_AHEAD:
        expected.append(first)
        first += MINUTE
    for name in names:
        counts = Counter(fires[name])
        for moment, count in sorted(counts.items()):
            if count > 1:
                outcome.doubled.append(f"routine {name}: fire {moment:%H:%M} made {count} pulses")
            if moment not in expected and not (until - FIRE_AHEAD < moment <= until + FIRE_AHEAD):
                outcome.other.append(
                    f"routine {name}: a pulse for {moment:%H:%M:%S}, no fire of its schedule"
                )
        outcome.lost += [
            f"routine {name}: fire {moment:%H:%M} made no pulse" for moment in expected if not counts[moment]
        ]
    outcome.figures["fires"] = sum(len(f) for f in fires.values())
    outcome.figures["fires_expected"] = len(expected) * len(names)


def report(outcome: Outcome, figures: dict) -> None:
    """Print the figures and every problem (the first SHOWN of each kind)."""
    f = {**outcome.figures, **figures}
    kills = f["kills"]
    restarts = "" if f["server_restarts"] is None else f"; server restarts: {f['server_restarts']}"
    print(f"kills: {sum(kills.values())} ({', '.join(f'{n} {k}' for n, k in kills.items())}){restarts}")
    if f["exits"]:
        print(f"ended on their own (exit codes): {f['exits']}")
    sources = ", ".join(f"{source} {n}" for source, n in sorted(f["by_source"].items()))
    print(f"pulses: {f['pulses']} ({sources}); runs: {f['runs']}, {f['run_again']} pulses ran more than once")
    print(f"api: {f['keys']} keys acknowledged, {f['api_retries']} retries")
    print(
        f"telegram: {f['messages']} messages, {f['answers']} answers; {f['answers_in_doubt']} sends cut"
        f" short by a kill, of which Telegram never got {f['cut_short']} (a note said so)"
    )
    print(f"routines: {f['fires']} fires ({f['fires_expected']} due while enabled)")
    settled = "did not settle" if f["settled"] is None else f"settled in {f['settled']:.1f} s"
    print(f"lost: {len(outcome.lost)}, doubled: {len(outcome.doubled)}, other: {len(outcome.other)}")
    print(f"wall time: {f['wall']:.0f} s ({settled})")
    for kind, problems in (("lost", outcome.lost), ("doubled", outcome.doubled), ("other", outcome.other)):
        for problem in problems[:SHOWN]:
            print(f"  {kind}: {problem}")
        if len(problems) > SHOWN:
            print(f"  {kind}: ... and {len(problems) - SHOWN} more")
    print("result:", "PASS" if outcome.passed else "FAIL")
