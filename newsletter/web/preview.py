"""Browser preview of an issue as a subscriber with given topics receives it.

The page shows the email in a sandboxed iframe (no script, no same-origin access) whose
document comes from `…/preview/email`, the one response allowed to be framed, by our own
pages only.

Drafts need the admin token or a desk session. The token may come as `Authorization: Bearer
TOKEN` (scripts) or once as `?token=TOKEN` (a link an editor can click): the query form opens
a desk session, sets its cookie (HttpOnly, SameSite=Strict) for both `/admin` and `/issues`,
and redirects to the same preview without the token, so the token leaves the address bar
and history, and the iframe's own request (which cannot carry a header) is authorised by the
cookie. Signing in on the desk sets the same cookie; signing out ends it (the server revokes
the session). Each wrong token counts against the client, as on the sign-in form: past the
limit every token gets a 429, the right one too. Without a valid token a draft answers 404,
like any month without a published issue, so drafts cannot be discovered.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, select

from newsletter import audience, audit
from newsletter.db import read_session, session_scope
from newsletter.desk import auth
from newsletter.models import Issue
from newsletter.rendering.preview import Preview, render_preview
from newsletter.rendering.recipients import read_test_preview_key
from newsletter.settings import Settings
from newsletter.web.admin.guard import PREVIEW_COOKIE, set_session_cookies
from newsletter.web.archive import (
    MONTH_RE,
    bad_topics_page,
    is_public,
    no_issue_page,
    parse_topics,
    unknown_topics,
)
from newsletter.web.pages import render_page, too_many_requests
from newsletter.web.ratelimit import ClientRateLimiter
from newsletter.web.security import EMAIL_FRAME_HEADERS, client_address

router = APIRouter()
ADMIN_TOKEN_GUESSES = 10  # wrong admin tokens per client per 10 minutes, as on the sign-in form


def _presented_token(request: Request) -> str | None:
    auth_header = request.headers.get("authorization", "")
    if auth_header.lower().startswith("bearer "):
        return auth_header[7:].strip()
    if "token" in request.query_params:
        return request.query_params.get("token", "")
    return None


def token_refused(request: Request) -> float:
    """Seconds before this client may present an admin token again (0: go on); each wrong
    token counts, so the preview is no oracle for guessing it."""
    token = _presented_token(request)
    if token is None:
        return 0.0
    limiter = getattr(request.app.state, "admin_token_limiter", None)
    if limiter is None:  # one per app, like the sign-in limiter
        limiter = request.app.state.admin_token_limiter = ClientRateLimiter(
            ADMIN_TOKEN_GUESSES, 600
        )
    client = client_address(request)
    wait = limiter.wait(client)
    if wait:
        return wait
    if not auth.admin_token_matches(request.app.state.settings, token):
        limiter.hit(client)
    return 0.0


def _too_many_guesses(request: Request, wait: float) -> HTMLResponse:
    return too_many_requests(
        request, wait, "Too many wrong admin tokens from this connection. Please try again later."
    )


def is_admin(request: Request) -> bool:
    """The right admin token presented, or a live desk session's cookie."""
    settings: Settings = request.app.state.settings
    token = _presented_token(request)
    if token is not None and auth.admin_token_matches(settings, token):
        return True
    cookie = request.cookies.get(PREVIEW_COOKIE, "")
    if not cookie:
        return False
    with read_session(request.app.state.engine) as session:
        return auth.editor_for_cookie(session, settings, cookie) is not None


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
    wait = token_refused(request)
    if wait:
        return _too_many_guesses(request, wait)
    if auth.admin_token_matches(settings, request.query_params.get("token", "")):
        # Trade the token in the URL for a desk session, then show the same preview
        # without it.
        with session_scope(request.app.state.engine) as session:
            cookie = auth.start_session(session, settings, auth.ADMIN_TOKEN_ACTOR)
            audit.record(
                session,
                auth.ADMIN_TOKEN_ACTOR,
                "desk.sign_in",
                "",
                f"admin token (preview link) from {client_address(request)}",
            )
        query = _query(topics)
        target = f"/issues/{month}/preview" + (f"?{query}" if query else "")
        response = RedirectResponse(target, status_code=303)
        set_session_cookies(response, settings, cookie)
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
    wait = token_refused(request)
    if wait:
        return _too_many_guesses(request, wait)
    topics = parse_topics(request.query_params.getlist("topics"))
    with read_session(request.app.state.engine) as session:
        preview = _viewable_preview(request, session, month, topics)
    if isinstance(preview, Response):
        return preview
    return HTMLResponse(preview.email.html, headers=EMAIL_FRAME_HEADERS)
