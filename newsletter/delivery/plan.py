"""Planning a send: who gets the issue, and which variant of it.

Starting a send is one conditional UPDATE, so of two processes only one wins. Planning
inserts one `Delivery` per active subscriber in one statement run by the database, skipping
people who already have one (the `(issue_id, subscriber_id)` unique key backs this up), so it
can run again after a crash or for people who joined since, and never plans anyone twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import (
    ColumnElement,
    FromClause,
    and_,
    case,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from newsletter.issues import load_issue_contents
from newsletter.models import Delivery, DeliveryStatus, Issue, IssueStatus
from newsletter.rendering import EVERYTHING, NO_MATCH, issue_topic_slugs
from newsletter.settings import Settings
from subscribers.models import Subscriber, SubscriberStatus, SubscriberTopic, utcnow

# While planning runs the issue is already `sending`; this reason tells workers that the list
# of deliveries is not complete yet, so none of them declares the issue sent too early.
PLANNING_REASON = "planning deliveries"
ANALYZE_AFTER = 10_000  # planned rows that make PostgreSQL's statistics stale
_D = Delivery.__table__  # type: ignore[attr-defined]
_S = Subscriber.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PlanReport:
    planned: int  # deliveries added by this call
    already_planned: int  # active subscribers who already had a delivery for this issue
    inactive: int  # subscribers skipped: pending, paused, unsubscribed or suppressed
    variants: dict[str, int] = field(default_factory=dict)  # variant -> active recipients

    @property
    def recipients(self) -> int:
        return self.planned + self.already_planned


def begin_sending(
    session: Session, issue: Issue, *, resume: bool = False, revision: int | None = None
) -> bool:
    """Move the issue to `sending`; True only for the one caller whose update won.

    `resume` also restarts an issue that was paused (error budget) or missed its schedule:
    a person asked for it. With `revision`, a draft or approved issue starts only while it
    is still at that revision (an edit committed meanwhile makes the update miss). Commits,
    so the win is durable before any mail goes out.
    """
    allowed = [IssueStatus.DRAFT, IssueStatus.APPROVED]
    if resume:
        allowed += [IssueStatus.PAUSED, IssueStatus.MISSED]
    now = utcnow()
    condition = Issue.status.in_([str(s) for s in allowed])
    if revision is not None:
        started = Issue.status.in_([str(IssueStatus.PAUSED), str(IssueStatus.MISSED)])
        condition = and_(condition, or_(Issue.revision == revision, started))
    result = session.execute(
        update(Issue)
        .where(Issue.id == issue.id, condition)
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


def _subscribers_with_variant(
    issue_topics: frozenset[str],
) -> tuple[FromClause, ColumnElement[str]]:
    """Subscribers joined to their variant, worked out by the database: `variant_for` in SQL.

    Per issue topic (in sorted order) a subscriber's topic rows contribute "slug," or "", so
    the concatenation is the sorted intersection; no topic rows at all is EVERYTHING, topics
    that all miss the issue are NO_MATCH. One grouped pass over `subscriber_topic` (a
    correlated subquery per subscriber was 4x slower); no row reaches Python.
    """
    st = SubscriberTopic.__table__  # type: ignore[attr-defined]
    joined: ColumnElement[str] = literal("")
    for slug in sorted(issue_topics):
        hit = func.max(case((st.c.topic_slug == slug, literal(f"{slug},")), else_=literal("")))
        joined = joined.op("||")(hit)
    chosen = (
        select(st.c.subscriber_id.label("subscriber_id"), func.rtrim(joined, ",").label("slugs"))
        .group_by(st.c.subscriber_id)
        .subquery("chosen")
    )
    variant = case(
        (chosen.c.subscriber_id.is_(None), literal(EVERYTHING)),
        (chosen.c.slugs == "", literal(NO_MATCH)),
        else_=chosen.c.slugs,
    )
    return _S.outerjoin(chosen, chosen.c.subscriber_id == _S.c.id), variant


def _issue_topics(session: Session, issue: Issue) -> frozenset[str]:
    return issue_topic_slugs(load_issue_contents(session, issue).email_entries)


_ACTIVE = _S.c.status == str(SubscriberStatus.ACTIVE)


def _not_planned(issue: Issue) -> ColumnElement[bool]:
    planned = select(_D.c.id).where(_D.c.issue_id == issue.id, _D.c.subscriber_id == _S.c.id)
    return ~planned.exists()


def _count(session: Session, *where: ColumnElement[bool]) -> int:
    return session.execute(select(func.count()).select_from(_S).where(*where)).scalar_one()


def _planned_variants(session: Session, issue: Issue) -> dict[str, int]:
    """variant -> active recipients with a delivery for this issue."""
    rows = session.execute(
        select(_D.c.variant, func.count())
        .join(_S, _S.c.id == _D.c.subscriber_id)
        .where(_D.c.issue_id == issue.id, _ACTIVE)
        .group_by(_D.c.variant)
    ).all()
    return {variant: n for variant, n in rows}


def preview_plan(session: Session, issue: Issue) -> PlanReport:
    """What `plan_deliveries` would do, writing nothing (for `--dry-run`)."""
    subscribers, variant = _subscribers_with_variant(_issue_topics(session, issue))
    new = _count(session, _ACTIVE, _not_planned(issue))
    active = _count(session, _ACTIVE)
    labelled = variant.label("variant")
    rows = session.execute(
        select(labelled, func.count()).select_from(subscribers).where(_ACTIVE).group_by(labelled)
    ).all()
    return PlanReport(
        planned=new,
        already_planned=active - new,
        inactive=_count(session, ~_ACTIVE),
        variants={v: n for v, n in rows},
    )


def plan_deliveries(session: Session, issue: Issue, settings: Settings) -> PlanReport:
    """Insert one pending Delivery per active subscriber not yet planned; commits.

    One `INSERT … SELECT`: the database computes each subscriber's variant and the unique
    key skips people already planned, so memory stays flat in the list size and planning
    again writes nothing. (No anti-join against `delivery`: PostgreSQL, believing the table
    empty, would rescan the rows this very statement is adding once per subscriber.)
    `settings` is part of the contract so planning can grow per-send rules (e.g. a test
    audience) without changing callers.
    """
    del settings
    now = utcnow()
    subscribers, variant = _subscribers_with_variant(_issue_topics(session, issue))
    source = (
        select(
            literal(issue.id),
            _S.c.id,
            literal(str(DeliveryStatus.PENDING)),
            variant,
            literal(0),
            literal(""),
            literal(""),
            literal(""),
            literal(now, type_=_D.c.updated_at.type),
        )
        .select_from(subscribers)
        .where(_ACTIVE)
    )
    columns = [
        "issue_id",
        "subscriber_id",
        "status",
        "variant",
        "attempts",
        "claimed_by",
        "provider_message_id",
        "error",
        "updated_at",
    ]
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        insert(_D)
        .from_select(columns, source)
        .on_conflict_do_nothing(index_elements=["issue_id", "subscriber_id"])
        .execution_options(preserve_rowcount=True)
    )
    planned = session.execute(stmt).rowcount
    if dialect == "postgresql" and planned >= ANALYZE_AFTER:
        # Fresh statistics, so claims use the claim index rather than scanning sent rows.
        session.execute(text("ANALYZE delivery"))
    session.execute(
        update(Issue)
        .where(Issue.id == issue.id, Issue.status_reason == PLANNING_REASON)
        .values(status_reason="")
        .execution_options(synchronize_session=False)
    )
    session.commit()
    session.refresh(issue)
    active = _count(session, _ACTIVE)
    report = PlanReport(
        planned=planned,
        already_planned=max(0, active - planned),
        inactive=_count(session, ~_ACTIVE),
        variants=_planned_variants(session, issue),
    )
    session.commit()  # end the read: on SQLite an open transaction holds the write lock
    return report
