"""Subscribers on the desk: search, one person's history, counts, and the lifecycle actions
(change topics, suppress, erase), which go through `subscribers.lifecycle` and the audit log.

The audit log never keeps an erased person's address: entries name the subscriber's id.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, or_
from sqlmodel import Session, select

from newsletter import audit
from newsletter.errors import NewsletterError
from newsletter.models import Delivery, Issue, Topic
from newsletter.personal_data import erase_person
from subscribers import lifecycle
from subscribers.models import ConsentRecord, Subscriber, SubscriberStatus, SubscriberTopic

PAGE_SIZE = 50


@dataclass(frozen=True)
class SubscriberRow:
    subscriber: Subscriber
    topics: list[str]


def search(
    session: Session, *, query: str = "", status: str = "", topic: str = "", offset: int = 0
) -> tuple[list[SubscriberRow], int]:
    """A page of subscribers matching an address fragment, a status and a topic; the total."""
    where = []
    if query.strip():
        where.append(Subscriber.email.contains(query.strip().lower(), autoescape=True))
    if status:
        where.append(Subscriber.status == status)
    if topic:
        where.append(
            Subscriber.id.in_(
                select(SubscriberTopic.subscriber_id).where(SubscriberTopic.topic_slug == topic)
            )
        )
    total = session.exec(select(func.count()).select_from(Subscriber).where(*where)).one()
    subs = session.exec(
        select(Subscriber).where(*where).order_by(Subscriber.email).offset(offset).limit(PAGE_SIZE)
    ).all()
    topics: dict[int, list[str]] = {}
    ids = [s.id for s in subs]
    if ids:
        for row in session.exec(
            select(SubscriberTopic).where(SubscriberTopic.subscriber_id.in_(ids))
        ).all():
            topics.setdefault(row.subscriber_id, []).append(row.topic_slug)
    return [SubscriberRow(s, sorted(topics.get(s.id or 0, []))) for s in subs], int(total)


@dataclass(frozen=True)
class AudienceCounts:
    by_status: dict[str, int]
    by_topic: list[tuple[Topic, int]]  # active subscribers per topic, taxonomy order
    by_month: list[tuple[str, Counter[str]]]  # YYYY-MM -> consent actions (confirm, ...)


def counts(session: Session, *, months: int = 12) -> AudienceCounts:
    by_status = {str(s): 0 for s in SubscriberStatus}
    for status, n in session.exec(
        select(Subscriber.status, func.count()).group_by(Subscriber.status)
    ).all():
        by_status[status] = n
    active = dict(
        session.exec(
            select(SubscriberTopic.topic_slug, func.count())
            .join(Subscriber, Subscriber.id == SubscriberTopic.subscriber_id)
            .where(Subscriber.status == str(SubscriberStatus.ACTIVE))
            .group_by(SubscriberTopic.topic_slug)
        ).all()
    )
    topics = session.exec(select(Topic).order_by(Topic.position)).all()
    monthly: dict[str, Counter[str]] = {}
    for at, action in session.exec(
        select(ConsentRecord.at, ConsentRecord.action).where(
            or_(
                ConsentRecord.action == "confirm",
                ConsentRecord.action == "import",
                ConsentRecord.action == "unsubscribe",
                ConsentRecord.action == "suppress",
            )
        )
    ).all():
        monthly.setdefault(f"{at:%Y-%m}", Counter())[action] += 1
    recent = sorted(monthly.items(), reverse=True)[:months]
    return AudienceCounts(by_status, [(t, active.get(t.slug, 0)) for t in topics], recent)


@dataclass(frozen=True)
class SubscriberDetail:
    subscriber: Subscriber
    topics: list[str]
    consent: list[ConsentRecord]
    deliveries: list[tuple[str, Delivery]]  # (issue month, delivery), newest first


def get(session: Session, subscriber_id: int) -> Subscriber:
    sub = session.get(Subscriber, subscriber_id)
    if sub is None:
        raise NewsletterError(f"there is no subscriber #{subscriber_id} (erased?)")
    return sub


def detail(session: Session, subscriber_id: int) -> SubscriberDetail:
    sub = get(session, subscriber_id)
    consent = session.exec(
        select(ConsentRecord)
        .where(ConsentRecord.subscriber_id == sub.id)
        .order_by(ConsentRecord.at.desc(), ConsentRecord.id.desc())
    ).all()
    deliveries = session.exec(
        select(Issue.month, Delivery)
        .join(Issue, Issue.id == Delivery.issue_id)
        .where(Delivery.subscriber_id == sub.id)
        .order_by(Issue.month.desc())
    ).all()
    return SubscriberDetail(
        sub, lifecycle.topics_of(session, sub), list(consent), [(m, d) for m, d in deliveries]
    )


def change_topics(session: Session, subscriber_id: int, topics: list[str], actor: str) -> list[str]:
    sub = get(session, subscriber_id)
    known = set(session.exec(select(Topic.slug)).all())
    try:
        chosen = lifecycle.update_topics(session, sub, topics, known_topics=known)
    except lifecycle.SubscriberError as exc:
        raise NewsletterError(str(exc)) from None
    audit.record(session, actor, "subscriber.topics", f"subscriber #{sub.id}", ", ".join(chosen))
    return chosen


def suppress(session: Session, subscriber_id: int, reason: str, actor: str) -> bool:
    sub = get(session, subscriber_id)
    reason = " ".join(reason.split())[:150] or "suppressed by an editor"
    done = lifecycle.suppress(session, sub.email, f"desk: {reason}", source="desk")
    if done:
        audit.record(session, actor, "subscriber.suppress", f"subscriber #{sub.id}", reason)
    return done


def erase(
    session: Session,
    subscriber_id: int,
    confirm_email: str,
    actor: str,
    *,
    suppression_key: bytes,
    outbox_dir: Path | None = None,
) -> None:
    """Erase the person as `subscribers remove` does (deliveries and provider events too);
    `confirm_email` must repeat their address (the confirmation)."""

    sub = get(session, subscriber_id)
    if confirm_email.strip().lower() != sub.email.lower():
        raise NewsletterError("type the subscriber's address exactly to confirm the erasure")
    erase_person(session, sub.email, suppression_key=suppression_key, outbox_dir=outbox_dir)
    audit.record(session, actor, "subscriber.erase", f"subscriber #{subscriber_id}", "erased")
