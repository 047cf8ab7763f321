"""Feeds as they are published, on SQLite and PostgreSQL: arXiv's listing feeds (RSS and Atom
from rss.arxiv.org, their error feed), and publishers' feeds with HTML-only content, items
missing a title, date, link or text, over-long text, same-title posts and over-size downloads.

The files in tests/data/papers/arxiv_listing_* follow arXiv's published RSS and Atom
specifications (info.arxiv.org/help/rss_specifications.html) and carry items of the real
cs.LG listing of 28 Nov 2024; the error feed is arXiv's answer for `rss/astroph`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from newsletter.models import Paper
from newsletter.papers.fetching import FetchOptions, fetch_sources, fetch_with_retries
from newsletter.papers.sources.feeds import cut_at_sentence, first_version_month
from newsletter.papers.sources_file import load_sources_file
from newsletter.papers.store import FileImportReport, import_paths
from newsletter.papers.validation import MAX_ABSTRACT
from newsletter.testing.fake_sources import FakeSources

DATA = Path(__file__).parent / "data"
RSS_LISTING = DATA / "papers" / "arxiv_listing_cs_lg.rss"
ATOM_LISTING = DATA / "papers" / "arxiv_listing_math_oc.atom"
ERROR_FEED = DATA / "papers" / "arxiv_listing_error.rss"
FEEDS = DATA / "feeds"
GUARD = "Llama Guard 3-1B-INT4: Compact and Efficient Safeguard for Human-AI Conversations"


def one(reports: list[FileImportReport]) -> FileImportReport:
    (report,) = reports
    return report


def papers(engine: Engine) -> dict[str, Paper]:
    with Session(engine) as session:
        return {p.title: p for p in session.exec(select(Paper)).all()}


# --- arXiv listing feeds ----------------------------------------------------------------------


def test_rss_listing_keeps_the_days_papers_with_authors_split_and_clean_text(engine) -> None:
    report = one(import_paths(engine, [RSS_LISTING]))
    assert report.error is None, report.error
    assert report.added == 4  # 2 new, 1 cross, 1 replace of a paper first announced this month
    assert report.notes == ["2 new versions of earlier papers skipped"]
    stored = papers(engine)
    assert "Adam: A Method for Stochastic Optimization" not in stored  # replace (from 2014)
    assert "Mass concentration in rescaled first order integral functionals" not in stored
    guard = stored[GUARD]
    assert len(guard.authors) == 20
    assert guard.authors[:2] == ["Igor Fedorov", "Kate Plawiak"]
    assert guard.authors[-1] == "Vikas Chandra"
    assert guard.arxiv_id == "2411.17713" and guard.url == "https://arxiv.org/abs/2411.17713"
    assert guard.summary.startswith("This paper presents Llama Guard 3-1B-INT4, a compact")
    assert "Announce Type" not in guard.abstract and "arXiv:" not in guard.abstract
    assert str(guard.published) == "2024-11-28"
    ecg = stored[
        'Finding "Good Views" of Electrocardiogram Signals for Inferring Abnormalities in '
        "Cardiac Condition"
    ]
    assert ecg.authors == ["Hyewon Jeong", "Suyeol Yun", "Hammaad Adam"]
    arc = stored["Towards Efficient Neurally-Guided Program Induction for ARC-AGI"]
    assert arc.arxiv_id == "2411.17708"  # from the guid oai:arXiv.org:2411.17708v2
    again = one(import_paths(engine, [RSS_LISTING]))
    assert (again.added, again.updated, again.skipped) == (0, 0, 4)


def test_atom_listing_reads_the_same_way_and_keeps_doi_and_journal_ref(
    engine, tmp_path: Path
) -> None:
    report = one(import_paths(engine, [ATOM_LISTING]))
    assert (report.error, report.added) == (None, 2)
    assert report.notes == ["2 new versions of earlier papers skipped"]
    guard = papers(engine)[GUARD]
    assert len(guard.authors) == 20 and guard.arxiv_id == "2411.17713"
    # Derived from the recorded file: the replace-cross entry announced as a cross-list, so it
    # is kept, with a second DOI (arXiv separates several by spaces, the article's first);
    # its DOI and journal reference are stored as arXiv gives them.
    crossed = tmp_path / "crossed.atom"
    crossed.write_bytes(
        ATOM_LISTING.read_bytes()
        .replace(b"<arxiv:announce_type>replace-cross<", b"<arxiv:announce_type>cross<")
        .replace(b"10.5802/jep.257<", b"10.5802/jep.257 10.5802/jep.257-erratum<")
    )
    report = one(import_paths(engine, [crossed]))
    assert (report.added, report.notes) == (1, ["1 new version of earlier papers skipped"])
    mass = papers(engine)["Mass concentration in rescaled first order integral functionals"]
    assert mass.doi == "10.5802/jep.257"
    assert mass.journal_ref.startswith("Journal de l'\\'Ecole polytechnique") and "431-472" in (
        mass.journal_ref
    )
    assert mass.authors == ["Antonin Monteil", "Paul Pegon"]


def test_arxiv_error_feed_is_refused_with_arxivs_message(engine) -> None:
    report = one(import_paths(engine, [ERROR_FEED]))
    assert report.error is not None
    assert "arXiv listing feed error: Bad archive 'astroph'" in str(report.error)


# --- publishers' feeds ------------------------------------------------------------------------


def test_atom_with_only_html_content_is_stored_as_plain_text(engine) -> None:
    report = one(import_paths(engine, [FEEDS / "atom_html_content_only.atom"]))
    assert (report.error, report.added) == (None, 2)
    post = papers(engine)["Step sizes & the edge of stability"]
    assert post.summary == (
        "Sharpness over training Full-batch gradient descent trains at the edge of stability: "
        "sharpness rises until it hovers at 2/η. We ask what this means for the learning "
        "rate & warm-up."
    )
    assert "<" not in post.summary and "track()" not in post.summary
    notes = papers(engine)["Release notes for our solver"]
    assert notes.summary == "Version 1.2 adds a preconditioner option. faster smaller"


def test_items_that_cannot_be_papers_are_skipped_and_named(engine, cli) -> None:
    path = FEEDS / "rss_incomplete_items.rss"
    report = one(import_paths(engine, [path]))
    assert (report.error, report.added) == (None, 2)
    assert report.notes == [
        "record 3: no title, skipped",
        "record 4: no date (neither the item nor the feed has one), skipped",
        "record 5: no link and no text, skipped",
    ]
    stored = papers(engine)
    ntk = "Notes: neural tangent kernel, session 2"
    assert set(stored) == {"Grokking beyond algorithmic data", ntk}
    assert stored[ntk].summary == ""  # a link, no text
    result = cli("papers", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "record 3: no title, skipped" in result.output


def test_items_without_a_date_take_the_channels(engine) -> None:
    report = one(import_paths(engine, [FEEDS / "rss091_channel_date.rss"]))
    assert (report.error, report.added, report.notes) == (None, 2, [])
    assert {str(p.published) for p in papers(engine).values()} == {"2026-06-08"}


def test_over_long_text_is_cut_at_a_sentence(engine) -> None:
    report = one(import_paths(engine, [FEEDS / "atom_long_summary.atom"]))
    assert (report.error, report.added) == (None, 1)
    post = papers(engine)["Lazy and rich training, measured"]
    assert len(post.abstract) <= MAX_ABSTRACT
    assert post.abstract.endswith(". …")
    assert post.abstract.startswith("We study how the width of a network")


def test_two_posts_with_one_title_stay_two_and_a_repeated_item_is_one(engine, tmp_path) -> None:
    path = FEEDS / "rss_same_title_posts.rss"
    report = one(import_paths(engine, [path]))
    assert (report.error, report.added) == (None, 2)
    assert report.notes == ["record 3: the same item as record 1, skipped"]
    with Session(engine) as session:
        urls = sorted(p.url for p in session.exec(select(Paper)).all())
    assert urls == [
        "https://blog.example.org/reading-list-2/",
        "https://blog.example.org/reading-list-3/",
    ]
    again = one(import_paths(engine, [path]))
    assert (again.added, again.updated, again.skipped) == (0, 0, 2)
    # Derived: the feed a month later lists only the May post (the June one rolled off):
    # it is found again under its own key, not added as a third paper.
    text = path.read_text(encoding="utf-8")
    start = text.index("    <item>")
    end = text.index("    <item>", text.index("?p=302"))
    rolled = tmp_path / "rolled.rss"
    rolled.write_text(
        text[:start] + text[text.index("    <item>", start + 1) : end] + "  </channel>\n</rss>\n"
    )
    later = one(import_paths(engine, [rolled]))
    assert (later.error, later.added, later.updated, later.skipped) == (None, 0, 0, 1)


def test_files_written_by_people_stay_all_or_nothing(engine, tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text('[{"title": "A", "summary": "s", "published": "2026-06"}, {"summary": "s"}]')
    report = one(import_paths(engine, [bad]))
    assert report.error is not None and "record 2" in str(report.error)
    assert papers(engine) == {}


# --- papers fetch -----------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeSources]:
    with FakeSources() as server:
        yield server


def _sources(tmp_path: Path, fake: FakeSources, feeds: dict[str, tuple[bytes, bool]]) -> Path:
    lines = ["sources:"]
    for name, (body, announce_length) in feeds.items():
        url = fake.add_feed(f"/{name}", body, announce_length=announce_length)
        lines += [f"  - name: {name}", "    type: feed", f"    url: {url}"]
    path = tmp_path / "sources.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_fetch_an_arxiv_listing_source_and_a_misspelt_category(engine, tmp_path, fake) -> None:
    path = _sources(
        tmp_path,
        fake,
        {
            "cs-lg": (RSS_LISTING.read_bytes(), True),
            "astroph": (ERROR_FEED.read_bytes(), True),
        },
    )
    options = FetchOptions(arxiv_api_url=fake.arxiv_url, arxiv_delay=0.0)
    listing, error = fetch_sources(engine, load_sources_file(path), "2024-11", options)
    assert listing.ok and (listing.added, listing.notes) == (
        4,
        ["2 new versions of earlier papers skipped"],
    )
    assert "2 new versions of earlier papers skipped" in listing.summary()
    assert not error.ok and "Bad archive 'astroph'" in (error.error or "")
    guard = papers(engine)[GUARD]
    assert len(guard.authors) == 20 and not guard.summary.startswith("arXiv:")


def test_cli_fetch_exits_1_naming_arxivs_message(cli, tmp_path, fake, monkeypatch) -> None:
    path = _sources(
        tmp_path,
        fake,
        {"cs-lg": (RSS_LISTING.read_bytes(), True), "astroph": (ERROR_FEED.read_bytes(), True)},
    )
    monkeypatch.setenv("NEWSLETTER_SOURCES", str(path))
    result = cli("papers", "fetch", "--month", "2024-11")
    assert result.exit_code == 1, result.output
    assert "cs-lg (feed): 4 added, 0 updated, 0 unchanged" in result.output
    assert "2 new versions of earlier papers skipped" in result.output
    assert "astroph (feed): failed: arXiv listing feed error: Bad archive 'astroph'" in (
        " ".join(result.output.split())
    )


@pytest.mark.parametrize("announce_length", [True, False], ids=["content-length", "streamed"])
def test_over_size_download_fails_the_source(engine, tmp_path, fake, announce_length) -> None:
    body = RSS_LISTING.read_bytes()
    path = _sources(tmp_path, fake, {"big": (body, announce_length)})
    options = FetchOptions(arxiv_api_url=fake.arxiv_url, arxiv_delay=0.0, max_feed_bytes=4096)
    (report,) = fetch_sources(engine, load_sources_file(path), "2024-11", options)
    assert not report.ok
    assert report.error == (
        f"feed 'big' sent more than 4,096 bytes from {fake.url}/big; "
        "the limit is NEWSLETTER_MAX_FEED_BYTES"
    )
    assert papers(engine) == {}
    roomy = FetchOptions(arxiv_api_url=fake.arxiv_url, arxiv_delay=0.0, max_feed_bytes=len(body))
    (report,) = fetch_sources(engine, load_sources_file(path), "2024-11", roomy)
    assert report.ok and report.added == 4


def test_a_feed_item_that_fails_validation_is_skipped_and_named(engine, tmp_path: Path) -> None:
    # Derived from the recorded file: the second entry's author is a 250-character "name".
    source = (FEEDS / "atom_html_content_only.atom").read_bytes()
    odd = tmp_path / "odd.atom"
    odd.write_bytes(
        source.replace(b"<name>Ben Example</name>", b"<name>" + b"B" * 250 + b"</name>")
    )
    report = one(import_paths(engine, [odd]))
    assert (report.error, report.added) == (None, 1)
    assert report.notes == [
        "record 2, field 'authors': has a name of 250 characters; the limit is 200, skipped"
    ]
    assert set(papers(engine)) == {"Step sizes & the edge of stability"}


def test_a_misspelt_category_is_retried_like_any_failing_source(engine, tmp_path, fake) -> None:
    path = _sources(tmp_path, fake, {"astroph": (ERROR_FEED.read_bytes(), True)})
    attempts = []
    now = datetime.now(UTC)
    (report,) = fetch_with_retries(
        engine,
        load_sources_file(path),
        "2024-11",
        FetchOptions(arxiv_api_url=fake.arxiv_url, arxiv_delay=0.0),
        retries=2,
        first_delay=0.01,
        deadline=now + timedelta(hours=1),
        now=now,
        on_attempt=attempts.append,
    )
    assert fake.hits("/astroph") == 3 and len(attempts) == 3
    assert not report.ok and "Bad archive 'astroph'" in (report.error or "")


def test_rdf_items_take_the_channels_date(engine, tmp_path: Path) -> None:
    # RSS 1.0 (RDF Site Summary) as its specification shows it: items carry no date here,
    # the channel has a dc:date.
    rdf = tmp_path / "news.rdf"
    rdf.write_text(
        """<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
  xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns="http://purl.org/rss/1.0/">
  <channel rdf:about="https://seminar.example.org/news.rdf">
    <title>Seminar</title>
    <link>https://seminar.example.org/</link>
    <description>Talks</description>
    <dc:date>2026-06-10T08:00:00Z</dc:date>
    <items><rdf:Seq><rdf:li resource="https://seminar.example.org/t/1"/></rdf:Seq></items>
  </channel>
  <item rdf:about="https://seminar.example.org/t/1">
    <title>Talk: implicit bias of gradient descent</title>
    <link>https://seminar.example.org/t/1</link>
    <description>Why gradient descent prefers max-margin solutions.</description>
  </item>
</rdf:RDF>
""",
        encoding="utf-8",
    )
    report = one(import_paths(engine, [rdf], "feed"))
    assert (report.error, report.added) == (None, 1)
    (paper,) = papers(engine).values()
    assert str(paper.published) == "2026-06-10"


def test_first_version_month_and_cutting_at_a_sentence() -> None:
    assert first_version_month("2411.17700v3") == "2024-11"
    assert first_version_month("hep-th/9901001v2") == "1999-01"
    assert first_version_month("math.GT/0309136") == "2003-09"
    assert first_version_month("not-an-id") is None
    text = "One sentence here. A second, longer sentence follows it. A third."
    assert cut_at_sentence(text, 200) == text
    assert cut_at_sentence(text, 40) == "One sentence here. …"
