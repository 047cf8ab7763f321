"""Drafting a 1,000-paper month with a language model: does the service keep the endpoint
busy? The endpoint is `FakeLLM` on 127.0.0.1 answering every request after `--delay`
seconds (1 s: a small hosted model's typical latency), so with `--concurrency` 8 in flight
the floor is papers / 8 x delay = 125 s; the run must finish within 1.25x of it (exit 1
otherwise). Then the same month again: everything is cached, nothing is asked.

Also printed: tokens per paper (the fake counts 4 characters a token, as OpenAI's rule of
thumb for English) and what a month costs at `--price-in` / `--price-out` dollars per
million tokens (defaults: a small hosted model's list price at the time of writing; pass
your provider's). Throwaway SQLite database.

    .venv/bin/python benchmarks/draft.py [--papers 1000] [--delay 1.0] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import insert

from newsletter.bootstrap import init_database
from newsletter.db import make_engine, session_scope
from newsletter.models import Paper
from newsletter.papers.drafting import draft_papers
from newsletter.settings import load_settings
from newsletter.testing.fake_llm import FakeLLM

MONTH = "2026-06"
WORDS = [
    "gradient",
    "descent",
    "optimizer",
    "transformer",
    "attention",
    "graph",
    "neural",
    "network",
    "operator",
    "diffusion",
    "kernel",
    "generalization",
    "bound",
    "stochastic",
    "convex",
    "sparse",
    "manifold",
    "tensor",
    "program",
    "compiler",
    "sheaf",
    "forecasting",
    "equivariant",
    "memorization",
    "curvature",
    "momentum",
    "learning",
    "rate",
    "hypergraph",
]


def papers(n: int, seed: int = 27) -> list[dict]:
    """Abstract-only papers, as arXiv brings them: ~1,100-character abstracts."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    rows = []
    for i in range(n):
        title = " ".join(rng.choice(WORDS) for _ in range(7)).capitalize() + f" {i}"
        abstract = " ".join(
            " ".join(rng.choice(WORDS) for _ in range(18)).capitalize() + "." for _ in range(7)
        )
        rows.append(
            {
                "title": title,
                "normalized_title": title.lower(),
                "summary": abstract,  # feeds: the abstract stands in for a summary
                "abstract": abstract,
                "url": f"https://arxiv.org/abs/2606.{i:05d}",
                "authors": [f"Author {i}"],
                "published": date(2026, 6, i % 28 + 1),
                "month": MONTH,
                "created_at": now,
                "updated_at": now,
            }
        )
    return rows


def _serve(conn: object, delay: float) -> None:
    """The fake endpoint in its own process, as a real one is: its threads never compete
    with the service's for one interpreter lock."""
    with FakeLLM(delay=delay) as fake:
        conn.send(fake.base_url)  # type: ignore[attr-defined]
        while conn.recv() == "stats":  # type: ignore[attr-defined]
            conn.send((len(fake.requests), fake.max_in_flight))  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--papers", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--price-in", type=float, default=0.15, help="$ per 1M prompt tokens")
    parser.add_argument("--price-out", type=float, default=0.60, help="$ per 1M output tokens")
    args = parser.parse_args()

    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    server = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(theirs, args.delay), daemon=True
    )
    server.start()
    base_url = ours.recv()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = make_engine(url)
        init_database(engine)
        with session_scope(engine) as session:
            session.execute(insert(Paper), papers(args.papers))
        settings = load_settings(
            var_dir=Path(tmp) / "var",
            database_url=url,
            llm_summaries="review",
            llm_base_url=base_url,
            llm_model="fake-model-1",
            llm_concurrency=args.concurrency,
            llm_timeout=max(30.0, 10 * args.delay),
            _env_file=None,
        )
        started = time.monotonic()
        report = draft_papers(engine, settings, month=MONTH)
        took = time.monotonic() - started
        floor = args.papers / args.concurrency * args.delay
        ours.send("stats")
        first_requests, max_in_flight = ours.recv()
        started = time.monotonic()
        cached = draft_papers(engine, settings, month=MONTH)
        cached_took = time.monotonic() - started
        ours.send("stats")
        all_requests, _ = ours.recv()
    ours.send("stop")
    server.join(10)

    per_in = report.prompt_tokens / max(1, report.drafted)
    per_out = report.completion_tokens / max(1, report.drafted)
    cost = (report.prompt_tokens * args.price_in + report.completion_tokens * args.price_out) / 1e6
    ratio = took / floor if floor else 0.0
    print(
        f"{args.papers:,} papers, {args.delay:g} s a request, {args.concurrency} in flight "
        f"(most seen by the server: {max_in_flight})"
    )
    print(f"{'run':<34}{'requests':>10}{'drafted':>9}{'failed':>8}{'wall':>10}{'vs floor':>10}")
    print(
        f"{'first run':<34}{first_requests:>10,}{report.drafted:>9,}{report.failed:>8}"
        f"{took:>9.1f}s{ratio:>9.2f}x"
    )
    print(
        f"{'floor: papers / in flight x delay':<34}{'':>10}{'':>9}{'':>8}{floor:>9.1f}s{1.0:>9.2f}x"
    )
    print(
        f"{'second run (all cached)':<34}{all_requests - first_requests:>10,}"
        f"{cached.drafted:>9,}{cached.failed:>8}{cached_took:>9.1f}s{'':>10}"
    )
    print(
        f"tokens per paper: {per_in:,.0f} prompt + {per_out:,.0f} completion; "
        f"this month: {report.tokens:,} tokens ≈ ${cost:,.2f} at ${args.price_in:g} / "
        f"${args.price_out:g} per million (prompt / completion)"
    )
    if ratio > 1.25:
        print(f"FAIL: {ratio:.2f}x the floor (the bar is 1.25x)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
