from django.core.management.base import CommandError

from pulses import answers, budget, reports, run_tails
from pulses.limits import local_time
from pulses.management.base import ReeveCommand, refusals
from pulses.models import Pulse, Status

COLUMNS = ("ID", "STATUS", "PRIORITY", "SCHEDULED", "TRIES", "SOURCE", "PROMPT")


def _when(moment) -> str:
    return local_time(moment).strftime("%Y-%m-%d %H:%M") if moment else "-"


def _slot(slot: reports.BusySlot) -> str:
    """`ordinary: #12 low "prompt…"`, or `critical: free` for a free reserved slot."""
    if slot.pulse is None:
        return f"{slot.kind}: free"
    prompt = " ".join(slot.pulse.prompt.split())
    prompt = prompt if len(prompt) <= 40 else prompt[:39] + "…"
    since = _when(slot.pulse.executed_at)
    return f'{slot.kind}: #{slot.pulse.pk} {slot.pulse.priority} since {since} "{prompt}"'


def _money(amount) -> str:
    return f"${amount:.2f}"


def _spend_line(spend: budget.Spend) -> str:
    """`spend today=$0.12/$5.00 month=$3.40 (no cap) top sources: telegram $2.10, routine $1.30`,
    and what waits when a cap is reached."""
    st = spend.status
    today = _money(st.today_usd) + (f"/{_money(st.daily_cap_usd)}" if st.daily_cap_usd is not None else "")
    month = _money(st.month_usd) + (
        f"/{_money(st.monthly_cap_usd)}" if st.monthly_cap_usd is not None else ""
    )
    line = f"spend today={today} month={month}"
    if st.daily_cap_usd is None and st.monthly_cap_usd is None:
        line += " (no cap)"
    if spend.by_source:
        line += "; this month by source: " + ", ".join(
            f"{s.name} {_money(s.month_usd)}" for s in spend.by_source
        )
    if spend.by_routine:
        line += "; by routine: " + ", ".join(f"{r.name} {_money(r.month_usd)}" for r in spend.by_routine[:5])
    if spend.waiting:
        who = "every pulse waits" if spend.critical_waits else "pulses other than critical wait"
        line += f"\nspend cap reached ({', '.join(spend.caps_reached)}): {who} until {_when(st.resumes_at)}"
    return line


def _tail_line(event) -> str:
    """`14:02:11  tool         Bash: ls -la` (the time in TIME_ZONE)."""
    return f"{local_time(event.at):%H:%M:%S}  {event.kind:<11}  {event.summary}"


class Command(ReeveCommand):
    """Show the pulse queue: pending (default), overdue, failed, completed, all; or one pulse by ID, or
    `last`: the pulse scheduled most recently (`./reeve pulse_queue last` after a trigger_pulse). With a
    pulse and --follow, print what the agent does (tool calls, text, errors) as it runs, until the
    pulse ends, then its answer or error; Ctrl+C stops following (the pulse goes on)."""

    def add_arguments(self, parser):
        parser.add_argument(
            "view",
            nargs="?",
            default="pending",
            help=f"one of {', '.join(reports.LISTINGS)}; a pulse ID, or {reports.LAST} (the newest pulse)",
        )
        parser.add_argument("-n", "--limit", type=int, default=50, help="rows at most (default 50)")
        parser.add_argument(
            "-f",
            "--follow",
            action="store_true",
            help="with a pulse ID or last: print its run's live tail as it comes, until the pulse ends",
        )

    def handle(self, *args, view: str, limit: int, follow: bool, **options) -> None:
        if view == reports.LAST:
            if (newest := reports.last_pulse_id()) is None:
                raise CommandError("no pulse yet: ./reeve trigger_pulse PROMPT schedules one")
            view = str(newest)
        if follow and not view.isdigit():
            raise CommandError(
                "--follow needs a pulse: pulse_queue ID --follow (or pulse_queue last --follow)"
            )
        if follow:
            return self._follow(int(view))
        if view.isdigit():
            return self._detail(int(view))
        with refusals(ValueError):
            pulses = reports.listing(view, limit=limit)
        counts = reports.stats().by_status
        self.stdout.write(" ".join(f"{name}={n}" for name, n in counts.items()))
        self.stdout.write(_spend_line(budget.spend()))
        workers = reports.recent_workers()  # alive now: reporting, not stopped
        for name, slots in reports.worker_slots(workers).items():
            self.stdout.write(f"worker {name}: " + "; ".join(_slot(slot) for slot in slots))
        if not workers:
            self.stdout.write("worker: none running")
        if not pulses:
            self.stdout.write(f"No {view} pulses.")
            return
        rows = [COLUMNS] + [
            (
                str(p.pk),
                p.status,
                p.priority,
                _when(p.scheduled_at),
                f"{p.attempt_count}/{p.max_retries + 1}",
                p.source,
                " ".join(p.prompt.split())[:60],
            )
            for p in pulses
        ]
        self.write_table(rows)

    def _detail(self, pulse_id: int) -> None:
        try:
            pulse = Pulse.objects.prefetch_related("attempt_set").select_related("delivery").get(pk=pulse_id)
        except Pulse.DoesNotExist:
            raise CommandError(f"no pulse with id {pulse_id}") from None
        fields = [
            ("id", pulse.pk),
            ("status", pulse.status),
            ("priority", pulse.priority),
            ("scheduled_at", _when(pulse.scheduled_at)),
            ("source", pulse.source),
            ("tags", ", ".join(pulse.tags) or "-"),
            ("session_id", pulse.session_id or "-"),
            ("attempts", f"{pulse.attempt_count} (max retries {pulse.max_retries})"),
            ("executed_at", _when(pulse.executed_at)),
            ("finished_at", _when(pulse.finished_at)),
            ("duration_ms", pulse.execution_duration_ms if pulse.execution_duration_ms is not None else "-"),
            ("error", pulse.error_message or "-"),
            ("prompt", pulse.prompt),
            ("answer", answers.answer_of(pulse.attempt_set.all()) or "-"),
        ]
        if pulse.status == Status.PROCESSING and pulse.stop_requested_by:
            then = "back to pending" if pulse.stop_retry else "cancelled"
            fields.append(("stopping", f"asked by {pulse.stop_requested_by}; then {then}"))
        if delivery := getattr(pulse, "delivery", None):
            detail = f" ({delivery.detail})" if delivery.detail else ""
            fields.append(("telegram", f"{delivery.state}, {delivery.parts_sent} message(s){detail}"))
        options = [  # its own agent options, when it has any (issue 33)
            ("model", pulse.model),
            ("timeout", f"{pulse.timeout_seconds} s" if pulse.timeout_seconds else ""),
            ("max turns", pulse.max_turns or ""),
        ]
        fields += [(name, value) for name, value in options if value]
        self.write_fields(fields)
        for attempt in pulse.attempt_set.all():
            said = answers.first_line(attempt.result_text, 100)
            if attempt.succeeded:
                outcome = f"ok: {said}" if said else "ok"
            else:
                outcome = attempt.error[:100] or "failed"
            self.stdout.write(
                f"  attempt {attempt.number} {_when(attempt.started_at)} "
                f"{attempt.duration_ms or 0} ms exit={attempt.exit_code}: {outcome}"
            )

    def _follow(self, pulse_id: int) -> None:
        """Print the tail's lines as they come; at the end, the pulse's status and answer or error."""
        try:
            for number, page in enumerate(run_tails.follow(pulse_id)):
                if number == 0 and not page.finished:
                    self.stdout.write(f"pulse {pulse_id} {page.status}: following (Ctrl+C stops)")
                for event in page.events:
                    self.stdout.write(_tail_line(event))
                    self.stdout.flush()
                if page.finished:
                    self.stdout.write(f"pulse {pulse_id} {page.status}")
                    if said := page.answer or page.error:
                        self.stdout.write(said)
        except Pulse.DoesNotExist:
            raise CommandError(f"no pulse with id {pulse_id}") from None
        except KeyboardInterrupt:
            self.stdout.write(f"\nStopped following pulse {pulse_id}; it goes on (pulse_queue {pulse_id}).")
            raise SystemExit(130) from None
