"""The desk's audit log: every editor action, who did it and when, newest first."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, select

from newsletter.models import AuditEntry
from subscribers.models import utcnow


def record(session: Session, actor: str, action: str, target: str = "", detail: str = "") -> None:
    """Add one entry in the caller's transaction, so an action and its entry commit together."""
    session.add(
        AuditEntry(
            at=utcnow(),
            actor=actor[:320],
            action=action[:64],
            target=target[:200],
            detail=detail[:5000],
        )
    )


def entries(
    session: Session, *, limit: int = 200, offset: int = 0, action: str = ""
) -> tuple[list[AuditEntry], int]:
    """A page of entries (newest first) and the total count."""
    query = select(AuditEntry)
    count = select(func.count()).select_from(AuditEntry)
    if action:
        query = query.where(AuditEntry.action == action)
        count = count.where(AuditEntry.action == action)
    rows = session.exec(
        query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).offset(offset).limit(limit)
    ).all()
    return list(rows), int(session.exec(count).one())
