"""Topic tagging: explicit topics win; otherwise taxonomy keywords and arXiv categories, with a
confidence the desk can act on.

Keywords match whole words, case-insensitively, in the title, summary and abstract, in their
word forms: a plural matches its singular ("operators" / "operator", "studies" / "study"),
British spelling the US one ("generalisation"), and a keyword written with a hyphen or a
space matches all three spellings ("spatio-temporal", "spatio temporal", "spatiotemporal";
"neural operator", "neural-operator"). A hyphen still joins a text's words, so
"PDE-inspired" is not about PDEs and "paragraph" is not a graph; only "X-based" also counts
as X ("transformer-based").
Phrase variants ("operator learning" for neural operators) are keywords of `topics.yaml`.

Each topic scores its distinct keywords found (`broad_keywords` half), a title hit counting
three times, plus two keywords' worth for a matching arXiv category. The paper gets every
topic scoring at least 35 % of the best; its confidence is how clearly the best topic won
and how much evidence it had. Papers in `general` (nothing matched) and close calls (the
runner-up within 80 % of the best, or less than one title keyword of evidence) are flagged
for the editor.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from sqlmodel import Session, select

from newsletter.errors import NewsletterError
from newsletter.models import Topic
from newsletter.papers.validation import PaperRecord
from newsletter.topics import GENERAL_TOPIC, TopicSpec

_PUNCTUATION = re.compile(r"[^\w\s-]+")
# Scores are in half-points so they stay integers: a keyword found in the text counts 2 (a
# broad one 1), in the title three times that; a matching arXiv category counts 4.
TITLE_WEIGHT = 3
KEYWORD_POINTS = 2
BROAD_POINTS = 1
CATEGORY_WEIGHT = 4
KEEP_SHARE = 0.35  # a second topic is kept when it scores at least 35 % of the best
CLOSE_CALL = 0.8  # the runner-up within this share of the best: a close call
FULL_EVIDENCE = 6  # one title keyword (or three in the text) is enough evidence
FLAG_GENERAL = "general"
FLAG_CLOSE_CALL = "close call"
FLAG_HINT = "source's hint"
_INVARIANT = ("ss", "us", "is", "ous", "ics")
_SPELLINGS = (
    ("isation", "ization"),
    ("ise", "ize"),
    ("ised", "ized"),
    ("ising", "izing"),
    ("our", "or"),
    ("elling", "eling"),
    ("elled", "eled"),
)
BROAD = "~"  # a keyword written "~attention" is broad: it counts half (see topics.yaml)


@lru_cache(maxsize=65536)
def word_form(word: str) -> str:
    """A word's singular, US-spelt form, crudely but symmetrically (keywords and texts alike):
    "operators" -> "operator", "studies" -> "study", "generalisation" -> "generalization",
    "neighbours" -> "neighbor", "modelling" -> "modeling"; "loss", "analysis", "physics" stay."""
    if "-" in word:
        return "-".join(word_form(part) for part in word.split("-"))
    if len(word) > 3 and word.endswith("s") and not word.endswith(_INVARIANT):
        if word.endswith("ies") and len(word) > 4:
            word = word[:-3] + "y"
        elif word.endswith(("sses", "xes", "ches", "shes")):
            word = word[:-2]
        else:
            word = word[:-1]
    return _spelling(word)


def _spelling(word: str) -> str:
    for british, american in _SPELLINGS:
        if word.endswith(british) and len(word) > len(british) + 2:
            return word[: -len(british)] + american
    return word


def _forms(keyword: str) -> set[str]:
    """The spellings a keyword matches: as written, hyphens as spaces, spaces as hyphens, and
    a hyphenated pair written as one word ("spatiotemporal")."""
    words = " ".join(word_form(w) for w in keyword.lower().replace("-", " - ").split())
    spaced = " ".join(words.replace(" - ", " ").split())
    hyphened = spaced.replace(" ", "-")
    forms = {spaced, hyphened}
    if "-" in keyword and keyword.count("-") == 1 and " " not in keyword:
        forms.add(word_form(keyword.lower().replace("-", "")))
    return forms


@dataclass(frozen=True)
class TopicRule:
    slug: str
    position: int
    # (keyword, its spellings, points): a one-word spelling is looked up in the text's set
    # of words, a several-word one as " a b " in the text's word string.
    keywords: tuple[tuple[str, frozenset[str], int], ...]
    categories: frozenset[str]

    @classmethod
    def build(
        cls, slug: str, position: int, keywords: Iterable[str], categories: Iterable[str]
    ) -> TopicRule:
        normal = sorted({" ".join(k.lower().split()) for k in keywords if k.strip()})
        entries = []
        for k in normal:
            broad = k.startswith(BROAD)
            word = k.removeprefix(BROAD).strip()
            entries.append(
                (word, frozenset(_forms(word)), BROAD_POINTS if broad else KEYWORD_POINTS)
            )
        return cls(
            slug=slug, position=position, keywords=tuple(entries), categories=frozenset(categories)
        )


def _forms_of(text: str) -> list[str]:
    """The text's word forms in order, "|" where punctuation was."""
    tokens = _PUNCTUATION.sub(" | ", text.lower()).split()
    forms = {w: word_form(w) for w in set(tokens)}
    return [forms[w] for w in tokens]


def _word_set(forms: list[str], text: str) -> set[str]:
    words = set(forms)
    if "-based" in text.lower():
        words.update(w[: -len("-based")] for w in words.copy() if w.endswith("-based"))
    return words


def text_words(text: str) -> tuple[frozenset[str], str]:
    """(set of word forms, " w1 w2 | w3 ") of a text. Words keep inner hyphens; punctuation
    becomes " | " so a phrase never matches across it ("flow. Matching" is not "flow
    matching"). "X-based" adds X as a word of its own."""
    forms = _forms_of(text)
    return frozenset(_word_set(forms, text)), " " + " ".join(forms) + " "


def _found(spellings: frozenset[str], words: frozenset[str], flat: str) -> bool:
    return any((f in words) if " " not in f else (f" {f} " in flat) for f in spellings)


def keyword_hits(rule: TopicRule, words: frozenset[str], flat: str) -> int:
    """How many of the rule's keywords occur in a text split by `text_words`."""
    return sum(1 for _, spellings, _ in rule.keywords if _found(spellings, words, flat))


def keyword_points(rule: TopicRule, words: frozenset[str], flat: str) -> int:
    """The points of the rule's keywords found in a text: 2 each, 1 for a broad one."""
    return sum(p for _, spellings, p in rule.keywords if _found(spellings, words, flat))


@dataclass(frozen=True)
class Assessment:
    """What the tagger concluded about one paper, and how sure it was."""

    topics: list[str]  # taxonomy order; the first is the paper's section
    best: str  # the highest-scoring topic (ties: more title hits, then taxonomy order)
    scores: dict[str, int]
    confidence: float  # 0-1; 0 for general
    fell_back: bool  # nothing matched: general (or the source's hints)

    @property
    def flag(self) -> str:
        return flag_for(self.topics, self.confidence)


def flag_for(topics: Iterable[str], confidence: float | None) -> str:
    """What the desk and `papers list` flag about a paper's stored topics and confidence:
    "general" (no keyword matched), "source's hint" (none matched; the source's topic hints
    were used), "close call" (the runner-up nearly won, or the best topic rests on less
    than one title keyword) or "". A confidence of None (topics a person or the source
    chose, or an editor kept on the desk) is never flagged."""
    if confidence is None:
        return ""
    if confidence == 0:
        return FLAG_GENERAL if list(topics) == [GENERAL_TOPIC] else FLAG_HINT
    return FLAG_CLOSE_CALL if confidence < CLOSE_CALL_CONFIDENCE else ""


def confidence_of(best: int, second: int) -> float:
    """How clearly the best topic won (best / (best + runner-up)) times how much evidence
    it had (capped at one title keyword), rounded to two places."""
    if best <= 0:
        return 0.0
    share = best / (best + second)
    evidence = min(1.0, best / FULL_EVIDENCE)
    return round(share * evidence, 2)


# The confidence below which a paper is a close call: a runner-up at 80 % of the best with
# full evidence gives 1 / 1.8 = 0.56; one lone keyword in the abstract gives 0.33.
CLOSE_CALL_CONFIDENCE = round(1 / (1 + CLOSE_CALL), 2)


class Tagger:
    """The taxonomy's matching rules, built once per import from the synced `topic` table."""

    def __init__(self, rules: list[TopicRule], fallback: Iterable[str] = ()) -> None:
        self.rules = sorted(rules, key=lambda r: r.position)
        self.fallback = tuple(fallback)  # a source's topic hints, used instead of `general`
        self.order = {r.slug: r.position for r in self.rules}
        # Every spelling of every keyword, indexed: one-word spellings by the word, phrases by
        # their first two words (so a text is scanned for a phrase only when it could hold it).
        self._single: dict[str, list[tuple[str, int, int]]] = {}
        self._phrases: dict[tuple[str, str], list[tuple[str, str, int, int]]] = {}
        for rule in self.rules:
            for number, (_, spellings, points) in enumerate(rule.keywords):
                for spelling in spellings:
                    if " " in spelling:
                        entry = (f" {spelling} ", rule.slug, number, points)
                        first, second = spelling.split()[:2]
                        self._phrases.setdefault((first, second), []).append(entry)
                    else:
                        self._single.setdefault(spelling, []).append((rule.slug, number, points))
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

    def _points(self, text: str) -> dict[str, int]:
        """Points per topic of the keywords found in `text`, each keyword once: one-word
        spellings by set look-up, phrases by their first two words (adjacent pairs of the
        text), longer phrases then checked in the text's word string."""
        forms = _forms_of(text)
        words = _word_set(forms, text)
        found: dict[tuple[str, int], int] = {}
        for word in words & self._single.keys():
            for slug, number, points in self._single[word]:
                found[(slug, number)] = points
        pairs = set(zip(forms, forms[1:], strict=False)) & self._phrases.keys()
        flat = " " + " ".join(forms) + " " if pairs else ""
        for pair in pairs:
            for phrase, slug, number, points in self._phrases[pair]:
                if (slug, number) not in found and (phrase.count(" ") == 3 or phrase in flat):
                    found[(slug, number)] = points
        totals: dict[str, int] = {}
        for (slug, _), points in found.items():
            totals[slug] = totals.get(slug, 0) + points
        return totals

    def _scores(
        self, title: str, body: str, categories: Iterable[str] = ()
    ) -> tuple[dict[str, int], dict[str, int]]:
        """(score per topic, title points per topic)."""
        in_title = self._points(title) if title else {}
        scores = {slug: TITLE_WEIGHT * points for slug, points in in_title.items()}
        for slug, points in (self._points(body) if body else {}).items():
            scores[slug] = scores.get(slug, 0) + points
        cats = set(categories)
        if cats:
            for rule in self.rules:
                if not rule.categories.isdisjoint(cats):
                    scores[rule.slug] = scores.get(rule.slug, 0) + CATEGORY_WEIGHT
        return scores, in_title

    def strength(self, title: str, body: str, topics: Iterable[str]) -> int:
        """How strongly a paper matches its topics: distinct keywords found (broad ones half),
        those in the title counting three times. Ranks papers when an issue has more than it
        can show."""
        wanted = set(topics)
        return sum(s for slug, s in self._scores(title, body)[0].items() if slug in wanted)

    @property
    def slugs(self) -> frozenset[str]:
        return frozenset(self.order)

    def sort(self, slugs: Iterable[str]) -> list[str]:
        """Slugs in taxonomy order (the first is the paper's section in an issue)."""
        return sorted(set(slugs), key=lambda s: (self.order.get(s, len(self.order)), s))

    def match(self, text: str, categories: Iterable[str] = ()) -> list[str]:
        """Topics whose keywords occur in `text` or whose arXiv categories are given."""
        return self.sort(self._scores("", text, categories)[0])

    def assess(self, title: str, body: str, categories: Iterable[str] = ()) -> Assessment:
        """The topics of an untagged paper, its best topic and the confidence in it."""
        scores, title_scores = self._scores(title, body, categories)
        if not scores:
            topics = list(self.fallback) or [GENERAL_TOPIC]
            return Assessment(topics, topics[0], {}, 0.0, True)
        ranked = sorted(
            scores, key=lambda s: (-scores[s], -title_scores.get(s, 0), self.order.get(s, 0))
        )
        best = ranked[0]
        second = scores[ranked[1]] if len(ranked) > 1 else 0
        kept = [s for s in ranked if scores[s] >= KEEP_SHARE * scores[best]]
        return Assessment(self.sort(kept), best, scores, confidence_of(scores[best], second), False)

    def assess_record(self, record: PaperRecord) -> Assessment:
        body = record.summary
        if record.abstract and record.abstract != record.summary:
            body = f"{record.summary}\n{record.abstract}"
        return self.assess(record.title, body, record.categories)

    def tag(self, record: PaperRecord) -> tuple[list[str], bool]:
        """(topics, fell back to general): explicit topics win, then keywords and categories."""
        topics, fell_back, _ = self.tag_with_confidence(record)
        return topics, fell_back

    def tag_with_confidence(self, record: PaperRecord) -> tuple[list[str], bool, float | None]:
        """(topics, fell back to general, confidence); the confidence is None for topics the
        record gave (a person or the source chose them)."""
        if record.topics:
            return self.sort(record.topics), False, None
        found = self.assess_record(record)
        return found.topics, found.fell_back and not self.fallback, found.confidence
