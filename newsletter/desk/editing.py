"""Shaping a draft on the desk: subject, editor's note, lead paper, each paper's summary and
topics, dropping, reordering and adding papers.

Every change bumps the issue's revision (so every cached render and preview follows), sends
an approved issue back to draft, and writes an audit entry in the same transaction. A change
to the paper list marks the draft curated, so the monthly job's recompose keeps it.
"""

from __future__ import annotations

from sqlalchemy import delete, func, update
from sqlmodel import Session, select

from newsletter.desk import audit
from newsletter.errors import NewsletterError
from newsletter.issues import (
    COMPOSABLE_STATUSES,
    LOCKED_STATUSES,
    MAX_SUBJECT,
    ComposeResult,
    compose_issue,
    find_issue,
    paper_section,
)
from newsletter.models import Issue, IssuePaper, IssueStatus, Paper, PaperTopic, Topic
from newsletter.months import LATE_WINDOW_MONTHS, shift_month
from newsletter.papers.validation import MAX_SUMMARY
from newsletter.rendering.note import MAX_NOTE
from subscribers.models import utcnow

# How far back "add a late paper" looks: wider than compose's window, on purpose (a person
# decides), but bounded so the list stays short.
ADD_WINDOW_MONTHS = 12


def editable_issue(session: Session, month: str) -> Issue:
    issue = find_issue(session, month)
    if issue.status not in COMPOSABLE_STATUSES:
        raise NewsletterError(f"issue {month} is {issue.status}; only a draft can be changed")
    return issue


def _changed(session: Session, issue: Issue, *, curated: bool = False) -> None:
    issue.revision += 1
    issue.composed_at = utcnow()
    if issue.status == IssueStatus.APPROVED:
        issue.status = IssueStatus.DRAFT
        issue.approved_at = None
    if curated:
        issue.curated = True
    session.add(issue)
    session.flush()


def _listing(session: Session, issue: Issue, paper_id: int) -> IssuePaper:
    row = session.get(IssuePaper, (issue.id, paper_id))
    if row is None:
        raise NewsletterError(f"paper {paper_id} is not in issue {issue.month}")
    return row


def set_subject(session: Session, month: str, subject: str, actor: str) -> Issue:
    issue = editable_issue(session, month)
    clean = " ".join(subject.split())  # never a CR/LF in a header
    if not clean:
        raise NewsletterError("the subject cannot be empty")
    if len(clean) > MAX_SUBJECT:
        raise NewsletterError(f"the subject is {len(clean)} characters; the limit is {MAX_SUBJECT}")
    if clean != issue.subject:
        before = issue.subject
        issue.subject = clean
        _changed(session, issue, curated=True)
        audit.record(session, actor, "issue.subject", month, f"{before!r} -> {clean!r}")
    return issue


def set_note(session: Session, month: str, note: str, actor: str) -> Issue:
    issue = editable_issue(session, month)
    note = note.replace("\r\n", "\n").strip()
    if len(note) > MAX_NOTE:
        raise NewsletterError(f"the note is {len(note):,} characters; the limit is {MAX_NOTE:,}")
    if note != issue.editor_note:
        issue.editor_note = note
        _changed(session, issue)
        audit.record(session, actor, "issue.note", month, note[:500])
    return issue


def set_lead(session: Session, month: str, paper_id: int | None, actor: str) -> Issue:
    issue = editable_issue(session, month)
    if paper_id is not None:
        _listing(session, issue, paper_id)
    if paper_id != issue.lead_paper_id:
        issue.lead_paper_id = paper_id
        _changed(session, issue)
        title = session.get(Paper, paper_id).title if paper_id else "none"  # type: ignore[union-attr]
        audit.record(session, actor, "issue.lead", month, f"lead paper: {title}")
    return issue


def _known_topics(session: Session) -> dict[str, int]:
    return {t.slug: t.position for t in session.exec(select(Topic)).all()}


def edit_paper(
    session: Session, month: str, paper_id: int, summary: str, topics: list[str], actor: str
) -> Paper:
    """New summary and topics for a paper of the draft; its section follows its first topic."""
    issue = editable_issue(session, month)
    listing = _listing(session, issue, paper_id)
    paper = session.get(Paper, paper_id)
    assert paper is not None
    summary = summary.replace("\r\n", "\n").strip()
    if not summary:
        raise NewsletterError(f"paper {paper.title!r}: the summary cannot be empty")
    if len(summary) > MAX_SUMMARY:
        raise NewsletterError(
            f"paper {paper.title!r}: the summary is {len(summary):,} characters; "
            f"the limit is {MAX_SUMMARY:,}"
        )
    known = _known_topics(session)
    unknown = [t for t in topics if t not in known]
    if unknown:
        raise NewsletterError(f"unknown topic {unknown[0]!r}")
    chosen = sorted(set(topics), key=lambda s: known[s])
    if not chosen:
        raise NewsletterError(f"paper {paper.title!r}: choose at least one topic")
    before = sorted(
        session.exec(select(PaperTopic.topic_slug).where(PaperTopic.paper_id == paper_id)).all(),
        key=lambda s: known.get(s, len(known)),
    )
    if summary == paper.summary and chosen == before:
        if paper.topic_confidence is not None:  # the editor looked and kept them: no flag
            paper.topic_confidence = None
            session.add(paper)
            audit.record(session, actor, "paper.topics.confirm", month, paper.title[:120])
        return paper
    paper.topic_confidence = None  # a person chose the topics now
    notes = []
    if summary != paper.summary:
        paper.summary = summary
        notes.append("summary")
    if chosen != before:
        session.execute(delete(PaperTopic).where(PaperTopic.paper_id == paper_id))
        session.add_all(PaperTopic(paper_id=paper_id, topic_slug=slug) for slug in chosen)
        notes.append(f"topics {', '.join(before) or '-'} -> {', '.join(chosen)}")
    paper.updated_at = utcnow()
    session.add(paper)
    # Another draft listing the same paper (a late arrival) must not keep a stale render.
    session.execute(
        update(Issue)
        .where(
            Issue.id != issue.id,
            Issue.status.in_([str(s) for s in COMPOSABLE_STATUSES]),
            Issue.id.in_(select(IssuePaper.issue_id).where(IssuePaper.paper_id == paper_id)),
        )
        .values(revision=Issue.revision + 1)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    section = paper_section(session, paper_id)
    moved = section != listing.topic_slug
    if moved:
        listing.topic_slug = section
        listing.position = _next_position(session, issue, section)
        session.add(listing)
    _changed(session, issue, curated=moved)
    audit.record(session, actor, "paper.edit", month, f"{paper.title[:120]}: {'; '.join(notes)}")
    return paper


def _next_position(session: Session, issue: Issue, section: str) -> int:
    top = session.exec(
        select(func.max(IssuePaper.position)).where(
            IssuePaper.issue_id == issue.id, IssuePaper.topic_slug == section
        )
    ).one()
    return (top if top is not None else -1) + 1


def drop_paper(session: Session, month: str, paper_id: int, actor: str) -> Issue:
    issue = editable_issue(session, month)
    listing = _listing(session, issue, paper_id)
    remaining = session.exec(
        select(func.count()).select_from(IssuePaper).where(IssuePaper.issue_id == issue.id)
    ).one()
    if remaining <= 1:
        raise NewsletterError("an issue needs at least one paper; this is the last one")
    title = session.get(Paper, paper_id).title  # type: ignore[union-attr]
    session.delete(listing)
    if issue.lead_paper_id == paper_id:
        issue.lead_paper_id = None
    _changed(session, issue, curated=True)
    audit.record(session, actor, "issue.drop_paper", month, title[:200])
    return issue


def move_paper(session: Session, month: str, paper_id: int, step: int, actor: str) -> Issue:
    """Swap the paper with its neighbour in its section (`step` -1: up, +1: down)."""
    issue = editable_issue(session, month)
    listing = _listing(session, issue, paper_id)
    section = session.exec(
        select(IssuePaper)
        .where(IssuePaper.issue_id == issue.id, IssuePaper.topic_slug == listing.topic_slug)
        .order_by(IssuePaper.position, IssuePaper.paper_id)
    ).all()
    for i, row in enumerate(section):  # positions may have gaps or ties: renumber first
        row.position = i
    index = next(i for i, row in enumerate(section) if row.paper_id == paper_id)
    other = index + (1 if step > 0 else -1)
    if not 0 <= other < len(section):
        return issue
    section[index].position, section[other].position = other, index
    session.add_all(section)
    _changed(session, issue, curated=True)
    title = session.get(Paper, paper_id).title  # type: ignore[union-attr]
    audit.record(
        session, actor, "issue.move_paper", month, f"{title[:150]} {'down' if step > 0 else 'up'}"
    )
    return issue


def _locked_paper_ids(session: Session, issue: Issue):  # type: ignore[no-untyped-def]
    return (
        select(IssuePaper.paper_id)
        .join(Issue, Issue.id == IssuePaper.issue_id)
        .where(Issue.status.in_(sorted(LOCKED_STATUSES)), Issue.id != issue.id)
    )


def addable_papers(session: Session, month: str) -> list[Paper]:
    """Papers a person may add: published up to this month (within a year), never in a
    sent or sending issue, not in this one yet."""
    issue = find_issue(session, month)
    listed = select(IssuePaper.paper_id).where(IssuePaper.issue_id == issue.id)
    return list(
        session.exec(
            select(Paper)
            .where(
                Paper.month <= issue.month,
                Paper.month >= shift_month(issue.month, -ADD_WINDOW_MONTHS),
            )
            .where(Paper.id.not_in(_locked_paper_ids(session, issue)), Paper.id.not_in(listed))
            .order_by(Paper.published.desc(), Paper.normalized_title)
            .limit(500)
        ).all()
    )


def add_paper(session: Session, month: str, paper_id: int, actor: str) -> Issue:
    issue = editable_issue(session, month)
    if paper_id not in {p.id for p in addable_papers(session, month)}:
        raise NewsletterError(
            f"paper {paper_id} cannot be added: unknown, already listed, already sent in an "
            f"earlier issue, or published after {month}"
        )
    paper = session.get(Paper, paper_id)
    assert paper is not None
    section = paper_section(session, paper_id)
    session.add(
        IssuePaper(
            issue_id=issue.id,  # type: ignore[arg-type]
            paper_id=paper_id,
            topic_slug=section,
            position=_next_position(session, issue, section),
            late=paper.month < issue.month,
        )
    )
    _changed(session, issue, curated=True)
    audit.record(session, actor, "issue.add_paper", month, paper.title[:200])
    return issue


def recompose(session: Session, month: str, title: str, actor: str) -> ComposeResult:
    """Throw away the desk's list edits and compose the draft from the papers again
    (the note and lead paper stay when that paper is still listed)."""
    issue = editable_issue(session, month)
    issue.curated = False
    session.add(issue)
    result = compose_issue(session, month, title, late_window_months=LATE_WINDOW_MONTHS)
    if (
        issue.lead_paper_id is not None
        and session.get(IssuePaper, (issue.id, issue.lead_paper_id)) is None
    ):
        issue.lead_paper_id = None
        session.add(issue)
    audit.record(
        session,
        actor,
        "issue.recompose",
        month,
        f"{result.total} papers ({result.added} added, {result.removed} removed)",
    )
    return result
