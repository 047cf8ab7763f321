"""The public routes' write transactions, run off the event loop in arrival order.

On SQLite one write transaction runs at a time whatever the number of threads; forty
threads waiting on the write lock wake in no particular order, and under a sign-up burst
some waited several times as long as the rest. One writer thread fed first come, first
served keeps the tail near the median. PostgreSQL writes in parallel: up to the pool size.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Request
from sqlalchemy.engine import Engine

T = TypeVar("T")


def write_limiter(engine: Engine) -> CapacityLimiter:
    """One writer on SQLite; on PostgreSQL as many as the engine's pool holds."""
    if engine.dialect.name == "sqlite":
        return CapacityLimiter(1)
    return CapacityLimiter(engine.pool.size())  # type: ignore[attr-defined]


async def run_write(
    request: Request, fn: Callable[..., T], /, *args: object, **kwargs: object
) -> T:
    """`fn(*args, **kwargs)` in a worker thread, queued behind the writes before it."""
    return await anyio.to_thread.run_sync(
        partial(fn, *args, **kwargs), limiter=request.app.state.write_limiter
    )
