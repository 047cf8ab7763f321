"""A ready-to-send issue and a large audience, inserted in bulk, for tests and benchmarks.

Subscribers are spread round-robin over topic sets, so a send covers several variants:
with the default sets, one subscriber in each set gets a different rendering.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select
from sqlmodel import Session

from newsletter.models import Issue, IssuePaper, Paper, PaperTopic, Topic
from subscribers.models import Subscriber, SubscriberStatus, SubscriberTopic, utcnow

CHUNK = 5000


def issue_topics(session: Session, count: int = 5) -> list[str]:
    """The first `count` topics of the taxonomy (the sample issue's sections)."""
    return list(session.execute(select(Topic.slug).order_by(Topic.position).limit(count)).scalars())


def topic_sets(topics: list[str], count: int) -> list[tuple[str, ...]]:
    """`count` distinct topic choices: none (everything), singles, pairs, then triples."""
    sets: list[tuple[str, ...]] = [()]
    sets += [(t,) for t in topics]
    sets += [(a, b) for i, a in enumerate(topics) for b in topics[i + 1 :]]
    sets += [(a, b, c) for i, a in enumerate(topics) for b in topics[i + 1 :] for c in topics]
    seen, unique = set(), []
    for s in sets:
        key = tuple(sorted(set(s)))
        if key not in seen and (len(key) == len(s)):
            seen.add(key)
            unique.append(key)
    if count > len(unique):
        raise ValueError(f"only {len(unique)} topic sets from {len(topics)} topics")
    return unique[:count]


def seed_issue(
    session: Session, month: str = "2026-04", topics: list[str] | None = None, per_topic: int = 2
) -> Issue:
    """A draft issue for `month` with `per_topic` papers under each topic."""
    topics = topics if topics is not None else issue_topics(session)
    year, mon = (int(x) for x in month.split("-"))
    issue = Issue(month=month, subject=f"Issue {month}")
    session.add(issue)
    session.flush()
    position = 0
    for slug in topics:
        for n in range(per_topic):
            title = f"Paper {n + 1} on {slug} & <friends> in {month}"
            paper = Paper(
                title=title,
                normalized_title=title.lower(),
                summary=f"What paper {n + 1} about {slug} found, in plain words.",
                url=f"https://arxiv.org/abs/{year % 100:02d}{mon:02d}.{position:05d}",
                authors=["Ada Lovelace", "Alan Turing"],
                published=dt.date(year, mon, 1 + n % 27),
                month=month,
            )
            session.add(paper)
            session.flush()
            session.add(PaperTopic(paper_id=paper.id, topic_slug=slug))
            session.add(
                IssuePaper(issue_id=issue.id, paper_id=paper.id, topic_slug=slug, position=n)
            )
            position += 1
    session.commit()
    session.refresh(issue)
    return issue


def seed_subscribers(
    session: Session,
    count: int,
    sets: list[tuple[str, ...]],
    *,
    status: str = SubscriberStatus.ACTIVE,
    prefix: str = "reader",
) -> list[int]:
    """`count` subscribers `prefix{i}@example.org`, topic set i % len(sets); returns ids."""
    now = utcnow()
    rows = [
        {
            "email": f"{prefix}{i:06d}@example.org",
            "name": "",
            "status": str(status),
            "created_at": now,
            "confirmed_at": now,
            "suppressed_reason": "",
            "token_version": 1,
            "confirmations_sent_on": "",
            "confirmations_sent_count": 0,
        }
        for i in range(count)
    ]
    table = Subscriber.__table__  # type: ignore[attr-defined]
    for start in range(0, count, CHUNK):
        session.execute(insert(table), rows[start : start + CHUNK])
    emails = {r["email"]: i for i, r in enumerate(rows)}
    ids_by_index: dict[int, int] = {}
    for sid, email in session.execute(
        select(Subscriber.id, Subscriber.email).where(Subscriber.email.like(f"{prefix}%"))
    ).all():
        if email in emails:
            ids_by_index[emails[email]] = sid
    topic_rows = [
        {"subscriber_id": ids_by_index[i], "topic_slug": slug}
        for i in range(count)
        for slug in sets[i % len(sets)]
    ]
    topic_table = SubscriberTopic.__table__  # type: ignore[attr-defined]
    for start in range(0, len(topic_rows), CHUNK):
        session.execute(insert(topic_table), topic_rows[start : start + CHUNK])
    session.commit()
    return [ids_by_index[i] for i in range(count)]
