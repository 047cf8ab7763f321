"""Composing a month's issue on SQLite and PostgreSQL: sections, refreshes and revisions,
late arrivals, locked issues and the explicit empty month."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from newsletter.errors import NewsletterError
from newsletter.issues import EmptyMonthError, compose_issue, load_issue_contents
from newsletter.models import Issue, IssuePaper, IssueStatus, Paper
from newsletter.months import month_label, parse_month
from newsletter.papers.store import import_paths

SAMPLE = Path(__file__).parent.parent / "newsletter" / "data" / "sample_papers.yaml"
TITLE = "What's new in ML Foundations"


def add_papers(engine: Engine, tmp_path: Path, *papers: dict) -> None:
    path = tmp_path / f"extra-{len(list(tmp_path.iterdir()))}.json"
    records = [
        {"summary": "A summary.", "url": f"https://example.org/{i}", **p}
        for i, p in enumerate(papers)
    ]
    path.write_text(json.dumps(records))
    (report,) = import_paths(engine, [path])
    assert report.error is None, report.error


def compose(engine: Engine, month: str):
    with Session(engine, expire_on_commit=False) as session:
        result = compose_issue(session, month, TITLE)
        session.commit()
        return result


def set_status(engine: Engine, month: str, status: IssueStatus) -> None:
    with Session(engine) as session:
        issue = session.exec(select(Issue).where(Issue.month == month)).one()
        issue.status = status
        session.add(issue)
        session.commit()


def listed(engine: Engine, month: str) -> list[tuple[str, str, int, bool]]:
    with Session(engine) as session:
        issue = session.exec(select(Issue).where(Issue.month == month)).one()
        contents = load_issue_contents(session, issue)
        return [(e.section, e.paper.title, e.position, e.late) for e in contents.entries]


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    (report,) = import_paths(engine, [SAMPLE])
    assert report.error is None
    return engine


def test_month_helpers() -> None:
    assert month_label("2026-04") == "April 2026" and month_label("2025-12") == "December 2025"
    assert parse_month("2026-04") == "2026-04"
    for bad in ("2026-4", "2026-13", "April 2026", "2026-04-01", ""):
        with pytest.raises(NewsletterError, match="YYYY-MM"):
            parse_month(bad)


def test_compose_april_lists_the_april_papers_by_section(seeded: Engine) -> None:
    result = compose(seeded, "2026-04")
    issue = result.issue
    assert (result.created, result.changed, result.added, result.late, result.total) == (
        True,
        True,
        5,
        0,
        5,
    )
    assert issue.subject == "What's new in ML Foundations — April 2026"
    assert (issue.status, issue.revision) == (IssueStatus.DRAFT, 1)
    entries = listed(seeded, "2026-04")
    assert [section for section, *_ in entries] == [
        "optimization",
        "learning-theory",
        "spatio-temporal",
        "graph-learning",
        "ml-systems",
    ]
    assert all(not late for *_, late in entries)
    assert any(title.startswith("Hypergraph") for _, title, *_ in entries)


def test_recompose_refreshes_and_bumps_revision_only_on_change(
    seeded: Engine, tmp_path: Path
) -> None:
    compose(seeded, "2026-04")
    same = compose(seeded, "2026-04")
    assert (same.created, same.changed, same.issue.revision) == (False, False, 1)
    add_papers(seeded, tmp_path, {"title": "Adam at Scale", "published": "2026-04-20"})
    fresh = compose(seeded, "2026-04")
    assert (fresh.changed, fresh.added, fresh.removed, fresh.total) == (True, 1, 0, 6)
    assert fresh.issue.revision == 2
    optimization = [t for s, t, *_ in listed(seeded, "2026-04") if s == "optimization"]
    assert optimization[-1] == "Adam at Scale"  # published later, listed later


def test_recompose_with_a_new_title_changes_the_subject(seeded: Engine) -> None:
    compose(seeded, "2026-04")
    with Session(seeded, expire_on_commit=False) as session:
        result = compose_issue(session, "2026-04", "ML Foundations Monthly")
        session.commit()
    assert result.changed and result.issue.revision == 2
    assert result.issue.subject == "ML Foundations Monthly — April 2026"


def test_subject_is_one_line_and_bounded(seeded: Engine) -> None:
    with Session(seeded) as session:
        result = compose_issue(session, "2026-04", "ML\r\nBcc: victim@example.org")
        assert result.issue.subject == "ML Bcc: victim@example.org — April 2026"
        with pytest.raises(NewsletterError, match="shorten NEWSLETTER_TITLE"):
            compose_issue(session, "2026-05", "x" * 400)


def test_approved_issue_stays_approved_unless_recompose_changes_it(
    seeded: Engine, tmp_path: Path
) -> None:
    compose(seeded, "2026-04")
    set_status(seeded, "2026-04", IssueStatus.APPROVED)
    assert compose(seeded, "2026-04").issue.status == IssueStatus.APPROVED
    add_papers(seeded, tmp_path, {"title": "Yet Another Optimizer", "published": "2026-04"})
    result = compose(seeded, "2026-04")
    assert (result.issue.status, result.issue.revision) == (IssueStatus.DRAFT, 2)


@pytest.mark.parametrize(
    "status", [IssueStatus.SENDING, IssueStatus.PAUSED, IssueStatus.SENT, IssueStatus.MISSED]
)
def test_locked_issue_is_never_changed(seeded: Engine, tmp_path: Path, status) -> None:
    compose(seeded, "2026-04")
    set_status(seeded, "2026-04", status)
    before = listed(seeded, "2026-04")
    add_papers(seeded, tmp_path, {"title": "Arrived Too Late", "published": "2026-04"})
    with pytest.raises(NewsletterError, match=f"is {status}; a {status} issue is never changed"):
        compose(seeded, "2026-04")
    assert listed(seeded, "2026-04") == before
    with Session(seeded) as session:
        issue = session.exec(select(Issue).where(Issue.month == "2026-04")).one()
        assert (issue.status, issue.revision) == (status, 1)


def test_late_arrivals_join_the_next_issue_and_sent_papers_never_return(
    seeded: Engine, tmp_path: Path
) -> None:
    compose(seeded, "2026-04")
    set_status(seeded, "2026-04", IssueStatus.SENT)
    add_papers(
        seeded,
        tmp_path,
        {"title": "An April Straggler on Transformers", "published": "2026-04-29"},
        {"title": "Ancient Graph Paper", "published": "2025-06"},  # outside the late window
    )
    result = compose(seeded, "2026-05")
    assert (result.total, result.late) == (3, 1)
    entries = listed(seeded, "2026-05")
    titles = {title: (section, late) for section, title, _, late in entries}
    assert titles["An April Straggler on Transformers"] == ("transformers", True)
    assert titles["Deep neural operator for free boundary problems"] == ("scientific-ml", False)
    assert "Ancient Graph Paper" not in titles
    assert not any(t.startswith("Hypergraph") for t in titles)  # sent in April: never again
    # Within a section this month's papers come before late ones.
    with Session(seeded) as session:
        flags = session.exec(select(IssuePaper.late).where(IssuePaper.issue_id == result.issue.id))
        assert sorted(flags.all()) == [False, False, True]


def test_unsent_drafts_do_not_hold_their_papers(seeded: Engine) -> None:
    compose(seeded, "2026-04")  # composed, never sent
    compose(seeded, "2026-05")
    june = compose(seeded, "2026-06")
    assert (june.total, june.late) == (8, 7)  # April and May papers arrive late in June
    set_status(seeded, "2026-06", IssueStatus.SENT)
    with pytest.raises(EmptyMonthError):
        compose(seeded, "2026-05")  # every paper it had went out in June
    with Session(seeded) as session:  # the refused recompose left the May draft as it was
        may = session.exec(select(Issue).where(Issue.month == "2026-05")).one()
        assert may.revision == 1
    assert len(listed(seeded, "2026-05")) == 7


def test_empty_month_is_explicit_and_creates_nothing(seeded: Engine) -> None:
    with pytest.raises(EmptyMonthError, match="no papers to send for January 2026"):
        compose(seeded, "2026-01")
    with Session(seeded) as session:
        assert session.exec(select(Issue)).all() == []
    with pytest.raises(NewsletterError, match="YYYY-MM"):
        compose(seeded, "2026-1")


def test_papers_without_topics_go_to_general(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(
            Paper(
                title="Untopiced",
                normalized_title="untopiced",
                summary="s",
                published=date(2026, 3, 2),
                month="2026-03",
            )
        )
        session.commit()
    compose(engine, "2026-03")
    assert listed(engine, "2026-03") == [("general", "Untopiced", 0, False)]


def test_cli_compose(cli) -> None:
    empty = cli("issue", "compose", "2026-04")
    assert empty.exit_code == 1 and "no papers to send for April 2026" in empty.output
    assert cli("papers", "import", str(SAMPLE)).exit_code == 0
    made = cli("issue", "compose", "2026-04")
    assert made.exit_code == 0, made.output
    assert "Composed draft issue 2026-04: 5 papers." in made.output
    assert "Subject: What's new in ML Foundations — April 2026" in made.output
    again = cli("issue", "compose", "2026-04")
    assert "is up to date (draft, revision 1)" in again.output
    assert cli("issue", "compose", "April").exit_code == 2
