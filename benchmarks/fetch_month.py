"""A big arXiv month: fetch 1,000 papers from a local arXiv API, compose, render, uncapped
vs capped (NEWSLETTER_MAX_PAPERS=30, NEWSLETTER_MAX_PAPERS_PER_TOPIC=8), side by side.

The arXiv API is `FakeSources` on 127.0.0.1 serving generated Atom pages of 200 entries
(politeness delay 0 here; with arXiv's 3 s, 5 pages add 12 s of waiting). Throwaway SQLite.

    .venv/bin/python benchmarks/fetch_month.py [--papers 1000]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape

from sqlmodel import Session, select

from newsletter.bootstrap import init_database
from newsletter.db import make_engine
from newsletter.issues import compose_issue
from newsletter.models import Issue
from newsletter.papers.fetching import FetchOptions, fetch_sources
from newsletter.papers.sources_file import load_sources_file
from newsletter.rendering.issue_email import clear_render_cache, render_issue_variant
from newsletter.settings import load_settings
from newsletter.testing.fake_sources import FakeSources

MONTH = "2026-06"
PAGE = 200
VOCABULARY = (
    "gradient descent optimizer transformer attention graph neural network operator "
    "diffusion kernel generalization bound stochastic convex sparse manifold tensor program "
    "compiler sheaf forecasting traffic weather equivariant memorization curvature momentum "
    "learning rate message passing hypergraph pde training dynamics expressiveness"
)
WORDS = VOCABULARY.split()


def atom_pages(n: int, seed: int = 11) -> list[bytes]:
    rng = random.Random(seed)

    def words(k: int, pool: list[str] = WORDS) -> str:
        return " ".join(rng.choice(pool) for _ in range(k))

    pages = []
    for start in range(0, n, PAGE):
        entries = []
        for i in range(start, min(n, start + PAGE)):
            pool = rng.sample(WORDS, 4) + ["the", "of", "we", "and"]  # a few themes each
            sentences = " ".join(words(18, pool).capitalize() + "." for _ in range(8))
            entries.append(
                f"<entry><id>http://arxiv.org/abs/2606.{i:05d}v1</id>"
                f"<published>2026-06-{i % 28 + 1:02d}T10:00:00Z</published>"
                f"<title>{escape(words(7, pool).capitalize())} {i}</title>"
                f"<summary>{escape(sentences)}</summary>"
                f"<author><name>Author {i}</name></author>"
                f'<link href="http://arxiv.org/abs/2606.{i:05d}v1" rel="alternate"/>'
                '<category term="cs.LG"/></entry>'
            )
        pages.append(
            (
                '<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom" '
                'xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/"><title>q</title>'
                f"<opensearch:totalResults>{n}</opensearch:totalResults>"
                + "".join(entries)
                + "</feed>"
            ).encode()
        )
    return pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeSources(atom_pages(args.papers)) as fake:
        sources = Path(tmp) / "sources.yaml"
        sources.write_text(
            "sources:\n  - name: arxiv\n    type: arxiv\n    categories: [cs.LG]\n"
            f"    page_size: {PAGE}\n    max_results: {args.papers}\n"
        )
        engine = make_engine(f"sqlite:///{tmp}/bench.db")
        init_database(engine)
        options = FetchOptions(arxiv_api_url=fake.arxiv_url, arxiv_delay=0.0)
        t0 = time.perf_counter()
        (report,) = fetch_sources(engine, load_sources_file(sources), MONTH, options)
        fetch_s = time.perf_counter() - t0
        assert report.ok and report.added == args.papers, report.summary()
        t0 = time.perf_counter()
        again = fetch_sources(engine, load_sources_file(sources), MONTH, options)
        refetch_s = time.perf_counter() - t0
        assert again[0].skipped == args.papers
        settings = load_settings(var_dir=Path(tmp), database_url=f"sqlite:///{tmp}/bench.db")
        rows = []
        for label, caps in (
            ("uncapped", {}),
            ("capped 30 / 8 per topic", {"max_papers": 30, "max_per_topic": 8}),
        ):
            clear_render_cache()
            with Session(engine, expire_on_commit=False) as session:
                t0 = time.perf_counter()
                result = compose_issue(session, MONTH, settings.title, **caps)  # type: ignore[arg-type]
                session.commit()
                compose_s = time.perf_counter() - t0
                issue = session.exec(select(Issue).where(Issue.month == MONTH)).one()
                t0 = time.perf_counter()
                html = render_issue_variant(session, issue, "", settings).html
                render_s = time.perf_counter() - t0
            rows.append((label, result.in_email, compose_s, render_s, len(html.encode()) / 1024))
        print(f"{args.papers} papers: fetch+import {fetch_s:.2f} s, re-fetch {refetch_s:.2f} s\n")
        print("| issue | papers in the email | compose | render (1 variant) | email HTML |")
        print("|---|---:|---:|---:|---:|")
        for label, shown, compose_s, render_s, kib in rows:
            print(f"| {label} | {shown} | {compose_s:.2f} s | {render_s:.2f} s | {kib:,.0f} KB |")


if __name__ == "__main__":
    main()
