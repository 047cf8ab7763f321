"""200 people subscribing at the same moment through a real uvicorn server: none lost, no 5xx,
one confirmation each, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlmodel import Session, select

from newsletter.testing.live_server import live_server
from newsletter.web.app import create_app
from newsletter.web.ratelimit import ClientRateLimiter
from subscribers.models import Subscriber

CONCURRENT = 200


async def _subscribe_all(base_url: str, emails: list[str]) -> list[int]:
    limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:
        start = asyncio.Event()

        async def one(email: str) -> int:
            await start.wait()
            resp = await client.post(
                "/subscribe", data={"email": email, "topics": ["optimization", "transformers"]}
            )
            return resp.status_code

        tasks = [asyncio.create_task(one(e)) for e in emails]
        await asyncio.sleep(0.05)
        start.set()
        return await asyncio.gather(*tasks)


def test_200_concurrent_subscribes_none_lost(settings, engine) -> None:
    app = create_app(settings)
    # Every request comes from 127.0.0.1 here; the per-client limit has its own test.
    app.state.subscribe_limiter = ClientRateLimiter(10 * CONCURRENT, 600)
    emails = [f"person{i:03d}@example.org" for i in range(CONCURRENT)]
    with live_server(app) as base_url:
        codes = asyncio.run(_subscribe_all(base_url, emails))
        # The same addresses again, all at once: still no error, no duplicate rows.
        repeat = asyncio.run(_subscribe_all(base_url, emails[:50] * 2))
    assert codes == [200] * CONCURRENT
    assert repeat == [200] * 100
    with Session(engine) as session:
        stored = sorted(s.email for s in session.exec(select(Subscriber)).all())
    assert stored == emails
    files = list(Path(settings.outbox_dir).glob("*.eml"))
    assert len(files) == CONCURRENT + 100  # 1 + 2 confirmations, within the daily limit of 3
