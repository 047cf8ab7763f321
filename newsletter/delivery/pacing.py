"""How fast to send and how long to back off: a shared rate limiter and the retry policy."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass


class RateLimiter:
    """Recipients per second across all sending threads (0 = unlimited), plus a shared hold
    that a 429 sets so every thread waits out the provider's reset, not just the one told."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._next_free = time.monotonic()
        self._hold_until = 0.0
        self._lock = threading.Lock()

    def acquire(self, recipients: int, stop: threading.Event | None = None) -> None:
        """Reserve a slot for `recipients` and sleep until it starts (or `stop` is set)."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_free, self._hold_until)
            if self.rate > 0:
                self._next_free = start + recipients / self.rate
        delay = start - time.monotonic()
        if delay > 0:
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)

    def would_wait(self) -> bool:
        """True when an `acquire` now would sleep (a rate limit or a provider's hold)."""
        with self._lock:
            return max(self._next_free, self._hold_until) > time.monotonic()

    def refund(self, recipients: int) -> None:
        """Return a reservation that was not used (the claim came back smaller)."""
        if self.rate > 0 and recipients > 0:
            with self._lock:
                self._next_free = max(time.monotonic(), self._next_free - recipients / self.rate)

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._hold_until = max(self._hold_until, time.monotonic() + seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """Back-off and the error budget. The budget pauses a send rather than burn the list."""

    base_delay: float = 2.0  # first retry waits about this long, doubling each attempt
    max_delay: float = 300.0
    max_consecutive_failures: int = 10  # retryable refusals in a row with no success
    max_failed_fraction: float = 0.05  # permanently refused recipients / attempted
    min_failed_to_pause: int = 50  # ... once at least this many have been refused

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before attempt `attempt + 1`: the provider's word if it gave one, else
        exponential back-off with jitter so many workers do not retry in step."""
        if retry_after is not None:
            return retry_after + random.uniform(0, max(0.05, retry_after * 0.1))
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(0, attempt - 1))
        return random.uniform(ceiling / 2, ceiling)
