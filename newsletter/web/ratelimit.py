"""A per-client request limit (fixed windows, in memory, one per process).

It guards the one form anyone may post (`POST /subscribe`): with several web processes each
counts on its own, which still bounds a single client; the per-address daily limit on
confirmation emails lives in the database and holds across processes.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class ClientRateLimiter:
    """Fixed windows per client, O(1) per hit: clients sit in the order their window
    started, so expired ones are dropped from the front a few at a time, never by scanning
    the whole table."""

    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.window = window_seconds
        self._counts: OrderedDict[str, list[float]] = OrderedDict()  # key -> [start, count]
        self._lock = threading.Lock()

    def wait(self, key: str, now: float | None = None) -> float:
        """Seconds until `key` may try again (0: it may now), without counting a request."""
        now = time.monotonic() if now is None else now
        with self._lock:
            entry = self._counts.get(key)
            if entry is None or now - entry[0] >= self.window or entry[1] < self.limit:
                return 0.0
            return max(1.0, self.window - (now - entry[0]))

    def hit(self, key: str, now: float | None = None) -> float:
        """Count one request; 0 when allowed, else seconds until the client may retry."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for _ in range(2):  # amortised: each entry is dropped once
                if not self._counts:
                    break
                oldest, (start, _count) = next(iter(self._counts.items()))
                if now - start < self.window:
                    break
                del self._counts[oldest]
            entry = self._counts.get(key)
            if entry is None or now - entry[0] >= self.window:
                entry = [now, 0.0]
                self._counts[key] = entry
                self._counts.move_to_end(key)
            if entry[1] >= self.limit:
                return max(1.0, self.window - (now - entry[0]))
            entry[1] += 1
            return 0.0
