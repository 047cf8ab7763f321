"""The audit log: every action that changes state, whoever's hand it was, newest first.

Editors on the desk are named by their address, the CLI as `cli:USER@HOST` and the clock
(monthly job, scheduled releases, withdrawals it finds) as `clock`, so the desk's log can
tell the three apart and an operator's vouched import or hand send is never invisible.
"""

from __future__ import annotations

import getpass
import socket

from sqlalchemy import func
from sqlmodel import Session, select

from newsletter.models import AuditEntry
from subscribers.models import utcnow

CLOCK = "clock"
SYSTEM = "system"  # a change no person asked for directly (tests, migrations of data)
ACTOR_KINDS = ("editor", "cli", "clock")


def cli_actor() -> str:
    """`cli:USER@HOST` for the person at this terminal (or the account a cron job runs as)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"


def actor_kind(actor: str) -> str:
    if actor.startswith("cli:"):
        return "cli"
    if actor in (CLOCK, SYSTEM):
        return "clock"
    return "editor"


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
    session: Session, *, limit: int = 200, offset: int = 0, action: str = "", kind: str = ""
) -> tuple[list[AuditEntry], int]:
    """A page of entries (newest first) and the total count, by action and actor kind."""
    query = select(AuditEntry)
    count = select(func.count()).select_from(AuditEntry)
    conditions = []
    if action:
        conditions.append(AuditEntry.action == action)
    if kind == "cli":
        conditions.append(AuditEntry.actor.startswith("cli:"))
    elif kind == "clock":
        conditions.append(AuditEntry.actor.in_([CLOCK, SYSTEM]))
    elif kind == "editor":
        conditions.append(~AuditEntry.actor.startswith("cli:"))
        conditions.append(AuditEntry.actor.not_in([CLOCK, SYSTEM]))
    for condition in conditions:
        query = query.where(condition)
        count = count.where(condition)
    rows = session.exec(
        query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).offset(offset).limit(limit)
    ).all()
    return list(rows), int(session.exec(count).one())
