"""The topic taxonomy: read from `topics.yaml`, synced into the `topic` table by `init`."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml
from sqlalchemy import func
from sqlmodel import Session, select

from newsletter.models import PaperTopic, Topic

TAXONOMY_FILE = Path(__file__).with_name("topics.yaml")
GENERAL_TOPIC = "general"


@dataclass(frozen=True)
class TopicSpec:
    slug: str
    name: str
    description: str = ""
    keywords: tuple[str, ...] = field(default_factory=tuple)
    arxiv_categories: tuple[str, ...] = field(default_factory=tuple)


@lru_cache(maxsize=1)
def load_taxonomy(path: Path = TAXONOMY_FILE) -> tuple[TopicSpec, ...]:
    """The taxonomy in section order; fails loudly on a malformed file."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    specs = []
    seen: set[str] = set()
    for i, item in enumerate(raw, start=1):
        slug = item.get("slug")
        if not slug or slug in seen:
            raise ValueError(f"{path}: entry {i}: missing or duplicate slug {slug!r}")
        seen.add(slug)
        specs.append(
            TopicSpec(
                slug=slug,
                name=item["name"],
                description=item.get("description", ""),
                # Broad keywords count half; the tagger reads them with a "~" in front.
                keywords=tuple(k.lower() for k in item.get("keywords", []))
                + tuple(f"~{k.lower()}" for k in item.get("broad_keywords", [])),
                arxiv_categories=tuple(item.get("arxiv_categories", [])),
            )
        )
    if GENERAL_TOPIC not in seen:
        raise ValueError(f"{path}: the taxonomy needs a {GENERAL_TOPIC!r} topic")
    return tuple(specs)


def topic_slugs() -> list[str]:
    return [spec.slug for spec in load_taxonomy()]


def sync_topics(session: Session) -> int:
    """Make the `topic` table match the taxonomy file; returns how many rows changed.

    Topics removed from the file stay in the table when papers still use them, so history
    is never rewritten; they simply sort last.
    """
    changed = 0
    existing = {t.slug: t for t in session.exec(select(Topic)).all()}
    for position, spec in enumerate(load_taxonomy()):
        values = {
            "name": spec.name,
            "description": spec.description,
            "keywords": list(spec.keywords),
            "arxiv_categories": list(spec.arxiv_categories),
            "position": position,
        }
        row = existing.pop(spec.slug, None)
        if row is None:
            session.add(Topic(slug=spec.slug, **values))
            changed += 1
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            changed += 1
    for offset, row in enumerate(existing.values(), start=len(load_taxonomy())):
        if row.position != offset:
            row.position = offset
            changed += 1
    session.flush()
    return changed


def topics_with_counts(session: Session) -> list[tuple[Topic, int]]:
    """Every topic in taxonomy order with its number of papers."""
    counts = dict(
        session.exec(
            select(PaperTopic.topic_slug, func.count()).group_by(PaperTopic.topic_slug)
        ).all()
    )
    topics = session.exec(select(Topic).order_by(Topic.position)).all()
    return [(t, counts.get(t.slug, 0)) for t in topics]
