"""The admin of API tokens: read-only, since tokens are made and revoked by `manage.py create_api_token`
(the key shown once there); registered by `pulses.admin`."""

from __future__ import annotations

from django.contrib import admin

from pulses.api.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Read-only: tokens are created and revoked with `manage.py create_api_token` (shown once there)."""

    list_display = ("name", "prefix", "scope", "created_at", "last_used_at", "expires_at", "revoked_at")
    readonly_fields = ("name", "prefix", "scope", "created_at", "last_used_at", "expires_at", "revoked_at")
    exclude = ("key_hash",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
