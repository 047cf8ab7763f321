"""Issues: composing the month's draft and reading what an issue lists.

`load_issue_contents` is the one read path that rendering, previews and the archive use.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlmodel import Session, select

from newsletter.models import Issue, IssuePaper, Paper, PaperTopic, Topic


@dataclass(frozen=True)
class IssueEntry:
    paper: Paper
    section: str  # topic slug the paper is listed under in this issue
    position: int
    late: bool  # published in an earlier month, arrived after that month's issue
    topics: tuple[str, ...]  # every topic of the paper, in taxonomy order


@dataclass(frozen=True)
class IssueContents:
    issue: Issue
    topics: tuple[Topic, ...]  # topics with at least one entry, in taxonomy order
    entries: tuple[IssueEntry, ...]  # ordered by section (taxonomy order), then position

    @property
    def topic_slugs(self) -> frozenset[str]:
        return frozenset(t.slug for t in self.topics)


def load_issue_contents(session: Session, issue: Issue) -> IssueContents:
    """The issue's papers grouped by section in taxonomy order (three queries, any size)."""
    order = {t.slug: t for t in session.exec(select(Topic).order_by(Topic.position)).all()}
    position_of = {slug: i for i, slug in enumerate(order)}
    rows = session.exec(
        select(IssuePaper, Paper)
        .join(Paper, Paper.id == IssuePaper.paper_id)
        .where(IssuePaper.issue_id == issue.id)
    ).all()
    paper_ids = [paper.id for _, paper in rows]
    topics_of: dict[int, list[str]] = defaultdict(list)
    if paper_ids:
        for pt in session.exec(select(PaperTopic).where(PaperTopic.paper_id.in_(paper_ids))).all():
            topics_of[pt.paper_id].append(pt.topic_slug)
    entries = sorted(
        (
            IssueEntry(
                paper=paper,
                section=ip.topic_slug,
                position=ip.position,
                late=ip.late,
                topics=tuple(
                    sorted(topics_of[paper.id], key=lambda s: position_of.get(s, len(order)))
                ),
            )
            for ip, paper in rows
        ),
        key=lambda e: (position_of.get(e.section, len(order)), e.position, e.paper.id or 0),
    )
    sections = []
    for e in entries:
        if e.section not in sections:
            sections.append(e.section)
    return IssueContents(
        issue=issue,
        topics=tuple(order[s] for s in sections if s in order),
        entries=tuple(entries),
    )
