"""What the bridge remembers: each chat's conversation, and which failed pulses were alerted."""

from __future__ import annotations

from django.db import models


class TelegramChat(models.Model):
    """One allowed chat: the pulse its next message follows up, and the last update applied to it."""

    chat_id = models.BigIntegerField(unique=True)
    title = models.CharField(max_length=200, blank=True, default="")
    # The chat's latest pulse; the session the worker stored on it is the one the next message resumes.
    last_pulse = models.ForeignKey(
        "pulses.Pulse", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Updates of `bot_id` at or below this id were applied already (a redelivery is skipped). Update
    # ids only grow for one bot; another bot (a new token) counts from elsewhere, hence the bot id.
    bot_id = models.BigIntegerField(default=0)
    last_update_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "telegram_chats"

    def __str__(self) -> str:
        return f"chat {self.chat_id} {self.title}".strip()


class PulseAlert(models.Model):
    """The Telegram alert sent for a pulse that failed for good (at most one per interval)."""

    pulse = models.OneToOneField("pulses.Pulse", on_delete=models.CASCADE, related_name="telegram_alert")
    sent_at = models.DateTimeField()
    count = models.PositiveIntegerField(default=1)

    class Meta:
        db_table = "telegram_pulse_alerts"

    def __str__(self) -> str:
        return f"alert for pulse #{self.pulse_id} at {self.sent_at:%Y-%m-%d %H:%M}"
