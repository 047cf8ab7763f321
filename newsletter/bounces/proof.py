"""Does a message of the bounce mailbox answer a real delivery of ours? Checked here.

Anyone can mail the bounce address, so what a message claims (a DSN's recipients, a
`Delivered-To` header, an unsigned `bounces+alice=example.org@…`) proves nothing. These do:
- a signed VERP token (`newsletter.verp`) whose MAC matches the delivery it names and that
  delivery's recipient; the recipient is then read from the delivery row;
- a returned `Message-ID` that we sent to the very address the bounce names (Message-IDs are
  random and only their recipient sees them);
- for a complaint, the signed unsubscribe link in the reported message's List-Unsubscribe;
- for a mailto unsubscribe, the signed token in the address, for the current token version.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlmodel import Session

from newsletter.delivery.feedback import RECENT_ISSUES, last_sent_delivery
from newsletter.models import Delivery, Issue
from newsletter.verp import UnsubscribeToken, VerpToken
from subscribers import lifecycle
from subscribers.models import Subscriber
from subscribers.tokens import TokenError, read_token


@dataclass(frozen=True)
class Proven:
    """A delivery (or at least a subscriber) a message is shown to answer."""

    subscriber_id: int
    email: str  # from our rows, never from the message
    delivery_id: int | None


def by_verp(session: Session, secret: str, token: VerpToken) -> Proven | None:
    delivery_id = token.delivery_id(secret)
    if delivery_id is None or delivery_id >= 2**63:  # beyond any row id (and BIGINT)
        return None
    row = session.execute(
        select(Delivery.id, Subscriber.id, Subscriber.email)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.id == delivery_id)
    ).first()
    if row is None or not token.names(secret, row[2]):
        return None
    return Proven(subscriber_id=row[1], email=row[2], delivery_id=row[0])


def by_message_id(session: Session, message_ids: list[str], address: str) -> Proven | None:
    """The delivery to `address`, among the last few issues, that carried one of the ids."""
    if not message_ids or not address:
        return None
    subscriber = lifecycle.get_by_email(session, address.strip().lower())
    if subscriber is None:
        return None
    recent = (
        select(Issue.id)
        .where(Issue.send_started_at.is_not(None))  # type: ignore[union-attr]
        .order_by(Issue.send_started_at.desc())  # type: ignore[union-attr]
        .limit(RECENT_ISSUES)
    )
    delivery_id = session.execute(
        select(Delivery.id).where(
            Delivery.issue_id.in_(recent),  # type: ignore[attr-defined]
            Delivery.subscriber_id == subscriber.id,
            Delivery.provider_message_id.in_(message_ids),  # type: ignore[attr-defined]
        )
    ).scalar()
    if delivery_id is None:
        return None
    assert subscriber.id is not None
    return Proven(subscriber_id=subscriber.id, email=subscriber.email, delivery_id=delivery_id)


def by_unsubscribe_link(session: Session, secret: str, urls: list[str]) -> Proven | None:
    """The subscriber a signed `/unsubscribe/<token>` link names, with their last delivery."""
    for url in urls:
        path = urlsplit(url).path
        if "/unsubscribe/" not in path:
            continue
        try:
            claims = read_token(secret, "unsubscribe", path.rsplit("/", 1)[1])
            subscriber = lifecycle.from_token(session, claims)
        except (TokenError, lifecycle.NotSubscribed):
            continue
        assert subscriber.id is not None
        return Proven(
            subscriber_id=subscriber.id,
            email=subscriber.email,
            delivery_id=last_sent_delivery(session, subscriber.email),
        )
    return None


def by_unsubscribe_token(
    session: Session, secret: str, token: UnsubscribeToken
) -> Subscriber | None:
    """The subscriber of a valid mailto unsubscribe token (an MTA may have folded the case
    of the public id; the MAC covers it in lower case)."""
    if not token.valid(secret):
        return None
    subscriber = session.execute(
        select(Subscriber).where(Subscriber.public_id == token.public_id)
    ).scalar()
    if subscriber is None:
        subscriber = session.execute(
            select(Subscriber).where(func.lower(Subscriber.public_id) == token.public_id.lower())
        ).scalar()
    if subscriber is None or subscriber.token_version != token.token_version:
        return None  # erased, or the address changed since: a stale token
    return subscriber
