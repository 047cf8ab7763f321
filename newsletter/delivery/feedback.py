"""Provider feedback: SendGrid events and the bounce mailbox, recorded once each, and what
they change.

SendGrid repeats webhook events, so each is stored under its `sg_event_id` and a repeat is
ignored. What an event changes:
- `bounce`: SendGrid's `bounce_classification` decides (`Invalid Address` hard, `Mailbox
  Unavailable` soft, reputation/content/technical/volume blocks suppress nobody); without
  one, a `blocked` bounce (the receiving server refusing for now) suppresses nobody and any
  other is hard.
- `dropped`: suppresses only for a reason about the recipient (bounced, invalid,
  unsubscribed or spam-reporting address). A drop for the account or the content ("Spam
  Content", "Recipient List over Package Quota") is the sender's problem: it is counted on
  the issue (`issue status`) and the editors are alerted, and nobody is suppressed.
- `spamreport` suppresses; `unsubscribe` and `group_unsubscribe` unsubscribe (source
  "provider").

Bounces read from the bounce mailbox take `record_bounce`, only once a delivery of ours is
proven (`newsletter.bounces.proof`): a hard bounce suppresses at once, soft bounces (mailbox
full, greylisting) only after `SOFT_BOUNCE_LIMIT` of them within `SOFT_BOUNCE_WINDOW`.
Complaints (ARF reports) unsubscribe (source "complaint"); what proves nothing is recorded
as `unverified` and changes nobody.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from newsletter.models import Delivery, DeliveryStatus, Issue, ProviderEvent
from subscribers import lifecycle
from subscribers.models import Subscriber, utcnow

UNSUBSCRIBING_EVENTS = frozenset({"unsubscribe", "group_unsubscribe"})
# SendGrid's `dropped` reasons that are about the recipient (lower case; "Invalid" alone is
# the address, "Invalid SMTPAPI header" is ours).
RECIPIENT_DROP_REASONS = ("bounced address", "unsubscribed address", "spam reporting address")
HARD_CLASSIFICATIONS = frozenset({"invalid address"})
SOFT_CLASSIFICATIONS = frozenset({"mailbox unavailable"})
COMPLAINT_EVENT = "complaint"
UNVERIFIED_EVENT = "unverified"
SENDER_DROP_EVENT = "dropped_sender"  # a drop for the account or content: nobody suppressed
SOFT_BOUNCE_EVENT = "soft_bounce"
SOFT_BOUNCE_LIMIT = 3
SOFT_BOUNCE_WINDOW = timedelta(days=30)


class SignatureError(Exception):
    """The request is not signed by the configured SendGrid key (or no key is set)."""


def check_signature_headers(
    public_key: str, signature: str, timestamp: str, *, max_age: float, now: float | None = None
) -> None:
    """What can be refused before the body is read: no key, no signature, or a timestamp
    outside the freshness window (`max_age` seconds either way), which stops replays of
    old signed events. SendGrid signs each attempt afresh, so its retries pass."""
    if not public_key:
        raise SignatureError("NEWSLETTER_SENDGRID_WEBHOOK_KEY is not set; events are refused")
    if not signature or not timestamp:
        raise SignatureError("missing signature headers")
    try:
        signed_at = int(timestamp)
    except ValueError:
        raise SignatureError("bad timestamp") from None
    now = time.time() if now is None else now
    if abs(now - signed_at) > max_age:
        raise SignatureError("timestamp outside the accepted window; refusing a stale event")


def verify_sendgrid_signature(public_key: str, body: bytes, signature: str, timestamp: str) -> None:
    """Check SendGrid's ECDSA (P-256, SHA-256) signature over timestamp + raw body."""
    if not public_key:
        raise SignatureError("NEWSLETTER_SENDGRID_WEBHOOK_KEY is not set; events are refused")
    if not signature or not timestamp:
        raise SignatureError("missing signature headers")
    try:
        key = load_der_public_key(base64.b64decode(public_key.strip()))
    except (ValueError, binascii.Error):
        raise SignatureError("NEWSLETTER_SENDGRID_WEBHOOK_KEY is not a base64 public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SignatureError("NEWSLETTER_SENDGRID_WEBHOOK_KEY is not an ECDSA key")
    try:
        key.verify(
            base64.b64decode(signature), timestamp.encode() + body, ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, ValueError, binascii.Error):
        raise SignatureError("bad signature") from None


class MalformedEvents(ValueError):
    """The body is not a JSON list of event objects, each with an `sg_event_id`."""


@dataclass(frozen=True)
class FeedbackReport:
    received: int
    new: int  # not seen before
    suppressed: int  # subscribers suppressed by this call
    unsubscribed: int = 0  # subscribers unsubscribed by this call
    sender_drops: list[str] = field(default_factory=list)  # reasons of drops that are ours


def _delivery_id(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _insert_event(
    session: Session,
    *,
    provider: str,
    provider_event_id: str,
    event: str,
    email: str,
    delivery_id: int | None,
    payload: dict[str, Any],
    received_at: datetime | None = None,
) -> bool:
    """Insert one provider event; False when it was recorded before (same provider and id)."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = ProviderEvent.__table__  # type: ignore[attr-defined]
    inserted = session.execute(
        insert(table)
        .values(
            provider=provider,
            provider_event_id=provider_event_id[:200],
            event=event[:32],
            email=email[:320],
            delivery_id=delivery_id,
            payload=payload,
            received_at=received_at or utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
        .returning(table.c.id)
    ).first()
    return inserted is not None


def record_sendgrid_events(session: Session, events: Sequence[Any]) -> FeedbackReport:
    """Store new events (idempotent on `sg_event_id`) and act on them (see the module
    docstring). Commits."""
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise MalformedEvents("expected a JSON list of event objects")
    for i, e in enumerate(events):
        if not isinstance(e.get("sg_event_id"), str) or not isinstance(e.get("event"), str):
            raise MalformedEvents(f"event {i} has no sg_event_id or event")
    wanted = {d for d in (_delivery_id(e.get("delivery_id")) for e in events) if d is not None}
    known = (
        set(session.execute(select(Delivery.id).where(Delivery.id.in_(wanted))).scalars())
        if wanted
        else set()
    )
    new = suppressed = unsubscribed = 0
    sender_drops: list[str] = []
    now = utcnow()
    for e in events:
        delivery_id = _delivery_id(e.get("delivery_id"))
        action, reason = _sendgrid_action(e)
        inserted = _insert_event(
            session,
            provider="sendgrid",
            provider_event_id=e["sg_event_id"],
            event=_stored_event(e["event"], action),
            email=str(e.get("email", "")),
            delivery_id=delivery_id if delivery_id in known else None,
            payload=e,
            received_at=now,
        )
        if not inserted:
            continue  # a repeat: SendGrid retries deliveries of the same event
        new += 1
        email = str(e.get("email") or "")
        if not email:
            continue
        if action == "suppress":
            if lifecycle.suppress(session, email, f"sendgrid {e['event']}: {reason}"[:200]):
                suppressed += 1
        elif action == "soft" and _soft_limit_reached(session, email, now):
            detail = f"sendgrid: {SOFT_BOUNCE_LIMIT} soft bounces in {SOFT_BOUNCE_WINDOW.days} days"
            if lifecycle.suppress(session, email, f"{detail}, last {reason}"[:200]):
                suppressed += 1
        elif action == "unsubscribe":
            subscriber = lifecycle.get_by_email(session, email.strip().lower())
            if subscriber is not None and lifecycle.unsubscribe(
                session, subscriber, source="provider"
            ):
                unsubscribed += 1
        elif action == "sender":
            sender_drops.append(reason or "no reason given")
    session.commit()
    return FeedbackReport(
        received=len(events),
        new=new,
        suppressed=suppressed,
        unsubscribed=unsubscribed,
        sender_drops=sender_drops,
    )


def _sendgrid_action(e: dict[str, Any]) -> tuple[str, str]:
    """(suppress | soft | unsubscribe | sender | none, the reason) for one SendGrid event."""
    event = e["event"]
    reason = str(e.get("reason") or e.get("type") or "")
    if event in UNSUBSCRIBING_EVENTS:
        return "unsubscribe", reason
    if event == "spamreport":
        return "suppress", reason
    if event == "dropped":
        text = reason.strip().lower()
        if text == "invalid" or text.startswith(RECIPIENT_DROP_REASONS):
            return "suppress", reason
        return "sender", reason
    if event == "bounce":
        classification = str(e.get("bounce_classification") or "").strip().lower()
        if classification in HARD_CLASSIFICATIONS:
            return "suppress", f"{e.get('bounce_classification')}: {reason}"
        if classification in SOFT_CLASSIFICATIONS:
            return "soft", f"{e.get('bounce_classification')}: {reason}"
        if classification and classification != "unclassified":
            return "none", reason  # technical, content, reputation, volume: not the address
        return ("none" if e.get("type") == "blocked" else "suppress"), reason
    return "none", reason


def _stored_event(event: str, action: str) -> str:
    if action == "soft":
        return SOFT_BOUNCE_EVENT
    if action == "sender":
        return SENDER_DROP_EVENT
    return event


def _soft_limit_reached(session: Session, email: str, now: datetime) -> bool:
    """`SOFT_BOUNCE_LIMIT` soft bounces (any provider) for this address in the window."""
    recent = session.execute(
        select(func.count())
        .select_from(ProviderEvent)
        .where(
            ProviderEvent.event == SOFT_BOUNCE_EVENT,
            func.lower(ProviderEvent.email) == email.strip().lower(),
            ProviderEvent.received_at >= now - SOFT_BOUNCE_WINDOW,
        )
    ).scalar_one()
    return recent >= SOFT_BOUNCE_LIMIT


@dataclass(frozen=True)
class Bounce:
    """One recipient's failure reported by one bounce message (a DSN)."""

    event_id: str  # unique per bounce message and recipient: a re-read records nothing
    email: str
    hard: bool
    status: str = ""  # the DSN status code, e.g. 5.1.1
    diagnostic: str = ""


@dataclass(frozen=True)
class BounceOutcome:
    new: bool  # not recorded before
    suppressed: bool  # this bounce suppressed the subscriber


RECENT_ISSUES = 3  # a bounce answers one of the last few sends, usually the latest


def last_sent_delivery(session: Session, email: str) -> int | None:
    """The delivery a bounce most likely answers: the person's latest sent one, among the
    last few issues (so the lookup uses the (issue_id, subscriber_id) index)."""
    recent = (
        select(Issue.id)
        .where(Issue.send_started_at.is_not(None))  # type: ignore[union-attr]
        .order_by(Issue.send_started_at.desc())  # type: ignore[union-attr]
        .limit(RECENT_ISSUES)
    )
    return session.execute(
        select(Delivery.id)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(
            Subscriber.email == email,
            Delivery.issue_id.in_(recent),  # type: ignore[attr-defined]
            Delivery.status == str(DeliveryStatus.SENT),
        )
        .order_by(Delivery.sent_at.desc(), Delivery.id.desc())  # type: ignore[union-attr]
        .limit(1)
    ).scalar()


def record_bounce(
    session: Session, bounce: Bounce, *, delivery_id: int, now: datetime | None = None
) -> BounceOutcome:
    """Record a proven SMTP bounce of `delivery_id` as a provider event and suppress the
    address when it is dead: at once for a hard bounce, after `SOFT_BOUNCE_LIMIT` soft ones
    in `SOFT_BOUNCE_WINDOW`. Idempotent on `event_id`. Does not commit."""
    now = now or utcnow()
    email = bounce.email.strip().lower()
    event = "bounce" if bounce.hard else SOFT_BOUNCE_EVENT
    payload = {
        "type": "hard" if bounce.hard else "soft",
        "status": bounce.status,
        "diagnostic": bounce.diagnostic[:1000],
    }
    if not _insert_event(
        session,
        provider="smtp",
        provider_event_id=bounce.event_id,
        event=event,
        email=email,
        delivery_id=delivery_id,
        payload=payload,
        received_at=now,
    ):
        return BounceOutcome(new=False, suppressed=False)
    detail = " ".join(p for p in (bounce.status, bounce.diagnostic) if p)
    if bounce.hard:
        reason = f"smtp hard bounce: {detail}"
    elif _soft_limit_reached(session, email, now):
        window = SOFT_BOUNCE_WINDOW.days
        reason = f"smtp: {SOFT_BOUNCE_LIMIT} soft bounces in {window} days, last {detail}"
    else:
        return BounceOutcome(new=True, suppressed=False)
    suppressed = lifecycle.suppress(session, email, reason[:200], source="bounce")
    return BounceOutcome(new=True, suppressed=suppressed)


@dataclass(frozen=True)
class ComplaintOutcome:
    new: bool  # not recorded before
    unsubscribed: bool  # this complaint unsubscribed the reader


def record_complaint(
    session: Session,
    subscriber: Subscriber,
    *,
    event_id: str,
    delivery_id: int | None,
    payload: dict[str, Any],
) -> ComplaintOutcome:
    """A reader's spam report (ARF) about a proven delivery: recorded, and the reader
    unsubscribed (source "complaint"). Idempotent on `event_id`. Does not commit."""
    if not _insert_event(
        session,
        provider="arf",
        provider_event_id=event_id,
        event=COMPLAINT_EVENT,
        email=subscriber.email,
        delivery_id=delivery_id,
        payload=payload,
    ):
        return ComplaintOutcome(new=False, unsubscribed=False)
    changed = lifecycle.unsubscribe(session, subscriber, source="complaint")
    return ComplaintOutcome(new=True, unsubscribed=changed)


def record_unverified(session: Session, *, event_id: str, payload: dict[str, Any]) -> bool:
    """A bounce or report that proves no delivery of ours: counted, changing nobody. Its id
    has a prefix of its own, so a forgery cannot take the id a real bounce will have."""
    return _insert_event(
        session,
        provider="smtp",
        provider_event_id=f"unverified:{event_id}",
        event=UNVERIFIED_EVENT,
        email="",
        delivery_id=None,
        payload=payload,
    )
