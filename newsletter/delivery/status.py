"""What happened to an issue's send: counts per delivery status and the problems, by reason,
and what recipients' servers reported afterwards (bounces, complaints: provider events)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import Session

from newsletter.errors import NewsletterError
from newsletter.models import Delivery, DeliveryStatus, Issue, ProviderEvent
from subscribers.models import Subscriber

PROBLEM_STATUSES = (str(DeliveryStatus.FAILED), str(DeliveryStatus.UNKNOWN))
# Provider events worth an operator's eye (not `processed`, `delivered`, …).
REPORTED_EVENTS = (
    "bounce",
    "soft_bounce",
    "dropped",
    "dropped_sender",  # a drop for the account or content: nobody suppressed
    "deferred",
    "spamreport",
    "complaint",
    "unsubscribe",
    "group_unsubscribe",
)


@dataclass(frozen=True)
class DeliveryProblem:
    email: str
    status: str  # failed or unknown
    error: str
    attempts: int


@dataclass(frozen=True)
class FeedbackEvent:
    email: str
    provider: str
    event: str  # bounce, soft_bounce, dropped, spamreport, …
    detail: str  # the status code and reason the provider or DSN gave
    received_at: datetime


@dataclass(frozen=True)
class StatusReport:
    month: str
    issue_status: str
    status_reason: str
    counts: dict[str, int]  # every DeliveryStatus value, zero included
    problems: list[DeliveryProblem] = field(default_factory=list)  # failed and unknown
    reasons: dict[tuple[str, str], int] = field(default_factory=dict)  # (status, error) -> n
    send_started_at: datetime | None = None
    sent_at: datetime | None = None
    feedback: dict[tuple[str, str], int] = field(default_factory=dict)  # (provider, event) -> n
    feedback_events: list[FeedbackEvent] = field(default_factory=list)
    # bounces and reports received while this was the latest issue that proved no delivery
    # of ours: they changed nobody
    unverified: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def issue_status(session: Session, month: str, *, problem_limit: int = 1000) -> StatusReport:
    """Counts per delivery status plus failures and unknowns with their reasons."""
    issue = session.execute(
        select(Issue).where(Issue.month == month).execution_options(populate_existing=True)
    ).scalar()
    if issue is None:
        raise NewsletterError(f"there is no issue for {month}")
    counts = {str(s): 0 for s in DeliveryStatus}
    for status, n in session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.issue_id == issue.id)
        .group_by(Delivery.status)
    ).all():
        counts[status] = n
    reasons: Counter[tuple[str, str]] = Counter()
    for status, error, n in session.execute(
        select(Delivery.status, Delivery.error, func.count())
        .where(Delivery.issue_id == issue.id, Delivery.status.in_(PROBLEM_STATUSES))
        .group_by(Delivery.status, Delivery.error)
    ).all():
        reasons[(status, error)] = n
    problems = [
        DeliveryProblem(email, status, error, attempts)
        for email, status, error, attempts in session.execute(
            select(Subscriber.email, Delivery.status, Delivery.error, Delivery.attempts)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.issue_id == issue.id, Delivery.status.in_(PROBLEM_STATUSES))
            .order_by(Delivery.status, Subscriber.email)
            .limit(problem_limit)
        ).all()
    ]
    feedback: Counter[tuple[str, str]] = Counter()
    events: list[FeedbackEvent] = []
    for provider, event, email, payload, received_at in session.execute(
        select(
            ProviderEvent.provider,
            ProviderEvent.event,
            ProviderEvent.email,
            ProviderEvent.payload,
            ProviderEvent.received_at,
        )
        .join(Delivery, Delivery.id == ProviderEvent.delivery_id)
        .where(Delivery.issue_id == issue.id, ProviderEvent.event.in_(REPORTED_EVENTS))
        .order_by(ProviderEvent.received_at, ProviderEvent.id)
    ).all():
        feedback[(provider, event)] += 1
        if len(events) < problem_limit:
            detail = " ".join(
                str(payload.get(k) or "") for k in ("status", "diagnostic", "reason")
            ).strip()
            events.append(FeedbackEvent(email, provider, event, detail, received_at))
    unverified = 0
    if issue.send_started_at is not None:
        later = session.execute(
            select(func.min(Issue.send_started_at)).where(
                Issue.send_started_at > issue.send_started_at  # type: ignore[operator]
            )
        ).scalar()
        window = [
            ProviderEvent.event == "unverified",
            ProviderEvent.received_at >= issue.send_started_at,
        ]
        if later is not None:
            window.append(ProviderEvent.received_at < later)
        unverified = session.execute(
            select(func.count()).select_from(ProviderEvent).where(*window)
        ).scalar_one()
    return StatusReport(
        month=issue.month,
        unverified=unverified,
        feedback=dict(feedback.most_common()),
        feedback_events=events,
        issue_status=issue.status,
        status_reason=issue.status_reason,
        counts=counts,
        problems=problems,
        reasons=dict(reasons.most_common()),
        send_started_at=issue.send_started_at,
        sent_at=issue.sent_at,
    )
