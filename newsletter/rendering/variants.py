"""Variants: the topic sets an issue is rendered for, one compile each.

A variant string is what `Delivery.variant` stores and what the render cache is keyed by:

- `""` (EVERYTHING): the subscriber chose no topics, so every section is theirs;
- `"a,b"`: the subscriber's topics that occur in this issue, sorted and joined by ",";
  those sections come first, the rest is a short "also this month" list;
- `"-"` (NO_MATCH): the subscriber chose topics but none occurs in this issue. They still
  get the issue: a note saying so, and the "also this month" list of everything. One
  rendering serves every such subscriber, whatever topics they chose.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

EVERYTHING = ""
NO_MATCH = "-"
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def variant_for(subscriber_topics: Iterable[str], issue_topics: Iterable[str]) -> str:
    chosen = set(subscriber_topics)
    if not chosen:
        return EVERYTHING
    present = chosen & set(issue_topics)
    return ",".join(sorted(present)) if present else NO_MATCH


def parse_variant(variant: str) -> frozenset[str]:
    """The topic slugs of a variant; empty for EVERYTHING and NO_MATCH (tell them apart by
    the string). Raises ValueError on anything that is not a variant string."""
    if variant in (EVERYTHING, NO_MATCH):
        return frozenset()
    slugs = variant.split(",")
    bad = [s for s in slugs if not _SLUG_RE.match(s)]
    if bad:
        raise ValueError(f"not a topic variant: {variant!r} (bad slug {bad[0]!r})")
    return frozenset(slugs)


def issue_topic_slugs(entries: Iterable[object]) -> frozenset[str]:
    """Every topic an issue's entries carry (their section and all their topics).

    Pass this as `issue_topics` to `variant_for`, so a subscriber whose topic only tags a
    paper listed under another section still gets that paper among their own.
    """
    slugs: set[str] = set()
    for entry in entries:
        slugs.add(entry.section)  # type: ignore[attr-defined]
        slugs.update(entry.topics)  # type: ignore[attr-defined]
    return frozenset(slugs)
