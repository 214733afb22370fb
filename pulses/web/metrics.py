"""Prometheus metrics for `/metrics`, correct across processes (prometheus-client multiprocess mode).

Every Reeve process (each gunicorn worker, the pulse worker) writes its counters and histograms to
its own mmap files in PROMETHEUS_MULTIPROC_DIR (settings put it in REEVE_HOME/metrics and export it
before prometheus_client is imported); a scrape merges them all. Queue depth is read from the
database at scrape time, so it is right whichever process answers.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # django.http loads most of Django: gunicorn's master imports this module without it
    from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

# prometheus-client opens its file in PROMETHEUS_MULTIPROC_DIR as soon as a metric without labels is
# defined, so the folder must exist before the definitions below (the settings only name it).
if _folder := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    Path(_folder).mkdir(parents=True, exist_ok=True)

PULSES_EXECUTED = Counter(
    "reeve_pulses_executed", "Pulse runs (attempts) that finished, by priority", ["priority"]
)
PULSES_FAILED = Counter("reeve_pulses_failed", "Pulse runs (attempts) that failed, by priority", ["priority"])
PULSE_DURATION = Histogram(
    "reeve_pulse_duration_seconds",
    "How long one run of the agent took",
    ["priority"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, float("inf")),
)
API_LATENCY = Histogram(
    "reeve_api_request_duration_seconds",
    "Time to answer an API request, by endpoint",
    ["method", "endpoint", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, float("inf")),
)
ROUTINE_FIRES = Counter("reeve_routine_fires", "Routine fires that became a pulse (catch-ups included)")
ROUTINE_SKIPS = Counter(
    "reeve_routine_skips",
    "Routine fires that did not wake the agent, by reason (missed, window, check)",
    ["reason"],
)
# Exposed as reeve_agent_cost_usd_total: a counter's samples carry the _total suffix, and in
# multiprocess mode each process adds to its own file and a scrape sums them all.
AGENT_COST = Counter(
    "reeve_agent_cost_usd",
    "What the agent's runs cost, in US dollars (its own figure), by source",
    ["source"],
)
_FILE_PID = re.compile(r"_(\d+)\.db$")


def record_attempt(*, priority: str, success: bool, seconds: float) -> None:
    """Count one finished run of a pulse (called by the worker after each attempt)."""
    PULSES_EXECUTED.labels(priority=priority).inc()
    if not success:
        PULSES_FAILED.labels(priority=priority).inc()
    PULSE_DURATION.labels(priority=priority).observe(max(seconds, 0.0))


def record_cost(*, source: str, cost_usd: float | None) -> None:
    """Add one run's cost (when the agent reported one) to reeve_agent_cost_usd_total."""
    if cost_usd is not None and cost_usd > 0:
        AGENT_COST.labels(source=source).inc(cost_usd)


def record_routine_fires(fires: Iterable) -> None:
    """Count what a firing did (`pulses.routines.firing.Fire`s): the fires that became a pulse, the
    fires missed during downtime beyond the one catch-up, and those outside the active window."""
    for fire in fires:
        if fire.missed:
            ROUTINE_SKIPS.labels(reason="missed").inc(fire.missed)
        if fire.outside_window:
            ROUTINE_SKIPS.labels(reason="window").inc()
        elif fire.pulse_id:
            ROUTINE_FIRES.inc()


def record_routine_skip(*, reason: str) -> None:
    """Count one run of a routine that did not wake the agent (`check`: its wake check said so)."""
    ROUTINE_SKIPS.labels(reason=reason).inc()


def multiproc_dir() -> Path | None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(path) if path else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare_multiproc_dir() -> None:
    """Create the metrics directory and drop the files of processes that are gone (a fresh start).

    Files of live processes stay: the web server and the worker start independently and must not
    erase each other's counters."""
    path = multiproc_dir()
    if path is None:
        return
    path.mkdir(parents=True, exist_ok=True)
    removed = 0
    for file in path.glob("*.db"):
        match = _FILE_PID.search(file.name)
        if match and not _alive(int(match.group(1))):
            file.unlink(missing_ok=True)
            removed += 1
    logger.info("metrics_dir_ready path=%s removed_stale_files=%s", path, removed)


def process_exited(pid: int) -> None:
    """Bookkeeping when a gunicorn worker exits (its live gauges go; its counters stay summed in)."""
    if multiproc_dir() is not None:
        multiprocess.mark_process_dead(pid)


class QueueCollector(Collector):
    """Queue depth by status and pending depth by priority, read from the database at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from pulses import reports  # the ORM is ready by the time anyone scrapes

        stats = reports.stats()
        depth = GaugeMetricFamily("reeve_queue_depth", "Pulses in the queue, by status", labels=["status"])
        for status, count in stats.by_status.items():
            depth.add_metric([status], count)
        yield depth
        pending = GaugeMetricFamily("reeve_queue_pending", "Pending pulses, by priority", labels=["priority"])
        for priority, count in stats.pending_by_priority.items():
            pending.add_metric([priority], count)
        yield pending
        yield GaugeMetricFamily(
            "reeve_queue_overdue", "Pending pulses whose time has come", value=stats.overdue
        )
        from pulses import queue

        hold = queue.agent_hold_state()
        held = GaugeMetricFamily(
            "reeve_agent_held",
            "1 while the agent cannot run now and no pulse is claimed (not logged in, no credential, a "
            "usage limit…), by reason; 0 otherwise",
            labels=["reason"],
        )
        held.add_metric([hold.reason], 1 if hold.held else 0)
        yield held
        yield GaugeMetricFamily(
            "reeve_queue_paused",
            "1 while the queue is paused (manage.py queue pause, the admin, the dashboard, the API) and no "
            "pulse is claimed; 0 otherwise",
            value=1 if queue.queue_pause_state().paused else 0,
        )
        from pulses.ops import health

        judged = health.assess()
        yield GaugeMetricFamily(
            "reeve_healthy",
            "1 while Reeve is healthy as reeve-health-check judges it (pulses/ops/health.py: nothing "
            "overdue past PULSE_OVERDUE_ALERT_MINUTES, the listener polling, the outbox moving, the agent "
            "able to run); 0 otherwise",
            value=1 if judged.healthy else 0,
        )
        yield GaugeMetricFamily(
            "reeve_oldest_overdue_seconds",
            "How long the oldest due pulse has waited to be claimed (0: none due)",
            value=judged.oldest_overdue_seconds,
        )
        yield from _budget_metrics()


def _budget_metrics() -> Iterator[GaugeMetricFamily]:
    """With a spend cap set: the caps, the period's spend (from the attempts, so right after any
    restart) and whether pulses wait for the next period. Without one, nothing is read: the spend is
    reeve_agent_cost_usd_total's."""
    from pulses import budget

    limits = budget.caps()
    if all(value is None for value in limits.values()):
        return
    st = budget.status()
    cap = GaugeMetricFamily(
        "reeve_budget_cap_usd", "The spend cap of each period that has one", labels=["period"]
    )
    for period, value in limits.items():
        if value is not None:
            cap.add_metric([period], float(value))
    yield cap
    spent = GaugeMetricFamily(
        "reeve_budget_spent_usd", "What the agent's runs cost in the current period", labels=["period"]
    )
    spent.add_metric([budget.DAY], st.today_usd)
    spent.add_metric([budget.MONTH], st.month_usd)
    yield spent
    yield GaugeMetricFamily(
        "reeve_budget_waiting",
        "1 while a spend cap is reached and pulses other than critical wait for the next period",
        value=1.0 if st.reached else 0.0,
    )


def _registry() -> CollectorRegistry:
    if multiproc_dir() is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def exposition() -> bytes:
    """The Prometheus text for every Reeve process plus the queue's depth."""
    queue_registry = CollectorRegistry(auto_describe=False)
    queue_registry.register(QueueCollector())
    return generate_latest(_registry()) + generate_latest(queue_registry)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """`GET /metrics` in Prometheus text format."""
    from django.http import HttpResponse

    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


@dataclass(frozen=True)
class Latency:
    requests: int
    average_ms: float | None
    p95_ms: float | None


def api_latency() -> Latency:
    """API response time over every process since they started: count, average, ~p95 (from buckets)."""
    count = total = 0.0
    buckets: dict[float, float] = {}
    for family in _registry().collect():
        if family.name != API_LATENCY._name:
            continue
        for sample in family.samples:
            if sample.name.endswith("_count"):
                count += sample.value
            elif sample.name.endswith("_sum"):
                total += sample.value
            elif sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    if not count:
        return Latency(requests=0, average_ms=None, p95_ms=None)
    return Latency(
        requests=int(count), average_ms=total / count * 1000, p95_ms=_quantile(0.95, buckets, count)
    )


def _quantile(q: float, buckets: dict[float, float], count: float) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding the rank."""
    rank = q * count
    lower_bound = lower_count = 0.0
    for bound in sorted(buckets):
        cumulative = buckets[bound]
        if cumulative >= rank:
            if bound == float("inf"):
                return lower_bound * 1000
            width = cumulative - lower_count
            fraction = (rank - lower_count) / width if width else 1.0
            return (lower_bound + (bound - lower_bound) * fraction) * 1000
        lower_bound, lower_count = bound, cumulative
    return None


class ApiMetricsMiddleware:
    """Times every request under /api/ into the latency histogram, labelled by route (not raw path)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith("/api/"):
            return self.get_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        endpoint = "/" + match.route if match is not None else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        API_LATENCY.labels(method=method, endpoint=endpoint, status=str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response


_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
