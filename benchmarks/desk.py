"""Latency of the editor's desk pages with a large audience, side by side in one run.

A throwaway SQLite database gets two 40-paper issues (5 topics x 8), N active subscribers
over 20 topic-set variants; one issue's send is planned with half the deliveries marked sent
(a send in progress), the other is a draft (its preview counts the audience in SQL).
Each page is requested in-process (Starlette's TestClient, signed in with the admin
token), `--rounds` times; the table shows the first (cold caches) and the median.

Usage: .venv/bin/python benchmarks/desk.py [--subscribers 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
MONTH = "2026-04"
DRAFT = "2026-05"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from fastapi.testclient import TestClient
    from sqlalchemy import update
    from sqlmodel import Session

    from newsletter.bootstrap import init_database
    from newsletter.db import make_engine
    from newsletter.delivery import begin_sending, plan_deliveries
    from newsletter.models import Delivery
    from newsletter.settings import load_settings
    from newsletter.testing.sample_send import (
        issue_topics,
        seed_issue,
        seed_subscribers,
        topic_sets,
    )
    from newsletter.web.app import create_app

    tmp = Path(tempfile.mkdtemp(prefix="desk-bench-"))
    settings = load_settings(
        var_dir=tmp,
        database_url=f"sqlite:///{tmp / 'bench.db'}",
        secret_key="bench",
        postal_address="1 Bench Street",
        admin_token="bench-token",
        _env_file=None,
    )
    engine = make_engine(settings.database_url)
    init_database(engine)
    started = time.perf_counter()
    with Session(engine) as session:
        topics = issue_topics(session)
        issue = seed_issue(session, MONTH, topics, per_topic=8)
        seed_issue(session, DRAFT, topics, per_topic=8)  # a draft: no deliveries planned
        seed_subscribers(session, args.subscribers, topic_sets(topics, 20))
        begin_sending(session, issue)
        plan_deliveries(session, issue, settings)
        session.execute(
            update(Delivery)
            .where(Delivery.id % 2 == 0)
            .values(status="sent")
            .execution_options(synchronize_session=False)
        )
        session.commit()
    print(f"seeded {args.subscribers:,} subscribers in {time.perf_counter() - started:.1f} s")

    client = TestClient(create_app(settings), follow_redirects=False)
    assert client.post("/admin/sign-in/token", data={"token": "bench-token"}).status_code == 303
    pages = [
        ("issue list", "/admin/issues"),
        ("issue page (sending)", f"/admin/issues/{MONTH}"),
        ("progress.json", f"/admin/issues/{MONTH}/progress.json"),
        (
            "preview + 20 variant sizes (sending)",
            f"/admin/issues/{MONTH}/preview?topics={topics[0]}",
        ),
        ("preview + 20 variant sizes (draft)", f"/admin/issues/{DRAFT}/preview?topics={topics[0]}"),
        ("report", f"/admin/issues/{MONTH}/report"),
        ("subscribers: counts + first page", "/admin/subscribers"),
        ("subscribers: address search", "/admin/subscribers?q=reader012345"),
        ("subscribers: topic filter", f"/admin/subscribers?topic={topics[1]}"),
        ("audit log", "/admin/audit"),
    ]
    rows = []
    for name, path in pages:
        times = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            resp = client.get(path)
            times.append((time.perf_counter() - t0) * 1000)
            assert resp.status_code == 200, (path, resp.status_code)
        rows.append((name, times[0], statistics.median(times), len(resp.content)))
    print(f"\n{args.subscribers:,} subscribers, 20 variants, 40 papers, SQLite, in-process\n")
    print(f"| page | first (ms) | median of {args.rounds} (ms) | size |")
    print("|---|---:|---:|---:|")
    for name, first, median, size in rows:
        print(f"| {name} | {first:,.0f} | {median:,.0f} | {size / 1024:,.0f} KB |")


if __name__ == "__main__":
    main()
