"""Browser preview of an issue as a subscriber with given topics receives it.

The page shows the email in a sandboxed iframe (no script, no same-origin access) whose
document comes from `…/preview/email`, the one response allowed to be framed, by our own
pages only.

Drafts need the admin token. It may come as `Authorization: Bearer TOKEN` (scripts), as a
cookie, or once as `?token=TOKEN` (a link an editor can click): the query form sets an
HttpOnly, SameSite=Strict cookie scoped to `/issues` and redirects to the same preview
without the token, so the token leaves the address bar and history, and the iframe's own
request (which cannot carry a header) is authorised by the cookie. The cookie holds an HMAC
of the admin token, not the token. Without a valid token a draft answers 404, like any
month without a published issue, so drafts cannot be discovered.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, select

from newsletter import audience
from newsletter.db import read_session
from newsletter.models import Issue
from newsletter.rendering.preview import Preview, render_preview
from newsletter.rendering.recipients import read_test_preview_key
from newsletter.settings import Settings
from newsletter.web.archive import (
    MONTH_RE,
    bad_topics_page,
    is_public,
    no_issue_page,
    parse_topics,
    unknown_topics,
)
from newsletter.web.pages import render_page
from newsletter.web.security import EMAIL_FRAME_HEADERS

router = APIRouter()
ADMIN_COOKIE = "newsletter_admin"


def _cookie_value(settings: Settings) -> str:
    return hmac.new(
        settings.secret.encode(), b"admin-preview:" + settings.admin_token.encode(), hashlib.sha256
    ).hexdigest()


def is_admin(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    if not settings.admin_token:
        return False
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and hmac.compare_digest(
        auth[7:].strip().encode(), settings.admin_token.encode()
    ):
        return True
    query = request.query_params.get("token", "")
    if query and hmac.compare_digest(query.encode(), settings.admin_token.encode()):
        return True
    cookie = request.cookies.get(ADMIN_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), _cookie_value(settings).encode())


def test_copy_revision(request: Request, month: str) -> int | None:
    """The revision a test copy's signed `?key=` names for this month (None: no valid key).

    A test copy's "view in your browser" opens its draft with no session: read-only, this
    month only, expiring."""
    key = request.query_params.get("key", "")
    return read_test_preview_key(request.app.state.settings, key, month) if key else None


def _viewable_issue(request: Request, session: Session, month: str) -> Issue | None:
    issue = session.exec(select(Issue).where(Issue.month == month)).first()
    if issue is None:
        return None
    if (
        not is_public(issue)
        and not is_admin(request)
        and test_copy_revision(request, month) is None
    ):
        return None
    return issue


def _viewable_preview(
    request: Request, session: Session, month: str, topics: list[str]
) -> Preview | Response:
    """The email for these topics, or the page saying why this viewer cannot have it."""
    issue = _viewable_issue(request, session, month)
    if issue is None:
        return no_issue_page(request, month)
    unknown = unknown_topics(session, topics)
    if unknown:
        return bad_topics_page(request, unknown)
    return render_preview(session, month, topics, request.app.state.settings)


def _query(topics: list[str], key: str = "") -> str:
    values = {"topics": ",".join(topics)} if topics else {}
    if key:
        values["key"] = key
    return urlencode(values)


@router.get("/issues/{month}/preview", response_class=HTMLResponse)
def preview_page(request: Request, month: str) -> Response:
    settings: Settings = request.app.state.settings
    if not MONTH_RE.match(month):
        return no_issue_page(request, month)
    topics = parse_topics(request.query_params.getlist("topics"))
    if "token" in request.query_params and is_admin(request):
        # Trade the token in the URL for a cookie, then show the same preview without it.
        query = _query(topics)
        target = f"/issues/{month}/preview" + (f"?{query}" if query else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            ADMIN_COOKIE,
            _cookie_value(settings),
            httponly=True,
            samesite="strict",
            secure=settings.base_url.startswith("https://"),
            path="/issues",
            max_age=12 * 3600,
        )
        return response
    with read_session(request.app.state.engine) as session:
        preview = _viewable_preview(request, session, month, topics)
        if isinstance(preview, Response):
            return preview
        catalog = audience.topic_catalog(session)
    shown = test_copy_revision(request, month)
    key = request.query_params.get("key", "") if shown is not None else ""
    query = _query(topics, key)
    return render_page(
        request,
        "preview.html",
        issue=preview.issue,
        subject=preview.email.subject,
        topics=catalog,
        chosen=set(topics),
        frame_src=f"/issues/{month}/preview/email" + (f"?{query}" if query else ""),
        test_key=key,
        test_revision=shown,
    )


@router.get("/issues/{month}/preview/email", response_class=HTMLResponse)
def preview_email(request: Request, month: str) -> Response:
    """The email HTML alone: the only document our own pages may frame."""
    if not MONTH_RE.match(month):
        return no_issue_page(request, month)
    topics = parse_topics(request.query_params.getlist("topics"))
    with read_session(request.app.state.engine) as session:
        preview = _viewable_preview(request, session, month, topics)
    if isinstance(preview, Response):
        return preview
    return HTMLResponse(preview.email.html, headers=EMAIL_FRAME_HEADERS)
