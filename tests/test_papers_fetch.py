"""Sources fetched by the monthly job: the sources file, `papers fetch`, retries, caps.

Every source is a real HTTP server on 127.0.0.1 (`FakeSources`): the arXiv API replays the
recorded answers in tests/data/papers, feeds fail, recover or answer slowly.
"""

from __future__ import annotations

import email
import email.policy
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, select

from newsletter.models import Issue, IssuePaper, JobRun, Paper, PaperTopic
from newsletter.monthly import run_monthly_job
from newsletter.papers.fetching import FetchOptions, fetch_sources
from newsletter.papers.sources_file import SourcesFileError, load_sources_file
from newsletter.testing.fake_sources import FakeSources
from newsletter.testing.sample_send import seed_subscribers

DATA = Path(__file__).parent / "data"
ARXIV_PAGES = [(DATA / "papers" / f"arxiv_page_{n}.xml").read_bytes() for n in (1, 2)]
FEED = (DATA / "sources" / "lab_feed.atom").read_bytes()
MONTH = "2026-06"
READERS = 6


@pytest.fixture
def fake() -> Iterator[FakeSources]:
    with FakeSources(arxiv_pages=ARXIV_PAGES) as server:
        yield server


def write_sources(tmp_path: Path, fake: FakeSources, *, feed_path: str = "/lab.atom", **feed):
    """arXiv (cs.LG, two pages), the lab feed (hints, exclude) and an inbox directory."""
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    shutil.copy(DATA / "sources" / "inbox_papers.yaml", inbox / "papers.yaml")
    url = fake.add_feed(feed_path, FEED, **feed)
    path = tmp_path / "sources.yaml"
    path.write_text(
        f"""
sources:
  - name: arxiv-foundations
    type: arxiv
    categories: [cs.LG]
    page_size: 2
  - name: lab
    type: feed
    url: {url}
    timeout: 0.5
    topics: [learning-theory]
    exclude: [survey]
  - name: inbox
    type: directory
    path: inbox
""",
        encoding="utf-8",
    )
    return path


def fast(settings, fake: FakeSources, sources: Path, **more):
    """The settings of a test: local arXiv, no 3 s politeness wait, short back-off."""
    return settings.model_copy(
        update={
            "sources": sources,
            "arxiv_api_url": fake.arxiv_url,
            "arxiv_delay": 0.0,
            "source_retry_delay": 0.05,
            **more,
        }
    )


def options(fake: FakeSources, waits: list[float] | None = None) -> FetchOptions:
    sleep = waits.append if waits is not None else (lambda _s: None)
    return FetchOptions(arxiv_api_url=fake.arxiv_url, arxiv_delay=3.0, sleep=sleep)


# --- the sources file --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sources: []", "field 'sources': List should have at least 1 item"),
        ("papers: [1]", "must hold `sources:`"),
        (
            "sources:\n  - type: rss\n    url: https://x.org/f",
            "source 1, field 'type': must be one of arxiv, feed, directory (got 'rss')",
        ),
        (
            "sources:\n  - name: a\n    type: arxiv\n    categories: []",
            "source 1 ('a'), field 'categories': List should have at least 1 item",
        ),
        (
            "sources:\n  - type: feed\n    url: https://x.org/f\n  - name: b\n    type: feed\n"
            "    url: ftp://x.org/f",
            "source 2 ('b'), field 'url': must be an http(s) URL",
        ),
        (
            "sources:\n  - type: directory\n    path: in\n    folder: x",
            "source 1, field 'folder': is not a known setting",
        ),
        (
            "sources:\n  - name: a\n    type: feed\n    url: https://x.org/f\n"
            "  - name: a\n    type: feed\n    url: https://x.org/g",
            "source 2, field 'name': 'a' is used by an earlier source",
        ),
        ("sources: [\n", "is not valid YAML at line"),
    ],
)
def test_sources_file_errors_name_file_entry_and_field(tmp_path, text, expected) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SourcesFileError) as caught:
        load_sources_file(path)
    assert str(caught.value).startswith(str(path)), caught.value
    assert expected in str(caught.value)


def test_the_shipped_example_is_valid() -> None:
    example = Path(__file__).resolve().parent.parent / "sources.example.yaml"
    loaded = load_sources_file(example)
    arxiv = loaded.sources[0]
    assert arxiv.type == "arxiv" and "cs.LG" in arxiv.categories  # type: ignore[union-attr]


def test_unknown_topic_hint_is_named(engine, tmp_path, fake) -> None:
    path = write_sources(tmp_path, fake)
    path.write_text(path.read_text().replace("[learning-theory]", "[optimisation]"))
    with pytest.raises(SourcesFileError, match=r"source 2 \('lab'\), field 'topics'.*optimisation"):
        fetch_sources(engine, load_sources_file(path), MONTH, options(fake))


# --- fetching ----------------------------------------------------------------------------------


def test_fetch_every_source_then_refetch_changes_nothing(engine, tmp_path, fake) -> None:
    path = write_sources(tmp_path, fake)
    waits: list[float] = []
    reports = fetch_sources(engine, load_sources_file(path), MONTH, options(fake, waits))
    by_name = {r.name: r for r in reports}
    assert all(r.ok for r in reports), [r.summary() for r in reports]
    assert (by_name["arxiv-foundations"].added, waits) == (3, [3.0])  # polite between pages
    query = fake.arxiv_queries[0]["search_query"][0]
    assert query == "(cat:cs.LG) AND submittedDate:[202606010000 TO 202607010000]"
    lab = by_name["lab"]
    assert (lab.added, lab.filtered) == (2, 2)  # the survey (excluded) and a 2025 entry
    assert (by_name["inbox"].added, by_name["inbox"].files) == (1, 1)
    inbox = tmp_path / "inbox"
    assert not (inbox / "papers.yaml").exists() and (inbox / "imported" / "papers.yaml").exists()
    with Session(engine) as session:
        titles = set(session.exec(select(Paper.title)).all())
        calm = session.exec(select(Paper).where(Paper.title.startswith("Calm"))).one()
        calm_topics = session.exec(
            select(PaperTopic.topic_slug).where(PaperTopic.paper_id == calm.id)
        ).all()
    assert "A Survey of Benchmark Leaderboards" not in titles
    assert "Old Notes on Kernel Machines" not in titles
    assert calm_topics == ["learning-theory"]  # the source's hint, not `general`

    again = fetch_sources(engine, load_sources_file(path), MONTH, options(fake))
    assert [(r.name, r.added, r.updated, r.ok) for r in again] == [
        ("arxiv-foundations", 0, 0, True),
        ("lab", 0, 0, True),
        ("inbox", 0, 0, True),
    ]
    assert [r.skipped for r in again] == [3, 2, 0]
    assert again[2].files == 0


def test_slow_feed_times_out_and_the_others_still_import(engine, tmp_path, fake) -> None:
    path = write_sources(tmp_path, fake, delay=1.5)
    reports = fetch_sources(engine, load_sources_file(path), MONTH, options(fake))
    lab = next(r for r in reports if r.name == "lab")
    assert lab.error is not None and "no answer within 0.5 s" in lab.error
    assert [r.ok for r in reports] == [True, False, True]


def test_bad_file_in_the_directory_stays_put_and_is_named(engine, tmp_path, fake) -> None:
    path = write_sources(tmp_path, fake)
    bad = tmp_path / "inbox" / "broken.json"
    bad.write_text('[{"title": "No date", "summary": "s"}]', encoding="utf-8")
    reports = fetch_sources(engine, load_sources_file(path), MONTH, options(fake))
    inbox = reports[2]
    assert inbox.error is not None and "broken.json, record 1, field 'published'" in inbox.error
    assert "left in place" in inbox.error
    assert bad.exists() and (tmp_path / "inbox" / "imported" / "papers.yaml").exists()


def test_cli_papers_fetch(cli, tmp_path, fake, monkeypatch) -> None:
    path = write_sources(tmp_path, fake, script=[500])
    monkeypatch.setenv("NEWSLETTER_SOURCES", str(path))
    monkeypatch.setenv("NEWSLETTER_ARXIV_API_URL", fake.arxiv_url)
    monkeypatch.setenv("NEWSLETTER_ARXIV_DELAY", "0")
    first = cli("papers", "fetch", "--month", MONTH)
    assert first.exit_code == 1, first.output
    assert "✓ arxiv-foundations (arxiv): 3 added, 0 updated, 0 unchanged" in first.output
    assert "✗ lab (feed): failed: feed 'lab' answered HTTP 500" in first.output
    assert "✓ inbox (directory): 1 added, 0 updated, 0 unchanged, 1 file(s)" in first.output
    second = cli("papers", "fetch", "--month", MONTH)
    assert second.exit_code == 0, second.output
    assert "lab (feed): 2 added" in second.output and "arxiv-foundations (arxiv): 0 added" in (
        second.output
    )
    assert cli("papers", "fetch", "--month", "June").exit_code == 2


# --- the monthly job ---------------------------------------------------------------------------


def _outbox(settings) -> list[Path]:
    return sorted(Path(settings.outbox_dir).glob("delivery-*.eml"))


def _html(path: Path) -> str:
    """The decoded HTML part of an outbox email."""
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return " ".join(part.get_content().split())


def _runs(session: Session, job: str) -> list[tuple[str, str]]:
    session.expire_all()
    runs = [
        (r.outcome, r.message)
        for r in session.exec(select(JobRun).where(JobRun.job == job, JobRun.month == MONTH))
    ]
    session.rollback()  # end the read transaction: the CLI and the job write next
    return runs


def test_job_fetches_and_sends_a_month_nobody_imported(
    engine, session, settings, tmp_path, fake
) -> None:
    seed_subscribers(session, READERS, [()])
    config = fast(settings, fake, write_sources(tmp_path, fake))
    outcome = run_monthly_job(engine, config, month=MONTH, deliver_here=True)
    assert outcome.outcome == "sent", outcome
    assert len(_outbox(settings)) == READERS
    fetches = _runs(session, "fetch-sources")
    assert [o for o, _ in fetches] == ["fetched"]
    assert "lab (feed): 2 added" in fetches[0][1]
    email = _html(_outbox(settings)[0])
    assert "Adaptive Step Sizes" in email and "Exact sequence interpolation" in email
    # A feed's abstract is cut after its first sentences (<= 300 characters) in the email.
    assert "without a line search. The rule needs one extra gradient evaluation" in email
    assert "prove convergence for smooth" not in email


def test_failing_source_is_retried_then_recorded_and_shown(
    engine, session, settings, tmp_path, fake, cli
) -> None:
    seed_subscribers(session, READERS, [()])
    config = fast(settings, fake, write_sources(tmp_path, fake, script=[503, 502]))
    outcome = run_monthly_job(engine, config, month=MONTH, deliver_here=True)
    assert outcome.outcome == "sent", outcome
    assert fake.hits("/lab.atom") == 3
    fetches = _runs(session, "fetch-sources")
    assert [o for o, _ in fetches] == ["source-failed", "source-failed", "fetched"]
    assert (
        "HTTP 503" in fetches[0][1] and "retrying the failed source(s) in 0.05 s" in fetches[0][1]
    )
    assert "retrying the failed source(s) in 0.1 s" in fetches[1][1]
    assert "arxiv-foundations" not in fetches[1][1]  # only the failing source again
    status = cli("issue", "status", MONTH)
    assert status.exit_code == 0, status.output
    assert "source-failed: fetch attempt 1 of at most 5" in " ".join(status.output.split())
    shown = " ".join(status.output.split())
    assert "fetched: fetch attempt 3 of at most 5: lab (feed): 2 added" in shown


def test_source_that_keeps_failing_leaves_the_draft_for_a_person(
    engine, session, settings, tmp_path, fake, cli
) -> None:
    seed_subscribers(session, READERS, [()])
    config = fast(
        settings, fake, write_sources(tmp_path, fake, script=[503] * 10), source_retries=2
    )
    outcome = run_monthly_job(engine, config, month=MONTH, deliver_here=True)
    assert outcome.outcome == "source-failed" and not outcome.ok
    assert "source(s) 'lab' failed after retries" in outcome.message
    assert "draft composed with what came in, not sent" in outcome.message
    assert not _outbox(settings)
    assert session.exec(select(Issue.status).where(Issue.month == MONTH)).one() == "draft"
    fetches = _runs(session, "fetch-sources")
    assert [o for o, _ in fetches] == ["source-failed"] * 3
    assert fetches[-1][1].endswith("no more retries")
    status = cli("issue", "status", MONTH)
    assert "source-failed: source(s) 'lab' failed" in " ".join(status.output.split())

    # Told to send with what it has, the next run does, and says what was missing.
    lenient = config.model_copy(update={"send_on_source_failure": True, "source_retries": 0})
    sent = run_monthly_job(engine, lenient, month=MONTH, deliver_here=True)
    assert sent.outcome == "sent" and "although source(s) 'lab' failed" in sent.message
    assert len(_outbox(settings)) == READERS


def test_retries_stop_at_the_send_cutoff(engine, session, settings, tmp_path, fake) -> None:
    config = fast(
        settings,
        fake,
        write_sources(tmp_path, fake, script=[503] * 10),
        source_retry_delay=3600.0,
        send_cutoff_hours=1.0,
    )
    fired = datetime(2026, 7, 1, 9, tzinfo=UTC)
    outcome = run_monthly_job(
        engine, config, scheduled_for=fired, now=fired + timedelta(minutes=10)
    )
    assert outcome.outcome == "source-failed"  # one attempt: a retry in 1 h passes the cutoff
    assert [o for o, _ in _runs(session, "fetch-sources")] == ["source-failed"]


# --- caps and ranking --------------------------------------------------------------------------


def test_caps_keep_the_strongest_matches_and_the_web_version_has_the_rest(
    engine, session, settings, tmp_path, fake, cli
) -> None:
    from starlette.testclient import TestClient

    from newsletter.web.app import create_app

    seed_subscribers(session, READERS, [()])
    config = fast(
        settings, fake, write_sources(tmp_path, fake), max_papers=3, max_papers_per_topic=1
    )
    outcome = run_monthly_job(engine, config, month=MONTH, deliver_here=True)
    assert outcome.outcome == "sent", outcome
    session.expire_all()
    rows = session.exec(
        select(Paper.title, IssuePaper.topic_slug, IssuePaper.in_email, IssuePaper.score)
        .join(Paper, Paper.id == IssuePaper.paper_id)
        .order_by(IssuePaper.score.desc())
    ).all()
    session.rollback()
    assert len(rows) == 6
    shown = [r for r in rows if r.in_email]
    assert len(shown) == 3 and len({r.topic_slug for r in shown}) == 3  # one per topic
    optimization = [r for r in rows if r.topic_slug == "optimization"]
    # Two optimization papers; the one whose title names its keywords wins the only place.
    best = max(optimization, key=lambda r: r.score)
    assert best.in_email and best.title == "Adaptive Step Sizes for Stochastic Gradient Descent"
    held_back = [r.title for r in rows if not r.in_email]
    email = _html(_outbox(settings)[0])
    assert all(t.split(":")[0] not in email for t in held_back if t != best.title)
    assert "3 more papers this month are on the <a href" in email

    candidates = cli("issue", "candidates", MONTH)
    assert candidates.exit_code == 0, candidates.output
    assert "6 candidates, 3 in the email" in candidates.output
    assert candidates.output.count("web only") == 3

    web = TestClient(create_app(config), base_url=config.base_url).get(f"/issues/{MONTH}")
    assert web.status_code == 200
    assert all(t.split(":")[0].replace("&", "&amp;") in web.text for t, *_ in rows)
    assert "more paper" not in web.text


def test_approval_mode_tells_the_editor_about_every_candidate(
    engine, session, settings, tmp_path, fake
) -> None:
    config = fast(
        settings,
        fake,
        write_sources(tmp_path, fake),
        max_papers=2,
        require_approval=True,
        editors="editor@example.org",
    )
    outcome = run_monthly_job(engine, config, month=MONTH)
    assert outcome.outcome == "awaiting-approval", outcome
    assert "6 candidates, 2 in the email" in outcome.message
    assert f"`newsletter issue candidates {MONTH}`" in outcome.message


# --- summaries in the email --------------------------------------------------------------------


def test_abstract_excerpt_cuts_at_a_sentence_end_within_300_characters() -> None:
    from newsletter.papers.summaries import abstract_excerpt, email_summary

    first = "We bound the generalization gap of SGD, e.g. for wide networks (cf. Fig. 2)."
    second = "The bound by A. Turing et al. is tight for two-layer models."
    third = "Experiments on image classification confirm the rate " + "again " * 40 + "."
    abstract = f"{first} {second} {third}"
    excerpt = abstract_excerpt(abstract)
    assert excerpt == f"{first} {second}" and len(excerpt) <= 300
    long_sentence = "Gradient " + "descent with momentum " * 30 + "converges."
    cut = abstract_excerpt(long_sentence)
    assert len(cut) <= 300 and cut.endswith("…") and " " not in cut[-2:], cut
    assert long_sentence.startswith(cut[:-1]) and long_sentence[len(cut) - 1] == " "
    assert abstract_excerpt("Short and sweet.") == "Short and sweet."
    # A summary a person wrote is shown whole; a feed's (summary == abstract) is cut.
    assert email_summary("Plain words for practitioners.", abstract) == (
        "Plain words for practitioners."
    )
    assert email_summary(abstract, abstract) == excerpt
