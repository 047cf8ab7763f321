"""Topic tagging: explicit topics win; otherwise taxonomy keywords and arXiv categories.

Keywords match whole words, case-insensitively, in the title, summary and abstract. A hyphen
counts as part of a word, so "PDE-inspired" is not about PDEs and "paragraph" is not a graph;
a keyword may itself contain hyphens or spaces ("spatio-temporal", "natural gradient").
A paper nothing matches goes to the `general` topic, and the import reports it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlmodel import Session, select

from newsletter.errors import NewsletterError
from newsletter.models import Topic
from newsletter.papers.validation import PaperRecord
from newsletter.topics import GENERAL_TOPIC, TopicSpec


@dataclass(frozen=True)
class TopicRule:
    slug: str
    position: int
    pattern: re.Pattern[str] | None
    categories: frozenset[str]


def keyword_pattern(keywords: Iterable[str]) -> re.Pattern[str] | None:
    """One regex per topic: any keyword, bounded by non-word, non-hyphen characters."""
    parts = sorted({k.strip().lower() for k in keywords if k.strip()}, key=len, reverse=True)
    if not parts:
        return None
    alternatives = "|".join(r"\s+".join(re.escape(w) for w in k.split()) for k in parts)
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])", re.IGNORECASE)


class Tagger:
    """The taxonomy's matching rules, built once per import from the synced `topic` table."""

    def __init__(self, rules: list[TopicRule]) -> None:
        self.rules = sorted(rules, key=lambda r: r.position)
        self.order = {r.slug: r.position for r in self.rules}
        if GENERAL_TOPIC not in self.order:
            raise NewsletterError(
                f"the topic table has no {GENERAL_TOPIC!r} topic; run `newsletter init` first"
            )

    @classmethod
    def from_session(cls, session: Session) -> Tagger:
        topics = session.exec(select(Topic)).all()
        return cls(
            [
                TopicRule(
                    slug=t.slug,
                    position=t.position,
                    pattern=keyword_pattern(t.keywords),
                    categories=frozenset(t.arxiv_categories),
                )
                for t in topics
            ]
        )

    @classmethod
    def from_taxonomy(cls, specs: Iterable[TopicSpec]) -> Tagger:
        """Straight from `topics.yaml` (no database), e.g. to check how papers would tag."""
        return cls(
            [
                TopicRule(s.slug, i, keyword_pattern(s.keywords), frozenset(s.arxiv_categories))
                for i, s in enumerate(specs)
            ]
        )

    @property
    def slugs(self) -> frozenset[str]:
        return frozenset(self.order)

    def sort(self, slugs: Iterable[str]) -> list[str]:
        """Slugs in taxonomy order (the first is the paper's section in an issue)."""
        return sorted(set(slugs), key=lambda s: (self.order.get(s, len(self.order)), s))

    def match(self, text: str, categories: Iterable[str] = ()) -> list[str]:
        """Topics whose keywords occur in `text` or whose arXiv categories are given."""
        cats = set(categories)
        return [
            r.slug
            for r in self.rules
            if (r.pattern is not None and r.pattern.search(text)) or (r.categories & cats)
        ]

    def tag(self, record: PaperRecord) -> tuple[list[str], bool]:
        """(topics, fell back to general): explicit topics win, then keywords and categories."""
        if record.topics:
            return self.sort(record.topics), False
        found = self.match(
            "\n".join((record.title, record.summary, record.abstract)), record.categories
        )
        if not found:
            return [GENERAL_TOPIC], True
        return found, False
