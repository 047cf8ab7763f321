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
    """`count` subscribers `prefix{i}@example.org`, topic set i % len(sets); returns ids.

    Inserted in chunks (`INSERT … RETURNING` per chunk), so a million costs no more memory
    than the ids it returns.
    """
    now = utcnow()
    table = Subscriber.__table__  # type: ignore[attr-defined]
    topic_table = SubscriberTopic.__table__  # type: ignore[attr-defined]
    add = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    ids: list[int] = []
    for start in range(0, count, CHUNK):
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
            for i in range(start, min(count, start + CHUNK))
        ]
        chunk_ids = list(session.execute(add, rows).scalars())
        topic_rows = [
            {"subscriber_id": sid, "topic_slug": slug}
            for i, sid in enumerate(chunk_ids, start)
            for slug in sets[i % len(sets)]
        ]
        if topic_rows:
            session.execute(insert(topic_table), topic_rows)
        ids += chunk_ids
    session.commit()
    return ids
