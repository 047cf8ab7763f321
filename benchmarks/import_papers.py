"""Importing 10,000 papers from one JSON file: first import, no-op re-import, 10% updated.

Target: the first import under 10 s on the 2-core build machine (SQLite). PostgreSQL runs too
when `initdb` is available (a throwaway cluster, as in the tests).

    .venv/bin/python benchmarks/import_papers.py [--papers 10000]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from newsletter.bootstrap import init_database
from newsletter.db import make_engine
from newsletter.papers.store import import_paths
from newsletter.testing.postgres import PostgresUnavailable, start_cluster

VOCABULARY = (
    "gradient descent transformer attention graph neural network operator diffusion spectral "
    "kernel generalization bound stochastic convex sparse manifold tensor compiler sheaf "
    "forecasting traffic weather equivariant scaling law memorization curvature momentum "
    "variational flow matching sampling robust calibration causal regression embedding"
)
WORDS = VOCABULARY.split()


def make_papers(n: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)

    def words(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    papers = []
    for i in range(n):
        papers.append(
            {
                "title": f"{words(6).capitalize()} {i}",
                "summary": words(80) + ".",
                "abstract": words(160) + ".",
                "url": f"https://arxiv.org/abs/26{i % 12 + 1:02d}.{i:05d}",
                "published": f"2026-{i % 12 + 1:02d}-{i % 28 + 1:02d}",
                "authors": [f"Author {rng.randint(1, 5000)}" for _ in range(rng.randint(1, 8))],
                "arxiv_id": f"26{i % 12 + 1:02d}.{i:05d}v{rng.randint(1, 3)}",
            }
        )
    return papers


def timed(engine, path: Path) -> tuple[float, float, tuple[int, int, int]]:
    """Wall seconds, CPU seconds of this process (the machine is shared), counts."""
    start, cpu = time.perf_counter(), time.process_time()
    (report,) = import_paths(engine, [path])
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if report.error is not None:
        raise SystemExit(f"import failed: {report.error}")
    return elapsed, cpu, (report.added, report.updated, report.skipped)


def run(label: str, url: str, files: dict[str, Path]) -> list[tuple]:
    engine = make_engine(url)
    init_database(engine)
    rows = []
    for step, path in files.items():
        elapsed, cpu, counts = timed(engine, path)
        rows.append((label, step, elapsed, cpu, counts))
    engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        papers = make_papers(args.papers)
        first = tmpdir / "papers.json"
        first.write_text(json.dumps(papers))
        updated = [
            dict(p, summary=p["summary"] + " Updated.") if i % 10 == 0 else p
            for i, p in enumerate(papers)
        ]
        third = tmpdir / "papers-updated.json"
        third.write_text(json.dumps(updated))
        files = {"first import": first, "re-import (no-op)": first, "10% updated": third}
        size_mb = first.stat().st_size / 1e6
        rows = run("SQLite", f"sqlite:///{tmpdir / 'bench.db'}", files)
        try:
            cluster = start_cluster()
        except PostgresUnavailable as exc:
            print(f"PostgreSQL skipped: {exc}")
        else:
            try:
                rows += run("PostgreSQL", cluster.create_database("bench"), files)
            finally:
                cluster.stop()
    print(f"\n{args.papers:,} papers in one JSON file ({size_mb:.1f} MB)\n")
    print(
        f"{'database':<11} {'step':<19} {'wall s':>7} {'cpu s':>6} {'papers/s':>9}  "
        "added/updated/unchanged"
    )
    for label, step, elapsed, cpu, counts in rows:
        rate = args.papers / elapsed
        print(
            f"{label:<11} {step:<19} {elapsed:>7.2f} {cpu:>6.2f} {rate:>9,.0f}  "
            + "/".join(map(str, counts))
        )
    sqlite_first = next(e for db, step, e, _, _ in rows if (db, step) == ("SQLite", "first import"))
    verdict = "OK" if sqlite_first < 10 else "TOO SLOW"
    print(f"\nSQLite first import: {sqlite_first:.2f} s (target < 10 s): {verdict}")


if __name__ == "__main__":
    main()
