"""The queue of transactional mail: rows written inside the transaction that owes the mail,
claimed by a sender under a lease, deleted once settled.

Why a queue in the database: the mail then commits or rolls back with its cause (no
confirmation naming a rolled-back row, none lost when the web process dies after its
answer), and the CPU of building it leaves the web process for `mail_sender`'s. Several
senders may run (one per `newsletter serve`, on PostgreSQL on several hosts): a claim is
one conditional UPDATE, so a row goes to one sender at a time.

A mail is sent at least once: a sender killed between the provider's answer and the
delete leaves a row whose lease runs out, and the next sender sends it again. For a
confirmation or a link mail a rare second copy is harmless; losing it is not.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from newsletter.db import is_postgres, session_scope
from newsletter.models import MailKind, QueuedMail, utcnow

LEASE = timedelta(minutes=5)  # a sender that claimed a row and died frees it after this
MAX_ATTEMPTS = 6  # then the row is dropped and logged: the person can simply ask again
RETRY_DELAYS = (10, 60, 300, 900, 3600)  # seconds after the 1st, 2nd, ... transient failure

_TABLE = QueuedMail.__table__  # type: ignore[attr-defined]
_INSERT = insert(_TABLE).returning(_TABLE.c.id)  # built once, values as parameters


@dataclass(frozen=True)
class Claimed:
    id: int
    subscriber_id: int
    kind: str
    replaces_earlier: bool
    attempts: int  # including this one


def enqueue(
    session: Session, subscriber_id: int, kind: MailKind, *, replaces_earlier: bool = False
) -> int:
    """Owe `kind` to a subscriber, in the caller's transaction; returns the row's id."""
    now = utcnow()
    values = {
        "subscriber_id": subscriber_id,
        "kind": str(kind),
        "replaces_earlier": replaces_earlier,
        "created_at": now,
        "due_at": now,
        "attempts": 0,
        "last_error": "",
    }
    return session.execute(_INSERT, values).scalar_one()


def claim(engine: Engine, *, ids: Collection[int] | None = None, limit: int = 50) -> list[Claimed]:
    """Take up to `limit` due rows (only `ids` when given) under a lease, oldest first."""
    now = utcnow()
    free = or_(_TABLE.c.claimed_until.is_(None), _TABLE.c.claimed_until < now)
    pick = (
        select(_TABLE.c.id).where(_TABLE.c.due_at <= now, free).order_by(_TABLE.c.id).limit(limit)
    )
    if ids is not None:
        if not ids:
            return []
        pick = pick.where(_TABLE.c.id.in_(list(ids)))
    if is_postgres(engine):
        # Two senders at once each take other rows instead of queueing on the same ones.
        pick = pick.with_for_update(skip_locked=True)
    with session_scope(engine) as session:
        rows = session.execute(
            update(_TABLE)
            .where(_TABLE.c.id.in_(pick.scalar_subquery()))
            # The UPDATE re-checks the lease: of two claims that read the same free row, the
            # second (waiting on the first's row lock) then matches nothing.
            .where(free)
            .values(claimed_until=now + LEASE, attempts=_TABLE.c.attempts + 1)
            .returning(
                _TABLE.c.id,
                _TABLE.c.subscriber_id,
                _TABLE.c.kind,
                _TABLE.c.replaces_earlier,
                _TABLE.c.attempts,
            )
        ).all()
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)


def retry_at(attempts: int, now: datetime | None = None, after: float | None = None) -> datetime:
    """When a row that failed `attempts` times (transiently) is due again: the back-off, or
    later when the provider asked for longer (Retry-After)."""
    delay = RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]
    return (now or utcnow()) + timedelta(seconds=max(delay, after or 0))


@dataclass(frozen=True)
class Again:
    """Why a claimed row goes back to the queue."""

    error: str
    after: float | None = None  # seconds the provider asked us to wait
    # False when the fault is ours (the provider refuses our key or configuration): the row
    # waits HELD_SECONDS and keeps its attempts, so fixing the key loses no one's mail.
    counts: bool = True


HELD_SECONDS = 60


def settle(engine: Engine, done: Collection[int], again: Mapping[Claimed, Again]) -> list[Claimed]:
    """Delete the rows in `done`; put the ones in `again` back for a later try, or drop
    those that failed MAX_ATTEMPTS times. Returns the rows dropped that way."""
    dropped = [row for row, why in again.items() if why.counts and row.attempts >= MAX_ATTEMPTS]
    gone = list(done) + [row.id for row in dropped]
    now = utcnow()
    with session_scope(engine) as session:
        if gone:
            session.execute(delete(_TABLE).where(_TABLE.c.id.in_(gone)))
        for row, why in again.items():
            if row in dropped:
                continue
            if why.counts:
                due, attempts = retry_at(row.attempts, now, why.after), row.attempts
            else:
                due = now + timedelta(seconds=max(HELD_SECONDS, why.after or 0))
                attempts = row.attempts - 1  # the claim counted it: undo
            session.execute(
                update(_TABLE)
                .where(_TABLE.c.id == row.id)
                .values(
                    claimed_until=None, due_at=due, attempts=attempts, last_error=why.error[:500]
                )
            )
    return dropped


def backlog(session: Session) -> tuple[int, datetime | None]:
    """How many mails are queued (due or waiting for a retry), and when the oldest was."""
    count, oldest = session.execute(
        select(func.count(), func.min(_TABLE.c.created_at)).select_from(_TABLE)
    ).one()
    if oldest is not None and oldest.tzinfo is None:  # SQLite keeps no offset: it is UTC
        oldest = oldest.replace(tzinfo=UTC)
    return count, oldest
