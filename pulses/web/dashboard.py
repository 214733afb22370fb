"""`/dashboard/` for staff: what ran, how long it took, what failed, what is next.

Charts are SVG drawn on the server (the geometry is computed here, the template only places it), so
they need no JavaScript and no asset from anywhere but this project; the one script, the running
pulses' live tails (pulses/static/pulses/run_tail.js), polls the API with the page's session.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from pulses import answers, budget, history, queue, reports
from pulses.agent.check import setup_problem
from pulses.ops import health, retention
from pulses.routines import overview as routines
from pulses.timeparse import TimeParseError, parse_when
from pulses.web import metrics
from pulses.web.palette import PRIORITY_COLOURS

CHART_WIDTH = 720
CHART_HEIGHT = 180
AXIS_LEFT = 36
AXIS_BOTTOM = 24


@dataclass(frozen=True)
class HourBar:
    x: float
    width: float
    ok_y: float
    ok_height: float
    failed_y: float
    failed_height: float
    label: str
    show_label: bool
    executed: int
    failed: int


@dataclass(frozen=True)
class DepthBar:
    priority: str
    count: int
    y: float
    width: float
    colour: str


def _nice_max(value: int) -> int:
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000):
        if value <= step * 4:
            return step * 4
    return value


def hour_bars(activity: reports.Activity) -> tuple[list[HourBar], list[tuple[float, int]]]:
    """Stacked bars (succeeded below, failed on top) for each hour, and the y-axis ticks."""
    top = _nice_max(max((h.executed for h in activity.per_hour), default=0))
    plot_height = CHART_HEIGHT - AXIS_BOTTOM - 8
    slot = (CHART_WIDTH - AXIS_LEFT) / max(len(activity.per_hour), 1)
    bars = []
    for index, hour in enumerate(activity.per_hour):
        ok_height = (hour.executed - hour.failed) / top * plot_height
        failed_height = hour.failed / top * plot_height
        base = CHART_HEIGHT - AXIS_BOTTOM
        local = timezone.localtime(hour.hour)
        bars.append(
            HourBar(
                x=AXIS_LEFT + index * slot + 2,
                width=max(slot - 4, 1),
                ok_y=base - ok_height,
                ok_height=ok_height,
                failed_y=base - ok_height - failed_height,
                failed_height=failed_height,
                label=local.strftime("%H:00"),
                show_label=index % 3 == 0,
                executed=hour.executed,
                failed=hour.failed,
            )
        )
    ticks = [(CHART_HEIGHT - AXIS_BOTTOM - plot_height * i / 4, top * i // 4) for i in range(5)]
    return bars, ticks


def depth_bars(pending_by_priority: dict[str, int]) -> list[DepthBar]:
    """One horizontal bar per priority, scaled to the deepest."""
    deepest = max(pending_by_priority.values(), default=0) or 1
    return [
        DepthBar(
            priority=priority,
            count=count,
            y=10 + index * 30,
            width=count / deepest * 420,
            colour=PRIORITY_COLOURS.get(priority, "#6b7280"),
        )
        for index, (priority, count) in enumerate(pending_by_priority.items())
    ]


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _duration(ms: float | None) -> str:
    if ms is None:
        return "–"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


@staff_member_required
def dashboard_view(request: HttpRequest) -> HttpResponse:
    """The dashboard page (staff only; others are sent to the admin login)."""
    activity = reports.activity(hours=24)
    stats = reports.stats()
    latency = metrics.api_latency()
    bars, ticks = hour_bars(activity)
    facts = history.database_facts()
    hold = queue.agent_hold_state()
    context = {
        "activity": activity,
        "stats": stats,
        "bars": bars,
        "ticks": ticks,
        "depth": depth_bars(stats.pending_by_priority),
        "pending_total": stats.by_status.get("pending", 0),
        "chart": {
            "width": CHART_WIDTH,
            "height": CHART_HEIGHT,
            "left": AXIS_LEFT,
            "base": CHART_HEIGHT - AXIS_BOTTOM,
        },
        "failure_rate": _percent(activity.failure_rate),
        "average_duration": _duration(activity.average_duration_ms),
        "p95_duration": _duration(activity.p95_duration_ms),
        "api_average": _duration(latency.average_ms),
        "api_p95": _duration(latency.p95_ms),
        "api_requests": latency.requests,
        "running": reports.listing("processing", limit=10),  # their live tails: run_tail.js
        "upcoming": reports.listing("pending", limit=10),
        "failures": reports.listing("failed", limit=10),
        "runs": answers.recent_runs(limit=10),
        "agent_problem": setup_problem() or hold.summary(),
        "agent_warning": hold.warning,
        "queue_pause": queue.queue_pause_state(),
        "routine_fires": routines.upcoming_fires(limit=10),
        "routine_troubles": routines.needing_attention(limit=10),
        "workers": reports.workers_seen(),
        "health": health.assess(agent=False),  # the agent's own banner above says its part
        "now": timezone.localtime(),
        "facts": facts,
        "database_size": history.size_text(facts.size_bytes),
        "reclaimable": history.size_text(facts.reclaimable_bytes) if facts.reclaimable_bytes else "",
        "retention": retention.describe(),
        "spend": budget.spend(),
    }
    return render(request, "dashboard/index.html", context)


@staff_member_required
@require_POST
def queue_switch_view(request: HttpRequest) -> HttpResponse:
    """The dashboard's pause switch (staff only): `action=pause` with an optional `until` (parsed like
    any time) and `reason`, or `action=resume`; back to the dashboard with what it did."""
    by = f"admin {request.user.get_username()}"
    try:
        if request.POST.get("action") == "resume":
            queue.resume(by=by)
            messages.success(request, "The queue is resumed: pulses are claimed again.")
        else:
            text = request.POST.get("until", "").strip()
            until = parse_when(text) if text else None
            state = queue.pause(by=by, until=until, reason=request.POST.get("reason", ""))
            messages.success(request, f"Paused: {state.summary()}.")
    except (TimeParseError, queue.InvalidPause) as exc:
        messages.error(request, f"Not paused: {exc}")
    return redirect("dashboard")
