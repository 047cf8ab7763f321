"""Shaping a draft on the desk: subject, editor's note, lead paper, each paper's summary and
topics, dropping, reordering and adding papers.

Every change records a new revision with its snapshot (`newsletter.revisions`: every cached
render and preview follows, and an approval or schedule of an earlier revision is withdrawn)
and writes an audit entry in the same transaction. A change to the paper list marks the
draft curated, so the monthly job's recompose keeps it.
"""

from __future__ import annotations

from sqlalchemy import delete, func
from sqlmodel import Session, select

from newsletter import audit, revisions
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
from newsletter.models import Issue, IssuePaper, Paper, PaperTopic, Topic
from newsletter.months import LATE_WINDOW_MONTHS, shift_month
from newsletter.papers.validation import MAX_SUMMARY
from newsletter.rendering.note import MAX_NOTE
from subscribers.models import utcnow

# How far back "add a late paper" looks: wider than compose's window, on purpose (a person
# decides), but bounded so the list stays short.
ADD_WINDOW_MONTHS = 12


def editable_issue(session: Session, month: str) -> Issue:
    """The draft, locked for this transaction on PostgreSQL: an edit and a release starting
    at the same moment are serialised on the issue's row, so one sees the other."""
    # populate_existing: an Issue this session read before the lock is re-read under it.
    locked = select(Issue).where(Issue.month == month).with_for_update()
    issue = session.exec(locked.execution_options(populate_existing=True)).first()
    issue = issue or find_issue(session, month)  # none: find_issue says so
    if issue.status not in COMPOSABLE_STATUSES:
        raise NewsletterError(f"issue {month} is {issue.status}; only a draft can be changed")
    return issue


DEFERRED = "newsletter.deferred_revision"  # session.info key: a whole-page save in progress


def record_change(
    session: Session, issue: Issue, actor: str, reason: str, *, curated: bool = False
) -> None:
    issue.composed_at = utcnow()
    if curated:
        issue.curated = True
    session.add(issue)
    pending = session.info.get(DEFERRED)
    if pending is not None and pending["issue"] is issue:
        pending["reasons"].append(reason)  # one revision for the whole save, at its end
        return
    revisions.record(session, issue, actor, reason)


def listing_of(session: Session, issue: Issue, paper_id: int) -> IssuePaper:
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
        record_change(session, issue, actor, "subject changed", curated=True)
        audit.record(session, actor, "issue.subject", month, f"{before!r} -> {clean!r}")
    return issue


def set_note(session: Session, month: str, note: str, actor: str) -> Issue:
    issue = editable_issue(session, month)
    note = note.replace("\r\n", "\n").strip()
    if len(note) > MAX_NOTE:
        raise NewsletterError(f"the note is {len(note):,} characters; the limit is {MAX_NOTE:,}")
    if note != issue.editor_note:
        issue.editor_note = note
        record_change(session, issue, actor, "editor's note changed")
        audit.record(session, actor, "issue.note", month, note[:500])
    return issue


def set_lead(session: Session, month: str, paper_id: int | None, actor: str) -> Issue:
    issue = editable_issue(session, month)
    if paper_id is not None:
        listing_of(session, issue, paper_id)
    if paper_id != issue.lead_paper_id:
        issue.lead_paper_id = paper_id
        title = session.get(Paper, paper_id).title if paper_id else "none"  # type: ignore[union-attr]
        record_change(session, issue, actor, f"lead paper changed to {title[:120]}")
        audit.record(session, actor, "issue.lead", month, f"lead paper: {title}")
    return issue


def known_topics(session: Session) -> dict[str, int]:
    return {t.slug: t.position for t in session.exec(select(Topic)).all()}


def edit_paper(
    session: Session, month: str, paper_id: int, summary: str, topics: list[str], actor: str
) -> Paper:
    """New summary and topics for a paper of the draft; its section follows its first topic."""
    issue = editable_issue(session, month)
    listing = listing_of(session, issue, paper_id)
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
    known = known_topics(session)
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
    session.flush()
    # Another draft listing the same paper (a late arrival) changed too: its own revision,
    # and any approval of it withdrawn.
    for other in session.exec(
        select(Issue).where(
            Issue.id != issue.id,
            Issue.status.in_([str(s) for s in COMPOSABLE_STATUSES]),
            Issue.id.in_(select(IssuePaper.issue_id).where(IssuePaper.paper_id == paper_id)),
        )
    ).all():
        revisions.record(
            session, other, actor, f"{'; '.join(notes)} of {paper.title[:120]} (in {month})"
        )
    section = paper_section(session, paper_id)
    moved = section != listing.topic_slug
    if moved:
        listing.topic_slug = section
        listing.position = _next_position(session, issue, section)
        session.add(listing)
    detail = f"{paper.title[:120]}: {'; '.join(notes)}"
    record_change(session, issue, actor, detail, curated=moved)
    audit.record(session, actor, "paper.edit", month, detail)
    return paper


def _next_position(session: Session, issue: Issue, section: str) -> int:
    top = session.exec(
        select(func.max(IssuePaper.position)).where(
            IssuePaper.issue_id == issue.id, IssuePaper.topic_slug == section
        )
    ).one()
    return (top if top is not None else -1) + 1


def keep_topics(session: Session, month: str, paper_id: int, actor: str) -> Paper:
    """The editor looked at a flagged paper's topics and kept them: no flag, no revision
    (the content is the same)."""
    editable_issue(session, month)
    paper = session.get(Paper, paper_id)
    if paper is None:
        raise NewsletterError(f"paper {paper_id} is not in issue {month}")
    if paper.topic_confidence is not None:
        paper.topic_confidence = None
        session.add(paper)
        audit.record(session, actor, "paper.topics.confirm", month, paper.title[:120])
    return paper


def drop_paper(session: Session, month: str, paper_id: int, actor: str) -> Issue:
    issue = editable_issue(session, month)
    listing = listing_of(session, issue, paper_id)
    remaining = session.exec(
        select(func.count()).select_from(IssuePaper).where(IssuePaper.issue_id == issue.id)
    ).one()
    if remaining <= 1:
        raise NewsletterError("an issue needs at least one paper; this is the last one")
    title = session.get(Paper, paper_id).title  # type: ignore[union-attr]
    session.delete(listing)
    if issue.lead_paper_id == paper_id:
        issue.lead_paper_id = None
    record_change(session, issue, actor, f"paper dropped: {title[:120]}", curated=True)
    audit.record(session, actor, "issue.drop_paper", month, title[:200])
    return issue


def locked_paper_ids(session: Session, issue: Issue):  # type: ignore[no-untyped-def]
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
            .where(Paper.id.not_in(locked_paper_ids(session, issue)), Paper.id.not_in(listed))
            .order_by(Paper.published.desc(), Paper.normalized_title)
            .limit(500)
        ).all()
    )


def add_paper(
    session: Session, month: str, paper_id: int, actor: str, *, any_age: bool = False
) -> Issue:
    """Put a paper in the draft. `any_age`: one an editor named (by arXiv id), however old,
    still never one a sent or sending issue listed (nobody gets a paper twice)."""
    issue = editable_issue(session, month)
    if any_age:
        paper = session.get(Paper, paper_id)
        listed = session.get(IssuePaper, (issue.id, paper_id)) is not None
        locked = paper_id in set(session.exec(locked_paper_ids(session, issue)).all())
        if paper is None or listed or locked or paper.month > issue.month:
            reason = (
                "it is already in this issue"
                if listed
                else "an earlier issue already sent it"
                if locked
                else f"it was published after {month}"
            )
            raise NewsletterError(f"paper {paper_id} cannot be added: {reason}")
    elif paper_id not in {p.id for p in addable_papers(session, month)}:
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
    record_change(session, issue, actor, f"paper added: {paper.title[:120]}", curated=True)
    audit.record(session, actor, "issue.add_paper", month, paper.title[:200])
    return issue


def recompose(session: Session, month: str, title: str, actor: str) -> ComposeResult:
    """Throw away the desk's list edits and compose the draft from the papers again
    (the note and lead paper stay when that paper is still listed)."""
    issue = editable_issue(session, month)
    issue.curated = False
    session.add(issue)
    result = compose_issue(
        session, month, title, late_window_months=LATE_WINDOW_MONTHS, actor=actor
    )
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
