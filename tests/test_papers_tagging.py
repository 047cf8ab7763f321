"""Topic tagging and listing parsing without a database: the seed papers land where a reader
would look for them, and keywords match whole words only."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from newsletter.papers.sources.listing import read_listing
from newsletter.papers.tagging import Tagger
from newsletter.papers.validation import PaperRecord, validate_record
from newsletter.topics import load_taxonomy, topic_slugs

DATA = Path(__file__).parent / "data" / "papers"


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger.from_taxonomy(load_taxonomy())


def _record(title: str, summary: str = "a summary", **kw: object) -> PaperRecord:
    return PaperRecord(title=title, summary=summary, published=date(2026, 4, 1), **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def seed_topics(tagger: Tagger) -> dict[str, list[str]]:
    raw = read_listing((DATA / "whats-new-listing.txt").read_bytes())
    records = [validate_record(r, frozenset(topic_slugs())) for r in raw]
    return {r.title: tagger.tag(r)[0] for r in records}


@pytest.mark.parametrize(
    ("title_start", "expected"),
    [
        ("Thermodynamic natural gradient", ["optimization"]),
        ("Deep neural operator", ["scientific-ml"]),
        ("Exact sequence interpolation", ["learning-theory", "transformers"]),
        ("Sheaf Diffusion", ["spatio-temporal", "graph-learning"]),
        ("Hypergraph Neural Diffusion", ["graph-learning"]),
        ("There Will Be a Scientific Theory", ["learning-theory"]),
        ("Prism: Symbolic Superoptimization", ["ml-systems"]),
        ("Empirical Gradient-Driven Continuous-Time SGD", ["optimization", "learning-theory"]),
    ],
)
def test_seed_papers_tag_sensibly(
    seed_topics: dict[str, list[str]], title_start: str, expected: list[str]
) -> None:
    (topics,) = [t for title, t in seed_topics.items() if title.startswith(title_start)]
    assert topics == expected  # taxonomy order: the first one is the paper's section


def test_keywords_match_whole_words_only(tagger: Tagger) -> None:
    assert tagger.match("A paragraph on telegraphy") == []
    assert tagger.match("Graph rewiring") == ["graph-learning"]
    assert tagger.match("Message   passing\nnetworks") == ["graph-learning"]  # any spacing
    assert tagger.match("a PDE-inspired scheme") == []  # hyphenated compound: not about PDEs
    assert tagger.match("solving a PDE fast") == ["scientific-ml"]
    assert tagger.match("KERNEL OPTIMIZATION of matmul") == ["ml-systems"]  # not "optimization"


def test_explicit_topics_win_and_sort_in_taxonomy_order(tagger: Tagger) -> None:
    record = _record("Natural gradient for graphs", topics=["graph-learning", "optimization"])
    assert tagger.tag(record) == (["optimization", "graph-learning"], False)


def test_arxiv_categories_tag_and_untaggable_falls_back_to_general(tagger: Tagger) -> None:
    assert tagger.tag(_record("Splitting schemes", categories=["math.NA", "cs.LG"])) == (
        ["scientific-ml"],
        False,
    )
    assert tagger.tag(_record("A note on benchmarks", categories=["cs.LG"])) == (["general"], True)


def test_listing_layout_parsed() -> None:
    records = read_listing((DATA / "whats-new-listing.txt").read_bytes())
    assert len(records) == 8
    first, hyper = records[0], records[4]
    assert first["title"] == "Thermodynamic natural gradient descent"
    assert first["published"] == "Jun 2026" and first["authors"] == []
    assert first["summary"].startswith("introduces a natural gradient optimizer")
    assert hyper["authors"] == ["Zhiheng Zhou", "Mengyao Zhou", "Xixun Lin", "+2 more"]
    assert all(not r["summary"].startswith(("Abeer", "Jamie")) for r in records)
