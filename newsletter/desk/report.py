"""After a send: what happened to it, from deliveries, provider events and unsubscribes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import Session, select

from newsletter.delivery.status import StatusReport, issue_status
from newsletter.issues import find_issue
from newsletter.models import Delivery, DeliveryStatus, ProviderEvent
from subscribers.models import ConsentRecord, Subscriber

FEEDBACK_EVENTS = ("bounce", "dropped", "spamreport", "deferred", "blocked")


@dataclass(frozen=True)
class FeedbackEvent:
    event: str
    email: str
    reason: str
    at: str


@dataclass(frozen=True)
class SendReportPage:
    status: StatusReport
    events: Counter[str]
    recent_events: list[FeedbackEvent] = field(default_factory=list)
    unsubscribes: int = 0
    unsubscribe_sources: Counter[str] = field(default_factory=Counter)


def send_report(session: Session, month: str, *, limit: int = 200) -> SendReportPage:
    """Counts per delivery status, failures with reasons (`issue_status`), the webhook's
    bounces and spam reports for this issue's deliveries, and the unsubscribes of people
    who got this issue, made after it reached them."""
    issue = find_issue(session, month)
    status = issue_status(session, month, problem_limit=limit)
    events = Counter(
        dict(
            session.exec(
                select(ProviderEvent.event, func.count())
                .join(Delivery, Delivery.id == ProviderEvent.delivery_id)
                .where(Delivery.issue_id == issue.id)
                .group_by(ProviderEvent.event)
            ).all()
        )
    )
    recent = [
        FeedbackEvent(
            e.event,
            e.email,
            str(e.payload.get("reason") or e.payload.get("type") or ""),
            f"{e.received_at:%Y-%m-%d %H:%M}",
        )
        for e in session.exec(
            select(ProviderEvent)
            .join(Delivery, Delivery.id == ProviderEvent.delivery_id)
            .where(Delivery.issue_id == issue.id, ProviderEvent.event.in_(FEEDBACK_EVENTS))
            .order_by(ProviderEvent.received_at.desc())
            .limit(limit)
        ).all()
    ]
    sources = Counter(
        dict(
            session.exec(
                select(ConsentRecord.source, func.count())
                .join(Delivery, Delivery.subscriber_id == ConsentRecord.subscriber_id)
                .join(Subscriber, Subscriber.id == ConsentRecord.subscriber_id)
                .where(
                    Delivery.issue_id == issue.id,
                    Delivery.status == str(DeliveryStatus.SENT),
                    ConsentRecord.action == "unsubscribe",
                    ConsentRecord.at >= Delivery.sent_at,
                )
                .group_by(ConsentRecord.source)
            ).all()
        )
    )
    return SendReportPage(
        status=status,
        events=events,
        recent_events=recent,
        unsubscribes=sum(sources.values()),
        unsubscribe_sources=sources,
    )
