"""Garbage collection while a send runs: freeze what start-up built, collect young objects
less often.

A batch of 1,000 recipients allocates tens of thousands of short-lived dicts, tuples and
rows, none in reference cycles. With Python's default threshold (a young collection every
700 allocations) a send runs hundreds of collections a second, and every so often a full
one that walks every object the process holds (SQLAlchemy, Jinja, MJML, the compiled
variants): measured, a third of a sending process's CPU, and with it the time every other
thread waits for the interpreter lock. `gc.freeze()` moves what exists at start-up out of
the collector's sight (the documented use: long-lived objects made once), and a larger
young threshold makes the collections that remain rare. Both are undone when the last
send of the process ends, so a web process that runs a send goes back to the defaults.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 50_000  # allocations between young collections while sending (default 700)

_lock = threading.Lock()
_active = 0
_saved: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def quiet_gc(young: int = YOUNG_THRESHOLD) -> Iterator[None]:
    """Freeze the heap and raise the young threshold for the block; nests and is thread-safe
    (the first to enter sets it up, the last to leave restores the defaults)."""
    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = gc.get_threshold()
            gc.collect()  # do not freeze garbage: it would stay until the send ends
            gc.freeze()
            gc.set_threshold(max(young, _saved[0]), _saved[1], _saved[2])
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                gc.set_threshold(*_saved)
                gc.unfreeze()
