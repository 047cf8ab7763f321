"""The order of a draft: moving a paper one place (across section edges), moving a
section, and the whole order a drag and drop leaves. Each is one revision, audited."""

from __future__ import annotations

from sqlmodel import Session, select

from newsletter import audit, revisions
from newsletter.desk.editing import editable_issue, known_topics, listing_of, record_change
from newsletter.errors import NewsletterError
from newsletter.models import Issue, IssuePaper, Paper, Topic


def move_paper(session: Session, month: str, paper_id: int, step: int, actor: str) -> Issue:
    """Move the paper one place (`step` -1: up, +1: down); at the edge of its section it
    moves into the neighbouring section (its last place going up, its first going down), so
    a move always does something unless the paper is first or last of the whole issue."""
    issue = editable_issue(session, month)
    listing = listing_of(session, issue, paper_id)
    rows = session.exec(select(IssuePaper).where(IssuePaper.issue_id == issue.id)).all()
    rank = revisions.section_rank(session, issue)
    ordered = sorted(
        rows, key=lambda r: (rank.get(r.topic_slug, len(rank)), r.position, r.paper_id)
    )
    sections: dict[str, list[IssuePaper]] = {}
    for row in ordered:
        sections.setdefault(row.topic_slug, []).append(row)
    names = list(sections)
    here = sections[listing.topic_slug]
    index = here.index(listing)
    other = index + (1 if step > 0 else -1)
    direction = "down" if step > 0 else "up"
    if 0 <= other < len(here):
        here[index], here[other] = here[other], here[index]
        where = direction
    else:
        neighbour = names.index(listing.topic_slug) + (1 if step > 0 else -1)
        if not 0 <= neighbour < len(names):
            raise NewsletterError(
                f"{session.get(Paper, paper_id).title[:80]!r} is already "  # type: ignore[union-attr]
                f"{'last' if step > 0 else 'first'} in the issue"
            )
        target = sections[names[neighbour]]
        here.remove(listing)
        if step > 0:
            target.insert(0, listing)
        else:
            target.append(listing)
        listing.topic_slug = names[neighbour]
        where = f"{direction} into {names[neighbour]}"
    for rows_of_section in sections.values():
        for i, row in enumerate(rows_of_section):
            row.position = i
            session.add(row)
    title = session.get(Paper, paper_id).title  # type: ignore[union-attr]
    record_change(session, issue, actor, f"paper moved {where}: {title[:120]}", curated=True)
    audit.record(session, actor, "issue.move_paper", month, f"{title[:150]} {where}")
    return issue


def _sections_now(session: Session, issue: Issue) -> list[str]:
    """The issue's sections in their current order (only those with papers)."""
    rank = revisions.section_rank(session, issue)
    listed = set(session.exec(select(IssuePaper.topic_slug).where(IssuePaper.issue_id == issue.id)))
    return sorted(listed, key=lambda s: rank.get(s, len(rank)))


def _ids_in(rows: dict[int, IssuePaper], section: str) -> list[int]:
    listed = [r for r in rows.values() if r.topic_slug == section]
    return [r.paper_id for r in sorted(listed, key=lambda r: (r.position, r.paper_id))]


def move_section(session: Session, month: str, section: str, step: int, actor: str) -> Issue:
    """Move a whole section one place up (`step` -1) or down (+1) in this issue."""
    issue = editable_issue(session, month)
    sections = _sections_now(session, issue)
    if section not in sections:
        raise NewsletterError(f"issue {month} has no section {section!r}")
    index = sections.index(section)
    other = index + (1 if step > 0 else -1)
    if not 0 <= other < len(sections):
        raise NewsletterError(
            f"that section is already {'last' if step > 0 else 'first'} in the issue"
        )
    sections[index], sections[other] = sections[other], sections[index]
    issue.section_order = sections
    name = session.get(Topic, section).name if session.get(Topic, section) else section  # type: ignore[union-attr]
    where = "down" if step > 0 else "up"
    record_change(session, issue, actor, f"section moved {where}: {name}", curated=True)
    audit.record(session, actor, "issue.move_section", month, f"{name} {where}")
    return issue


def set_order(
    session: Session, month: str, order: list[tuple[str, list[int]]], actor: str
) -> Issue:
    """The order a drag and drop left: sections in order, each with its papers in order.

    Every paper of the draft must appear once (a stale page that misses one is refused, so
    a drop never silently loses a paper); a paper dragged into another section is listed
    there from now on.
    """
    issue = editable_issue(session, month)
    rows = {
        r.paper_id: r
        for r in session.exec(select(IssuePaper).where(IssuePaper.issue_id == issue.id))
    }
    known = known_topics(session)
    seen = [pid for _, ids in order for pid in ids]
    if sorted(seen) != sorted(rows) or len(set(seen)) != len(seen):
        raise NewsletterError(
            "the page's order does not match the draft (it changed in another tab?): reload "
            "the page and drag again"
        )
    unknown = [s for s, _ in order if s not in known]
    if unknown:
        raise NewsletterError(f"unknown section {unknown[0]!r}")
    sections = [s for s, ids in order if ids]
    current = {pid: (row.topic_slug, row.position) for pid, row in rows.items()}
    wanted = {pid: (section, place) for section, ids in order for place, pid in enumerate(ids)}
    same_places = all(current[pid][0] == wanted[pid][0] for pid in rows) and [
        pid for _, ids in order for pid in ids
    ] == [pid for s in _sections_now(session, issue) for pid in _ids_in(rows, s)]
    if same_places and sections == _sections_now(session, issue):
        return issue  # dropped where it was picked up: no revision
    moved = []
    for section, ids in order:
        for place, pid in enumerate(ids):
            row = rows[pid]
            if row.topic_slug != section:
                moved.append(pid)
            row.topic_slug, row.position = section, place
            session.add(row)
    issue.section_order = sections
    record_change(session, issue, actor, "papers reordered", curated=True)
    audit.record(
        session, actor, "issue.reorder", month, f"{len(moved)} paper(s) moved to another section"
    )
    return issue
