"""The draft page as one document: a whole-page save that never drops another field's
edit, and restoring an earlier revision (history's "restore", a drop's "undo").

Both apply several changes and record them as one revision; the single-field edits they
reuse live in `newsletter.desk.editing`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete
from sqlmodel import Session, select

from newsletter import audit, revisions
from newsletter.desk.editing import (
    DEFERRED,
    edit_paper,
    editable_issue,
    known_topics,
    listing_of,
    locked_paper_ids,
    record_change,
    set_lead,
    set_note,
    set_subject,
)
from newsletter.errors import NewsletterError
from newsletter.models import Issue, IssuePaper, Paper, PaperTopic
from subscribers.models import utcnow


@dataclass
class DocumentEdit:
    """What one save of the draft page submitted: only the fields present are considered."""

    subject: str | None = None
    note: str | None = None
    lead: str | None = None  # "" for no lead paper
    summaries: dict[int, str] = field(default_factory=dict)
    topics: dict[int, list[str]] = field(default_factory=dict)
    in_email: dict[int, bool] = field(default_factory=dict)


def save_document(
    session: Session, month: str, edit: DocumentEdit, base_revision: int | None, actor: str
) -> tuple[Issue, list[str]]:
    """Apply a whole-page save as one revision; returns the issue and what changed.

    A field counts as edited only when its value differs from what the page was loaded
    with (revision `base_revision`'s snapshot): a field the editor did not touch never
    overwrites a change another tab saved meanwhile, and no save drops another field's edit.
    """
    issue = editable_issue(session, month)
    base_row = (
        revisions.get(session, issue.id, base_revision)  # type: ignore[arg-type]
        if base_revision is not None
        else None
    )
    base = base_row.snapshot if base_row is not None else revisions.snapshot(session, issue)
    base_papers = {p["id"]: p for p in base.get("papers", [])}

    def edited(value: object, before: object) -> bool:
        return value is not None and value != before

    session.info[DEFERRED] = {"issue": issue, "reasons": []}
    try:
        if edited(edit.subject, base.get("subject")):
            set_subject(session, month, edit.subject or "", actor)
        if edit.note is not None and edit.note.replace("\r\n", "\n").strip() != base.get("note"):
            set_note(session, month, edit.note, actor)
        if edit.lead is not None:
            lead = int(edit.lead) if edit.lead.isdigit() else None
            if lead != base.get("lead"):
                set_lead(session, month, lead, actor)
        for paper_id in sorted(set(edit.summaries) | set(edit.topics)):
            before = base_papers.get(paper_id, {})
            summary = edit.summaries.get(paper_id)
            topics = edit.topics.get(paper_id)
            summary_edited = summary is not None and (
                summary.replace("\r\n", "\n").strip() != before.get("summary")
            )
            topics_edited = topics is not None and sorted(topics) != sorted(
                before.get("topics", [])
            )
            if summary_edited or topics_edited:
                paper = session.get(Paper, paper_id)
                current_topics = list(
                    session.exec(
                        select(PaperTopic.topic_slug).where(PaperTopic.paper_id == paper_id)
                    ).all()
                )
                edit_paper(
                    session,
                    month,
                    paper_id,
                    summary if summary_edited else (paper.summary if paper else ""),
                    topics if topics_edited else current_topics,  # type: ignore[arg-type]
                    actor,
                )
        for paper_id, wanted in edit.in_email.items():
            if wanted != base_papers.get(paper_id, {}).get("in_email", wanted):
                listing = listing_of(session, issue, paper_id)
                if listing.in_email != wanted:
                    listing.in_email = wanted
                    session.add(listing)
                    title = session.get(Paper, paper_id).title[:120]  # type: ignore[union-attr]
                    where = "in the email" if wanted else "on the web version only"
                    record_change(session, issue, actor, f"{title}: {where}", curated=True)
                    audit.record(session, actor, "paper.in_email", month, f"{title}: {where}")
    finally:
        pending = session.info.pop(DEFERRED)
    reasons = list(dict.fromkeys(pending["reasons"]))
    if reasons:
        revisions.record(session, issue, actor, "; ".join(reasons))
    return issue, reasons


def restore_revision(session: Session, month: str, number: int, actor: str) -> Issue:
    """Make the draft say what revision `number` said: subject, note, lead, the listed papers
    (section, place, in-email) and their summaries and topics. Itself a new revision, audited.

    A paper sent since in another issue is not listed again (nobody gets a paper twice); a
    paper deleted since is gone. Both are named in the audit entry.
    """
    issue = editable_issue(session, month)
    old = revisions.get(session, issue.id, number)  # type: ignore[arg-type]
    if old is None:
        raise NewsletterError(f"issue {month} has no revision {number} to restore")
    snap = old.snapshot
    known = known_topics(session)
    locked = set(session.exec(locked_paper_ids(session, issue)).all())
    skipped = []
    session.execute(delete(IssuePaper).where(IssuePaper.issue_id == issue.id))
    for item in snap.get("papers", []):
        paper = session.get(Paper, item["id"])
        if paper is None or paper.id in locked:
            skipped.append(item["title"][:80])
            continue
        session.add(
            IssuePaper(
                issue_id=issue.id,  # type: ignore[arg-type]
                paper_id=paper.id,  # type: ignore[arg-type]
                topic_slug=item["section"],
                position=item["position"],
                late=item.get("late", False),
                in_email=item.get("in_email", True),
            )
        )
        if paper.summary != item["summary"]:
            paper.summary = item["summary"]
            paper.updated_at = utcnow()
            session.add(paper)
        wanted = [t for t in item.get("topics", []) if t in known]
        current = session.exec(select(PaperTopic.topic_slug).where(PaperTopic.paper_id == paper.id))
        if wanted and sorted(wanted) != sorted(current.all()):
            session.execute(delete(PaperTopic).where(PaperTopic.paper_id == paper.id))
            session.add_all(PaperTopic(paper_id=paper.id, topic_slug=t) for t in wanted)  # type: ignore[arg-type]
    session.flush()
    if not session.exec(select(IssuePaper).where(IssuePaper.issue_id == issue.id)).first():
        raise NewsletterError(f"revision {number} lists no paper that can still be sent")
    issue.section_order = list(snap.get("sections", []))
    issue.subject = snap.get("subject", issue.subject)
    issue.editor_note = snap.get("note", issue.editor_note)
    lead = snap.get("lead")
    issue.lead_paper_id = lead if lead and session.get(IssuePaper, (issue.id, lead)) else None
    record_change(session, issue, actor, f"restored revision {number}", curated=True)
    # Summaries restored on shared papers change other drafts that list them too.
    revisions.refresh_drafts(session, actor, f"revision {number} of {month} restored")
    detail = f"revision {number}" + (f"; not listed again: {'; '.join(skipped)}" if skipped else "")
    audit.record(session, actor, "issue.restore", month, detail)
    return issue
