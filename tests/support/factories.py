"""factory-boy factories with the traits tests ask for: due, processing, failed, stale, by_agent."""

from datetime import timedelta

import factory
from django.utils import timezone

from pulses.models import Priority, Pulse, PulseAttempt, Status


class PulseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Pulse

    prompt = factory.Sequence(lambda n: f"Pulse number {n}")
    scheduled_at = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=1))
    priority = Priority.NORMAL
    status = Status.PENDING
    source = "test"

    class Params:
        by_agent = factory.Trait(source="agent")  # scheduled by the agent's tools: theirs to change
        due = factory.Trait(scheduled_at=factory.LazyFunction(lambda: timezone.now() - timedelta(seconds=1)))
        processing = factory.Trait(
            status=Status.PROCESSING,
            attempt_count=1,
            executed_at=factory.LazyFunction(timezone.now),
            lease_owner="testhost:1",
            lease_expires_at=factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=1)),
        )
        failed = factory.Trait(
            status=Status.FAILED,
            attempt_count=4,
            error_message="agent said no",
            finished_at=factory.LazyFunction(timezone.now),
        )
        completed = factory.Trait(
            status=Status.COMPLETED,
            attempt_count=1,
            executed_at=factory.LazyFunction(lambda: timezone.now() - timedelta(seconds=2)),
            finished_at=factory.LazyFunction(timezone.now),
            execution_duration_ms=2000,
        )
        stale = factory.Trait(
            status=Status.PROCESSING,
            attempt_count=1,
            executed_at=factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=5)),
            lease_owner="deadhost:99",
            lease_expires_at=factory.LazyFunction(lambda: timezone.now() - timedelta(seconds=5)),
        )


class PulseAttemptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PulseAttempt

    pulse = factory.SubFactory(PulseFactory, completed=True)
    number = 1
    started_at = factory.LazyFunction(lambda: timezone.now() - timedelta(seconds=2))
    finished_at = factory.LazyFunction(timezone.now)
    duration_ms = 2000
    exit_code = 0
    succeeded = True


def report_worker_alive(name: str = "box:42", **slots: int) -> None:
    """Report the worker `name` ("host:pid") alive now, as its loop does; `slots` as report_alive takes
    them (running, concurrency, critical_reserved)."""
    from pulses import queue

    host, pid = name.rsplit(":", 1)
    queue.report_alive(worker=name, host=host, pid=int(pid), started_at=timezone.now(), **slots)
