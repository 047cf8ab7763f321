"""The public archive: sent issues as a list, as web pages and as an Atom feed.

The web version of an issue is a page of the site built from the same context as the email
(`build_context`, without the size budget), with links that name nobody.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func
from sqlmodel import Session, col, select

from newsletter.audience import CONSENT_TEXT
from newsletter.db import read_session
from newsletter.models import Issue, IssuePaper, IssueStatus, Topic
from newsletter.months import MONTH_RE, month_label
from newsletter.rendering.issue_email import build_context, cached_issue_view, issue_subject
from newsletter.rendering.variants import variant_for
from newsletter.settings import Settings
from newsletter.web.pages import environment, error_page, render_page
from newsletter.web.security import PUBLIC_CACHE

router = APIRouter()
PAGE_CACHE_SIZE = 64
# Rendered web versions by issue revision and topic selection: the page is the same for
# every reader, so a busy "view in your browser" link costs a lookup, not a Jinja render.
_pages: dict[tuple[object, ...], bytes] = {}  # insertion order: oldest first
_pages_lock = threading.Lock()
ATOM = "http://www.w3.org/2005/Atom"
# Feed entries that carry their papers in full; older ones keep a one-line summary, so the
# feed stays a few hundred KB however many years the archive holds.
FEED_FULL_ENTRIES = 12


def is_public(issue: Issue) -> bool:
    """Readable by anyone once the first email went out: the "view in your browser" link of
    an issue that is still sending (or paused mid-send) must work for those who got it."""
    if issue.status == IssueStatus.SENT:
        return True
    started = issue.status in (IssueStatus.SENDING, IssueStatus.PAUSED)
    return started and issue.send_started_at is not None


def sent_issues(session: Session) -> list[tuple[Issue, int]]:
    """Sent issues newest first, each with its number of papers."""
    counts = dict(
        session.exec(select(IssuePaper.issue_id, func.count()).group_by(IssuePaper.issue_id)).all()
    )
    issues = session.exec(
        select(Issue).where(Issue.status == IssueStatus.SENT).order_by(col(Issue.month).desc())
    ).all()
    return [(issue, counts.get(issue.id, 0)) for issue in issues]


def parse_topics(values: list[str]) -> list[str]:
    """`?topics=a,b` and `?topics=a&topics=b` both work (links and checkbox forms)."""
    return [s.strip() for value in values for s in value.split(",") if s.strip()]


def unknown_topics(session: Session, topics: list[str]) -> list[str]:
    known = set(session.exec(select(Topic.slug)).all())
    return [t for t in topics if t not in known]


def bad_topics_page(request: Request, unknown: list[str]) -> HTMLResponse:
    shown = ", ".join(repr(t[:64]) for t in unknown[:5])
    return error_page(
        request,
        400,
        "Unknown topic",
        f"There is no topic {shown}. Pick topics from the list on the page instead.",
    )


def no_issue_page(request: Request, month: str) -> HTMLResponse:
    label = month_label(month) if MONTH_RE.match(month) else month[:20]
    return error_page(request, 404, "No such issue", f"There is no published issue for {label}.")


@router.get("/issues", response_class=HTMLResponse)
def archive(request: Request) -> HTMLResponse:
    with read_session(request.app.state.engine) as session:
        issues = sent_issues(session)
    return render_page(request, "archive.html", headers=PUBLIC_CACHE, issues=issues)


def _atom_time(value: datetime | None) -> str:
    value = value or datetime(1970, 1, 1, tzinfo=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def feed_entry_html(session: Session, issue: Issue, settings: Settings) -> str:
    """An issue's papers as HTML for its feed entry, in the order of its web version."""
    context = build_context(cached_issue_view(session, issue, settings, web=True), "", settings)
    url = f"{settings.base_url}/issues/{issue.month}"
    return environment().get_template("feed_entry.html").render(issue=context, url=url)


def atom_feed(
    settings: Settings, issues: list[tuple[Issue, int]], contents: dict[int, str] | None = None
) -> bytes:
    """An Atom 1.0 document built as a tree, so no paper title can break the XML.

    `contents`: issue id -> the entry's HTML content (its papers); ids are the issues' web
    URLs and `updated` their send time, so neither moves between fetches."""
    contents = contents or {}
    ET.register_namespace("", ATOM)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    feed = ET.Element(f"{{{ATOM}}}feed")
    sub(feed, "id", f"{settings.base_url}/issues")
    sub(feed, "title", settings.title)
    sub(feed, "updated", _atom_time(max((i.sent_at for i, _ in issues if i.sent_at), default=None)))
    sub(feed, "link", rel="self", href=f"{settings.base_url}/issues/feed.xml")
    sub(feed, "link", rel="alternate", type="text/html", href=f"{settings.base_url}/issues")
    author = sub(feed, "author")
    sub(author, "name", settings.title)
    for issue, count in issues:
        url = f"{settings.base_url}/issues/{issue.month}"
        entry = sub(feed, "entry")
        sub(entry, "id", url)
        sub(entry, "title", issue_subject(issue, settings))
        sub(entry, "updated", _atom_time(issue.sent_at))
        sub(entry, "published", _atom_time(issue.sent_at))
        sub(entry, "link", rel="alternate", type="text/html", href=url)
        sub(
            entry,
            "summary",
            f"{count} new paper{'s' if count != 1 else ''} in machine-learning foundations, "
            f"{month_label(issue.month)}.",
        )
        if issue.id in contents:
            sub(entry, "content", contents[issue.id], type="html")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="utf-8")


@router.get("/issues/feed.xml")
def feed(request: Request) -> Response:
    with read_session(request.app.state.engine) as session:
        issues = sent_issues(session)
        settings = request.app.state.settings
        contents = {
            issue.id or 0: feed_entry_html(session, issue, settings)
            for issue, _ in issues[:FEED_FULL_ENTRIES]
        }
    return Response(
        atom_feed(settings, issues, contents),
        media_type="application/atom+xml; charset=utf-8",
        headers=PUBLIC_CACHE,
    )


@router.get("/issues/{month}", response_class=HTMLResponse)
def issue_page(request: Request, month: str) -> HTMLResponse:
    """The web version of a sent issue, optionally for a topic selection (`?topics=a,b`).

    A page of the site, not the email: site header and footer, wording for a reader who may
    not subscribe yet, a subscribe prompt, every paper in full (the email may list some by
    title only to stay under Gmail's clipping size), and canonical/Open Graph tags.
    """
    settings = request.app.state.settings
    if not MONTH_RE.match(month):
        return no_issue_page(request, month)
    chosen = parse_topics(request.query_params.getlist("topics"))
    with read_session(request.app.state.engine) as session:
        issue = session.exec(select(Issue).where(Issue.month == month)).first()
        if issue is None or not is_public(issue):
            return no_issue_page(request, month)
        unknown = unknown_topics(session, chosen) if chosen else []
        if unknown:
            return bad_topics_page(request, unknown)
        view = cached_issue_view(session, issue, settings, web=True)
        variant = ""
        if chosen:
            variant = variant_for(chosen, {s for e in view.entries for s in (e.section, *e.topics)})
    key = (
        issue.id,
        issue.created_at,
        issue.composed_at,
        issue.revision,
        variant,
        tuple(sorted(set(chosen))),
        request.app.state.local_outbox,
        id(settings),
    )
    with _pages_lock:
        body = _pages.get(key)
    if body is None:
        context = build_context(view, variant, settings)
        body = render_page(
            request,
            "issue.html",
            issue=context,
            month=month,
            canonical=f"{settings.base_url}/issues/{month}",
            description=str(context["preheader"]),
            chosen=sorted(set(chosen)),
            personal=bool(chosen),
            consent_text=CONSENT_TEXT,
        ).body
        with _pages_lock:
            _pages[key] = body
            while len(_pages) > PAGE_CACHE_SIZE:
                _pages.pop(next(iter(_pages)))
    return HTMLResponse(body, headers=PUBLIC_CACHE)
