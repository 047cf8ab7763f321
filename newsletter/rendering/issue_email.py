"""The monthly issue email: rendered once per variant, cached, placeholders left in.

Flow step 5 of DESIGN.md: Jinja2 (autoescape) builds the MJML for a variant, mjml-python
compiles it once, and the result is cached under (issue id and revision, variant, template
version, the settings that appear in the body). Per-recipient values are placeholders
(`__NL_UNSUBSCRIBE_URL__` …) filled later by `personalize` or by the provider.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlsplit

from markupsafe import Markup
from sqlmodel import Session, select

from newsletter.issues import IssueContents, IssueEntry, load_issue_contents, month_label
from newsletter.models import Issue, Paper, Topic
from newsletter.papers.links import paper_link
from newsletter.rendering.message import RenderedEmail, header_safe
from newsletter.rendering.message import _segments as _segments_cache
from newsletter.rendering.note import note_html, note_text
from newsletter.rendering.recipients import _signed_links
from newsletter.rendering.templates import TEMPLATE_VERSION, render_email_parts
from newsletter.rendering.variants import EVERYTHING, NO_MATCH, parse_variant
from newsletter.settings import Settings
from newsletter.transports.base import placeholder

MAX_AUTHORS = 6
CACHE_SIZE = 256
VIEW_CACHE_SIZE = 8


@dataclass(frozen=True)
class PaperView:
    title: str
    link: str
    authors: str
    summary: str
    late_label: str  # "" unless the paper arrived after its own month's issue
    section_name: str


@dataclass(frozen=True)
class EntryView:
    section: str  # slug of the section the issue lists it under
    topics: tuple[str, ...]  # every topic of the paper
    paper: PaperView


@dataclass(frozen=True)
class IssueView:
    """Everything a variant needs, as plain values: read once per issue revision, shared
    by every variant (no ORM objects, so it outlives the session that read it)."""

    month: str
    subject: str
    entries: tuple[EntryView, ...]
    topic_names: dict[str, str]  # slug -> name, in taxonomy order
    note_html: str = ""  # the editor's note, sanitised (rendering.note)
    note_text: str = ""
    lead: PaperView | None = None  # the editor's pick, shown first in every variant


@dataclass(frozen=True)
class SectionView:
    slug: str
    name: str
    papers: tuple[PaperView, ...]


def issue_subject(issue: Issue, settings: Settings) -> str:
    """The composed subject, or `{title} — {Month YYYY}` when the draft has none yet."""
    return header_safe(issue.subject or f"{settings.title} — {month_label(issue.month)}")


def _safe_link(entry: IssueEntry, settings: Settings) -> str:
    link = paper_link(entry.paper, settings.paper_search_url)
    if urlsplit(link).scheme not in ("http", "https"):  # never a javascript: or data: href
        link = paper_link(Paper(title=entry.paper.title, url=""), settings.paper_search_url)
    return link


def _authors(names: list[str]) -> str:
    if len(names) > MAX_AUTHORS:
        return ", ".join(names[:MAX_AUTHORS]) + " et al."
    return ", ".join(names)


def _paper_view(entry: IssueEntry, section_name: str, settings: Settings) -> PaperView:
    paper = entry.paper
    late = f"Late arrival · published {month_label(paper.month)}" if entry.late else ""
    return PaperView(
        title=" ".join(paper.title.split()),
        link=_safe_link(entry, settings),
        authors=_authors(list(paper.authors)),
        summary=_sentence_case(paper.summary.strip()),
        late_label=late,
        section_name=section_name,
    )


def _sentence_case(text: str) -> str:
    """Listings often start summaries in lower case; capitalise a plain first word only
    (never `pLSA` or `iPhone`)."""
    first = text.split(" ", 1)[0]
    if first.isalpha() and first.islower():
        return text[:1].upper() + text[1:]
    return text


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _names(names: list[str]) -> str:
    if len(names) <= 2:
        return " and ".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def issue_view(contents: IssueContents, topics: dict[str, Topic], settings: Settings) -> IssueView:
    names = {slug: topic.name for slug, topic in topics.items()}
    lead_id = contents.issue.lead_paper_id
    lead = next((e for e in contents.entries if e.paper.id == lead_id), None)
    return IssueView(
        month=contents.issue.month,
        subject=issue_subject(contents.issue, settings),
        entries=tuple(
            EntryView(
                section=e.section,
                topics=e.topics,
                paper=_paper_view(e, names.get(e.section, e.section), settings),
            )
            for e in contents.entries
            if e is not lead
        ),
        topic_names=names,
        note_html=note_html(contents.issue.editor_note),
        note_text=note_text(contents.issue.editor_note),
        lead=_paper_view(lead, names.get(lead.section, lead.section), settings) if lead else None,
    )


def build_context(view: IssueView, variant: str, settings: Settings) -> dict[str, object]:
    """The template context for one variant: main sections, the "also" list and the footer."""
    chosen = parse_variant(variant)
    order = {slug: i for i, slug in enumerate(view.topic_names)}

    def name_of(slug: str) -> str:
        return view.topic_names.get(slug, slug)

    main: dict[str, list[PaperView]] = {}
    also: list[PaperView] = []
    for entry in view.entries:
        if variant == EVERYTHING or entry.section in chosen:
            home = entry.section
        else:  # listed elsewhere, but tagged with one of the subscriber's topics
            home = next((t for t in entry.topics if t in chosen), "")
        if home:
            main.setdefault(home, []).append(entry.paper)
        else:
            also.append(entry.paper)
    sections = [
        SectionView(slug=s, name=name_of(s), papers=tuple(main[s]))
        for s in sorted(main, key=lambda s: order.get(s, len(order)))
    ]
    lead_count = 1 if view.lead else 0
    n_main = sum(len(s.papers) for s in sections) + lead_count
    n_all = len(view.entries) + lead_count
    label = month_label(view.month)
    chosen_names = [name_of(s) for s in sorted(chosen, key=lambda s: order.get(s, len(order)))]

    if variant == EVERYTHING:
        intro = f"{_plural(n_all, 'new paper')} this month, grouped by topic."
        preheader = f"{_plural(n_all, 'new paper')}: " + _names([s.name for s in sections][:3])
        topics_line = "Your topics: all of them."
    elif variant == NO_MATCH:
        intro = (
            "None of your topics has a new paper this month, so here is everything "
            "in brief. Your topics will be back first as soon as they have news."
        )
        preheader = f"{_plural(n_all, 'new paper')} this month, none on your topics"
        topics_line = "None of your topics has a new paper this month."
    else:
        intro = f"{_plural(n_main, 'new paper')} on your topics"
        intro += f", and {n_all - n_main} more at the end." if also else "."
        preheader = f"{_plural(n_main, 'new paper')} on " + _names(chosen_names)
        if also:
            preheader += f", plus {len(also)} more"
        topics_line = f"Your topics in this issue: {', '.join(chosen_names)}."
    if not n_all:
        intro = "No new papers this month."
        preheader = intro

    return {
        "title": settings.title,
        "subject": view.subject,
        "month_label": label,
        "preheader": preheader,
        "intro": intro,
        "no_match": variant == NO_MATCH,
        "sections": sections,
        "also": also,
        "note_html": Markup(view.note_html),  # sanitised by rendering.note
        "note_text": view.note_text,
        "lead": view.lead,
        "footer": {
            "reason": (
                f"You receive this email because {placeholder('email')} subscribed to "
                f"{settings.title}, a monthly digest of new machine-learning-foundations papers."
            ),
            "reason_text": (
                f"You receive this email because you subscribed to {settings.title}, "
                "a monthly digest of new machine-learning-foundations papers."
            ),
            "topics_line": topics_line,
            "preferences_url": placeholder("preferences_url"),
            "unsubscribe_url": placeholder("unsubscribe_url"),
            "browser_url": placeholder("browser_url"),
            "postal_address": settings.postal_address,
        },
    }


def _topics(session: Session) -> dict[str, Topic]:
    return {t.slug: t for t in session.exec(select(Topic).order_by(Topic.position)).all()}


def compile_issue_variant(view: IssueView, variant: str, settings: Settings) -> RenderedEmail:
    """One full Jinja + MJML render, uncached (the naive path the benchmark compares)."""
    context = build_context(view, variant, settings)
    html, text = render_email_parts("issue", context)
    return RenderedEmail(subject=view.subject, html=html, text=text)


def read_issue_view(session: Session, issue: Issue, settings: Settings) -> IssueView:
    return issue_view(load_issue_contents(session, issue), _topics(session), settings)


_cache: OrderedDict[tuple[object, ...], RenderedEmail] = OrderedDict()
_views: dict[tuple[object, ...], IssueView] = {}  # insertion order: oldest first
_cache_lock = threading.Lock()


def _cache_key(issue: Issue, variant: str, settings: Settings) -> tuple[object, ...]:
    body_settings = (
        settings.title,
        settings.base_url,
        settings.postal_address,
        settings.paper_search_url,
    )
    # Creation and compose times tell apart equal ids from different databases (tests, a
    # restored backup) and a recompose that forgot to bump the revision.
    identity = (issue.id, issue.month, issue.created_at, issue.composed_at, issue.revision)
    return (*identity, variant, TEMPLATE_VERSION, body_settings)


def render_issue_variant(
    session: Session, issue: Issue, variant: str, settings: Settings
) -> RenderedEmail:
    """The issue for one variant, compiled at most once per process; placeholders left in."""
    parse_variant(variant)  # refuse a malformed variant before touching the cache
    key = _cache_key(issue, variant, settings)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    view_key = key[:-3] + key[-2:]  # the same key without the variant
    with _cache_lock:
        view = _views.get(view_key)
    if view is None:
        view = read_issue_view(session, issue, settings)
    rendered = compile_issue_variant(view, variant, settings)
    with _cache_lock:
        _views[view_key] = view
        while len(_views) > VIEW_CACHE_SIZE:
            _views.pop(next(iter(_views)))
        _cache[key] = rendered
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return rendered


def clear_render_cache() -> None:
    """Forget every cached render, split body and signed link (tests, benchmarks)."""
    with _cache_lock:
        _cache.clear()
        _views.clear()
    _segments_cache.cache_clear()
    _signed_links.cache_clear()
