from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from pulses.api import agent_views, routine_views, views

app_name = "api"

urlpatterns = [
    path("health", views.HealthView.as_view(), name="health"),
    path("pulse/trigger", views.TriggerView.as_view(), name="trigger"),
    path("pulse/schedule", views.ScheduleView.as_view(), name="schedule"),
    path("pulse/upcoming", views.UpcomingView.as_view(), name="upcoming"),
    path("pulses", views.PulseListView.as_view(), name="pulses"),
    path("pulses/<int:pk>", views.PulseDetailView.as_view(), name="pulse"),
    path("pulses/<int:pk>/tail", views.PulseTailView.as_view(), name="pulse-tail"),
    path("pulses/<int:pk>/cancel", views.CancelView.as_view(), name="cancel"),
    path("pulses/<int:pk>/stop", views.StopView.as_view(), name="stop"),
    path("pulses/<int:pk>/reschedule", views.RescheduleView.as_view(), name="reschedule"),
    path("pulses/<int:pk>/requeue", views.RequeueView.as_view(), name="requeue"),
    path("routines", routine_views.RoutineListView.as_view(), name="routines"),
    path("routines/<str:key>", routine_views.RoutineDetailView.as_view(), name="routine"),
    path("routines/<str:key>/pause", routine_views.RoutinePauseView.as_view(), name="routine-pause"),
    path("routines/<str:key>/resume", routine_views.RoutineResumeView.as_view(), name="routine-resume"),
    path("routines/<str:key>/run", routine_views.RoutineRunView.as_view(), name="routine-run"),
    path("agent/pulses", agent_views.AgentPulsesView.as_view(), name="agent-pulses"),
    path("agent/pulses/<int:pk>/cancel", agent_views.AgentCancelView.as_view(), name="agent-cancel"),
    path(
        "agent/pulses/<int:pk>/reschedule", agent_views.AgentRescheduleView.as_view(), name="agent-reschedule"
    ),
    path("agent/routines", agent_views.AgentRoutinesView.as_view(), name="agent-routines"),
    path("agent/routines/<str:name>", agent_views.AgentRoutineView.as_view(), name="agent-routine"),
    path(
        "agent/routines/<str:name>/pause",
        agent_views.AgentRoutinePauseView.as_view(),
        name="agent-routine-pause",
    ),
    path("notify", agent_views.NotifyView.as_view(), name="notify"),
    path("queue/pause", views.QueuePauseView.as_view(), name="queue-pause"),
    path("queue/resume", views.QueueResumeView.as_view(), name="queue-resume"),
    path("status", views.StatusView.as_view(), name="status"),
    path("stats", views.StatsView.as_view(), name="stats"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script from a URL, not inline: the CSP nginx sets
    # (deploy/nginx/reeve.conf) allows scripts from this server only.
    path("docs", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    # Anything else under /api/ is a JSON 404 (a client should never have to parse an HTML page).
    re_path(r"^", views.not_found, name="not-found"),
]
