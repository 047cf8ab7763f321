"""Revisions of an issue's content: snapshots, what changed, and what an approval pins.

Every change to what an issue says (subject, note, lead paper, a paper added, dropped,
moved, re-summarised or re-tagged, a recompose, an import that rewrote a listed paper) ends
in `record`, which snapshots the content, numbers a new revision when the snapshot differs
from the last one, and withdraws an approval or schedule that pinned an earlier revision.
The snapshot's digest is what the release path compares before anything goes out, so a
change that bypassed `record` (a script, a direct SQL edit) still cannot ride on an old
approval. A snapshot is one JSON document of a few dozen KB for a 100-paper month: cheap at
an editor's pace, and the history and "changed since the last test copy" read from it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from newsletter import audit
from newsletter.models import (
    Issue,
    IssuePaper,
    IssueRevision,
    IssueStatus,
    Paper,
    PaperTopic,
    TestCopy,
    Topic,
)

WITHDRAWN = "approval withdrawn"
# Statuses whose approval or schedule an edit withdraws (a missed schedule is one too).
PINNABLE = (IssueStatus.DRAFT, IssueStatus.APPROVED, IssueStatus.MISSED)


def section_rank(session: Session, issue: Issue) -> dict[str, int]:
    """Each section's place: the editor's order first (`Issue.section_order`), then the
    taxonomy's for sections it does not name."""
    taxonomy = list(session.exec(select(Topic.slug).order_by(Topic.position)).all())
    chosen = [s for s in (issue.section_order or []) if s in taxonomy]
    ordered = chosen + [s for s in taxonomy if s not in chosen]
    return {slug: i for i, slug in enumerate(ordered)}


def snapshot(session: Session, issue: Issue) -> dict[str, Any]:
    """The issue's content as plain values, in the email's order."""
    position = section_rank(session, issue)
    rows = session.exec(
        select(IssuePaper, Paper)
        .join(Paper, Paper.id == IssuePaper.paper_id)
        .where(IssuePaper.issue_id == issue.id)
    ).all()
    ids = [paper.id for _, paper in rows]
    topics: dict[int, list[str]] = {}
    if ids:
        for paper_id, slug in session.exec(
            select(PaperTopic.paper_id, PaperTopic.topic_slug).where(
                PaperTopic.paper_id.in_(ids)  # type: ignore[union-attr]
            )
        ).all():
            topics.setdefault(paper_id, []).append(slug)
    papers = [
        {
            "id": paper.id,
            "title": paper.title,
            "url": paper.url,
            "section": listing.topic_slug,
            "position": listing.position,
            "summary": paper.summary,
            "topics": sorted(topics.get(paper.id, []), key=lambda s: (position.get(s, 999), s)),  # type: ignore[arg-type]
            "in_email": listing.in_email,
            "late": listing.late,
        }
        for listing, paper in rows
    ]
    papers.sort(key=lambda p: (position.get(p["section"], 999), p["position"], p["id"]))
    snap: dict[str, Any] = {
        "subject": issue.subject,
        "note": issue.editor_note,
        "lead": issue.lead_paper_id,
        "papers": papers,
    }
    if issue.section_order:  # only then, so older snapshots keep their digests
        snap["sections"] = list(issue.section_order)
    return snap


def digest(snap: dict[str, Any]) -> str:
    canonical = json.dumps(snap, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def latest(session: Session, issue_id: int) -> IssueRevision | None:
    return session.exec(
        select(IssueRevision)
        .where(IssueRevision.issue_id == issue_id)
        .order_by(IssueRevision.number.desc())  # type: ignore[attr-defined]
        .limit(1)
    ).first()


def get(session: Session, issue_id: int, number: int) -> IssueRevision | None:
    return session.exec(
        select(IssueRevision).where(
            IssueRevision.issue_id == issue_id, IssueRevision.number == number
        )
    ).first()


def history(session: Session, issue_id: int, limit: int = 50) -> list[IssueRevision]:
    return list(
        session.exec(
            select(IssueRevision)
            .where(IssueRevision.issue_id == issue_id)
            .order_by(IssueRevision.number.desc())  # type: ignore[attr-defined]
            .limit(limit)
        ).all()
    )


def record(
    session: Session,
    issue: Issue,
    actor: str,
    reason: str,
    *,
    created: bool = False,
    cause: str = "",
) -> IssueRevision | None:
    """Snapshot the issue after a change; a new revision only when the content differs.

    Returns the new revision, or None when nothing changed. Withdraws an approval or a
    schedule that pinned an earlier revision, in the caller's transaction.
    """
    session.flush()
    snap = snapshot(session, issue)
    value = digest(snap)
    last = None if created else latest(session, issue.id)  # type: ignore[arg-type]
    if last is not None and last.digest == value:
        return None
    if created:
        number = issue.revision
    elif last is None:  # an issue from before revisions were kept: number on from its counter
        number = issue.revision + 1
    else:
        number = max(last.number, issue.revision) + 1
    if not created and last is not None:
        reason = reason or "; ".join(changes(last.snapshot, snap)) or "content changed"
    if cause:  # what made the change, before what it changed: "papers imported from f: …"
        reason = f"{cause}: {reason}"
    revision = IssueRevision(
        issue_id=issue.id,  # type: ignore[arg-type]
        number=number,
        actor=actor[:320],
        reason=reason[:2000],
        digest=value,
        snapshot=snap,
    )
    session.add(revision)
    issue.revision = number
    session.add(issue)
    if not created:
        withdraw(session, issue, actor, reason)
    session.flush()
    return revision


def withdraw(session: Session, issue: Issue, actor: str, reason: str) -> bool:
    """Clear an approval or schedule after the content changed; True if there was one."""
    if issue.status not in PINNABLE:
        return False
    pinned = issue.approved_revision
    had = issue.status == IssueStatus.APPROVED or issue.scheduled_for is not None
    issue.status = IssueStatus.DRAFT
    issue.approved_at = None
    issue.approved_revision = None
    issue.approved_by = ""
    issue.scheduled_for = None
    if had:
        what = f"revision {pinned}" if pinned else "the approval"
        issue.status_reason = f"{WITHDRAWN}: {reason} (after {what} was approved)"[:2000]
        audit.record(session, actor, "issue.approval_withdrawn", issue.month, issue.status_reason)
    session.add(issue)
    return had


def refresh_drafts(session: Session, actor: str, reason: str) -> int:
    """Record a revision for every unsent issue whose content changed under it (an import or
    a fetch rewrote a listed paper); returns how many changed. Each one's approval goes."""
    changed = 0
    for issue in session.exec(
        select(Issue).where(Issue.status.in_([str(s) for s in PINNABLE]))  # type: ignore[attr-defined]
    ).all():
        if latest(session, issue.id) is None:  # type: ignore[arg-type]
            continue  # never snapshotted: `verify` takes its first snapshot at release
        if record(session, issue, actor, "", cause=reason) is not None:
            changed += 1
    return changed


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""


def verify(session: Session, issue: Issue, number: int, actor: str) -> Verdict:
    """Does the issue still say exactly what revision `number` said?

    The release path asks this before anything goes out. A mismatch the edits did not record
    (a script, an import, a direct database change) is recorded now, which withdraws the
    approval; either way the caller refuses.
    """
    if issue.revision != number:
        return Verdict(
            False,
            f"revision {number} was approved, but the issue is at revision "
            f"{issue.revision} now: approve the current revision first",
        )
    pinned = get(session, issue.id, number)  # type: ignore[arg-type]
    current = snapshot(session, issue)
    if pinned is None:
        # An issue from before revisions were kept: its current content becomes the revision.
        session.add(
            IssueRevision(
                issue_id=issue.id,  # type: ignore[arg-type]
                number=number,
                actor=actor,
                reason="first snapshot",
                digest=digest(current),
                snapshot=current,
            )
        )
        session.flush()
        return Verdict(True)
    if pinned.digest == digest(current):
        return Verdict(True)
    what = "; ".join(changes(pinned.snapshot, current)) or "content changed"
    record(session, issue, actor, f"changed outside the desk: {what}")
    return Verdict(False, f"the content changed since revision {number} was approved ({what})")


def _short(title: str) -> str:
    return title if len(title) <= 80 else title[:79] + "…"


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two snapshots, in an editor's words."""
    out = []
    if old.get("subject") != new.get("subject"):
        out.append(f"subject changed ({old.get('subject')!r} → {new.get('subject')!r})")
    if old.get("note") != new.get("note"):
        out.append("editor's note changed")
    if old.get("lead") != new.get("lead"):
        out.append("lead paper changed")
    if old.get("sections", []) != new.get("sections", []):
        out.append("sections reordered")
    before = {p["id"]: p for p in old.get("papers", [])}
    after = {p["id"]: p for p in new.get("papers", [])}
    added = [after[i]["title"] for i in after if i not in before]
    dropped = [before[i]["title"] for i in before if i not in after]
    if added:
        out.append(
            "papers added: "
            + "; ".join(_short(t) for t in added[:5])
            + (f" and {len(added) - 5} more" if len(added) > 5 else "")
        )
    if dropped:
        out.append(
            "papers dropped: "
            + "; ".join(_short(t) for t in dropped[:5])
            + (f" and {len(dropped) - 5} more" if len(dropped) > 5 else "")
        )
    both = [i for i in after if i in before]
    order_old = [i for i in (p["id"] for p in old.get("papers", [])) if i in after]
    order_new = [i for i in (p["id"] for p in new.get("papers", [])) if i in before]
    moved = [
        after[i]["title"]
        for i in both
        if before[i]["section"] != after[i]["section"] or order_old.index(i) != order_new.index(i)
    ]
    if moved:
        out.append(
            "papers moved: "
            + "; ".join(_short(t) for t in moved[:5])
            + (f" and {len(moved) - 5} more" if len(moved) > 5 else "")
        )
    for key, label in (
        ("summary", "summary edited"),
        ("topics", "topics changed"),
        ("title", "title changed"),
        ("url", "link changed"),
        ("in_email", "moved between the email and the web version"),
    ):
        hits = [after[i]["title"] for i in both if before[i].get(key) != after[i].get(key)]
        if hits:
            out.append(
                f"{label}: "
                + "; ".join(_short(t) for t in hits[:5])
                + (f" and {len(hits) - 5} more" if len(hits) > 5 else "")
            )
    return out


def last_test_copy(session: Session, issue_id: int, number: int | None = None) -> TestCopy | None:
    """The newest test copy of the issue (of revision `number` if given)."""
    query = select(TestCopy).where(TestCopy.issue_id == issue_id)
    if number is not None:
        query = query.where(TestCopy.revision == number)
    return session.exec(
        query.order_by(TestCopy.sent_at.desc(), TestCopy.id.desc()).limit(1)  # type: ignore[attr-defined]
    ).first()


def test_copies_since(session: Session, actor: str, since: object) -> int:
    """How many test copies `actor` sent since `since` (the per-editor rate limit)."""
    return int(
        session.exec(
            select(func.count())
            .select_from(TestCopy)
            .where(TestCopy.actor == actor, TestCopy.sent_at >= since)
        ).one()
    )
