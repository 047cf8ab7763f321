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

_PUNCTUATION = re.compile(r"[^\w\s-]+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class TopicRule:
    slug: str
    position: int
    words: frozenset[str]  # one-word keywords, matched against the text's set of words
    phrases: tuple[str, ...]  # several words, as " a b " to find in the text's word string
    categories: frozenset[str]

    @classmethod
    def build(
        cls, slug: str, position: int, keywords: Iterable[str], categories: Iterable[str]
    ) -> TopicRule:
        normal = {" ".join(k.lower().split()) for k in keywords if k.strip()}
        return cls(
            slug=slug,
            position=position,
            words=frozenset(k for k in normal if " " not in k),
            phrases=tuple(sorted(f" {k} " for k in normal if " " in k)),
            categories=frozenset(categories),
        )


def text_words(text: str) -> tuple[frozenset[str], str]:
    """(set of words, " w1 w2 | w3 ") of a text. Words keep inner hyphens; punctuation becomes
    " | " so a phrase never matches across it ("flow. Matching" is not "flow matching")."""
    flat = " " + _SPACES.sub(" ", _PUNCTUATION.sub(" | ", text.lower())) + " "
    return frozenset(flat.split()), flat


def keyword_hits(rule: TopicRule, words: frozenset[str], flat: str) -> int:
    """How many of the rule's keywords occur in a text split by `text_words`."""
    return len(rule.words & words) + sum(1 for p in rule.phrases if p in flat)


class Tagger:
    """The taxonomy's matching rules, built once per import from the synced `topic` table."""

    def __init__(self, rules: list[TopicRule], fallback: Iterable[str] = ()) -> None:
        self.rules = sorted(rules, key=lambda r: r.position)
        self.fallback = tuple(fallback)  # a source's topic hints, used instead of `general`
        self.order = {r.slug: r.position for r in self.rules}
        if GENERAL_TOPIC not in self.order:
            raise NewsletterError(
                f"the topic table has no {GENERAL_TOPIC!r} topic; run `newsletter init` first"
            )

    @classmethod
    def from_session(cls, session: Session) -> Tagger:
        topics = session.exec(select(Topic)).all()
        return cls(
            [TopicRule.build(t.slug, t.position, t.keywords, t.arxiv_categories) for t in topics]
        )

    @classmethod
    def from_taxonomy(cls, specs: Iterable[TopicSpec]) -> Tagger:
        """Straight from `topics.yaml` (no database), e.g. to check how papers would tag."""
        return cls(
            [
                TopicRule.build(s.slug, i, s.keywords, s.arxiv_categories)
                for i, s in enumerate(specs)
            ]
        )

    def with_fallback(self, topics: Iterable[str]) -> Tagger:
        """The same rules, placing papers that match no topic under `topics` (a source's
        hints) instead of `general`."""
        return Tagger(self.rules, self.sort(topics))

    def strength(self, title: str, body: str, topics: Iterable[str]) -> int:
        """How strongly a paper matches its topics: distinct keywords found, those in the
        title counting three times. Ranks papers when an issue has more than it can show."""
        wanted = set(topics)
        title_words, title_flat = text_words(title)
        body_words, body_flat = text_words(body)
        score = 0
        for rule in self.rules:
            if rule.slug in wanted:
                score += 3 * keyword_hits(rule, title_words, title_flat)
                score += keyword_hits(rule, body_words, body_flat)
        return score

    @property
    def slugs(self) -> frozenset[str]:
        return frozenset(self.order)

    def sort(self, slugs: Iterable[str]) -> list[str]:
        """Slugs in taxonomy order (the first is the paper's section in an issue)."""
        return sorted(set(slugs), key=lambda s: (self.order.get(s, len(self.order)), s))

    def match(self, text: str, categories: Iterable[str] = ()) -> list[str]:
        """Topics whose keywords occur in `text` or whose arXiv categories are given."""
        cats = set(categories)
        words, flat = text_words(text)
        return [
            r.slug
            for r in self.rules
            if not r.words.isdisjoint(words)
            or any(p in flat for p in r.phrases)
            or not r.categories.isdisjoint(cats)
        ]

    def tag(self, record: PaperRecord) -> tuple[list[str], bool]:
        """(topics, fell back to general): explicit topics win, then keywords and categories."""
        if record.topics:
            return self.sort(record.topics), False
        found = self.match(
            "\n".join((record.title, record.summary, record.abstract)), record.categories
        )
        if not found:
            if self.fallback:
                return list(self.fallback), False
            return [GENERAL_TOPIC], True
        return found, False
