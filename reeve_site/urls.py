"""Top-level routes: the admin now; the API, dashboard and metrics join here."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
