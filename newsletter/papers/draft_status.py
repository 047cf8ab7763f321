"""What became of the drafted summaries: each paper's current draft, which of an issue's
papers no editor reviewed (the desk's list, the test copy's notice), and the relevance that
joins the ranking. The read side of `papers.drafting`, used by the desk, test copies and
composing."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session, select

from newsletter.models import DraftStatus, Issue, IssuePaper, Paper, SummaryDraft

RELEVANCE_WEIGHT = 3  # a relevance of 1.0 counts as much as one keyword in the title
UNREVIEWED = (DraftStatus.DRAFTED, DraftStatus.AUTO)


def normal_text(text: str) -> str:
    return " ".join(text.split())


def has_human_summary(paper: Paper, auto_text: str | None = None) -> bool:
    """A person wrote (or accepted) the summary: it is neither the abstract standing in for
    one (feeds, arXiv) nor a draft that auto mode put there unreviewed."""
    summary = normal_text(paper.summary)
    if not summary or summary == normal_text(paper.abstract):
        return False
    return auto_text is None or summary != normal_text(auto_text)


def current_drafts(session: Session, paper_ids: Iterable[int]) -> dict[int, SummaryDraft]:
    """Each paper's newest draft (of any model or prompt version), failed ones included."""
    ids = list(paper_ids)
    newest: dict[int, SummaryDraft] = {}
    for start in range(0, len(ids), 500):
        for draft in session.exec(
            select(SummaryDraft)
            .where(SummaryDraft.paper_id.in_(ids[start : start + 500]))  # type: ignore[attr-defined]
            .order_by(SummaryDraft.drafted_at, SummaryDraft.id)
        ).all():
            newest[draft.paper_id] = draft
    return newest


def unreviewed(session: Session, issue: Issue) -> list[tuple[Paper, SummaryDraft]]:
    """Papers of the issue whose current draft no editor reviewed, in title order: in
    review mode they show the abstract's opening, in auto mode the model's words."""
    papers = session.exec(
        select(Paper)
        .join(IssuePaper, IssuePaper.paper_id == Paper.id)  # type: ignore[arg-type]
        .where(IssuePaper.issue_id == issue.id)
    ).all()
    drafts = current_drafts(session, [p.id for p in papers if p.id is not None])
    out = []
    for paper in papers:
        draft = drafts.get(paper.id)  # type: ignore[arg-type]
        if draft is None or draft.status not in UNREVIEWED:
            continue
        auto = draft.summary if draft.status == DraftStatus.AUTO else None
        if not has_human_summary(paper, auto):
            out.append((paper, draft))
    return sorted(out, key=lambda pd: pd[0].normalized_title)


def unreviewed_notice(session: Session, issue: Issue) -> list[str]:
    """Lines for the editors' test copy: which summaries no editor reviewed yet."""
    pending = unreviewed(session, issue)
    if not pending:
        return []
    lines = [
        f"Editors only: {len(pending)} summar{'y' if len(pending) == 1 else 'ies'} drafted by a "
        "language model not reviewed yet (accept them on the desk):"
    ]
    for paper, draft in pending[:20]:
        shown = "in this email as drafted" if draft.status == DraftStatus.AUTO else "abstract shown"
        lines.append(f"- {paper.title[:120]} (drafted by {draft.model}; {shown})")
    if len(pending) > 20:
        lines.append(f"- and {len(pending) - 20} more")
    return lines


def relevance_bonus(session: Session, paper_ids: Iterable[int]) -> dict[int, int]:
    """paper id -> points its current draft's relevance adds to the ranking score."""
    return {
        pid: round(RELEVANCE_WEIGHT * d.relevance)
        for pid, d in current_drafts(session, paper_ids).items()
        if d.relevance is not None and d.status != DraftStatus.FAILED
    }
