"""What the bridge remembers: each chat's conversation, each message it applied, and which failed
pulses were alerted."""

from __future__ import annotations

from django.db import models


class TelegramChat(models.Model):
    """One allowed chat: the pulse its next message follows up."""

    chat_id = models.BigIntegerField(unique=True)
    title = models.CharField(max_length=200, blank=True, default="")
    # The chat's latest pulse; the session the worker stored on it is the one the next message resumes.
    last_pulse = models.ForeignKey(
        "pulses.Pulse", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "telegram_chats"

    def __str__(self) -> str:
        return f"chat {self.chat_id} {self.title}".strip()


class TelegramMessage(models.Model):
    """One message (or one edit of it) the bridge applied, and the pulse it made or changed.

    The unique key is what never repeats: a bot sees a chat's message id once, and each edit has its
    own edit date. Update ids are no key: Telegram restarts them after a quiet week. The key lives
    here, not in the pulses' `idempotency_key`, which API clients write.
    """

    bot_id = models.BigIntegerField()
    chat_id = models.BigIntegerField()
    message_id = models.BigIntegerField()
    # 0 for the message as first sent; an edit's `edit_date` (Unix seconds) otherwise.
    edit_date = models.BigIntegerField(default=0)
    update_id = models.BigIntegerField(help_text="for reading logs only: Telegram reuses update ids")
    outcome = models.CharField(max_length=32)
    pulse = models.ForeignKey(
        "pulses.Pulse", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Files saved into the Desk for this message: [{"unique_id", "kind", "path", "details"}].
    files = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "telegram_messages"
        constraints = [
            models.UniqueConstraint(
                fields=["bot_id", "chat_id", "message_id", "edit_date"], name="telegram_message_once"
            )
        ]

    def __str__(self) -> str:
        edit = f" edit {self.edit_date}" if self.edit_date else ""
        return f"message {self.message_id} in chat {self.chat_id}{edit}: {self.outcome}"


class UpdateFailure(models.Model):
    """An update whose applying raised an unexpected error (not Telegram's, not the database's): how
    many times, so that one poison update is set aside after a few tries (the person told, the
    operator alerted) instead of blocking every message behind it. Keyed like `TelegramMessage`; an
    update without a message uses chat 0 and its update id as the message id."""

    bot_id = models.BigIntegerField()
    chat_id = models.BigIntegerField()
    message_id = models.BigIntegerField()
    edit_date = models.BigIntegerField(default=0)
    update_id = models.BigIntegerField(help_text="for reading logs only: Telegram reuses update ids")
    tries = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    set_aside_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "telegram_update_failures"
        constraints = [
            models.UniqueConstraint(
                fields=["bot_id", "chat_id", "message_id", "edit_date"], name="telegram_update_failure_once"
            )
        ]

    def __str__(self) -> str:
        state = "set aside" if self.set_aside_at else "failing"
        return f"message {self.message_id} in chat {self.chat_id}: {self.tries} tries, {state}"


class PulseAlert(models.Model):
    """The Telegram alert sent for a pulse that failed for good (at most one per interval)."""

    pulse = models.OneToOneField("pulses.Pulse", on_delete=models.CASCADE, related_name="telegram_alert")
    sent_at = models.DateTimeField()
    count = models.PositiveIntegerField(default=1)

    class Meta:
        db_table = "telegram_pulse_alerts"

    def __str__(self) -> str:
        return f"alert for pulse #{self.pulse_id} at {self.sent_at:%Y-%m-%d %H:%M}"


class BusyNotice(models.Model):
    """A chat was told that its message waits for the agent's run in progress (the same session):
    once per chat per run, however many messages wait behind it."""

    chat_id = models.BigIntegerField()
    busy_pulse = models.ForeignKey("pulses.Pulse", on_delete=models.CASCADE, related_name="+")
    waiting_pulse = models.ForeignKey("pulses.Pulse", on_delete=models.CASCADE, related_name="+")
    sent_at = models.DateTimeField()

    class Meta:
        db_table = "telegram_busy_notices"
        constraints = [
            models.UniqueConstraint(fields=["chat_id", "busy_pulse"], name="telegram_busy_notice_once")
        ]

    def __str__(self) -> str:
        return f"chat {self.chat_id} told pulse #{self.waiting_pulse_id} waits for #{self.busy_pulse_id}"


class NotificationState(models.TextChoices):
    WAITING = "waiting"
    SENT = "sent"
    FAILED = "failed"


class Notification(models.Model):
    """A message an API client (the agent's send_notification) queued for the listener to send to the
    configured chats; `client` is whose rate limit it counts against."""

    text = models.TextField()
    priority = models.CharField(max_length=16)  # silent, normal, critical
    client = models.CharField(max_length=200)
    pulse_id = models.BigIntegerField(null=True, blank=True, help_text="the run that sent it, if any")
    state = models.CharField(
        max_length=16, choices=NotificationState.choices, default=NotificationState.WAITING
    )
    parts_sent = models.PositiveIntegerField(default=0)
    tries = models.PositiveIntegerField(default=0)
    next_try_at = models.DateTimeField(null=True, blank=True)
    detail = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "telegram_notifications"
        indexes = [
            models.Index(fields=["client", "created_at"], name="telegram_notification_client"),
            models.Index(fields=["state", "next_try_at"], name="telegram_notification_due"),
        ]

    def __str__(self) -> str:
        return f"notification #{self.pk} ({self.priority}, {self.state})"
