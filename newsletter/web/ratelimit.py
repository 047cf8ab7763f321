"""A per-client request limit (fixed windows, in memory, one per process).

It guards the one form anyone may post (`POST /subscribe`): with several web processes each
counts on its own, which still bounds a single client; the per-address daily limit on
confirmation emails lives in the database and holds across processes.
"""

from __future__ import annotations

import threading
import time


class ClientRateLimiter:
    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.window = window_seconds
        self._counts: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> float:
        """Count one request; 0 when allowed, else seconds until the client may retry."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._counts) > 10_000:
                self._counts = {k: v for k, v in self._counts.items() if now - v[0] < self.window}
            start, count = self._counts.get(key, (now, 0))
            if now - start >= self.window:
                start, count = now, 0
            if count >= self.limit:
                return max(1.0, self.window - (now - start))
            self._counts[key] = (start, count + 1)
            return 0.0
