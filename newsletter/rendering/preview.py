"""Previews: exactly what a subscriber with given topics receives, with sample links.

The CLI (`newsletter issue preview`) and the web preview route both call `render_preview`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session, select

from newsletter.errors import NewsletterError
from newsletter.issues import load_issue_contents
from newsletter.models import Issue, Topic
from newsletter.rendering.issue_email import render_issue_variant
from newsletter.rendering.message import RenderedEmail, personalize
from newsletter.rendering.recipients import preview_substitutions
from newsletter.rendering.variants import EVERYTHING, NO_MATCH, issue_topic_slugs, variant_for
from newsletter.rendering.wire_size import html_size
from newsletter.settings import Settings


@dataclass(frozen=True)
class Preview:
    issue: Issue
    variant: str
    email: RenderedEmail


def parse_topics_option(value: str | None) -> list[str]:
    """`"a, b"` -> `["a", "b"]`; None or blank -> [] (no topics chosen: everything)."""
    if not value:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def render_preview(
    session: Session, month: str, topics: Sequence[str], settings: Settings
) -> Preview:
    """Render `month`'s issue as a subscriber with `topics` (slugs) gets it.

    Raises NewsletterError for an unknown month or topic slug, naming it.
    """
    issue = session.exec(select(Issue).where(Issue.month == month)).first()
    if issue is None:
        raise NewsletterError(f"no issue for {month}: run `newsletter issue compose {month}` first")
    known = set(session.exec(select(Topic.slug)).all())
    unknown = [t for t in topics if t not in known]
    if unknown:
        raise NewsletterError(
            f"unknown topic {unknown[0]!r}; see `newsletter topics` for the valid slugs"
        )
    contents = load_issue_contents(session, issue)
    variant = variant_for(topics, issue_topic_slugs(contents.email_entries))
    rendered = render_issue_variant(session, issue, variant, settings)
    return Preview(
        issue=issue,
        variant=variant,
        email=personalize(rendered, preview_substitutions(settings, issue, variant)),
    )


def size_line(variant: str, email: RenderedEmail, settings: Settings) -> str:
    """`all topics: 88.6 KB HTML as sent (budget 90 KB); 49 papers listed by title to fit`."""
    name = {EVERYTHING: "all topics", NO_MATCH: "no matching topic"}.get(variant, variant)
    size = html_size(email.html) / 1000
    line = f"{name}: {size:.1f} KB HTML as sent (budget {settings.max_email_kb} KB)"
    if email.trimmed:
        line += f"; budget reached, {email.trimmed} papers listed by title only"
    return line


def variant_sizes(session: Session, month: str, settings: Settings) -> list[str]:
    """Size lines for the variants that can be largest: everything, no match, each topic
    alone (a subscriber's variant has at most the papers of the everything variant)."""
    issue = session.exec(select(Issue).where(Issue.month == month)).one()
    contents = load_issue_contents(session, issue)
    topics = sorted({e.section for e in contents.entries})
    lines = []
    for variant in (EVERYTHING, NO_MATCH, *topics):
        rendered = render_issue_variant(session, issue, variant, settings)
        email = personalize(rendered, preview_substitutions(settings, issue, variant))
        lines.append(size_line(variant, email, settings))
    return lines
