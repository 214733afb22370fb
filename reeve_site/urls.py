"""Top-level routes: `/` (to the dashboard), the admin, the API, the dashboard and metrics."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from pulses.web.dashboard import dashboard_view, queue_switch_view
from pulses.web.metrics import metrics_view

admin.autodiscover()  # every app's admin module, here rather than in every process (reeve_site/admin_app.py)

urlpatterns = [
    # The dashboard is the front page (staff only: others land on the login first).
    path("", RedirectView.as_view(pattern_name="dashboard"), name="home"),
    path("admin/", admin.site.urls),
    path("api/", include("pulses.api.urls")),
    path("dashboard/", dashboard_view, name="dashboard"),
    path("dashboard/queue", queue_switch_view, name="dashboard-queue"),
    path("metrics", metrics_view, name="metrics"),
    path("metrics/", metrics_view),
]
