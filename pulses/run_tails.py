"""The live tail of a run: the last PULSE_TAIL_EVENTS lines of what the agent did (tool calls, its
text, errors; pulses/agent/events.py says what a line is), written by the worker while the run goes on
and read by `GET /api/pulses/{id}/tail`, the admin's pulse page, the dashboard and `pulse_queue ID
--follow`.

The worker never writes a line at a time: `TailWriter` keeps what the agent printed in memory and
writes it in one short transaction at most every FLUSH_SECONDS (on SQLite inside the write gate), off
the thread that reads the agent's output, and once more when the run ends, before its result is
recorded (so a reader that sees the pulse finished has seen its whole tail). No transaction is held
while the agent runs. The tail is for watching, never for the queue's state: a write that fails is
logged and dropped, the run goes on.

`seq` grows along the pulse's whole life (every attempt continues it), so a reader asks for what
came after the last line it has; each run (pulse, attempt number) keeps its last PULSE_TAIL_EVENTS.
Retention (pulses/ops/retention.py): the lines go with their pulse, and after PULSE_OUTPUT_TAIL_DAYS.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connections, models, transaction
from django.db.models import Max

from pulses.agent.events import KINDS, RunEvent
from pulses.db.write_gate import write_gate
from pulses.limits import RUN_TAIL_SUMMARY_CHARS
from pulses.states import FINISHED

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5  # at most one write transaction per run this often
PAGE_SIZE = 500  # lines in one answer of the API (ask again with `after` for more)
FOLLOW_POLL_SECONDS = 0.5


class RunTailEvent(models.Model):
    """One line of a run's live tail."""

    # Indexed by the (pulse, seq) constraint: a second index on pulse alone would only cost writes.
    pulse = models.ForeignKey("pulses.Pulse", on_delete=models.CASCADE, related_name="+", db_index=False)
    attempt = models.PositiveIntegerField(help_text="the attempt number of the run that printed it")
    seq = models.PositiveBigIntegerField(help_text="its place in the pulse's tail, across attempts")
    kind = models.CharField(max_length=16, choices=[(kind, kind) for kind in KINDS])
    summary = models.CharField(max_length=RUN_TAIL_SUMMARY_CHARS)
    at = models.DateTimeField()

    class Meta:
        db_table = "pulse_run_tails"
        constraints = [models.UniqueConstraint(fields=["pulse", "seq"], name="run_tail_pulse_seq_uniq")]
        indexes = [models.Index(fields=["at"], name="run_tail_at_idx")]  # retention's walk

    def __str__(self) -> str:
        return f"#{self.pulse_id}.{self.attempt} {self.seq} {self.kind}: {self.summary}"


def tail_limit() -> int:
    """How many lines a run keeps (PULSE_TAIL_EVENTS; 0 turns the live tail off)."""
    return max(int(getattr(settings, "PULSE_TAIL_EVENTS", 200)), 0)


def append(pulse_id: int, attempt: int, events: list[RunEvent], *, keep: int) -> None:
    """Store `events` after the pulse's last line, in one short write transaction, and drop this
    run's lines beyond the last `keep`."""
    if not events:
        return
    with write_gate(), transaction.atomic():
        last = RunTailEvent.objects.filter(pulse_id=pulse_id).aggregate(last=Max("seq"))["last"] or 0
        RunTailEvent.objects.bulk_create(
            RunTailEvent(
                pulse_id=pulse_id, attempt=attempt, seq=last + i, kind=e.kind, summary=e.summary, at=e.at
            )
            for i, e in enumerate(events, start=1)
        )
        newest = last + len(events)
        # seq is contiguous within a write, and a run's writes follow each other: its lines older
        # than the last `keep` are those at or below newest - keep (none while the pulse has fewer).
        if newest > keep:
            RunTailEvent.objects.filter(pulse_id=pulse_id, attempt=attempt, seq__lte=newest - keep).delete()


class TailWriter:
    """The worker's side of one run's tail: `add` (on the thread that reads the agent's output) only
    queues a line; a timer thread writes the queue at most every FLUSH_SECONDS; `close` writes the
    rest on the caller's thread. Past `keep` lines waiting, the oldest are dropped unwritten."""

    def __init__(
        self, pulse_id: int, attempt: int, *, keep: int, flush_seconds: float = FLUSH_SECONDS
    ) -> None:
        self.pulse_id = pulse_id
        self.attempt = attempt
        self.keep = keep
        self.flush_seconds = flush_seconds
        self._waiting: collections.deque[RunEvent] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()  # guards _waiting and _timer
        self._writing = threading.Lock()  # one write at a time, so lines keep their order
        self._timer: threading.Timer | None = None
        self._closed = False
        self.written = 0  # lines written
        self.writes = 0  # transactions they took

    def add(self, event: RunEvent) -> None:
        """Queue one line (called by the executor's reader: returns at once)."""
        with self._lock:
            if self._closed:
                return
            self._waiting.append(event)
            if self._timer is None:
                self._timer = threading.Timer(self.flush_seconds, self._flush_on_timer)
                self._timer.daemon = True
                self._timer.start()

    def _flush_on_timer(self) -> None:
        try:
            self.flush()
        finally:
            connections.close_all()  # this timer thread's connection: it ends here

    def flush(self) -> None:
        """Write what waits, in one transaction; a failure is logged and those lines dropped."""
        with self._writing:
            with self._lock:
                batch = list(self._waiting)
                self._waiting.clear()
                self._timer = None
            if not batch:
                return
            try:
                append(self.pulse_id, self.attempt, batch, keep=self.keep)
                self.written += len(batch)
                self.writes += 1
            except Exception as exc:  # the tail is for watching: never a reason for a run to fail
                logger.warning(
                    "run_tail_not_written id=%s attempt=%s lines=%s error=%s",
                    self.pulse_id,
                    self.attempt,
                    len(batch),
                    " ".join(str(exc).split())[:300],
                )

    def close(self) -> None:
        """The run ended: stop the timer and write the rest on this thread."""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.flush()


@dataclass(frozen=True)
class TailPage:
    """What a reader of the tail gets: the pulse's state (read before the lines, so a finished pulse's
    page holds its whole tail) and its lines after `after`, oldest first."""

    pulse_id: int
    status: str
    attempt_count: int
    events: list[RunTailEvent]
    after: int
    answer: str = ""  # once finished: the agent's answer ("" when it gave none)
    error: str = ""  # once finished: why it failed or was cancelled

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def next_after(self) -> int:
        """The `after` to ask with next."""
        return self.events[-1].seq if self.events else self.after


def page(pulse_id: int, *, after: int = 0, limit: int = PAGE_SIZE) -> TailPage:
    """The pulse's tail after line `after` (Pulse.DoesNotExist when there is no such pulse)."""
    from pulses import answers  # imports pulses.models, which imports this module
    from pulses.models import Pulse

    fields = ("status", "attempt_count", "error_message")
    status, attempts, error = Pulse.objects.values_list(*fields).get(pk=pulse_id)
    events = list(RunTailEvent.objects.filter(pulse_id=pulse_id, seq__gt=after).order_by("seq")[:limit])
    ended = {"answer": answers.answer(pulse_id), "error": error} if status in FINISHED else {}
    return TailPage(
        pulse_id=pulse_id, status=status, attempt_count=attempts, events=events, after=after, **ended
    )


def follow(pulse_id: int, *, poll: float = FOLLOW_POLL_SECONDS, after: int = 0) -> Iterator[TailPage]:
    """Pages of the pulse's tail as it grows, every `poll` seconds while a page brings nothing new,
    until the pulse has finished (the last page yielded says so); the first page always comes."""
    first = True
    while True:
        current = page(pulse_id, after=after)
        if current.events or current.finished or first:
            yield current
        first = False
        if current.finished and len(current.events) < PAGE_SIZE:
            return
        after = current.next_after
        if len(current.events) < PAGE_SIZE:
            time.sleep(poll)


def older_than(moment: datetime):
    """Lines written before `moment` (retention's candidates)."""
    return RunTailEvent.objects.filter(at__lt=moment)
