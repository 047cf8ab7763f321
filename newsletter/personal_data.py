"""One person's data across the whole service (GDPR Art. 15/17/20).

`subscribers.lifecycle` knows the audience tables; this adds what the newsletter keeps about
the person besides: their deliveries and the mail provider's events about them, and, for an
erase, the copies on disk that deleting rows leaves behind (old page images in SQLite's
`-wal` file, PostgreSQL's dead tuples, the person's `.eml` files in the outbox).
"""

from __future__ import annotations

import logging
from datetime import datetime
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from sqlalchemy import delete, event, func, or_, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from newsletter.models import Delivery, Issue, ProviderEvent
from subscribers import lifecycle

log = logging.getLogger(__name__)
# Tables whose rows an erase deletes; on PostgreSQL they are rewritten afterwards.
ERASED_TABLES = ("subscriber", "subscriber_topic", "consent_record", "delivery", "provider_event")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _event_filter(address: str, delivery_ids: list[int]) -> Any:
    by_address = func.lower(ProviderEvent.email) == address  # `address` is normalised
    if not delivery_ids:
        return by_address
    return or_(by_address, ProviderEvent.delivery_id.in_(delivery_ids))  # type: ignore[union-attr]


def export_person(session: Session, email: str) -> dict[str, object]:
    """Everything kept about one person, as JSON-ready data."""
    data = lifecycle.export(session, email)
    address = str(data["email"])
    sub = lifecycle.get_by_email(session, address)
    assert sub is not None
    deliveries = session.execute(
        select(Delivery, Issue.month)
        .join(Issue, Issue.id == Delivery.issue_id)
        .where(Delivery.subscriber_id == sub.id)
        .order_by(Delivery.id)
    ).all()
    events = (
        session.execute(
            select(ProviderEvent)
            .where(_event_filter(address, [d.id for d, _ in deliveries]))
            .order_by(ProviderEvent.id)
        )
        .scalars()
        .all()
    )
    data["deliveries"] = [
        {
            "issue": month,
            "status": d.status,
            "topics": d.variant,
            "attempts": d.attempts,
            "sent_at": _iso(d.sent_at),
            "provider_message_id": d.provider_message_id,
            "error": d.error,
        }
        for d, month in deliveries
    ]
    data["provider_events"] = [
        {
            "provider": e.provider,
            "event": e.event,
            "received_at": _iso(e.received_at),
            "payload": e.payload,
        }
        for e in events
    ]
    return data


def erase_person(
    session: Session, email: str, *, suppression_key: bytes, outbox_dir: Path | None = None
) -> bool:
    """Delete the person, their deliveries and every provider event about them; a
    suppressed address leaves only its keyed hash. False when nobody has that address.

    Once the caller's transaction commits, the copies on disk go too (`forget_on_disk`):
    a rollback leaves everything as it was.
    """
    address = lifecycle.normalize_email(email)
    sub = lifecycle.get_by_email(session, address)
    if sub is None:
        return False
    delivery_ids = list(
        session.execute(select(Delivery.id).where(Delivery.subscriber_id == sub.id)).scalars()
    )
    session.execute(delete(ProviderEvent).where(_event_filter(address, delivery_ids)))
    session.execute(delete(Delivery).where(Delivery.subscriber_id == sub.id))
    erased = lifecycle.erase(session, address, suppression_key=suppression_key)
    bind = session.get_bind()
    if erased and isinstance(bind, Engine):

        def after_commit(_session: Session) -> None:
            forget_on_disk(bind, address, outbox_dir)

        def after_rollback(_session: Session) -> None:
            if event.contains(session, "after_commit", after_commit):
                event.remove(session, "after_commit", after_commit)

        event.listen(session, "after_commit", after_commit, once=True)
        event.listen(session, "after_soft_rollback", after_rollback, once=True)
    return erased


def forget_on_disk(engine: Engine, address: str, outbox_dir: Path | None) -> None:
    """After an erase is committed: no copy of the address left in the database files the
    service can reach, nor in the outbox. (Backups and PostgreSQL's WAL archive are beyond
    its reach; README's operations section says how long they keep data.)

    SQLite deletes with `secure_delete` on (db.py), so freed space is zeroed; the
    checkpoint copies the new pages into the main file and empties the `-wal` file, which
    still holds the old page images. PostgreSQL keeps deleted rows as dead tuples until a
    vacuum, and a plain vacuum leaves their bytes in the pages' free space: VACUUM FULL
    rewrites the tables (and their indexes) without them.
    """
    try:
        if engine.dialect.name == "sqlite":
            raw = engine.raw_connection()
            try:
                busy = raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                raw.close()
            if busy and busy[0]:
                log.warning("erase: a reader kept the WAL checkpoint from finishing")
        elif engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                # ANALYZE: the planner's statistics may sample addresses; the old ones go
                # with pg_statistic's own rewrite (allowed to the database's owner).
                conn.exec_driver_sql(f"VACUUM (FULL, ANALYZE) {', '.join(ERASED_TABLES)}")
                conn.exec_driver_sql("VACUUM FULL pg_statistic")
    except Exception:  # the rows are gone; the next erase or vacuum finishes the job
        log.exception("erase: the database files could not be scrubbed")
    if outbox_dir is not None:
        remove_outbox_mail(outbox_dir, address)


def remove_outbox_mail(outbox_dir: Path, address: str) -> int:
    """Delete the outbox's `.eml` files addressed to `address`; how many there were."""
    removed = 0
    parser = BytesParser(policy=default_policy)
    for path in Path(outbox_dir).glob("*.eml"):
        try:
            with path.open("rb") as fh:
                headers = parser.parse(fh, headersonly=True)
            recipients = headers.get("To")
            spelled = [a.addr_spec for a in getattr(recipients, "addresses", ())]
        except (OSError, ValueError):
            continue
        if any(_same_address(s, address) for s in spelled):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _same_address(spelled: str, address: str) -> bool:
    try:
        return lifecycle.normalize_email(spelled) == address
    except lifecycle.SubscriberError:
        return False
