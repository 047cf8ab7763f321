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

from newsletter.issues import IssueContents, IssueEntry, load_issue_contents
from newsletter.models import Issue, Paper, Topic
from newsletter.months import month_label
from newsletter.papers.links import paper_link
from newsletter.papers.summaries import email_summary
from newsletter.rendering.message import RenderedEmail, header_safe
from newsletter.rendering.note import note_html, note_text
from newsletter.rendering.templates import TEMPLATE_VERSION, render_email_parts
from newsletter.rendering.variants import EVERYTHING, NO_MATCH, parse_variant
from newsletter.rendering.wire_size import html_size
from newsletter.settings import Settings
from newsletter.substitution import forget_bodies, placeholder, without_markers

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
    more_on_web: int = 0  # papers past the caps: listed on the web version, not in the email
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
    # Paper text comes from outside: it must never contain a live per-recipient marker.
    return PaperView(
        title=without_markers(" ".join(paper.title.split())),
        link=without_markers(_safe_link(entry, settings)),
        authors=without_markers(_authors(list(paper.authors))),
        summary=without_markers(_sentence_case(email_summary(paper.summary, paper.abstract))),
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


def issue_view(
    contents: IssueContents, topics: dict[str, Topic], settings: Settings, *, web: bool = False
) -> IssueView:
    """The email's view lists the papers within the caps; the web version (`web`) all.

    Topic names come in the issue's section order (the editor's, else the taxonomy's), which
    orders every variant's sections."""
    names = {t.slug: t.name for t in contents.topics}
    names.update({slug: topic.name for slug, topic in topics.items() if slug not in names})
    lead_id = contents.issue.lead_paper_id
    lead = next((e for e in contents.entries if e.paper.id == lead_id), None)
    # The editor's pick is shown even when the caps would leave it to the web version.
    shown = [e for e in contents.entries if (web or e.in_email) and e is not lead]
    return IssueView(
        month=contents.issue.month,
        subject=issue_subject(contents.issue, settings),
        entries=tuple(
            EntryView(
                section=e.section,
                topics=e.topics,
                paper=_paper_view(e, names.get(e.section, e.section), settings),
            )
            for e in shown
        ),
        topic_names=names,
        more_on_web=len(contents.entries) - len(shown) - (1 if lead else 0),
        note_html=note_html(contents.issue.editor_note),
        note_text=note_text(contents.issue.editor_note),
        lead=_paper_view(lead, names.get(lead.section, lead.section), settings) if lead else None,
    )


def _new_and_late(papers: list[PaperView]) -> str:
    """ "38 new papers and 2 late arrivals": a late arrival is not new this month."""
    late = sum(1 for p in papers if p.late_label)
    text = _plural(len(papers) - late, "new paper")
    if late:
        text += f" and {_plural(late, 'late arrival')}"
    return text


def _trim(
    sections: list[SectionView], full_limit: int
) -> tuple[list[SectionView], list[PaperView]]:
    """Keep the first `full_limit` papers in full; the rest become a list of linked titles."""
    kept: list[SectionView] = []
    rest: list[PaperView] = []
    left = full_limit
    for section in sections:
        full = section.papers[: max(left, 0)]
        rest += section.papers[len(full) :]
        left -= len(full)
        if full:
            kept.append(SectionView(slug=section.slug, name=section.name, papers=full))
    return kept, rest


def build_context(
    view: IssueView, variant: str, settings: Settings, *, full_limit: int | None = None
) -> dict[str, object]:
    """The template context for one variant: main sections, the "also" list and the footer.

    `full_limit` caps the papers shown in full (the size budget); the others are listed by
    title under "more", pointing to the web version, which always shows everything.
    """
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
    lead = [view.lead] if view.lead else []
    n_main = sum(len(s.papers) for s in sections) + len(lead)
    n_all = len(view.entries) + len(lead)
    main_papers = lead + [p for s in sections for p in s.papers]
    all_papers = lead + [e.paper for e in view.entries]
    more: list[PaperView] = []
    # The lead always stays in full; the budget trims the sections' papers.
    if full_limit is not None and full_limit < n_main - len(lead):
        sections, more = _trim(sections, full_limit)
    label = month_label(view.month)
    chosen_names = [name_of(s) for s in sorted(chosen, key=lambda s: order.get(s, len(order)))]

    if variant == EVERYTHING:
        intro = f"{_new_and_late(all_papers)} this month, grouped by topic."
        preheader = f"{_new_and_late(all_papers)}: " + _names([s.name for s in sections][:3])
        topics_line = "Your topics: all of them."
    elif variant == NO_MATCH:
        intro = (
            "None of your topics has a new paper this month, so here is everything "
            "in brief. Your topics will be back first as soon as they have news."
        )
        preheader = f"{_new_and_late(all_papers)} this month, none on your topics"
        topics_line = "None of your topics has a new paper this month."
    else:
        intro = f"{_new_and_late(main_papers)} on your topics"
        intro += f", and {n_all - n_main} more at the end." if also else "."
        preheader = f"{_new_and_late(main_papers)} on " + _names(chosen_names)
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
        "more": more,
        "also": also,
        "more_on_web": view.more_on_web,
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


def compile_issue_variant(
    view: IssueView, variant: str, settings: Settings, *, budget: bool = True
) -> RenderedEmail:
    """One full Jinja + MJML render, uncached (the naive path the benchmark compares).

    Gmail clips HTML past ~102 KB and hides what follows, footer and unsubscribe link
    included. Past `settings.max_email_kb` (counted as sent, see `html_size`), the most
    papers that fit stay in full (found by bisection, a handful of compiles once per
    variant) and the rest become linked titles.
    """

    def render(full_limit: int | None) -> RenderedEmail:
        context = build_context(view, variant, settings, full_limit=full_limit)
        html, text = render_email_parts("issue", context)
        trimmed = len(context["more"])  # type: ignore[arg-type]
        return RenderedEmail(subject=view.subject, html=html, text=text, trimmed=trimmed)

    whole = render(None)
    limit = settings.max_email_kb * 1000
    if not budget or html_size(whole.html) <= limit:
        return whole
    low, high = 0, len(view.entries)  # low always fits (checked below), high does not
    best = render(0)
    while high - low > 1:
        middle = (low + high) // 2
        attempt = render(middle)
        if html_size(attempt.html) <= limit:
            low, best = middle, attempt
        else:
            high = middle
    return best


def read_issue_view(
    session: Session, issue: Issue, settings: Settings, *, web: bool = False
) -> IssueView:
    return issue_view(load_issue_contents(session, issue), _topics(session), settings, web=web)


_cache: OrderedDict[tuple[object, ...], RenderedEmail] = OrderedDict()
_views: dict[tuple[object, ...], IssueView] = {}  # insertion order: oldest first
_cache_lock = threading.Lock()


def _cache_key(
    issue: Issue, variant: str, settings: Settings, web: bool = False
) -> tuple[object, ...]:
    body_settings = (
        settings.title,
        settings.base_url,
        settings.postal_address,
        settings.paper_search_url,
        settings.max_email_kb,
    )
    # Creation and compose times tell apart equal ids from different databases (tests, a
    # restored backup) and a recompose that forgot to bump the revision.
    identity = (issue.id, issue.month, issue.created_at, issue.composed_at, issue.revision)
    return (*identity, web, variant, TEMPLATE_VERSION, body_settings)


def cached_issue_view(
    session: Session, issue: Issue, settings: Settings, *, web: bool = False
) -> IssueView:
    """The issue's plain values, read once per revision (shared with the email renders).

    `web`: for the web version, which also lists the papers past the email's caps."""
    view_key = _cache_key(issue, "", settings, web)
    view_key = view_key[:-3] + view_key[-2:]
    with _cache_lock:
        view = _views.get(view_key)
    if view is None:
        view = read_issue_view(session, issue, settings, web=web)
        with _cache_lock:
            _views[view_key] = view
            while len(_views) > VIEW_CACHE_SIZE:
                _views.pop(next(iter(_views)))
    return view


def render_issue_variant(
    session: Session, issue: Issue, variant: str, settings: Settings, *, web: bool = False
) -> RenderedEmail:
    """The issue for one variant, compiled at most once per process; placeholders left in.

    `web`: the web version, which also lists the papers past the email's caps."""
    parse_variant(variant)  # refuse a malformed variant before touching the cache
    key = _cache_key(issue, variant, settings, web)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    view_key = key[:-3] + key[-2:]  # the same key without the variant
    with _cache_lock:
        view = _views.get(view_key)
    if view is None:
        view = read_issue_view(session, issue, settings, web=web)
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
    """Forget every cached render and split body (tests, benchmarks)."""
    with _cache_lock:
        _cache.clear()
        _views.clear()
    forget_bodies()
