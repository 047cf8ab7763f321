"""What each variant of an issue weighs and how many subscribers get it (the desk's preview)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from newsletter.delivery import preview_plan
from newsletter.issues import load_issue_contents
from newsletter.models import Issue
from newsletter.rendering import (
    EVERYTHING,
    NO_MATCH,
    issue_topic_slugs,
    render_issue_variant,
    variant_for,
)
from newsletter.settings import Settings

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


def variant_rows(
    session: Session, issue: Issue, settings: Settings, names: dict[str, str], extra: list[str]
) -> list[VariantRow]:
    """The planned audience's variants (largest first), plus the `extra` variants asked for."""
    plan = preview_plan(session, issue).variants
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
