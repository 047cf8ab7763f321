"""Planning a send: who gets the issue, and which variant of it.

Starting a send is one conditional UPDATE, so of two processes only one wins. Planning
inserts one `Delivery` per active subscriber in bulk, skipping people who already have one
(the `(issue_id, subscriber_id)` unique key backs this up), so it can run again after a crash
or for people who joined since, and never plans anyone twice.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from newsletter.issues import load_issue_contents
from newsletter.models import Delivery, DeliveryStatus, Issue, IssueStatus
from newsletter.rendering import issue_topic_slugs, variant_for
from newsletter.settings import Settings
from subscribers.models import Subscriber, SubscriberStatus, SubscriberTopic, utcnow

# While planning runs the issue is already `sending`; this reason tells workers that the list
# of deliveries is not complete yet, so none of them declares the issue sent too early.
PLANNING_REASON = "planning deliveries"
INSERT_CHUNK = 5000


@dataclass(frozen=True)
class PlanReport:
    planned: int  # deliveries added by this call
    already_planned: int  # active subscribers who already had a delivery for this issue
    inactive: int  # subscribers skipped: pending, paused, unsubscribed or suppressed
    variants: dict[str, int] = field(default_factory=dict)  # variant -> active recipients

    @property
    def recipients(self) -> int:
        return self.planned + self.already_planned


def begin_sending(session: Session, issue: Issue, *, resume: bool = False) -> bool:
    """Move the issue to `sending`; True only for the one caller whose update won.

    `resume` also restarts an issue that was paused (error budget) or missed its schedule:
    a person asked for it. Commits, so the win is durable before any mail goes out.
    """
    allowed = [IssueStatus.DRAFT, IssueStatus.APPROVED]
    if resume:
        allowed += [IssueStatus.PAUSED, IssueStatus.MISSED]
    now = utcnow()
    result = session.execute(
        update(Issue)
        .where(Issue.id == issue.id, Issue.status.in_([str(s) for s in allowed]))
        .values(
            status=str(IssueStatus.SENDING),
            status_reason=PLANNING_REASON,
            send_started_at=func.coalesce(Issue.send_started_at, now),
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    session.refresh(issue)
    session.commit()  # end the read: on SQLite an open transaction holds the write lock
    return result.rowcount == 1


def _audience(session: Session, issue: Issue) -> dict[int, str]:
    """subscriber id -> variant, for every active subscriber (two queries, any size)."""
    issue_topics = issue_topic_slugs(load_issue_contents(session, issue).email_entries)
    active = Subscriber.status == str(SubscriberStatus.ACTIVE)
    ids = session.execute(select(Subscriber.id).where(active)).scalars().all()
    topics: dict[int, list[str]] = defaultdict(list)
    rows = session.execute(
        select(SubscriberTopic.subscriber_id, SubscriberTopic.topic_slug)
        .join(Subscriber, Subscriber.id == SubscriberTopic.subscriber_id)
        .where(active)
    ).all()
    for subscriber_id, slug in rows:
        topics[subscriber_id].append(slug)
    return {sid: variant_for(topics.get(sid, ()), issue_topics) for sid in ids}


def _inactive_count(session: Session) -> int:
    return session.execute(
        select(func.count())
        .select_from(Subscriber)
        .where(Subscriber.status != str(SubscriberStatus.ACTIVE))
    ).scalar_one()


def preview_plan(session: Session, issue: Issue) -> PlanReport:
    """What `plan_deliveries` would do, writing nothing (for `--dry-run`)."""
    audience = _audience(session, issue)
    existing = _planned_ids(session, issue)
    new = [sid for sid in audience if sid not in existing]
    return PlanReport(
        planned=len(new),
        already_planned=len(audience) - len(new),
        inactive=_inactive_count(session),
        variants=dict(Counter(audience.values())),
    )


def _planned_ids(session: Session, issue: Issue) -> set[int]:
    return set(
        session.execute(select(Delivery.subscriber_id).where(Delivery.issue_id == issue.id))
        .scalars()
        .all()
    )


def plan_deliveries(session: Session, issue: Issue, settings: Settings) -> PlanReport:
    """Insert one pending Delivery per active subscriber not yet planned; commits.

    `settings` is part of the contract so planning can grow per-send rules (e.g. a test
    audience) without changing callers.
    """
    del settings
    audience = _audience(session, issue)
    existing = _planned_ids(session, issue)
    now = utcnow()
    rows = [
        {
            "issue_id": issue.id,
            "subscriber_id": sid,
            "status": str(DeliveryStatus.PENDING),
            "variant": variant,
            "attempts": 0,
            "claimed_by": "",
            "provider_message_id": "",
            "error": "",
            "updated_at": now,
        }
        for sid, variant in audience.items()
        if sid not in existing
    ]
    table = Delivery.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(table).on_conflict_do_nothing(index_elements=["issue_id", "subscriber_id"])
    for start in range(0, len(rows), INSERT_CHUNK):
        session.execute(stmt, rows[start : start + INSERT_CHUNK])
    session.execute(
        update(Issue)
        .where(Issue.id == issue.id, Issue.status_reason == PLANNING_REASON)
        .values(status_reason="")
        .execution_options(synchronize_session=False)
    )
    session.commit()
    session.refresh(issue)
    report = PlanReport(
        planned=len(rows),
        already_planned=len(audience) - len(rows),
        inactive=_inactive_count(session),
        variants=dict(Counter(audience.values())),
    )
    session.commit()  # end the read: on SQLite an open transaction holds the write lock
    return report
