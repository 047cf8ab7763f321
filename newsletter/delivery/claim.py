"""The engine's few storage operations: claim a batch, record its outcome, recover leases.

A claim is a lease (`claimed_by`, `lease_until`) taken in one statement: PostgreSQL skips
rows other workers hold (`FOR UPDATE SKIP LOCKED`); SQLite serialises writers with
`BEGIN IMMEDIATE`. Rows are claimed only just before their request goes out and released in
the transaction that records the outcome, so a claimed row whose owner died may have been
sent: it becomes `unknown`, never pending again by itself.

Why this module is long: it is the whole storage side of a claim. Claiming, renewing,
recording, releasing and recovering touch the same rows under the same lease rules, and
only read together do they show that nobody is sent an issue twice.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, NamedTuple

from sqlalchemy import (
    ARRAY,
    Column,
    ColumnElement,
    Integer,
    any_,
    bindparam,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlmodel import Session

from newsletter.db import session_scope
from newsletter.models import Delivery, DeliveryStatus, Issue, IssueStatus
from subscribers.models import Subscriber, SubscriberStatus, utcnow

LEASE_SECONDS = 600.0
_D = Delivery.__table__  # type: ignore[attr-defined]
_S = Subscriber.__table__  # type: ignore[attr-defined]
_ACTIVE = str(SubscriberStatus.ACTIVE)
PENDING = str(DeliveryStatus.PENDING)
CLAIMED = str(DeliveryStatus.CLAIMED)
# Ready and held rows are found through partial indexes (`WHERE status = 'pending'` /
# `'claimed'`); a planner can use one only when the query names the same constant, not a
# bound parameter (SQLite never does, PostgreSQL not in a generic plan).
IS_PENDING = _D.c.status == literal_column(f"'{PENDING}'")
IS_CLAIMED = _D.c.status == literal_column(f"'{CLAIMED}'")
FINAL = (
    str(DeliveryStatus.SENT),
    str(DeliveryStatus.FAILED),
    str(DeliveryStatus.SKIPPED),
    str(DeliveryStatus.UNKNOWN),
)


def new_worker_id() -> str:
    """host:pid:random — lets a later run on the same host see that a holder has died."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{os.urandom(3).hex()}"


def _holder_is_dead(claimed_by: str) -> bool:
    """True when the lease holder was a process on this host that no longer runs."""
    host, _, rest = claimed_by.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname()[:60] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie has stopped for good, it just has not been reaped
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class ClaimedDelivery(NamedTuple):
    """A claimed row and what sending it needs, read in the claiming statement."""

    id: int
    attempts: int
    public_id: str  # the subscriber's random public id: the value its links sign
    email: str
    token_version: int


@dataclass(frozen=True)
class ClaimedBatch:
    issue_id: int
    variant: str
    deliveries: list[ClaimedDelivery]
    skipped: int  # claimed rows whose subscriber had left: marked skipped, not sent


def _ids_in(column: ColumnElement[int], ids: Sequence[int], dialect: str) -> ColumnElement[bool]:
    """`column IN ids` as one parameter on PostgreSQL (`= ANY(array)`), so the statement
    text does not change with the batch size and psycopg's prepared statements are reused."""
    if dialect == "postgresql":
        return column == any_(bindparam("ids", list(ids), type_=ARRAY(Integer)))
    return column.in_(list(ids))


_VARIANT_TRIES = 4  # the preferred variant, then up to three found ready


def _claim_statement(pick: Any, lease: dict[str, Any], now: datetime, dialect: str) -> Any:
    """UPDATE the picked rows to `claimed` under this lease, RETURNING what sending needs."""
    claim = update(_D).values(status=CLAIMED, updated_at=now, **lease)
    if dialect == "postgresql":
        # `id = ANY(ARRAY(subquery))`: the picked ids become one array, looked up by
        # primary key. As `id IN (subquery)` or a CTE join, PostgreSQL hashes the whole
        # table for every claim, which grows with the list.
        picked = func.array(pick.with_for_update(skip_locked=True).scalar_subquery())
        return claim.where(_D.c.id == any_(picked), _S.c.id == _D.c.subscriber_id).returning(
            _D.c.id, _D.c.attempts, _S.c.public_id, _S.c.email, _S.c.token_version, _S.c.status
        )
    # SQLite's RETURNING cannot name a joined table; subqueries it can
    of_subscriber = partial(_subscriber_column, _D.c.subscriber_id)
    return claim.where(_D.c.id.in_(pick.scalar_subquery())).returning(
        _D.c.id,
        _D.c.attempts,
        of_subscriber(_S.c.public_id),
        of_subscriber(_S.c.email),
        of_subscriber(_S.c.token_version),
        of_subscriber(_S.c.status),
    )


def claim_batch(
    engine: Engine,
    issue_id: int,
    worker_id: str,
    limit: int,
    *,
    lease_seconds: float = LEASE_SECONDS,
    outcomes: Mapping[OutcomeKind, Sequence[int]] | None = None,
    prefer: str | None = None,
) -> ClaimedBatch | None:
    """Lease up to `limit` pending deliveries of one variant; None when none is ready.

    One UPDATE takes the lease and returns plain rows of the columns sending needs. In the
    same transaction, recipients who are no longer active are marked `skipped`: an
    unsubscribe that arrives mid-send is honoured for every batch not yet claimed.

    `outcomes` (of this worker's previous batch) are recorded in the same transaction,
    first: a thread moves from one batch to the next in one commit, and never holds more
    than one batch's rows.
    """
    now = utcnow()
    dialect = engine.dialect.name
    with session_scope(engine) as session:
        if outcomes:
            _write_outcomes(session, worker_id, outcomes, dialect)
        status = session.execute(select(Issue.status).where(Issue.id == issue_id)).scalar()
        if status != str(IssueStatus.SENDING):
            return None
        ready = (
            _D.c.issue_id == issue_id,
            IS_PENDING,
            or_(_D.c.lease_until.is_(None), _D.c.lease_until <= now),
        )
        lease = {"claimed_by": worker_id, "lease_until": now + timedelta(seconds=lease_seconds)}
        tried: list[str] = []
        rows: Sequence[Any] = []
        # Another worker may be claiming the last ready rows of the variant picked here
        # (PostgreSQL skips its locked rows): then try another variant, a few times, rather
        # than come back empty and make the caller look again.
        while not rows and len(tried) < _VARIANT_TRIES:
            if prefer is not None and not tried:
                # The caller's last variant first: most claims find more of it, and looking
                # for "any ready row" walks past the index entries of every row claimed.
                variant: str | None = prefer
            else:
                # Not `FOR UPDATE SKIP LOCKED` here: locking the row that names the variant
                # makes a concurrent claim of the same variant skip it (a batch of 99 + 1).
                first = select(_D.c.variant).where(*ready).limit(1)
                if tried:
                    first = first.where(_D.c.variant.not_in(tried))
                variant = session.execute(first).scalar()
            if variant is None:
                return None
            tried.append(variant)
            pick = select(_D.c.id).where(*ready, _D.c.variant == variant).limit(limit)
            rows = session.execute(_claim_statement(pick, lease, now, dialect)).all()
        if not rows:
            return None
        active: list[ClaimedDelivery] = []
        gone: dict[str, list[int]] = {}
        for delivery_id, attempts, public_id, email, version, subscriber_status in rows:
            if subscriber_status == _ACTIVE:
                active.append(ClaimedDelivery(delivery_id, attempts, public_id, email, version))
            else:
                gone.setdefault(subscriber_status, []).append(delivery_id)
        for subscriber_status, ids in gone.items():
            session.execute(
                update(_D)
                .where(_ids_in(_D.c.id, ids, dialect))
                .values(
                    status=str(DeliveryStatus.SKIPPED),
                    error=f"subscriber {subscriber_status}",
                    claimed_by="",
                    lease_until=None,
                    updated_at=now,
                )
            )
    active.sort()
    return ClaimedBatch(issue_id, variant, active, sum(len(ids) for ids in gone.values()))


def _subscriber_column(subscriber_id: ColumnElement[int], column: Column[Any]) -> Any:
    return select(column).where(_S.c.id == subscriber_id).scalar_subquery()


def renew_leases(engine: Engine, issue_id: int, worker_id: str, lease_seconds: float) -> int:
    """Push out the lease of every row this worker still holds (its batches in flight), so
    a slow provider does not make another worker declare them abandoned."""
    with session_scope(engine) as session:
        result = session.execute(
            update(_D)
            .where(_D.c.issue_id == issue_id, IS_CLAIMED, _D.c.claimed_by == worker_id)
            .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
        )
        return result.rowcount or 0


class OutcomeKind(NamedTuple):
    """What is written to every delivery that shares an outcome."""

    status: str  # a DeliveryStatus value
    message_id: str = ""
    error: str = ""
    not_before: datetime | None = None  # for a retry: do not claim again before this


def record_outcomes(
    engine: Engine, worker_id: str, outcomes: Mapping[OutcomeKind, Sequence[int]]
) -> None:
    """Store outcomes (kind -> delivery ids) and release the leases, in one transaction."""
    if not outcomes:
        return
    with session_scope(engine) as session:
        _write_outcomes(session, worker_id, outcomes, engine.dialect.name)


def _write_outcomes(
    session: Session,
    worker_id: str,
    outcomes: Mapping[OutcomeKind, Sequence[int]],
    dialect: str,
) -> None:
    """Set-based: one UPDATE per kind (a batch's request has one message id, one error, one
    retry time), whatever the batch size; kinds of one row each (SMTP's per-message ids)
    go in one executemany. Only rows this worker still holds (or that were declared unknown
    after its lease ran out) are written, so a late answer can still turn an `unknown` into
    the truth.
    """
    now = utcnow()
    held = (
        _D.c.claimed_by == worker_id,
        or_(_D.c.status == CLAIMED, _D.c.status == str(DeliveryStatus.UNKNOWN)),
    )
    sent = str(DeliveryStatus.SENT)
    singles = []
    for kind, ids in outcomes.items():
        values = {
            "status": kind.status,
            "provider_message_id": kind.message_id[:200],
            "error": kind.error[:2000],
            "lease_until": kind.not_before,
            "sent_at": now if kind.status == sent else None,
        }
        if len(ids) == 1:
            singles.append({"b_id": ids[0], **{f"b_{k}": v for k, v in values.items()}})
            continue
        session.execute(
            update(_D)
            .where(_ids_in(_D.c.id, ids, dialect), *held)
            .values(**values, attempts=_D.c.attempts + 1, claimed_by="", updated_at=now)
        )
    if singles:
        session.execute(
            update(_D)
            .where(_D.c.id == bindparam("b_id"), *held)
            .values(
                status=bindparam("b_status"),
                provider_message_id=bindparam("b_provider_message_id"),
                error=bindparam("b_error"),
                lease_until=bindparam("b_lease_until"),
                sent_at=bindparam("b_sent_at"),
                attempts=_D.c.attempts + 1,
                claimed_by="",
                updated_at=now,
            ),
            singles,
        )


def release(engine: Engine, worker_id: str, delivery_ids: Iterable[int]) -> None:
    """Give back claimed rows whose request never went out (stop, transport unavailable)."""
    ids = list(delivery_ids)
    if not ids:
        return
    with session_scope(engine) as session:
        session.execute(
            update(_D)
            .where(
                _ids_in(_D.c.id, ids, engine.dialect.name),
                _D.c.claimed_by == worker_id,
                _D.c.status == CLAIMED,
            )
            .values(status=PENDING, claimed_by="", lease_until=None, updated_at=utcnow())
        )


def recover_abandoned(engine: Engine, issue_id: int) -> int:
    """Declare `unknown` the claims of dead workers: expired leases, or a holder process on
    this host that no longer runs. Their request may have gone out, so they are not resent."""
    now = utcnow()
    with session_scope(engine) as session:
        holders = (
            session.execute(
                select(_D.c.claimed_by).where(_D.c.issue_id == issue_id, IS_CLAIMED).distinct()
            )
            .scalars()
            .all()
        )
        dead = [h for h in holders if _holder_is_dead(h)]
        who = _D.c.lease_until < now
        if dead:
            who = or_(who, _D.c.claimed_by.in_(dead))
        result = session.execute(
            update(_D)
            .where(_D.c.issue_id == issue_id, IS_CLAIMED, who)
            .values(
                status=str(DeliveryStatus.UNKNOWN),
                error=literal("sender ")
                + _D.c.claimed_by
                + literal(
                    " stopped while this batch was in flight; it may or may not have been "
                    "sent (resend with `newsletter issue send --resend-unknown`)"
                ),
                lease_until=None,
                updated_at=now,
            )
        )
        return result.rowcount or 0


def delivery_counts(engine: Engine, issue_id: int) -> Counter[str]:
    with session_scope(engine) as session:
        rows = session.execute(
            select(_D.c.status, func.count()).where(_D.c.issue_id == issue_id).group_by(_D.c.status)
        ).all()
    return Counter({status: count for status, count in rows})


def pending_variants(engine: Engine, issue_id: int) -> list[str]:
    with session_scope(engine) as session:
        return list(
            session.execute(
                select(_D.c.variant).where(_D.c.issue_id == issue_id, IS_PENDING).distinct()
            ).scalars()
        )


@dataclass(frozen=True)
class Backlog:
    ready: int  # pending and claimable now
    later: datetime | None  # earliest time a pending row in back-off becomes claimable
    claimed_by_me: int
    claimed_by_others: int
    issue_status: str


def backlog(engine: Engine, issue_id: int, worker_id: str) -> Backlog:
    """What is left of an issue, as seen from one worker: decides whether to wait or stop."""
    now = utcnow()
    with session_scope(engine) as session:
        status = session.execute(select(Issue.status).where(Issue.id == issue_id)).scalar() or ""
        pending_ready = session.execute(
            select(func.count()).where(
                _D.c.issue_id == issue_id,
                IS_PENDING,
                or_(_D.c.lease_until.is_(None), _D.c.lease_until <= now),
            )
        ).scalar_one()
        later = session.execute(
            select(func.min(_D.c.lease_until)).where(
                _D.c.issue_id == issue_id, IS_PENDING, _D.c.lease_until > now
            )
        ).scalar()
        claimed = session.execute(
            select(_D.c.claimed_by, func.count())
            .where(_D.c.issue_id == issue_id, IS_CLAIMED)
            .group_by(_D.c.claimed_by)
        ).all()
    mine = sum(n for holder, n in claimed if holder == worker_id)
    others = sum(n for holder, n in claimed if holder != worker_id)
    if later is not None and later.tzinfo is None:  # SQLite hands back naive UTC
        later = later.replace(tzinfo=UTC)
    return Backlog(pending_ready, later, mine, others, status)


def reopen_unknown(engine: Engine, issue_id: int) -> int:
    """An operator's `--resend-unknown`: unknown deliveries go back to pending."""
    with session_scope(engine) as session:
        result = session.execute(
            update(_D)
            .where(_D.c.issue_id == issue_id, _D.c.status == str(DeliveryStatus.UNKNOWN))
            .values(
                status=PENDING,
                claimed_by="",
                lease_until=None,
                error="resent on request after an unknown outcome",
                updated_at=utcnow(),
            )
        )
        return result.rowcount or 0
