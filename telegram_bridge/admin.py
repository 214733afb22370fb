"""The admin: each chat's conversation state, the messages applied and the failure alerts sent,
read-only.

The rows are written by the listener and the alert hook; the one change offered, a fresh
conversation, goes through `handlers.start_fresh_conversation` like the chat's own `/new`.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from telegram_bridge import handlers
from telegram_bridge.models import PulseAlert, TelegramChat, TelegramMessage


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(TelegramChat)
class TelegramChatAdmin(ReadOnlyAdmin):
    list_display = ("chat_id", "title", "last_pulse", "session", "updated_at")
    search_fields = ("title", "chat_id")
    actions = ("start_fresh_conversation",)

    @admin.display(description="session resumed next")
    def session(self, chat: TelegramChat) -> str:
        return chat.last_pulse.session_id if chat.last_pulse else ""

    @admin.action(description="Start a fresh conversation (like /new)")
    def start_fresh_conversation(self, request: HttpRequest, queryset: QuerySet[TelegramChat]) -> None:
        count = sum(handlers.start_fresh_conversation(chat.chat_id) for chat in queryset)
        self.message_user(request, f"{count} chat(s) will start a fresh conversation.", messages.SUCCESS)


@admin.register(TelegramMessage)
class TelegramMessageAdmin(ReadOnlyAdmin):
    list_display = ("chat_id", "message_id", "edit_date", "outcome", "pulse", "created_at")
    list_filter = ("outcome",)
    search_fields = ("chat_id", "message_id")
    date_hierarchy = "created_at"


@admin.register(PulseAlert)
class PulseAlertAdmin(ReadOnlyAdmin):
    list_display = ("pulse", "sent_at", "count")
    date_hierarchy = "sent_at"
