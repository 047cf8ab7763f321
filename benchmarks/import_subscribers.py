"""Importing a 100,000-row subscriber CSV on SQLite and PostgreSQL, side by side, against the
row-by-row path it replaced (measured on a sample and scaled), in one run.

    .venv/bin/python benchmarks/import_subscribers.py [--rows 100000] [--sample 2000]

(a) `newsletter subscribers import --confirmed` as the CLI runs it: every row checked first,
    then bulk statements in transactions of a few hundred rows;
(b) the old way: one `lifecycle.add_confirmed` per row in a single transaction, on the first
    `--sample` rows, scaled to `--rows` (it was quadratic before the `_set_topics` fix, so
    this flatters it).
Target: (a) under 20 s for 100,000 rows on both databases; the script exits 1 above it.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
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
        dbs = [("SQLite", lambda name: f"sqlite:///{root / name}.db")]
        if cluster is not None:
            dbs.append(("PostgreSQL", cluster.create_database))
        table = []
        for label, new_db in dbs:
            a, cpu = bulk(new_db("bulk"), root / f"var-{label}", text)
            b = row_by_row(new_db("rows"), sample) * args.rows / args.sample
            table.append((label, a, cpu, b))
            dispose_engines()
        print(f"\nImporting {args.rows:,} subscribers (--confirmed), seconds:")
        print(
            "| database | (a) bulk import, wall | its CPU (this process) | rows/s "
            f"| (b) row by row (scaled from {args.sample:,}) |"
        )
        print("|---|---:|---:|---:|---:|")
        for label, a, cpu, b in table:
            print(
                f"| {label} | {a:.1f} s | {cpu:.1f} s | {args.rows / a:,.0f} "
                f"| {b:.0f} s ({b / a:.0f}x) |"
            )
        slow = [label for label, a, *_ in table if a > TARGET_SECONDS * args.rows / 100_000]
        if slow:
            print(f"over the {TARGET_SECONDS:.0f} s target on: {', '.join(slow)}")
            sys.exit(1)
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
