"""The answers outbox: what a finished pulse sends back, once, and what it leaves unsaid."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from pulses import answers, queue
from pulses.limits import MAX_ANSWER_PARTS
from pulses.models import Delivery, DeliveryState, Pulse, Status
from telegram_bridge import outbox
from telegram_bridge.alerts import alert_pulse_failed
from telegram_bridge.notify import TELEGRAM_MESSAGE_LIMIT, utf16_len
from tests.support.factories import PulseAttemptFactory, PulseFactory

pytestmark = pytest.mark.django_db
CHATS = (42, 43)


def finished(status: str = Status.COMPLETED, *, answer: str = "It is sunny.", reply_to=(42, 7), **fields):
    """A pulse scheduled with delivery to Telegram, then finished with `answer` as its last result."""
    pulse = queue.schedule(prompt="What is the weather?", deliver="telegram", reply_to=reply_to).pulse
    Pulse.objects.filter(pk=pulse.pk).update(
        status=status, attempt_count=fields.pop("attempt_count", 1), finished_at=timezone.now(), **fields
    )
    if status == Status.COMPLETED:
        PulseAttemptFactory(pulse_id=pulse.pk, result_text=answer)
    pulse.refresh_from_db()
    return pulse


def test_a_pulse_that_asks_for_delivery_gets_its_outbox_row_with_it_and_a_plain_one_does_not():
    asked = queue.schedule(prompt="a", deliver="telegram", reply_to=(42, 7)).pulse
    plain = queue.schedule(prompt="b").pulse

    row = Delivery.objects.get(pulse=asked)
    assert (row.chat_id, row.reply_to_message_id, row.state) == (42, 7, DeliveryState.WAITING)
    assert not Delivery.objects.filter(pulse=plain).exists()
    with pytest.raises(ValueError, match="unknown delivery 'email'"):
        queue.schedule(prompt="c", deliver="email")


def test_nothing_is_taken_before_the_pulse_has_finished():
    queue.schedule(prompt="still pending", deliver="telegram", reply_to=(42, 7))

    assert outbox.take_due(configured_chats=CHATS) == []


def test_a_finished_pulse_is_taken_once_as_a_reply_and_a_second_take_finds_it_held():
    pulse = finished(answer="It is sunny.")

    [outgoing] = outbox.take_due(configured_chats=CHATS)
    assert (outgoing.pulse_id, outgoing.chat_ids, outgoing.reply_to) == (pulse.pk, (42,), 7)
    assert outgoing.parts == ("It is sunny.",)
    assert outbox.take_due(configured_chats=CHATS) == []  # held while it is being sent

    outbox.part_sent(outgoing.delivery_id, sent=1)
    outbox.finish(outgoing.delivery_id, state=DeliveryState.SENT)
    assert Delivery.objects.get(pulse=pulse).state == DeliveryState.SENT


def test_a_send_cut_short_resumes_after_the_parts_already_sent():
    finished(answer="word " * 2000)  # 10,000 characters: three messages
    [first] = outbox.take_due(configured_chats=CHATS)
    assert len(first.messages) == 3
    outbox.part_sent(first.delivery_id, sent=1)
    Delivery.objects.filter(pk=first.delivery_id).update(next_try_at=timezone.now())  # the hold lapsed

    [again] = outbox.take_due(configured_chats=CHATS)
    assert again.parts_sent == 1
    assert [index for index, _, _ in again.messages[again.parts_sent :]] == [1, 2]


def test_a_pulse_for_the_configured_chats_goes_to_each_of_them_not_as_a_reply():
    finished(reply_to=None)

    [outgoing] = outbox.take_due(configured_chats=CHATS)

    assert outgoing.reply_to is None
    assert [(chat, text) for _, chat, text in outgoing.messages] == [
        (42, "It is sunny."),
        (43, "It is sunny."),
    ]


def test_a_retry_waits_longer_each_time_telegram_is_away():
    finished()
    [outgoing] = outbox.take_due(configured_chats=CHATS)

    assert outbox.retry_later(outgoing, error="Bad Gateway") == 1.0
    assert outbox.take_due(configured_chats=CHATS) == []
    assert 0 < outbox.seconds_until_next() <= 1.0
    Delivery.objects.filter(pk=outgoing.delivery_id).update(next_try_at=timezone.now() - timedelta(seconds=1))
    [again] = outbox.take_due(configured_chats=CHATS)
    assert outbox.retry_later(again, error="Bad Gateway") == 2.0
    assert Delivery.objects.get(pk=outgoing.delivery_id).detail == "Bad Gateway"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("nothing to say", "nothing to say (NO_REPLY)"),
        ("agent notified", "messaged the user itself"),
        ("cancelled", "cancelled"),
        ("empty", "empty"),
    ],
)
def test_a_pulse_with_nothing_to_send_is_closed_as_skipped_with_the_reason(case, reason):
    if case == "cancelled":
        pulse = queue.schedule(prompt="never mind", deliver="telegram", reply_to=(42, 7)).pulse
        queue.cancel(pulse.pk)
    else:
        pulse = finished(answer={"nothing to say": " NO_REPLY\n", "empty": ""}.get(case, "Done."))
    if case == "agent notified":
        answers.note_agent_notified(pulse.pk)

    assert outbox.take_due(configured_chats=CHATS) == []

    row = Delivery.objects.get(pulse=pulse)
    assert row.state == DeliveryState.SKIPPED and reason in row.detail


def test_a_pulse_that_failed_for_good_tells_the_chat_in_one_line_and_sends_no_alert(telegram_settings):
    pulse = finished(
        Status.FAILED, attempt_count=4, error_message="Tool Bash failed: permission denied\nmore"
    )

    [outgoing] = outbox.take_due(configured_chats=CHATS)
    alert_pulse_failed(pulse.pk)

    assert outgoing.parts == (
        f"⚠️ I could not answer this (pulse #{pulse.pk} failed after 4 attempts): "
        "Tool Bash failed: permission denied",
    )
    assert telegram_settings.sent_texts == []  # the reply says it; no second message


def test_the_answer_is_the_last_successful_attempts_result_and_its_first_line_is_shortened():
    pulse = PulseFactory(completed=True)
    PulseAttemptFactory(pulse=pulse, number=1, succeeded=False, result_text="", error="boom")
    PulseAttemptFactory(pulse=pulse, number=2, result_text="\n  Tomorrow: dentist at 9.\nThen lunch.")

    assert answers.answer(pulse.pk) == "\n  Tomorrow: dentist at 9.\nThen lunch."
    assert answers.first_line(answers.answer(pulse.pk)) == "Tomorrow: dentist at 9."
    assert answers.first_line("x" * 200, 10) == "x" * 9 + "…"
    assert answers.answer(PulseFactory().pk) == ""


def test_a_two_million_character_answer_is_cut_at_the_stated_number_of_messages_with_a_link_to_all_of_it(
    settings, admin_client
):
    """It became 500 messages, sent one after another ahead of every later reply."""
    settings.REEVE_DASHBOARD_URL = "https://reeve.example/"
    answer = "All work and no play makes Jack a dull boy.\n" * 45_455  # 2,000,020 characters
    pulse = finished(answer=answer)

    [outgoing] = outbox.take_due(configured_chats=CHATS)

    assert len(outgoing.parts) == MAX_ANSWER_PARTS
    assert all(utf16_len(part) <= TELEGRAM_MESSAGE_LIMIT for part in outgoing.parts)
    link = f"https://reeve.example/admin/pulses/pulse/{pulse.pk}/change/"
    assert outgoing.parts[-1].endswith(link)
    assert (
        f"Cut after {MAX_ANSWER_PARTS} messages: the whole answer (2,000,020 characters)"
        in outgoing.parts[-1]
    )
    sent = "".join(outgoing.parts).split("\n\n✂️")[0]
    assert answer.startswith(sent) and len(sent) > (MAX_ANSWER_PARTS - 1) * 4000
    assert admin_client.get(link.removeprefix("https://reeve.example")).status_code == 200  # the page exists


def test_an_answer_of_the_stated_number_of_messages_is_sent_whole():
    answer = ("x" * 4000 + "\n") * MAX_ANSWER_PARTS
    finished(answer=answer)

    [outgoing] = outbox.take_due(configured_chats=CHATS)

    assert "".join(outgoing.parts) == answer and len(outgoing.parts) == MAX_ANSWER_PARTS


def test_a_part_handed_to_telegram_but_not_confirmed_is_in_doubt_and_skipped_never_sent_again():
    finished(answer="word " * 2000)  # three messages
    [first] = outbox.take_due(configured_chats=CHATS)
    outbox.part_starting(first.delivery_id, index=0)
    outbox.part_sent(first.delivery_id, sent=1)
    outbox.part_starting(first.delivery_id, index=1)  # then the listener was killed
    Delivery.objects.filter(pk=first.delivery_id).update(next_try_at=timezone.now())  # the hold lapsed

    [again] = outbox.take_due(configured_chats=CHATS)
    assert (again.parts_sent, again.in_doubt) == (1, True)
    outbox.part_skipped(again)
    delivery = Delivery.objects.get(pk=first.delivery_id)
    assert (delivery.parts_sent, delivery.parts_started) == (2, 2)
    assert delivery.detail == "message 2 of 3 may be missing: its send was cut short"


def test_a_skip_stays_recorded_when_its_listener_is_killed_and_another_retries_and_closes_the_delivery():
    # Found by bench/soak.py on PostgreSQL: the delivery ended "sent" with no word of the part missing.
    finished(answer="It is sunny.")

    def take_after_the_hold():
        Delivery.objects.update(next_try_at=timezone.now())  # the listener holding it was killed
        [outgoing] = outbox.take_due(configured_chats=CHATS)
        return outgoing

    first = take_after_the_hold()
    outbox.part_starting(first.delivery_id, index=0)  # killed while Telegram may take it
    second = take_after_the_hold()
    assert second.in_doubt
    outbox.part_skipped(second)  # killed before it closed the delivery
    third = take_after_the_hold()
    assert (third.parts_sent, third.in_doubt) == (1, False)
    outbox.retry_later(third, error="Bad Gateway")
    fourth = take_after_the_hold()
    outbox.finish(fourth.delivery_id, state=DeliveryState.SENT)

    delivery = Delivery.objects.get(pk=first.delivery_id)
    assert (delivery.state, delivery.parts_sent) == (DeliveryState.SENT, 1)
    assert delivery.detail == "message 1 of 1 may be missing: its send was cut short"


def test_a_part_telegram_refused_is_not_in_doubt_and_goes_again():
    finished(answer="word " * 2000)
    [first] = outbox.take_due(configured_chats=CHATS)
    outbox.part_starting(first.delivery_id, index=0)
    outbox.part_not_sent(first.delivery_id, index=0)
    outbox.retry_later(first, error="Bad Gateway")
    Delivery.objects.filter(pk=first.delivery_id).update(next_try_at=timezone.now())

    [again] = outbox.take_due(configured_chats=CHATS)
    assert (again.parts_sent, again.in_doubt) == (0, False)


def test_only_a_call_that_may_have_reached_telegram_counts_as_in_doubt():
    import httpx
    from telegram.error import NetworkError, TimedOut

    from telegram_bridge.answer_sender import never_arrived

    def raised(error, cause=None):
        try:
            raise error from cause
        except Exception as exc:  # noqa: BLE001
            return exc

    request = httpx.Request("POST", "https://api.telegram.org/")
    assert never_arrived(raised(NetworkError("Bad Gateway")))  # Telegram answered with an error
    assert never_arrived(
        raised(NetworkError("httpx.ConnectError"), httpx.ConnectError("refused", request=request))
    )
    assert never_arrived(raised(TimedOut(), httpx.ConnectTimeout("slow", request=request)))
    assert not never_arrived(raised(TimedOut(), httpx.ReadTimeout("no answer", request=request)))
    assert not never_arrived(
        raised(NetworkError("httpx.ReadError"), httpx.ReadError("reset", request=request))
    )
