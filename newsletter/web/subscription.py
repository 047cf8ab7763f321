"""Managing a subscription from the links in every email: preferences and unsubscribe.

CSRF: every route here carries a signed token in its URL that only the subscriber's inbox
holds, so a forged cross-site form cannot target anyone without first stealing their link.
That alone is the protection RFC 8058 relies on for `POST /unsubscribe/{token}`, which mail
clients post without cookies or an Origin header, so it must accept any caller. The
preferences form changes more (topics, pause) and is only ever posted from our own page,
so it additionally refuses browser posts from another origin (`Sec-Fetch-Site`/`Origin`):
a leaked link then still cannot be driven by a third-party page in the person's browser.
No route sets a session cookie, so there is nothing else for a forged request to ride on.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from newsletter import audience
from newsletter.db import read_session, session_scope
from newsletter.web.outgoing import mail_after_answer
from newsletter.web.pages import error_page, render_page, too_many_requests
from newsletter.web.public import read_form, topics_from_form
from newsletter.web.security import client_address, is_cross_site
from subscribers import lifecycle
from subscribers.models import Subscriber
from subscribers.tokens import TokenError

router = APIRouter()
BAD_LINK = (TokenError, lifecycle.NotSubscribed)


def _bad_link(request: Request, exc: Exception) -> HTMLResponse:
    return error_page(
        request,
        400,
        "This link does not work",
        f"{str(exc).capitalize()}. Links from an older email stop working after your data "
        "was erased; you can subscribe again from the home page, or have your current "
        "link emailed to you below.",
        offer_link=True,
    )


def _preferences_page(
    request: Request,
    session: Session,
    sub: Subscriber,
    token: str,
    *,
    status_code: int = 200,
    message: str = "",
    error: str = "",
    chosen: list[str] | None = None,
) -> HTMLResponse:
    return render_page(
        request,
        "preferences.html",
        status_code,
        subscriber=sub,
        token=token,
        topics=audience.topic_catalog(session),
        chosen=set(chosen if chosen is not None else lifecycle.topics_of(session, sub)),
        message=message,
        error=error,
        links=audience.links_for(request.app.state.settings, sub, absolute=False),
    )


@router.get("/preferences/{token}", response_class=HTMLResponse)
def preferences(request: Request, token: str) -> HTMLResponse:
    with read_session(request.app.state.engine) as session:
        try:
            sub = audience.subscriber_from_token(
                session, request.app.state.settings, "preferences", token
            )
        except BAD_LINK as exc:
            return _bad_link(request, exc)
        return _preferences_page(request, session, sub, token)


def _save_preferences(request: Request, token: str, action: str, topics: list[str]) -> HTMLResponse:
    with session_scope(request.app.state.engine) as session:
        try:
            sub = audience.subscriber_from_token(
                session, request.app.state.settings, "preferences", token
            )
        except BAD_LINK as exc:
            return _bad_link(request, exc)
        if action == "pause":
            lifecycle.pause(session, sub)
            message = "Paused: no emails until you resume. Your topics are kept."
        elif action == "resume":
            lifecycle.resume(session, sub)
            message = "Resumed: the next issue will reach you."
        elif action == "save":
            try:
                lifecycle.update_topics(
                    session,
                    sub,
                    topics,
                    known_topics=audience.topic_slugs(session),
                    client_address=client_address(request),
                )
            except lifecycle.SubscriberError as exc:
                session.rollback()
                return _preferences_page(
                    request, session, sub, token, status_code=400, error=str(exc)
                )
            message = "Saved. Your next issue puts these topics first."
        else:
            return error_page(request, 400, "Form not understood", "Unknown action.")
        return _preferences_page(request, session, sub, token, message=message)


@router.post("/preferences/{token}", response_class=HTMLResponse)
async def update_preferences(request: Request, token: str) -> HTMLResponse:
    if is_cross_site(request):
        return error_page(
            request, 403, "Not allowed", "Preferences can only be changed from this site."
        )
    form = await read_form(request)
    if form is None:
        return error_page(request, 400, "Form not understood", "Please use the preferences form.")
    action = str(form.get("action") or "save")
    try:
        topics = topics_from_form(form)
    except lifecycle.TooManyTopics as exc:
        return error_page(request, 400, "Form not understood", f"{str(exc).capitalize()}.")
    return await run_in_threadpool(_save_preferences, request, token, action, topics)


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
    """Only a page with a button: link scanners fetch GETs, and must not unsubscribe anybody."""
    with read_session(request.app.state.engine) as session:
        try:
            sub = audience.subscriber_from_token(
                session, request.app.state.settings, "unsubscribe", token
            )
        except BAD_LINK as exc:
            return _bad_link(request, exc)
        return render_page(request, "unsubscribe.html", subscriber=sub, token=token)


def _unsubscribe(request: Request, token: str) -> HTMLResponse:
    with session_scope(request.app.state.engine) as session:
        try:
            sub = audience.subscriber_from_token(
                session, request.app.state.settings, "unsubscribe", token
            )
        except BAD_LINK as exc:
            return _bad_link(request, exc)
        lifecycle.unsubscribe(
            session, sub, source="unsubscribe-link", client_address=client_address(request)
        )
        links = audience.links_for(request.app.state.settings, sub, absolute=False)
        return render_page(request, "unsubscribed.html", subscriber=sub, token=token, links=links)


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe(request: Request, token: str) -> HTMLResponse:
    """RFC 8058 one-click: the token is the whole authority; any body, no cookie, 200, idempotent.

    The body (`List-Unsubscribe=One-Click`, form-encoded or multipart) is not needed to act,
    so it is not parsed: a mail client's POST never fails on how it encoded it.
    """
    return _unsubscribe(request, token)


def _resubscribe(request: Request, token: str) -> HTMLResponse:
    settings = request.app.state.settings
    with read_session(request.app.state.engine) as session:
        try:
            sub = audience.subscriber_from_token(session, settings, "unsubscribe", token)
        except BAD_LINK as exc:
            return _bad_link(request, exc)
        email, topics = sub.email, lifecycle.topics_of(session, sub)
    _, queued = audience.record_subscription(
        request.app.state.engine,
        settings,
        email,
        topics,
        client_address=client_address(request),
        source="resubscribe",
    )
    return mail_after_answer(request, render_page(request, "check_inbox.html"), queued)


@router.post("/resubscribe/{token}", response_class=HTMLResponse)
def resubscribe(request: Request, token: str) -> HTMLResponse:
    """One click back in from the unsubscribed page; it still needs a fresh confirmation."""
    wait = request.app.state.subscribe_limiter.hit(client_address(request))
    if wait:
        return too_many_requests(request, wait, "Please try again in a few minutes.")
    return _resubscribe(request, token)


TEST_COPY_LINKS = {"preferences": "manage your subscription", "unsubscribe": "unsubscribe"}


@router.api_route("/test-copy/{link}", methods=["GET", "POST"], response_class=HTMLResponse)
def test_copy_link(request: Request, link: str) -> HTMLResponse:
    """Where a test copy's manage and unsubscribe links lead: a page that says so, and no
    change to anyone (also for a mail client's one-click POST to the test copy's header)."""
    if link not in TEST_COPY_LINKS:
        return error_page(request, 404, "Not found", "There is no such page.")
    return render_page(
        request,
        "error.html",
        heading="This was a test copy",
        message=(
            f"The link to {TEST_COPY_LINKS[link]} in a test copy does nothing: it belongs to "
            "no subscriber. Every subscriber's own copy carries their own working link."
        ),
    )
