"""The answers' outbox: one row per pulse whose answer goes back to Telegram (`Delivery`), written
with the pulse (`queue.schedule`) and worked off by the Telegram listener (`telegram_bridge.outbox`)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class DeliveryState(models.TextChoices):
    WAITING = "waiting"  # the pulse has not finished yet, or its answer is still to be sent
    SENT = "sent"
    SKIPPED = "skipped"  # nothing to send: the agent said it already, or had nothing to say
    FAILED = "failed"  # Telegram refused it for good (the chat is gone, the bot was blocked)


class Delivery(models.Model):
    """The outbox row of a pulse whose answer goes back to Telegram when it finishes.

    Written with the pulse, in its transaction, so the request can never be lost; the Telegram
    listener sends the answer once the pulse has finished, noting each part before it hands it to
    Telegram (`parts_started`) and once Telegram took it (`parts_sent`), so a crash between the run
    and the send never loses the answer and never sends a part twice (telegram_bridge/outbox.py).
    """

    pulse = models.OneToOneField("pulses.Pulse", on_delete=models.CASCADE, related_name="delivery")
    # The chat to answer in and the message to answer; no chat means every configured chat.
    chat_id = models.BigIntegerField(null=True, blank=True)
    reply_to_message_id = models.BigIntegerField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=DeliveryState.choices, default=DeliveryState.WAITING)
    agent_notified = models.BooleanField(
        default=False, help_text="the agent messaged the user itself during the run (send_notification)"
    )
    parts_sent = models.PositiveIntegerField(default=0)
    # Noted before each send: one more than parts_sent means a send was cut short (a crash, a stop, a
    # timeout) and that message may or may not have arrived; it is never sent again.
    parts_started = models.PositiveIntegerField(default=0)
    tries = models.PositiveIntegerField(default=0)
    next_try_at = models.DateTimeField(null=True, blank=True)
    detail = models.TextField(blank=True, default="", help_text="why it was skipped, or Telegram's refusal")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "pulse_deliveries"
        indexes = [
            # The listener's outbox sweep reads only the deliveries still to do, however many were sent.
            models.Index(fields=["pulse"], condition=Q(state="waiting"), name="deliveries_waiting_idx"),
        ]

    def __str__(self) -> str:
        return f"answer of pulse #{self.pulse_id}: {self.state}"
