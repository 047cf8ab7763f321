"""Provider feedback: SendGrid events recorded once each, and the people they rule out.

SendGrid repeats webhook events, so each is stored under its `sg_event_id` and a repeat is
ignored. A hard bounce, a drop or a spam report suppresses the address: it is never mailed
again automatically. A `blocked` bounce is the receiving server refusing for now (often a
reputation or content block), not a dead address, so it is recorded but suppresses no one.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from newsletter.models import Delivery, ProviderEvent
from subscribers import lifecycle
from subscribers.models import utcnow

SUPPRESSING_EVENTS = frozenset({"bounce", "dropped", "spamreport"})


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


def _delivery_id(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def record_sendgrid_events(session: Session, events: Sequence[Any]) -> FeedbackReport:
    """Store new events (idempotent on `sg_event_id`) and suppress bounced, dropped and
    complaining addresses. Commits."""
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
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = ProviderEvent.__table__  # type: ignore[attr-defined]
    new = suppressed = 0
    for e in events:
        delivery_id = _delivery_id(e.get("delivery_id"))
        inserted = session.execute(
            insert(table)
            .values(
                provider="sendgrid",
                provider_event_id=e["sg_event_id"][:200],
                event=e["event"][:32],
                email=str(e.get("email", ""))[:320],
                delivery_id=delivery_id if delivery_id in known else None,
                payload=e,
                received_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
            .returning(table.c.id)
        ).first()
        if inserted is None:
            continue  # a repeat: SendGrid retries deliveries of the same event
        new += 1
        if e["event"] in SUPPRESSING_EVENTS and e.get("type") != "blocked" and e.get("email"):
            reason = str(e.get("reason") or e.get("type") or "")
            if lifecycle.suppress(session, e["email"], f"sendgrid {e['event']}: {reason}"[:200]):
                suppressed += 1
    session.commit()
    return FeedbackReport(received=len(events), new=new, suppressed=suppressed)
