"""Importing a 100,000-row subscriber CSV on SQLite and PostgreSQL, side by side, against the
row-by-row path it replaced (measured on a sample and scaled), in one run.

    .venv/bin/python benchmarks/import_subscribers.py [--rows 100000] [--sample 2000]

(a) `newsletter subscribers import --confirmed` as the CLI runs it: every row checked first,
    then bulk statements in transactions of a few hundred rows;
(b) the old way: one `lifecycle.add_confirmed` per row in a single transaction, on the first
    `--sample` rows, scaled to `--rows` (it was quadratic before the `_set_topics` fix, so
    this flatters it);
(c) the site during (a): a real uvicorn server answers one-click unsubscribe, the landing
    page and an archive issue in a loop while `newsletter subscribers import` runs in
    another process; slowest answer and 95th percentile.
Targets: (a) under 20 s for 100,000 rows, (c) every answer under 1 s, on both databases;
the script exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select  # noqa: E402

from newsletter.audience import CONSENT_TEXT_VERSION, import_subscribers, topic_catalog  # noqa: E402
from newsletter.bootstrap import init_database  # noqa: E402
from newsletter.db import dispose_engines, make_engine, session_scope  # noqa: E402
from newsletter.settings import load_settings  # noqa: E402
from subscribers import csv_io, lifecycle  # noqa: E402
from subscribers.models import Subscriber  # noqa: E402

TARGET_SECONDS = 20.0


def make_csv(rows: int, slugs: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "topics", "name"])
    for i in range(rows):
        topics = ";".join(slugs[(i + k) % len(slugs)] for k in range(i % 4))
        writer.writerow([f"reader{i:07d}@example.org", topics, f"Reader {i}"])
    return out.getvalue()


def bulk(url: str, var: Path, text: str) -> tuple[float, float]:
    engine = make_engine(url)
    init_database(engine)
    settings = load_settings(var_dir=var, database_url=url, _env_file=None)
    start, cpu = time.perf_counter(), time.process_time()
    report = import_subscribers(engine, settings, text, confirmed=True)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    with session_scope(engine) as session:
        stored = session.execute(select(func.count()).select_from(Subscriber)).scalar_one()
    assert stored == report.imported, (stored, report.imported)
    engine.dispose()
    return elapsed, cpu


def row_by_row(url: str, text: str) -> float:
    engine = make_engine(url)
    init_database(engine)
    start = time.perf_counter()
    with session_scope(engine) as session:
        known = {t.slug for t in topic_catalog(session)}
        for row in csv_io.parse_import(text, known):
            lifecycle.add_confirmed(
                session,
                row.email,
                row.topics,
                known_topics=known,
                consent_text_version=CONSENT_TEXT_VERSION,
                source="import",
                name=row.name,
            )
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


def site_during_import(url: str, var: Path, csv_path: Path, rows: int) -> list[tuple[float, str]]:
    """Latencies (s) of the site's answers while a CLI import of `csv_path` runs."""
    import httpx
    from sqlmodel import Session

    from newsletter import audience
    from newsletter.models import IssueStatus
    from newsletter.testing.live_server import live_server
    from newsletter.testing.sample_issue import build_sample_issue
    from newsletter.web.app import create_app

    engine = make_engine(url)
    init_database(engine)
    secret = "benchmark-secret-key-0123456789abcdef"
    settings = load_settings(var_dir=var, database_url=url, secret_key=secret, _env_file=None)
    with Session(engine) as session:
        issue = build_sample_issue(session, "2026-04", papers=12)
        issue.status = IssueStatus.SENT
        session.commit()
    sub = audience.add_subscriber(engine, settings, "leaver@example.org", [], confirmed=True)
    unsubscribe = "/" + audience.links_for(settings, sub.subscriber).unsubscribe.split("/", 3)[3]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_DATABASE_URL=url, NEWSLETTER_VAR_DIR=str(var), NEWSLETTER_SECRET_KEY=secret
    )
    latencies: list[tuple[float, str]] = []
    with live_server(create_app(settings)) as base, httpx.Client(base_url=base, timeout=60) as web:
        web.get("/issues/2026-04")  # compile the MJML once, as a running site has
        proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "subscribers", "import", str(csv_path)]
            + ["--confirmed"],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        while proc.poll() is None:
            for method, path in (("POST", unsubscribe), ("GET", "/"), ("GET", "/issues/2026-04")):
                start = time.perf_counter()
                answer = web.request(method, path)
                latencies.append((time.perf_counter() - start, f"{method} {path[:14]}"))
                assert answer.status_code == 200, (path, answer.status_code)
        assert proc.returncode == 0
    with session_scope(engine) as session:
        stored = session.execute(select(func.count()).select_from(Subscriber)).scalar_one()
    assert stored == rows + 1, stored
    engine.dispose()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=2_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-import-"))
    from newsletter.testing.postgres import PostgresUnavailable, start_cluster

    try:
        cluster = start_cluster()
    except PostgresUnavailable as exc:
        print(f"PostgreSQL unavailable ({exc}); SQLite only")
        cluster = None
    try:
        engine = make_engine(f"sqlite:///{root / 'topics.db'}")
        init_database(engine)
        with session_scope(engine) as session:
            slugs = [t.slug for t in topic_catalog(session)]
        engine.dispose()
        text = make_csv(args.rows, slugs)
        sample = make_csv(args.sample, slugs)
        csv_path = root / "subscribers.csv"
        csv_path.write_text(text)
        dbs = [("SQLite", lambda name: f"sqlite:///{root / name}.db")]
        if cluster is not None:
            dbs.append(("PostgreSQL", cluster.create_database))
        table = []
        for label, new_db in dbs:
            a, cpu = bulk(new_db("bulk"), root / f"var-{label}", text)
            b = row_by_row(new_db("rows"), sample) * args.rows / args.sample
            lat = sorted(
                site_during_import(new_db("site"), root / f"s-{label}", csv_path, args.rows)
            )
            table.append((label, a, cpu, b, lat))
            dispose_engines()
        print(f"\nImporting {args.rows:,} subscribers (--confirmed), seconds:")
        print(
            "| database | (a) bulk import, wall | its CPU (this process) | rows/s "
            f"| (b) row by row (scaled from {args.sample:,}) |"
        )
        print("|---|---:|---:|---:|---:|")
        for label, a, cpu, b, _ in table:
            print(
                f"| {label} | {a:.1f} s | {cpu:.1f} s | {args.rows / a:,.0f} "
                f"| {b:.0f} s ({b / a:.0f}x) |"
            )
        print("\n(c) the site during the import (unsubscribe POST, landing, archive issue):")
        print("| database | answers | median | 95th percentile | slowest (which) |")
        print("|---|---:|---:|---:|---:|")
        for label, *_, lat in table:
            p50, p95 = lat[len(lat) // 2][0], lat[int(len(lat) * 0.95)][0]
            print(
                f"| {label} | {len(lat)} | {p50 * 1000:.0f} ms | {p95 * 1000:.0f} ms "
                f"| {lat[-1][0] * 1000:.0f} ms ({lat[-1][1]}) |"
            )
        slow = [label for label, a, *_ in table if a > TARGET_SECONDS * args.rows / 100_000]
        slow += [f"{label} (site)" for label, *_, lat in table if lat[-1][0] >= 1.0]
        if slow:
            print(f"over the {TARGET_SECONDS:.0f} s target on: {', '.join(slow)}")
            sys.exit(1)
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
