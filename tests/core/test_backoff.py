"""The one backoff rule (`pulses.backoff`) every retry loop waits by."""

from pulses.backoff import Backoff, exponential


def test_delays_double_from_the_initial_one_up_to_the_cap():
    assert [exponential(n, initial=0.5, cap=10) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]


def test_a_very_long_streak_of_failures_stays_at_the_cap():
    assert exponential(10_000, initial=1, cap=60) == 60


def test_a_success_starts_the_delays_over():
    backoff = Backoff(initial=1, cap=4)
    assert [backoff.next_delay() for _ in range(4)] == [1, 2, 4, 4]
    assert backoff.failures == 4
    backoff.reset()
    assert backoff.next_delay() == 1
