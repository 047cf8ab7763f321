"""Which of a big month's papers the email shows: ranked by topic match, capped.

An arXiv category brings hundreds of papers a month; an email of hundreds is unread. Each
candidate gets a score (`Tagger.strength`: distinct keywords of its topics found in its
title, counted three times, and in its abstract or summary, plus up to 3 points for a drafted
summary's relevance, `papers.draft_status.relevance_bonus`). The strongest fill the email,
at most `max_per_topic` per section and `max_papers` in all; the rest stay listed in the
issue and appear on its web version only. Ties go to this month's papers before late
arrivals, then to the newer paper, then by title, so the choice never wobbles.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from newsletter.models import Paper
from newsletter.papers.tagging import Tagger


@dataclass(frozen=True)
class Choice:
    score: int
    in_email: bool


def rank_and_cap(
    tagger: Tagger,
    candidates: Iterable[tuple[Paper, bool, str, list[str]]],
    *,
    max_papers: int | None = None,
    max_per_topic: int | None = None,
    bonus: dict[int, int] | None = None,
) -> dict[int, Choice]:
    """paper id -> (score, in the email?) for (paper, late, section, topics) candidates.

    `bonus` adds points per paper id (a drafted summary's relevance, `papers.draft_status`)."""
    scored = []
    bonus = bonus or {}
    for paper, late, section, topics in candidates:
        body = paper.abstract or paper.summary
        score = tagger.strength(paper.title, body, topics) + bonus.get(paper.id, 0)  # type: ignore[arg-type]
        scored.append((paper, late, section, score))
    scored.sort(
        key=lambda c: (-c[3], c[1], -c[0].published.toordinal(), c[0].normalized_title, c[0].id)
    )
    per_section: dict[str, int] = defaultdict(int)
    total = 0
    choices: dict[int, Choice] = {}
    for paper, _late, section, score in scored:
        fits = (max_papers is None or total < max_papers) and (
            max_per_topic is None or per_section[section] < max_per_topic
        )
        if fits:
            total += 1
            per_section[section] += 1
        choices[paper.id] = Choice(score, fits)  # type: ignore[index]
    return choices
