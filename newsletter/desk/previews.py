"""What each variant of an issue weighs and how many subscribers get it (the desk's preview)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, select

from newsletter.issues import load_issue_contents
from newsletter.models import Delivery, Issue
from newsletter.rendering import (
    EVERYTHING,
    NO_MATCH,
    issue_topic_slugs,
    render_issue_variant,
    variant_for,
)
from newsletter.settings import Settings
from subscribers.models import Subscriber, SubscriberStatus, SubscriberTopic

MAX_VARIANTS_SHOWN = 40


@dataclass(frozen=True)
class VariantRow:
    variant: str
    label: str
    subscribers: int
    html_bytes: int
    text_bytes: int


def variant_label(variant: str, names: dict[str, str]) -> str:
    if variant == EVERYTHING:
        return "Everything (no topics chosen)"
    if variant == NO_MATCH:
        return "None of their topics this month"
    return ", ".join(names.get(s, s) for s in variant.split(","))


def variant_of(session: Session, issue: Issue, topics: list[str]) -> str:
    return variant_for(topics, issue_topic_slugs(load_issue_contents(session, issue).entries))


def audience_by_variant(session: Session, issue: Issue) -> dict[str, int]:
    """Subscribers per variant: the planned deliveries once a send is planned, else the
    active audience now. Aggregated in SQL (one row per distinct topic set), so a page load
    stays fast with 100,000 subscribers, unlike planning's per-subscriber pass."""
    planned = dict(
        session.exec(
            select(Delivery.variant, func.count())
            .where(Delivery.issue_id == issue.id)
            .group_by(Delivery.variant)
        ).all()
    )
    if planned:
        return planned
    issue_topics = issue_topic_slugs(load_issue_contents(session, issue).entries)
    active = Subscriber.status == str(SubscriberStatus.ACTIVE)
    per_subscriber = (
        select(
            SubscriberTopic.subscriber_id,
            func.aggregate_strings(SubscriberTopic.topic_slug, ",").label("topics"),
        )
        .join(Subscriber, Subscriber.id == SubscriberTopic.subscriber_id)
        .where(active)
        .group_by(SubscriberTopic.subscriber_id)
        .subquery()
    )
    counts: Counter[str] = Counter()
    with_topics = 0
    for topics, n in session.exec(
        select(per_subscriber.c.topics, func.count()).group_by(per_subscriber.c.topics)
    ).all():
        counts[variant_for(topics.split(","), issue_topics)] += n
        with_topics += n
    everyone = session.exec(select(func.count()).select_from(Subscriber).where(active)).one()
    if everyone - with_topics:
        counts[EVERYTHING] += everyone - with_topics
    return dict(counts)


def variant_rows(
    session: Session, issue: Issue, settings: Settings, names: dict[str, str], extra: list[str]
) -> list[VariantRow]:
    """The planned audience's variants (largest first), plus the `extra` variants asked for."""
    plan = audience_by_variant(session, issue)
    wanted = sorted(plan, key=lambda v: (-plan[v], v))[:MAX_VARIANTS_SHOWN]
    wanted += [v for v in extra if v not in wanted]
    rows = []
    for variant in wanted:
        rendered = render_issue_variant(session, issue, variant, settings)
        rows.append(
            VariantRow(
                variant=variant,
                label=variant_label(variant, names),
                subscribers=plan.get(variant, 0),
                html_bytes=len(rendered.html.encode()),
                text_bytes=len(rendered.text.encode()),
            )
        )
    return rows
