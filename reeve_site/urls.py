"""Top-level routes: the admin now; the API, dashboard and metrics join here."""

from django.contrib import admin
from django.urls import include, path

from pulses.web.dashboard import dashboard_view
from pulses.web.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("pulses.api.urls")),
    path("dashboard/", dashboard_view, name="dashboard"),
    path("metrics", metrics_view, name="metrics"),
]
