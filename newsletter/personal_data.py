"""One person's data across the whole service (GDPR Art. 15/17/20).

`subscribers.lifecycle` knows the audience tables; this adds what the newsletter keeps about
the person besides: their deliveries and the mail provider's events about them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlmodel import Session

from newsletter.models import Delivery, Issue, ProviderEvent
from subscribers import lifecycle


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


def erase_person(session: Session, email: str, *, suppression_key: bytes) -> bool:
    """Delete the person, their deliveries and every provider event about them; a
    suppressed address leaves only its keyed hash. False when nobody has that address."""
    address = lifecycle.normalize_email(email)
    sub = lifecycle.get_by_email(session, address)
    if sub is None:
        return False
    delivery_ids = list(
        session.execute(select(Delivery.id).where(Delivery.subscriber_id == sub.id)).scalars()
    )
    session.execute(delete(ProviderEvent).where(_event_filter(address, delivery_ids)))
    session.execute(delete(Delivery).where(Delivery.subscriber_id == sub.id))
    return lifecycle.erase(session, address, suppression_key=suppression_key)
