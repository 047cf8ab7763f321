"""The desk's side of drafted summaries: Accept (as written or edited) and Redraft.

Accepting goes through `editing.edit_paper`, the same path as an editor's own edit, so the
issue gets a new revision and an approval of the old text goes."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from newsletter import audit
from newsletter.db import session_scope
from newsletter.desk import editing
from newsletter.errors import NewsletterError
from newsletter.models import (
    DraftStatus,
    IssuePaper,
    Paper,
    PaperTopic,
    SummaryDraft,
    Topic,
    utcnow,
)
from newsletter.papers.draft_status import UNREVIEWED, current_drafts
from newsletter.papers.drafting import draft_papers
from newsletter.settings import Settings


def draft_of(session: Session, paper_id: int) -> SummaryDraft:
    """The paper's current unreviewed draft, or an error an editor can act on."""
    draft = current_drafts(session, [paper_id]).get(paper_id)
    if draft is None or draft.status not in UNREVIEWED:
        raise NewsletterError("this paper has no unreviewed draft (it may have been accepted)")
    return draft


def accept_draft(
    session: Session, month: str, paper_id: int, actor: str, text: str | None = None
) -> Paper:
    """Make the draft (or the editor's edit of it, `text`) the paper's summary."""
    draft = draft_of(session, paper_id)
    order = {t.slug: t.position for t in session.exec(select(Topic)).all()}
    topics = sorted(
        session.exec(select(PaperTopic.topic_slug).where(PaperTopic.paper_id == paper_id)).all(),
        key=lambda s: order.get(s, len(order)),
    )
    summary = draft.summary if text is None else text
    paper = editing.edit_paper(session, month, paper_id, summary, list(topics), actor)
    edited = " ".join(summary.split()) != " ".join(draft.summary.split())
    draft.status = DraftStatus.ACCEPTED
    draft.reviewed_by = actor[:320]
    draft.reviewed_at = utcnow()
    session.add(draft)
    how = "edited and accepted" if edited else "accepted"
    audit.record(
        session,
        actor,
        "summary.accept",
        month,
        f"{paper.title[:120]}: draft by {draft.model} {how}",
    )
    return paper


def check_redraft(session: Session, month: str, paper_id: int) -> None:
    """Refuse a redraft the desk cannot ask for: a locked issue, or a paper it does not list."""
    issue = editing.editable_issue(session, month)
    listed = session.exec(
        select(IssuePaper).where(IssuePaper.issue_id == issue.id, IssuePaper.paper_id == paper_id)
    ).first()
    if listed is None:
        raise NewsletterError(f"paper {paper_id} is not in the {month} issue")


def redraft(engine: Engine, settings: Settings, month: str, paper_id: int, actor: str) -> str:
    """Ask the model again for one paper of the draft; returns what happened, in words."""
    if settings.llm_summaries == "off":
        raise NewsletterError(
            "drafting is off (NEWSLETTER_LLM_SUMMARIES=off): nothing is sent to a model"
        )
    with session_scope(engine) as session:
        check_redraft(session, month, paper_id)
    report = draft_papers(engine, settings, paper_ids=[paper_id], redraft=True, actor=actor)
    if report.human:
        raise NewsletterError("a person wrote or accepted this paper's summary: nothing redrafted")
    if report.failed:
        raise NewsletterError(f"the redraft failed, the earlier draft stays: {report.errors[0]}")
    return report.message()
