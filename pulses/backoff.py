"""Exponential backoff: the one rule every retry loop waits by.

The worker's result write and its wait for the database, the Telegram poller and sender, a file
download, and a failed pulse's next attempt all wait `initial`, 2x, 4x … up to `cap` after
consecutive failures. (Retention's pause between batches is a steady pace, not a retry.)
"""

from __future__ import annotations

MAX_DOUBLINGS = 60  # past this the delay is the cap whatever the initial delay (and 2**n stays a float)


def exponential(failures: int, *, initial: float, cap: float) -> float:
    """The delay after the `failures`-th consecutive failure (1, 2, …): initial * 2^(failures-1), capped."""
    doublings = min(max(failures - 1, 0), MAX_DOUBLINGS)
    return min(initial * 2**doublings, cap)


class Backoff:
    """Counts consecutive failures and says how long to wait after each; `reset` on a success."""

    def __init__(self, *, initial: float, cap: float) -> None:
        self.initial = initial
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        """Count one more failure; the delay to wait before the next try."""
        self.failures += 1
        return exponential(self.failures, initial=self.initial, cap=self.cap)

    def reset(self) -> None:
        self.failures = 0
